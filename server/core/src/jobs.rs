//! The jobs a workspace ran, as the Jobs and Runners pages show them: recent jobs with their
//! queue time split in two (GitHub's part and Tenki's), and per-label percentiles.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// One job as the Jobs page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub github_job_id: i64,
    pub run_attempt: i32,
    pub repository: String,
    pub workflow: String,
    pub label: String,
    /// waiting, queued, in_progress or completed.
    pub status: String,
    pub conclusion: Option<String>,
    pub created_at: DateTime<Utc>,
    /// GitHub's part of the queue time: job created → Tenki received the first delivery.
    pub github_queue_seconds: Option<i64>,
    /// Tenki's part: first delivery → the job started on a runner.
    pub tenki_queue_seconds: Option<i64>,
    /// Run time so far, or in all once completed.
    pub run_seconds: Option<i64>,
    /// Micro-cents, once metered.
    pub amount: Option<i64>,
    /// Why a completed job is not billed ("label not offered: …"), in the customer's words.
    pub not_billed_reason: Option<String>,
    /// Where the job stands in admission: pending, waiting, blocked, admitted or done.
    pub admission: String,
    /// Why a job that is not running waits ("waiting for a slot (3rd in line)").
    pub admission_reason: Option<String>,
    /// The runner it ran on, once it started.
    pub runner_name: Option<String>,
}

/// Which jobs to list.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<String>,
    pub label: Option<String>,
}

/// Per-label figures over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelStats {
    pub label: String,
    pub jobs: i64,
    pub queue_p50_seconds: Option<f64>,
    pub queue_p90_seconds: Option<f64>,
    pub run_p50_seconds: Option<f64>,
    pub run_p90_seconds: Option<f64>,
    /// Completed jobs whose conclusion was not success, over completed jobs (0–1).
    pub failure_rate: Option<f64>,
}

/// The workspace's most recent jobs (at most `limit`), newest first.
pub async fn recent_jobs(
    db: &PgPool,
    workspace_id: Uuid,
    filter: &JobFilter,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as!(
        JobRow,
        r#"SELECT j.github_job_id, j.run_attempt, j.repository, j.workflow, j.label, j.status,
                  j.conclusion, j.created_at,
                  extract(epoch FROM j.first_delivery_at - j.created_at)::bigint AS github_queue_seconds,
                  extract(epoch FROM j.started_at - j.first_delivery_at)::bigint AS tenki_queue_seconds,
                  extract(epoch FROM coalesce(j.completed_at, $5) - j.started_at)::bigint AS run_seconds,
                  u.amount AS "amount?", j.not_billed_reason, j.admission, j.admission_reason,
                  j.runner_name
           FROM github_jobs j
           JOIN github_installations i ON i.installation_id = j.installation_id
           LEFT JOIN usage_records u ON u.job_key = j.github_job_id::text || ':' || j.run_attempt::text
                                    AND u.workspace_id = i.workspace_id
           WHERE i.workspace_id = $1
             AND ($2::text IS NULL OR j.status = $2)
             AND ($3::text IS NULL OR j.label = $3)
           ORDER BY j.created_at DESC, j.github_job_id DESC
           LIMIT $4"#,
        workspace_id,
        filter.status,
        filter.label,
        limit,
        now,
    )
    .fetch_all(db)
    .await
}

/// Queue time and run time percentiles and the failure rate per label since `since`.
pub async fn label_stats(
    db: &PgPool,
    workspace_id: Uuid,
    since: DateTime<Utc>,
) -> Result<Vec<LabelStats>, sqlx::Error> {
    sqlx::query_as!(
        LabelStats,
        r#"SELECT j.label AS "label!", count(*) AS "jobs!",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM j.started_at - j.created_at)) AS queue_p50_seconds,
                  percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM j.started_at - j.created_at)) AS queue_p90_seconds,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM j.completed_at - j.started_at)) AS run_p50_seconds,
                  percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM j.completed_at - j.started_at)) AS run_p90_seconds,
                  (count(*) FILTER (WHERE j.status = 'completed' AND j.conclusion IS DISTINCT FROM 'success'))::float8
                      / nullif(count(*) FILTER (WHERE j.status = 'completed'), 0) AS failure_rate
           FROM github_jobs j
           JOIN github_installations i ON i.installation_id = j.installation_id
           WHERE i.workspace_id = $1 AND j.created_at >= $2
           GROUP BY j.label ORDER BY j.label"#,
        workspace_id,
        since,
    )
    .fetch_all(db)
    .await
}

/// An installation linked to a workspace, with its repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedInstallation {
    pub installation_id: i64,
    pub account_login: String,
    pub account_type: String,
    /// active, suspended or deleted.
    pub state: String,
    pub repositories: Vec<String>,
}

/// The GitHub installations linked to a workspace.
pub async fn installations(
    db: &PgPool,
    workspace_id: Uuid,
) -> Result<Vec<LinkedInstallation>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT i.installation_id, i.account_login, i.account_type, i.state,
                  coalesce(array_agg(r.full_name ORDER BY r.full_name) FILTER (WHERE r.full_name IS NOT NULL), '{}') AS "repositories!"
           FROM github_installations i
           LEFT JOIN github_repositories r ON r.installation_id = i.installation_id AND NOT r.removed
           WHERE i.workspace_id = $1
           GROUP BY i.installation_id ORDER BY i.account_login"#,
        workspace_id,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| LinkedInstallation {
            installation_id: row.installation_id,
            account_login: row.account_login,
            account_type: row.account_type,
            state: row.state,
            repositories: row.repositories,
        })
        .collect())
}
