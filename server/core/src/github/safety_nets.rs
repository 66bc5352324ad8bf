//! The loops that catch what webhooks missed (SPEC §2): GitHub does not redeliver a failed
//! webhook by itself, so Tenki asks it to; and a job no delivery announced is found by polling
//! the queued jobs of active repositories and recorded as if it had been announced.
//!
//! Both stop at the first rate-limit refusal and leave the rest for the next round.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use http::Method;
use serde::Deserialize;
use sqlx::PgPool;

use crate::catalog;
use crate::github::client::{GitHubApp, GitHubError};
use crate::github::intake::{self, Intake};

/// Deliveries older than this are not redelivered: GitHub keeps three days of them, and a job
/// that old is long over.
pub const REDELIVERY_WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// Installations with a delivery or a change this recent have their queued jobs polled.
pub const ACTIVITY_WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// Most pages read from one list in one round; the rest waits for the next round.
const MAX_PAGES: usize = 20;

/// One attempt at delivering a webhook, as `GET /app/hook/deliveries` lists it.
#[derive(Debug, Clone, Deserialize)]
struct HookDelivery {
    id: i64,
    guid: String,
    delivered_at: DateTime<Utc>,
    status_code: i64,
}

/// What a redelivery round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedeliveryReport {
    /// Deliveries (by their `X-GitHub-Delivery` id) that never reached Tenki and were asked for
    /// again.
    pub redelivered: Vec<String>,
    /// Set when GitHub's rate limit cut the round short.
    pub paused_until: Option<DateTime<Utc>>,
}

/// Asks GitHub to redeliver every delivery of the last [`REDELIVERY_WINDOW`] whose attempts all
/// failed and which Tenki has not stored.
#[tracing::instrument(skip_all)]
pub async fn redeliver_failed(
    db: &PgPool,
    github: &GitHubApp,
    now: DateTime<Utc>,
) -> anyhow::Result<RedeliveryReport> {
    let mut report = RedeliveryReport::default();
    let mut attempts: BTreeMap<String, Vec<HookDelivery>> = BTreeMap::new();
    let mut path = Some("/app/hook/deliveries?per_page=100".to_owned());
    let mut pages = 0;
    while let Some(current) = path.take() {
        let page = match github
            .as_app::<Vec<HookDelivery>>(Method::GET, &current, None::<&()>)
            .await
        {
            Ok(page) => page,
            Err(GitHubError::RateLimited { until }) => {
                report.paused_until = Some(until);
                return Ok(report);
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context("listing the App's webhook deliveries"));
            }
        };
        pages += 1;
        // Newest first: once a page reaches past the window, older pages are not needed.
        let reached_end = page
            .items
            .iter()
            .any(|d| d.delivered_at < now - REDELIVERY_WINDOW);
        for delivery in page.items {
            if delivery.delivered_at >= now - REDELIVERY_WINDOW {
                attempts
                    .entry(delivery.guid.clone())
                    .or_default()
                    .push(delivery);
            }
        }
        if !reached_end && pages < MAX_PAGES {
            path = page.next;
        }
    }
    let failed: Vec<(String, i64)> = attempts
        .into_iter()
        .filter(|(_, tries)| !tries.iter().any(|t| (200..300).contains(&t.status_code)))
        .filter_map(|(guid, tries)| {
            let latest = tries.iter().max_by_key(|t| t.delivered_at)?.id;
            Some((guid, latest))
        })
        .collect();
    if failed.is_empty() {
        return Ok(report);
    }
    let guids: Vec<String> = failed.iter().map(|(guid, _)| guid.clone()).collect();
    let stored: Vec<String> = sqlx::query_scalar!(
        "SELECT delivery_id FROM github_deliveries WHERE delivery_id = ANY($1)",
        &guids,
    )
    .fetch_all(db)
    .await?;
    for (guid, attempt_id) in failed {
        if stored.contains(&guid) {
            continue;
        }
        match github
            .as_app::<serde_json::Value>(
                Method::POST,
                &format!("/app/hook/deliveries/{attempt_id}/attempts"),
                None::<&()>,
            )
            .await
        {
            Ok(_) => {
                tracing::info!(
                    delivery = guid,
                    "asked GitHub to redeliver a failed webhook"
                );
                metrics::counter!("github_redeliveries_requested_total").increment(1);
                report.redelivered.push(guid);
            }
            Err(GitHubError::RateLimited { until }) => {
                report.paused_until = Some(until);
                break;
            }
            Err(e) => tracing::warn!(delivery = guid, "redelivery refused: {e}"),
        }
    }
    Ok(report)
}

#[derive(Debug, Deserialize)]
struct WorkflowRuns {
    workflow_runs: Vec<WorkflowRun>,
}

#[derive(Debug, Deserialize)]
struct WorkflowRun {
    id: i64,
}

#[derive(Debug, Deserialize)]
struct WorkflowJobs {
    jobs: Vec<serde_json::Value>,
}

/// What a polling round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    /// Repositories whose queued jobs were listed.
    pub repositories: usize,
    /// Queued jobs with a Tenki label that no delivery had announced, now recorded.
    pub recorded: usize,
    /// Set when GitHub's rate limit cut the round short.
    pub paused_until: Option<DateTime<Utc>>,
}

/// Lists the queued jobs of the repositories of recently active, linked installations and
/// records each Tenki job Tenki has not heard of, through the same path as a delivery.
#[tracing::instrument(skip_all)]
pub async fn poll_queued_jobs(
    db: &PgPool,
    github: &GitHubApp,
    now: DateTime<Utc>,
) -> anyhow::Result<PollReport> {
    let mut report = PollReport::default();
    let repositories = sqlx::query!(
        r#"SELECT r.repository_id, r.full_name, r.private, i.installation_id
           FROM github_repositories r
           JOIN github_installations i USING (installation_id)
           WHERE NOT r.removed AND i.state = 'active' AND i.workspace_id IS NOT NULL
             AND (i.updated_at > $1 OR EXISTS (
                 SELECT 1 FROM github_deliveries d
                 WHERE d.installation_id = i.installation_id AND d.received_at > $1))
           ORDER BY r.full_name"#,
        now - ACTIVITY_WINDOW,
    )
    .fetch_all(db)
    .await?;
    for repository in repositories {
        report.repositories += 1;
        let listed = queued_jobs(github, repository.installation_id, &repository.full_name).await;
        let jobs = match listed {
            Ok(jobs) => jobs,
            Err(GitHubError::RateLimited { until }) => {
                report.paused_until = Some(until);
                break;
            }
            Err(e) => {
                tracing::warn!(
                    repository = repository.full_name,
                    "cannot list queued jobs: {e}"
                );
                continue;
            }
        };
        for job in jobs {
            let (Some(job_id), Some(attempt)) = (
                job.get("id").and_then(serde_json::Value::as_i64),
                job.get("run_attempt").and_then(serde_json::Value::as_i64),
            ) else {
                continue;
            };
            if job.get("status").and_then(serde_json::Value::as_str) != Some("queued") {
                continue;
            }
            let labels: Vec<&str> = job
                .get("labels")
                .and_then(serde_json::Value::as_array)
                .map(|labels| {
                    labels
                        .iter()
                        .filter_map(serde_json::Value::as_str)
                        .collect()
                })
                .unwrap_or_default();
            if catalog::first_tenki_label(db, &labels).await?.is_none() {
                continue;
            }
            let known = sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM github_jobs WHERE github_job_id = $1 AND run_attempt = $2) AS "known!""#,
                job_id,
                i32::try_from(attempt).unwrap_or(i32::MAX),
            )
            .fetch_one(db)
            .await?;
            if known {
                continue;
            }
            // Shaped like the `workflow_job` delivery GitHub did not send (or Tenki did not get).
            let body = serde_json::json!({
                "action": "queued",
                "workflow_job": job,
                "repository": {
                    "id": repository.repository_id,
                    "full_name": repository.full_name,
                    "private": repository.private,
                },
                "installation": { "id": repository.installation_id },
            });
            let delivery_id = format!("poll-{job_id}-{attempt}");
            let delivery = intake::NewDelivery {
                delivery_id,
                event: "workflow_job".to_owned(),
                envelope: intake::Envelope {
                    action: Some("queued".to_owned()),
                    installation_id: Some(repository.installation_id),
                },
                body: body.to_string(),
                received_at: now,
            };
            if intake::store_delivery(db, delivery).await? == Intake::Queued {
                tracing::info!(
                    job_id,
                    repository = repository.full_name,
                    "queued job found by polling"
                );
                metrics::counter!("github_jobs_found_by_polling_total").increment(1);
                report.recorded += 1;
            }
        }
    }
    Ok(report)
}

async fn queued_jobs(
    github: &GitHubApp,
    installation_id: i64,
    repository: &str,
) -> Result<Vec<serde_json::Value>, GitHubError> {
    let mut jobs = Vec::new();
    // A run waiting for a runner is `queued`; one with some jobs running is `in_progress`
    // and may still have queued jobs.
    for status in ["queued", "in_progress"] {
        let runs = github
            .as_installation::<WorkflowRuns>(
                installation_id,
                Method::GET,
                &format!("/repos/{repository}/actions/runs?status={status}&per_page=100"),
                None::<&()>,
            )
            .await?;
        for run in runs.items.workflow_runs {
            let mut path = Some(format!(
                "/repos/{repository}/actions/runs/{}/jobs?filter=latest&per_page=100",
                run.id
            ));
            let mut pages = 0;
            while let Some(current) = path.take() {
                let page = github
                    .as_installation::<WorkflowJobs>(
                        installation_id,
                        Method::GET,
                        &current,
                        None::<&()>,
                    )
                    .await?;
                jobs.extend(page.items.jobs);
                pages += 1;
                if pages < MAX_PAGES {
                    path = page.next;
                }
            }
        }
    }
    Ok(jobs)
}
