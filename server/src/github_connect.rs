//! "Connect GitHub": `GET /github/connect` sends the signed-in browser to the App's install page
//! with a signed, expiring `state` naming the workspace and bound to the session; GitHub returns
//! to `GET /github/setup`, which checks it, links the installation and redirects to the result
//! page (`/github/connected`). The work happens once, in this request: the result page only
//! shows it, and a reload does not replay GitHub's single-use code.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use tenki_core::github::onboarding::{self, SetupOutcome, SetupReturn};

use crate::AppState;
use crate::extract::SignedIn;

/// `GET /github/connect`: to the install page, or to sign-in without a session.
pub async fn connect(State(state): State<AppState>, signed_in: Option<SignedIn>) -> Response {
    let Some(SignedIn { caller, session }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    // Members read; connecting GitHub is for owners and admins (checked again at setup).
    if !caller.member.role.may_manage() {
        return to_result("refused=not_allowed");
    }
    let signed = onboarding::sign_state(
        state.context.state_key.expose_secret().as_bytes(),
        &session,
        caller.member.workspace_id,
        chrono::Utc::now(),
    );
    Redirect::to(&state.core.github.install_url(&signed)).into_response()
}

/// What GitHub puts in the setup URL. Nothing in it is trusted.
#[derive(Debug, Deserialize)]
pub struct SetupQuery {
    installation_id: Option<String>,
    setup_action: Option<String>,
    code: Option<String>,
    state: Option<String>,
}

/// `GET /github/setup`: finishes connecting GitHub, then redirects to `/github/connected` with
/// the outcome: `account=…`, `awaiting=1`, or `refused=<code>` (and the installation id).
pub async fn setup(
    State(state): State<AppState>,
    signed_in: Option<SignedIn>,
    Query(query): Query<SetupQuery>,
) -> Response {
    let Some(SignedIn { caller, session }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    let installation_id = match query.installation_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => match raw.parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => return to_result("refused=missing_installation"),
        },
    };
    let setup = SetupReturn {
        installation_id,
        setup_action: query.setup_action,
        code: query.code,
        state: query.state,
    };
    let outcome = onboarding::complete_setup(
        &state.core.db,
        &state.core.github,
        state.context.state_key.expose_secret().as_bytes(),
        &session,
        &caller,
        &setup,
        chrono::Utc::now(),
    )
    .await;
    match outcome {
        Ok(SetupOutcome::Linked { account, .. }) => {
            to_result(&format!("account={}", encode(&account)))
        }
        Ok(SetupOutcome::AwaitingApproval) => to_result("awaiting=1"),
        Err(error) => {
            let code = error.code();
            if code == "internal" {
                tracing::error!("GitHub setup failed: {}", tenki_core::error_chain(&error));
            } else {
                tracing::info!(
                    code,
                    "GitHub setup refused: {}",
                    tenki_core::error_chain(&error)
                );
            }
            let installation =
                installation_id.map_or_else(String::new, |id| format!("&installation={id}"));
            to_result(&format!("refused={code}{installation}"))
        }
    }
}

fn to_result(query: &str) -> Response {
    Redirect::to(&format!("/github/connected?{query}")).into_response()
}

/// `value` made safe for a query string.
fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
