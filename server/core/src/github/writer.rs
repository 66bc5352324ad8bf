//! The delivery writer: the webhook route stores every delivery through one queue, and the
//! deliveries that arrive while a batch is being stored form the next batch (group commit,
//! [`crate::batching`]).
//!
//! Each delivery is still committed before its caller gets an answer, so before the 2xx; only
//! the INSERT and the commit are shared. Nothing waits for a batch to fill: a lone delivery is
//! stored at once, and under a burst the batches grow by themselves (up to [`MAX_BATCH`]).
//! A batch the database refuses is stored again one delivery at a time, so a delivery it refuses
//! fails alone. The queue lives in memory only: a delivery not yet stored has not been answered,
//! and GitHub's redelivery (the safety nets) covers a server that dies with it.

use std::sync::Arc;

use sqlx::PgPool;

use super::intake::{Intake, NewDelivery, store_deliveries};
use crate::batching::{Batcher, Limits};

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

/// A handle on this server's delivery writer. Cheap to clone; the writer stops when the last
/// handle is dropped.
#[derive(Clone)]
pub struct DeliveryWriter {
    batcher: Batcher<NewDelivery, Result<Intake, WriteError>>,
}

impl std::fmt::Debug for DeliveryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeliveryWriter")
    }
}

impl DeliveryWriter {
    /// Starts the writer on the current Tokio runtime.
    pub fn start(db: PgPool) -> Self {
        let limits = Limits {
            max_batch: MAX_BATCH,
            in_flight: BATCHES_IN_FLIGHT,
        };
        let batcher = Batcher::start(
            limits,
            |_: &NewDelivery| None::<()>,
            move |deliveries| {
                let db = db.clone();
                async move { store_batch(&db, deliveries).await }
            },
        );
        Self { batcher }
    }

    /// Stores `delivery` in the next batch and answers once it is committed: the same answer as
    /// [`store_delivery`](super::intake::store_delivery).
    pub async fn store(&self, delivery: NewDelivery) -> Result<Intake, WriteError> {
        self.batcher
            .submit(delivery)
            .await
            .map_err(|_| WriteError::Stopped)?
    }
}

/// Stores one batch: one outcome per delivery, in their order. A batch PostgreSQL refused is
/// tried again one delivery at a time, so each caller gets its own delivery's outcome.
async fn store_batch(db: &PgPool, deliveries: Vec<NewDelivery>) -> Vec<Result<Intake, WriteError>> {
    metrics::histogram!("github_delivery_batch_size").record(deliveries.len() as f64);
    match store_deliveries(db, &deliveries).await {
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
    }
}
