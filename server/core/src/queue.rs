//! The durable background queue (graphile_worker on PostgreSQL): its tasks and the worker that
//! runs them. Any server replica runs any task; jobs are claimed with `SKIP LOCKED`.

use chrono::Utc;
use graphile_worker::{IntoTaskHandlerResult, TaskHandler, Worker, WorkerContext, WorkerOptions};
use serde::{Deserialize, Serialize};

use crate::Core;
use crate::github_events;
use crate::github_webhooks::PROCESS_DELIVERY_TASK;

/// Processes one stored GitHub delivery; retried with back-off on failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessGithubDelivery {
    pub delivery_id: String,
}

impl TaskHandler for ProcessGithubDelivery {
    const IDENTIFIER: &'static str = PROCESS_DELIVERY_TASK;

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let Some(core) = ctx.get_ext::<Core>() else {
            return Err("the worker has no Core extension".to_owned());
        };
        match github_events::process_delivery(&core.db, &core.ledger, &self.delivery_id, Utc::now())
            .await
        {
            Ok(outcome) => {
                tracing::debug!(delivery = self.delivery_id, ?outcome, "delivery processed");
                metrics::counter!("github_deliveries_processed_total", "outcome" => "processed")
                    .increment(1);
                Ok(())
            }
            Err(error) => {
                let message = error.to_string();
                tracing::warn!(delivery = self.delivery_id, "processing failed: {message}");
                metrics::counter!("github_deliveries_processed_total", "outcome" => "failed")
                    .increment(1);
                if let Err(e) =
                    github_events::record_failure(&core.db, &self.delivery_id, &message).await
                {
                    tracing::error!(
                        delivery = self.delivery_id,
                        "cannot record the failure: {e}"
                    );
                }
                Err(message)
            }
        }
    }
}

/// A worker on `core`'s database running every task, `concurrency` at a time, until `shutdown`.
/// Creates (or upgrades) the queue's schema first.
pub async fn worker(
    core: Core,
    concurrency: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Worker, graphile_worker::WorkerBuildError> {
    WorkerOptions::default()
        .pg_pool(core.db.clone())
        .schema("graphile_worker")
        .concurrency(concurrency)
        .listen_os_shutdown_signals(false)
        .shutdown_signal(shutdown)
        .add_extension(core)
        .define_job::<ProcessGithubDelivery>()
        .init()
        .await
}
