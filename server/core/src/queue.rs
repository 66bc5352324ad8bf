//! The durable background queue (graphile_worker on PostgreSQL): its tasks and the worker that
//! runs them. Any server replica runs any task; jobs are claimed with `SKIP LOCKED`.

use chrono::Utc;
use graphile_worker::{IntoTaskHandlerResult, TaskHandler, Worker, WorkerContext, WorkerOptions};
use serde::{Deserialize, Serialize};

use crate::Core;
use crate::github_events;
use crate::github_onboarding::{self, SYNC_REPOSITORIES_TASK};
use crate::github_safety_nets;
use crate::github_webhooks::PROCESS_DELIVERY_TASK;

/// The safety nets run every five minutes; the queue makes sure one replica runs each round.
const CRONTAB: &str = "*/5 * * * * redeliver_failed_github_deliveries
*/5 * * * * poll_queued_github_jobs";

fn core_of(ctx: &WorkerContext) -> Result<&Core, String> {
    ctx.get_ext::<Core>()
        .ok_or_else(|| "the worker has no Core extension".to_owned())
}

/// Processes one stored GitHub delivery; retried with back-off on failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessGithubDelivery {
    pub delivery_id: String,
}

impl TaskHandler for ProcessGithubDelivery {
    const IDENTIFIER: &'static str = PROCESS_DELIVERY_TASK;

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
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

/// Copies an installation's repositories from GitHub after it is linked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncGithubRepositories {
    pub installation_id: i64,
}

impl TaskHandler for SyncGithubRepositories {
    const IDENTIFIER: &'static str = SYNC_REPOSITORIES_TASK;

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        let count = github_onboarding::sync_repositories(
            &core.db,
            &core.github,
            self.installation_id,
            Utc::now(),
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
        tracing::info!(
            installation = self.installation_id,
            count,
            "repositories synced"
        );
        Ok::<(), String>(())
    }
}

/// Asks GitHub to redeliver webhooks that never reached Tenki (every five minutes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedeliverFailedGithubDeliveries {}

impl TaskHandler for RedeliverFailedGithubDeliveries {
    const IDENTIFIER: &'static str = "redeliver_failed_github_deliveries";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        let report = github_safety_nets::redeliver_failed(&core.db, &core.github, Utc::now())
            .await
            .map_err(|e| format!("{e:#}"))?;
        tracing::info!(redelivered = report.redelivered.len(), paused_until = ?report.paused_until, "redelivery round");
        Ok::<(), String>(())
    }
}

/// Finds queued jobs no webhook announced (every five minutes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollQueuedGithubJobs {}

impl TaskHandler for PollQueuedGithubJobs {
    const IDENTIFIER: &'static str = "poll_queued_github_jobs";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        let report = github_safety_nets::poll_queued_jobs(&core.db, &core.github, Utc::now())
            .await
            .map_err(|e| format!("{e:#}"))?;
        tracing::info!(repositories = report.repositories, recorded = report.recorded, paused_until = ?report.paused_until, "queued-job poll");
        Ok::<(), String>(())
    }
}

/// A worker on `core`'s database running every task, `concurrency` at a time, until `shutdown`.
/// Creates (or upgrades) the queue's schema first.
pub async fn worker(
    core: Core,
    concurrency: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Worker> {
    WorkerOptions::default()
        .pg_pool(core.db.clone())
        .schema("graphile_worker")
        .concurrency(concurrency)
        .listen_os_shutdown_signals(false)
        .shutdown_signal(shutdown)
        .add_extension(core)
        .define_job::<ProcessGithubDelivery>()
        .define_job::<SyncGithubRepositories>()
        .define_job::<RedeliverFailedGithubDeliveries>()
        .define_job::<PollQueuedGithubJobs>()
        .with_cron(CRONTAB)
        .map_err(|e| anyhow::anyhow!("the safety nets' crontab: {e}"))?
        .init()
        .await
        .map_err(|e| anyhow::anyhow!("starting the background worker: {e}"))
}
