//! Authentication for plain axum routes: the signed-in caller and their workspace, from the
//! session cookie, through the same core lookup the server functions use.

use app::error::AppError;
use app::server::Caller;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::AppState;

/// The signed-in caller; a request without a valid session is answered 401 before the handler
/// runs.
#[derive(Debug, Clone)]
pub struct SignedIn(pub Caller);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        app::server::caller_from_headers(&state.core, &parts.headers)
            .await
            .map(SignedIn)
    }
}

/// `Option<SignedIn>`: `None` without a valid session (the route then redirects to sign-in),
/// an error only when the lookup itself failed.
impl axum::extract::OptionalFromRequestParts<AppState> for SignedIn {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, AppError> {
        match app::server::caller_from_headers(&state.core, &parts.headers).await {
            Ok(caller) => Ok(Some(SignedIn(caller))),
            Err(AppError::SignInRequired) => Ok(None),
            Err(other) => Err(other),
        }
    }
}
