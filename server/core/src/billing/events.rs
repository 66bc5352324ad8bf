//! Stripe's webhook events: stored with their processing job in one statement before the 2xx
//! (like GitHub's deliveries), then processed in the background queue.
//!
//! The handler verifies the signature (`stripe_webhook::Webhook`, every `v1` value, 300 s
//! tolerance) before anything here runs. Processing never trusts the event's copy of an object:
//! it reads the current state from Stripe, so an event seen twice or out of order changes nothing.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::cards::{self, CardError, Synced};
use super::stripe::Stripe;

/// The queue task that processes one stored event.
pub const PROCESS_EVENT_TASK: &str = "process_stripe_event";
/// Attempts before an event's processing is given up (graphile_worker's back-off: ~1 day).
const MAX_ATTEMPTS: i16 = 25;

/// The events Tenki processes. Others are stored as `ignored`.
pub const HANDLED_EVENTS: [&str; 10] = [
    "checkout.session.completed",
    "setup_intent.succeeded",
    "payment_method.attached",
    "payment_method.detached",
    "customer.updated",
    "invoice.paid",
    "invoice.finalized",
    "invoice.payment_failed",
    "charge.refunded",
    "charge.dispute.created",
];

/// What storing an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// Stored with its processing job.
    Queued,
    /// Stored; Tenki does not act on this type.
    Ignored,
    /// This event id was stored before; nothing changed.
    Duplicate,
}

/// The fields of an event the intake needs, read from its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    pub type_: String,
}

impl Envelope {
    /// Reads `id` and `type` from an event's body; `None` for a body that is not an event.
    pub fn parse(body: &str) -> Option<Self> {
        let value: Value = serde_json::from_str(body).ok()?;
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty() && text.len() <= 255)
                .map(str::to_owned)
        };
        Some(Self {
            id: field("id")?,
            type_: field("type")?,
        })
    }
}

/// Stores a verified event and, for a handled type, its processing job, in one statement.
pub async fn store_event(
    db: &PgPool,
    envelope: &Envelope,
    body: &str,
    now: DateTime<Utc>,
) -> Result<Intake, sqlx::Error> {
    let handled = HANDLED_EVENTS.contains(&envelope.type_.as_str());
    let status = if handled { "queued" } else { "ignored" };
    // graphile_worker's `add_job` is created by the worker's migrations: checked at run time.
    let stored = sqlx::query(
        "WITH stored AS (
             INSERT INTO stripe_events (event_id, type, body, received_at, status)
             VALUES ($1, $2, $3::text::jsonb, $4, $5)
             ON CONFLICT (event_id) DO NOTHING
             RETURNING event_id, status)
         SELECT stored.event_id,
                CASE WHEN stored.status = 'queued' THEN
                    graphile_worker.add_job(identifier => $6,
                        payload => json_build_object('event_id', stored.event_id),
                        max_attempts => $7::smallint) END
         FROM stored",
    )
    .bind(&envelope.id)
    .bind(&envelope.type_)
    .bind(body)
    .bind(now)
    .bind(status)
    .bind(PROCESS_EVENT_TASK)
    .bind(MAX_ATTEMPTS)
    .execute(db)
    .await?;
    Ok(match (stored.rows_affected(), handled) {
        (0, _) => Intake::Duplicate,
        (_, true) => Intake::Queued,
        (_, false) => Intake::Ignored,
    })
}

/// What processing an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// The customer's cards were read from Stripe and recorded.
    CardsSynced(Synced),
    /// The event names no customer Tenki can find (nothing to do).
    NoCustomer,
    /// An invoice's payment recorded from Stripe's word (`true`), or it was not paid after all.
    InvoicePaid(bool),
    /// A refund or dispute: the payment reversed as far as Stripe says.
    Reversal(super::reversals::Reversed),
    /// Kept for support; Tenki's own steps already did what the event reports (invoice finalized,
    /// payment failed).
    Noted,
    /// Processed before.
    AlreadyDone,
}

/// Why processing failed; the queue retries.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("no Stripe event {0} is stored")]
    Unknown(String),
    #[error("cards")]
    Cards(#[from] CardError),
    #[error("invoice")]
    Invoice(#[from] super::invoices::InvoiceError),
    #[error("payment reversal")]
    Reversal(#[from] super::reversals::ReversalError),
    #[error("free-minute grant")]
    Grant(#[from] crate::identity::grants::GrantError),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// Processes the stored event `event_id`.
pub async fn process_event(
    db: &PgPool,
    stripe: &Stripe,
    ledger: &crate::ledger::Ledger,
    event_id: &str,
    now: DateTime<Utc>,
) -> Result<Processed, EventError> {
    let Some(row) = sqlx::query!(
        "SELECT type AS kind, body, status FROM stripe_events WHERE event_id = $1",
        event_id,
    )
    .fetch_optional(db)
    .await?
    else {
        return Err(EventError::Unknown(event_id.to_owned()));
    };
    if row.status == "processed" {
        return Ok(Processed::AlreadyDone);
    }
    let outcome = match row.kind.as_str() {
        "invoice.paid" => match object_id(&row.body) {
            Some(invoice) => Processed::InvoicePaid(
                super::invoices::paid_in_stripe(db, stripe, ledger, invoice, now).await?,
            ),
            None => Processed::Noted,
        },
        "charge.refunded" => match object_id(&row.body) {
            Some(charge) => Processed::Reversal(
                super::reversals::refunded_in_stripe(db, stripe, ledger, charge, now).await?,
            ),
            None => Processed::Noted,
        },
        "charge.dispute.created" => match object_id(&row.body) {
            Some(dispute) => Processed::Reversal(
                super::reversals::disputed_in_stripe(db, stripe, ledger, dispute, now).await?,
            ),
            None => Processed::Noted,
        },
        kind if kind.starts_with("invoice.") => Processed::Noted,
        _ => sync_customer(db, stripe, ledger, &row.kind, &row.body, now).await?,
    };
    sqlx::query!(
        "UPDATE stripe_events SET status = 'processed', processed_at = $2, last_error = NULL
         WHERE event_id = $1",
        event_id,
        now,
    )
    .execute(db)
    .await?;
    Ok(outcome)
}

/// A card event: the customer's cards read from Stripe and recorded.
async fn sync_customer(
    db: &PgPool,
    stripe: &Stripe,
    ledger: &crate::ledger::Ledger,
    kind: &str,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<Processed, EventError> {
    let customer = match customer_named(kind, body) {
        Some(customer) => Some(customer),
        // A detached card no longer names its customer; Tenki's records do.
        None if kind == "payment_method.detached" => match object_id(body) {
            Some(card) => cards::customer_of_card(db, card).await?,
            None => None,
        },
        None => None,
    };
    Ok(match customer {
        Some(customer) => {
            let synced = cards::sync_cards(db, stripe, &customer, now).await?;
            if let cards::Synced::Cards {
                workspace_id,
                cards: 1..,
            } = synced
            {
                // A card is what a throwaway address's free minutes wait for.
                crate::identity::grants::decide(db, ledger, workspace_id, now).await?;
            }
            Processed::CardsSynced(synced)
        }
        None => Processed::NoCustomer,
    })
}

/// Notes a failed attempt on the event (the queue retries it).
pub async fn record_failure(db: &PgPool, event_id: &str, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE stripe_events SET status = 'failed', last_error = $2 WHERE event_id = $1",
        event_id,
        error,
    )
    .execute(db)
    .await?;
    Ok(())
}

fn object_id(body: &Value) -> Option<&str> {
    body.pointer("/data/object/id").and_then(Value::as_str)
}

/// The Stripe customer an event is about: the object itself for `customer.*`, else its
/// `customer` field (a string, or an expanded object), else the customer it had before the change.
fn customer_named(type_: &str, body: &Value) -> Option<String> {
    if type_.starts_with("customer.") {
        return object_id(body).map(str::to_owned);
    }
    let field = |value: Option<&Value>| match value {
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Object(object)) => object.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    field(body.pointer("/data/object/customer"))
        .or_else(|| field(body.pointer("/data/previous_attributes/customer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_card_is_traced_to_its_customer_through_previous_attributes() {
        let body = serde_json::json!({
            "type": "payment_method.detached",
            "data": {"object": {"id": "pm_1", "customer": null},
                     "previous_attributes": {"customer": "cus_9"}}
        });
        assert_eq!(
            customer_named("payment_method.detached", &body).as_deref(),
            Some("cus_9")
        );
    }

    #[test]
    fn a_customer_event_names_the_customer_itself() {
        let body = serde_json::json!({"data": {"object": {"id": "cus_1", "object": "customer"}}});
        assert_eq!(
            customer_named("customer.updated", &body).as_deref(),
            Some("cus_1")
        );
    }

    #[test]
    fn an_event_without_id_or_type_is_not_an_event() {
        assert_eq!(Envelope::parse(r#"{"type": "x"}"#), None);
        assert_eq!(Envelope::parse("not json"), None);
        assert_eq!(
            Envelope::parse(r#"{"id": "evt_1", "type": "invoice.paid"}"#),
            Some(Envelope {
                id: "evt_1".to_owned(),
                type_: "invoice.paid".to_owned()
            })
        );
    }
}
