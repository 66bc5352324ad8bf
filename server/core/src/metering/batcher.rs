//! The metering batcher: every finished job this server meters goes through one queue, and the
//! jobs that wait in it while a batch is being metered form the next batch ([`crate::batching`]).
//!
//! Nothing waits for a batch to fill: an idle server meters a lone job at once, and under load the
//! batches grow by themselves (up to [`MAX_BATCH`]). Two batches run at a time, so one is priced
//! while the other waits on the ledger or the database; they lock their workspaces in id order and
//! so never deadlock. A workspace is in one batch at a time: its jobs that arrive meanwhile wait
//! for that batch and then go together, since a batch of their own would only wait for the
//! workspace's lock, one job at a time. A job's caller waits for its answer, and the durable
//! record of what is still to meter stays where it was (the delivery, the admin command), so a
//! crash loses nothing that is not retried.

use chrono::Utc;
use sqlx::PgPool;

use super::{FinishedJob, MeteringError, UsageRecord, meter_job, meter_jobs};
use crate::batching::{Batcher, Limits};
use crate::ledger::Ledger;

/// The most jobs in one batch: two transfers each stay far below TigerBeetle's 8,189 per request.
pub const MAX_BATCH: usize = 512;
/// Batches metered at the same time.
const BATCHES_IN_FLIGHT: usize = 2;

/// A handle on this server's metering batcher. Cheap to clone; the batcher stops when the last
/// handle is dropped.
#[derive(Clone)]
pub struct Meter {
    batcher: Batcher<FinishedJob, Result<UsageRecord, MeteringError>>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meter")
    }
}

impl Meter {
    /// Starts the batcher on the current Tokio runtime.
    pub fn start(db: PgPool, ledger: Ledger) -> Self {
        let limits = Limits {
            max_batch: MAX_BATCH,
            in_flight: BATCHES_IN_FLIGHT,
        };
        let batcher = Batcher::start(
            limits,
            |job: &FinishedJob| Some(job.workspace_id),
            move |jobs| {
                let (db, ledger) = (db.clone(), ledger.clone());
                async move { meter_batch(&db, &ledger, jobs).await }
            },
        );
        Self { batcher }
    }

    /// Meters a finished job exactly once, in the next batch: the same answer as
    /// [`meter_job`](super::meter_job).
    pub async fn meter(&self, job: FinishedJob) -> Result<UsageRecord, MeteringError> {
        self.batcher
            .submit(job)
            .await
            .map_err(|_| MeteringError::Stopped)?
    }
}

/// Meters one batch: one answer per job, in their order.
async fn meter_batch(
    db: &PgPool,
    ledger: &Ledger,
    jobs: Vec<FinishedJob>,
) -> Vec<Result<UsageRecord, MeteringError>> {
    let now = Utc::now();
    metrics::histogram!("metering_batch_jobs").record(jobs.len() as f64);
    match meter_jobs(db, ledger, &jobs, now).await {
        Ok(outcomes) => outcomes,
        Err(error) => {
            // No usage record of the batch was written (chains it posted are found and recorded
            // by the next attempt): give every job its own attempt and its own answer, so one
            // job's trouble is never its neighbours'.
            tracing::warn!(
                jobs = jobs.len(),
                "metering batch failed, metering its jobs one by one: {}",
                crate::error_chain(&error)
            );
            let mut outcomes = Vec::with_capacity(jobs.len());
            for job in &jobs {
                outcomes.push(meter_job(db, ledger, job, now).await);
            }
            outcomes
        }
    }
}
