//! Authentication for plain axum routes: the signed-in caller and their workspace, from the
//! session cookie, looked up through the identity provider as the server functions do.

use app::error::AppError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tenki_core::workspaces::Caller;

use crate::AppState;

/// The signed-in caller; a request without a valid session is answered 401 before the handler
/// runs.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub caller: Caller,
    /// The session token, for what is bound to the session (GitHub onboarding's `state`).
    pub session: String,
}

impl SignedIn {
    async fn of(parts: &Parts, state: &AppState) -> Result<Option<Self>, AppError> {
        match app::server::caller_of_headers(&state.context, &parts.headers).await {
            Ok(signed_in) => Ok(Some(Self {
                caller: signed_in.caller,
                session: signed_in.session_key,
            })),
            Err(AppError::SignInRequired) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        Self::of(parts, state)
            .await?
            .ok_or(AppError::SignInRequired)
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
        Self::of(parts, state).await
    }
}
