//! Server-side helpers of the server functions: the context the server provides, the session
//! cookie, and "who is calling, in which workspace". Only compiled with `ssr`.

use axum::extract::ConnectInfo;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use leptos::prelude::*;
use std::net::SocketAddr;
use tenki_core::Core;
use tenki_core::identity;
use tenki_core::workspaces;

use crate::error::AppError;

pub use tenki_core::identity::SESSION_COOKIE;

/// What the server hands to every page and server function.
#[derive(Debug, Clone)]
pub struct ServerContext {
    /// The business: database and ledger.
    pub core: Core,
    /// GitHub or Stripe is not configured: show the "Sandbox" badge.
    pub sandbox: bool,
    /// Mark cookies `Secure` (served over https).
    pub secure_cookies: bool,
    /// Verifies GitHub webhook deliveries.
    pub github_webhook_secret: secrecy::SecretString,
    /// Signs the `state` that carries the workspace through GitHub's install page.
    pub state_key: secrecy::SecretString,
    /// The GitHub double answers for GitHub: the Runners page offers "Run a sample workflow".
    pub sandbox_github: bool,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Sign-ups one client address may make per hour.
    pub sign_ups_per_address: i64,
    /// Where customers reach this server (`TENKI_PUBLIC_URL` or the test's address): the start
    /// of the links Tenki gives out (invitations).
    pub public_url: String,
}

/// The server's context; its absence is a wiring bug, reported as an internal error.
pub fn context() -> Result<ServerContext, AppError> {
    use_context::<ServerContext>().ok_or_else(|| AppError::internal("ServerContext not provided"))
}

/// The signed-in caller and the workspace they act in. The workspace always comes from the
/// session (the person's first workspace), never from the request.
pub use tenki_core::workspaces::Caller;

/// The caller of this server function's request, or [`AppError::SignInRequired`].
pub async fn caller(context: &ServerContext) -> Result<Caller, AppError> {
    let headers: HeaderMap = leptos_axum::extract()
        .await
        .map_err(|_| AppError::SignInRequired)?;
    caller_of_headers(context, &headers)
        .await
        .map(|signed_in| signed_in.caller)
}

/// The signed-in caller the cookies in `headers` name, through the identity provider, with the
/// session they called with. A Kratos session that needs a second factor first is refused with
/// `second_factor_required` (the page sends the person to give it).
pub async fn caller_of_headers(
    context: &ServerContext,
    headers: &HeaderMap,
) -> Result<workspaces::SignedInCaller, AppError> {
    let core = &context.core;
    match workspaces::caller_of_request(
        &core.db,
        &core.ledger,
        &core.identity,
        cookie_values(headers),
        chrono::Utc::now(),
    )
    .await
    {
        Ok(Some(signed_in)) => Ok(signed_in),
        Ok(None) => Err(AppError::SignInRequired),
        Err(workspaces::CallerError::SecondFactorRequired) => Err(AppError::refused(
            crate::error::SECOND_FACTOR_REQUIRED,
            "Confirm it is you with your second factor to continue.",
        )),
        Err(workspaces::CallerError::Lookup(
            tenki_core::identity::provider::LookupError::Provision(
                error @ tenki_core::identity::kratos::ProvisionError::EmailBelongsToAnotherAccount,
            ),
        )) => Err(AppError::refused("email_taken", error.to_string())),
        Err(error) => Err(AppError::internal_error(&error)),
    }
}

/// The values of the `Cookie` headers in `headers`.
pub fn cookie_values(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect()
}

/// The session token from the request's cookie, if any (the built-in identity's).
pub async fn session_token() -> Option<String> {
    let headers: HeaderMap = leptos_axum::extract().await.ok()?;
    identity::session_token_from_cookies(cookie_values(&headers))
}

/// The caller's address, for rate limiting sign-ins and sign-ups: the peer, or what a trusted
/// proxy says in `X-Forwarded-For`.
pub async fn client_ip(context: &ServerContext) -> String {
    let peer = match leptos_axum::extract::<ConnectInfo<SocketAddr>>().await {
        Ok(ConnectInfo(addr)) => addr.ip(),
        Err(_) => return "unknown".to_owned(),
    };
    let headers: HeaderMap = leptos_axum::extract().await.unwrap_or_default();
    let forwarded_for = headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok());
    identity::client_address(peer, forwarded_for, &context.trusted_proxies).to_string()
}

/// Sets the response status from the error (see [`AppError::status`]) and passes the result on.
/// Every server function returns through it.
/// A page whose layout already redirects (a signed-out visit goes to sign-in) keeps the
/// redirect's status: the page's own data failing for the same reason must not turn the 302 into
/// a 401 with the dashboard's shell.
pub fn respond<T>(result: Result<T, AppError>) -> Result<T, AppError> {
    if let Err(error) = &result
        && let (Some(response), Ok(status)) = (
            use_context::<leptos_axum::ResponseOptions>(),
            http::StatusCode::from_u16(error.status()),
        )
        && !response
            .0
            .read()
            .is_ok_and(|parts| parts.status == Some(http::StatusCode::FOUND))
    {
        response.set_status(status);
    }
    result
}

/// The cookie that carries a refused form's message to the page shown again (see
/// [`show_form_again`]).
const FORM_ERROR_COOKIE: &str = "tenki_form_error";

/// This server function runs while a page is rendered on the server (not called by the page's
/// script through `/api/`): a redirect then answers the page's request.
pub async fn rendering_a_page() -> bool {
    leptos_axum::extract::<http::request::Parts>()
        .await
        .is_ok_and(|parts| !parts.uri.path().starts_with("/api/"))
}

/// The request is a form the browser posted without JavaScript: it wants a page back, not JSON.
pub async fn plain_form_post() -> bool {
    let headers: HeaderMap = leptos_axum::extract().await.unwrap_or_default();
    headers
        .get(http::header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// Separates the message from the kept fields, and a field's name from its value, in the cookie.
const FIELD_SEPARATOR: char = '\u{1f}';
const VALUE_SEPARATOR: char = '\u{1e}';

/// Answers a form posted without JavaScript and refused with `error` by showing `page` again
/// with the message and what was typed in the `kept` fields (never a password). They travel in
/// a short-lived cookie, never in the address, so no link can make the page say what Tenki did
/// not.
pub fn show_form_again(
    context: &ServerContext,
    page: &str,
    error: &AppError,
    kept: &[(&str, &str)],
) {
    let plain = |text: &str, limit: usize| -> String {
        text.chars()
            .filter(|c| *c != FIELD_SEPARATOR && *c != VALUE_SEPARATOR)
            .take(limit)
            .collect()
    };
    let mut text = plain(&error.to_string(), 300);
    for (name, value) in kept {
        text.push(FIELD_SEPARATOR);
        text.push_str(name);
        text.push(VALUE_SEPARATOR);
        text.push_str(&plain(value, 200));
    }
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    append_cookie(
        context,
        &format!("{FORM_ERROR_COOKIE}={hex}; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"),
    );
    leptos_axum::redirect(page);
}

/// The form refused without JavaScript, once: taking it removes the cookie.
pub async fn take_form_error(context: &ServerContext) -> Option<crate::auth::RefusedForm> {
    let headers: HeaderMap = leptos_axum::extract().await.ok()?;
    let hex = identity::cookie_value(
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok()),
        FORM_ERROR_COOKIE,
    )?;
    append_cookie(
        context,
        &format!("{FORM_ERROR_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    let text = bytes.and_then(|bytes| String::from_utf8(bytes).ok())?;
    let mut parts = text.split(FIELD_SEPARATOR);
    let message = parts.next().filter(|m| !m.is_empty())?.to_owned();
    let kept = parts
        .filter_map(|field| field.split_once(VALUE_SEPARATOR))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    Some(crate::auth::RefusedForm { message, kept })
}

/// Adds `cookie` to the response, `Secure` when served over https.
/// Appends `cookie` (a `Set-Cookie` value) to the response, `Secure` over https.
pub(crate) fn append_cookie(context: &ServerContext, cookie: &str) {
    let cookie = if context.secure_cookies {
        format!("{cookie}; Secure")
    } else {
        cookie.to_owned()
    };
    match HeaderValue::from_str(&cookie) {
        Ok(value) => {
            if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                response.append_header(SET_COOKIE, value);
            }
        }
        Err(e) => tracing::error!("cookie is not a valid header: {e}"),
    }
}

/// Sets the session cookie on the response (`max_age_seconds = 0` removes it).
pub fn set_session_cookie(context: &ServerContext, token: &str, max_age_seconds: i64) {
    append_cookie(
        context,
        &format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}"
        ),
    );
}
