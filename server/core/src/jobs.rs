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
    /// The job's own name in its workflow (`build`), when a delivery named it.
    pub job_name: Option<String>,
    /// The job's page on GitHub (an `https://` address).
    pub html_url: Option<String>,
    pub label: String,
    /// waiting, queued, in_progress or completed.
    pub status: String,
    pub conclusion: Option<String>,
    /// When GitHub queued it.
    pub created_at: DateTime<Utc>,
    /// When a runner took it.
    pub started_at: Option<DateTime<Utc>>,
    /// GitHub's part of the queue time: job created → Tenki received the first delivery.
    pub github_queue_seconds: Option<i64>,
    /// Tenki's part: first delivery → the job started on a runner.
    pub tenki_queue_seconds: Option<i64>,
    /// Run time so far, or in all once completed.
    pub run_seconds: Option<i64>,
    /// Billed minutes (run time rounded up), once metered.
    pub minutes: Option<i64>,
    /// Free minutes it used, in vCPU-minutes (half of them are 2-vCPU free minutes), once metered.
    pub free_vcpu_minutes: Option<i64>,
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

impl JobRow {
    /// Where the page after this job starts.
    pub fn cursor(&self) -> JobCursor {
        JobCursor {
            created_at: self.created_at,
            github_job_id: self.github_job_id,
            run_attempt: self.run_attempt,
        }
    }
}

/// Which jobs to list: each field narrows the list; `None` lets everything through.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// waiting, queued, in_progress or completed.
    pub status: Option<String>,
    /// A runner label, in any case.
    pub label: Option<String>,
    /// `owner/name`.
    pub repository: Option<String>,
}

/// A place in the newest-first list of a workspace's jobs: the page after it starts with the job
/// queued just before. Written in addresses as `<microseconds since 1970>_<job id>_<attempt>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobCursor {
    pub created_at: DateTime<Utc>,
    pub github_job_id: i64,
    pub run_attempt: i32,
}

impl std::fmt::Display for JobCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}_{}_{}",
            self.created_at.timestamp_micros(),
            self.github_job_id,
            self.run_attempt
        )
    }
}

impl std::str::FromStr for JobCursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{text:?} is not a place in the job list");
        let mut parts = text.split('_');
        let (Some(micros), Some(id), Some(attempt), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        Ok(Self {
            created_at: micros
                .parse()
                .ok()
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(invalid)?,
            github_job_id: id.parse().map_err(|_| invalid())?,
            run_attempt: attempt.parse().map_err(|_| invalid())?,
        })
    }
}

/// One page of jobs, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPage {
    pub jobs: Vec<JobRow>,
    /// Where the next (older) page starts; `None` on the last page.
    pub older: Option<JobCursor>,
}

/// The workspace's jobs that pass `filter`, newest first: at most `limit` of them, after
/// `after` (the start when `None`).
pub async fn job_page(
    db: &PgPool,
    workspace_id: Uuid,
    filter: &JobFilter,
    after: Option<JobCursor>,
    limit: usize,
    now: DateTime<Utc>,
) -> Result<JobPage, sqlx::Error> {
    let label = filter.label.as_deref().map(crate::catalog::normalize_label);
    let mut jobs = sqlx::query_as!(
        JobRow,
        r#"SELECT j.github_job_id, j.run_attempt, j.repository, j.workflow, j.job_name, j.html_url,
                  j.label, j.status, j.conclusion, j.created_at, j.started_at,
                  extract(epoch FROM j.first_delivery_at - j.created_at)::bigint AS github_queue_seconds,
                  extract(epoch FROM j.started_at - j.first_delivery_at)::bigint AS tenki_queue_seconds,
                  extract(epoch FROM coalesce(j.completed_at, $9) - j.started_at)::bigint AS run_seconds,
                  u.minutes AS "minutes?", u.free_vcpu_minutes AS "free_vcpu_minutes?",
                  u.amount AS "amount?", j.not_billed_reason, j.admission, j.admission_reason,
                  j.runner_name
           FROM github_jobs j
           JOIN github_installations i ON i.installation_id = j.installation_id
           LEFT JOIN usage_records u ON u.job_key = j.github_job_id::text || ':' || j.run_attempt::text
                                    AND u.workspace_id = i.workspace_id
           WHERE i.workspace_id = $1
             AND ($2::text IS NULL OR j.status = $2)
             AND ($3::text IS NULL OR j.label = $3)
             AND ($4::text IS NULL OR j.repository = $4)
             AND ($5::timestamptz IS NULL
                  OR (j.created_at, j.github_job_id, j.run_attempt) < ($5, $6, $7))
           ORDER BY j.created_at DESC, j.github_job_id DESC, j.run_attempt DESC
           LIMIT $8"#,
        workspace_id,
        filter.status,
        label,
        filter.repository,
        after.map(|a| a.created_at),
        after.map_or(0, |a| a.github_job_id),
        after.map_or(0, |a| a.run_attempt),
        i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1),
        now,
    )
    .fetch_all(db)
    .await?;
    // One more than asked for tells whether an older page exists.
    let older = if jobs.len() > limit {
        jobs.truncate(limit);
        jobs.last().map(JobRow::cursor)
    } else {
        None
    };
    Ok(JobPage { jobs, older })
}

/// The repositories a workspace's jobs can come from (those of its linked installations), for
/// the Jobs page's filter.
pub async fn repositories(db: &PgPool, workspace_id: Uuid) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT DISTINCT r.full_name AS "full_name!"
           FROM github_repositories r
           JOIN github_installations i ON i.installation_id = r.installation_id
           WHERE i.workspace_id = $1 AND NOT r.removed
           ORDER BY 1"#,
        workspace_id,
    )
    .fetch_all(db)
    .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_position_reads_back_as_written() {
        let cursor = JobCursor {
            created_at: DateTime::from_timestamp_micros(1_764_460_800_123_456).expect("time"),
            github_job_id: 289_782_451,
            run_attempt: 2,
        };
        assert_eq!(cursor.to_string(), "1764460800123456_289782451_2");
        assert_eq!("1764460800123456_289782451_2".parse(), Ok(cursor));
        for bad in ["", "yesterday", "1_2", "1_2_3_4", "x_2_3", "1_2_x"] {
            assert!(bad.parse::<JobCursor>().is_err(), "{bad}");
        }
    }
}
