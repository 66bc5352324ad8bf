//! Metering a finished job (SPEC §6, §7): minutes rounded up, free minutes first (normalized to
//! 2 vCPUs), the rest charged at the price the job ran at, exactly once per job key.
//!
//! One job is metered under a lock on its workspace's row, so free minutes are never handed out
//! twice. The ledger step is one linked TigerBeetle chain whose ids derive from the job key: a
//! retry after a crash between the ledger and the database finds the posted transfers and
//! completes the usage record from them instead of charging again.

use std::fmt;

use chrono::{DateTime, Duration, SubsecRound as _, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::catalog::{self, CatalogError};
use crate::ledger::{Ledger, LedgerError, UsagePosting};

/// The longest a job may run (GitHub's limit for self-hosted runners); longer is a data error.
pub const MAX_JOB_LIFETIME: Duration = Duration::days(35);
/// Basis points in a whole (100 %).
const WHOLE_BASIS_POINTS: u128 = 10_000;

/// A GitHub job attempt: what makes a usage record unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobKey {
    pub github_job_id: i64,
    pub run_attempt: i32,
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.github_job_id, self.run_attempt)
    }
}

/// A finished job, as the job lifecycle hands it to metering.
#[derive(Debug, Clone)]
pub struct FinishedJob {
    pub workspace_id: Uuid,
    pub key: JobKey,
    /// The label from `runs-on:`, e.g. `tenki-standard-4c-premium`.
    pub label: String,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub repository: String,
    pub workflow: String,
}

/// What one job cost: free minutes used and money charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// Run time rounded up to whole minutes.
    pub minutes: i64,
    /// Free minutes used, in vCPU-minutes (a free minute is 2 vCPU-minutes).
    pub free_vcpu_minutes: u64,
    /// Money charged, in micro-cents.
    pub amount: i64,
}

/// The usage record of a metered job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub job_key: String,
    pub workspace_id: Uuid,
    pub label: String,
    pub sku_label: String,
    pub premium: bool,
    pub vcpus: i32,
    pub repository: String,
    pub workflow: String,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub minutes: i64,
    pub free_vcpu_minutes: i64,
    pub price_per_minute: i64,
    pub premium_surcharge_per_minute: i64,
    pub discount_basis_points: i32,
    pub amount: i64,
}

/// Why a job could not be metered. Nothing is charged in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum MeteringError {
    #[error("job {0} completed before it started")]
    CompletedBeforeStarted(String),
    #[error("job {job} ran {minutes} minutes, more than the maximum job lifetime of 35 days")]
    AbsurdDuration { job: String, minutes: i64 },
    #[error("workspace {0} does not exist")]
    UnknownWorkspace(Uuid),
    #[error("job {0}'s usage was reversed by an admin; it is not metered again")]
    Reversed(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
}

/// Run time in whole minutes, rounded up (3.5 minutes → 4).
pub fn billable_minutes(started_at: DateTime<Utc>, completed_at: DateTime<Utc>) -> Option<i64> {
    let millis = (completed_at - started_at).num_milliseconds();
    if millis < 0 {
        return None;
    }
    Some((millis + 59_999) / 60_000)
}

/// Prices one job. `free_vcpu_minutes_left` is the workspace's free-minute balance; the job takes
/// what it needs of it (minutes × vCPUs) and pays for the rest at `price_per_minute` (plus the
/// premium surcharge), less the discount. Amounts are rounded half up to the micro-cent.
pub fn price_job(
    minutes: i64,
    vcpus: i32,
    rate_per_minute: i64,
    discount_basis_points: i32,
    free_vcpu_minutes_left: u64,
) -> Charge {
    let minutes_u = u128::try_from(minutes.max(0)).unwrap_or(0);
    let vcpus_u = u128::try_from(vcpus.max(1)).unwrap_or(1);
    let needed = minutes_u * vcpus_u;
    let free = needed.min(u128::from(free_vcpu_minutes_left));
    let paid_vcpu_minutes = needed - free;
    let rate = u128::try_from(rate_per_minute.max(0)).unwrap_or(0);
    let keep =
        WHOLE_BASIS_POINTS - u128::try_from(discount_basis_points.clamp(0, 10_000)).unwrap_or(0);
    // paid vCPU-minutes × (rate per SKU-minute / vCPUs) × (1 − discount), in one division.
    let numerator = paid_vcpu_minutes * rate * keep;
    let denominator = vcpus_u * WHOLE_BASIS_POINTS;
    let amount = (numerator + denominator / 2) / denominator;
    Charge {
        minutes,
        free_vcpu_minutes: u64::try_from(free).unwrap_or(u64::MAX),
        amount: i64::try_from(amount).unwrap_or(i64::MAX),
    }
}

/// Meters a finished job exactly once: returns the usage record, new or already there.
pub async fn meter_job(
    db: &PgPool,
    ledger: &Ledger,
    job: &FinishedJob,
    now: DateTime<Utc>,
) -> Result<UsageRecord, MeteringError> {
    let job_key = job.key.to_string();
    // PostgreSQL keeps microseconds: bill from, and return, exactly what is stored.
    let started_at = job.started_at.trunc_subsecs(6);
    let completed_at = job.completed_at.trunc_subsecs(6);
    let minutes = billable_minutes(started_at, completed_at)
        .ok_or_else(|| MeteringError::CompletedBeforeStarted(job_key.clone()))?;
    if completed_at - started_at > MAX_JOB_LIFETIME {
        return Err(MeteringError::AbsurdDuration {
            job: job_key,
            minutes,
        });
    }
    let (resolved, price) =
        catalog::label_price_at(db, job.workspace_id, &job.label, started_at).await?;
    let surcharge = if resolved.premium {
        price
            .premium_surcharge_per_minute
            .ok_or_else(|| CatalogError::NoPremiumVariant(job.label.clone()))?
    } else {
        0
    };

    let mut tx = db.begin().await?;
    // Serializes metering per workspace: the free-minute balance read below stays true until
    // the ledger chain is posted.
    let workspace = sqlx::query!(
        r#"SELECT discount_basis_points,
                  EXISTS (SELECT 1 FROM ledger_adjustments
                          WHERE kind = 'usage_reversal' AND job_key = $2) AS "reversed!"
           FROM workspaces WHERE id = $1 FOR UPDATE"#,
        job.workspace_id,
        job_key,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(MeteringError::UnknownWorkspace(job.workspace_id))?;
    if let Some(existing) = find_usage(&mut tx, &job_key).await? {
        return Ok(existing);
    }
    if workspace.reversed {
        return Err(MeteringError::Reversed(job_key));
    }
    let discount = workspace.discount_basis_points;

    let posting = UsagePosting::for_job(job.workspace_id, &job_key);
    // Both lookups at once: one round trip to the cluster instead of two.
    let (posted, left) = tokio::try_join!(
        ledger.find_usage_posting(&posting),
        ledger.free_vcpu_minutes_left(job.workspace_id),
    )?;
    let charge = match posted {
        // A previous attempt posted to the ledger and died before the database: finish it.
        Some(posted) => Charge {
            minutes,
            free_vcpu_minutes: posted.free_vcpu_minutes,
            amount: i64::try_from(posted.amount).unwrap_or(i64::MAX),
        },
        None => {
            let charge = price_job(
                minutes,
                resolved.sku.vcpus,
                price.per_minute + surcharge,
                discount,
                u64::try_from(left).unwrap_or(u64::MAX),
            );
            ledger
                .post_usage(
                    &posting,
                    charge.free_vcpu_minutes,
                    u64::try_from(charge.amount).unwrap_or(0),
                )
                .await?;
            charge
        }
    };

    let record = UsageRecord {
        job_key,
        workspace_id: job.workspace_id,
        label: job.label.clone(),
        sku_label: resolved.sku.label,
        premium: resolved.premium,
        vcpus: resolved.sku.vcpus,
        repository: job.repository.clone(),
        workflow: job.workflow.clone(),
        started_at,
        completed_at,
        minutes: charge.minutes,
        free_vcpu_minutes: i64::try_from(charge.free_vcpu_minutes).unwrap_or(i64::MAX),
        price_per_minute: price.per_minute,
        premium_surcharge_per_minute: surcharge,
        discount_basis_points: discount,
        amount: charge.amount,
    };
    sqlx::query!(
        "INSERT INTO usage_records (job_key, workspace_id, label, sku_label, premium, vcpus,
             repository, workflow, started_at, completed_at, minutes, free_vcpu_minutes,
             price_per_minute, premium_surcharge_per_minute, discount_basis_points, amount,
             free_minutes_transfer_id, charge_transfer_id, metered_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        record.job_key,
        record.workspace_id,
        record.label,
        record.sku_label,
        record.premium,
        record.vcpus,
        record.repository,
        record.workflow,
        record.started_at,
        record.completed_at,
        record.minutes,
        record.free_vcpu_minutes,
        record.price_per_minute,
        record.premium_surcharge_per_minute,
        record.discount_basis_points,
        record.amount,
        (record.free_vcpu_minutes > 0).then(|| Uuid::from_u128(posting.free_minutes_transfer_id)),
        (record.amount > 0).then(|| Uuid::from_u128(posting.charge_transfer_id)),
        now,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(record)
}

async fn find_usage(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    job_key: &str,
) -> Result<Option<UsageRecord>, sqlx::Error> {
    sqlx::query_as!(
        UsageRecord,
        "SELECT job_key, workspace_id, label, sku_label, premium, vcpus, repository, workflow,
                started_at, completed_at, minutes, free_vcpu_minutes, price_per_minute,
                premium_surcharge_per_minute, discount_basis_points, amount
         FROM usage_records WHERE job_key = $1",
        job_key,
    )
    .fetch_optional(&mut **tx)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD_2C: i64 = 300_000;
    const STANDARD_4C: i64 = 600_000;
    const PREMIUM_2C: i64 = 300_000 + 150_000;
    const PREMIUM_4C: i64 = 600_000 + 300_000;
    /// $0.01 in micro-cents.
    const CENT: i64 = 1_000_000;

    fn run_of(millis: i64) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = DateTime::<Utc>::from_timestamp(1_790_000_000, 0).expect("valid");
        (start, start + Duration::milliseconds(millis))
    }

    #[test]
    fn a_3_5_minute_job_is_billed_as_4_minutes() {
        let (start, end) = run_of(210_000);
        assert_eq!(billable_minutes(start, end), Some(4), "3.5 minutes");
        let (start, end) = run_of(240_000);
        assert_eq!(billable_minutes(start, end), Some(4), "exactly 4 minutes");
        let (start, end) = run_of(240_001);
        assert_eq!(billable_minutes(start, end), Some(5), "4 minutes and 1 ms");
        assert_eq!(
            billable_minutes(end, start),
            None,
            "completed before started"
        );
    }

    #[test]
    fn free_minutes_used_scale_with_vcpus_10_20_40() {
        for (vcpus, free_minutes) in [(2, 10), (4, 20), (8, 40)] {
            let charge = price_job(10, vcpus, 1, 0, 2_000);
            assert_eq!(charge.free_vcpu_minutes / 2, free_minutes, "{vcpus} vCPUs");
            assert_eq!(charge.amount, 0);
        }
    }

    #[test]
    fn paid_prices_match_the_spec() {
        // Paid: 10 min on 2c → $0.03; 15 min on 4c → $0.09; premium 2c 10 min → $0.045;
        // premium 4c 10 min → $0.090.
        assert_eq!(price_job(10, 2, STANDARD_2C, 0, 0).amount, 3 * CENT);
        assert_eq!(price_job(15, 4, STANDARD_4C, 0, 0).amount, 9 * CENT);
        assert_eq!(
            price_job(10, 2, PREMIUM_2C, 0, 0).amount,
            4 * CENT + CENT / 2
        );
        assert_eq!(price_job(10, 4, PREMIUM_4C, 0, 0).amount, 9 * CENT);
    }

    #[test]
    fn a_job_needing_more_free_minutes_than_left_pays_the_rest() {
        // 10 min on 4c needs 40 vCPU-minutes; 6 are left: 34 paid at $0.006 / 4 vCPUs.
        let charge = price_job(10, 4, STANDARD_4C, 0, 6);
        assert_eq!(charge.free_vcpu_minutes, 6);
        assert_eq!(charge.amount, 34 * STANDARD_4C / 4);
        assert_eq!(charge.amount, 5_100_000, "$0.051");
    }

    #[test]
    fn the_discount_applies_to_the_paid_part() {
        assert_eq!(price_job(10, 2, STANDARD_2C, 5_000, 0).amount, 3 * CENT / 2);
        assert_eq!(price_job(10, 2, STANDARD_2C, 1_000, 0).amount, 2_700_000);
    }
}
