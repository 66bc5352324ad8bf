//! Authentication for plain axum routes: the signed-in caller and their workspace, from the
//! session cookie, looked up in `tenki-core` as the server functions do.

use app::error::AppError;
use axum::extract::FromRequestParts;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use tenki_core::identity;
use tenki_core::workspaces::{self, Caller};

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
        let cookies = || {
            parts
                .headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|value| value.to_str().ok())
        };
        let Some(session) = identity::session_token_from_cookies(cookies()) else {
            return Ok(None);
        };
        let preferred = workspaces::preferred_workspace_from_cookies(cookies());
        let caller =
            workspaces::caller_of_session(&state.core.db, &session, preferred, chrono::Utc::now())
                .await
                .map_err(|e| AppError::internal_error(&e))?;
        Ok(caller.map(|caller| Self { caller, session }))
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
