//! Metering a finished job (SPEC §6, §7): minutes rounded up, free minutes first (normalized to
//! 2 vCPUs), the rest charged at the price the job ran at, exactly once per job key.
//!
//! One job is metered under a lock on its workspace's row, so free minutes are never handed out
//! twice. The ledger step is one linked TigerBeetle chain whose ids derive from the job key: a
//! retry after a crash between the ledger and the database finds the posted transfers and
//! completes the usage record from them instead of charging again.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::catalog::{self, CatalogError, Price, ResolvedLabel};
use crate::ledger::{Ledger, LedgerError, PostedUsage, UsagePosting};
use crate::money::{self, OutOfRange};

mod batch;
mod batcher;

pub use batch::meter_jobs;
pub use batcher::Meter;

/// GitHub's limit for a job on a self-hosted runner.
pub const GITHUB_JOB_LIMIT: Duration = Duration::days(5);
/// The longest run time Tenki bills: GitHub's limit plus a margin for clock skew and the
/// runner's own shutdown. Longer is a data error, refused with its reason.
pub const MAX_JOB_LIFETIME: Duration = Duration::hours(5 * 24 + 1);
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

impl Charge {
    /// What an earlier attempt posted to the ledger for job `job_key`.
    fn posted(minutes: i64, posted: PostedUsage, job_key: &str) -> Result<Self, MeteringError> {
        Ok(Self {
            minutes,
            free_vcpu_minutes: money::convert(posted.free_vcpu_minutes, || {
                format!("job {job_key}'s posted free minutes")
            })?,
            amount: money::convert(posted.amount, || format!("job {job_key}'s posted charge"))?,
        })
    }
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
    #[error(
        "job {job} ran {minutes} minutes, longer than GitHub's 5-day limit for self-hosted jobs"
    )]
    TooLong { job: String, minutes: i64 },
    #[error("workspace {0} does not exist")]
    UnknownWorkspace(Uuid),
    #[error("job {job}'s usage is recorded for another workspace")]
    OtherWorkspace { job: String },
    #[error("job {0}'s usage was reversed by an admin; it is not metered again")]
    Reversed(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    #[error("the metering batcher stopped")]
    Stopped,
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("ledger")]
    Ledger(#[from] LedgerError),
}

impl MeteringError {
    /// Why the job is not billed, in the customer's words, when retrying can never change the
    /// outcome; `None` for a failure worth retrying (the database or the ledger did not answer).
    pub fn not_billed_reason(&self) -> Option<String> {
        match self {
            Self::CompletedBeforeStarted(_) => {
                Some("not billed: GitHub reported it completed before it started".to_owned())
            }
            Self::TooLong { .. } => Some(
                "not billed: ran longer than GitHub's 5-day limit for self-hosted jobs".to_owned(),
            ),
            Self::UnknownWorkspace(_) | Self::OtherWorkspace { .. } => {
                Some("not billed: the job belongs to another workspace".to_owned())
            }
            Self::Reversed(_) => Some("not billed: its usage was reversed by support".to_owned()),
            Self::Catalog(
                CatalogError::UnknownLabel(label) | CatalogError::NoPremiumVariant(label),
            ) => Some(format!("label not offered: {label}")),
            Self::Catalog(CatalogError::NoPrice { label, .. }) => Some(format!(
                "label not offered: {label} had no price when the job started"
            )),
            Self::OutOfRange(_) => Some("not billed: its figures are out of range".to_owned()),
            Self::Catalog(CatalogError::Database(_))
            | Self::Stopped
            | Self::Database(_)
            | Self::Ledger(_) => None,
        }
    }
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
/// what it needs of it (minutes × vCPUs) and pays for the rest at `rate_per_minute` (price plus
/// premium surcharge), less the discount. Amounts are rounded half up to the micro-cent. Figures
/// that do not fit (negative, or beyond an i64 of micro-cents) are an error naming `job`.
pub fn price_job(
    job: &str,
    minutes: i64,
    vcpus: i32,
    rate_per_minute: i64,
    discount_basis_points: i32,
    free_vcpu_minutes_left: u64,
) -> Result<Charge, OutOfRange> {
    let minutes_u: u128 = money::convert(minutes, || format!("job {job}'s minutes"))?;
    let vcpus_u: u128 = money::convert(vcpus, || format!("job {job}'s vCPUs"))?;
    let rate: u128 = money::convert(rate_per_minute, || format!("job {job}'s price per minute"))?;
    let discount: u128 = money::convert(discount_basis_points, || format!("job {job}'s discount"))?;
    if vcpus_u == 0 || discount > WHOLE_BASIS_POINTS {
        return Err(OutOfRange {
            what: format!("job {job}'s vCPUs or discount"),
            value: format!("{vcpus} vCPUs, {discount_basis_points} basis points"),
            target: "a runner with vCPUs and a discount of at most 100 %",
        });
    }
    let needed = minutes_u * vcpus_u;
    let free = needed.min(u128::from(free_vcpu_minutes_left));
    let paid_vcpu_minutes = needed - free;
    let keep = WHOLE_BASIS_POINTS - discount;
    // paid vCPU-minutes × (rate per SKU-minute / vCPUs) × (1 − discount), in one division.
    let numerator = paid_vcpu_minutes
        .checked_mul(rate)
        .and_then(|n| n.checked_mul(keep))
        .ok_or_else(|| OutOfRange {
            what: format!("job {job}'s charge"),
            value: format!("{paid_vcpu_minutes} vCPU-minutes × {rate} × {keep}"),
            target: "u128",
        })?;
    let denominator = vcpus_u * WHOLE_BASIS_POINTS;
    let amount = (numerator + denominator / 2) / denominator;
    Ok(Charge {
        minutes,
        free_vcpu_minutes: money::convert(free, || format!("job {job}'s free minutes"))?,
        amount: money::convert(amount, || format!("job {job}'s charge"))?,
    })
}

/// Meters a finished job exactly once: returns the usage record, new or already there.
#[tracing::instrument(level = "debug", skip_all, fields(workspace = %job.workspace_id, job = %job.key, label = %job.label))]
pub async fn meter_job(
    db: &PgPool,
    ledger: &Ledger,
    job: &FinishedJob,
    now: DateTime<Utc>,
) -> Result<UsageRecord, MeteringError> {
    let job_key = job.key.to_string();
    // PostgreSQL keeps microseconds: bill from, and return, exactly what is stored.
    let (started_at, completed_at, minutes) = batch::check_times(job, &job_key)?;
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
    // the ledger chain is posted. `NO KEY UPDATE`, not `UPDATE`: rows that reference the
    // workspace (a concurrency slot, a usage record) can still be inserted meanwhile; the
    // stronger lock made the admission pass wait for metering while holding its own lock.
    // The discount is the one in force when the job started.
    let workspace = sqlx::query!(
        r#"SELECT coalesce((SELECT basis_points FROM workspace_discounts
                            WHERE workspace_id = w.id AND active_from <= $3
                            ORDER BY active_from DESC LIMIT 1), 0) AS "discount!",
                  EXISTS (SELECT 1 FROM ledger_adjustments
                          WHERE kind = 'usage_reversal' AND job_key = $2
                            AND workspace_id = w.id) AS "reversed!"
           FROM workspaces w WHERE w.id = $1 FOR NO KEY UPDATE"#,
        job.workspace_id,
        job_key,
        started_at,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(MeteringError::UnknownWorkspace(job.workspace_id))?;
    if let Some(existing) = find_usage(&mut tx, &job_key).await? {
        return if existing.workspace_id == job.workspace_id {
            Ok(existing)
        } else {
            Err(MeteringError::OtherWorkspace { job: job_key })
        };
    }
    if workspace.reversed {
        return Err(MeteringError::Reversed(job_key));
    }
    let discount = workspace.discount;

    let posting = UsagePosting::for_job(job.workspace_id, &job_key);
    // Both lookups at once: one round trip to the cluster instead of two.
    let (posted, left) = tokio::try_join!(
        ledger.find_usage_posting(&posting),
        ledger.free_vcpu_minutes_left(job.workspace_id),
    )?;
    let charge = match posted {
        // A previous attempt posted to the ledger and died before the database: finish it with
        // exactly what was posted.
        Some(posted) => Charge::posted(minutes, posted, &job_key)?,
        None => {
            let charge = price_job(
                &job_key,
                minutes,
                resolved.sku.vcpus,
                price.per_minute + surcharge,
                discount,
                money::convert(left, || {
                    format!("workspace {}'s free minutes", job.workspace_id)
                })?,
            )?;
            ledger
                .post_usage(
                    &posting,
                    charge.free_vcpu_minutes,
                    money::convert(charge.amount, || format!("job {job_key}'s charge"))?,
                )
                .await?;
            charge
        }
    };

    let record = usage_record(
        job,
        job_key,
        (started_at, completed_at),
        &resolved,
        &price,
        surcharge,
        discount,
        charge,
    )?;
    insert_usage_records(&mut tx, &[(record.clone(), posting)], now).await?;
    tx.commit().await?;
    Ok(record)
}

/// The usage record of a priced job.
#[expect(
    clippy::too_many_arguments,
    reason = "every figure a usage record keeps"
)]
fn usage_record(
    job: &FinishedJob,
    job_key: String,
    (started_at, completed_at): (DateTime<Utc>, DateTime<Utc>),
    resolved: &ResolvedLabel,
    price: &Price,
    surcharge: i64,
    discount: i32,
    charge: Charge,
) -> Result<UsageRecord, MeteringError> {
    Ok(UsageRecord {
        job_key,
        workspace_id: job.workspace_id,
        label: catalog::normalize_label(&job.label),
        sku_label: resolved.sku.label.clone(),
        premium: resolved.premium,
        vcpus: resolved.sku.vcpus,
        repository: job.repository.clone(),
        workflow: job.workflow.clone(),
        started_at,
        completed_at,
        minutes: charge.minutes,
        free_vcpu_minutes: money::convert(charge.free_vcpu_minutes, || {
            format!("job {}'s free minutes", job.key)
        })?,
        price_per_minute: price.per_minute,
        premium_surcharge_per_minute: surcharge,
        discount_basis_points: discount,
        amount: charge.amount,
    })
}

/// Inserts usage records with the ids of the ledger transfers they were posted with, in one
/// statement.
async fn insert_usage_records(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    records: &[(UsageRecord, UsagePosting)],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut job_keys = Vec::with_capacity(records.len());
    let mut labels = Vec::with_capacity(records.len());
    let mut sku_labels = Vec::with_capacity(records.len());
    let mut repositories = Vec::with_capacity(records.len());
    let mut workflows = Vec::with_capacity(records.len());
    let mut workspaces = Vec::with_capacity(records.len());
    let mut premiums = Vec::with_capacity(records.len());
    let mut vcpus = Vec::with_capacity(records.len());
    let mut starts = Vec::with_capacity(records.len());
    let mut ends = Vec::with_capacity(records.len());
    let mut minutes = Vec::with_capacity(records.len());
    let mut free = Vec::with_capacity(records.len());
    let mut prices = Vec::with_capacity(records.len());
    let mut surcharges = Vec::with_capacity(records.len());
    let mut discounts = Vec::with_capacity(records.len());
    let mut amounts = Vec::with_capacity(records.len());
    let mut free_transfers = Vec::with_capacity(records.len());
    let mut charge_transfers = Vec::with_capacity(records.len());
    for (record, posting) in records {
        job_keys.push(record.job_key.as_str());
        labels.push(record.label.as_str());
        sku_labels.push(record.sku_label.as_str());
        repositories.push(record.repository.as_str());
        workflows.push(record.workflow.as_str());
        workspaces.push(record.workspace_id);
        premiums.push(record.premium);
        vcpus.push(record.vcpus);
        starts.push(record.started_at);
        ends.push(record.completed_at);
        minutes.push(record.minutes);
        free.push(record.free_vcpu_minutes);
        prices.push(record.price_per_minute);
        surcharges.push(record.premium_surcharge_per_minute);
        discounts.push(record.discount_basis_points);
        amounts.push(record.amount);
        free_transfers.push(
            (record.free_vcpu_minutes > 0)
                .then(|| Uuid::from_u128(posting.free_minutes_transfer_id)),
        );
        charge_transfers
            .push((record.amount > 0).then(|| Uuid::from_u128(posting.charge_transfer_id)));
    }
    sqlx::query!(
        "INSERT INTO usage_records (job_key, workspace_id, label, sku_label, premium, vcpus,
             repository, workflow, started_at, completed_at, minutes, free_vcpu_minutes,
             price_per_minute, premium_surcharge_per_minute, discount_basis_points, amount,
             free_minutes_transfer_id, charge_transfer_id, metered_at)
         SELECT *, $19::timestamptz FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[],
             $5::bool[], $6::int4[], $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[],
             $11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::int4[], $16::int8[],
             $17::uuid[], $18::uuid[])",
        &job_keys as &[&str],
        &workspaces,
        &labels as &[&str],
        &sku_labels as &[&str],
        &premiums,
        &vcpus,
        &repositories as &[&str],
        &workflows as &[&str],
        &starts,
        &ends,
        &minutes,
        &free,
        &prices,
        &surcharges,
        &discounts,
        &amounts,
        &free_transfers as &[Option<Uuid>],
        &charge_transfers as &[Option<Uuid>],
        now,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The usage record of `job_key`, whichever workspace it is in: the caller checks it is the
/// job's own.
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
            let charge = price_job("1:1", 10, vcpus, 1, 0, 2_000).expect("fits");
            assert_eq!(charge.free_vcpu_minutes / 2, free_minutes, "{vcpus} vCPUs");
            assert_eq!(charge.amount, 0);
        }
    }

    #[test]
    fn paid_prices_match_the_spec() {
        // Paid: 10 min on 2c → $0.03; 15 min on 4c → $0.09; premium 2c 10 min → $0.045;
        // premium 4c 10 min → $0.090.
        assert_eq!(
            price_job("1:1", 10, 2, STANDARD_2C, 0, 0)
                .expect("fits")
                .amount,
            3 * CENT
        );
        assert_eq!(
            price_job("1:1", 15, 4, STANDARD_4C, 0, 0)
                .expect("fits")
                .amount,
            9 * CENT
        );
        assert_eq!(
            price_job("1:1", 10, 2, PREMIUM_2C, 0, 0)
                .expect("fits")
                .amount,
            4 * CENT + CENT / 2
        );
        assert_eq!(
            price_job("1:1", 10, 4, PREMIUM_4C, 0, 0)
                .expect("fits")
                .amount,
            9 * CENT
        );
    }

    #[test]
    fn a_job_needing_more_free_minutes_than_left_pays_the_rest() {
        // 10 min on 4c needs 40 vCPU-minutes; 6 are left: 34 paid at $0.006 / 4 vCPUs.
        let charge = price_job("1:1", 10, 4, STANDARD_4C, 0, 6).expect("fits");
        assert_eq!(charge.free_vcpu_minutes, 6);
        assert_eq!(charge.amount, 34 * STANDARD_4C / 4);
        assert_eq!(charge.amount, 5_100_000, "$0.051");
    }

    #[test]
    fn figures_that_do_not_fit_are_errors_naming_the_job_never_clamped() {
        let negative = price_job("7:2", -1, 2, STANDARD_2C, 0, 0).expect_err("negative minutes");
        assert!(
            negative.to_string().starts_with("job 7:2's minutes"),
            "{negative}"
        );
        let rate = price_job("7:2", 10, 2, -5, 0, 0).expect_err("negative price");
        assert!(rate.to_string().starts_with("job 7:2's price"), "{rate}");
        let huge = price_job("7:2", i64::MAX, 64, i64::MAX, 0, 0).expect_err("too large");
        assert!(huge.to_string().starts_with("job 7:2's charge"), "{huge}");
        let discount = price_job("7:2", 10, 2, STANDARD_2C, 10_001, 0).expect_err("over 100 %");
        assert!(discount.to_string().starts_with("job 7:2's"), "{discount}");
    }

    #[test]
    fn a_job_longer_than_githubs_five_day_limit_is_refused_with_its_reason() {
        let error = MeteringError::TooLong {
            job: "9:1".to_owned(),
            minutes: 7_300,
        };
        assert_eq!(
            error.not_billed_reason().as_deref(),
            Some("not billed: ran longer than GitHub's 5-day limit for self-hosted jobs")
        );
        assert!(MAX_JOB_LIFETIME < Duration::days(6));
        assert!(MAX_JOB_LIFETIME >= GITHUB_JOB_LIMIT);
    }

    #[test]
    fn the_discount_applies_to_the_paid_part() {
        assert_eq!(
            price_job("1:1", 10, 2, STANDARD_2C, 5_000, 0)
                .expect("fits")
                .amount,
            3 * CENT / 2
        );
        assert_eq!(
            price_job("1:1", 10, 2, STANDARD_2C, 1_000, 0)
                .expect("fits")
                .amount,
            2_700_000
        );
    }
}
