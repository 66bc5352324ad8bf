//! The delivery writer: the webhook route stores every delivery through one queue, and the
//! deliveries that arrive while a batch is being stored form the next batch (group commit).
//!
//! Each delivery is still committed before its caller gets an answer, so before the 2xx; only
//! the INSERT and the commit are shared. Nothing waits for a batch to fill: a lone delivery is
//! stored at once, and under a burst the batches grow by themselves (up to [`MAX_BATCH`]).
//! A batch the database refuses is stored again one delivery at a time, so a delivery it refuses
//! fails alone. The queue lives in memory only: a delivery not yet stored has not been answered,
//! and GitHub's redelivery (the safety nets) covers a server that dies with it.
//!
//! Written here rather than taken from a crate: it is the metering batcher's loop
//! ([`crate::metering::Meter`]) without its per-workspace rule. Of the crates looked at,
//! `batched` batches a free function of the items alone (no pool of this server to hand it), and
//! `batchy` waits a time window for a batch to fill and gives a failed batch's error to every
//! caller in it.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::intake::{Intake, NewDelivery, store_deliveries};

/// The most deliveries in one INSERT: at GitHub's 25 MB cap a full batch would be large, but
/// real deliveries are a few kilobytes.
pub const MAX_BATCH: usize = 64;
/// Batches stored at the same time: one is committed while the next is sent.
const BATCHES_IN_FLIGHT: usize = 2;

/// Why a delivery was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("storing the delivery")]
    Database(#[source] Arc<sqlx::Error>),
    #[error("the delivery writer has stopped")]
    Stopped,
}

/// One delivery waiting to be stored and where its answer goes.
struct Request {
    delivery: NewDelivery,
    answer: oneshot::Sender<Result<Intake, WriteError>>,
}

/// A handle on this server's delivery writer. Cheap to clone; the writer stops when the last
/// handle is dropped.
#[derive(Clone)]
pub struct DeliveryWriter {
    requests: mpsc::UnboundedSender<Request>,
}

impl std::fmt::Debug for DeliveryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeliveryWriter")
    }
}

impl DeliveryWriter {
    /// Starts the writer on the current Tokio runtime.
    pub fn start(db: PgPool) -> Self {
        let (requests, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(db, waiting));
        Self { requests }
    }

    /// Stores `delivery` in the next batch and answers once it is committed: the same answer as
    /// [`store_delivery`](super::intake::store_delivery).
    pub async fn store(&self, delivery: NewDelivery) -> Result<Intake, WriteError> {
        let (answer, answered) = oneshot::channel();
        self.requests
            .send(Request { delivery, answer })
            .map_err(|_| WriteError::Stopped)?;
        answered.await.map_err(|_| WriteError::Stopped)?
    }
}

async fn run(db: PgPool, mut requests: mpsc::UnboundedReceiver<Request>) {
    let (finished_sender, mut finished) = mpsc::unbounded_channel::<()>();
    let mut waiting: Vec<Request> = Vec::new();
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
            Some(()) = finished.recv() => in_flight -= 1,
        }
        while in_flight < BATCHES_IN_FLIGHT && !waiting.is_empty() {
            let batch: Vec<Request> = waiting.drain(..waiting.len().min(MAX_BATCH)).collect();
            in_flight += 1;
            let (db, done) = (db.clone(), BatchDone(finished_sender.clone()));
            tokio::spawn(async move {
                store_batch(&db, batch).await;
                drop(done);
            });
        }
        if !open && waiting.is_empty() && in_flight == 0 {
            return;
        }
    }
}

/// Stores one batch and answers each of its callers. A batch PostgreSQL refused is tried again
/// one delivery at a time, so each caller gets its own delivery's outcome.
async fn store_batch(db: &PgPool, batch: Vec<Request>) {
    metrics::histogram!("github_delivery_batch_size").record(batch.len() as f64);
    let (deliveries, answers): (Vec<NewDelivery>, Vec<_>) = batch
        .into_iter()
        .map(|request| (request.delivery, request.answer))
        .unzip();
    let outcomes: Vec<Result<Intake, WriteError>> = match store_deliveries(db, &deliveries).await {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        // Only a row PostgreSQL refused is worth trying alone; without a connection every try
        // would wait for the pool in turn.
        Err(error) if deliveries.len() == 1 || !matches!(error, sqlx::Error::Database(_)) => {
            let error = Arc::new(error);
            deliveries
                .iter()
                .map(|_| Err(WriteError::Database(Arc::clone(&error))))
                .collect()
        }
        Err(error) => {
            tracing::warn!(
                deliveries = deliveries.len(),
                "storing a batch of deliveries failed, storing them one by one: {error}"
            );
            let mut outcomes = Vec::with_capacity(deliveries.len());
            for delivery in &deliveries {
                outcomes.push(
                    store_deliveries(db, std::slice::from_ref(delivery))
                        .await
                        .map(|stored| stored[0])
                        .map_err(|e| WriteError::Database(Arc::new(e))),
                );
            }
            outcomes
        }
    };
    for (answer, outcome) in answers.into_iter().zip(outcomes) {
        // A caller that went away (its client hung up) is told nothing; its delivery is stored
        // all the same.
        let _ = answer.send(outcome);
    }
}

/// Tells the loop a batch ended, however it ended (a panic included), so the next batches are
/// never held back by it.
struct BatchDone(mpsc::UnboundedSender<()>);

impl Drop for BatchDone {
    fn drop(&mut self) {
        // The loop may have stopped already: nothing then waits for this.
        let _ = self.0.send(());
    }
}
