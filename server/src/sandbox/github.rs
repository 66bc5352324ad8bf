//! A double of GitHub for the sandbox and the tests: the App's install page and the REST
//! endpoints Tenki calls (App JWT, installation tokens, the user code exchange,
//! `/user/installations`, installation repositories, hook deliveries and redelivery, workflow
//! runs and jobs, JIT runner configuration, runner list and delete), answering with bodies shaped
//! like GitHub's. It also sends signed webhook deliveries to Tenki's intake, so the whole life of
//! a job can be watched locally ("Run a sample workflow").
//!
//! Its state is in memory: it stands in for GitHub, not for Tenki's storage.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

/// The sandbox App's id.
pub const APP_ID: u64 = 1;
/// The sandbox App's URL name.
pub const APP_SLUG: &str = "tenki-sandbox";
/// The sandbox App's OAuth client.
pub const CLIENT_ID: &str = "Iv1.sandbox";
pub const CLIENT_SECRET: &str = "sandbox-client-secret";
/// The sandbox App's private key. Public on purpose: it only opens the double, and a real
/// App's key comes from `TENKI_GITHUB_PRIVATE_KEY_FILE`.
pub const APP_PRIVATE_KEY: &str = include_str!("github-app-key.pem");
const APP_PUBLIC_KEY: &str = include_str!("github-app-key.pub.pem");
/// The GitHub user the sandbox install page acts as.
pub const SANDBOX_USER: &str = "sandbox-user";
/// How long an installation token lives (as on GitHub).
const TOKEN_LIFETIME: chrono::Duration = chrono::Duration::hours(1);

/// A repository of a sandbox installation.
#[derive(Debug, Clone)]
pub struct SandboxRepository {
    pub id: i64,
    pub full_name: String,
    pub private: bool,
}

#[derive(Debug, Clone)]
struct SandboxInstallation {
    id: i64,
    account: String,
    /// The GitHub users who can access it (`/user/installations`).
    users: Vec<String>,
    repositories: Vec<SandboxRepository>,
    created_at: DateTime<Utc>,
    /// Who asked for it, when an owner approved a request.
    requester: Option<String>,
}

#[derive(Debug, Clone)]
struct DeliveryAttempt {
    id: i64,
    guid: String,
    delivered_at: DateTime<Utc>,
    redelivery: bool,
    status_code: u16,
    event: String,
    action: Option<String>,
    installation_id: Option<i64>,
    body: Value,
}

/// A job of a workflow run the double knows: queued until a runner with its label takes it.
#[derive(Debug, Clone)]
struct QueuedJob {
    installation_id: i64,
    repository: String,
    job: SampleJob,
    /// How long it runs once a runner takes it.
    run: Duration,
    taken: bool,
}

/// A self-hosted runner registered through a JIT configuration.
#[derive(Debug, Clone)]
struct Runner {
    id: i64,
    name: String,
    /// `acme` (an organization's runner) or `acme/app` (a repository's).
    owner: String,
    labels: Vec<String>,
    busy: bool,
    online: bool,
}

#[derive(Debug, Default)]
struct DoubleState {
    next_id: i64,
    installations: BTreeMap<i64, SandboxInstallation>,
    /// Onboarding codes and user tokens, each naming its user.
    codes: HashMap<String, String>,
    user_tokens: HashMap<String, String>,
    /// Installation tokens: installation and expiry.
    installation_tokens: HashMap<String, (i64, DateTime<Utc>)>,
    tokens_issued: usize,
    api_requests: usize,
    deliveries: Vec<DeliveryAttempt>,
    queued_jobs: Vec<QueuedJob>,
    runners: Vec<Runner>,
    rate_limited_until: Option<DateTime<Utc>>,
    /// While set, deliveries are recorded as failed and not sent (GitHub could not reach Tenki).
    intake_unreachable: bool,
    /// While set, a new runner name is answered 409 once, as if a stale runner of that name
    /// (from an earlier attempt) were registered.
    runner_names_taken: bool,
    /// The names already answered 409 under that switch.
    names_answered_taken: std::collections::HashSet<String>,
}

impl DoubleState {
    fn next_id(&mut self) -> i64 {
        if self.next_id == 0 {
            // Large ids, as GitHub's are, distinct from the fixtures' and from those of an
            // earlier run of the sandbox whose installations are still in the database.
            self.next_id = 10_000_000_000 + i64::from(rand::random::<u32>()) * 1_000;
        }
        self.next_id += 1;
        self.next_id
    }
}

/// An installation Tenki stored, with one of its repositories (if any), as the double restores it.
#[derive(sqlx::FromRow)]
struct StoredInstallationRow {
    installation_id: i64,
    account_login: String,
    repository_id: Option<i64>,
    full_name: Option<String>,
    private: Option<bool>,
}

/// The GitHub double. Cheap to clone; clones share their state.
#[derive(Clone)]
pub struct GitHubDouble {
    state: Arc<Mutex<DoubleState>>,
    /// Bumped by [`GitHubDouble::finish_running_jobs`]: running sample jobs end at once.
    finish: Arc<tokio::sync::watch::Sender<u64>>,
    /// Tenki's public address: where the install page returns and deliveries are sent.
    tenki_url: String,
    webhook_secret: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for GitHubDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubDouble")
            .field("tenki_url", &self.tenki_url)
            .finish_non_exhaustive()
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn user_json(login: &str, id: i64, kind: &str) -> Value {
    json!({
        "login": login, "id": id, "node_id": format!("MDQ6VXNlcj{id}"),
        "avatar_url": "", "gravatar_id": "", "url": format!("https://api.github.com/users/{login}"),
        "html_url": format!("https://github.com/{login}"), "type": kind, "site_admin": false,
    })
}

impl GitHubDouble {
    /// A double with no installations that returns browsers to, and sends deliveries to,
    /// `tenki_url`, signed with `webhook_secret`.
    pub fn new(tenki_url: &str, webhook_secret: SecretString) -> Self {
        Self {
            state: Arc::default(),
            finish: Arc::new(tokio::sync::watch::channel(0).0),
            tenki_url: tenki_url.trim_end_matches('/').to_owned(),
            webhook_secret,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, DoubleState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Installs the App on `account` with `repositories`, accessible to `user`. No delivery is
    /// sent; see [`GitHubDouble::send_installation_created`].
    pub fn install(&self, user: &str, account: &str, repositories: &[&str]) -> i64 {
        let mut state = self.state();
        let id = state.next_id();
        let repositories = repositories
            .iter()
            .map(|name| SandboxRepository {
                id: state.next_id(),
                full_name: format!("{account}/{name}"),
                private: true,
            })
            .collect();
        state.installations.insert(
            id,
            SandboxInstallation {
                id,
                account: account.to_owned(),
                users: vec![user.to_owned()],
                repositories,
                created_at: Utc::now(),
                requester: None,
            },
        );
        id
    }

    /// Recreates the installations Tenki has stored (with their repositories) that this double
    /// does not know, accessible to the sandbox user. GitHub keeps its installations when Tenki
    /// restarts and this double's memory does not: without this, a restarted sandbox could not
    /// sync, poll or start runners for what it linked before, nor for the demo's organization.
    /// Returns how many it recreated.
    pub async fn restore_installations(&self, db: &sqlx::PgPool) -> Result<usize, sqlx::Error> {
        let rows: Vec<StoredInstallationRow> = sqlx::query_as(
            "SELECT i.installation_id, i.account_login, r.repository_id, r.full_name, r.private
             FROM github_installations i
             LEFT JOIN github_repositories r
                    ON r.installation_id = i.installation_id AND NOT r.removed
             WHERE i.state <> 'deleted'
             ORDER BY i.installation_id, r.full_name",
        )
        .fetch_all(db)
        .await?;
        let mut state = self.state();
        let mut restored = std::collections::HashSet::new();
        for row in rows {
            let installation = state
                .installations
                .entry(row.installation_id)
                .or_insert_with(|| {
                    restored.insert(row.installation_id);
                    SandboxInstallation {
                        id: row.installation_id,
                        account: row.account_login,
                        users: vec![SANDBOX_USER.to_owned()],
                        repositories: Vec::new(),
                        created_at: Utc::now(),
                        requester: None,
                    }
                });
            if let (true, Some(id), Some(full_name)) = (
                restored.contains(&row.installation_id),
                row.repository_id,
                row.full_name,
            ) {
                installation.repositories.push(SandboxRepository {
                    id,
                    full_name,
                    private: row.private.unwrap_or(true),
                });
            }
        }
        Ok(restored.len())
    }

    /// An organization owner approves `requester`'s request: the App is installed on `account`
    /// by `owner`, and `installation.created` names the requester. Returns Tenki's status.
    pub async fn approve_request(
        &self,
        owner: &str,
        account: &str,
        repositories: &[&str],
        requester: &str,
    ) -> (i64, u16) {
        let id = self.install(owner, account, repositories);
        if let Some(installation) = self.state().installations.get_mut(&id) {
            installation.requester = Some(requester.to_owned());
        }
        (id, self.send_installation_created(id).await)
    }

    /// The installation on `account`, if the App is installed there.
    pub fn installation_on(&self, account: &str) -> Option<i64> {
        self.state()
            .installations
            .values()
            .find(|i| i.account == account)
            .map(|i| i.id)
    }

    /// The repositories of installation `id`.
    pub fn repositories(&self, id: i64) -> Vec<SandboxRepository> {
        self.state()
            .installations
            .get(&id)
            .map(|i| i.repositories.clone())
            .unwrap_or_default()
    }

    /// An onboarding code for `user`, as GitHub adds to the setup URL.
    pub fn authorize(&self, user: &str) -> String {
        let code = format!("code-{}", uuid::Uuid::new_v4().simple());
        self.state().codes.insert(code.clone(), user.to_owned());
        code
    }

    /// The setup URL GitHub sends the browser back to after installing.
    pub fn setup_url(
        &self,
        installation_id: i64,
        setup_action: &str,
        code: &str,
        state: &str,
    ) -> String {
        format!(
            "{}/github/setup?installation_id={installation_id}&setup_action={setup_action}&code={code}&state={}",
            self.tenki_url,
            urlencode(state)
        )
    }

    /// Sends `installation.created` for installation `id` to Tenki; returns Tenki's status.
    pub async fn send_installation_created(&self, id: i64) -> u16 {
        let Some(body) = self.installation_created_body(id) else {
            return 404;
        };
        self.deliver("installation", body).await
    }

    /// The `installation.created` delivery body for installation `id`, if it exists.
    pub fn installation_created_body(&self, id: i64) -> Option<Value> {
        let state = self.state();
        let installation = state.installations.get(&id)?;
        let account_id = id + 1_000;
        let mut body = json!({
            "action": "created",
            "installation": {
                "id": id,
                "account": user_json(&installation.account, account_id, "Organization"),
                "repository_selection": "selected",
                "access_tokens_url": format!("https://api.github.com/app/installations/{id}/access_tokens"),
                "repositories_url": "https://api.github.com/installation/repositories",
                "html_url": format!("https://github.com/organizations/{}/settings/installations/{id}", installation.account),
                "app_id": APP_ID,
                "target_id": account_id,
                "target_type": "Organization",
                "permissions": { "actions": "read", "administration": "write", "metadata": "read", "organization_self_hosted_runners": "write" },
                "events": ["workflow_job"],
                "created_at": timestamp(installation.created_at),
                "updated_at": timestamp(installation.created_at),
                "single_file_name": null,
                "suspended_at": null,
                "suspended_by": null,
            },
            "repositories": installation.repositories.iter().map(|r| json!({
                "id": r.id,
                "node_id": format!("MDEwOlJlcG9zaXRvcnk{}", r.id),
                "name": r.full_name.split('/').nth(1).unwrap_or_default(),
                "full_name": r.full_name,
                "private": r.private,
            })).collect::<Vec<_>>(),
            "sender": user_json(installation.users.first().map_or(SANDBOX_USER, String::as_str), 1, "User"),
        });
        if let Some(requester) = &installation.requester {
            body["requester"] = user_json(requester, 2, "User");
        }
        Some(body)
    }

    /// A `workflow_job` delivery body for a job of `installation_id` in `repository`.
    pub fn workflow_job_body(
        &self,
        installation_id: i64,
        repository: &str,
        job: &SampleJob,
    ) -> Value {
        let repository_id = self
            .repositories(installation_id)
            .into_iter()
            .find(|r| r.full_name == repository)
            .map_or(0, |r| r.id);
        let (owner, name) = repository
            .split_once('/')
            .unwrap_or((repository, repository));
        let html = format!("https://github.com/{repository}");
        json!({
            "action": job.status,
            "workflow_job": job.to_json(repository),
            "repository": {
                "id": repository_id,
                "node_id": format!("MDEwOlJlcG9zaXRvcnk{repository_id}"),
                "name": name,
                "full_name": repository,
                "private": true,
                "owner": user_json(owner, installation_id + 1_000, "Organization"),
                "html_url": html,
                "description": "A sandbox repository",
                "fork": false,
                "url": format!("https://api.github.com/repos/{repository}"),
            },
            "sender": user_json(SANDBOX_USER, 1, "User"),
            "installation": { "id": installation_id, "node_id": format!("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u{installation_id}") },
        })
    }

    /// Signs and sends a delivery to Tenki's intake, recording the attempt as GitHub does;
    /// returns Tenki's status (502 when Tenki could not be reached).
    pub async fn deliver(&self, event: &str, body: Value) -> u16 {
        let guid = uuid::Uuid::new_v4().to_string();
        self.attempt(&guid, event, body, false).await
    }

    async fn attempt(&self, guid: &str, event: &str, body: Value, redelivery: bool) -> u16 {
        let unreachable = self.state().intake_unreachable;
        let status = if unreachable {
            502
        } else {
            let raw = body.to_string();
            let signature = tenki_core::github::intake::sign(
                self.webhook_secret.expose_secret().as_bytes(),
                raw.as_bytes(),
            );
            match self
                .http
                .post(format!("{}/webhooks/github", self.tenki_url))
                .header("content-type", "application/json")
                .header("x-github-event", event)
                .header("x-github-delivery", guid)
                .header("x-github-hook-installation-target-type", "integration")
                .header("x-hub-signature-256", signature)
                .body(raw)
                .send()
                .await
            {
                Ok(response) => response.status().as_u16(),
                Err(e) => {
                    tracing::warn!("sandbox GitHub cannot reach Tenki's intake: {e}");
                    502
                }
            }
        };
        let mut state = self.state();
        let id = state.next_id();
        state.deliveries.push(DeliveryAttempt {
            id,
            guid: guid.to_owned(),
            delivered_at: Utc::now(),
            redelivery,
            status_code: status,
            event: event.to_owned(),
            action: body
                .get("action")
                .and_then(Value::as_str)
                .map(str::to_owned),
            installation_id: body
                .get("installation")
                .and_then(|i| i.get("id"))
                .and_then(Value::as_i64),
            body,
        });
        status
    }

    /// While `true`, deliveries fail as if Tenki were down, and are recorded as failed.
    pub fn set_intake_unreachable(&self, unreachable: bool) {
        self.state().intake_unreachable = unreachable;
    }

    /// Adds a queued job to a workflow run of `repository` without announcing it.
    pub fn queue_job_silently(&self, installation_id: i64, repository: &str, label: &str) -> i64 {
        let job = SampleJob::queued(label);
        let id = job.id;
        self.state().queued_jobs.push(QueuedJob {
            installation_id,
            repository: repository.to_owned(),
            job,
            run: Duration::from_secs(10),
            taken: false,
        });
        id
    }

    /// Ends every sample job running now, successfully (tests hold jobs running this way).
    pub fn finish_running_jobs(&self) {
        self.finish.send_modify(|generation| *generation += 1);
    }

    /// While `true`, GitHub answers 409 "already exists" once for each new runner name.
    pub fn set_runner_names_taken(&self, taken: bool) {
        self.state().runner_names_taken = taken;
    }

    /// The runners registered now: (name, busy).
    pub fn runners(&self) -> Vec<(String, bool)> {
        self.state()
            .runners
            .iter()
            .map(|r| (r.name.clone(), r.busy))
            .collect()
    }

    /// From now until `until`, every API call is refused for the rate limit.
    pub fn set_rate_limited_until(&self, until: Option<DateTime<Utc>>) {
        self.state().rate_limited_until = until;
    }

    /// API requests answered so far.
    pub fn api_requests(&self) -> usize {
        self.state().api_requests
    }

    /// Installation tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        self.state().tokens_issued
    }

    /// Delivery attempts for `guid`: (status, redelivery).
    pub fn attempts(&self, guid: &str) -> Vec<(u16, bool)> {
        self.state()
            .deliveries
            .iter()
            .filter(|d| d.guid == guid)
            .map(|d| (d.status_code, d.redelivery))
            .collect()
    }

    /// The delivery ids sent or tried so far, oldest first.
    pub fn delivery_guids(&self) -> Vec<String> {
        let state = self.state();
        let mut guids: Vec<String> = Vec::new();
        for delivery in &state.deliveries {
            if !guids.contains(&delivery.guid) {
                guids.push(delivery.guid.clone());
            }
        }
        guids
    }

    /// Queues `jobs` jobs of a sample workflow on `label` in `repository`, each running `run`
    /// once a runner takes it: sends their `queued` deliveries, as GitHub does. Returns the ids.
    pub async fn queue_sample_workflow(
        &self,
        installation_id: i64,
        repository: &str,
        label: &str,
        jobs: usize,
        run: Duration,
    ) -> Vec<i64> {
        let run_id = i64::from(rand::random::<u32>()) + 30_000_000_000;
        let mut ids = Vec::with_capacity(jobs);
        for _ in 0..jobs {
            let mut job = SampleJob::queued(label);
            job.run_id = run_id;
            ids.push(job.id);
            self.state().queued_jobs.push(QueuedJob {
                installation_id,
                repository: repository.to_owned(),
                job: job.clone(),
                run,
                taken: false,
            });
            self.deliver(
                "workflow_job",
                self.workflow_job_body(installation_id, repository, &job),
            )
            .await;
        }
        ids
    }

    /// What a runner started from `jit_config` does (the sandbox's pods call this): comes
    /// online, takes the first queued job its labels match (without regard to case, as GitHub
    /// matches), sends `in_progress`, runs it, sends `completed`, and deregisters (it is
    /// ephemeral). Returns when the job is done, when Tenki removes the runner, or when `stop`
    /// turns true.
    pub async fn run_runner(
        &self,
        jit_config: &str,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), String> {
        let id: i64 = jit_config
            .strip_prefix("sandbox-jit-config-")
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| {
                "the JIT configuration is not one the sandbox GitHub issued".to_owned()
            })?;
        loop {
            let taken = {
                let mut state = self.state();
                let Some(runner) = state.runners.iter_mut().find(|r| r.id == id) else {
                    // Removed by Tenki (idle) before it took a job.
                    return Ok(());
                };
                runner.online = true;
                let owner = runner.owner.clone();
                let labels: Vec<String> = runner.labels.iter().map(|l| l.to_lowercase()).collect();
                let name = runner.name.clone();
                let job = state.queued_jobs.iter_mut().find(|j| {
                    !j.taken
                        && (j.repository == owner
                            || j.repository.split('/').next() == Some(owner.as_str()))
                        && labels.contains(&j.job.label.to_lowercase())
                });
                job.map(|job| {
                    job.taken = true;
                    job.job.status = "in_progress";
                    job.job.started_at = Some(Utc::now());
                    job.job.runner_name = Some(name);
                    (
                        job.installation_id,
                        job.repository.clone(),
                        job.job.clone(),
                        job.run,
                    )
                })
            };
            if let Some((installation_id, repository, mut job, run)) = taken {
                if let Some(runner) = self.state().runners.iter_mut().find(|r| r.id == id) {
                    runner.busy = true;
                }
                self.deliver(
                    "workflow_job",
                    self.workflow_job_body(installation_id, &repository, &job),
                )
                .await;
                let mut finish = self.finish.subscribe();
                tokio::select! {
                    () = tokio::time::sleep(run) => {}
                    _ = finish.changed() => {}
                    _ = stop.wait_for(|stop| *stop) => {}
                }
                job.status = "completed";
                job.completed_at = Some(Utc::now());
                job.conclusion = Some(if *stop.borrow() {
                    "cancelled"
                } else {
                    "success"
                });
                {
                    let mut state = self.state();
                    state.queued_jobs.retain(|j| j.job.id != job.id);
                    state.runners.retain(|r| r.id != id);
                }
                self.deliver(
                    "workflow_job",
                    self.workflow_job_body(installation_id, &repository, &job),
                )
                .await;
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.wait_for(|stop| *stop) => return Ok(()),
            }
        }
    }

    /// The double's routes, to be nested under [`crate::settings::SANDBOX_GITHUB_PATH`]: web
    /// pages at the root, the REST API under `/api`.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/app/installations/{id}", get(installation))
            .route("/app/installations/{id}/access_tokens", post(access_token))
            .route("/app/hook/deliveries", get(list_deliveries))
            .route("/app/hook/deliveries/{id}/attempts", post(redeliver))
            .route("/user", get(current_user))
            .route("/user/installations", get(user_installations))
            .route("/installation/repositories", get(installation_repositories))
            .route("/repos/{owner}/{repo}/actions/runs", get(workflow_runs))
            .route(
                "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
                get(run_jobs),
            )
            .route(
                "/orgs/{org}/actions/runners/generate-jitconfig",
                post(generate_jitconfig),
            )
            .route("/orgs/{org}/actions/runners", get(list_runners))
            .route(
                "/orgs/{org}/actions/runners/{id}",
                get(get_runner).delete(delete_runner),
            )
            .route(
                "/repos/{owner}/{repo}/actions/runners/generate-jitconfig",
                post(generate_repository_jitconfig),
            )
            .route(
                "/repos/{owner}/{repo}/actions/runners",
                get(list_repository_runners),
            )
            .route(
                "/repos/{owner}/{repo}/actions/runners/{id}",
                get(get_repository_runner).delete(delete_repository_runner),
            );
        Router::new()
            .route(
                "/apps/{slug}/installations/new",
                get(install_page).post(install),
            )
            .route("/login/oauth/access_token", post(exchange_code))
            .route("/sample-workflow", post(sample_workflow))
            .route(
                "/switches/runner-names-taken",
                post(switch_runner_names_taken),
            )
            .nest("/api", api)
            .with_state(self.clone())
    }
}

/// A job of a sample workflow, as it moves through its life.
#[derive(Debug, Clone)]
pub struct SampleJob {
    pub id: i64,
    pub run_id: i64,
    pub label: String,
    pub status: &'static str,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub conclusion: Option<&'static str>,
    pub runner_name: Option<String>,
    /// The job's name in its workflow, and the workflow's.
    pub name: String,
    pub workflow: String,
}

impl SampleJob {
    /// A new job on `label`, queued now.
    pub fn queued(label: &str) -> Self {
        let id = i64::from(rand::random::<u32>()) + 20_000_000_000;
        Self {
            id,
            run_id: id + 7,
            label: label.to_owned(),
            status: "queued",
            created_at: Utc::now(),
            started_at: None,
            completed_at: None,
            conclusion: None,
            runner_name: None,
            name: "build".to_owned(),
            workflow: "Sample workflow".to_owned(),
        }
    }

    fn to_json(&self, repository: &str) -> Value {
        let id = self.id;
        let run_id = self.run_id;
        json!({
            "id": id,
            "run_id": run_id,
            "run_url": format!("https://api.github.com/repos/{repository}/actions/runs/{run_id}"),
            "run_attempt": 1,
            "node_id": format!("CR_kwDOSandbox{id}"),
            "head_sha": "4a5b6c7d8e9f00112233445566778899aabbccdd",
            "head_branch": "main",
            "url": format!("https://api.github.com/repos/{repository}/actions/jobs/{id}"),
            "html_url": format!("https://github.com/{repository}/actions/runs/{run_id}/job/{id}"),
            "status": self.status,
            "conclusion": self.conclusion,
            // GitHub sets `started_at` to the queue time until the job runs.
            "started_at": timestamp(self.started_at.unwrap_or(self.created_at)),
            "created_at": timestamp(self.created_at),
            "completed_at": self.completed_at.map(timestamp),
            "name": self.name,
            "steps": [],
            "check_run_url": format!("https://api.github.com/repos/{repository}/check-runs/{id}"),
            "labels": [self.label],
            "runner_id": self.runner_name.as_ref().map(|_| 42),
            "runner_name": self.runner_name,
            "runner_group_id": self.runner_name.as_ref().map(|_| 1),
            "runner_group_name": self.runner_name.as_ref().map(|_| "Default"),
            "workflow_name": self.workflow,
        })
    }
}

fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn github_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "message": message, "documentation_url": "https://docs.github.com/rest" })),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)?
                .to_str()
                .ok()?
                .strip_prefix("token ")
        })
}

fn refusal(status: StatusCode, message: &str) -> Box<Response> {
    Box::new(github_error(status, message))
}

impl GitHubDouble {
    /// Counts the request and refuses it while rate limited.
    fn admit(&self) -> Result<(), Box<Response>> {
        let mut state = self.state();
        state.api_requests += 1;
        match state.rate_limited_until {
            Some(until) if until > Utc::now() => Err(Box::new((
                StatusCode::FORBIDDEN,
                [
                    ("x-ratelimit-limit", "5000".to_owned()),
                    ("x-ratelimit-remaining", "0".to_owned()),
                    ("x-ratelimit-reset", until.timestamp().to_string()),
                ],
                Json(json!({ "message": "API rate limit exceeded for installation.", "documentation_url": "https://docs.github.com/rest/rate-limit" })),
            )
                .into_response())),
            _ => Ok(()),
        }
    }

    /// Checks the App's JWT: RS256, signed with the App's key, issued by the App.
    fn require_app(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        self.admit()?;
        let unauthorized = || {
            refusal(
                StatusCode::UNAUTHORIZED,
                "A JSON web token could not be decoded",
            )
        };
        let token = bearer(headers).ok_or_else(unauthorized)?;
        let key = octocrab::jsonwebtoken::DecodingKey::from_rsa_pem(APP_PUBLIC_KEY.as_bytes())
            .map_err(|_| unauthorized())?;
        let mut validation =
            octocrab::jsonwebtoken::Validation::new(octocrab::jsonwebtoken::Algorithm::RS256);
        // GitHub's `iss` is the App id as a number, which the library's own check expects as a
        // string; it is checked below.
        validation.set_required_spec_claims(&["exp", "iat"]);
        let claims = octocrab::jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|_| unauthorized())?
            .claims;
        let issuer = claims.get("iss").map(|iss| match iss {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        if issuer.as_deref() == Some(APP_ID.to_string().as_str()) {
            Ok(())
        } else {
            Err(unauthorized())
        }
    }

    /// The installation an installation token belongs to.
    fn require_installation(&self, headers: &HeaderMap) -> Result<i64, Box<Response>> {
        self.admit()?;
        let token = bearer(headers)
            .ok_or_else(|| refusal(StatusCode::UNAUTHORIZED, "Requires authentication"))?;
        match self.state().installation_tokens.get(token) {
            Some((id, expires)) if *expires > Utc::now() => Ok(*id),
            _ => Err(refusal(StatusCode::UNAUTHORIZED, "Bad credentials")),
        }
    }

    fn require_repository(
        &self,
        headers: &HeaderMap,
        repository: &str,
    ) -> Result<i64, Box<Response>> {
        let installation = self.require_installation(headers)?;
        let has = self
            .repositories(installation)
            .iter()
            .any(|r| r.full_name == repository);
        if has {
            Ok(installation)
        } else {
            Err(refusal(StatusCode::NOT_FOUND, "Not Found"))
        }
    }
}

async fn installation(
    State(double): State<GitHubDouble>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = double.require_app(&headers) {
        return *refused;
    }
    let found = double.state().installations.get(&id).cloned();
    match found {
        Some(installation) => Json(json!({
            "id": installation.id,
            "account": user_json(&installation.account, installation.id + 1_000, "Organization"),
            "target_type": "Organization",
            "app_id": APP_ID,
            "app_slug": APP_SLUG,
            "repository_selection": "selected",
            "created_at": timestamp(installation.created_at),
        }))
        .into_response(),
        None => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn access_token(
    State(double): State<GitHubDouble>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = double.require_app(&headers) {
        return *refused;
    }
    let mut state = double.state();
    if !state.installations.contains_key(&id) {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let token = format!("ghs_{}", uuid::Uuid::new_v4().simple());
    let expires = Utc::now() + TOKEN_LIFETIME;
    state
        .installation_tokens
        .insert(token.clone(), (id, expires));
    state.tokens_issued += 1;
    (
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": timestamp(expires),
            "permissions": { "actions": "read", "metadata": "read", "organization_self_hosted_runners": "write" },
            "repository_selection": "selected",
        })),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct DeliveriesQuery {
    per_page: Option<usize>,
    cursor: Option<usize>,
}

async fn list_deliveries(
    State(double): State<GitHubDouble>,
    Query(query): Query<DeliveriesQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = double.require_app(&headers) {
        return *refused;
    }
    let per_page = query.per_page.unwrap_or(30).clamp(1, 100);
    let start = query.cursor.unwrap_or(0);
    let state = double.state();
    // Newest first, as GitHub lists them.
    let newest_first: Vec<&DeliveryAttempt> = state.deliveries.iter().rev().collect();
    let page: Vec<Value> = newest_first
        .iter()
        .skip(start)
        .take(per_page)
        .map(|d| {
            json!({
                "id": d.id, "guid": d.guid, "delivered_at": timestamp(d.delivered_at),
                "redelivery": d.redelivery, "duration": 0.05,
                "status": if (200..300).contains(&d.status_code) { "OK" } else { "failed to connect" },
                "status_code": d.status_code, "event": d.event, "action": d.action,
                "installation_id": d.installation_id, "repository_id": null,
            })
        })
        .collect();
    let mut response = Json(page).into_response();
    if start + per_page < newest_first.len() {
        let next = format!(
            "<{}/sandbox/github/api/app/hook/deliveries?per_page={per_page}&cursor={}>; rel=\"next\"",
            double.tenki_url,
            start + per_page
        );
        if let Ok(value) = next.parse() {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

async fn redeliver(
    State(double): State<GitHubDouble>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = double.require_app(&headers) {
        return *refused;
    }
    let original = double
        .state()
        .deliveries
        .iter()
        .find(|d| d.id == id)
        .cloned();
    let Some(original) = original else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let resend = double.clone();
    tokio::spawn(async move {
        resend
            .attempt(&original.guid, &original.event, original.body, true)
            .await;
    });
    (StatusCode::ACCEPTED, Json(json!({}))).into_response()
}

async fn current_user(State(double): State<GitHubDouble>, headers: HeaderMap) -> Response {
    if let Err(refused) = double.admit() {
        return *refused;
    }
    let state = double.state();
    match bearer(&headers).and_then(|t| state.user_tokens.get(t)) {
        Some(user) => Json(user_json(user, 1, "User")).into_response(),
        None => github_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
    }
}

async fn user_installations(State(double): State<GitHubDouble>, headers: HeaderMap) -> Response {
    if let Err(refused) = double.admit() {
        return *refused;
    }
    let state = double.state();
    let Some(user) = bearer(&headers).and_then(|t| state.user_tokens.get(t)) else {
        return github_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    };
    let installations: Vec<Value> = state
        .installations
        .values()
        .filter(|i| i.users.contains(user))
        .map(|i| {
            json!({
                "id": i.id,
                "account": user_json(&i.account, i.id + 1_000, "Organization"),
                "app_id": APP_ID, "app_slug": APP_SLUG, "target_type": "Organization",
                "repository_selection": "selected", "suspended_at": null,
                "created_at": timestamp(i.created_at), "updated_at": timestamp(i.created_at),
            })
        })
        .collect();
    Json(json!({ "total_count": installations.len(), "installations": installations }))
        .into_response()
}

async fn installation_repositories(
    State(double): State<GitHubDouble>,
    headers: HeaderMap,
) -> Response {
    let installation = match double.require_installation(&headers) {
        Ok(id) => id,
        Err(refused) => return *refused,
    };
    let repositories: Vec<Value> = double
        .repositories(installation)
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "node_id": format!("MDEwOlJlcG9zaXRvcnk{}", r.id),
                "name": r.full_name.split('/').nth(1).unwrap_or_default(),
                "full_name": r.full_name, "private": r.private,
            })
        })
        .collect();
    Json(json!({ "total_count": repositories.len(), "repository_selection": "selected", "repositories": repositories }))
        .into_response()
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    status: Option<String>,
}

async fn workflow_runs(
    State(double): State<GitHubDouble>,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<RunsQuery>,
    headers: HeaderMap,
) -> Response {
    let repository = format!("{owner}/{repo}");
    if let Err(refused) = double.require_repository(&headers, &repository) {
        return *refused;
    }
    // The double's silent jobs sit in queued runs.
    let runs: Vec<Value> = if query.status.as_deref().is_none_or(|s| s == "queued") {
        let state = double.state();
        let mut ids: Vec<i64> = state
            .queued_jobs
            .iter()
            .filter(|j| j.repository == repository && !j.taken)
            .map(|j| j.job.run_id)
            .collect();
        ids.dedup();
        ids.into_iter()
            .map(|id| json!({ "id": id, "name": "Sample workflow", "status": "queued", "run_attempt": 1 }))
            .collect()
    } else {
        Vec::new()
    };
    Json(json!({ "total_count": runs.len(), "workflow_runs": runs })).into_response()
}

async fn run_jobs(
    State(double): State<GitHubDouble>,
    Path((owner, repo, run_id)): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> Response {
    let repository = format!("{owner}/{repo}");
    if let Err(refused) = double.require_repository(&headers, &repository) {
        return *refused;
    }
    let jobs: Vec<Value> = double
        .state()
        .queued_jobs
        .iter()
        .filter(|j| j.repository == repository && j.job.run_id == run_id)
        .map(|j| j.job.to_json(&j.repository))
        .collect();
    Json(json!({ "total_count": jobs.len(), "jobs": jobs })).into_response()
}

#[derive(Debug, Deserialize)]
struct JitConfigRequest {
    name: String,
    #[serde(default)]
    labels: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RunnersQuery {
    name: Option<String>,
}

async fn generate_jitconfig(
    State(double): State<GitHubDouble>,
    Path(org): Path<String>,
    headers: HeaderMap,
    Json(request): Json<JitConfigRequest>,
) -> Response {
    register_runner(&double, &headers, org, request)
}

async fn generate_repository_jitconfig(
    State(double): State<GitHubDouble>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Json(request): Json<JitConfigRequest>,
) -> Response {
    register_runner(&double, &headers, format!("{owner}/{repo}"), request)
}

fn register_runner(
    double: &GitHubDouble,
    headers: &HeaderMap,
    owner: String,
    request: JitConfigRequest,
) -> Response {
    if let Err(refused) = double.require_installation(headers) {
        return *refused;
    }
    let mut state = double.state();
    let exists = state
        .runners
        .iter()
        .any(|r| r.owner == owner && r.name == request.name);
    let stale = state.runner_names_taken && state.names_answered_taken.insert(request.name.clone());
    if exists || stale {
        if !exists {
            // The sandbox switch: a stale registration of this name from an "earlier attempt".
            let id = state.next_id();
            state.runners.push(Runner {
                id,
                name: request.name.clone(),
                owner,
                labels: request.labels.clone(),
                busy: false,
                online: false,
            });
        }
        return github_error(
            StatusCode::CONFLICT,
            "Already exists - A runner with the name already exists.",
        );
    }
    let id = state.next_id();
    state.runners.push(Runner {
        id,
        name: request.name.clone(),
        owner,
        labels: request.labels.clone(),
        busy: false,
        online: false,
    });
    let runner = state.runners.last().map(runner_json);
    (
        StatusCode::CREATED,
        Json(json!({
            "runner": runner,
            "encoded_jit_config": format!("sandbox-jit-config-{id}"),
        })),
    )
        .into_response()
}

fn runner_json(runner: &Runner) -> Value {
    json!({
        "id": runner.id, "name": runner.name, "os": "linux",
        "status": if runner.online { "online" } else { "offline" }, "busy": runner.busy,
        "labels": runner.labels.iter().map(|l| json!({ "id": 1, "name": l, "type": "custom" })).collect::<Vec<_>>(),
    })
}

async fn list_runners(
    State(double): State<GitHubDouble>,
    Path(org): Path<String>,
    Query(query): Query<RunnersQuery>,
    headers: HeaderMap,
) -> Response {
    runners_of(&double, &headers, &org, query.name.as_deref())
}

async fn list_repository_runners(
    State(double): State<GitHubDouble>,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<RunnersQuery>,
    headers: HeaderMap,
) -> Response {
    runners_of(
        &double,
        &headers,
        &format!("{owner}/{repo}"),
        query.name.as_deref(),
    )
}

fn runners_of(
    double: &GitHubDouble,
    headers: &HeaderMap,
    owner: &str,
    name: Option<&str>,
) -> Response {
    if let Err(refused) = double.require_installation(headers) {
        return *refused;
    }
    let runners: Vec<Value> = double
        .state()
        .runners
        .iter()
        .filter(|r| r.owner == owner && name.is_none_or(|n| n == r.name))
        .map(runner_json)
        .collect();
    Json(json!({ "total_count": runners.len(), "runners": runners })).into_response()
}

async fn get_runner(
    State(double): State<GitHubDouble>,
    Path((org, id)): Path<(String, i64)>,
    headers: HeaderMap,
) -> Response {
    runner_of(&double, &headers, &org, id)
}

async fn get_repository_runner(
    State(double): State<GitHubDouble>,
    Path((owner, repo, id)): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> Response {
    runner_of(&double, &headers, &format!("{owner}/{repo}"), id)
}

fn runner_of(double: &GitHubDouble, headers: &HeaderMap, owner: &str, id: i64) -> Response {
    if let Err(refused) = double.require_installation(headers) {
        return *refused;
    }
    let found = double
        .state()
        .runners
        .iter()
        .find(|r| r.owner == owner && r.id == id)
        .map(runner_json);
    match found {
        Some(runner) => Json(runner).into_response(),
        None => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn delete_runner(
    State(double): State<GitHubDouble>,
    Path((org, id)): Path<(String, i64)>,
    headers: HeaderMap,
) -> Response {
    deregister_runner(&double, &headers, &org, id)
}

async fn delete_repository_runner(
    State(double): State<GitHubDouble>,
    Path((owner, repo, id)): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> Response {
    deregister_runner(&double, &headers, &format!("{owner}/{repo}"), id)
}

fn deregister_runner(double: &GitHubDouble, headers: &HeaderMap, owner: &str, id: i64) -> Response {
    if let Err(refused) = double.require_installation(headers) {
        return *refused;
    }
    let mut state = double.state();
    if state
        .runners
        .iter()
        .any(|r| r.owner == owner && r.id == id && r.busy)
    {
        // GitHub refuses to remove a runner while it runs a job.
        return github_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Bad request - Runner is still running a job",
        );
    }
    let before = state.runners.len();
    state.runners.retain(|r| !(r.owner == owner && r.id == id));
    if state.runners.len() == before {
        github_error(StatusCode::NOT_FOUND, "Not Found")
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

#[derive(Debug, Deserialize)]
struct CodeExchange {
    client_id: String,
    client_secret: String,
    code: String,
}

async fn exchange_code(
    State(double): State<GitHubDouble>,
    Json(request): Json<CodeExchange>,
) -> Response {
    let mut state = double.state();
    // GitHub answers a bad code with 200 and an error object.
    let user = (request.client_id == CLIENT_ID && request.client_secret == CLIENT_SECRET)
        .then(|| state.codes.remove(&request.code))
        .flatten();
    match user {
        Some(user) => {
            let token = format!("ghu_{}", uuid::Uuid::new_v4().simple());
            state.user_tokens.insert(token.clone(), user);
            Json(json!({ "access_token": token, "token_type": "bearer", "scope": "", "expires_in": 28800 }))
                .into_response()
        }
        None => Json(json!({
            "error": "bad_verification_code",
            "error_description": "The code passed is incorrect or expired.",
        }))
        .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct InstallPageQuery {
    state: Option<String>,
}

async fn install_page(Query(query): Query<InstallPageQuery>) -> Html<String> {
    let state = html_escape(query.state.as_deref().unwrap_or_default());
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Install Tenki (sandbox GitHub)</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;background:#f6f8fa;color:#1f2328;margin:0}}
.banner{{background:#fff8c5;border-bottom:1px solid #d4a72c;padding:8px 16px;font-size:14px}}
main{{max-width:560px;margin:40px auto;background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:24px}}
label{{display:block;margin-top:12px;font-size:14px;font-weight:600}} input{{width:100%;padding:6px;margin-top:4px;box-sizing:border-box}}
button{{margin-top:20px;margin-right:8px;padding:8px 16px;border-radius:6px;border:1px solid #1f883d;background:#1f883d;color:#fff;font-weight:600}}
button.secondary{{background:#f6f8fa;color:#1f2328;border-color:#d0d7de}}</style></head>
<body><div class="banner">Sandbox GitHub: a local stand-in for github.com. Nothing here reaches GitHub.</div>
<main><h1>Install Tenki</h1><p>Signed in as <strong>{SANDBOX_USER}</strong>. Choose where to install the Tenki App.</p>
<form method="post"><input type="hidden" name="state" value="{state}">
<label for="account">Organization</label><input id="account" name="account" value="sandbox-org">
<label for="repositories">Repositories (comma-separated)</label><input id="repositories" name="repositories" value="api, web">
<button type="submit" name="action" value="install">Install</button>
<button class="secondary" type="submit" name="action" value="request">Request (an owner must approve)</button>
</form></main></body></html>"#
    ))
}

fn html_escape(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[derive(Debug, Deserialize)]
struct InstallForm {
    state: String,
    account: String,
    repositories: String,
    action: String,
}

async fn install(State(double): State<GitHubDouble>, Form(form): Form<InstallForm>) -> Response {
    let account: String = form
        .account
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if account.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "Name an organization to install on.",
        )
            .into_response();
    }
    let code = double.authorize(SANDBOX_USER);
    if form.action == "request" {
        return Redirect::to(&format!(
            "{}/github/setup?setup_action=request&code={code}&state={}",
            double.tenki_url,
            urlencode(&form.state)
        ))
        .into_response();
    }
    let (id, action) = match double.installation_on(&account) {
        Some(id) => (id, "update"),
        None => {
            let names: Vec<String> = form
                .repositories
                .split(',')
                .map(|name| {
                    name.trim()
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                        .collect::<String>()
                })
                .filter(|name| !name.is_empty())
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let id = double.install(SANDBOX_USER, &account, &names);
            // GitHub sends the webhook around the same time as the redirect; here, just before.
            double.send_installation_created(id).await;
            (id, "install")
        }
    };
    Redirect::to(&double.setup_url(id, action, &code, &form.state)).into_response()
}

/// `on=true|false`: a sandbox switch.
#[derive(Debug, Deserialize)]
pub(crate) struct Switch {
    pub(crate) on: bool,
}

/// Sandbox switch: `POST /sandbox/github/switches/runner-names-taken?on=true` makes GitHub answer
/// 409 "already exists" once for every new runner name (Tenki deletes the stale one and registers
/// again).
async fn switch_runner_names_taken(
    State(double): State<GitHubDouble>,
    Query(switch): Query<Switch>,
) -> Response {
    double.set_runner_names_taken(switch.on);
    (StatusCode::OK, format!("runner names taken: {}", switch.on)).into_response()
}

#[derive(Debug, Deserialize)]
struct SampleWorkflowForm {
    installation_id: i64,
    repository: String,
    label: String,
    /// How many jobs (1–100; default 1).
    jobs: Option<String>,
    /// Each job's run time in seconds (1–3600; default 10).
    seconds: Option<String>,
}

/// A whole number in `range` from an optional form field, or what is wrong with it.
fn form_number(
    value: Option<&str>,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                format!(
                    "{name} must be a whole number from {} to {} (got {raw:?}).",
                    range.start(),
                    range.end()
                )
            }),
    }
}

/// "Run a sample workflow" from the Runners page: queues its jobs (their deliveries go out in the
/// background; Tenki's runners take them) and sends the browser to the Jobs page to watch them.
async fn sample_workflow(
    State(double): State<GitHubDouble>,
    Form(form): Form<SampleWorkflowForm>,
) -> Response {
    let known = double
        .repositories(form.installation_id)
        .iter()
        .any(|r| r.full_name == form.repository);
    if !known {
        return (
            StatusCode::BAD_REQUEST,
            "The sandbox GitHub does not know that installation and repository.",
        )
            .into_response();
    }
    let numbers = form_number(form.jobs.as_deref(), "jobs", 1, 1..=100).and_then(|jobs| {
        form_number(form.seconds.as_deref(), "seconds", 10, 1..=3600).map(|s| (jobs, s))
    });
    let (jobs, seconds) = match numbers {
        Ok(numbers) => numbers,
        Err(problem) => return (StatusCode::BAD_REQUEST, problem).into_response(),
    };
    let github = double.clone();
    tokio::spawn(async move {
        // The jobs wait for runners Tenki starts; the sandbox's pods take them.
        github
            .queue_sample_workflow(
                form.installation_id,
                &form.repository,
                &form.label,
                usize::try_from(jobs).unwrap_or(1),
                Duration::from_secs(seconds),
            )
            .await;
    });
    Redirect::to(&format!("{}/jobs", double.tenki_url)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apps_jwt_opens_the_double_and_a_foreign_one_does_not() {
        let double = GitHubDouble::new("http://127.0.0.1:1", SecretString::from("secret"));
        let with = |token: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                format!("Bearer {token}").parse().expect("header"),
            );
            headers
        };
        let key = octocrab::EncodingKey::from_rsa_pem(APP_PRIVATE_KEY.as_bytes()).expect("key");
        let token = octocrab::auth::create_jwt(APP_ID.into(), &key).expect("jwt");
        assert!(double.require_app(&with(&token)).is_ok());
        let other_app = octocrab::auth::create_jwt(2.into(), &key).expect("jwt");
        assert!(double.require_app(&with(&other_app)).is_err());
        assert!(double.require_app(&with("not-a-jwt")).is_err());
    }
}
