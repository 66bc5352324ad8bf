//! The Settings page's spending-limit form (`POST /settings/spending-limit`): a plain route, so it
//! works without JavaScript; it redirects back to Settings with the outcome.

use axum::extract::{Form, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tenki_core::billing::spending::{self, SpendingError};

use crate::AppState;
use crate::extract::SignedIn;

/// The form: the limit in dollars (empty: none) and the hard-cap checkbox.
#[derive(Debug, Deserialize)]
pub struct SpendingForm {
    limit: String,
    hard_cap: Option<String>,
}

/// `POST /settings/spending-limit`.
pub async fn set_limit(
    State(state): State<AppState>,
    signed_in: Option<SignedIn>,
    Form(form): Form<SpendingForm>,
) -> Response {
    let Some(SignedIn { caller, .. }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    let limit = match form.limit.trim() {
        "" => None,
        text => match tenki_core::money::parse_dollars(text.trim_start_matches('$')) {
            Some(limit) if limit > 0 => Some(limit),
            _ => return Redirect::to("/settings?error=bad_limit").into_response(),
        },
    };
    let hard_cap = form.hard_cap.is_some();
    match spending::set_limit(&state.core.db, &caller, limit, hard_cap, chrono::Utc::now()).await {
        Ok(()) => {
            if let Err(e) = spending::check(
                &state.core.db,
                caller.member.workspace_id,
                chrono::Utc::now(),
            )
            .await
            {
                tracing::warn!("spending check after a new limit: {e}");
            }
            Redirect::to("/settings?saved=1").into_response()
        }
        Err(SpendingError::NotAllowed) => {
            Redirect::to("/settings?error=not_allowed").into_response()
        }
        Err(SpendingError::BadLimit) => Redirect::to("/settings?error=bad_limit").into_response(),
        Err(error) => app::error::AppError::internal_error(&error).into_response(),
    }
}
