//! `POST /webhooks/github`: verify, store, enqueue, answer. No GitHub API call happens here;
//! processing runs in the background queue.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use tenki_core::github::intake::{self, Envelope, Intake};

use crate::AppState;

/// Largest delivery accepted; GitHub caps payloads at 25 MB.
pub const MAX_DELIVERY_BYTES: usize = 25 * 1024 * 1024;

/// Receives one GitHub delivery: 401 for a bad or missing signature, 400 for missing headers or a
/// body that is not JSON (nothing stored in any of these), 202 once stored (queued or ignored),
/// 200 for a delivery id already stored.
pub async fn github(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let event = header("x-github-event").unwrap_or("").to_owned();
    let outcome = |outcome: &'static str| {
        metrics::counter!("github_webhook_deliveries_total", "event" => event.clone(), "outcome" => outcome)
            .increment(1);
    };
    let secret = state
        .context
        .github_webhook_secret
        .expose_secret()
        .as_bytes();
    if !intake::signature_is_valid(secret, &body, header("x-hub-signature-256")) {
        outcome("bad_signature");
        return (
            StatusCode::UNAUTHORIZED,
            "X-Hub-Signature-256 does not match this delivery",
        )
            .into_response();
    }
    let Some(delivery_id) =
        header("x-github-delivery").filter(|id| !id.is_empty() && id.len() <= 200)
    else {
        outcome("bad_request");
        return (StatusCode::BAD_REQUEST, "X-GitHub-Delivery is missing").into_response();
    };
    if event.is_empty() {
        outcome("bad_request");
        return (StatusCode::BAD_REQUEST, "X-GitHub-Event is missing").into_response();
    }
    let Some((text, envelope)) = std::str::from_utf8(&body)
        .ok()
        .and_then(|text| Some((text, Envelope::parse(text).ok()?)))
    else {
        outcome("bad_request");
        return (StatusCode::BAD_REQUEST, "the body is not a JSON object").into_response();
    };
    match intake::store_delivery(
        &state.core.db,
        delivery_id,
        &event,
        &envelope,
        text,
        chrono::Utc::now(),
    )
    .await
    {
        Ok(Intake::Queued) => {
            outcome("queued");
            (StatusCode::ACCEPTED, "queued").into_response()
        }
        Ok(Intake::Ignored) => {
            outcome("ignored");
            (
                StatusCode::ACCEPTED,
                "ignored: Tenki does not use this event",
            )
                .into_response()
        }
        Ok(Intake::Duplicate) => {
            outcome("duplicate");
            (StatusCode::OK, "already received").into_response()
        }
        Err(e) => {
            outcome("error");
            app::error::AppError::internal(format!("storing delivery {delivery_id}: {e}"))
                .into_response()
        }
    }
}
