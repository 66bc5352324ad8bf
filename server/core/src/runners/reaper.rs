//! The runners' reconcile loop (a cron task, one pass at a time): removes runners that got no
//! job within [`IDLE_LIMIT`] of starting (after asking GitHub whether they are busy), runners
//! past the maximum job lifetime, runners whose pod failed (retried a few times, then the job
//! shows why), and orphans (Tenki's objects without a record); repairs leaked slots; and asks
//! again for runners of admitted jobs that have none.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{ObservedRunner, Provisioner, Removal};
use crate::admission;
use crate::github::client::GitHubApp;
use crate::metering::{JobKey, MAX_JOB_LIFETIME};

/// A runner that took no job this long after it was asked for is removed.
pub const IDLE_LIMIT: chrono::Duration = chrono::Duration::minutes(5);
/// An admitted job whose runner is still missing this long after admission is provisioned again
/// (a crash between admission and provisioning, or a lost task).
const PROVISIONING_GRACE: chrono::Duration = chrono::Duration::minutes(1);

/// A runner still not registered on GitHub and started this long after it was asked for counts as
/// a failed start (GitHub refuses the installation, or Kubernetes keeps refusing): after
/// [`super::MAX_RUNNER_FAILURES`] the job says so instead of retrying forever.
const REGISTRATION_LIMIT: chrono::Duration = chrono::Duration::minutes(10);

/// A runner's Job that has no pod this long after it was created could not get one (the
/// namespace's quota, or an admission webhook of the cluster refused it).
const NO_POD_LIMIT: chrono::Duration = chrono::Duration::minutes(2);

/// Advisory lock id of a reconcile pass ("tenki-reaper").
const REAPER_LOCK: i64 = 0x7465_6e6b_6972_6561;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub idle_removed: Vec<String>,
    pub busy_kept: Vec<String>,
    pub expired_removed: Vec<String>,
    pub failed: Vec<String>,
    pub orphans_removed: Vec<String>,
    pub leaked_slots: u64,
    pub provisioning_requested: usize,
    pub finished_removed: Vec<String>,
}

#[derive(Debug, sqlx::FromRow)]
struct RecordedRunner {
    name: String,
    state: String,
    github_job_id: i64,
    run_attempt: i32,
    created_at: DateTime<Utc>,
    online_at: Option<DateTime<Utc>>,
}

/// One reconcile pass at `now`. Holds a session advisory lock, so replicas never run two passes
/// at once: `None` when another pass holds it (that pass does the work).
pub async fn reconcile<P: Provisioner>(
    db: &PgPool,
    github: &GitHubApp,
    provisioner: &P,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<ReconcileReport>> {
    use anyhow::Context as _;
    let mut lock = db.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REAPER_LOCK)
        .fetch_one(&mut *lock)
        .await?;
    if !locked {
        return Ok(None);
    }
    let result = pass(db, github, provisioner, now).await.map(Some);
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(REAPER_LOCK)
        .execute(&mut *lock)
        .await
        .context("releasing the reaper's lock")?;
    result
}

async fn pass<P: Provisioner>(
    db: &PgPool,
    github: &GitHubApp,
    provisioner: &P,
    now: DateTime<Utc>,
) -> anyhow::Result<ReconcileReport> {
    use anyhow::Context as _;
    let mut report = ReconcileReport::default();

    // Slots whose job no longer needs one: every exit path releases its slot, so each of these
    // is a bug or a crash. Counted, and given back.
    let leaked = sqlx::query(
        "DELETE FROM runner_slots s USING github_jobs j
         WHERE j.github_job_id = s.github_job_id AND j.run_attempt = s.run_attempt
           AND (j.status = 'completed' OR j.admission <> 'admitted')",
    )
    .execute(db)
    .await?
    .rows_affected();
    if leaked > 0 {
        tracing::warn!(leaked, "leaked concurrency slots released");
        metrics::counter!("admission_slots_leaked_total").increment(leaked);
        let mut conn = db.acquire().await?;
        admission::request_pass(&mut conn).await?;
    }
    report.leaked_slots = leaked;

    // The records are read before Kubernetes is listed: a runner recorded as started then was
    // created before the listing, so missing from it means it vanished. Read the other way round,
    // a start finishing in between looked like one whose objects disappeared.
    let recorded: Vec<RecordedRunner> = sqlx::query_as(
        "SELECT name, state, github_job_id, run_attempt, created_at, online_at
         FROM runners WHERE state <> 'deleted'",
    )
    .fetch_all(db)
    .await?;
    let observed = provisioner
        .observe()
        .await
        .context("listing the runners on Kubernetes")?;
    let by_name: HashMap<&str, &ObservedRunner> =
        observed.iter().map(|o| (o.name.as_str(), o)).collect();
    // Orphans are judged against the records read after the listing instead: a runner is recorded
    // before its objects are created, so one created during the pass is never taken for an orphan.
    let known: HashSet<String> =
        sqlx::query_scalar("SELECT name FROM runners WHERE state <> 'deleted'")
            .fetch_all(db)
            .await?
            .into_iter()
            .collect();

    for runner in &recorded {
        let key = JobKey {
            github_job_id: runner.github_job_id,
            run_attempt: runner.run_attempt,
        };
        let seen = by_name.get(runner.name.as_str());
        match runner.state.as_str() {
            "finished" | "failed" => {
                let why = if runner.state == "failed" {
                    Removal::Failed
                } else {
                    Removal::Finished
                };
                if super::remove(db, github, provisioner, &runner.name, why, now).await? {
                    report.finished_removed.push(runner.name.clone());
                }
            }
            "starting" | "requested" => {
                let no_pod = seen.is_some_and(|s| {
                    !s.has_pod && s.created_at.is_some_and(|at| at < now - NO_POD_LIMIT)
                });
                let vanished = runner.state == "starting"
                    && seen.is_none()
                    && runner.created_at < now - PROVISIONING_GRACE;
                let stuck =
                    runner.state == "requested" && runner.created_at < now - REGISTRATION_LIMIT;
                if let Some(failure) = seen.and_then(|s| s.failure.clone()) {
                    super::runner_failed(
                        db,
                        &runner.name,
                        key,
                        &failure.reason(),
                        failure.permanent(),
                        now,
                    )
                    .await?;
                    report.failed.push(runner.name.clone());
                } else if no_pod || vanished || stuck {
                    let reason = if no_pod {
                        "Kubernetes started no pod for it (the namespace's quota?)"
                    } else if vanished {
                        "its Kubernetes objects disappeared"
                    } else {
                        "it could not be registered on GitHub and started within 10 minutes"
                    };
                    super::runner_failed(db, &runner.name, key, reason, false, now).await?;
                    report.failed.push(runner.name.clone());
                } else if runner.state == "requested"
                    && runner.created_at < now - PROVISIONING_GRACE
                {
                    // Asked for, never started (a crash mid-way): finish it.
                    let mut tx = db.begin().await?;
                    admission::enqueue_provisioning(&mut tx, key).await?;
                    tx.commit().await?;
                    report.provisioning_requested += 1;
                } else if runner.created_at < now - IDLE_LIMIT {
                    if super::remove(db, github, provisioner, &runner.name, Removal::Idle, now)
                        .await?
                    {
                        report.idle_removed.push(runner.name.clone());
                    } else {
                        report.busy_kept.push(runner.name.clone());
                    }
                }
            }
            "running" => {
                let since = runner.online_at.unwrap_or(runner.created_at);
                if since < now - MAX_JOB_LIFETIME
                    && super::remove(db, github, provisioner, &runner.name, Removal::Expired, now)
                        .await?
                {
                    report.expired_removed.push(runner.name.clone());
                } else if seen.is_some_and(|s| s.succeeded) {
                    // Its pod finished: the job's completion is on its way, or was missed.
                    sqlx::query(
                        "UPDATE runners SET state = 'finished', finished_at = coalesce(finished_at, $2)
                         WHERE name = $1 AND state = 'running'",
                    )
                    .bind(&runner.name)
                    .bind(now)
                    .execute(db)
                    .await?;
                }
            }
            _ => {}
        }
    }

    // Objects with Tenki's labels and no record: from before a restart, or a lost update.
    for orphan in observed.iter().filter(|o| !known.contains(&o.name)) {
        provisioner
            .delete_runner(&orphan.namespace, &orphan.name)
            .await
            .map_err(|e| anyhow::Error::new(e).context("deleting an orphaned runner"))?;
        tracing::warn!(
            runner = orphan.name,
            namespace = orphan.namespace,
            workspace = ?orphan.workspace_id,
            "orphaned runner removed"
        );
        metrics::counter!("runner_orphans_removed_total").increment(1);
        report.orphans_removed.push(orphan.name.clone());
    }

    // Admitted jobs still waiting with no runner on its way (demand = admitted − runners).
    let missing: Vec<(i64, i32)> = sqlx::query_as(
        "SELECT j.github_job_id, j.run_attempt FROM github_jobs j
         WHERE j.admission = 'admitted' AND j.status IN ('waiting', 'queued') AND j.admitted_at < $1
           AND NOT EXISTS (SELECT 1 FROM runners r WHERE r.github_job_id = j.github_job_id
                             AND r.run_attempt = j.run_attempt AND r.state IN ('requested', 'starting')
                             AND r.ran_github_job_id IS NULL)",
    )
    .bind(now - PROVISIONING_GRACE)
    .fetch_all(db)
    .await?;
    if !missing.is_empty() {
        let mut tx = db.begin().await?;
        for (github_job_id, run_attempt) in &missing {
            admission::enqueue_provisioning(
                &mut tx,
                JobKey {
                    github_job_id: *github_job_id,
                    run_attempt: *run_attempt,
                },
            )
            .await?;
        }
        tx.commit().await?;
        report.provisioning_requested += missing.len();
    }

    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM runners WHERE state <> 'deleted' GROUP BY 1")
            .fetch_all(db)
            .await?;
    for state in ["requested", "starting", "running", "finished", "failed"] {
        let count = counts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, c)| *c);
        metrics::gauge!("tenki_runners", "state" => state).set(count as f64);
    }
    Ok(report)
}
