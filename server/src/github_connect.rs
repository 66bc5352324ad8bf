//! "Connect GitHub": sends the signed-in browser to the App's install page with a signed,
//! expiring `state` naming the workspace and bound to the session (`GET /github/connect`).
//! GitHub returns to `/github/setup`, the page that checks it.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::ExposeSecret as _;
use tenki_core::github_onboarding;

use crate::AppState;

/// `GET /github/connect`: to the install page, or to sign-in without a session.
pub async fn connect(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(session) = app::server::session_token_from(&headers) else {
        return Redirect::to("/sign-in").into_response();
    };
    let caller = match app::server::caller_from_headers(&state.core, &headers).await {
        Ok(caller) => caller,
        Err(_) => return Redirect::to("/sign-in").into_response(),
    };
    let signed = github_onboarding::sign_state(
        state.context.state_key.expose_secret().as_bytes(),
        &session,
        caller.member.workspace_id,
        chrono::Utc::now(),
    );
    Redirect::to(&state.core.github.install_url(&signed)).into_response()
}
