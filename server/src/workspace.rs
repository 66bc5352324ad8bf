//! The Settings page's workspace-name form (`POST /settings/workspace-name`): a plain route, so it
//! works without JavaScript; it redirects back to Settings with the outcome.

use axum::extract::{Form, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tenki_core::workspaces::{self, RenameError};

use crate::AppState;
use crate::extract::SignedIn;

/// The form: the new name.
#[derive(Debug, Deserialize)]
pub struct NameForm {
    name: String,
}

/// `POST /settings/workspace-name`.
pub async fn rename(
    State(state): State<AppState>,
    signed_in: Option<SignedIn>,
    Form(form): Form<NameForm>,
) -> Response {
    let Some(SignedIn { caller, .. }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    match workspaces::rename(&state.core.db, &caller, &form.name, chrono::Utc::now()).await {
        Ok(()) => Redirect::to("/settings?renamed=1").into_response(),
        Err(RenameError::NotAllowed) => {
            Redirect::to("/settings?error=rename_not_allowed").into_response()
        }
        Err(RenameError::Invalid(_)) => Redirect::to("/settings?error=bad_name").into_response(),
        Err(error) => app::error::AppError::internal_error(&error).into_response(),
    }
}
