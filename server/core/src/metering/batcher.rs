//! The metering batcher: every finished job this server meters goes through one queue, and the
//! jobs that wait in it while a batch is being metered form the next batch.
//!
//! Nothing waits for a batch to fill: an idle server meters a lone job at once, and under load
//! the batches grow by themselves (up to [`MAX_BATCH`]). Two batches run at a time, so one is
//! priced while the other waits on the ledger or the database; they lock their workspaces in id
//! order and so never deadlock. The queue lives in memory only: a job's caller waits for its
//! answer, and the durable record of what is still to meter stays where it was (the delivery,
//! the admin command), so a crash loses nothing that is not retried.

use std::sync::Arc;

use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{FinishedJob, MeteringError, UsageRecord, meter_job, meter_jobs};
use crate::ledger::Ledger;

/// The most jobs in one batch: two transfers each stay far below TigerBeetle's 8,189 per request.
pub const MAX_BATCH: usize = 512;
/// Batches metered at the same time.
const BATCHES_IN_FLIGHT: usize = 2;

/// One job waiting to be metered and where its answer goes.
struct Request {
    job: FinishedJob,
    answer: oneshot::Sender<Result<UsageRecord, MeteringError>>,
}

/// A handle on this server's metering batcher. Cheap to clone; the batcher stops when the last
/// handle is dropped.
#[derive(Clone)]
pub struct Meter {
    requests: mpsc::UnboundedSender<Request>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meter")
    }
}

impl Meter {
    /// Starts the batcher on the current Tokio runtime.
    pub fn start(db: PgPool, ledger: Ledger) -> Self {
        let (requests, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(db, ledger, waiting));
        Self { requests }
    }

    /// Meters a finished job exactly once, in the next batch: the same answer as
    /// [`meter_job`](super::meter_job).
    pub async fn meter(&self, job: FinishedJob) -> Result<UsageRecord, MeteringError> {
        let (answer, answered) = oneshot::channel();
        self.requests
            .send(Request { job, answer })
            .map_err(|_| MeteringError::Stopped)?;
        answered.await.map_err(|_| MeteringError::Stopped)?
    }
}

async fn run(db: PgPool, ledger: Ledger, mut waiting: mpsc::UnboundedReceiver<Request>) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    loop {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let (db, ledger) = (db.clone(), ledger.clone());
        tokio::spawn(async move {
            meter_batch(&db, &ledger, batch).await;
            drop(permit);
        });
    }
}

async fn meter_batch(db: &PgPool, ledger: &Ledger, batch: Vec<Request>) {
    let now = Utc::now();
    let (jobs, answers): (Vec<FinishedJob>, Vec<_>) = batch
        .into_iter()
        .map(|request| (request.job, request.answer))
        .unzip();
    metrics::histogram!("metering_batch_jobs").record(jobs.len() as f64);
    match meter_jobs(db, ledger, &jobs, now).await {
        Ok(outcomes) => {
            for (answer, outcome) in answers.into_iter().zip(outcomes) {
                // The caller may have given up waiting; the job is metered all the same.
                let _ = answer.send(outcome);
            }
        }
        Err(error) => {
            // No usage record of the batch was written (chains it posted are found and recorded
            // by the next attempt): give every job its own attempt and its own answer, so one
            // job's trouble is never its neighbours'.
            tracing::warn!(
                jobs = jobs.len(),
                "metering batch failed, metering its jobs one by one: {}",
                crate::error_chain(&error)
            );
            for (job, answer) in jobs.iter().zip(answers) {
                let _ = answer.send(meter_job(db, ledger, job, now).await);
            }
        }
    }
}
