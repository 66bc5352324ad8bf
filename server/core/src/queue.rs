//! The durable background queue (graphile_worker on PostgreSQL): enqueueing, its tasks, the crons
//! and the worker that runs them. Any server replica runs any task; jobs are claimed with
//! `SKIP LOCKED`, and a cron tick is added once whatever the number of replicas.

use chrono::Utc;
use graphile_worker::{IntoTaskHandlerResult, TaskHandler, WorkerContext, WorkerOptions};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::Core;
use crate::admission::{self, ADMIT_TASK, PROVISION_RUNNER_TASK};
use crate::billing::events::{self as stripe_events, PROCESS_EVENT_TASK};
use crate::github::onboarding::{self, SYNC_REPOSITORIES_TASK};
use crate::github::safety_nets;
use crate::metering::JobKey;
use crate::retention;
use crate::runners::{self, REMOVE_RUNNER_TASK, Removal, reaper};

/// The background worker: [`worker`] builds it, `run()` runs it until its shutdown signal.
pub use graphile_worker::Worker;
/// Reads a crontab as the worker does (for tests that tick the server's [`CRONTAB`]).
pub use graphile_worker::parse_crontab;

/// The server's schedule. The safety nets run every five minutes, retention once a day,
/// admission and the runners' reconcile loop every minute (so a job whose cause of waiting went
/// away starts within 60 s even when nothing else asks for a pass). The
/// `{}` payload makes graphile_worker send `{"_cron": {...}}`; the tasks accept that and null.
pub const CRONTAB: &str = "*/5 * * * * redeliver_failed_github_deliveries {}
*/5 * * * * poll_queued_github_jobs {}
17 3 * * * delete_expired_data {}
* * * * * admit_waiting_jobs {}
* * * * * reconcile_runners {}
0 * * * * end_cancelled_addons {}
5 0 1 * * run_monthly_billing {}
20 * * * * resume_invoices {}
30 0 * * * suspend_unpaid_workspaces {}
* * * * * check_spending_limits {}
* * * * * send_notification_emails {}";

/// One job to add to the queue.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    /// The task's identifier (its handler's `IDENTIFIER`).
    pub task: &'static str,
    /// The task's payload.
    pub payload: serde_json::Value,
    /// At most one pending job per key: adding it again replaces the waiting one.
    pub job_key: Option<&'a str>,
    /// Attempts before the job is given up.
    pub max_attempts: i16,
    /// Not before this instant (`None`: now).
    pub run_at: Option<chrono::DateTime<Utc>>,
}

/// Adds `job` to the queue on `db`: pass a transaction to enqueue together with the state change
/// that causes the job. graphile_worker's own SQL function creates the job (its schema comes from
/// the worker's migrations, hence a query checked at run time).
pub async fn enqueue(db: &mut sqlx::PgConnection, job: NewJob<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT graphile_worker.add_job(identifier => $1, payload => $2::json, job_key => $3,
             max_attempts => $4::smallint, run_at => $5)",
    )
    .bind(job.task)
    .bind(job.payload)
    .bind(job.job_key)
    .bind(job.max_attempts)
    .bind(job.run_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Adds one `task` job per (payload, job key) of `jobs` in one statement (graphile_worker's
/// `add_jobs`), each with `max_attempts`; pass a transaction as for [`enqueue`].
pub async fn enqueue_all(
    db: &mut sqlx::PgConnection,
    task: &'static str,
    jobs: &[(serde_json::Value, String)],
    max_attempts: i16,
) -> Result<(), sqlx::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let payloads: Vec<&serde_json::Value> = jobs.iter().map(|(payload, _)| payload).collect();
    let keys: Vec<&str> = jobs.iter().map(|(_, key)| key.as_str()).collect();
    sqlx::query(
        "SELECT graphile_worker.add_jobs(array_agg(
             ROW($1, payload, NULL, NULL, $4::smallint, job_key, NULL, NULL)::graphile_worker.job_spec))
         FROM unnest($2::json[], $3::text[]) AS j(payload, job_key)",
    )
    .bind(task)
    .bind(&payloads)
    .bind(&keys)
    .bind(max_attempts)
    .execute(db)
    .await?;
    Ok(())
}

fn core_of(ctx: &WorkerContext) -> Result<&Core, String> {
    ctx.get_ext::<Core>()
        .ok_or_else(|| "the worker has no Core extension".to_owned())
}

/// Counts one run of a scheduled task, by outcome, for `/metrics`, and logs a failure.
fn count_cron_run<T>(task: &'static str, result: anyhow::Result<T>) -> Result<T, String> {
    match result {
        Ok(value) => {
            metrics::counter!("cron_runs_total", "task" => task, "outcome" => "succeeded")
                .increment(1);
            Ok(value)
        }
        Err(error) => {
            metrics::counter!("cron_runs_total", "task" => task, "outcome" => "failed")
                .increment(1);
            let message = format!("{error:#}");
            tracing::warn!(task, "scheduled task failed: {message}");
            Err(message)
        }
    }
}

/// Processes one stored Stripe event; retried with back-off on failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessStripeEvent {
    pub event_id: String,
}

impl TaskHandler for ProcessStripeEvent {
    const IDENTIFIER: &'static str = PROCESS_EVENT_TASK;

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        match stripe_events::process_event(
            &core.db,
            &core.stripe,
            &core.ledger,
            &self.event_id,
            Utc::now(),
        )
        .await
        {
            Ok(outcome) => {
                tracing::debug!(event = self.event_id, ?outcome, "Stripe event processed");
                metrics::counter!("stripe_events_processed_total", "outcome" => "processed")
                    .increment(1);
                Ok(())
            }
            Err(error) => {
                let message = crate::error_chain(&error);
                tracing::warn!(event = self.event_id, "processing failed: {message}");
                metrics::counter!("stripe_events_processed_total", "outcome" => "failed")
                    .increment(1);
                if let Err(e) =
                    stripe_events::record_failure(&core.db, &self.event_id, &message).await
                {
                    tracing::error!(event = self.event_id, "cannot record the failure: {e}");
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
        let count =
            onboarding::sync_repositories(&core.db, &core.github, self.installation_id, Utc::now())
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

/// Takes back what is left of a workspace's free minutes (`identity::grants::withdraw`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WithdrawFreeGrant {
    pub workspace_id: uuid::Uuid,
}

impl TaskHandler for WithdrawFreeGrant {
    const IDENTIFIER: &'static str = crate::identity::grants::WITHDRAW_TASK;

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        crate::identity::grants::withdraw(&core.db, &core.ledger, self.workspace_id, Utc::now())
            .await
            .map_err(|e| crate::error_chain(&e))?;
        Ok::<(), String>(())
    }
}

/// A scheduled task: its payload (null, or graphile_worker's `{"_cron": …}`) carries nothing
/// it needs, so any payload is accepted.
macro_rules! scheduled_task {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        #[serde(from = "IgnoredAny")]
        pub struct $name {}

        impl From<IgnoredAny> for $name {
            fn from(_: IgnoredAny) -> Self {
                Self {}
            }
        }
    };
}

scheduled_task!(
    /// Asks GitHub to redeliver webhooks that never reached Tenki (every five minutes).
    RedeliverFailedGithubDeliveries
);
scheduled_task!(
    /// Finds queued jobs no webhook announced (every five minutes).
    PollQueuedGithubJobs
);
scheduled_task!(
    /// One admission pass over every waiting job (on demand, and every minute).
    AdmitWaitingJobs
);
scheduled_task!(
    /// The runners' reconcile loop (every minute): see [`crate::runners::reaper`].
    ReconcileRunners
);
scheduled_task!(
    /// Ends cancelled add-ons and applies lowered slot counts at the month's end (hourly).
    EndCancelledAddons
);
scheduled_task!(
    /// Invoices the previous month of every workspace (the 1st, 00:05 UTC).
    RunMonthlyBilling
);
scheduled_task!(
    /// Re-enqueues invoices stuck in a step and payments whose retry is due (hourly).
    ResumeInvoices
);
scheduled_task!(
    /// Suspends workspaces still unpaid on the 10th (daily).
    SuspendUnpaidWorkspaces
);
scheduled_task!(
    /// Tells owners of the spending-limit thresholds crossed (every minute).
    CheckSpendingLimits
);
scheduled_task!(
    /// E-mails the owners the notifications, and people the outbox's e-mails, not sent yet
    /// (every minute).
    SendNotificationEmails
);
scheduled_task!(
    /// E-mails the outbox's e-mails to one person now (after a sign-up or a new confirmation
    /// link). Only the outbox, whose rows are claimed before sending: running beside the
    /// minute's [`SendNotificationEmails`] never sends anything twice.
    SendOutboxEmails
);
scheduled_task!(
    /// Deletes what Tenki no longer keeps (daily): see [`crate::retention`].
    DeleteExpiredData
);

impl TaskHandler for RedeliverFailedGithubDeliveries {
    const IDENTIFIER: &'static str = "redeliver_failed_github_deliveries";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        let report = count_cron_run(
            Self::IDENTIFIER,
            safety_nets::redeliver_failed(&core.db, &core.github, Utc::now()).await,
        )?;
        tracing::info!(redelivered = report.redelivered.len(), paused_until = ?report.paused_until, "redelivery round");
        Ok::<(), String>(())
    }
}

impl TaskHandler for PollQueuedGithubJobs {
    const IDENTIFIER: &'static str = "poll_queued_github_jobs";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        let report = count_cron_run(
            Self::IDENTIFIER,
            safety_nets::poll_queued_jobs(&core.db, &core.github, Utc::now()).await,
        )?;
        tracing::info!(repositories = report.repositories, recorded = report.recorded, paused_until = ?report.paused_until, "queued-job poll");
        Ok::<(), String>(())
    }
}

impl TaskHandler for DeleteExpiredData {
    const IDENTIFIER: &'static str = "delete_expired_data";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        let deleted = count_cron_run(
            Self::IDENTIFIER,
            retention::delete_expired(&core.db, Utc::now())
                .await
                .map_err(anyhow::Error::from),
        )?;
        tracing::info!(?deleted, "expired data deleted");
        Ok::<(), String>(())
    }
}

impl TaskHandler for EndCancelledAddons {
    const IDENTIFIER: &'static str = "end_cancelled_addons";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        let ended = count_cron_run(
            Self::IDENTIFIER,
            crate::billing::addons::end_due(&core.db, Utc::now())
                .await
                .map_err(anyhow::Error::from),
        )?;
        if ended != crate::billing::addons::Ended::default() {
            tracing::info!(?ended, "cancelled add-ons ended");
        }
        Ok::<(), String>(())
    }
}

impl TaskHandler for CheckSpendingLimits {
    const IDENTIFIER: &'static str = "check_spending_limits";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        count_cron_run(
            Self::IDENTIFIER,
            crate::billing::spending::check_all(&core.db, Utc::now())
                .await
                .map_err(anyhow::Error::from),
        )?;
        Ok::<(), String>(())
    }
}

impl TaskHandler for SendOutboxEmails {
    const IDENTIFIER: &'static str = "send_outbox_emails";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        let sent = crate::billing::mail::send_outbox(&core.db, &core.mailer, Utc::now())
            .await
            .map_err(|e| format!("sending the outbox: {e}"))?;
        if sent != crate::billing::mail::Sent::default() {
            tracing::info!(?sent, "personal e-mails");
        }
        Ok::<(), String>(())
    }
}

impl TaskHandler for SendNotificationEmails {
    const IDENTIFIER: &'static str = "send_notification_emails";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        let sent = count_cron_run(
            Self::IDENTIFIER,
            crate::billing::mail::send_pending(&core.db, &core.mailer, Utc::now())
                .await
                .map_err(anyhow::Error::from),
        )?;
        if sent != crate::billing::mail::Sent::default() {
            tracing::info!(?sent, "notification e-mails");
        }
        let sent = count_cron_run(
            Self::IDENTIFIER,
            crate::billing::mail::send_outbox(&core.db, &core.mailer, Utc::now())
                .await
                .map_err(anyhow::Error::from),
        )?;
        if sent != crate::billing::mail::Sent::default() {
            tracing::info!(?sent, "personal e-mails");
        }
        Ok::<(), String>(())
    }
}

impl TaskHandler for RunMonthlyBilling {
    const IDENTIFIER: &'static str = "run_monthly_billing";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        use crate::billing::invoices;
        let core = core_of(&ctx)?;
        let now = Utc::now();
        let report = count_cron_run(
            Self::IDENTIFIER,
            invoices::run_cycle(&core.db, invoices::previous_month(now), now)
                .await
                .map_err(anyhow::Error::from),
        )?;
        tracing::info!(?report, "monthly billing");
        Ok::<(), String>(())
    }
}

impl TaskHandler for ResumeInvoices {
    const IDENTIFIER: &'static str = "resume_invoices";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        let resumed = count_cron_run(
            Self::IDENTIFIER,
            crate::billing::invoices::resume_stuck(&core.db, Utc::now())
                .await
                .map_err(anyhow::Error::from),
        )?;
        if resumed > 0 {
            tracing::info!(resumed, "invoices resumed");
        }
        Ok::<(), String>(())
    }
}

impl TaskHandler for SuspendUnpaidWorkspaces {
    const IDENTIFIER: &'static str = "suspend_unpaid_workspaces";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        let suspended = count_cron_run(
            Self::IDENTIFIER,
            crate::billing::invoices::suspend_unpaid(&core.db, Utc::now())
                .await
                .map_err(anyhow::Error::from),
        )?;
        if suspended > 0 {
            tracing::warn!(suspended, "workspaces suspended for non-payment");
        }
        Ok::<(), String>(())
    }
}

/// Moves one invoice forward through its steps; retried with back-off on failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdvanceInvoice {
    pub invoice_id: uuid::Uuid,
}

impl TaskHandler for AdvanceInvoice {
    const IDENTIFIER: &'static str = crate::billing::invoices::ADVANCE_TASK;

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        match crate::billing::invoices::advance(
            &core.db,
            &core.stripe,
            &core.ledger,
            self.invoice_id,
            Utc::now(),
            usize::MAX,
        )
        .await
        {
            Ok(outcome) => {
                tracing::info!(invoice = %self.invoice_id, ?outcome, "invoice advanced");
                Ok(())
            }
            Err(error) => {
                let message = crate::error_chain(&error);
                tracing::warn!(invoice = %self.invoice_id, "invoice step failed: {message}");
                Err(message)
            }
        }
    }
}

impl TaskHandler for AdmitWaitingJobs {
    const IDENTIFIER: &'static str = ADMIT_TASK;

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        let report = count_cron_run(
            Self::IDENTIFIER,
            admission::admit_waiting(&core.db, &core.ledger, core.capacity, Utc::now())
                .await
                .map_err(|e| anyhow::anyhow!(crate::error_chain(&e))),
        )?;
        if !report.admitted.is_empty() {
            tracing::info!(
                admitted = report.admitted.len(),
                waiting = report.waiting,
                blocked = report.blocked,
                "admission pass"
            );
        }
        Ok::<(), String>(())
    }
}

impl TaskHandler for ReconcileRunners {
    const IDENTIFIER: &'static str = "reconcile_runners";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        let report = count_cron_run(
            Self::IDENTIFIER,
            reaper::reconcile(&core.db, &core.github, &core.kubernetes, Utc::now()).await,
        )?;
        match report {
            Some(report) => tracing::debug!(?report, "runners reconciled"),
            None => tracing::debug!("another reconcile pass is running; this one skipped"),
        }
        Ok::<(), String>(())
    }
}

/// Provisions a runner for one admitted job; retried with back-off.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProvisionRunner {
    pub github_job_id: i64,
    pub run_attempt: i32,
}

impl TaskHandler for ProvisionRunner {
    const IDENTIFIER: &'static str = PROVISION_RUNNER_TASK;

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        let key = JobKey {
            github_job_id: self.github_job_id,
            run_attempt: self.run_attempt,
        };
        match runners::provision(&core.db, &core.github, &core.kubernetes, key, Utc::now()).await {
            Ok(outcome) => {
                tracing::debug!(job = %key, ?outcome, "provisioned");
                Ok(())
            }
            Err(error) => {
                let message = format!("{error:#}");
                tracing::warn!(job = %key, "provisioning failed: {message}");
                metrics::counter!("runner_provisioning_failures_total").increment(1);
                Err(message)
            }
        }
    }
}

/// Removes one runner (deregistered from GitHub, then its Kubernetes objects).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveRunner {
    pub name: String,
    pub why: Removal,
}

impl TaskHandler for RemoveRunner {
    const IDENTIFIER: &'static str = REMOVE_RUNNER_TASK;

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let core = core_of(&ctx)?;
        runners::remove(
            &core.db,
            &core.github,
            &core.kubernetes,
            &self.name,
            self.why,
            Utc::now(),
        )
        .await
        .map_err(|e| {
            let message = format!("{e:#}");
            tracing::warn!(runner = self.name, "removing the runner failed: {message}");
            message
        })?;
        Ok::<(), String>(())
    }
}

/// Resolves once the queue looks stalled: at two checks `every` apart the same job was the
/// oldest one due (for over `every`) and nothing was running; returns how many were due. A
/// worker that runs, however slowly, takes the oldest due job first, so this means its job loop
/// stopped taking jobs without failing, which graphile_worker 0.14 was seen to do under a burst
/// (docs/benchmarks.md).
pub async fn stalled(db: &sqlx::PgPool, every: std::time::Duration) -> i64 {
    // Only jobs this worker runs: one of a task it does not know (left by another version) is
    // never taken, and is no stall.
    let tasks = [
        ProcessStripeEvent::IDENTIFIER,
        SyncGithubRepositories::IDENTIFIER,
        RedeliverFailedGithubDeliveries::IDENTIFIER,
        PollQueuedGithubJobs::IDENTIFIER,
        DeleteExpiredData::IDENTIFIER,
        AdmitWaitingJobs::IDENTIFIER,
        EndCancelledAddons::IDENTIFIER,
        RunMonthlyBilling::IDENTIFIER,
        ResumeInvoices::IDENTIFIER,
        SuspendUnpaidWorkspaces::IDENTIFIER,
        AdvanceInvoice::IDENTIFIER,
        CheckSpendingLimits::IDENTIFIER,
        SendNotificationEmails::IDENTIFIER,
        SendOutboxEmails::IDENTIFIER,
        ReconcileRunners::IDENTIFIER,
        ProvisionRunner::IDENTIFIER,
        RemoveRunner::IDENTIFIER,
    ];
    let mut oldest_before: Option<i64> = None;
    loop {
        tokio::time::sleep(every).await;
        let state: Result<(Option<i64>, i64, i64), sqlx::Error> = sqlx::query_as(
            "WITH ours AS (
                 SELECT j.* FROM graphile_worker._private_jobs j
                 JOIN graphile_worker._private_tasks t ON t.id = j.task_id
                 WHERE t.identifier = ANY($2))
             SELECT (SELECT id FROM ours
                     WHERE locked_at IS NULL AND attempts < max_attempts
                       AND run_at < now() - make_interval(secs => $1)
                     ORDER BY priority, run_at, id LIMIT 1),
                    count(*) FILTER (WHERE locked_at IS NULL AND attempts < max_attempts
                                       AND run_at < now() - make_interval(secs => $1)),
                    count(*) FILTER (WHERE locked_at IS NOT NULL)
             FROM ours",
        )
        .bind(every.as_secs_f64())
        .bind(&tasks[..])
        .fetch_one(db)
        .await;
        match state {
            Ok((Some(oldest), due, 0)) => {
                if oldest_before == Some(oldest) {
                    return due;
                }
                oldest_before = Some(oldest);
            }
            Ok(_) => oldest_before = None,
            Err(e) => tracing::warn!("checking the queue for a stall failed: {e}"),
        }
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
        .define_job::<ProcessStripeEvent>()
        .define_job::<SyncGithubRepositories>()
        .define_job::<RedeliverFailedGithubDeliveries>()
        .define_job::<PollQueuedGithubJobs>()
        .define_job::<DeleteExpiredData>()
        .define_job::<AdmitWaitingJobs>()
        .define_job::<EndCancelledAddons>()
        .define_job::<RunMonthlyBilling>()
        .define_job::<ResumeInvoices>()
        .define_job::<SuspendUnpaidWorkspaces>()
        .define_job::<AdvanceInvoice>()
        .define_job::<CheckSpendingLimits>()
        .define_job::<SendNotificationEmails>()
        .define_job::<SendOutboxEmails>()
        .define_job::<WithdrawFreeGrant>()
        .define_job::<ReconcileRunners>()
        .define_job::<ProvisionRunner>()
        .define_job::<RemoveRunner>()
        .with_cron(CRONTAB)
        .map_err(|e| anyhow::anyhow!("the server's crontab: {e}"))?
        .init()
        .await
        .map_err(|e| anyhow::anyhow!("starting the background worker: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_tasks_accept_every_payload_a_cron_tick_carries() {
        for payload in [
            serde_json::Value::Null,
            serde_json::json!({"_cron": {"ts": "2026-11-29T03:17:00Z", "backfilled": false}}),
        ] {
            serde_json::from_value::<RedeliverFailedGithubDeliveries>(payload.clone())
                .expect("redelivery payload");
            serde_json::from_value::<PollQueuedGithubJobs>(payload.clone()).expect("poll payload");
            serde_json::from_value::<DeleteExpiredData>(payload.clone())
                .expect("retention payload");
            serde_json::from_value::<AdmitWaitingJobs>(payload.clone()).expect("admission payload");
            serde_json::from_value::<ReconcileRunners>(payload.clone()).expect("reconcile payload");
            serde_json::from_value::<EndCancelledAddons>(payload.clone()).expect("add-ons payload");
            serde_json::from_value::<RunMonthlyBilling>(payload.clone()).expect("billing payload");
            serde_json::from_value::<ResumeInvoices>(payload.clone()).expect("resume payload");
            serde_json::from_value::<SuspendUnpaidWorkspaces>(payload.clone())
                .expect("suspend payload");
            serde_json::from_value::<CheckSpendingLimits>(payload.clone())
                .expect("spending payload");
            serde_json::from_value::<SendNotificationEmails>(payload).expect("e-mail payload");
        }
    }

    #[test]
    fn the_crontab_parses_and_names_only_defined_tasks() {
        let entries = graphile_worker::parse_crontab(CRONTAB).expect("valid crontab");
        let tasks: Vec<&str> = entries.iter().map(|e| e.task_identifier.as_str()).collect();
        assert_eq!(
            tasks,
            [
                RedeliverFailedGithubDeliveries::IDENTIFIER,
                PollQueuedGithubJobs::IDENTIFIER,
                DeleteExpiredData::IDENTIFIER,
                AdmitWaitingJobs::IDENTIFIER,
                ReconcileRunners::IDENTIFIER,
                EndCancelledAddons::IDENTIFIER,
                RunMonthlyBilling::IDENTIFIER,
                ResumeInvoices::IDENTIFIER,
                SuspendUnpaidWorkspaces::IDENTIFIER,
                CheckSpendingLimits::IDENTIFIER,
                SendNotificationEmails::IDENTIFIER,
            ]
        );
    }
}
