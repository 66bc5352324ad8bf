//! `GET /verify-email?token=…`: the link e-mailed at sign-up. Confirms the address (the free
//! minutes come with it, `tenki_core::identity::grants`) and opens the Overview, which says how
//! it went. Works signed in or not: the token alone says whose address it is.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tenki_core::identity::verification::{self, VerificationError};

use crate::AppState;

/// The link's query.
#[derive(Debug, Deserialize)]
pub struct VerifyQuery {
    #[serde(default)]
    token: String,
}

/// Confirms the address the link was sent to and redirects to `/?email=<outcome>`.
pub async fn verify_email(
    State(state): State<AppState>,
    Query(query): Query<VerifyQuery>,
) -> Response {
    let outcome = match verification::verify(
        &state.core.db,
        &state.core.ledger,
        &query.token,
        chrono::Utc::now(),
    )
    .await
    {
        Ok(_) => "verified",
        Err(VerificationError::Unknown) => "unknown_link",
        Err(VerificationError::Expired) => "expired_link",
        Err(VerificationError::AddressChanged) => "address_changed",
        Err(error) => return app::error::AppError::internal_error(&error).into_response(),
    };
    Redirect::to(&format!("/?email={outcome}")).into_response()
}
