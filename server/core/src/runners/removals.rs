//! Runner removals asked for by this server's own delivery processing: a completed job's runner,
//! and runners asked for a job that took none. They are gathered while the last batch is being
//! enqueued and go to the durable queue as `remove_runner` tasks, one statement per batch.
//!
//! Why not in the completion's own transaction: every queue job graphile_worker adds sends a
//! NOTIFY, and PostgreSQL commits the transactions that sent one a single one at a time (with
//! their disk flush), so a burst of completions queued up behind each other (docs/benchmarks.md,
//! "The burst, third round").
//!
//! The requests are not durable, and need not be: the runner's state is. A completed job's runner
//! is `finished`, an unused one is `requested` or `starting` with no job, and the reaper's minute
//! pass removes every finished runner and every unused one past its idle limit. A server that dies
//! before enqueueing leaves its removals to that pass.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Removal;
use crate::Core;

/// Asks this server's removal loop to remove runners. Cheap to clone; requests gather.
#[derive(Debug, Clone, Default)]
pub struct RemovalRequests {
    waiting: Arc<Mutex<Vec<(String, Removal)>>>,
    wakeup: Arc<Notify>,
}

impl RemovalRequests {
    /// Asks for the removal of `runners`; call it after the change that made them removable is
    /// committed.
    pub fn request(&self, runners: Vec<(String, Removal)>) {
        if runners.is_empty() {
            return;
        }
        match self.waiting.lock() {
            Ok(mut waiting) => waiting.extend(runners),
            // A panic while holding the lock lost nothing durable: the reaper removes them.
            Err(_) => return,
        }
        self.wakeup.notify_one();
    }

    fn take(&self) -> Vec<(String, Removal)> {
        self.waiting
            .lock()
            .map(|mut waiting| std::mem::take(&mut *waiting))
            .unwrap_or_default()
    }
}

/// Enqueues the requested removals until `shutdown` resolves, then those still waiting. A batch
/// that cannot be enqueued is logged and left to the reaper.
pub async fn run(core: Core, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stopping = tokio::select! {
            () = core.runner_removals.wakeup.notified() => false,
            () = &mut shutdown => true,
        };
        let runners = core.runner_removals.take();
        if !runners.is_empty()
            && let Err(error) = enqueue(&core, &runners).await
        {
            tracing::warn!(
                runners = runners.len(),
                "enqueueing runner removals failed, the reaper removes them: {error}"
            );
        }
        if stopping {
            return;
        }
    }
}

async fn enqueue(core: &Core, runners: &[(String, Removal)]) -> Result<(), sqlx::Error> {
    let mut conn = core.db.acquire().await?;
    super::enqueue_removals(&mut conn, runners).await
}
