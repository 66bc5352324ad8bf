//! Runners (SPEC §4): for each admitted job, a just-in-time runner registered on GitHub and
//! started on Kubernetes in the workspace's namespace; its life from GitHub's deliveries; its
//! removal (deregistered from GitHub first, never while busy) by [`reaper`].
//!
//! Runners are capacity per (workspace, label), not bound to one job: GitHub gives a queued job
//! to any idle runner with its labels. A runner is asked for by one admitted job; when another
//! job of the label takes it, the slot follows the runner ([`crate::admission::slot_follows_runner`]).

pub mod kubernetes;
pub mod reaper;
pub mod removals;

use chrono::{DateTime, Utc};
use http::{Method, StatusCode};
use secrecy::SecretString;
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::admission;
use crate::github::client::{GitHubApp, GitHubError};
use crate::metering::JobKey;
use crate::queue;

/// The task that removes one runner.
pub const REMOVE_RUNNER_TASK: &str = "remove_runner";
/// Attempts at removing a runner before the reaper's pass is left to do it.
const REMOVAL_ATTEMPTS: i16 = 10;
/// After this many runners failed to start for a job, the job shows why and stops trying.
pub const MAX_RUNNER_FAILURES: i32 = 3;

/// What the provisioner is asked to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerSpec {
    pub name: String,
    pub namespace: String,
    pub workspace_id: Uuid,
    /// The catalog label the runner serves (lower case, `-premium` included).
    pub label: String,
    pub vcpus: i32,
    pub memory_gb: i32,
}

/// Why a runner's pod could not start or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodFailure {
    /// The runner image could not be pulled.
    ImagePull(String),
    /// The pod's spec or configuration is refused.
    Invalid(String),
    /// The pod ran and failed.
    Failed(String),
}

impl PodFailure {
    /// The reason as the customer reads it after "could not start a runner: ".
    pub fn reason(&self) -> String {
        match self {
            Self::ImagePull(m) => format!("the runner image could not be pulled ({m})"),
            Self::Invalid(m) => format!("the runner's configuration was refused ({m})"),
            Self::Failed(m) => format!("the runner failed ({m})"),
        }
    }

    /// A refused configuration fails the same way every time: no new attempts.
    pub fn permanent(&self) -> bool {
        matches!(self, Self::Invalid(_))
    }
}

/// A runner as the cluster shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedRunner {
    pub namespace: String,
    pub name: String,
    pub workspace_id: Option<Uuid>,
    pub has_pod: bool,
    pub succeeded: bool,
    pub failure: Option<PodFailure>,
    pub created_at: Option<DateTime<Utc>>,
}

/// A provisioner could not do what it was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProvisionError {
    /// Refused as invalid: trying again changes nothing.
    #[error("refused: {0}")]
    Invalid(String),
    /// The namespace's quota is used up.
    #[error("quota: {0}")]
    Quota(String),
    /// Not reachable or not now: try again later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Starts and removes runners. One real implementation: [`kubernetes::Kubernetes`] (which also
/// drives the sandbox's Kubernetes double).
pub trait Provisioner: Send + Sync {
    /// Makes sure the workspace's namespace and its guards exist; returns the namespace.
    fn prepare_workspace(
        &self,
        workspace_id: Uuid,
    ) -> impl Future<Output = Result<String, ProvisionError>> + Send;
    /// Starts the runner `spec` with its JIT configuration (idempotent by name).
    fn create_runner(
        &self,
        spec: &RunnerSpec,
        jit_config: &SecretString,
    ) -> impl Future<Output = Result<(), ProvisionError>> + Send;
    /// Whether the runner's objects exist.
    fn runner_exists(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<bool, ProvisionError>> + Send;
    /// Deletes the runner's objects (gone already is fine).
    fn delete_runner(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), ProvisionError>> + Send;
    /// Every runner Tenki's objects describe, with its pod's state.
    fn observe(&self) -> impl Future<Output = Result<Vec<ObservedRunner>, ProvisionError>> + Send;
}

/// The deterministic name of the `try`-th runner asked for job `key` of `workspace_id`: a retried
/// task finds its runner again, and GitHub's "already exists" names ours.
pub fn runner_name(workspace_id: Uuid, key: JobKey, try_number: i32) -> String {
    let workspace = workspace_id.simple().to_string();
    format!(
        "tenki-{}-{}-{}-{}",
        &workspace[..8],
        key.github_job_id,
        key.run_attempt,
        try_number
    )
}

/// A runner as GitHub's API describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct GitHubRunner {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub busy: bool,
}

#[derive(Debug, Deserialize)]
struct JitConfigAnswer {
    runner: GitHubRunner,
    encoded_jit_config: String,
}

#[derive(Debug, Deserialize)]
struct RunnerList {
    runners: Vec<GitHubRunner>,
}

/// What provisioning did for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provisioned {
    /// The job no longer needs a runner (it started, ended, or lost its slot).
    NotNeeded,
    /// A runner for it is already starting.
    AlreadyStarting(String),
    /// A runner was created.
    Created(String),
    /// GitHub already knew the runner's name and its Kubernetes objects exist: adopted.
    Adopted(String),
}

#[derive(Debug, sqlx::FromRow)]
struct JobToProvision {
    admission: String,
    status: String,
    label: String,
    repository: String,
    first_delivery_at: DateTime<Utc>,
    installation_id: i64,
    account_login: String,
    account_type: String,
    workspace_id: Uuid,
    vcpus: i32,
    memory_gb: i32,
}

/// Where runners of an installation register: its organization, or for a personal account the
/// job's repository (GitHub has no user-level runners).
fn github_scope(account_type: &str, account_login: &str, repository: &str) -> String {
    if account_type == "User" {
        format!("repos/{repository}")
    } else {
        format!("orgs/{account_login}")
    }
}

/// A runner for the admitted job `key`, which has none on its way, as `(name, state)`: a new one
/// (`requested`) while its label and scope have fewer untaken runners than admitted jobs waiting
/// for one; else a surplus one (asked for a job that no longer waits, or a job's older second
/// runner), asked for `key` instead. GitHub gives a queued job to any idle runner of its labels,
/// whether the job was admitted or waits for a slot, so one idle runner more than the admitted
/// jobs would run a job over the workspace's concurrency limit. Runners are counted under a lock
/// of their label and scope, so two provisionings never both see room for the last one. `None`:
/// no room, and the surplus runner is locked by a job taking it.
async fn runner_for(
    db: &PgPool,
    job: &JobToProvision,
    key: JobKey,
    scope: &str,
    now: DateTime<Utc>,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!(
            "runners of {} {scope} {}",
            job.installation_id,
            job.label.to_lowercase()
        ))
        .execute(&mut *tx)
        .await?;
    // For a personal account the scope is one repository: only its jobs can take its runners.
    let repository = scope
        .starts_with("repos/")
        .then_some(job.repository.as_str());
    let (untaken, waiting): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM runners
                 WHERE installation_id = $1 AND lower(label) = lower($2) AND github_scope = $3
                   AND state IN ('requested', 'starting') AND ran_github_job_id IS NULL),
                (SELECT count(*) FROM github_jobs
                 WHERE installation_id = $1 AND lower(label) = lower($2)
                   AND ($4::text IS NULL OR repository = $4)
                   AND admission = 'admitted' AND status IN ('waiting', 'queued'))",
    )
    .bind(job.installation_id)
    .bind(&job.label)
    .bind(scope)
    .bind(repository)
    .fetch_one(&mut *tx)
    .await?;
    if untaken >= waiting {
        let surplus: Option<(String, String)> = sqlx::query_as(
            "UPDATE runners SET github_job_id = $4, run_attempt = $5, updated_at = $6
             WHERE name = (
                 SELECT r.name FROM runners r
                 WHERE r.installation_id = $1 AND lower(r.label) = lower($2) AND r.github_scope = $3
                   AND r.state IN ('requested', 'starting') AND r.ran_github_job_id IS NULL
                   AND (NOT EXISTS (SELECT 1 FROM github_jobs j
                                    WHERE j.github_job_id = r.github_job_id AND j.run_attempt = r.run_attempt
                                      AND j.admission = 'admitted' AND j.status IN ('waiting', 'queued'))
                        OR EXISTS (SELECT 1 FROM runners o
                                   WHERE o.github_job_id = r.github_job_id AND o.run_attempt = r.run_attempt
                                     AND o.try > r.try AND o.state IN ('requested', 'starting')
                                     AND o.ran_github_job_id IS NULL))
                 ORDER BY r.state = 'starting' DESC, r.created_at
                 LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING name, state",
        )
        .bind(job.installation_id)
        .bind(&job.label)
        .bind(scope)
        .bind(key.github_job_id)
        .bind(key.run_attempt)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        metrics::counter!("runners_handed_over_total").increment(u64::from(surplus.is_some()));
        tx.commit().await?;
        return Ok(surplus);
    }
    let try_number: i32 = sqlx::query_scalar(
        "SELECT coalesce(max(try), 0) + 1 FROM runners WHERE github_job_id = $1 AND run_attempt = $2",
    )
    .bind(key.github_job_id)
    .bind(key.run_attempt)
    .fetch_one(&mut *tx)
    .await?;
    let name = runner_name(job.workspace_id, key, try_number);
    sqlx::query(
        "INSERT INTO runners (name, workspace_id, installation_id, label, namespace, github_scope,
             github_job_id, run_attempt, try, state, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'requested', $10, $10)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&name)
    .bind(job.workspace_id)
    .bind(job.installation_id)
    .bind(&job.label)
    .bind(kubernetes::namespace_of(job.workspace_id))
    .bind(scope)
    .bind(key.github_job_id)
    .bind(key.run_attempt)
    .bind(try_number)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some((name, "requested".to_owned())))
}

/// Provisions a runner for the admitted job `key`: registers it on GitHub (JIT configuration)
/// and starts it. Safe to repeat; a crash anywhere is finished by the next attempt.
#[tracing::instrument(level = "debug", skip(db, github, provisioner, now))]
pub async fn provision<P: Provisioner>(
    db: &PgPool,
    github: &GitHubApp,
    provisioner: &P,
    key: JobKey,
    now: DateTime<Utc>,
) -> anyhow::Result<Provisioned> {
    use anyhow::Context as _;
    let job: Option<JobToProvision> = sqlx::query_as(
        "SELECT j.admission, j.status, j.label, j.repository, j.first_delivery_at,
                i.installation_id, i.account_login, i.account_type, i.workspace_id, s.vcpus, s.memory_gb
         FROM github_jobs j
         JOIN github_installations i ON i.installation_id = j.installation_id
         JOIN runner_skus s ON s.label = regexp_replace(j.label, '-premium$', '')
         WHERE j.github_job_id = $1 AND j.run_attempt = $2 AND i.workspace_id IS NOT NULL",
    )
    .bind(key.github_job_id)
    .bind(key.run_attempt)
    .fetch_optional(db)
    .await
    .context("reading the job to provision")?;
    let Some(job) = job else {
        return Ok(Provisioned::NotNeeded);
    };
    if job.admission != "admitted" || !matches!(job.status.as_str(), "waiting" | "queued") {
        return Ok(Provisioned::NotNeeded);
    }
    let (account_login, account_type) = if job.account_login.is_empty() {
        // Linked before its `installation` delivery arrived: ask GitHub whose it is.
        account_of(db, github, job.installation_id).await?
    } else {
        (job.account_login.clone(), job.account_type.clone())
    };
    let scope = github_scope(&account_type, &account_login, &job.repository);
    // The runner asked for this job before, if one is still on its way.
    let existing: Option<(String, String, i32)> = sqlx::query_as(
        "SELECT name, state, try FROM runners
         WHERE github_job_id = $1 AND run_attempt = $2 AND state IN ('requested', 'starting')
           AND ran_github_job_id IS NULL
         ORDER BY try DESC LIMIT 1",
    )
    .bind(key.github_job_id)
    .bind(key.run_attempt)
    .fetch_optional(db)
    .await?;
    let name = match existing {
        Some((name, state, _)) if state == "starting" => {
            return Ok(Provisioned::AlreadyStarting(name));
        }
        Some((name, _, _)) => name,
        None => match runner_for(db, &job, key, &scope, now).await? {
            Some((name, state)) if state == "starting" => {
                return Ok(Provisioned::AlreadyStarting(name));
            }
            Some((name, _)) => name,
            // The surplus runner is being taken by a job right now; counted again, it is gone.
            None => anyhow::bail!(
                "every {} runner on its way is another admitted job's, or being taken: \
                 tried again shortly",
                job.label
            ),
        },
    };
    let namespace = provisioner
        .prepare_workspace(job.workspace_id)
        .await
        .context("preparing the workspace's namespace")?;
    let spec = RunnerSpec {
        name: name.clone(),
        namespace,
        workspace_id: job.workspace_id,
        label: job.label.clone(),
        vcpus: job.vcpus,
        memory_gb: job.memory_gb,
    };
    let (runner, jit_config, adopted) =
        match register(github, job.installation_id, &scope, &name, &job.label).await {
            Ok((runner, jit)) => (runner, Some(jit), false),
            Err(GitHubError::Refused { status, .. }) if status == StatusCode::CONFLICT => {
                // Ours from an earlier attempt. Its JIT configuration was given once: adopt it if
                // its Kubernetes objects exist, else delete the registration and register again.
                let found = find_by_name(github, job.installation_id, &scope, &name).await?;
                let has_objects = provisioner
                    .runner_exists(&spec.namespace, &name)
                    .await
                    .context("looking for the runner's objects")?;
                match found {
                    Some(runner) if has_objects || runner.busy => (runner, None, true),
                    Some(runner) => {
                        deregister(github, job.installation_id, &scope, runner.id).await?;
                        let (runner, jit) =
                            register(github, job.installation_id, &scope, &name, &job.label)
                                .await
                                .context(
                                    "registering the runner again after deleting a stale one",
                                )?;
                        (runner, Some(jit), false)
                    }
                    None => {
                        let (runner, jit) =
                            register(github, job.installation_id, &scope, &name, &job.label)
                                .await
                                .context("registering the runner after a conflict")?;
                        (runner, Some(jit), false)
                    }
                }
            }
            Err(e) => return Err(anyhow::Error::new(e).context("generating the JIT configuration")),
        };
    // The control plane's overhead ends here: the delivery was stored, the job admitted, the
    // runner registered, and Kubernetes is asked to start it.
    let create_called_at = Utc::now();
    if let Some(jit_config) = &jit_config {
        match provisioner.create_runner(&spec, jit_config).await {
            Ok(()) => {}
            Err(error @ (ProvisionError::Invalid(_) | ProvisionError::Quota(_))) => {
                // The registration would sit unused: remove it, then count the failure.
                deregister(github, job.installation_id, &scope, runner.id).await?;
                runner_failed(
                    db,
                    &name,
                    key,
                    &error.to_string(),
                    matches!(error, ProvisionError::Invalid(_)),
                    now,
                )
                .await?;
                return Err(anyhow::Error::new(error).context("starting the runner"));
            }
            Err(error) => return Err(anyhow::Error::new(error).context("starting the runner")),
        }
    }
    sqlx::query(
        "UPDATE runners SET state = 'starting', github_runner_id = $2, started_at = coalesce(started_at, $3),
                updated_at = $3
         WHERE name = $1 AND state = 'requested'",
    )
    .bind(&name)
    .bind(runner.id)
    .bind(create_called_at)
    .execute(db)
    .await?;
    let overhead = (create_called_at - job.first_delivery_at)
        .num_milliseconds()
        .max(0) as f64
        / 1000.0;
    metrics::histogram!("runner_provision_seconds").record(overhead);
    tracing::info!(runner = %name, job = %key, label = %job.label, "runner started");
    Ok(if adopted {
        Provisioned::Adopted(name)
    } else {
        Provisioned::Created(name)
    })
}

#[derive(Debug, Deserialize)]
struct InstallationAccount {
    account: Account,
}

#[derive(Debug, Deserialize)]
struct Account {
    login: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The account an installation belongs to, from GitHub, recorded for next time.
async fn account_of(
    db: &PgPool,
    github: &GitHubApp,
    installation_id: i64,
) -> anyhow::Result<(String, String)> {
    use anyhow::Context as _;
    let installation: InstallationAccount = github
        .as_app(
            Method::GET,
            &format!("/app/installations/{installation_id}"),
            None::<&()>,
        )
        .await
        .context("asking GitHub whose installation it is")?
        .items;
    sqlx::query(
        "UPDATE github_installations SET account_login = $2, account_type = $3
         WHERE installation_id = $1 AND account_login = ''",
    )
    .bind(installation_id)
    .bind(&installation.account.login)
    .bind(&installation.account.kind)
    .execute(db)
    .await?;
    Ok((installation.account.login, installation.account.kind))
}

async fn register(
    github: &GitHubApp,
    installation_id: i64,
    scope: &str,
    name: &str,
    label: &str,
) -> Result<(GitHubRunner, SecretString), GitHubError> {
    let body = serde_json::json!({
        "name": name,
        "runner_group_id": 1,
        "labels": [label],
        "work_folder": "_work",
    });
    let answer: JitConfigAnswer = github
        .as_installation(
            installation_id,
            Method::POST,
            &format!("/{scope}/actions/runners/generate-jitconfig"),
            Some(&body),
        )
        .await?
        .items;
    Ok((answer.runner, SecretString::from(answer.encoded_jit_config)))
}

async fn find_by_name(
    github: &GitHubApp,
    installation_id: i64,
    scope: &str,
    name: &str,
) -> anyhow::Result<Option<GitHubRunner>> {
    let list: RunnerList = github
        .as_installation(
            installation_id,
            Method::GET,
            &format!("/{scope}/actions/runners?name={name}"),
            None::<&()>,
        )
        .await?
        .items;
    Ok(list.runners.into_iter().find(|r| r.name == name))
}

/// The runner `id` as GitHub sees it now; `None` once it is gone.
async fn lookup(
    github: &GitHubApp,
    installation_id: i64,
    scope: &str,
    id: i64,
) -> anyhow::Result<Option<GitHubRunner>> {
    match github
        .as_installation::<GitHubRunner>(
            installation_id,
            Method::GET,
            &format!("/{scope}/actions/runners/{id}"),
            None::<&()>,
        )
        .await
    {
        Ok(page) => Ok(Some(page.items)),
        Err(GitHubError::Refused { status, .. }) if status == StatusCode::NOT_FOUND => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context("asking GitHub whether the runner is busy")),
    }
}

async fn deregister(
    github: &GitHubApp,
    installation_id: i64,
    scope: &str,
    id: i64,
) -> anyhow::Result<()> {
    match github
        .as_installation::<serde_json::Value>(
            installation_id,
            Method::DELETE,
            &format!("/{scope}/actions/runners/{id}"),
            None::<&()>,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(GitHubError::Refused { status, .. }) if status == StatusCode::NOT_FOUND => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("removing the runner from GitHub")),
    }
}

/// Records that runner `name` (asked for job `key`) could not start. After
/// [`MAX_RUNNER_FAILURES`], or at once when `permanent`, the job gives up its slot and shows
/// "could not start a runner: <reason>"; otherwise a new runner is asked for.
pub async fn runner_failed(
    db: &PgPool,
    name: &str,
    key: JobKey,
    reason: &str,
    permanent: bool,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    let marked = sqlx::query(
        "UPDATE runners SET state = 'failed', failure = $2, updated_at = $3
         WHERE name = $1 AND state IN ('requested', 'starting')",
    )
    .bind(name)
    .bind(reason)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if marked == 0 {
        return tx.commit().await;
    }
    metrics::counter!("runner_start_failures_total").increment(1);
    let failures: i32 = sqlx::query_scalar(
        "UPDATE github_jobs SET runner_failures = runner_failures + 1
         WHERE github_job_id = $1 AND run_attempt = $2 RETURNING runner_failures",
    )
    .bind(key.github_job_id)
    .bind(key.run_attempt)
    .fetch_one(&mut *tx)
    .await?;
    let still_waiting: bool = sqlx::query_scalar(
        "SELECT admission = 'admitted' AND status IN ('waiting', 'queued') FROM github_jobs
         WHERE github_job_id = $1 AND run_attempt = $2",
    )
    .bind(key.github_job_id)
    .bind(key.run_attempt)
    .fetch_one(&mut *tx)
    .await?;
    if still_waiting {
        if permanent || failures >= MAX_RUNNER_FAILURES {
            let shown = format!("could not start a runner: {reason}");
            if admission::release_slot(&mut tx, key, Some(&shown), now).await? {
                admission::request_pass(&mut tx).await?;
            }
        } else {
            // Back off: 30 s, 60 s, … before the next runner.
            let delay = chrono::Duration::seconds(30 * (1 << failures.clamp(0, 6)));
            admission::enqueue_provisioning_at(&mut tx, key, now + delay).await?;
        }
    }
    enqueue_removals(&mut tx, &[(name.to_owned(), Removal::Failed)]).await?;
    tx.commit().await
}

/// Why a runner is removed; decides whether a busy runner may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Removal {
    /// Its job completed (an ephemeral runner deregisters itself).
    Finished,
    /// It got no job in time, or its job went away: never while busy.
    Idle,
    /// It could not start: never while busy.
    Failed,
    /// Past the maximum job lifetime: removed even if busy.
    Expired,
}

/// Enqueues the removal of each of `runners` in one statement (one pending per runner); pass a
/// transaction to make them part of it.
pub async fn enqueue_removals(
    db: &mut sqlx::PgConnection,
    runners: &[(String, Removal)],
) -> Result<(), sqlx::Error> {
    let jobs: Vec<(serde_json::Value, String)> = runners
        .iter()
        .map(|(name, why)| {
            (
                serde_json::json!({ "name": name, "why": why }),
                format!("remove:{name}"),
            )
        })
        .collect();
    queue::enqueue_all(db, REMOVE_RUNNER_TASK, &jobs, REMOVAL_ATTEMPTS).await
}

#[derive(Debug, sqlx::FromRow)]
struct RunnerToRemove {
    state: String,
    installation_id: i64,
    github_scope: String,
    github_runner_id: Option<i64>,
    namespace: String,
    github_job_id: i64,
    run_attempt: i32,
}

/// Removes runner `name`: asks GitHub whether it is busy (a busy runner is kept unless
/// [`Removal::Expired`]), deregisters it, deletes its Kubernetes objects. Returns whether it was
/// removed.
pub async fn remove<P: Provisioner>(
    db: &PgPool,
    github: &GitHubApp,
    provisioner: &P,
    name: &str,
    why: Removal,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let runner: Option<RunnerToRemove> = sqlx::query_as(
        "SELECT state, installation_id, github_scope, github_runner_id, namespace, github_job_id, run_attempt
         FROM runners WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(db)
    .await?;
    let Some(RunnerToRemove {
        state,
        installation_id,
        github_scope: scope,
        github_runner_id,
        namespace,
        github_job_id: job_id,
        run_attempt: attempt,
    }) = runner
    else {
        return Ok(false);
    };
    if state == "deleted" {
        return Ok(false);
    }
    if let Some(id) = github_runner_id {
        let seen = lookup(github, installation_id, &scope, id).await?;
        if let Some(seen) = seen {
            if seen.busy && matches!(why, Removal::Idle | Removal::Failed) {
                tracing::info!(runner = name, ?why, "runner is busy: kept");
                return Ok(false);
            }
            deregister(github, installation_id, &scope, id).await?;
        }
    }
    provisioner
        .delete_runner(&namespace, name)
        .await
        .map_err(|e| anyhow::Error::new(e).context("deleting the runner's objects"))?;
    sqlx::query(
        "UPDATE runners SET state = 'deleted', deleted_at = $2, updated_at = $2 WHERE name = $1",
    )
    .bind(name)
    .bind(now)
    .execute(db)
    .await?;
    tracing::info!(runner = name, ?why, "runner removed");
    if why == Removal::Idle {
        // Its job may have been admitted again meanwhile (a slot moved away and back), and found
        // this runner still "on its way": it needs one now, not at the next reconcile.
        let key = JobKey {
            github_job_id: job_id,
            run_attempt: attempt,
        };
        let needs_runner: bool = sqlx::query_scalar(
            "SELECT j.admission = 'admitted' AND j.status IN ('waiting', 'queued')
                    AND NOT EXISTS (SELECT 1 FROM runners r WHERE r.github_job_id = j.github_job_id
                                      AND r.run_attempt = j.run_attempt AND r.state IN ('requested', 'starting')
                                      AND r.ran_github_job_id IS NULL)
             FROM github_jobs j WHERE j.github_job_id = $1 AND j.run_attempt = $2",
        )
        .bind(key.github_job_id)
        .bind(key.run_attempt)
        .fetch_optional(db)
        .await?
        .unwrap_or(false);
        if needs_runner {
            let mut conn = db.acquire().await?;
            admission::enqueue_provisioning(&mut conn, key).await?;
        }
    }
    Ok(true)
}

/// Is `runner_name` a runner Tenki started for `workspace_id`? Only jobs that ran on one are
/// billed (SPEC §6).
pub async fn is_tenkis(
    db: &PgPool,
    workspace_id: Uuid,
    runner_name: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM runners WHERE name = $1 AND workspace_id = $2)",
    )
    .bind(runner_name)
    .bind(workspace_id)
    .fetch_one(db)
    .await
}

#[derive(Debug, sqlx::FromRow)]
struct StartedRunner {
    github_job_id: i64,
    run_attempt: i32,
    label: String,
    first_online: bool,
    queued_at: Option<DateTime<Utc>>,
}

/// GitHub says job `key` started on `runner_name`: the runner is running, and if it was asked
/// for another job, the slot follows it.
pub async fn job_started(
    tx: &mut sqlx::PgConnection,
    workspace_id: Uuid,
    key: JobKey,
    runner_name: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    // The runner's row first, then (only when the slot must move) the admission lock; a
    // completion takes the runner's row first too. Taking the admission lock first here while a
    // completion took it after the runner's row deadlocked when a job's start and completion
    // were processed at the same time.
    // `online_at` equals `now` afterwards only when this is the runner's first job delivery.
    let runner: Option<StartedRunner> = sqlx::query_as(
        "UPDATE runners SET state = CASE WHEN state IN ('requested', 'starting') THEN 'running' ELSE state END,
                ran_github_job_id = $3, online_at = coalesce(online_at, $4), updated_at = $4
         WHERE name = $1 AND workspace_id = $2 AND state <> 'deleted'
         RETURNING github_job_id, run_attempt, label, online_at = $4 AS first_online,
                   (SELECT first_delivery_at FROM github_jobs
                    WHERE github_job_id = $3 AND run_attempt = $5) AS queued_at",
    )
    .bind(runner_name)
    .bind(workspace_id)
    .bind(key.github_job_id)
    .bind(now)
    .bind(key.run_attempt)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(runner) = runner else {
        return Ok(());
    };
    if let (true, Some(queued_at)) = (runner.first_online, runner.queued_at) {
        let seconds = (now - queued_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("runner_online_seconds").record(seconds);
    }
    let asked_for = JobKey {
        github_job_id: runner.github_job_id,
        run_attempt: runner.run_attempt,
    };
    admission::slot_follows_runner(tx, key, asked_for, workspace_id, &runner.label, now).await?;
    if asked_for != key {
        hand_over_runner(tx, asked_for).await?;
    }
    Ok(())
}

/// Job `ran` started on the runner asked for job `robbed` (GitHub gives a queued job to any idle
/// runner of its labels). If `robbed` still waits for a runner, its provisioning is asked for
/// again: it is handed the runner asked for `ran` when there is one ([`runner_for`]), or asks
/// for a new one when none was asked for yet (`ran` started before its own provisioning ran,
/// which then finds it started and asks for nothing). Else `robbed` would wait for the reaper's
/// pass, minutes later, while `ran`'s unused runner is removed when `ran` completes.
async fn hand_over_runner(tx: &mut sqlx::PgConnection, robbed: JobKey) -> Result<(), sqlx::Error> {
    let waits: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM github_jobs WHERE github_job_id = $1 AND run_attempt = $2
                          AND admission = 'admitted' AND status IN ('waiting', 'queued'))",
    )
    .bind(robbed.github_job_id)
    .bind(robbed.run_attempt)
    .fetch_one(&mut *tx)
    .await?;
    if waits {
        admission::enqueue_provisioning(tx, robbed).await?;
    }
    Ok(())
}

/// What a job's completion changed, for its caller to act on once the transaction is committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// A concurrency slot was released: ask for an admission pass.
    pub released_slot: bool,
    /// Runners to remove: the one the job ran on, and those asked for it that took no job. Ask
    /// [`removals::RemovalRequests`]; the reaper removes them if that is lost.
    pub to_remove: Vec<(String, Removal)>,
}

/// GitHub says job `key` completed (on `runner_name`, or on none when cancelled while waiting):
/// its runner is finished, its slot released, and the runners it used or asked for are named
/// for removal.
pub async fn job_completed(
    tx: &mut sqlx::PgConnection,
    workspace_id: Uuid,
    key: JobKey,
    runner_name: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Completion, sqlx::Error> {
    let mut to_remove = Vec::new();
    // The runner's row first, as `job_started` takes it, then the job's row (`release_slot`).
    if let Some(runner_name) = runner_name {
        let finished = sqlx::query(
            "UPDATE runners SET state = 'finished', finished_at = $3, updated_at = $3
             WHERE name = $1 AND workspace_id = $2 AND state NOT IN ('deleted', 'finished')",
        )
        .bind(runner_name)
        .bind(workspace_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if finished > 0 {
            to_remove.push((runner_name.to_owned(), Removal::Finished));
        }
    }
    // Runners asked for this job that took none: not needed any more (removed unless busy).
    let idle: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM runners WHERE github_job_id = $1 AND run_attempt = $2
           AND state IN ('requested', 'starting') AND ran_github_job_id IS NULL",
    )
    .bind(key.github_job_id)
    .bind(key.run_attempt)
    .fetch_all(&mut *tx)
    .await?;
    to_remove.extend(idle.into_iter().map(|name| (name, Removal::Idle)));
    let released_slot = admission::release_slot(tx, key, None, now).await?;
    Ok(Completion {
        released_slot,
        to_remove,
    })
}

/// A live runner, as the Runners page and `tenki admin runners` list it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LiveRunner {
    pub name: String,
    pub workspace_id: Uuid,
    pub label: String,
    /// requested, starting, running, finished or failed.
    pub state: String,
    pub created_at: DateTime<Utc>,
    /// The job it runs (or was asked for): repository and workflow.
    pub repository: Option<String>,
    pub workflow: Option<String>,
    pub failure: Option<String>,
}

/// The runners not yet deleted, of one workspace or (with `None`) of all, newest first.
pub async fn live_runners(
    db: &PgPool,
    workspace_id: Option<Uuid>,
) -> Result<Vec<LiveRunner>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.name, r.workspace_id, r.label, r.state, r.created_at, j.repository, j.workflow, r.failure
         FROM runners r
         LEFT JOIN github_jobs j ON j.github_job_id = coalesce(r.ran_github_job_id, r.github_job_id)
              AND j.run_attempt = r.run_attempt
         WHERE r.state <> 'deleted' AND ($1::uuid IS NULL OR r.workspace_id = $1)
         ORDER BY r.created_at DESC LIMIT 500",
    )
    .bind(workspace_id)
    .fetch_all(db)
    .await
}
