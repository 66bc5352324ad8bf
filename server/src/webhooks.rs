//! `POST /webhooks/github` and `POST /webhooks/stripe`: verify, store, enqueue, answer. No
//! GitHub or Stripe API call happens here; processing runs in the background queue.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use tenki_core::github::intake::{self, Envelope, Intake, NewDelivery};

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
    let delivery = NewDelivery {
        delivery_id: delivery_id.to_owned(),
        event: event.clone(),
        envelope,
        body: text.to_owned(),
        received_at: chrono::Utc::now(),
    };
    match state.core.deliveries.store(delivery).await {
        Ok(Intake::Queued) => {
            state.core.delivery_wakeup.wake();
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
            let e = tenki_core::error_chain(&e);
            app::error::AppError::internal(format!("storing delivery {delivery_id}: {e}"))
                .into_response()
        }
    }
}

/// Receives one Stripe event: 401 for a bad, stale (over 300 s) or missing `Stripe-Signature`,
/// 400 for a signed body that is not an event (nothing stored in any of these), 200 once stored
/// (queued or ignored) and for an event id already stored.
pub async fn stripe(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let outcome = |outcome: &'static str| {
        metrics::counter!("stripe_webhook_events_total", "outcome" => outcome).increment(1);
    };
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Ok(text) = std::str::from_utf8(&body) else {
        outcome("bad_request");
        return (StatusCode::BAD_REQUEST, "the body is not UTF-8").into_response();
    };
    // The crate checks every `v1` value and the timestamp, then parses the event into its
    // types. A body that fails only that parse was signed by Stripe (an event type or field
    // this version of the crate does not know): it is stored all the same, as Tenki reads
    // events as JSON.
    use stripe_webhook::{Webhook, WebhookError};
    match Webhook::construct_event(text, signature, state.stripe_webhook_secret.expose_secret()) {
        Ok(_) | Err(WebhookError::BadParse(_)) => {}
        Err(error) => {
            outcome("bad_signature");
            return (
                StatusCode::UNAUTHORIZED,
                format!("Stripe-Signature does not match this event: {error}"),
            )
                .into_response();
        }
    }
    let Some(envelope) = tenki_core::billing::events::Envelope::parse(text) else {
        outcome("bad_request");
        return (StatusCode::BAD_REQUEST, "the body is not a Stripe event").into_response();
    };
    use tenki_core::billing::events::{self, Intake};
    match events::store_event(&state.core.db, &envelope, text, chrono::Utc::now()).await {
        Ok(Intake::Queued) => {
            state.core.delivery_wakeup.wake();
            outcome("queued");
            (StatusCode::OK, "queued").into_response()
        }
        Ok(Intake::Ignored) => {
            outcome("ignored");
            (StatusCode::OK, "ignored: Tenki does not act on this event").into_response()
        }
        Ok(Intake::Duplicate) => {
            outcome("duplicate");
            (StatusCode::OK, "already received").into_response()
        }
        Err(e) => {
            outcome("error");
            app::error::AppError::internal(format!("storing Stripe event {}: {e}", envelope.id))
                .into_response()
        }
    }
}
