//! Admin adjustments (SPEC §9): usage reversal and promotional credit, each with a reason and
//! the admin's e-mail, audited in `ledger_adjustments`, and idempotent by their key.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tigerbeetle_unofficial as tb;
use uuid::Uuid;

use crate::ledger::{
    self, FREE_MINUTES_LEDGER, Ledger, LedgerError, MONEY_LEDGER, UsagePosting, WorkspaceAccounts,
    fixed_account, transfer_code,
};

/// Who asks for an adjustment and why; both are required.
#[derive(Debug, Clone)]
pub struct AdminRequest {
    pub admin_email: String,
    pub reason: String,
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
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("ledger: {0}")]
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
    let accounts = WorkspaceAccounts::of(record.workspace_id);
    let posting = UsagePosting::for_job(record.workspace_id, job_key);
    let key = posting.charge_transfer_id.to_be_bytes();
    let free_id = ledger::derive_id("usage-reversal-free-minutes", &key);
    let money_id = ledger::derive_id("usage-reversal-charge", &key);
    let user_data = u128::from_be_bytes(*record.workspace_id.as_bytes());
    let mut chain = Vec::new();
    if record.free_vcpu_minutes > 0 {
        chain.push(
            tb::Transfer::new(free_id)
                .with_debit_account_id(fixed_account::FREE_MINUTES_USED)
                .with_credit_account_id(accounts.free_minutes)
                .with_amount(u128::try_from(record.free_vcpu_minutes).unwrap_or(0))
                .with_ledger(FREE_MINUTES_LEDGER)
                .with_code(transfer_code::USAGE_REVERSAL)
                .with_user_data_128(user_data),
        );
    }
    if record.amount > 0 {
        chain.push(
            tb::Transfer::new(money_id)
                .with_debit_account_id(fixed_account::REVENUE)
                .with_credit_account_id(accounts.money)
                .with_amount(u128::try_from(record.amount).unwrap_or(0))
                .with_ledger(MONEY_LEDGER)
                .with_code(transfer_code::USAGE_REVERSAL)
                .with_user_data_128(user_data),
        );
    }
    let transfer_ids: Vec<Uuid> = chain.iter().map(|t| Uuid::from_u128(t.id())).collect();
    ledger.post_chain(chain).await?;
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
    if adjustment_exists(&mut tx, &key).await? {
        return Ok(Adjusted::AlreadyDone);
    }
    let accounts = WorkspaceAccounts::of(workspace_id);
    let (debit, credit, code, kind) = if amount > 0 {
        (
            fixed_account::MARKETING_EXPENSE,
            accounts.money,
            transfer_code::PROMO_CREDIT,
            "promo_credit",
        )
    } else {
        (
            accounts.money,
            fixed_account::MARKETING_EXPENSE,
            transfer_code::PROMO_CREDIT_REVERSAL,
            "promo_deduction",
        )
    };
    let id = ledger::derive_id("promotional-credit", key.as_bytes());
    let transfer = tb::Transfer::new(id)
        .with_debit_account_id(debit)
        .with_credit_account_id(credit)
        .with_amount(u128::from(amount.unsigned_abs()))
        .with_ledger(MONEY_LEDGER)
        .with_code(code)
        .with_user_data_128(u128::from_be_bytes(*workspace_id.as_bytes()));
    ledger.post_chain(vec![transfer]).await?;
    sqlx::query!(
        "INSERT INTO ledger_adjustments (idempotency_key, kind, workspace_id, amount,
             transfer_ids, reason, admin_email, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        key,
        kind,
        workspace_id,
        i64::try_from(amount.unsigned_abs()).unwrap_or(i64::MAX),
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
    if request.reason.trim().is_empty() || !request.admin_email.contains('@') {
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
