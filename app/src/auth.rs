//! Sign-up, sign-in and sign-out: the pages and the server functions behind their forms.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::error::AppError;
use crate::self_service::IdentityFlowPage;

/// Creates an account with its workspace, e-mails the link that verifies the address (the 1,000
/// free minutes come with it), signs in and opens the page asked for before (`next`, see [`return_path`]: an invitation link) or the Overview.
#[server(prefix = "/api", endpoint = "sign-up")]
pub async fn sign_up(
    workspace: String,
    email: String,
    password: String,
    next: Option<String>,
) -> Result<(), AppError> {
    let kept = [("workspace", workspace.clone()), ("email", email.clone())];
    let page = again_with_next("/sign-up", next.as_deref());
    refused_form_shows_page(&page, &kept, async move {
        use tenki_core::identity::{self, SignUpError};

        let context = crate::server::context()?;
        built_in_only(&context)?;
        let now = chrono::Utc::now();
        let address = crate::server::client_ip(&context).await;
        let client = identity::SignUpClient {
            address: &address,
            max_per_window: context.sign_ups_per_address,
        };
        match identity::sign_up(
            &context.core.db,
            &context.core.ledger,
            &email,
            &password,
            &workspace,
            &client,
            now,
        )
        .await
        {
            Ok(signed_up) => {
                identity::verification::send_now(&context.core.db).await;
                let max_age = (signed_up.session.expires_at - now).num_seconds();
                crate::server::set_session_cookie(&context, &signed_up.session.token, max_age);
                leptos_axum::redirect(return_path(next.as_deref()));
                Ok(())
            }
            Err(SignUpError::Invalid(field)) => Err(AppError::Invalid {
                field: field.field.to_owned(),
                message: field.message,
            }),
            Err(SignUpError::EmailTaken) => Err(AppError::refused(
                "email_taken",
                "An account with this e-mail exists already. Sign in instead.",
            )),
            Err(SignUpError::TooManySignUps) => Err(AppError::refused(
                "too_many_attempts",
                "Too many sign-ups from your network. Try again in an hour.",
            )),
            Err(other) => Err(AppError::internal_error(&other)),
        }
    })
    .await
}

/// E-mails the caller a new link that confirms their address.
#[server(prefix = "/api", endpoint = "resend-verification")]
pub async fn resend_verification() -> Result<(), AppError> {
    crate::server::respond(
        async move {
            use tenki_core::identity::verification::{self, VerificationError};

            let context = crate::server::context()?;
            built_in_only(&context)?;
            let caller = crate::server::caller(&context).await?;
            let db = &context.core.db;
            let sent = async {
                let mut tx = db.begin().await?;
                verification::send_link(&mut tx, caller.user.user_id, chrono::Utc::now()).await?;
                tx.commit().await?;
                Ok::<(), VerificationError>(())
            }
            .await;
            match sent {
                Ok(()) => {
                    verification::send_now(db).await;
                    Ok(())
                }
                Err(VerificationError::AlreadyVerified) => Err(AppError::refused(
                    "already_verified",
                    "Your e-mail address is confirmed already.",
                )),
                Err(VerificationError::TooMany) => Err(AppError::refused(
                    "too_many_attempts",
                    "We sent several links in the last hour. Use the newest, or try again in an hour.",
                )),
                Err(other) => Err(AppError::internal_error(&other)),
            }
        }
        .await,
    )
}

/// Refuses the built-in identity's forms while Kratos signs people in: an account made or a
/// session opened here would bypass Kratos (its second factor, its verification).
#[cfg(feature = "ssr")]
fn built_in_only(context: &crate::server::ServerContext) -> Result<(), AppError> {
    match context.core.identity.kratos() {
        None => Ok(()),
        Some(_) => Err(AppError::refused(
            crate::error::BUILT_IN_IDENTITY_OFF,
            "Sign in through the sign-in page: this server signs people in with Ory Kratos.",
        )),
    }
}

/// `form` (the sign-in or sign-up page) keeping where to go afterwards, to show it again.
#[cfg(feature = "ssr")]
fn again_with_next(form: &str, next: Option<&str>) -> String {
    match next.map(|next| return_path(Some(next))) {
        Some(path) if path != "/" => format!("{form}?next={}", crate::dashboard::query_value(path)),
        _ => form.to_owned(),
    }
}

/// Where to go after signing in: `next` when it is a path on this site (the page a signed-out
/// visit asked for), else the Overview. Anything else (`https://…`, `//host`, `/\host`) would
/// let a link send people elsewhere after they signed in.
pub fn return_path(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(char::is_control) =>
        {
            path
        }
        _ => "/",
    }
}

/// Checks the e-mail and password, sets the session cookie and opens the page asked for before
/// (`next`, see [`return_path`]) or the Overview.
#[server(prefix = "/api", endpoint = "sign-in")]
pub async fn sign_in(
    email: String,
    password: String,
    next: Option<String>,
) -> Result<(), AppError> {
    let page = again_with_next("/sign-in", next.as_deref());
    let kept = [("email", email.clone())];
    refused_form_shows_page(&page, &kept, async move {
        use tenki_core::identity::{self, SignInError};

        let context = crate::server::context()?;
        built_in_only(&context)?;
        let ip = crate::server::client_ip(&context).await;
        let now = chrono::Utc::now();
        match identity::sign_in(&context.core.db, &email, &password, &ip, now).await {
            Ok(session) => {
                let max_age = (session.expires_at - now).num_seconds();
                crate::server::set_session_cookie(&context, &session.token, max_age);
                leptos_axum::redirect(return_path(next.as_deref()));
                Ok(())
            }
            Err(SignInError::Invalid(field)) => Err(AppError::Invalid {
                field: field.field.to_owned(),
                message: field.message,
            }),
            // One answer for both: which e-mails have an account is nobody's business.
            Err(SignInError::UnknownEmail | SignInError::WrongPassword) => Err(AppError::refused(
                "wrong_credentials",
                "Wrong e-mail or password. Try again.",
            )),
            Err(SignInError::TooManyAttempts) => Err(AppError::refused(
                "too_many_attempts",
                "Too many failed sign-ins. Wait 15 minutes and try again.",
            )),
            Err(other) => Err(AppError::internal_error(&other)),
        }
    })
    .await
}

#[cfg(feature = "ssr")]
/// Runs a sign-in or sign-up. Refused, a form the browser posted without JavaScript gets `page`
/// again with the message (not the JSON a script reads); with JavaScript the form shows it.
async fn refused_form_shows_page(
    page: &str,
    kept: &[(&str, String)],
    run: impl std::future::Future<Output = Result<(), AppError>>,
) -> Result<(), AppError> {
    let outcome = run.await;
    if let Err(error) = &outcome
        && crate::server::plain_form_post().await
        && let Ok(context) = crate::server::context()
    {
        let kept: Vec<(&str, &str)> = kept.iter().map(|(n, v)| (*n, v.as_str())).collect();
        crate::server::show_form_again(&context, page, error, &kept);
        return Ok(());
    }
    crate::server::respond(outcome)
}

/// A sign-in or sign-up posted without JavaScript and refused: the message, and what was typed
/// in the fields worth keeping (never the password), to show the form again with.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefusedForm {
    pub message: String,
    /// (field name, value typed).
    pub kept: Vec<(String, String)>,
}

impl RefusedForm {
    /// What was typed in field `name`, or nothing.
    pub fn kept(refused: Option<&Self>, name: &str) -> String {
        refused
            .and_then(|r| r.kept.iter().find(|(n, _)| n == name))
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    }
}

/// The sign-in or sign-up posted without JavaScript and refused, shown once.
#[server(prefix = "/api", endpoint = "form-error")]
pub async fn form_error() -> Result<Option<RefusedForm>, AppError> {
    let context = crate::server::context()?;
    Ok(crate::server::take_form_error(&context).await)
}

/// Ends the session and returns to the sign-in page. With Kratos, the answer is Kratos's
/// sign-out address, which the page follows (Kratos ends its session, then returns to sign-in).
#[server(prefix = "/api", endpoint = "sign-out")]
pub async fn sign_out() -> Result<Option<String>, AppError> {
    crate::server::respond(
        async move {
            let context = crate::server::context()?;
            if let Some(kratos) = context.core.identity.kratos() {
                let headers: http::HeaderMap = leptos_axum::extract().await.unwrap_or_default();
                let cookies = tenki_core::identity::kratos::cookies_for_kratos(
                    crate::server::cookie_values(&headers),
                );
                let back = format!("{}/sign-in", context.public_url);
                let logout = kratos
                    .logout_url(&cookies, &back)
                    .await
                    .map_err(|e| AppError::internal_error(&e))?;
                kratos.forget(&cookies).await;
                let to = logout.unwrap_or(back);
                if crate::server::plain_form_post().await {
                    leptos_axum::redirect(&to);
                }
                return Ok(Some(to));
            }
            if let Some(token) = crate::server::session_token().await {
                tenki_core::identity::sign_out(&context.core.db, &token)
                    .await
                    .map_err(|e| AppError::internal_error(&e))?;
            }
            crate::server::set_session_cookie(&context, "", 0);
            leptos_axum::redirect("/sign-in");
            Ok(None)
        }
        .await,
    )
}

/// The sign-in page: the built-in form, or Kratos's sign-in flow.
#[component]
pub fn SignInPage() -> impl IntoView {
    let next = leptos_router::hooks::use_query_map().with_untracked(|q| q.get("next"));
    // Someone sent here by an invitation link may have no account yet: sign-up keeps the way.
    let sign_up_href = next.as_deref().map_or_else(
        || "/sign-up".to_owned(),
        |next| format!("/sign-up?next={}", crate::dashboard::query_value(next)),
    );
    view! {
        <leptos_meta::Title text="Sign in · Tenki"/>
        <AuthCard title="Sign in to Tenki">
            <IdentityFlowPage kind="login" built_in=built_in_sign_in/>
            <p class="mt-6 text-sm text-slate-600">
                "New to Tenki? " <A href=sign_up_href attr:class="font-medium text-indigo-600 hover:underline">"Create an account"</A>
                " and get 1,000 free minutes."
            </p>
        </AuthCard>
    }
}

/// The built-in identity's sign-in form.
fn built_in_sign_in() -> impl IntoView {
    let action = ServerAction::<SignIn>::new();
    let next = leptos_router::hooks::use_query_map().with_untracked(|q| q.get("next"));
    let refused = Resource::new(|| (), |()| form_error());
    view! {
        <Suspense fallback=|| ()>
            {move || {
                let next = next.clone();
                Suspend::new(async move {
                    let refused = refused.await.ok().flatten();
                    let email = RefusedForm::kept(refused.as_ref(), "email");
                    view! {
                        <RefusedWithoutJavaScript refused/>
                        <ActionForm action=action attr:class="space-y-4">
                            {next.map(|next| view! { <input type="hidden" name="next" value=next/> })}
                            <Field label="E-mail" name="email" kind="email" autocomplete="email" value=email/>
                            <Field label="Password" name="password" kind="password" autocomplete="current-password"/>
                            <FormError result=Signal::derive(move || action.value().get())/>
                            <SubmitButton label="Sign in" pending=action.pending()/>
                        </ActionForm>
                    }
                })
            }}
        </Suspense>
    }
}

/// The sign-up page: the built-in form, or Kratos's registration flow.
#[component]
pub fn SignUpPage() -> impl IntoView {
    view! {
        <leptos_meta::Title text="Create your account · Tenki"/>
        <AuthCard title="Create your Tenki account">
            <IdentityFlowPage kind="registration" built_in=built_in_sign_up/>
            <p class="mt-6 text-sm text-slate-600">
                "Have an account? " <A href="/sign-in" attr:class="font-medium text-indigo-600 hover:underline">"Sign in"</A>
            </p>
        </AuthCard>
    }
}

/// The built-in identity's sign-up form.
fn built_in_sign_up() -> impl IntoView {
    let action = ServerAction::<SignUp>::new();
    let next = leptos_router::hooks::use_query_map().with_untracked(|q| q.get("next"));
    let refused = Resource::new(|| (), |()| form_error());
    view! {
        <Suspense fallback=|| ()>
            {move || {
                let next = next.clone();
                Suspend::new(async move {
                    let refused = refused.await.ok().flatten();
                    let workspace = RefusedForm::kept(refused.as_ref(), "workspace");
                    let email = RefusedForm::kept(refused.as_ref(), "email");
                    view! {
                        <RefusedWithoutJavaScript refused/>
                        <ActionForm action=action attr:class="space-y-4">
                            {next.map(|next| view! { <input type="hidden" name="next" value=next/> })}
                            <Field label="Workspace name" name="workspace" kind="text" autocomplete="organization" value=workspace/>
                            <Field label="E-mail" name="email" kind="email" autocomplete="email" value=email/>
                            <Field label="Password (at least 10 characters)" name="password" kind="password" autocomplete="new-password"/>
                            <FormError result=Signal::derive(move || action.value().get())/>
                            <SubmitButton label="Create account" pending=action.pending()/>
                        </ActionForm>
                    }
                })
            }}
        </Suspense>
    }
}

/// The card around the sign-in, sign-up and verification forms.
#[component]
pub fn AuthCard(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <main class="flex min-h-screen items-center justify-center bg-slate-50 px-4 py-12">
            <div class="w-full max-w-md rounded-xl border border-slate-200 bg-white p-8 shadow-sm">
                <p class="text-2xl font-bold text-indigo-600">"Tenki"</p>
                <h1 class="mt-2 text-xl font-semibold text-slate-900">{title}</h1>
                <div class="mt-6">{children()}</div>
            </div>
        </main>
    }
}

#[component]
fn Field(
    label: &'static str,
    name: &'static str,
    kind: &'static str,
    autocomplete: &'static str,
    /// What the field shows at first (what was typed before a refusal).
    #[prop(optional)]
    value: String,
) -> impl IntoView {
    // `type="email"` would let the browser refuse the form with its own tooltip; the server's
    // message is clearer and the same with or without JavaScript.
    let input_type = if kind == "password" {
        "password"
    } else {
        "text"
    };
    let input_mode = if kind == "email" { "email" } else { "text" };
    view! {
        <label class="block">
            <span class="block text-sm font-medium text-slate-700">{label}</span>
            <input
                type=input_type
                name=name
                inputmode=input_mode
                autocomplete=autocomplete
                value=value
                class="mt-1 block w-full rounded-md border border-slate-300 px-3 py-2 text-slate-900 focus:border-indigo-500 focus:outline-none"
            />
        </label>
    }
}

/// The message of a form posted without JavaScript and refused (see `form_error`).
#[component]
fn RefusedWithoutJavaScript(refused: Option<RefusedForm>) -> impl IntoView {
    refused.map(|refused| view! {
        <p role="alert" data-testid="form-refused" class="mb-4 rounded-md bg-red-50 px-3 py-2 text-sm text-red-700">{refused.message}</p>
    })
}

#[component]
fn FormError(result: Signal<Option<Result<(), AppError>>>) -> impl IntoView {
    move || {
        result.get().and_then(Result::err).map(|error| {
            view! {
                <p role="alert" data-code=error.code().to_owned() class="rounded-md bg-red-50 px-3 py-2 text-sm text-red-700">
                    {error.to_string()}
                </p>
            }
        })
    }
}

#[component]
fn SubmitButton(label: &'static str, pending: Memo<bool>) -> impl IntoView {
    view! {
        <button
            type="submit"
            disabled=move || pending.get()
            class="w-full rounded-md bg-indigo-600 px-4 py-2 font-medium text-white hover:bg-indigo-700 disabled:opacity-60"
        >
            {label}
        </button>
    }
}

#[cfg(test)]
mod tests {
    use super::return_path;

    #[test]
    fn only_paths_on_this_site_are_returned_to_after_sign_in() {
        assert_eq!(
            return_path(Some("/usage?month=2026-10")),
            "/usage?month=2026-10"
        );
        assert_eq!(return_path(Some("/")), "/");
        assert_eq!(return_path(None), "/");
        for elsewhere in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example/",
            "evil.example",
            "/usage\r\nSet-Cookie: x=1",
            "",
        ] {
            assert_eq!(return_path(Some(elsewhere)), "/", "{elsewhere:?}");
        }
    }
}
