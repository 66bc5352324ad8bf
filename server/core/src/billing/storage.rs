//! Storage (SPEC §11): daily samples of each workspace's stored bytes, and the month's charge.
//!
//! Samples arrive from the storage service through `POST /internal/storage-samples`, one per
//! workspace and day (a later sample of the same day replaces the earlier). The month's charge is
//! the average of the daily samples of stored artifacts and data, over every day of the month (a
//! day without a sample stored nothing), × $0.20 per GB-month, GB being 10⁹ bytes. The dependency
//! cache is reported apart and never billed: 10 GB are included, and past that the cache service
//! evicts its least recently used entries and reports how much it evicted.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::money::MICRO_CENTS_PER_CENT;

/// Bytes in a GB.
pub const BYTES_PER_GB: i64 = 1_000_000_000;
/// $0.20 per GB-month, in micro-cents.
pub const PRICE_PER_GB_MONTH: i64 = 20 * MICRO_CENTS_PER_CENT;
/// The dependency cache included with every workspace, never billed.
pub const INCLUDED_CACHE_BYTES: i64 = 10 * BYTES_PER_GB;

/// One day's sample of a workspace's storage.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Sample {
    pub workspace_id: Uuid,
    pub day: NaiveDate,
    /// Artifacts and data: billed.
    pub artifact_bytes: i64,
    /// The dependency cache: never billed.
    pub cache_bytes: i64,
    /// What the cache evicted that day to stay within what it keeps.
    #[serde(default)]
    pub cache_evicted_bytes: i64,
}

/// Why samples were refused; none of them is stored then.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("sample {index}: bytes cannot be negative")]
    Negative { index: usize },
    #[error("sample {index}: no workspace {workspace_id}")]
    UnknownWorkspace { index: usize, workspace_id: Uuid },
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// Stores `samples` in one transaction (all or none), replacing earlier samples of the same day.
pub async fn record_samples(db: &PgPool, samples: &[Sample]) -> Result<usize, StorageError> {
    for (index, sample) in samples.iter().enumerate() {
        if sample.artifact_bytes < 0 || sample.cache_bytes < 0 || sample.cache_evicted_bytes < 0 {
            return Err(StorageError::Negative { index });
        }
    }
    let mut tx = db.begin().await?;
    for (index, sample) in samples.iter().enumerate() {
        let known: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM workspaces WHERE id = $1)")
                .bind(sample.workspace_id)
                .fetch_one(&mut *tx)
                .await?;
        if !known {
            return Err(StorageError::UnknownWorkspace {
                index,
                workspace_id: sample.workspace_id,
            });
        }
        sqlx::query(
            "INSERT INTO storage_samples (workspace_id, day, artifact_bytes, cache_bytes,
                 cache_evicted_bytes)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (workspace_id, day) DO UPDATE
                 SET artifact_bytes = EXCLUDED.artifact_bytes, cache_bytes = EXCLUDED.cache_bytes,
                     cache_evicted_bytes = EXCLUDED.cache_evicted_bytes",
        )
        .bind(sample.workspace_id)
        .bind(sample.day)
        .bind(sample.artifact_bytes)
        .bind(sample.cache_bytes)
        .bind(sample.cache_evicted_bytes)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(samples.len())
}

/// The charge for a month of `days_in_month` days whose daily samples of billed bytes add up to
/// `byte_days`: their average × $0.20 per GB-month, in micro-cents (rounded down).
pub fn month_charge(byte_days: i128, days_in_month: i64) -> i64 {
    let amount = byte_days * i128::from(PRICE_PER_GB_MONTH)
        / (i128::from(BYTES_PER_GB) * i128::from(days_in_month.max(1)));
    i64::try_from(amount).unwrap_or(i64::MAX)
}

/// A workspace's storage in a month.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageMonth {
    /// The average of the daily samples of billed bytes over the whole month.
    pub average_bytes: i64,
    /// What the month costs (or has cost so far), in micro-cents.
    pub amount: i64,
    /// The latest sample: billed bytes and cache bytes.
    pub latest_artifact_bytes: i64,
    pub latest_cache_bytes: i64,
    /// Bytes the cache evicted in the month.
    pub cache_evicted_bytes: i64,
    /// The month's cost if the latest sample holds to its end, in micro-cents.
    pub projected_amount: i64,
}

/// The storage of `workspace_id` in the month starting on `month`, as of `now`.
pub async fn month_usage(
    db: &mut sqlx::PgConnection,
    workspace_id: Uuid,
    month: NaiveDate,
    now: DateTime<Utc>,
) -> Result<StorageMonth, sqlx::Error> {
    let start = month;
    let days_in_month = i64::from(crate::usage::Month::of_day(month).days());
    let next = start + chrono::Duration::days(days_in_month);
    let (byte_days, evicted): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(artifact_bytes), 0)::bigint, coalesce(sum(cache_evicted_bytes), 0)::bigint
         FROM storage_samples WHERE workspace_id = $1 AND day >= $2 AND day < $3",
    )
    .bind(workspace_id)
    .bind(start)
    .bind(next)
    .fetch_one(&mut *db)
    .await?;
    let latest: Option<(i64, i64, NaiveDate)> = sqlx::query_as(
        "SELECT artifact_bytes, cache_bytes, day FROM storage_samples
         WHERE workspace_id = $1 AND day < $2 ORDER BY day DESC LIMIT 1",
    )
    .bind(workspace_id)
    .bind(next)
    .fetch_optional(&mut *db)
    .await?;
    let (latest_artifact_bytes, latest_cache_bytes, latest_day) =
        latest.unwrap_or((0, 0, start.pred_opt().unwrap_or(start)));
    // The days after the latest sample, to the month's end, at the latest sample's size.
    let today = now.date_naive().max(latest_day);
    let remaining = if today < next && today >= start {
        (next - today).num_days() - 1
    } else {
        0
    };
    let projected_byte_days =
        i128::from(byte_days) + i128::from(latest_artifact_bytes) * i128::from(remaining);
    Ok(StorageMonth {
        average_bytes: byte_days / days_in_month.max(1),
        amount: month_charge(i128::from(byte_days), days_in_month),
        latest_artifact_bytes,
        latest_cache_bytes,
        cache_evicted_bytes: evicted,
        projected_amount: month_charge(projected_byte_days, days_in_month),
    })
}

/// "12.34 GB".
pub fn gigabytes(bytes: i64) -> String {
    let hundredths =
        (i128::from(bytes) * 100 + i128::from(BYTES_PER_GB) / 2) / i128::from(BYTES_PER_GB);
    format!("{}.{:02} GB", hundredths / 100, hundredths % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: i128 = BYTES_PER_GB as i128;

    #[test]
    fn fifty_gb_stored_all_month_costs_ten_dollars() {
        assert_eq!(month_charge(50 * GB * 30, 30), 1_000 * MICRO_CENTS_PER_CENT);
        assert_eq!(month_charge(50 * GB * 31, 31), 1_000 * MICRO_CENTS_PER_CENT);
    }

    #[test]
    fn twenty_gb_from_day_16_of_a_30_day_month_costs_two_dollars() {
        // Days 16 to 30: 15 daily samples of 20 GB.
        assert_eq!(month_charge(20 * GB * 15, 30), 200 * MICRO_CENTS_PER_CENT);
    }

    #[test]
    fn sizes_read_in_gigabytes() {
        assert_eq!(gigabytes(20 * BYTES_PER_GB), "20.00 GB");
        assert_eq!(gigabytes(1_234_567_890), "1.23 GB");
    }
}
