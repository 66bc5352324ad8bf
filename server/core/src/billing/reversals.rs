//! Payments undone after they were recorded (SPEC §9): a refund Tenki gave from Stripe
//! (`charge.refunded`), a dispute the customer's bank opened (`charge.dispute.created`), and a
//! reversal support makes with `tenki admin reverse-payment` (audited with reason and e-mail).
//!
//! A refund is money Tenki gave back on purpose: it comes out of REVENUE and the customer owes
//! nothing. A dispute or a reversal undoes the payment: the amount goes back onto the
//! workspace's account, the invoice reads `reversed` (owed again) and the owner is told.
//! Each reversal has a key its ledger transfer id derives from, so an event seen twice or a
//! command run twice changes nothing; no payment is ever reversed for more than was paid.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use stripe_core::charge::RetrieveCharge;
use stripe_core::dispute::RetrieveDispute;
use uuid::Uuid;

use super::invoices::notify;
use super::stripe::{Stripe, StripeCallError};
use crate::ledger::Ledger;
use crate::ledger::adjustments::AdminRequest;
use crate::money::MICRO_CENTS_PER_CENT;

/// Why a payment was undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReversalKind {
    /// Tenki gave the money back (from Stripe's dashboard): REVENUE pays for it.
    Refund,
    /// The customer's bank took the money back: the workspace owes it again.
    Dispute,
    /// Support undid the payment: the workspace owes it again.
    Admin,
}

impl ReversalKind {
    fn key(self) -> &'static str {
        match self {
            Self::Refund => "refund",
            Self::Dispute => "dispute",
            Self::Admin => "admin",
        }
    }
}

/// What a reversal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reversed {
    /// This many cents were reversed now.
    Done(i64),
    /// The same reversal was made before; nothing changed now.
    AlreadyDone,
    /// Everything paid was reversed before.
    NothingLeft,
    /// No payment Tenki recorded matches (another Stripe account's charge, or not an invoice's).
    UnknownPayment,
}

/// Why a reversal was refused or failed; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ReversalError {
    #[error("give a reason and the admin's e-mail")]
    MissingReasonOrAdmin,
    #[error("invoice {0} has no payment to reverse")]
    NotPaid(Uuid),
    #[error(transparent)]
    Stripe(#[from] StripeCallError),
    #[error("ledger")]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// Stripe says a charge was refunded: reads the charge from Stripe and reverses, from REVENUE,
/// what it refunded beyond what Tenki reversed before. Out of order or twice, the total stays
/// Stripe's `amount_refunded`.
pub async fn refunded_in_stripe(
    db: &PgPool,
    stripe: &Stripe,
    ledger: &Ledger,
    charge_id: &str,
    now: DateTime<Utc>,
) -> Result<Reversed, ReversalError> {
    let charge = RetrieveCharge::new(charge_id)
        .send(stripe.client())
        .await
        .map_err(|e| StripeCallError::of("reading the refunded charge", e))?;
    let Some(intent) = charge.payment_intent.as_ref().map(|i| i.id().to_string()) else {
        return Ok(Reversed::UnknownPayment);
    };
    let Some(invoice_id) = payment_of_intent(db, &intent).await? else {
        return Ok(Reversed::UnknownPayment);
    };
    let refunded_before: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(amount_cents), 0)::bigint FROM payment_reversals
         WHERE invoice_id = $1 AND kind = 'refund'",
    )
    .bind(invoice_id)
    .fetch_one(db)
    .await?;
    let more = charge.amount_refunded - refunded_before;
    if more <= 0 {
        return Ok(Reversed::AlreadyDone);
    }
    reverse(
        db,
        ledger,
        invoice_id,
        ReversalKind::Refund,
        &format!("refund:{charge_id}:{}", charge.amount_refunded),
        more,
        "refunded in Stripe",
        None,
        now,
    )
    .await
}

/// Stripe says a dispute was opened: reads it from Stripe and reverses the disputed amount onto
/// the workspace's account (it owes the invoice again).
pub async fn disputed_in_stripe(
    db: &PgPool,
    stripe: &Stripe,
    ledger: &Ledger,
    dispute_id: &str,
    now: DateTime<Utc>,
) -> Result<Reversed, ReversalError> {
    let dispute = RetrieveDispute::new(dispute_id)
        .send(stripe.client())
        .await
        .map_err(|e| StripeCallError::of("reading the dispute", e))?;
    let intent = match dispute.payment_intent.as_ref() {
        Some(intent) => Some(intent.id().to_string()),
        None => RetrieveCharge::new(dispute.charge.id().as_str())
            .send(stripe.client())
            .await
            .map_err(|e| StripeCallError::of("reading the disputed charge", e))?
            .payment_intent
            .map(|i| i.id().to_string()),
    };
    let invoice_id = match intent {
        Some(intent) => payment_of_intent(db, &intent).await?,
        None => None,
    };
    let Some(invoice_id) = invoice_id else {
        return Ok(Reversed::UnknownPayment);
    };
    reverse(
        db,
        ledger,
        invoice_id,
        ReversalKind::Dispute,
        &format!("dispute:{dispute_id}"),
        dispute.amount,
        &format!("disputed by the card's bank ({})", dispute.reason),
        None,
        now,
    )
    .await
}

/// Support undoes what is left of an invoice's payment (`tenki admin reverse-payment`), with a
/// reason and the admin's e-mail, audited. Once per invoice.
pub async fn reverse_by_admin(
    db: &PgPool,
    ledger: &Ledger,
    invoice_id: Uuid,
    request: &AdminRequest,
    now: DateTime<Utc>,
) -> Result<Reversed, ReversalError> {
    if !request.is_complete() {
        return Err(ReversalError::MissingReasonOrAdmin);
    }
    reverse(
        db,
        ledger,
        invoice_id,
        ReversalKind::Admin,
        &format!("admin:{invoice_id}"),
        i64::MAX,
        request.reason.trim(),
        Some(request.admin_email.trim()),
        now,
    )
    .await
}

async fn payment_of_intent(db: &PgPool, intent: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT invoice_id FROM payments WHERE stripe_payment_intent = $1")
        .bind(intent)
        .fetch_optional(db)
        .await
}

/// Reverses up to `cents` of the invoice's payment, never more than is left, once per `key`.
#[expect(
    clippy::too_many_arguments,
    reason = "one private step with named callers"
)]
async fn reverse(
    db: &PgPool,
    ledger: &Ledger,
    invoice_id: Uuid,
    kind: ReversalKind,
    key: &str,
    cents: i64,
    reason: &str,
    admin_email: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Reversed, ReversalError> {
    let mut tx = db.begin().await?;
    // The payment row is the lock: reversals of one payment are made one at a time.
    let payment: Option<(Uuid, i64, chrono::NaiveDate)> = sqlx::query_as(
        "SELECT p.workspace_id, p.amount_cents, i.month FROM payments p
         JOIN invoices i ON i.id = p.invoice_id WHERE p.invoice_id = $1 FOR UPDATE OF p",
    )
    .bind(invoice_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((workspace_id, paid, month)) = payment else {
        return Err(ReversalError::NotPaid(invoice_id));
    };
    let done: Option<String> =
        sqlx::query_scalar("SELECT key FROM payment_reversals WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
    if done.is_some() {
        return Ok(Reversed::AlreadyDone);
    }
    let reversed_before: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(amount_cents), 0)::bigint FROM payment_reversals WHERE invoice_id = $1",
    )
    .bind(invoice_id)
    .fetch_one(&mut *tx)
    .await?;
    let amount = cents.min(paid - reversed_before);
    if amount <= 0 {
        return Ok(Reversed::NothingLeft);
    }
    let transfer = ledger
        .post_payment_reversal(
            workspace_id,
            key,
            amount * MICRO_CENTS_PER_CENT,
            kind == ReversalKind::Refund,
        )
        .await?;
    sqlx::query(
        "INSERT INTO payment_reversals (key, invoice_id, workspace_id, kind, amount_cents, reason,
             admin_email, transfer_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(key)
    .bind(invoice_id)
    .bind(workspace_id)
    .bind(kind.key())
    .bind(amount)
    .bind(reason)
    .bind(admin_email)
    .bind(Uuid::from_u128(transfer))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let dollars = format!("${}.{:02}", amount / 100, amount % 100);
    let message = match kind {
        ReversalKind::Refund => format!(
            "{dollars} of the payment for {} was refunded to your card.",
            month.format("%B %Y")
        ),
        ReversalKind::Dispute | ReversalKind::Admin => {
            sqlx::query("UPDATE invoices SET state = 'reversed', updated_at = $2 WHERE id = $1")
                .bind(invoice_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            format!(
                "{dollars} of the payment for {} was reversed ({reason}); the invoice is owed again. Contact support to settle it.",
                month.format("%B %Y")
            )
        }
    };
    notify(&mut tx, workspace_id, kind.key(), &message, key, now).await?;
    if let Some(admin_email) = admin_email {
        super::enterprise::audit(
            &mut tx,
            workspace_id,
            "payment_reversal",
            &format!(
                "reversed {dollars} of the invoice for {}",
                month.format("%B %Y")
            ),
            &AdminRequest {
                admin_email: admin_email.to_owned(),
                reason: reason.to_owned(),
            },
            now,
        )
        .await?;
    }
    tx.commit().await?;
    tracing::info!(%invoice_id, kind = kind.key(), amount, "payment reversed");
    Ok(Reversed::Done(amount))
}
