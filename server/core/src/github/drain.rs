//! The delivery drain: processes the stored GitHub deliveries straight from their table, which is
//! their queue (ADR 0007). Each server runs one drain. It claims the due deliveries in batches
//! (`FOR UPDATE SKIP LOCKED`, so drains of several servers never take the same one), processes
//! them `concurrency` at a time, and retries a failed one with back-off until it is given up.
//!
//! The intake wakes its own server's drain as soon as a delivery is committed; a short poll finds
//! what other servers stored, retries that came due and claims a killed server left behind.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::events;
use crate::Core;

/// Attempts at processing a delivery before it is given up (and shown as failed).
pub const MAX_ATTEMPTS: i16 = 25;

/// Wakes this server's drain: the intake calls [`Wakeup::wake`] after storing a delivery, so its
/// processing starts at once instead of at the next poll. Wake-ups coalesce.
#[derive(Debug, Clone, Default)]
pub struct Wakeup(Arc<Notify>);

impl Wakeup {
    /// Tells the drain that a delivery may be due.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// How a drain runs.
#[derive(Debug, Clone, Copy)]
pub struct DrainOptions {
    /// Deliveries processed at once.
    pub concurrency: usize,
    /// How often the drain looks for due deliveries when nothing woke it.
    pub poll: Duration,
    /// How long a claim holds a delivery. A drain whose server was killed loses its claims after
    /// this; processing one delivery is cut off well before it ([`DrainOptions::time_limit`]).
    pub claim: Duration,
}

impl DrainOptions {
    /// `concurrency` deliveries at once, a 250 ms poll and 20 s claims: processing a delivery
    /// takes milliseconds (database and ledger only, no GitHub call), and a delivery a killed
    /// server held is taken up again within 20 s.
    pub fn with_concurrency(concurrency: usize) -> Self {
        Self {
            concurrency: concurrency.max(1),
            poll: Duration::from_millis(250),
            claim: Duration::from_secs(20),
        }
    }

    /// Processing of one delivery is cut off after half its claim, so a claim never lapses
    /// while its drain still works on it.
    fn time_limit(&self) -> Duration {
        self.claim / 2
    }
}

/// A delivery this drain claimed.
struct Claimed {
    delivery_id: String,
    /// Attempts including this one.
    attempts: i16,
}

/// Claims up to `limit` due deliveries for `claim`, counting the attempt, oldest due first.
async fn claim(db: &PgPool, limit: usize, claim: Duration) -> Result<Vec<Claimed>, sqlx::Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    sqlx::query_as!(
        Claimed,
        "UPDATE github_deliveries d
         SET attempts = d.attempts + 1, claimed_until = now() + make_interval(secs => $2)
         FROM (SELECT delivery_id FROM github_deliveries
               WHERE next_attempt_at <= now()
                 AND (claimed_until IS NULL OR claimed_until < now())
               ORDER BY next_attempt_at
               LIMIT $1
               FOR UPDATE SKIP LOCKED) due
         WHERE d.delivery_id = due.delivery_id
         RETURNING d.delivery_id, d.attempts",
        limit,
        claim.as_secs_f64(),
    )
    .fetch_all(db)
    .await
}

/// Runs the drain on `core` until `shutdown`, then lets the deliveries in flight finish.
pub async fn run(
    core: Core,
    options: DrainOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(options.concurrency));
    let mut in_flight = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while let Some(finished) = in_flight.try_join_next() {
            if let Err(e) = finished {
                tracing::error!("processing a delivery panicked: {e}");
            }
        }
        // Claim only what a free slot can start now: a claimed delivery waiting behind a full
        // drain would be taken from another server that has room.
        let first_slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(first_slot) = first_slot else { break };
        let wanted = 1 + slots.available_permits();
        let claiming = std::time::Instant::now();
        let claimed = claim(&core.db, wanted, options.claim).await;
        metrics::histogram!("github_delivery_claim_seconds")
            .record(claiming.elapsed().as_secs_f64());
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!("claiming due GitHub deliveries failed: {e}");
                Vec::new()
            }
        };
        let all_due_taken = claimed.len() < wanted;
        let mut first_slot = Some(first_slot);
        for delivery in claimed {
            let slot = match first_slot.take() {
                Some(slot) => slot,
                None => match Arc::clone(&slots).try_acquire_owned() {
                    Ok(slot) => slot,
                    // Cannot happen (only this loop takes slots); the claim lapses and it is retried.
                    Err(_) => break,
                },
            };
            let core = core.clone();
            in_flight.spawn(async move {
                process(&core, delivery, options.time_limit()).await;
                drop(slot);
            });
        }
        drop(first_slot);
        if all_due_taken {
            tokio::select! {
                () = core.delivery_wakeup.0.notified() => {}
                () = tokio::time::sleep(options.poll) => {}
                () = &mut shutdown => break,
            }
        }
    }
    while in_flight.join_next().await.is_some() {}
}

/// Processes one claimed delivery and records the outcome; a failure is retried after
/// e^min(attempts, 10) seconds (2.7 s, 7.4 s, … then every 6 hours), as the queue did before.
async fn process(core: &Core, delivery: Claimed, time_limit: Duration) {
    let id = delivery.delivery_id.as_str();
    let started = std::time::Instant::now();
    let processed =
        tokio::time::timeout(time_limit, events::process_delivery(core, id, Utc::now())).await;
    let message = match processed {
        Ok(Ok(outcome)) => {
            let kind = match &outcome {
                events::Processed::Job { status, .. } => status.clone(),
                events::Processed::NotTenkis => "not_tenkis".to_owned(),
                events::Processed::Installation => "installation".to_owned(),
                events::Processed::Nothing => "nothing".to_owned(),
            };
            metrics::histogram!("github_delivery_processing_seconds", "outcome" => kind)
                .record(started.elapsed().as_secs_f64());
            tracing::debug!(delivery = id, ?outcome, "delivery processed");
            metrics::counter!("github_deliveries_processed_total", "outcome" => "processed")
                .increment(1);
            return;
        }
        Ok(Err(error)) => crate::error_chain(&error),
        Err(_) => format!("processing took over {} s", time_limit.as_secs()),
    };
    tracing::warn!(
        delivery = id,
        attempt = delivery.attempts,
        "processing failed: {message}"
    );
    metrics::counter!("github_deliveries_processed_total", "outcome" => "failed").increment(1);
    if let Err(e) = events::record_failure(&core.db, id, &message).await {
        // The claim lapses and the delivery is tried again.
        tracing::error!(delivery = id, "cannot record the failure: {e}");
    }
}
