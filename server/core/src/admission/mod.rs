//! Admission (SPEC §5): which queued jobs get a runner now, and why the others wait.
//!
//! One pass looks at every job not yet admitted, oldest first (a workspace with the priority
//! boost counts its jobs as [`BOOST_HEAD_START`] older), and for each decides:
//! - blocked by a gate: the workspace is suspended, a macOS label without the macOS add-on, or
//!   no free minutes left and no payment method;
//! - waiting: every concurrency slot of its class (40 included, plus bought ones) is held, or the
//!   platform's own capacity for the class is used up;
//! - admitted: it takes a slot, and its runner is provisioned.
//!
//! Passes run one at a time (a transaction-wide advisory lock), and a slot is a row written in
//! the same transaction as the job's state and its provisioning task, so neither a race nor a
//! crash can exceed a limit or lose a slot (docs/adr/0005-admission-slots-in-postgres.md).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ledger::{Ledger, LedgerError};
use crate::metering::JobKey;
use crate::queue::{self, NewJob};

pub mod passes;

pub use passes::PassRequests;

/// Concurrent jobs included per workspace, for x64 and, separately, for macOS.
pub const INCLUDED_SLOTS: i64 = 40;

/// How much earlier than its real queue time a boosted workspace's job counts. A job waits at
/// most this long for boosted jobs queued after it: nobody starves.
pub const BOOST_HEAD_START: chrono::Duration = chrono::Duration::minutes(5);

/// The provisioning task admission enqueues for every admitted job.
pub const PROVISION_RUNNER_TASK: &str = "provision_runner";

/// The admission task: one pending at a time (a job key), since one pass serves everyone.
pub const ADMIT_TASK: &str = "admit_waiting_jobs";

/// Advisory lock id held by an admission pass ("tenki-admission").
const ADMISSION_LOCK: i64 = 0x7465_6e6b_6961_646d;

/// The platform's own capacity per runner class, in vCPUs (`TENKI_CAPACITY_*`); `None`:
/// unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    pub x64_vcpus: Option<i64>,
    pub macos_vcpus: Option<i64>,
}

impl Capacity {
    fn of(&self, class: &str) -> Option<i64> {
        match class {
            "macos" => self.macos_vcpus,
            _ => self.x64_vcpus,
        }
    }
}

/// Why an admission pass failed; the task is retried.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("ledger")]
    Ledger(#[from] LedgerError),
}

/// What one pass decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmissionReport {
    pub admitted: Vec<JobKey>,
    pub waiting: usize,
    pub blocked: usize,
}

/// What admission knows about a workspace.
#[derive(Debug, Clone)]
struct WorkspaceState {
    has_card: bool,
    /// Why it is suspended, when it is (a non-payment says which invoice and what to do).
    suspended: Option<String>,
    /// The hard cap of the spending limit is reached: the limit, in micro-cents.
    capped_at: Option<i64>,
    macos_addon: bool,
    boosted: bool,
    x64_slots: i64,
    macos_slots: i64,
    free_minutes_left: Option<u128>,
}

impl WorkspaceState {
    fn slots(&self, class: &str) -> i64 {
        match class {
            "macos" => self.macos_slots,
            _ => self.x64_slots,
        }
    }
}

/// A job waiting for admission.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Candidate {
    github_job_id: i64,
    run_attempt: i32,
    label: String,
    created_at: DateTime<Utc>,
    admission: String,
    admission_reason: Option<String>,
    workspace_id: Uuid,
    class: String,
    vcpus: i32,
}

/// "1st", "2nd", "3rd", "4th", "11th", "22nd".
pub fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Waits for the admission pass in progress, if any, and keeps the next one out until `tx` ends:
/// moving a slot never interleaves with a pass deciding about it. Taking it again in the same
/// transaction is free. A job's start takes it after the runner's row, so nothing holding it may
/// wait for a runner's row.
async fn lock_admission(tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADMISSION_LOCK)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Runs one admission pass over every waiting job.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn admit_waiting(
    db: &PgPool,
    ledger: &Ledger,
    capacity: Capacity,
    now: DateTime<Utc>,
) -> Result<AdmissionReport, AdmissionError> {
    let mut tx = db.begin().await?;
    lock_admission(&mut tx).await?;
    // A job that started or ended without a slot of its own (another runner of its label took
    // it, or it was cancelled) needs none any more.
    sqlx::query(
        "UPDATE github_jobs SET admission = 'done', admission_reason = NULL
         WHERE admission IN ('pending', 'waiting', 'blocked') AND status IN ('in_progress', 'completed')",
    )
    .execute(&mut *tx)
    .await?;
    let mut candidates: Vec<Candidate> = sqlx::query_as(
        "SELECT j.github_job_id, j.run_attempt, j.label, j.created_at, j.admission, j.admission_reason,
                i.workspace_id, s.class, s.vcpus
         FROM github_jobs j
         JOIN github_installations i ON i.installation_id = j.installation_id
         JOIN runner_skus s ON s.label = regexp_replace(j.label, '-premium$', '')
         WHERE j.admission IN ('pending', 'waiting', 'blocked')
           AND j.status IN ('waiting', 'queued')
           AND i.workspace_id IS NOT NULL AND i.state = 'active'
         ORDER BY j.created_at, j.github_job_id, j.run_attempt",
    )
    .fetch_all(&mut *tx)
    .await?;
    if candidates.is_empty() {
        tx.commit().await?;
        return Ok(AdmissionReport::default());
    }
    let mut workspace_ids: Vec<Uuid> = candidates.iter().map(|c| c.workspace_id).collect();
    workspace_ids.sort_unstable();
    workspace_ids.dedup();
    let mut workspaces = workspace_states(&mut tx, ledger, &workspace_ids, now).await?;

    // Slots held now, per workspace and class, and vCPUs in use per class (the platform's).
    let held: Vec<(Uuid, String, i64, i64)> = sqlx::query_as(
        "SELECT workspace_id, runner_class, count(*), coalesce(sum(vcpus), 0)::bigint
         FROM runner_slots GROUP BY 1, 2",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut slots_in_use: HashMap<(Uuid, String), i64> = HashMap::new();
    let mut vcpus_in_use: HashMap<String, i64> = HashMap::new();
    for (workspace_id, class, count, vcpus) in held {
        slots_in_use.insert((workspace_id, class.clone()), count);
        *vcpus_in_use.entry(class).or_default() += vcpus;
    }

    // Boosted workspaces go first, by a bounded head start (aging).
    candidates.sort_by_key(|c| {
        let boosted = workspaces.get(&c.workspace_id).is_some_and(|w| w.boosted);
        let head_start = if boosted {
            BOOST_HEAD_START
        } else {
            chrono::Duration::zero()
        };
        (c.created_at - head_start, c.github_job_id, c.run_attempt)
    });

    let mut report = AdmissionReport::default();
    let mut in_line: HashMap<(Uuid, String), usize> = HashMap::new();
    let mut waiting_for_capacity: HashMap<String, usize> = HashMap::new();
    let mut updates: Vec<(i64, i32, &'static str, Option<String>)> = Vec::new();
    let mut admitted: Vec<&Candidate> = Vec::new();
    for candidate in &candidates {
        let Some(workspace) = workspaces.get_mut(&candidate.workspace_id) else {
            continue;
        };
        let class = candidate.class.as_str();
        let blocked = if let Some(why) = &workspace.suspended {
            Some(why.clone())
        } else if let Some(limit) = workspace.capped_at {
            Some(format!(
                "blocked: the monthly spending limit (${}) is reached — raise it in Settings",
                crate::money::dollars(limit, 2)
            ))
        } else if class == "macos" && candidate.label.ends_with(crate::catalog::PREMIUM_SUFFIX) {
            Some(format!("blocked: label not offered: {}", candidate.label))
        } else if class == "macos" && !workspace.macos_addon {
            Some("blocked: macOS needs the macOS add-on".to_owned())
        } else if !workspace.has_card && workspace.free_minutes_left == Some(0) {
            Some("blocked: free minutes used up — add a card".to_owned())
        } else {
            None
        };
        if let Some(reason) = blocked {
            report.blocked += 1;
            updates.push((
                candidate.github_job_id,
                candidate.run_attempt,
                "blocked",
                Some(reason),
            ));
            continue;
        }
        let key = (candidate.workspace_id, candidate.class.clone());
        let in_use = slots_in_use.get(&key).copied().unwrap_or(0);
        if in_use >= workspace.slots(class) {
            let position = in_line.entry(key).or_default();
            *position += 1;
            report.waiting += 1;
            updates.push((
                candidate.github_job_id,
                candidate.run_attempt,
                "waiting",
                Some(format!(
                    "waiting for a slot ({} in line)",
                    ordinal(*position)
                )),
            ));
            continue;
        }
        let vcpus = i64::from(candidate.vcpus);
        let used = vcpus_in_use.get(class).copied().unwrap_or(0);
        let short = waiting_for_capacity.contains_key(class)
            || capacity.of(class).is_some_and(|limit| used + vcpus > limit);
        if short {
            // Strictly in order once capacity is short: a large job is not overtaken forever
            // by smaller ones behind it.
            let position = waiting_for_capacity.entry(class.to_owned()).or_default();
            *position += 1;
            report.waiting += 1;
            updates.push((
                candidate.github_job_id,
                candidate.run_attempt,
                "waiting",
                Some(format!(
                    "waiting for a runner: Tenki's capacity is busy ({} in line)",
                    ordinal(*position)
                )),
            ));
            continue;
        }
        slots_in_use.insert(key, in_use + 1);
        vcpus_in_use.insert(class.to_owned(), used + vcpus);
        admitted.push(candidate);
    }

    report.admitted = take_slots(&mut tx, &admitted, now).await?;
    // Write only what changed: a pass over 10,000 waiting jobs rewrites few of them.
    let current: HashMap<(i64, i32), (&str, Option<&str>)> = candidates
        .iter()
        .map(|c| {
            (
                (c.github_job_id, c.run_attempt),
                (c.admission.as_str(), c.admission_reason.as_deref()),
            )
        })
        .collect();
    updates.retain(|(id, attempt, state, reason)| {
        current.get(&(*id, *attempt)) != Some(&(*state, reason.as_deref()))
    });
    if !updates.is_empty() {
        let ids: Vec<i64> = updates.iter().map(|u| u.0).collect();
        let attempts: Vec<i32> = updates.iter().map(|u| u.1).collect();
        let states: Vec<&str> = updates.iter().map(|u| u.2).collect();
        let reasons: Vec<Option<String>> = updates.iter().map(|u| u.3.clone()).collect();
        sqlx::query(
            "UPDATE github_jobs j SET admission = u.state, admission_reason = u.reason, updated_at = $5
             FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[]) AS u(id, attempt, state, reason)
             WHERE j.github_job_id = u.id AND j.run_attempt = u.attempt
               AND j.status IN ('waiting', 'queued')",
        )
        .bind(&ids)
        .bind(&attempts)
        .bind(&states)
        .bind(&reasons)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    metrics::counter!("admission_decisions_total", "outcome" => "admitted")
        .increment(report.admitted.len() as u64);
    metrics::gauge!("jobs_waiting").set(report.waiting as f64);
    metrics::gauge!("jobs_blocked").set(report.blocked as f64);
    Ok(report)
}

/// Gives each of `admitted` that still waits a slot, marks it admitted and enqueues its runner,
/// in `tx`: three statements whatever their number (a burst of 4,000 admissions took 10 s one
/// job at a time). Returns the jobs admitted. A job that ended since the pass read it is left
/// out: its completion does not wait for passes (`release_slot` takes no admission lock), so the
/// state is checked again here, on the row its completion locks.
async fn take_slots(
    tx: &mut sqlx::PgConnection,
    admitted: &[&Candidate],
    now: DateTime<Utc>,
) -> Result<Vec<JobKey>, sqlx::Error> {
    if admitted.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = admitted.iter().map(|c| c.github_job_id).collect();
    let attempts: Vec<i32> = admitted.iter().map(|c| c.run_attempt).collect();
    let still_waiting: std::collections::HashSet<(i64, i32)> = sqlx::query_as(
        "UPDATE github_jobs j SET admission = 'admitted', admission_reason = NULL, admitted_at = $3,
                updated_at = $3
         FROM unnest($1::bigint[], $2::int[]) AS a(id, attempt)
         WHERE j.github_job_id = a.id AND j.run_attempt = a.attempt
           AND j.admission IN ('pending', 'waiting', 'blocked') AND j.status IN ('waiting', 'queued')
         RETURNING j.github_job_id, j.run_attempt",
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let admitted: Vec<&Candidate> = admitted
        .iter()
        .copied()
        .filter(|c| still_waiting.contains(&(c.github_job_id, c.run_attempt)))
        .collect();
    let ids: Vec<i64> = admitted.iter().map(|c| c.github_job_id).collect();
    let attempts: Vec<i32> = admitted.iter().map(|c| c.run_attempt).collect();
    let workspaces: Vec<Uuid> = admitted.iter().map(|c| c.workspace_id).collect();
    let classes: Vec<&str> = admitted.iter().map(|c| c.class.as_str()).collect();
    let vcpus: Vec<i32> = admitted.iter().map(|c| c.vcpus).collect();
    sqlx::query(
        "INSERT INTO runner_slots (github_job_id, run_attempt, workspace_id, runner_class, vcpus, acquired_at)
         SELECT id, attempt, workspace_id, class, vcpus, $6
         FROM unnest($1::bigint[], $2::int[], $3::uuid[], $4::text[], $5::int[])
              AS s(id, attempt, workspace_id, class, vcpus)",
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(&workspaces)
    .bind(&classes)
    .bind(&vcpus)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let jobs: Vec<(serde_json::Value, String)> = admitted
        .iter()
        .map(|c| {
            let key = JobKey {
                github_job_id: c.github_job_id,
                run_attempt: c.run_attempt,
            };
            (
                serde_json::json!({ "github_job_id": key.github_job_id, "run_attempt": key.run_attempt }),
                provisioning_key(key),
            )
        })
        .collect();
    queue::enqueue_all(tx, PROVISION_RUNNER_TASK, &jobs, 10).await?;
    Ok(admitted
        .iter()
        .map(|c| JobKey {
            github_job_id: c.github_job_id,
            run_attempt: c.run_attempt,
        })
        .collect())
}

/// The queue key of job `key`'s provisioning: one pending per job.
fn provisioning_key(key: JobKey) -> String {
    format!("provision:{key}")
}

/// Enqueues the provisioning of a runner for the admitted job `key` (one pending per job).
pub async fn enqueue_provisioning(
    tx: &mut sqlx::PgConnection,
    key: JobKey,
) -> Result<(), sqlx::Error> {
    enqueue_provisioning_when(tx, key, None).await
}

/// [`enqueue_provisioning`], not before `at` (back-off after a runner failed to start).
pub async fn enqueue_provisioning_at(
    tx: &mut sqlx::PgConnection,
    key: JobKey,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    enqueue_provisioning_when(tx, key, Some(at)).await
}

async fn enqueue_provisioning_when(
    tx: &mut sqlx::PgConnection,
    key: JobKey,
    run_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    let job_key = provisioning_key(key);
    queue::enqueue(
        tx,
        NewJob {
            task: PROVISION_RUNNER_TASK,
            payload: serde_json::json!({
                "github_job_id": key.github_job_id,
                "run_attempt": key.run_attempt,
            }),
            job_key: Some(&job_key),
            max_attempts: 10,
            run_at,
        },
    )
    .await
}

/// Asks for an admission pass soon (coalesced: one pending pass serves every request).
pub async fn request_pass(db: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    queue::enqueue(
        db,
        NewJob {
            task: ADMIT_TASK,
            payload: serde_json::json!({}),
            job_key: Some(ADMIT_TASK),
            max_attempts: 5,
            run_at: None,
        },
    )
    .await
}

/// Releases the slot of job `key`, if it holds one, and marks its admission done (with `reason`
/// when it ends without running, e.g. "could not start a runner: …"). Returns whether a slot was
/// released: the caller then asks for an admission pass, so a waiting job takes the slot.
///
/// Takes no admission lock, so a completion never waits for a pass: it locks the job's row
/// first, which a pass admitting the job at the same moment also updates (and only while the
/// job still waits), and deletes the slot after, so it finds a slot that pass committed. A pass
/// that counted the slot just before it went only admits one job fewer until the next pass.
pub async fn release_slot(
    tx: &mut sqlx::PgConnection,
    key: JobKey,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "UPDATE github_jobs SET admission = 'done', admission_reason = coalesce($3, admission_reason),
                updated_at = $4
         WHERE github_job_id = $1 AND run_attempt = $2",
    )
    .bind(key.github_job_id)
    .bind(key.run_attempt)
    .bind(reason)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let released =
        sqlx::query("DELETE FROM runner_slots WHERE github_job_id = $1 AND run_attempt = $2")
            .bind(key.github_job_id)
            .bind(key.run_attempt)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
    Ok(released)
}

/// When job `ran` started on a Tenki runner asked for job `provisioned_for` (of `label`), and
/// `ran` was not admitted itself, it used a slot another job was holding while it waited: the
/// slot moves to `ran`, from `provisioned_for` if that job still waits, else from the most recently
/// admitted job of the label that still waits, which waits again. Keeps running jobs ≤ runners ≤
/// slots.
pub async fn slot_follows_runner(
    tx: &mut sqlx::PgConnection,
    ran: JobKey,
    provisioned_for: JobKey,
    workspace_id: Uuid,
    label: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    // Nearly every job runs on a runner asked for it, admitted: nothing moves, and the admission
    // lock (which every pass holds) is not needed to see that. An admitted job stays admitted
    // until it ends, so the answer cannot go stale; any other answer is read again under the lock.
    if admission_of(tx, ran).await?.is_none_or(|a| a == "admitted") {
        return Ok(());
    }
    lock_admission(tx).await?;
    if admission_of(tx, ran).await?.is_none_or(|a| a == "admitted") {
        return Ok(());
    }
    let donor: Option<(i64, i32)> = sqlx::query_as(
        "SELECT j.github_job_id, j.run_attempt FROM github_jobs j
         JOIN runner_slots s ON s.github_job_id = j.github_job_id AND s.run_attempt = j.run_attempt
         WHERE s.workspace_id = $3 AND j.label = $4 AND j.admission = 'admitted'
           AND j.status IN ('waiting', 'queued')
         ORDER BY (j.github_job_id = $1 AND j.run_attempt = $2) DESC, j.admitted_at DESC
         LIMIT 1",
    )
    .bind(provisioned_for.github_job_id)
    .bind(provisioned_for.run_attempt)
    .bind(workspace_id)
    .bind(label)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((donor_id, donor_attempt)) = donor else {
        return Ok(());
    };
    sqlx::query(
        "UPDATE runner_slots SET github_job_id = $3, run_attempt = $4
         WHERE github_job_id = $1 AND run_attempt = $2",
    )
    .bind(donor_id)
    .bind(donor_attempt)
    .bind(ran.github_job_id)
    .bind(ran.run_attempt)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE github_jobs SET
             admission = CASE WHEN github_job_id = $1 AND run_attempt = $2 THEN 'admitted' ELSE 'pending' END,
             admitted_at = CASE WHEN github_job_id = $1 AND run_attempt = $2 THEN $5 ELSE NULL END,
             admission_reason = NULL, updated_at = $5
         WHERE (github_job_id = $1 AND run_attempt = $2) OR (github_job_id = $3 AND run_attempt = $4)",
    )
    .bind(ran.github_job_id)
    .bind(ran.run_attempt)
    .bind(donor_id)
    .bind(donor_attempt)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    // A runner the donor still has would be one more than its slots: it goes (unless busy).
    let unused: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM runners WHERE github_job_id = $1 AND run_attempt = $2
           AND state IN ('requested', 'starting') AND ran_github_job_id IS NULL",
    )
    .bind(donor_id)
    .bind(donor_attempt)
    .fetch_all(&mut *tx)
    .await?;
    let unused: Vec<_> = unused
        .into_iter()
        .map(|name| (name, crate::runners::Removal::Idle))
        .collect();
    crate::runners::enqueue_removals(tx, &unused).await?;
    request_pass(tx).await
}

/// Job `key`'s admission state, if the job is known.
async fn admission_of(
    tx: &mut sqlx::PgConnection,
    key: JobKey,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT admission FROM github_jobs WHERE github_job_id = $1 AND run_attempt = $2",
    )
    .bind(key.github_job_id)
    .bind(key.run_attempt)
    .fetch_optional(tx)
    .await
}

async fn workspace_states(
    tx: &mut sqlx::PgConnection,
    ledger: &Ledger,
    workspace_ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, WorkspaceState>, AdmissionError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        payment_method: String,
        suspended: Option<String>,
        capped_at: Option<i64>,
        macos_addon: bool,
        boosted: bool,
        extra_x64: i64,
        extra_macos: i64,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT w.id, w.payment_method,
                CASE WHEN w.suspended_at IS NOT NULL
                     THEN 'workspace suspended' || coalesce(': ' || w.suspended_reason, '') END AS suspended,
                CASE WHEN w.spending_hard_cap AND w.spending_limit <= (
                         SELECT coalesce(sum(u.amount), 0) FROM usage_records u
                         WHERE u.workspace_id = w.id
                           AND u.completed_at >= date_trunc('month', $2 AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
                     THEN w.spending_limit END AS capped_at,
                EXISTS (SELECT 1 FROM workspace_addons a WHERE a.workspace_id = w.id AND a.addon = 'macos'
                            AND (a.ends_at IS NULL OR a.ends_at > $2)) AS macos_addon,
                EXISTS (SELECT 1 FROM workspace_addons a WHERE a.workspace_id = w.id AND a.addon = 'priority_boost'
                            AND (a.ends_at IS NULL OR a.ends_at > $2)) AS boosted,
                coalesce((SELECT slots FROM workspace_extra_slots e WHERE e.workspace_id = w.id AND e.runner_class = 'x64'), 0)::bigint AS extra_x64,
                coalesce((SELECT slots FROM workspace_extra_slots e WHERE e.workspace_id = w.id AND e.runner_class = 'macos'), 0)::bigint AS extra_macos
         FROM workspaces w WHERE w.id = ANY($1)",
    )
    .bind(workspace_ids)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let mut states = HashMap::with_capacity(rows.len());
    for row in rows {
        let has_card = row.payment_method == "valid";
        // Only a workspace without a card needs its free minutes looked up.
        let free_minutes_left = if has_card {
            None
        } else {
            Some(ledger.free_vcpu_minutes_left(row.id).await?)
        };
        states.insert(
            row.id,
            WorkspaceState {
                has_card,
                suspended: row.suspended,
                capped_at: row.capped_at,
                macos_addon: row.macos_addon,
                boosted: row.boosted,
                x64_slots: INCLUDED_SLOTS + row.extra_x64,
                macos_slots: INCLUDED_SLOTS + row.extra_macos,
                free_minutes_left,
            },
        );
    }
    Ok(states)
}

/// Support's switches for what customers otherwise buy on the Billing and Add-ons pages.
pub mod support {
    use super::*;

    /// Why a support change was refused.
    #[derive(Debug, thiserror::Error)]
    pub enum SupportError {
        #[error("no workspace is owned by {0}")]
        UnknownEmail(String),
        #[error("{0:?} is not an add-on (macos, priority_boost, priority_support)")]
        UnknownAddon(String),
        #[error("database")]
        Database(#[from] sqlx::Error),
    }

    async fn workspace_of(db: &PgPool, email: &str) -> Result<Uuid, SupportError> {
        crate::workspaces::first_workspace_of_email(db, email)
            .await?
            .ok_or_else(|| SupportError::UnknownEmail(email.to_owned()))
    }

    /// Records whether the workspace of `email` has a valid payment method.
    pub async fn set_card(db: &PgPool, email: &str, valid: bool) -> Result<Uuid, SupportError> {
        let workspace_id = workspace_of(db, email).await?;
        let mut tx = db.begin().await?;
        sqlx::query("UPDATE workspaces SET payment_method = $2 WHERE id = $1")
            .bind(workspace_id)
            .bind(if valid { "valid" } else { "none" })
            .execute(&mut *tx)
            .await?;
        request_pass(&mut tx).await?;
        tx.commit().await?;
        Ok(workspace_id)
    }

    /// Turns an add-on of the workspace of `email` on or off.
    pub async fn set_addon(
        db: &PgPool,
        email: &str,
        addon: &str,
        on: bool,
        now: DateTime<Utc>,
    ) -> Result<Uuid, SupportError> {
        let addon = match addon {
            "macos" => "macos",
            "priority_boost" | "priority-boost" | "boost" => "priority_boost",
            "priority_support" | "priority-support" | "support" => "priority_support",
            other => return Err(SupportError::UnknownAddon(other.to_owned())),
        };
        let workspace_id = workspace_of(db, email).await?;
        let mut tx = db.begin().await?;
        if on {
            sqlx::query(
                "INSERT INTO workspace_addons (workspace_id, addon, active_since) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(workspace_id)
            .bind(addon)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query("DELETE FROM workspace_addons WHERE workspace_id = $1 AND addon = $2")
                .bind(workspace_id)
                .bind(addon)
                .execute(&mut *tx)
                .await?;
        }
        request_pass(&mut tx).await?;
        tx.commit().await?;
        Ok(workspace_id)
    }

    /// Sets the extra concurrency slots of a class (`x64` or `macos`) for the workspace of `email`.
    pub async fn set_slots(
        db: &PgPool,
        email: &str,
        class: &str,
        slots: i32,
    ) -> Result<Uuid, SupportError> {
        let workspace_id = workspace_of(db, email).await?;
        let mut tx = db.begin().await?;
        sqlx::query(
            "INSERT INTO workspace_extra_slots (workspace_id, runner_class, slots) VALUES ($1, $2, $3)
             ON CONFLICT (workspace_id, runner_class) DO UPDATE SET slots = EXCLUDED.slots",
        )
        .bind(workspace_id)
        .bind(class)
        .bind(slots)
        .execute(&mut *tx)
        .await?;
        request_pass(&mut tx).await?;
        tx.commit().await?;
        Ok(workspace_id)
    }

    /// Suspends the workspace of `email` (no new runners) or lifts the suspension.
    pub async fn set_suspended(
        db: &PgPool,
        email: &str,
        suspended: bool,
        now: DateTime<Utc>,
    ) -> Result<Uuid, SupportError> {
        let workspace_id = workspace_of(db, email).await?;
        let mut tx = db.begin().await?;
        sqlx::query("UPDATE workspaces SET suspended_at = CASE WHEN $2 THEN $3 END WHERE id = $1")
            .bind(workspace_id)
            .bind(suspended)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        request_pass(&mut tx).await?;
        tx.commit().await?;
        Ok(workspace_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_in_line_read_as_english() {
        let words: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            words,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd",
                "101st", "111th"
            ]
        );
    }
}
