//! The Billing page's actions that leave Tenki: "Add a card" (to Stripe Checkout), the return
//! from Checkout, and "Manage billing" (to Stripe's billing portal). Plain routes, because each
//! ends in a redirect to Stripe or back to the Billing page with the outcome in its query.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tenki_core::billing::cards::{self, CardError, CheckoutOutcome, ReturnUrls};

use crate::AppState;
use crate::extract::SignedIn;

fn return_urls(state: &AppState) -> ReturnUrls {
    ReturnUrls {
        card_added: format!(
            "{}/billing/card-added?session_id={{CHECKOUT_SESSION_ID}}",
            state.public_url
        ),
        billing_page: format!("{}/billing", state.public_url),
    }
}

/// Back to the Billing page, saying how it went (`?card=…`).
fn to_billing(outcome: &str) -> Response {
    Redirect::to(&format!("/billing?card={outcome}")).into_response()
}

fn refused(error: CardError) -> Response {
    match error {
        CardError::NotAllowed => to_billing("not_allowed"),
        CardError::OtherWorkspace => to_billing("other_workspace"),
        CardError::Stripe(_) | CardError::NoCheckoutUrl => {
            tracing::warn!("Stripe: {}", tenki_core::error_chain(&error));
            to_billing("stripe_unavailable")
        }
        CardError::OddExpiry(_) | CardError::Database(_) => {
            app::error::AppError::internal_error(&error).into_response()
        }
    }
}

/// `POST /billing/add-card`: to a Stripe Checkout session in setup mode.
pub async fn add_card(State(state): State<AppState>, signed_in: Option<SignedIn>) -> Response {
    let Some(SignedIn { caller, .. }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    match cards::start_checkout(
        &state.core.db,
        &state.core.stripe,
        &caller,
        &return_urls(&state),
    )
    .await
    {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(error) => refused(error),
    }
}

/// What Stripe puts in the success URL.
#[derive(Debug, Deserialize)]
pub struct CardAddedQuery {
    session_id: Option<String>,
}

/// `GET /billing/card-added?session_id=`: records the card now (the webhook would too), then
/// back to the Billing page.
pub async fn card_added(
    State(state): State<AppState>,
    signed_in: Option<SignedIn>,
    Query(query): Query<CardAddedQuery>,
) -> Response {
    let Some(SignedIn { caller, .. }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    let Some(session_id) = query
        .session_id
        .filter(|id| !id.is_empty() && id.len() <= 255)
    else {
        return to_billing("missing_session");
    };
    match cards::complete_checkout(
        &state.core.db,
        &state.core.stripe,
        &caller,
        &session_id,
        chrono::Utc::now(),
    )
    .await
    {
        Ok(CheckoutOutcome::CardAdded { .. }) => {
            // A card is what a throwaway address's free minutes wait for.
            if let Err(error) = tenki_core::identity::grants::decide(
                &state.core.db,
                &state.core.ledger,
                caller.member.workspace_id,
                chrono::Utc::now(),
            )
            .await
            {
                // The card's webhook decides again; the card itself is recorded.
                tracing::warn!("deciding the free minutes after a card: {error}");
            }
            to_billing("added")
        }
        Ok(CheckoutOutcome::NotFinished) => to_billing("pending"),
        Err(error) => refused(error),
    }
}

/// `POST /billing/manage`: to Stripe's billing portal, which returns to the Billing page.
pub async fn manage(State(state): State<AppState>, signed_in: Option<SignedIn>) -> Response {
    let Some(SignedIn { caller, .. }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    match cards::portal_url(
        &state.core.db,
        &state.core.stripe,
        &caller,
        &return_urls(&state),
    )
    .await
    {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(error) => refused(error),
    }
}
