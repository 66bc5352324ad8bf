//! Admission passes asked for by this server's own delivery processing: a job queued, a slot
//! freed by a finished job. Each server runs one pass loop; requests that arrive while a pass
//! runs are served by one more pass right after it, so a burst of a thousand deliveries costs a
//! handful of passes instead of a queue job each.
//!
//! The requests are not durable, and need not be: the job's state is (`admission = 'pending'`,
//! its slot row gone), and a pass admits every job that waits. A server that dies before its
//! pass leaves the work to the minute cron pass or any other server's next pass. Changes made
//! elsewhere (a card added, an add-on bought) still ask through the durable queue
//! ([`request_pass`](super::request_pass)), in the transaction that makes them.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Notify;

use crate::Core;

/// Asks this server's pass loop for a pass. Cheap to clone; requests coalesce.
#[derive(Debug, Clone, Default)]
pub struct PassRequests(Arc<Notify>);

impl PassRequests {
    /// Asks for a pass soon; call it after the change that needs the pass is committed.
    pub fn request(&self) {
        self.0.notify_one();
    }
}

/// Runs admission passes when asked until `shutdown` resolves. A failed pass is logged; the
/// next request or the minute cron pass tries again.
pub async fn run(core: Core, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = core.admission_passes.0.notified() => {}
            () = &mut shutdown => return,
        }
        match super::admit_waiting(&core.db, &core.ledger, core.capacity, Utc::now()).await {
            Ok(report) if !report.admitted.is_empty() => tracing::info!(
                admitted = report.admitted.len(),
                waiting = report.waiting,
                blocked = report.blocked,
                "admission pass"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!("admission pass failed: {}", crate::error_chain(&error)),
        }
    }
}
