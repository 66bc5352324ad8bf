//! Processing stored GitHub deliveries (SPEC §2, §4): installations and their repositories, and
//! the life of every job with a Tenki label, metered exactly once when it completes.
//!
//! Deliveries arrive late, twice and out of order. A job's status only moves forward
//! (waiting → queued → in_progress → completed), timestamps are kept once known, and metering is
//! idempotent by the job key, so any order of any number of deliveries ends in the same state.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use crate::Core;
use crate::catalog;
use crate::metering::{FinishedJob, JobKey, MeteringError};
use crate::runners;

/// Why a delivery could not be processed; the drain retries it with back-off.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("delivery {0} is not stored")]
    UnknownDelivery(String),
    #[error("delivery {0}'s body was deleted after 30 days")]
    BodyDeleted(String),
    #[error("the {event} payload does not have the expected shape: {problem}")]
    Malformed { event: String, problem: String },
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("metering")]
    Metering(#[from] MeteringError),
}

/// What processing did with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// A job with a Tenki label moved (or stayed) at this status.
    Job {
        status: String,
        metered: bool,
        /// Set once a completed job is known never to be billed, in the customer's words.
        not_billed_reason: Option<String>,
    },
    /// A job without a Tenki label: not Tenki's.
    NotTenkis,
    /// An installation or its repositories were updated.
    Installation,
    /// Nothing to do for this action.
    Nothing,
}

#[derive(Debug, Deserialize)]
struct Account {
    /// GitHub's id of the account: what the free-grant registry keys on (a login can change).
    #[serde(default)]
    id: Option<i64>,
    login: String,
    #[serde(rename = "type")]
    kind: String,
}

/// A repository as GitHub's payloads and API describe it.
#[derive(Debug, Deserialize)]
pub struct Repository {
    pub id: i64,
    pub full_name: String,
    #[serde(default)]
    pub private: bool,
}

#[derive(Debug, Deserialize)]
struct Installation {
    id: i64,
    account: Option<Account>,
}

#[derive(Debug, Deserialize)]
struct InstallationEvent {
    action: String,
    installation: Installation,
    #[serde(default)]
    repositories: Vec<Repository>,
    /// Who asked for it, when an organization owner approved a request.
    requester: Option<Account>,
}

#[derive(Debug, Deserialize)]
struct InstallationRepositoriesEvent {
    action: String,
    installation: Installation,
    #[serde(default)]
    repositories_added: Vec<Repository>,
    #[serde(default)]
    repositories_removed: Vec<Repository>,
}

#[derive(Debug, Deserialize)]
struct WorkflowJob {
    id: i64,
    run_attempt: i32,
    status: String,
    labels: Vec<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    conclusion: Option<String>,
    runner_name: Option<String>,
    workflow_name: Option<String>,
    /// The job's own name in its workflow (`build`).
    name: Option<String>,
    run_id: Option<i64>,
    /// The job's page on GitHub.
    html_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WorkflowJobEvent {
    workflow_job: WorkflowJob,
    repository: Repository,
    installation: Option<Installation>,
}

/// Processes the stored delivery `delivery_id` and marks it processed. Safe to repeat.
#[tracing::instrument(level = "debug", skip(core, now))]
pub async fn process_delivery(
    core: &Core,
    delivery_id: &str,
    now: DateTime<Utc>,
) -> Result<Processed, ProcessError> {
    let db = &core.db;
    let delivery = sqlx::query!(
        "SELECT event, body, received_at FROM github_deliveries WHERE delivery_id = $1",
        delivery_id,
    )
    .fetch_optional(db)
    .await?
    .ok_or_else(|| ProcessError::UnknownDelivery(delivery_id.to_owned()))?;
    let body = delivery
        .body
        .ok_or_else(|| ProcessError::BodyDeleted(delivery_id.to_owned()))?;
    let parse_error = |e: serde_json::Error| ProcessError::Malformed {
        event: delivery.event.clone(),
        problem: e.to_string(),
    };
    let outcome = match delivery.event.as_str() {
        "workflow_job" => {
            let event: WorkflowJobEvent = serde_json::from_str(&body).map_err(parse_error)?;
            workflow_job(core, event, delivery.received_at, now).await?
        }
        "installation" => {
            let event: InstallationEvent = serde_json::from_str(&body).map_err(parse_error)?;
            installation(db, event, now).await?
        }
        "installation_repositories" => {
            let event: InstallationRepositoriesEvent =
                serde_json::from_str(&body).map_err(parse_error)?;
            installation_repositories(db, event, now).await?
        }
        _ => Processed::Nothing,
    };
    sqlx::query!(
        "UPDATE github_deliveries
         SET status = 'processed', processed_at = $2, error = NULL, next_attempt_at = NULL,
             claimed_until = NULL
         WHERE delivery_id = $1",
        delivery_id,
        now,
    )
    .execute(db)
    .await?;
    Ok(outcome)
}

/// Records a failed processing attempt on the delivery, for the dashboard and `/metrics`, and
/// when it is tried again: after e^min(attempts, 10) seconds (2.7 s, 7.4 s, … then every 6
/// hours), or never once [`drain::MAX_ATTEMPTS`](super::drain::MAX_ATTEMPTS) were made.
pub async fn record_failure(
    db: &PgPool,
    delivery_id: &str,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE github_deliveries
         SET status = 'failed', error = $2, claimed_until = NULL,
             next_attempt_at = CASE WHEN attempts >= $3 THEN NULL
                                    ELSE now() + make_interval(secs => exp(least(attempts, 10)))
                               END
         WHERE delivery_id = $1",
        delivery_id,
        error,
        super::drain::MAX_ATTEMPTS,
    )
    .execute(db)
    .await?;
    Ok(())
}

async fn workflow_job(
    core: &Core,
    event: WorkflowJobEvent,
    received_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Processed, ProcessError> {
    let db = &core.db;
    let job = event.workflow_job;
    let labels: Vec<&str> = job.labels.iter().map(String::as_str).collect();
    let Some(label) = catalog::first_tenki_label(db, &labels).await? else {
        return Ok(Processed::NotTenkis);
    };
    // GitHub fills `started_at` with the queue time on queued events and on a job it cancelled
    // before any runner took it, and its own example of a queued delivery names a runner
    // (fixtures/github/workflow_job.queued.json): trust the runner only once the job runs, and
    // `started_at` only with a runner.
    let running = matches!(job.status.as_str(), "in_progress" | "completed");
    let runner_name = job.runner_name.filter(|_| running);
    let started_at = job.started_at.filter(|_| runner_name.is_some());
    let completed_at = job.completed_at.filter(|_| job.status == "completed");
    // The dashboard links to it: only a web address, never a `javascript:` one.
    let html_url = job.html_url.filter(|url| url.starts_with("https://"));
    let row = sqlx::query!(
        r#"INSERT INTO github_jobs (github_job_id, run_attempt, installation_id, repository, workflow,
               label, status, conclusion, runner_name, created_at, first_delivery_at, started_at,
               completed_at, updated_at, job_name, run_id, html_url)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
           ON CONFLICT (github_job_id, run_attempt) DO UPDATE SET
               status = CASE
                   WHEN array_position(ARRAY['waiting','queued','in_progress','completed'], EXCLUDED.status)
                      > array_position(ARRAY['waiting','queued','in_progress','completed'], github_jobs.status)
                   THEN EXCLUDED.status ELSE github_jobs.status END,
               installation_id = coalesce(github_jobs.installation_id, EXCLUDED.installation_id),
               conclusion = coalesce(EXCLUDED.conclusion, github_jobs.conclusion),
               runner_name = coalesce(EXCLUDED.runner_name, github_jobs.runner_name),
               first_delivery_at = least(github_jobs.first_delivery_at, EXCLUDED.first_delivery_at),
               started_at = coalesce(EXCLUDED.started_at, github_jobs.started_at),
               completed_at = coalesce(EXCLUDED.completed_at, github_jobs.completed_at),
               job_name = coalesce(EXCLUDED.job_name, github_jobs.job_name),
               run_id = coalesce(EXCLUDED.run_id, github_jobs.run_id),
               html_url = coalesce(EXCLUDED.html_url, github_jobs.html_url),
               updated_at = EXCLUDED.updated_at
           RETURNING status, metered, started_at, completed_at, runner_name, not_billed_reason,
                     admission,
                     (SELECT workspace_id FROM github_installations i
                      WHERE i.installation_id = github_jobs.installation_id) AS workspace_id"#,
        job.id,
        job.run_attempt,
        event.installation.as_ref().map(|i| i.id),
        event.repository.full_name,
        job.workflow_name.clone().unwrap_or_default(),
        label,
        job.status,
        job.conclusion,
        runner_name,
        job.created_at,
        received_at,
        started_at,
        completed_at,
        now,
        job.name,
        job.run_id,
        html_url,
    )
    .fetch_one(db)
    .await?;

    let key = JobKey {
        github_job_id: job.id,
        run_attempt: job.run_attempt,
    };
    let workspace_id = row.workspace_id;
    // The job's place in admission and its runner (SPEC §4, §5).
    if let Some(workspace_id) = workspace_id {
        match (row.status.as_str(), row.runner_name.as_deref()) {
            // In-process: a durable request per queued job serialized a burst on its one
            // queue key; the job's own `pending` state is what a later pass would find anyway.
            ("waiting" | "queued", _) if row.admission == "pending" => {
                core.admission_passes.request();
            }
            ("in_progress", Some(runner_name)) => {
                let mut tx = db.begin().await?;
                runners::job_started(&mut tx, workspace_id, key, runner_name, now).await?;
                tx.commit().await?;
            }
            ("completed", runner_name) => {
                let mut tx = db.begin().await?;
                let completion =
                    runners::job_completed(&mut tx, workspace_id, key, runner_name, now).await?;
                tx.commit().await?;
                core.runner_removals.request(completion.to_remove);
                if completion.released_slot {
                    core.admission_passes.request();
                }
            }
            _ => {}
        }
    }
    let mut processed = Processed::Job {
        status: row.status.clone(),
        metered: row.metered,
        not_billed_reason: row.not_billed_reason.clone(),
    };
    if row.status != "completed" || row.metered || row.not_billed_reason.is_some() {
        return Ok(processed);
    }
    // A job no runner took costs nothing (SPEC §4, §6): GitHub still fills its `started_at`
    // (with the time it waited) when it cancels a queued job, but it names no runner.
    if row.runner_name.is_none() {
        let reason = "not billed: cancelled before a runner took it";
        mark_not_billed(db, key, reason).await?;
        return Ok(Processed::Job {
            status: row.status,
            metered: false,
            not_billed_reason: Some(reason.to_owned()),
        });
    }
    let (Some(workspace_id), Some(started_at), Some(completed_at), Some(runner_name)) = (
        workspace_id,
        row.started_at,
        row.completed_at,
        row.runner_name.as_deref(),
    ) else {
        return Ok(processed);
    };
    // Only a job that ran on a runner Tenki started for this workspace is billed (SPEC §6).
    if !runners::is_tenkis(db, workspace_id, runner_name).await? {
        let reason = format!("not billed: it ran on a runner Tenki did not start ({runner_name})");
        mark_not_billed(db, key, &reason).await?;
        return Ok(Processed::Job {
            status: row.status,
            metered: false,
            not_billed_reason: Some(reason),
        });
    }
    let finished = FinishedJob {
        workspace_id,
        key,
        label: label.clone(),
        started_at,
        completed_at,
        repository: event.repository.full_name.clone(),
        workflow: job.workflow_name.unwrap_or_default(),
    };
    match core.meter.meter(finished).await {
        Ok(record) => {
            sqlx::query(
                "WITH job AS (
                     UPDATE github_jobs SET metered = true WHERE github_job_id = $4 AND run_attempt = $5
                 )
                 UPDATE usage_records SET runner_name = $3 WHERE workspace_id = $1 AND job_key = $2",
            )
            .bind(workspace_id)
            .bind(&record.job_key)
            .bind(runner_name)
            .bind(key.github_job_id)
            .bind(key.run_attempt)
            .execute(db)
            .await?;
            processed = Processed::Job {
                status: row.status,
                metered: true,
                not_billed_reason: None,
            };
        }
        // Retrying cannot change these: end now, visibly, instead of 25 retries.
        Err(error) => match error.not_billed_reason() {
            Some(reason) => {
                tracing::warn!(job = %key, "not billed: {}", crate::error_chain(&error));
                metrics::counter!("jobs_not_billed_total").increment(1);
                mark_not_billed(db, key, &reason).await?;
                processed = Processed::Job {
                    status: row.status,
                    metered: false,
                    not_billed_reason: Some(reason),
                };
            }
            None => return Err(error.into()),
        },
    }
    Ok(processed)
}

/// Records why a completed job is not billed; it is then never metered.
async fn mark_not_billed(db: &PgPool, key: JobKey, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE github_jobs SET not_billed_reason = $3
         WHERE github_job_id = $1 AND run_attempt = $2 AND NOT metered",
        key.github_job_id,
        key.run_attempt,
        reason,
    )
    .execute(db)
    .await?;
    Ok(())
}

async fn installation(
    db: &PgPool,
    event: InstallationEvent,
    now: DateTime<Utc>,
) -> Result<Processed, ProcessError> {
    let state = match event.action.as_str() {
        "created" | "unsuspend" | "new_permissions_accepted" => "active",
        "suspend" => "suspended",
        "deleted" => "deleted",
        _ => return Ok(Processed::Nothing),
    };
    let (account_id, login, kind) = event
        .installation
        .account
        .map_or((None, String::new(), String::new()), |a| {
            (a.id, a.login, a.kind)
        });
    let mut tx = db.begin().await?;
    sqlx::query!(
        "INSERT INTO github_installations (installation_id, account_login, account_type, state, updated_at, account_id)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (installation_id) DO UPDATE SET
             state = EXCLUDED.state,
             account_id = coalesce(EXCLUDED.account_id, github_installations.account_id),
             account_login = CASE WHEN EXCLUDED.account_login = '' THEN github_installations.account_login
                                  ELSE EXCLUDED.account_login END,
             account_type = CASE WHEN EXCLUDED.account_type = '' THEN github_installations.account_type
                                 ELSE EXCLUDED.account_type END,
             updated_at = EXCLUDED.updated_at",
        event.installation.id,
        login,
        kind,
        state,
        now,
        account_id,
    )
    .execute(&mut *tx)
    .await?;
    upsert_repositories(
        &mut tx,
        event.installation.id,
        &event.repositories,
        false,
        now,
    )
    .await?;
    if let (Some(requester), "created") = (&event.requester, event.action.as_str()) {
        let linked = crate::github::onboarding::link_requested_installation(
            &mut tx,
            event.installation.id,
            &requester.login,
            now,
        )
        .await?;
        if let Some(workspace_id) = linked {
            tracing::info!(installation = event.installation.id, %workspace_id, "approved installation request linked");
        }
    }
    tx.commit().await?;
    Ok(Processed::Installation)
}

async fn installation_repositories(
    db: &PgPool,
    event: InstallationRepositoriesEvent,
    now: DateTime<Utc>,
) -> Result<Processed, ProcessError> {
    if !matches!(event.action.as_str(), "added" | "removed") {
        return Ok(Processed::Nothing);
    }
    // The installation may not be known yet (its `created` delivery still in flight).
    let mut tx = db.begin().await?;
    sqlx::query!(
        "INSERT INTO github_installations (installation_id, account_login, account_type, state, updated_at)
         VALUES ($1, $2, $3, 'active', $4) ON CONFLICT (installation_id) DO NOTHING",
        event.installation.id,
        event.installation.account.as_ref().map_or("", |a| a.login.as_str()),
        event.installation.account.as_ref().map_or("", |a| a.kind.as_str()),
        now,
    )
    .execute(&mut *tx)
    .await?;
    upsert_repositories(
        &mut tx,
        event.installation.id,
        &event.repositories_added,
        false,
        now,
    )
    .await?;
    upsert_repositories(
        &mut tx,
        event.installation.id,
        &event.repositories_removed,
        true,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Processed::Installation)
}

/// Records `repositories` of an installation, as present or (with `removed`) as removed.
pub(crate) async fn upsert_repositories(
    db: &mut sqlx::PgConnection,
    installation_id: i64,
    repositories: &[Repository],
    removed: bool,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if repositories.is_empty() {
        return Ok(());
    }
    // One statement for the whole list: an installation may bring thousands of repositories.
    let ids: Vec<i64> = repositories.iter().map(|r| r.id).collect();
    let names: Vec<String> = repositories.iter().map(|r| r.full_name.clone()).collect();
    let private: Vec<bool> = repositories.iter().map(|r| r.private).collect();
    sqlx::query!(
        "INSERT INTO github_repositories (repository_id, installation_id, full_name, private, removed, updated_at)
         SELECT r.id, $2, r.full_name, r.private, $5, $6
         FROM unnest($1::bigint[], $3::text[], $4::bool[]) AS r(id, full_name, private)
         ON CONFLICT (repository_id) DO UPDATE SET
             installation_id = EXCLUDED.installation_id, full_name = EXCLUDED.full_name,
             private = EXCLUDED.private, removed = EXCLUDED.removed, updated_at = EXCLUDED.updated_at",
        &ids,
        installation_id,
        &names,
        &private,
        removed,
        now,
    )
    .execute(&mut *db)
    .await?;
    Ok(())
}
