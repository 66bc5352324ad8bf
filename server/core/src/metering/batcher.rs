//! The metering batcher: every finished job this server meters goes through one queue, and the
//! jobs that wait in it while a batch is being metered form the next batch.
//!
//! Nothing waits for a batch to fill: an idle server meters a lone job at once, and under load
//! the batches grow by themselves (up to [`MAX_BATCH`]). Two batches run at a time, so one is
//! priced while the other waits on the ledger or the database; they lock their workspaces in id
//! order and so never deadlock. A workspace is in one batch at a time: its jobs that arrive
//! meanwhile wait for that batch and then go together, since a batch of their own would only
//! wait for the workspace's lock, one job at a time. The queue lives in memory only: a job's
//! caller waits for its answer, and the durable record of what is still to meter stays where it
//! was (the delivery, the admin command), so a crash loses nothing that is not retried.

use std::collections::HashSet;

use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

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

async fn run(db: PgPool, ledger: Ledger, mut requests: mpsc::UnboundedReceiver<Request>) {
    let (finished_sender, mut finished) = mpsc::unbounded_channel::<Vec<Uuid>>();
    let mut waiting: Vec<Request> = Vec::new();
    // Workspaces in a batch being metered: their next jobs wait for it and go together in the
    // next batch, instead of each waiting alone behind the workspace's lock.
    let mut busy: HashSet<Uuid> = HashSet::new();
    let mut in_flight = 0;
    let mut open = true;
    loop {
        tokio::select! {
            request = requests.recv(), if open => match request {
                Some(request) => {
                    waiting.push(request);
                    while let Ok(request) = requests.try_recv() {
                        waiting.push(request);
                    }
                }
                None => open = false,
            },
            Some(workspaces) = finished.recv() => {
                in_flight -= 1;
                for workspace in workspaces {
                    busy.remove(&workspace);
                }
            }
        }
        while in_flight < BATCHES_IN_FLIGHT {
            let batch = next_batch(&mut waiting, &busy);
            if batch.is_empty() {
                break;
            }
            let workspaces: Vec<Uuid> = batch
                .iter()
                .map(|request| request.job.workspace_id)
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            busy.extend(workspaces.iter().copied());
            in_flight += 1;
            let done = BatchDone {
                workspaces,
                finished: finished_sender.clone(),
            };
            let (db, ledger) = (db.clone(), ledger.clone());
            tokio::spawn(async move {
                meter_batch(&db, &ledger, batch).await;
                drop(done);
            });
        }
        if !open && waiting.is_empty() && in_flight == 0 {
            return;
        }
    }
}

/// Takes the next batch from `waiting`: in the order they came, up to [`MAX_BATCH`] jobs of
/// workspaces no batch in flight holds. The others keep their places.
fn next_batch(waiting: &mut Vec<Request>, busy: &HashSet<Uuid>) -> Vec<Request> {
    let mut batch = Vec::new();
    let mut kept = Vec::new();
    for request in waiting.drain(..) {
        if batch.len() < MAX_BATCH && !busy.contains(&request.job.workspace_id) {
            batch.push(request);
        } else {
            kept.push(request);
        }
    }
    *waiting = kept;
    batch
}

/// Frees a batch's workspaces when the batch ends, however it ends (a panic included), so their
/// next jobs are never stuck behind it.
struct BatchDone {
    workspaces: Vec<Uuid>,
    finished: mpsc::UnboundedSender<Vec<Uuid>>,
}

impl Drop for BatchDone {
    fn drop(&mut self) {
        // The loop holds a sender itself, so this fails only once the loop is gone.
        let _ = self.finished.send(std::mem::take(&mut self.workspaces));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::JobKey;

    fn request(workspace_id: Uuid, github_job_id: i64) -> Request {
        let (answer, _) = oneshot::channel();
        Request {
            job: FinishedJob {
                workspace_id,
                key: JobKey {
                    github_job_id,
                    run_attempt: 1,
                },
                label: "tenki-standard-2c".to_owned(),
                started_at: Utc::now(),
                completed_at: Utc::now(),
                repository: "acme/app".to_owned(),
                workflow: "CI".to_owned(),
            },
            answer,
        }
    }

    fn jobs(requests: &[Request]) -> Vec<i64> {
        requests.iter().map(|r| r.job.key.github_job_id).collect()
    }

    #[test]
    fn jobs_of_a_workspace_being_metered_wait_and_the_others_go_in_order() {
        let (busy_one, free_one, free_two) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut waiting = vec![
            request(busy_one, 1),
            request(free_one, 2),
            request(busy_one, 3),
            request(free_two, 4),
            request(free_one, 5),
        ];
        let batch = next_batch(&mut waiting, &HashSet::from([busy_one]));
        assert_eq!(jobs(&batch), [2, 4, 5]);
        assert_eq!(jobs(&waiting), [1, 3], "kept in the order they came");
        // Once its batch is done, the workspace's waiting jobs go together.
        let batch = next_batch(&mut waiting, &HashSet::new());
        assert_eq!(jobs(&batch), [1, 3]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_jobs() {
        let workspace = Uuid::new_v4();
        let mut waiting: Vec<Request> = (0..MAX_BATCH as i64 + 3)
            .map(|n| request(workspace, n))
            .collect();
        let batch = next_batch(&mut waiting, &HashSet::new());
        assert_eq!(batch.len(), MAX_BATCH);
        let first_left = MAX_BATCH as i64;
        assert_eq!(
            jobs(&waiting),
            [first_left, first_left + 1, first_left + 2],
            "the rest wait for the next batch"
        );
    }

    #[tokio::test]
    async fn a_batch_that_panics_still_frees_its_workspaces() {
        let (finished, mut done) = mpsc::unbounded_channel();
        let workspace = Uuid::new_v4();
        let batch = tokio::spawn(async move {
            let _done = BatchDone {
                workspaces: vec![workspace],
                finished,
            };
            panic!("a bug while metering");
        });
        assert!(batch.await.is_err(), "the batch panicked");
        assert_eq!(done.recv().await, Some(vec![workspace]));
    }
}
