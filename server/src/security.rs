//! Response headers every answer carries (a Content-Security-Policy with a per-response script
//! nonce, no sniffing, no framing, HSTS over https), and the refusal of cross-site requests that
//! change state.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore as _;

/// The script nonce of one response, in the request's extensions: the page's inline hydration
/// scripts carry it, and the response's Content-Security-Policy allows only scripts that do.
#[derive(Debug, Clone)]
pub struct CspNonce(pub String);

/// What the header middleware needs to know of the deployment.
#[derive(Debug, Clone)]
pub struct HeaderPolicy {
    /// Served over https: send HSTS.
    pub https: bool,
    /// Another origin the sign-in forms post to (Kratos's, when it signs people in elsewhere).
    pub identity_origin: Option<String>,
}

/// The Content-Security-Policy for a response whose scripts carry `nonce`. Scripts: our own
/// files and nonce-carrying inline scripts only (`wasm-unsafe-eval` lets the page compile its
/// WebAssembly, nothing else); no plugins, no framing, forms post to us only, and to
/// `identity_origin` (Kratos's sign-in forms) when given.
pub fn content_security_policy(nonce: &str, identity_origin: Option<&str>) -> String {
    let identity = identity_origin.map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'self'; form-action 'self'{identity}; frame-ancestors 'none'"
    )
}

/// The origin (`scheme://host[:port]`) of `url`, if it is an http(s) address.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

/// Adds the security headers to every response, with a fresh nonce per request.
pub async fn headers(
    State(policy): State<HeaderPolicy>,
    mut request: Request,
    next: Next,
) -> Response {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    let nonce = hex::encode(bytes);
    request.extensions_mut().insert(CspNonce(nonce.clone()));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(
        &nonce,
        policy.identity_origin.as_deref(),
    )) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if policy.https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

/// Whether a request came from another site, by `Sec-Fetch-Site` (every current browser sends
/// it) or else by `Origin` compared with the `Host` it was sent to. A request with neither is
/// not a browser's cross-site request (a browser always sends one of them with a POST).
pub fn is_cross_site(headers: &axum::http::HeaderMap) -> bool {
    let value = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        // `none`: the person typed the address or used a bookmark.
        return !matches!(site, "same-origin" | "none");
    }
    match (value(header::ORIGIN), value(header::HOST)) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let authority = origin
                .split_once("://")
                .map_or(origin, |(_, rest)| rest)
                .trim_end_matches('/');
            !authority.eq_ignore_ascii_case(host)
        }
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Refuses, with 403, a cross-site request that changes state: any server function call (they
/// are POSTs: sign-in, sign-up, sign-out and the rest) and the start of "Connect GitHub". The
/// webhooks are exempt: GitHub and Stripe are other sites by nature and sign their requests.
pub async fn refuse_cross_site(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let changes_state = (request.method() == Method::POST && path.starts_with("/api/"))
        || path == "/github/connect";
    if changes_state && is_cross_site(request.headers()) {
        metrics::counter!("cross_site_requests_refused_total").increment(1);
        return (
            StatusCode::FORBIDDEN,
            "Refused: this request came from another site.",
        )
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn another_sites_requests_are_cross_site_and_ours_are_not() {
        assert!(is_cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(is_cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!is_cross_site(&headers(&[(
            "sec-fetch-site",
            "same-origin"
        )])));
        assert!(!is_cross_site(&headers(&[("sec-fetch-site", "none")])));
        assert!(is_cross_site(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "app.tenki.cloud")
        ])));
        assert!(!is_cross_site(&headers(&[
            ("origin", "https://app.tenki.cloud"),
            ("host", "app.tenki.cloud")
        ])));
        assert!(is_cross_site(&headers(&[
            ("origin", "null"),
            ("host", "a")
        ])));
        assert!(!is_cross_site(&headers(&[("host", "app.tenki.cloud")])));
    }

    #[test]
    fn the_policy_allows_only_nonce_carrying_inline_scripts() {
        let csp = content_security_policy("abc123", None);
        assert!(
            csp.contains("script-src 'self' 'nonce-abc123' 'wasm-unsafe-eval';"),
            "{csp}"
        );
        assert!(!csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }

    #[test]
    fn sign_in_forms_may_post_to_kratos_and_nowhere_else() {
        let origin = origin_of("https://auth.tenki.cloud/self-service").expect("an origin");
        assert_eq!(origin, "https://auth.tenki.cloud");
        let csp = content_security_policy("n", Some(&origin));
        assert!(
            csp.contains("form-action 'self' https://auth.tenki.cloud;"),
            "{csp}"
        );
        assert!(content_security_policy("n", None).contains("form-action 'self';"));
        assert_eq!(origin_of("javascript:alert(1)"), None);
    }
}
