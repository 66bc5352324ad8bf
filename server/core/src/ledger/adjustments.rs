//! Admin adjustments (SPEC §9): usage reversal and promotional credit, each with a reason and
//! the admin's e-mail, audited in `ledger_adjustments`, and idempotent by their key.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ledger::{Ledger, LedgerError, UsagePosting};
use crate::money::{self, OutOfRange};

/// Who asks for an adjustment and why; both are required.
#[derive(Debug, Clone)]
pub struct AdminRequest {
    pub admin_email: String,
    pub reason: String,
}

impl AdminRequest {
    /// True when it gives a reason and an e-mail address: every audited operation needs both.
    pub fn is_complete(&self) -> bool {
        !self.reason.trim().is_empty() && self.admin_email.contains('@')
    }
}

/// Why an adjustment was refused. Nothing changes in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum AdjustmentError {
    #[error("give a reason and the admin's e-mail")]
    MissingReasonOrAdmin,
    #[error("no usage record for job {0}")]
    UnknownJob(String),
    #[error("workspace {0} does not exist")]
    UnknownWorkspace(Uuid),
    #[error("the amount must be more than $0")]
    NotPositive,
    #[error(
        "key {key:?} was already used for a {done} of {amount} micro-cents; give another key for another amount"
    )]
    KeyReused {
        key: String,
        done: String,
        amount: i64,
    },
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("ledger")]
    Ledger(#[from] LedgerError),
}

/// What an adjustment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adjusted {
    Done,
    /// The same adjustment was made before; nothing changed now.
    AlreadyDone,
}

/// Reverses a job's usage: gives back its free minutes and money (code 2003), removes the usage
/// record and keeps an audit row. The ledger keeps the original transfers and their reversal.
#[tracing::instrument(skip(db, ledger, request, now), fields(admin = %request.admin_email))]
pub async fn reverse_usage(
    db: &PgPool,
    ledger: &Ledger,
    job_key: &str,
    request: &AdminRequest,
    now: DateTime<Utc>,
) -> Result<Adjusted, AdjustmentError> {
    check(request)?;
    let idempotency_key = format!("usage-reversal:{job_key}");
    let mut tx = db.begin().await?;
    let record = sqlx::query!(
        "SELECT workspace_id, amount, free_vcpu_minutes FROM usage_records WHERE job_key = $1 FOR UPDATE",
        job_key,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(record) = record else {
        return if adjustment_exists(&mut tx, &idempotency_key).await? {
            Ok(Adjusted::AlreadyDone)
        } else {
            Err(AdjustmentError::UnknownJob(job_key.to_owned()))
        };
    };
    let posting = UsagePosting::for_job(record.workspace_id, job_key);
    let free_vcpu_minutes = money::convert(record.free_vcpu_minutes, || {
        format!("job {job_key}'s free minutes")
    })?;
    let amount = money::convert(record.amount, || format!("job {job_key}'s charge"))?;
    let transfer_ids: Vec<Uuid> = ledger
        .post_usage_reversal(&posting, free_vcpu_minutes, amount)
        .await?
        .into_iter()
        .map(Uuid::from_u128)
        .collect();
    sqlx::query!(
        "INSERT INTO ledger_adjustments (idempotency_key, kind, workspace_id, job_key, amount,
             free_vcpu_minutes, transfer_ids, reason, admin_email, created_at)
         VALUES ($1, 'usage_reversal', $2, $3, $4, $5, $6, $7, $8, $9)",
        idempotency_key,
        record.workspace_id,
        job_key,
        record.amount,
        record.free_vcpu_minutes,
        &transfer_ids,
        request.reason.trim(),
        request.admin_email.trim(),
        now,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("DELETE FROM usage_records WHERE job_key = $1", job_key)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(job_key, admin = request.admin_email, "usage reversed");
    Ok(Adjusted::Done)
}

/// Adds (`amount > 0`, code 3003) or deducts (`amount < 0`, code 3004) promotional credit, in
/// micro-cents. `idempotency_key` names the request within the workspace: the same key twice
/// changes the ledger once.
#[tracing::instrument(skip(db, ledger, request, now), fields(admin = %request.admin_email))]
pub async fn promotional_credit(
    db: &PgPool,
    ledger: &Ledger,
    workspace_id: Uuid,
    amount: i64,
    idempotency_key: &str,
    request: &AdminRequest,
    now: DateTime<Utc>,
) -> Result<Adjusted, AdjustmentError> {
    check(request)?;
    if amount == 0 {
        return Err(AdjustmentError::NotPositive);
    }
    let key = format!("promo:{workspace_id}:{idempotency_key}");
    let mut tx = db.begin().await?;
    let exists = sqlx::query_scalar!("SELECT id FROM workspaces WHERE id = $1", workspace_id)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(AdjustmentError::UnknownWorkspace(workspace_id));
    }
    let kind = if amount > 0 {
        "promo_credit"
    } else {
        "promo_deduction"
    };
    let magnitude: i64 = money::convert(amount.unsigned_abs(), || {
        format!("promotional credit {idempotency_key:?}")
    })?;
    let earlier = sqlx::query!(
        "SELECT kind, amount FROM ledger_adjustments WHERE idempotency_key = $1",
        key
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(earlier) = earlier {
        // The same request again is done; another amount under the same key is a mistake that
        // must not read as success.
        return if earlier.kind == kind && earlier.amount == magnitude {
            Ok(Adjusted::AlreadyDone)
        } else {
            Err(AdjustmentError::KeyReused {
                key: idempotency_key.to_owned(),
                done: earlier.kind.replace('_', " "),
                amount: earlier.amount,
            })
        };
    }
    let id = ledger
        .post_promotional_credit(workspace_id, &key, amount)
        .await?;
    sqlx::query!(
        "INSERT INTO ledger_adjustments (idempotency_key, kind, workspace_id, amount,
             transfer_ids, reason, admin_email, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        key,
        kind,
        workspace_id,
        magnitude,
        &[Uuid::from_u128(id)],
        request.reason.trim(),
        request.admin_email.trim(),
        now,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(%workspace_id, amount, admin = request.admin_email, "promotional credit");
    Ok(Adjusted::Done)
}

fn check(request: &AdminRequest) -> Result<(), AdjustmentError> {
    if !request.is_complete() {
        return Err(AdjustmentError::MissingReasonOrAdmin);
    }
    Ok(())
}

async fn adjustment_exists(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    key: &str,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_scalar!(
        "SELECT idempotency_key FROM ledger_adjustments WHERE idempotency_key = $1",
        key
    )
    .fetch_optional(&mut **tx)
    .await?
    .is_some())
}
