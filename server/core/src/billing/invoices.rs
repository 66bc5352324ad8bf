//! Invoices and the monthly cycle (SPEC §9).
//!
//! On the 1st (UTC) every workspace with something to bill for the previous month gets one
//! invoice, a local state machine unique per (workspace, month):
//!
//! ```text
//! draft → lines_built → stripe_created → items_added → finalized → paid
//!            │                                              └→ payment_failed → (retries) → paid | uncollectible
//!            ├→ nothing_due   (a zero total is not charged)
//!            └→ carried       (under Stripe's minimum charge: added to next month's invoice)
//! ```
//!
//! Each step saves what it got from Stripe before the next one runs, and every Stripe POST
//! carries an idempotency key from (invoice, step, attempt): a step retried after a crash gets
//! Stripe's first answer, never a second invoice, item or charge. Steps run as one durable queue
//! job per invoice ([`ADVANCE_TASK`]); an hourly sweep re-enqueues any invoice left in a step.
//! Tenki owns the retries (`auto_advance=false`).
//!
//! Rounding: each line's exact micro-cents are rounded half up to the cent; the invoice total is
//! the sum of the lines' cents. The sub-cent rest stays on the workspace's ledger account.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use sqlx::PgPool;
use stripe::StripeRequest as _;
use stripe_billing::invoice::{
    CreateInvoice, CreateInvoicePendingInvoiceItemsBehavior, FinalizeInvoiceInvoice, PayInvoice,
    RetrieveInvoice,
};
use stripe_billing::invoice_item::CreateInvoiceItem;
use stripe_core::payment_intent::RetrievePaymentIntent;
use stripe_shared::{InvoiceCollectionMethod, InvoiceStatus};
use uuid::Uuid;

use super::addons::{Addon, SlotClass, start_of_next_month};
use super::stripe::{Stripe, StripeCallError, idempotent};
use crate::ledger::Ledger;
use crate::money::MICRO_CENTS_PER_CENT;
use crate::queue::{self, NewJob};
use crate::usage::Month;

/// The queue task that moves one invoice forward.
pub const ADVANCE_TASK: &str = "advance_invoice";
/// Attempts of one invoice's advance job before the queue gives up (the hourly sweep resumes it).
const ADVANCE_MAX_ATTEMPTS: i16 = 25;
/// Stripe's minimum charge in USD: a smaller total is carried to the next month.
pub const MINIMUM_CHARGE_CENTS: i64 = 50;
/// Days after the first failed payment on which it is tried again.
pub const RETRY_DAYS: [i64; 5] = [3, 5, 7, 14, 21];
/// The day of the month after the invoice's on which a still unpaid workspace is suspended.
pub const SUSPENSION_DAY: u32 = 10;

/// Why a step failed; the queue retries it.
#[derive(Debug, thiserror::Error)]
pub enum InvoiceError {
    #[error("no invoice {0}")]
    Unknown(Uuid),
    #[error("workspace {0} has no Stripe customer (no card was ever added)")]
    NoCustomer(Uuid),
    #[error(transparent)]
    Stripe(#[from] StripeCallError),
    #[error("Stripe answered what Tenki cannot use: {0}")]
    Unexpected(String),
    #[error("ledger")]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// The first instant of the month whose first day is `month`.
fn month_start(month: NaiveDate) -> DateTime<Utc> {
    Month::of_day(month).start()
}

/// The month before the one `now` is in (the month the cycle on the 1st bills).
pub fn previous_month(now: DateTime<Utc>) -> NaiveDate {
    Month::containing(now).previous().first_day()
}

/// Micro-cents to cents, half up (documented in the module).
pub fn to_cents(micro_cents: i64) -> i64 {
    (micro_cents + MICRO_CENTS_PER_CENT / 2).div_euclid(MICRO_CENTS_PER_CENT)
}

/// How Stripe collected an invoice: the payment intent (its refunds and disputes name it) and
/// Stripe's exact fee from the charge's balance transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaidWith {
    pub payment_intent: Option<String>,
    pub fee_cents: i64,
}

/// Reads how a paid Stripe invoice was collected (its `payments` expanded): the payment intent,
/// and the fee from its latest charge's balance transaction.
pub async fn paid_with(
    stripe: &Stripe,
    invoice: &stripe_shared::Invoice,
) -> Result<PaidWith, InvoiceError> {
    let intent = invoice
        .payments
        .as_ref()
        .and_then(|payments| {
            payments
                .data
                .iter()
                .find(|p| p.is_default)
                .or(payments.data.first())
        })
        .and_then(|payment| payment.payment.payment_intent.as_ref())
        .map(|intent| intent.id().to_string());
    let Some(intent) = intent else {
        // Paid without a card payment (out of band, or by the customer's credit balance).
        return Ok(PaidWith::default());
    };
    let read = RetrievePaymentIntent::new(intent.as_str())
        .expand(["latest_charge.balance_transaction".to_owned()])
        .send(stripe.client())
        .await
        .map_err(|e| StripeCallError::of("reading the payment's fee", e))?;
    let fee_cents = read
        .latest_charge
        .as_ref()
        .and_then(|charge| charge.as_object())
        .and_then(|charge| charge.balance_transaction.as_ref())
        .and_then(|txn| txn.as_object())
        .map(|txn| txn.fee)
        .ok_or_else(|| {
            InvoiceError::Unexpected(format!(
                "payment intent {intent} has no charge with a balance transaction"
            ))
        })?;
    Ok(PaidWith {
        payment_intent: Some(intent),
        fee_cents,
    })
}

/// One line of an invoice, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub kind: &'static str,
    pub description: String,
    pub quantity: i64,
    pub amount_micro_cents: i64,
}

/// What a cycle run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CycleReport {
    /// Invoices created now (a second run creates none).
    pub created: u64,
    /// Invoices of the month asked to move forward.
    pub enqueued: u64,
}

async fn enqueue_advance(
    tx: &mut sqlx::PgConnection,
    invoice_id: Uuid,
    run_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    let key = format!("invoice:{invoice_id}");
    queue::enqueue(
        tx,
        NewJob {
            task: ADVANCE_TASK,
            payload: serde_json::json!({ "invoice_id": invoice_id }),
            job_key: Some(&key),
            max_attempts: ADVANCE_MAX_ATTEMPTS,
            run_at,
        },
    )
    .await
}

/// Asks for every invoice of `invoice_ids` to move forward now, in one statement (the cycle
/// enqueues thousands at once).
async fn enqueue_advance_all(
    tx: &mut sqlx::PgConnection,
    invoice_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    let jobs: Vec<(serde_json::Value, String)> = invoice_ids
        .iter()
        .map(|id| {
            (
                serde_json::json!({ "invoice_id": id }),
                format!("invoice:{id}"),
            )
        })
        .collect();
    queue::enqueue_all(tx, ADVANCE_TASK, &jobs, ADVANCE_MAX_ATTEMPTS).await
}

/// Runs the cycle for `month` (its first day): a draft invoice for every workspace with usage,
/// add-ons or slots in it, or an amount carried from before, each with its advance job. Running
/// it again changes nothing but nudges unfinished invoices.
pub async fn run_cycle(
    db: &PgPool,
    month: NaiveDate,
    now: DateTime<Utc>,
) -> Result<CycleReport, sqlx::Error> {
    let start = month_start(month);
    let end = start_of_next_month(start);
    let mut tx = db.begin().await?;
    let created = sqlx::query(
        "INSERT INTO invoices (id, workspace_id, month, state, created_at, updated_at)
         SELECT gen_random_uuid(), w.id, $1, 'draft', $4, $4 FROM workspaces w
         WHERE EXISTS (SELECT 1 FROM usage_records u WHERE u.workspace_id = w.id
                           AND u.completed_at >= $2 AND u.completed_at < $3)
            OR EXISTS (SELECT 1 FROM workspace_addons a WHERE a.workspace_id = w.id
                           AND a.active_since < $3 AND (a.ends_at IS NULL OR a.ends_at > $2))
            OR EXISTS (SELECT 1 FROM addon_periods p WHERE p.workspace_id = w.id
                           AND p.started_at < $3 AND p.ended_at > $2)
            OR EXISTS (SELECT 1 FROM workspace_extra_slots e WHERE e.workspace_id = w.id
                           AND (e.slots > 0 OR (e.previous_until = $3 AND e.previous_slots > 0)))
            OR EXISTS (SELECT 1 FROM storage_samples s WHERE s.workspace_id = w.id
                           AND s.day >= $1 AND s.day < $3::date AND s.artifact_bytes > 0)
            OR EXISTS (SELECT 1 FROM invoices i WHERE i.workspace_id = w.id AND i.state = 'carried'
                           AND i.month < $1 AND i.carried_into IS NULL)
         ON CONFLICT (workspace_id, month) DO NOTHING",
    )
    .bind(month)
    .bind(start)
    .bind(end)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let open: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM invoices WHERE month = $1
           AND state IN ('draft', 'lines_built', 'stripe_created', 'items_added', 'finalized')",
    )
    .bind(month)
    .fetch_all(&mut *tx)
    .await?;
    enqueue_advance_all(&mut tx, &open).await?;
    tx.commit().await?;
    Ok(CycleReport {
        created,
        enqueued: open.len() as u64,
    })
}

/// The lines of a workspace's month: usage per label (the sum of the per-job amounts, never a
/// recomputation), free-minute usage at $0, add-ons, slots, and an amount carried from before.
pub async fn build_lines(
    db: &mut sqlx::PgConnection,
    invoice_id: Uuid,
    workspace_id: Uuid,
    month: NaiveDate,
) -> Result<Vec<Line>, sqlx::Error> {
    let start = month_start(month);
    let end = start_of_next_month(start);
    let mut lines = Vec::new();
    let usage: Vec<(String, i64, i64, i64, i32)> = sqlx::query_as(
        "SELECT label, sum(minutes)::bigint, sum(amount)::bigint, sum(free_vcpu_minutes)::bigint,
                max(vcpus)
         FROM usage_records WHERE workspace_id = $1 AND completed_at >= $2 AND completed_at < $3
         GROUP BY label ORDER BY label",
    )
    .bind(workspace_id)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *db)
    .await?;
    for (label, minutes, amount, free_vcpu_minutes, _) in usage {
        let free_minutes = free_vcpu_minutes / crate::ledger::VCPUS_PER_FREE_MINUTE as i64;
        lines.push(Line {
            kind: "usage",
            description: format!("{label}: {minutes} min"),
            quantity: minutes,
            amount_micro_cents: amount,
        });
        if free_vcpu_minutes > 0 {
            lines.push(Line {
                kind: "free_usage",
                description: format!("{label}: {free_minutes} free minutes used"),
                quantity: free_minutes,
                amount_micro_cents: 0,
            });
        }
    }
    // An add-on on at any time in the month is billed the full month; one that started in the
    // month is billed from its first day (cancelling never refunds, SPEC §10).
    let addons: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT addon, active_since FROM workspace_addons
         WHERE workspace_id = $1 AND active_since < $3 AND (ends_at IS NULL OR ends_at > $2)
         UNION ALL
         SELECT addon, started_at FROM addon_periods
         WHERE workspace_id = $1 AND started_at < $3 AND ended_at > $2
         ORDER BY 1",
    )
    .bind(workspace_id)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *db)
    .await?;
    let days_in_month = (end - start).num_days();
    // Annual prepayments (sales): the year's price on its first month's invoice, and the add-on
    // at $0 in each month it covers.
    let prepaid: Vec<(String, NaiveDate, NaiveDate, i64)> = sqlx::query_as(
        "SELECT addon, starts, ends, price FROM addon_prepayments
         WHERE workspace_id = $1 AND starts <= $2 AND ends > $2 ORDER BY addon",
    )
    .bind(workspace_id)
    .bind(month)
    .fetch_all(&mut *db)
    .await?;
    let last_month = |ends: NaiveDate| Month::of_day(ends).previous().first_day();
    for (key, starts, ends, price) in &prepaid {
        if *starts == month
            && let Some(addon) = Addon::from_key(key)
        {
            lines.push(Line {
                kind: "addon",
                description: format!(
                    "{}, paid for the year {} to {}",
                    addon.name(),
                    starts.format("%B %Y"),
                    last_month(*ends).format("%B %Y")
                ),
                quantity: 1,
                amount_micro_cents: *price,
            });
        }
    }
    for (key, since) in addons {
        let Some(addon) = Addon::from_key(&key) else {
            continue;
        };
        if let Some((_, _, ends, _)) = prepaid.iter().find(|(k, ..)| *k == key) {
            lines.push(Line {
                kind: "addon",
                description: format!(
                    "{} (paid for the year, to {})",
                    addon.name(),
                    last_month(*ends).format("%B %Y")
                ),
                quantity: 1,
                amount_micro_cents: 0,
            });
            continue;
        }
        let (amount, description) = if since > start {
            let days = (end - since).num_days().max(1).min(days_in_month);
            (
                addon.monthly_price() * days / days_in_month,
                format!("{} ({days} of {days_in_month} days)", addon.name()),
            )
        } else {
            (addon.monthly_price(), addon.name().to_owned())
        };
        lines.push(Line {
            kind: "addon",
            description,
            quantity: 1,
            amount_micro_cents: amount,
        });
    }
    // Slots: the count held at the end of the month (raising is immediate, lowering waits for
    // the 1st, so this is the most held in the month).
    #[derive(sqlx::FromRow)]
    struct Slots {
        runner_class: String,
        slots: i32,
        previous_slots: Option<i32>,
        previous_until: Option<DateTime<Utc>>,
    }
    let slots: Vec<Slots> = sqlx::query_as(
        "SELECT runner_class, slots, previous_slots, previous_until FROM workspace_extra_slots
         WHERE workspace_id = $1 ORDER BY runner_class DESC",
    )
    .bind(workspace_id)
    .fetch_all(&mut *db)
    .await?;
    for row in slots {
        let held = match (row.previous_slots, row.previous_until) {
            (Some(previous), Some(until)) if until == end => previous,
            _ => row.slots,
        };
        let Some(class) = SlotClass::from_key(&row.runner_class) else {
            continue;
        };
        if held > 0 {
            let name = if class == SlotClass::X64 {
                "x64"
            } else {
                "macOS"
            };
            lines.push(Line {
                kind: "slots",
                description: format!("{held} extra {name} concurrency slots"),
                quantity: i64::from(held),
                amount_micro_cents: i64::from(held) * class.monthly_price_per_slot(),
            });
        }
    }
    // Storage: the month's average of daily samples; the cache is never billed.
    let storage = super::storage::month_usage(&mut *db, workspace_id, month, end).await?;
    if storage.average_bytes > 0 {
        lines.push(Line {
            kind: "storage",
            description: format!(
                "Storage: {} on average",
                super::storage::gigabytes(storage.average_bytes)
            ),
            quantity: storage.average_bytes,
            amount_micro_cents: storage.amount,
        });
    }
    // Amounts under the minimum from earlier months, not yet on a later invoice: this invoice
    // takes them (the caller's transaction marks them taken).
    let carried: Vec<(NaiveDate, i64)> = sqlx::query_as(
        "SELECT month, total_cents FROM invoices
         WHERE workspace_id = $1 AND state = 'carried' AND month < $2
           AND (carried_into IS NULL OR carried_into = $3)
         ORDER BY month",
    )
    .bind(workspace_id)
    .bind(month)
    .bind(invoice_id)
    .fetch_all(&mut *db)
    .await?;
    for (from, cents) in carried {
        lines.push(Line {
            kind: "carried",
            description: format!("Carried from {}", from.format("%B %Y")),
            quantity: 1,
            amount_micro_cents: cents * MICRO_CENTS_PER_CENT,
        });
    }
    Ok(lines)
}

/// The running month so far, as its invoice would read if it were issued now: its lines and
/// their total in cents (SPEC §9's preview).
pub async fn preview(
    db: &PgPool,
    workspace_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(Vec<Line>, i64), sqlx::Error> {
    let month = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap_or_default();
    let mut connection = db.acquire().await?;
    // No invoice exists for the running month: the nil id takes no carried amount for itself.
    let lines = build_lines(&mut connection, Uuid::nil(), workspace_id, month).await?;
    let total = lines.iter().map(|l| to_cents(l.amount_micro_cents)).sum();
    Ok((lines, total))
}

/// The stored state of an invoice a step needs.
#[derive(Debug, sqlx::FromRow)]
struct InvoiceRow {
    workspace_id: Uuid,
    month: NaiveDate,
    state: String,
    total_cents: Option<i64>,
    stripe_invoice_id: Option<String>,
    attempts: i32,
    first_failed_at: Option<DateTime<Utc>>,
    next_attempt_at: Option<DateTime<Utc>>,
}

async fn load(db: &PgPool, invoice_id: Uuid) -> Result<InvoiceRow, InvoiceError> {
    sqlx::query_as(
        "SELECT workspace_id, month, state, total_cents, stripe_invoice_id, attempts,
                first_failed_at, next_attempt_at
         FROM invoices WHERE id = $1",
    )
    .bind(invoice_id)
    .fetch_optional(db)
    .await?
    .ok_or(InvoiceError::Unknown(invoice_id))
}

async fn set_state(
    db: &PgPool,
    invoice_id: Uuid,
    state: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE invoices SET state = $2, updated_at = $3 WHERE id = $1")
        .bind(invoice_id)
        .bind(state)
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

/// Where an invoice stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advanced {
    /// Done: `paid`, `nothing_due`, `carried` or `uncollectible`.
    Settled(String),
    /// The payment failed; the next attempt is due then.
    RetryAt(DateTime<Utc>),
    /// Stopped after `steps` steps as asked (tests simulate a crash with it).
    Paused(String),
}

/// Moves the invoice forward as far as it goes now, at most `max_steps` steps.
pub async fn advance(
    db: &PgPool,
    stripe: &Stripe,
    ledger: &Ledger,
    invoice_id: Uuid,
    now: DateTime<Utc>,
    max_steps: usize,
) -> Result<Advanced, InvoiceError> {
    for _ in 0..max_steps {
        let invoice = load(db, invoice_id).await?;
        match invoice.state.as_str() {
            "draft" => build_step(db, ledger, invoice_id, &invoice, now).await?,
            "lines_built" => create_or_fail(db, stripe, invoice_id, &invoice, now).await?,
            "stripe_created" => items_step(db, stripe, invoice_id, &invoice, now).await?,
            "items_added" => finalize_step(db, stripe, invoice_id, &invoice, now).await?,
            "finalized" => pay_step(db, stripe, ledger, invoice_id, &invoice, now).await?,
            "payment_failed" => match invoice.next_attempt_at {
                // It failed before it reached Stripe (no card then): from the start of Stripe's part.
                Some(at) if at <= now && invoice.stripe_invoice_id.is_none() => {
                    create_or_fail(db, stripe, invoice_id, &invoice, now).await?
                }
                Some(at) if at <= now => {
                    pay_step(db, stripe, ledger, invoice_id, &invoice, now).await?
                }
                Some(at) => return Ok(Advanced::RetryAt(at)),
                None => return Ok(Advanced::Settled("uncollectible".to_owned())),
            },
            settled => return Ok(Advanced::Settled(settled.to_owned())),
        }
    }
    Ok(Advanced::Paused(load(db, invoice_id).await?.state))
}

/// draft → lines_built (or nothing_due / carried): lines stored, the add-on and slot charges
/// posted to the ledger (usage was posted job by job), in one transaction with the state.
async fn build_step(
    db: &PgPool,
    ledger: &Ledger,
    invoice_id: Uuid,
    invoice: &InvoiceRow,
    now: DateTime<Utc>,
) -> Result<(), InvoiceError> {
    let mut tx = db.begin().await?;
    let lines = build_lines(&mut tx, invoice_id, invoice.workspace_id, invoice.month).await?;
    // The subscription charges first: their ids derive from (invoice, line), so a retry after a
    // crash posts nothing twice.
    for (position, line) in lines.iter().enumerate() {
        if matches!(line.kind, "addon" | "slots") && line.amount_micro_cents > 0 {
            ledger
                .post_subscription_charge(
                    invoice.workspace_id,
                    &format!("{invoice_id}:{position}"),
                    line.amount_micro_cents,
                )
                .await?;
        }
    }
    sqlx::query("DELETE FROM invoice_lines WHERE invoice_id = $1")
        .bind(invoice_id)
        .execute(&mut *tx)
        .await?;
    let mut total = 0;
    for (position, line) in lines.iter().enumerate() {
        let cents = to_cents(line.amount_micro_cents);
        total += cents;
        sqlx::query(
            "INSERT INTO invoice_lines (invoice_id, position, kind, description, quantity,
                 amount_micro_cents, amount_cents)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(invoice_id)
        .bind(i32::try_from(position).unwrap_or(i32::MAX))
        .bind(line.kind)
        .bind(&line.description)
        .bind(line.quantity)
        .bind(line.amount_micro_cents)
        .bind(cents)
        .execute(&mut *tx)
        .await?;
    }
    let state = if total == 0 {
        "nothing_due"
    } else if total < MINIMUM_CHARGE_CENTS {
        "carried"
    } else {
        "lines_built"
    };
    sqlx::query("UPDATE invoices SET state = $2, total_cents = $3, updated_at = $4 WHERE id = $1")
        .bind(invoice_id)
        .bind(state)
        .bind(total)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE invoices SET carried_into = $1
         WHERE workspace_id = $2 AND state = 'carried' AND month < $3 AND carried_into IS NULL",
    )
    .bind(invoice_id)
    .bind(invoice.workspace_id)
    .bind(invoice.month)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn customer_of(db: &PgPool, workspace_id: Uuid) -> Result<String, InvoiceError> {
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT stripe_customer_id FROM workspaces WHERE id = $1",
    )
    .bind(workspace_id)
    .fetch_one(db)
    .await?
    .ok_or(InvoiceError::NoCustomer(workspace_id))
}

/// The Stripe invoice for an invoice whose lines are built; without a card (no Stripe customer,
/// or one Stripe no longer has) the payment fails now, with the usual retries and the owner told
/// to add a card.
async fn create_or_fail(
    db: &PgPool,
    stripe: &Stripe,
    invoice_id: Uuid,
    invoice: &InvoiceRow,
    now: DateTime<Utc>,
) -> Result<(), InvoiceError> {
    let created = match customer_of(db, invoice.workspace_id).await {
        Ok(customer) => match create_step(db, stripe, invoice_id, invoice, &customer, now).await {
            Err(InvoiceError::Stripe(StripeCallError::Refused { status: 404, .. })) => {
                sqlx::query(
                    "UPDATE workspaces SET stripe_customer_id = NULL
                     WHERE id = $1 AND stripe_customer_id = $2",
                )
                .bind(invoice.workspace_id)
                .bind(&customer)
                .execute(db)
                .await?;
                Err(InvoiceError::NoCustomer(invoice.workspace_id))
            }
            other => other,
        },
        Err(error) => Err(error),
    };
    match created {
        Err(InvoiceError::NoCustomer(_)) => {
            let attempt = invoice.attempts + 1;
            record_failure(db, invoice_id, invoice, attempt, "no card on file", now).await
        }
        other => other,
    }
}

/// lines_built → stripe_created: the Stripe invoice, its id saved.
async fn create_step(
    db: &PgPool,
    stripe: &Stripe,
    invoice_id: Uuid,
    invoice: &InvoiceRow,
    customer: &str,
    now: DateTime<Utc>,
) -> Result<(), InvoiceError> {
    let created = CreateInvoice::new()
        .customer(customer.to_owned())
        .auto_advance(false)
        .collection_method(InvoiceCollectionMethod::ChargeAutomatically)
        .pending_invoice_items_behavior(CreateInvoicePendingInvoiceItemsBehavior::Exclude)
        .description(format!("Tenki, {}", invoice.month.format("%B %Y")))
        // One key only: the client sends metadata from a HashMap, in no fixed order.
        .metadata([("tenki_invoice_id".to_owned(), invoice_id.to_string())])
        .customize()
        .request_strategy(idempotent(&format!("invoice:{invoice_id}:create"))?)
        .send(stripe.client())
        .await
        .map_err(|e| StripeCallError::of("creating the invoice", e))?;
    let stripe_id = created.id.map(|id| id.to_string()).unwrap_or_default();
    sqlx::query(
        "UPDATE invoices SET stripe_invoice_id = $2, state = 'stripe_created', updated_at = $3
         WHERE id = $1 AND state IN ('lines_built', 'payment_failed')",
    )
    .bind(invoice_id)
    .bind(stripe_id)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// stripe_created → items_added: one Stripe invoice item per line, each id saved as it comes.
async fn items_step(
    db: &PgPool,
    stripe: &Stripe,
    invoice_id: Uuid,
    invoice: &InvoiceRow,
    now: DateTime<Utc>,
) -> Result<(), InvoiceError> {
    let customer = customer_of(db, invoice.workspace_id).await?;
    let stripe_invoice = invoice.stripe_invoice_id.clone().unwrap_or_default();
    let pending: Vec<(i32, String, i64)> = sqlx::query_as(
        "SELECT position, description, amount_cents FROM invoice_lines
         WHERE invoice_id = $1 AND stripe_invoice_item_id IS NULL ORDER BY position",
    )
    .bind(invoice_id)
    .fetch_all(db)
    .await?;
    for (position, description, cents) in pending {
        let item = CreateInvoiceItem::new()
            .customer(customer.clone())
            .invoice(stripe_invoice.clone())
            .amount(cents)
            .currency(stripe_types::Currency::USD)
            .description(description)
            .customize()
            .request_strategy(idempotent(&format!(
                "invoice:{invoice_id}:item:{position}"
            ))?)
            .send(stripe.client())
            .await
            .map_err(|e| StripeCallError::of("adding an invoice item", e))?;
        sqlx::query(
            "UPDATE invoice_lines SET stripe_invoice_item_id = $3 WHERE invoice_id = $1 AND position = $2",
        )
        .bind(invoice_id)
        .bind(position)
        .bind(item.id.as_str())
        .execute(db)
        .await?;
    }
    set_state(db, invoice_id, "items_added", now).await?;
    Ok(())
}

/// items_added → finalized: the Stripe invoice finalized (it gets its number, hosted page and PDF).
async fn finalize_step(
    db: &PgPool,
    stripe: &Stripe,
    invoice_id: Uuid,
    invoice: &InvoiceRow,
    now: DateTime<Utc>,
) -> Result<(), InvoiceError> {
    let stripe_invoice = invoice.stripe_invoice_id.clone().unwrap_or_default();
    let finalized = FinalizeInvoiceInvoice::new(stripe_invoice)
        .auto_advance(false)
        .customize()
        .request_strategy(idempotent(&format!("invoice:{invoice_id}:finalize"))?)
        .send(stripe.client())
        .await
        .map_err(|e| StripeCallError::of("finalizing the invoice", e))?;
    sqlx::query(
        "UPDATE invoices SET state = 'finalized', hosted_invoice_url = $2, invoice_pdf = $3,
             updated_at = $4
         WHERE id = $1 AND state = 'items_added'",
    )
    .bind(invoice_id)
    .bind(finalized.hosted_invoice_url)
    .bind(finalized.invoice_pdf)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// finalized or payment_failed → paid, or payment_failed with the next attempt scheduled (or
/// uncollectible after the last).
async fn pay_step(
    db: &PgPool,
    stripe: &Stripe,
    ledger: &Ledger,
    invoice_id: Uuid,
    invoice: &InvoiceRow,
    now: DateTime<Utc>,
) -> Result<(), InvoiceError> {
    let stripe_invoice = invoice.stripe_invoice_id.clone().unwrap_or_default();
    let attempt = invoice.attempts + 1;
    let paid = PayInvoice::new(stripe_invoice.clone())
        .off_session(true)
        .expand(["payments".to_owned()])
        .customize()
        .request_strategy(idempotent(&format!("invoice:{invoice_id}:pay:{attempt}"))?)
        .send(stripe.client())
        .await;
    match paid {
        Ok(paid) if paid.status == Some(InvoiceStatus::Paid) => {
            let with = paid_with(stripe, &paid).await?;
            record_payment(db, ledger, invoice_id, &with, now).await?;
        }
        // A declined card: Stripe answers 402 and the invoice stays open.
        Ok(_) | Err(::stripe::StripeError::Stripe(_, 402)) => {
            let message = match &paid {
                Err(e) => StripeCallError::of("paying the invoice", clone_error(e)).to_string(),
                Ok(_) => "Stripe left the invoice unpaid".to_owned(),
            };
            record_failure(db, invoice_id, invoice, attempt, &message, now).await?;
        }
        Err(e) => return Err(StripeCallError::of("paying the invoice", e).into()),
    }
    Ok(())
}

fn clone_error(error: &::stripe::StripeError) -> ::stripe::StripeError {
    match error {
        ::stripe::StripeError::Stripe(errors, status) => {
            ::stripe::StripeError::Stripe(errors.clone(), *status)
        }
        other => ::stripe::StripeError::ClientError(other.to_string()),
    }
}

async fn record_failure(
    db: &PgPool,
    invoice_id: Uuid,
    invoice: &InvoiceRow,
    attempt: i32,
    message: &str,
    now: DateTime<Utc>,
) -> Result<(), InvoiceError> {
    let first_failed_at = invoice.first_failed_at.unwrap_or(now);
    // Attempt 1 failed → retry 3 days after it; attempt 6 (the fifth retry) failed → give up.
    let next = usize::try_from(attempt - 1)
        .ok()
        .and_then(|i| RETRY_DAYS.get(i))
        .map(|days| first_failed_at + Duration::days(*days));
    let state = if next.is_some() {
        "payment_failed"
    } else {
        "uncollectible"
    };
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE invoices SET state = $2, attempts = $3, first_failed_at = $4, next_attempt_at = $5,
             last_error = $6, updated_at = $7
         WHERE id = $1",
    )
    .bind(invoice_id)
    .bind(state)
    .bind(attempt)
    .bind(first_failed_at)
    .bind(next)
    .bind(message)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let when = next.map_or_else(
        || "Tenki will not try again; pay the invoice from its page.".to_owned(),
        |at| format!("Tenki tries again on {}.", at.format("%B %-d")),
    );
    notify(
        &mut tx,
        invoice.workspace_id,
        "payment_failed",
        &format!(
            "The payment for {} failed ({message}). {when} Update your card with \"Manage billing\".",
            invoice.month.format("%B %Y")
        ),
        &format!("payment_failed:{invoice_id}:{attempt}"),
        now,
    )
    .await?;
    if let Some(at) = next {
        enqueue_advance(&mut tx, invoice_id, Some(at)).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Adds a notification for the workspace's owners, once per `dedupe_key`.
pub async fn notify(
    tx: &mut sqlx::PgConnection,
    workspace_id: Uuid,
    kind: &str,
    message: &str,
    dedupe_key: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notifications (id, workspace_id, kind, message, created_at, dedupe_key)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(Uuid::new_v4())
    .bind(workspace_id)
    .bind(kind)
    .bind(message)
    .bind(now)
    .bind(dedupe_key)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Records the payment of an invoice: the ledger transfers of SPEC §8 (Stripe payment 1002 into
/// the workspace's account, Stripe's fee), the payment row, the invoice paid, and a suspension for
/// non-payment lifted. Idempotent: the transfer ids derive from the invoice id, and the row and
/// state are written once.
pub async fn record_payment(
    db: &PgPool,
    ledger: &Ledger,
    invoice_id: Uuid,
    with: &PaidWith,
    now: DateTime<Utc>,
) -> Result<(), InvoiceError> {
    let invoice = load(db, invoice_id).await?;
    let cents = invoice.total_cents.unwrap_or(0);
    let fee = with.fee_cents;
    ledger
        .post_stripe_payment(
            invoice.workspace_id,
            &invoice_id.to_string(),
            cents * MICRO_CENTS_PER_CENT,
            fee * MICRO_CENTS_PER_CENT,
        )
        .await?;
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO payments (invoice_id, workspace_id, amount_cents, fee_cents, received_at,
             stripe_payment_intent)
         VALUES ($1, $2, $3, $4, $5, $6)
         -- No conflict target: Tenki's pay step and the `invoice.paid` event may record the same
         -- payment at once, and the second then collides on either unique key.
         ON CONFLICT DO NOTHING",
    )
    .bind(invoice_id)
    .bind(invoice.workspace_id)
    .bind(cents)
    .bind(fee)
    .bind(now)
    .bind(&with.payment_intent)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE invoices SET state = 'paid', paid_at = coalesce(paid_at, $2), next_attempt_at = NULL,
             updated_at = $2
         WHERE id = $1",
    )
    .bind(invoice_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    // Paying the last overdue invoice lifts a suspension for non-payment at once.
    let lifted = sqlx::query(
        "UPDATE workspaces SET suspended_at = NULL, suspended_reason = NULL
         WHERE id = $1 AND suspended_reason IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM invoices WHERE workspace_id = $1
                           AND state IN ('payment_failed', 'uncollectible'))",
    )
    .bind(invoice.workspace_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if lifted > 0 {
        crate::admission::request_pass(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Stripe says an invoice was paid (`invoice.paid`, or it was paid on its hosted page): records
/// the payment if Tenki has not yet. Reads the invoice from Stripe; the event is not trusted.
pub async fn paid_in_stripe(
    db: &PgPool,
    stripe: &Stripe,
    ledger: &Ledger,
    stripe_invoice_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, InvoiceError> {
    let Some((invoice_id, state)) = sqlx::query_as::<_, (Uuid, String)>(
        "SELECT id, state FROM invoices WHERE stripe_invoice_id = $1",
    )
    .bind(stripe_invoice_id)
    .fetch_optional(db)
    .await?
    else {
        return Ok(false);
    };
    // Tenki's own pay step recorded it (the usual case: the event follows Tenki's call).
    if state == "paid" {
        return Ok(true);
    }
    let current = RetrieveInvoice::new(stripe_invoice_id)
        .expand(["payments".to_owned()])
        .send(stripe.client())
        .await
        .map_err(|e| StripeCallError::of("reading the invoice", e))?;
    if current.status != Some(InvoiceStatus::Paid) {
        return Ok(false);
    }
    let with = paid_with(stripe, &current).await?;
    record_payment(db, ledger, invoice_id, &with, now).await?;
    Ok(true)
}

/// Suspends workspaces whose invoice is still unpaid on the 10th of the month after the one it
/// bills (it was issued on the 1st), with the reason and what to do. Idempotent (daily cron).
pub async fn suspend_unpaid(db: &PgPool, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let suspended: Vec<(Uuid, NaiveDate)> = sqlx::query_as(
        "UPDATE workspaces w SET suspended_at = $1,
             suspended_reason = 'the invoice for ' || to_char(i.month, 'FMMonth YYYY') ||
                 ' is unpaid: update your card with \"Manage billing\" and the payment is tried again'
         FROM invoices i
         WHERE i.workspace_id = w.id AND i.state IN ('payment_failed', 'uncollectible')
           AND ((i.month + interval '1 month' + make_interval(days => $2 - 1))::timestamp
                AT TIME ZONE 'UTC') <= $1
           AND w.suspended_at IS NULL
         RETURNING w.id, i.month",
    )
    .bind(now)
    .bind(i32::try_from(SUSPENSION_DAY).unwrap_or(10))
    .fetch_all(&mut *tx)
    .await?;
    for (workspace_id, month) in &suspended {
        notify(
            &mut tx,
            *workspace_id,
            "suspended",
            &format!(
                "No new runners start: the invoice for {} is unpaid. Update your card with \"Manage billing\"; paying lifts the suspension within a minute.",
                month.format("%B %Y")
            ),
            &format!("suspended:{workspace_id}:{month}"),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(suspended.len() as u64)
}

/// The invoices stuck in a step (a crash, a lost job): re-enqueued (hourly sweep).
pub async fn resume_stuck(db: &PgPool, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let stuck: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM invoices
         WHERE state IN ('draft', 'lines_built', 'stripe_created', 'items_added', 'finalized')
           AND updated_at < $1
         UNION ALL
         SELECT id FROM invoices WHERE state = 'payment_failed' AND next_attempt_at <= $1",
    )
    .bind(now - Duration::minutes(10))
    .fetch_all(db)
    .await?;
    let mut tx = db.begin().await?;
    enqueue_advance_all(&mut tx, &stuck).await?;
    tx.commit().await?;
    Ok(stuck.len() as u64)
}

/// An invoice as the Billing page and `tenki admin invoices` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceView {
    pub id: Uuid,
    pub month: NaiveDate,
    pub state: String,
    pub total_cents: Option<i64>,
    pub hosted_invoice_url: Option<String>,
    pub invoice_pdf: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lines: Vec<(String, i64)>,
}

/// A workspace's invoices, newest first, with their lines (description, cents).
pub async fn invoices_of(db: &PgPool, workspace_id: Uuid) -> Result<Vec<InvoiceView>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        month: NaiveDate,
        state: String,
        total_cents: Option<i64>,
        hosted_invoice_url: Option<String>,
        invoice_pdf: Option<String>,
        next_attempt_at: Option<DateTime<Utc>>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, month, state, total_cents, hosted_invoice_url, invoice_pdf, next_attempt_at
         FROM invoices WHERE workspace_id = $1 ORDER BY month DESC",
    )
    .bind(workspace_id)
    .fetch_all(db)
    .await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        let lines: Vec<(String, i64)> = sqlx::query_as(
            "SELECT description, amount_cents FROM invoice_lines WHERE invoice_id = $1 ORDER BY position",
        )
        .bind(row.id)
        .fetch_all(db)
        .await?;
        views.push(InvoiceView {
            id: row.id,
            month: row.month,
            state: row.state,
            total_cents: row.total_cents,
            hosted_invoice_url: row.hosted_invoice_url,
            invoice_pdf: row.invoice_pdf,
            next_attempt_at: row.next_attempt_at,
            lines,
        });
    }
    Ok(views)
}

/// The workspace's notifications, newest first.
pub async fn notifications_of(
    db: &PgPool,
    workspace_id: Uuid,
) -> Result<Vec<(DateTime<Utc>, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT created_at, message FROM notifications WHERE workspace_id = $1
         ORDER BY created_at DESC LIMIT 20",
    )
    .bind(workspace_id)
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn micro_cents_round_half_up_to_the_cent() {
        assert_eq!(to_cents(0), 0);
        assert_eq!(to_cents(499_999), 0);
        assert_eq!(to_cents(500_000), 1);
        assert_eq!(to_cents(3_000_000), 3);
        assert_eq!(to_cents(4_500_000), 5);
    }

    #[test]
    fn the_cycle_on_the_first_bills_the_previous_month() {
        let at = |y, m, d| {
            Utc.with_ymd_and_hms(y, m, d, 0, 5, 0)
                .single()
                .expect("time")
        };
        assert_eq!(
            previous_month(at(2026, 12, 1)),
            NaiveDate::from_ymd_opt(2026, 11, 1).expect("date")
        );
        assert_eq!(
            previous_month(at(2027, 1, 1)),
            NaiveDate::from_ymd_opt(2026, 12, 1).expect("date")
        );
    }
}
