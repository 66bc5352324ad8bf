//! Admission and runners (SPEC §4, §5) end to end: the server admits queued jobs, registers
//! just-in-time runners on the GitHub double, starts them on the Kubernetes double (through the
//! production `kube` client), whose pods take the jobs and send GitHub's real deliveries; the
//! reaper removes what is idle, failed or orphaned.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use server::sandbox::github::{SANDBOX_USER, SampleJob};
use sqlx::PgPool;
use tenki_core::admission::support;
use tenki_core::metering::{self, FinishedJob, JobKey};
use tenki_core::runners::reaper;
use uuid::Uuid;

use crate::harness::{TestApp, eventually_within, settings};

/// A signed-up customer with a linked installation of the GitHub double.
pub struct Customer {
    pub email: String,
    pub browser: reqwest::Client,
    pub workspace_id: Uuid,
    pub installation_id: i64,
    pub repository: String,
}

pub async fn customer(app: &TestApp, account: &str) -> Customer {
    let email = format!("{}@{account}.test", Uuid::new_v4().simple());
    let browser = app.new_browser();
    app.sign_up(&browser, account, &email, "a long enough password")
        .await;
    let workspace_id = tenki_core::workspaces::first_workspace_of_email(&app.core.db, &email)
        .await
        .expect("query")
        .expect("workspace");
    let installation_id = app.github.install(SANDBOX_USER, account, &["api"]);
    tenki_core::github::onboarding::link_installation(
        &app.core.db,
        installation_id,
        workspace_id,
        None,
        false,
        Utc::now(),
    )
    .await
    .expect("linked");
    Customer {
        email,
        browser,
        workspace_id,
        installation_id,
        repository: format!("{account}/api"),
    }
}

/// Spawns a server whose worker runs 16 tasks at once (bursts of deliveries and runners).
async fn busy_server(db: PgPool, extra: &[(&str, &str)]) -> TestApp {
    let mut overrides = vec![("TENKI_WORKER_CONCURRENCY", "16")];
    overrides.extend_from_slice(extra);
    TestApp::spawn_with(db, settings(&overrides)).await
}

/// Sends a `queued` delivery for a job GitHub keeps waiting (no runner of the double takes it):
/// returns its id.
async fn queue_untaken_job(
    app: &TestApp,
    customer: &Customer,
    label: &str,
    created_ago: chrono::Duration,
) -> i64 {
    let mut job = SampleJob::queued(label);
    job.created_at = Utc::now() - created_ago;
    let status = app
        .github
        .deliver(
            "workflow_job",
            app.github
                .workflow_job_body(customer.installation_id, &customer.repository, &job),
        )
        .await;
    assert_eq!(status, 202);
    job.id
}

/// Queues a 2c job GitHub gives to no runner, and waits until the one runner asked for it is in
/// `state`: (the job's id, its runner's name).
async fn untaken_job_once_its_runner_is(
    app: &TestApp,
    customer: &Customer,
    state: &'static str,
) -> (i64, String) {
    let id = queue_untaken_job(app, customer, "tenki-standard-2c", chrono::Duration::zero()).await;
    eventually_within(30, &format!("a runner {state}"), || {
        let db = app.core.db.clone();
        async move {
            unused_runners_of(&db, id)
                .await
                .iter()
                .any(|(_, now)| *now == state)
        }
    })
    .await;
    let [(runner, _)] = &unused_runners_of(&app.core.db, id).await[..] else {
        panic!("one runner asked for job {id}");
    };
    (id, runner.clone())
}

/// The runners asked for job `id` that took no job yet: (name, state).
async fn unused_runners_of(db: &PgPool, id: i64) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT name, state FROM runners
         WHERE github_job_id = $1 AND state <> 'deleted' AND ran_github_job_id IS NULL",
    )
    .bind(id)
    .fetch_all(db)
    .await
    .expect("runners")
}

/// Waits until the only unused runner asked for job `robbed` is `runner`, starting.
async fn handed_over(db: &PgPool, robbed: i64, runner: &str, seconds: u64) {
    eventually_within(
        seconds,
        &format!("{runner} starting for job {robbed}"),
        || {
            let db = db.clone();
            let expected = vec![(runner.to_owned(), "starting".to_owned())];
            async move { unused_runners_of(&db, robbed).await == expected }
        },
    )
    .await;
}

/// One reconcile pass of the test's own at `now`: waits while the server's every-minute pass
/// holds the reaper's lock, so a cron tick at the same moment never empties the report.
async fn reaper_pass(app: &TestApp, now: chrono::DateTime<Utc>) -> reaper::ReconcileReport {
    for _ in 0..300 {
        let pass = reaper::reconcile(&app.core.db, &app.core.github, &app.core.kubernetes, now)
            .await
            .expect("reconcile");
        if let Some(report) = pass {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the reaper's lock was held for 30 s");
}

/// GitHub cancels a job no runner took: releases its place.
async fn cancel_waiting_job(app: &TestApp, customer: &Customer, id: i64, label: &str) {
    let mut job = SampleJob::queued(label);
    job.id = id;
    job.status = "completed";
    job.conclusion = Some("cancelled");
    job.completed_at = Some(Utc::now());
    let status = app
        .github
        .deliver(
            "workflow_job",
            app.github
                .workflow_job_body(customer.installation_id, &customer.repository, &job),
        )
        .await;
    assert_eq!(status, 202);
}

async fn count(db: &PgPool, sql: &'static str, workspace_id: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(workspace_id)
        .fetch_one(db)
        .await
        .expect("count")
}

const IN_PROGRESS: &str =
    "SELECT count(*) FROM github_jobs j JOIN github_installations i USING (installation_id)
     WHERE i.workspace_id = $1 AND j.status = 'in_progress'";
const COMPLETED: &str =
    "SELECT count(*) FROM github_jobs j JOIN github_installations i USING (installation_id)
     WHERE i.workspace_id = $1 AND j.status = 'completed'";
/// Jobs waiting for a slot that have not started: a job another job's runner took starts while
/// still marked waiting, until its slot follows the runner and the next admission pass settles it.
const WAITING: &str =
    "SELECT count(*) FROM github_jobs j JOIN github_installations i USING (installation_id)
     WHERE i.workspace_id = $1 AND j.admission = 'waiting' AND j.status IN ('waiting', 'queued')";
const SLOTS: &str = "SELECT count(*) FROM runner_slots WHERE workspace_id = $1";

/// A workspace's jobs by status and admission, and its runners by state, for a failure message.
async fn jobs_and_runners(db: &PgPool, workspace_id: Uuid) -> String {
    let jobs: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT j.status, j.admission, count(*) FROM github_jobs j
         JOIN github_installations i USING (installation_id)
         WHERE i.workspace_id = $1 GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(workspace_id)
    .fetch_all(db)
    .await
    .expect("jobs");
    let runners: Vec<(String, bool, i64)> = sqlx::query_as(
        "SELECT state, ran_github_job_id IS NOT NULL, count(*) FROM runners
         WHERE workspace_id = $1 GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(workspace_id)
    .fetch_all(db)
    .await
    .expect("runners");
    let reasons: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT j.github_job_id, j.admission, j.admission_reason FROM github_jobs j
         JOIN github_installations i USING (installation_id)
         WHERE i.workspace_id = $1 AND j.admission NOT IN ('admitted', 'waiting')",
    )
    .bind(workspace_id)
    .fetch_all(db)
    .await
    .expect("reasons");
    let slots = count(db, SLOTS, workspace_id).await;
    format!(
        "jobs (status, admission, n): {jobs:?}; runners (state, took a job, n): {runners:?}; \
         slots: {slots}; neither admitted nor waiting: {reasons:?}"
    )
}

pub async fn job_admission(db: &PgPool, id: i64) -> (String, String, Option<String>) {
    sqlx::query_as(
        "SELECT status, admission, admission_reason FROM github_jobs WHERE github_job_id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
    .expect("job")
    .unwrap_or_else(|| ("not recorded yet".to_owned(), String::new(), None))
}

/// The Jobs page as the customer's browser reads it.
pub async fn jobs_page(app: &TestApp, customer: &Customer) -> Value {
    let response = app
        .call(
            &customer.browser,
            "jobs",
            &[
                ("status", ""),
                ("label", ""),
                ("repository", ""),
                ("before", ""),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

/// Uses up the workspace's free minutes (1,000 minutes on 2 vCPUs).
pub async fn use_up_free_minutes(app: &TestApp, workspace_id: Uuid) {
    let now = Utc::now();
    let job = FinishedJob {
        workspace_id,
        key: JobKey {
            github_job_id: i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000_000)
                .expect("fits"),
            run_attempt: 1,
        },
        label: "tenki-standard-2c".to_owned(),
        started_at: now - chrono::Duration::minutes(1_000),
        completed_at: now,
        repository: "acme/big".to_owned(),
        workflow: "CI".to_owned(),
    };
    metering::meter_job(&app.core.db, &app.core.ledger, &job, now)
        .await
        .expect("metered");
    assert_eq!(
        app.core
            .ledger
            .free_vcpu_minutes_left(workspace_id)
            .await
            .expect("ledger"),
        0
    );
}

/// The Job, Secret and namespace guards Tenki sent, as the cluster stored them, without the
/// fields the API server adds.
fn as_sent(mut object: Value) -> Value {
    if let Some(metadata) = object["metadata"].as_object_mut() {
        for added in ["uid", "creationTimestamp", "resourceVersion"] {
            metadata.remove(added);
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    object
}

#[sqlx::test(migrations = "../migrations")]
async fn a_queued_job_runs_on_a_just_in_time_runner_that_is_then_removed(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "jit-org").await;
    let ids = app
        .github
        .queue_sample_workflow(
            customer.installation_id,
            &customer.repository,
            "tenki-standard-4c",
            1,
            Duration::from_secs(3),
        )
        .await;
    let id = ids[0];
    // The objects Tenki sent to Kubernetes, exactly. The Secret is created after the Job (it is
    // owned by the Job's uid), so wait for both.
    eventually_within(30, "the runner's Job and Secret exist", || {
        let jobs = app.kubernetes.objects("jobs");
        let secrets = app.kubernetes.objects("secrets");
        async move { !jobs.is_empty() && !secrets.is_empty() }
    })
    .await;
    let job = app.kubernetes.objects("jobs").remove(0);
    let name = job["metadata"]["name"].as_str().expect("name").to_owned();
    let namespace = format!("tenki-ws-{}", customer.workspace_id.simple());
    assert_eq!(
        name,
        format!(
            "tenki-{}-{id}-1-1",
            &customer.workspace_id.simple().to_string()[..8]
        ),
        "named from (workspace, job, attempt, try)"
    );
    let labels = json!({
        "app.kubernetes.io/managed-by": "tenki",
        "tenki.dev/runner": name,
        "tenki.dev/workspace": customer.workspace_id.to_string(),
        "tenki.dev/label": "tenki-standard-4c",
    });
    let resources = json!({ "cpu": "4", "memory": "8Gi", "ephemeral-storage": "14Gi" });
    assert_eq!(
        as_sent(job),
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": { "name": name, "namespace": namespace, "labels": labels },
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": 435_600,
                "ttlSecondsAfterFinished": 300,
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "containers": [{
                            "name": "runner",
                            "image": server::settings::DEFAULT_RUNNER_IMAGE,
                            "command": ["/home/runner/run.sh"],
                            "env": [{
                                "name": "ACTIONS_RUNNER_INPUT_JITCONFIG",
                                "valueFrom": { "secretKeyRef": { "name": name, "key": "jitconfig", "optional": false } },
                            }],
                            "resources": { "requests": resources, "limits": resources },
                        }],
                    },
                },
            },
        })
    );
    let secret = app
        .kubernetes
        .objects("secrets")
        .into_iter()
        .find(|s| s["metadata"]["name"] == name.as_str())
        .expect("the runner's Secret");
    assert_eq!(secret["metadata"]["ownerReferences"][0]["kind"], "Job");
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["name"],
        name.as_str()
    );
    assert_eq!(secret["type"], "Opaque");
    assert!(
        secret["data"]["jitconfig"].is_string(),
        "the JIT configuration only in the Secret"
    );
    let quota = app.kubernetes.objects("resourcequotas").remove(0);
    assert_eq!(quota["metadata"]["namespace"], namespace.as_str());
    let policy = as_sent(app.kubernetes.objects("networkpolicies").remove(0));
    assert_eq!(
        policy["spec"],
        json!({ "podSelector": {}, "policyTypes": ["Ingress"] }),
        "no ingress at all"
    );

    // The runner took the job, ran it, and is gone: from GitHub and from Kubernetes.
    eventually_within(60, "the job completed and was metered", || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT metered FROM github_jobs WHERE github_job_id = $1",
            )
            .bind(id)
            .fetch_optional(&db)
            .await
            .expect("job")
                == Some(true)
        }
    })
    .await;
    let runner_name: Option<String> =
        sqlx::query_scalar("SELECT runner_name FROM usage_records WHERE workspace_id = $1")
            .bind(customer.workspace_id)
            .fetch_one(&db)
            .await
            .expect("usage record");
    assert_eq!(
        runner_name.as_deref(),
        Some(name.as_str()),
        "usage keeps the runner"
    );
    let (_, metrics) = app.get("/metrics").await;
    for line in [
        "runner_provision_seconds_count 1",
        "runner_online_seconds_count 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    eventually_within(30, "the runner was removed everywhere", || {
        let db = db.clone();
        let kubernetes = app.kubernetes.clone();
        let github = app.github.clone();
        async move {
            let state: String = sqlx::query_scalar("SELECT state FROM runners")
                .fetch_one(&db)
                .await
                .expect("runner");
            state == "deleted"
                && kubernetes.objects("jobs").is_empty()
                && kubernetes.objects("secrets").is_empty()
                && kubernetes.objects("pods").is_empty()
                && github.runners().is_empty()
        }
    })
    .await;
    assert_eq!(
        count(&db, SLOTS, customer.workspace_id).await,
        0,
        "slot released"
    );
    let page = jobs_page(&app, &customer).await;
    assert_eq!(page["jobs"][0]["status"], "succeeded");
    assert_eq!(page["jobs"][0]["runner"], name.as_str());
}

#[sqlx::test(migrations = "../migrations")]
async fn fifty_jobs_with_forty_slots_run_exactly_forty_at_once_and_all_finish(db: PgPool) {
    let app = busy_server(db.clone(), &[]).await;
    let customer = customer(&app, "fifty-org").await;
    // Watch the whole time: never more than 40 running or holding a slot. The watcher publishes
    // the most it has seen (running, slots).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (most_seen, mut seen) = tokio::sync::watch::channel((0, 0));
    let watcher = {
        let db = db.clone();
        let workspace_id = customer.workspace_id;
        tokio::spawn(async move {
            while !*stopped.borrow() {
                let running = count(&db, IN_PROGRESS, workspace_id).await;
                let slots = count(&db, SLOTS, workspace_id).await;
                most_seen.send_modify(|most| *most = (most.0.max(running), most.1.max(slots)));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            *most_seen.borrow()
        })
    };
    // The jobs run until the test lets them finish.
    app.github
        .queue_sample_workflow(
            customer.installation_id,
            &customer.repository,
            "tenki-standard-2c",
            50,
            Duration::from_secs(600),
        )
        .await;
    let running_and_waiting = async |running: i64, waiting: i64| {
        let workspace_id = customer.workspace_id;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while tokio::time::Instant::now() < deadline {
            if count(&db, IN_PROGRESS, workspace_id).await == running
                && count(&db, WAITING, workspace_id).await == waiting
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "not within 120 s: {running} running and {waiting} waiting; {}",
            jobs_and_runners(&db, workspace_id).await
        );
    };
    running_and_waiting(40, 10).await;
    let reasons: Vec<String> = sqlx::query_scalar(
        "SELECT admission_reason FROM github_jobs WHERE admission = 'waiting' ORDER BY created_at, github_job_id",
    )
    .fetch_all(&db)
    .await
    .expect("reasons");
    let expected: Vec<String> = [
        "1st", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th", "9th", "10th",
    ]
    .iter()
    .map(|n| format!("waiting for a slot ({n} in line)"))
    .collect();
    assert_eq!(reasons, expected);
    let overview = app.call(&customer.browser, "overview", &[]).await;
    let overview: Value = overview.json().await.expect("JSON");
    assert_eq!(
        overview["jobs_now"],
        json!([["running", 40], ["waiting for a slot", 10]])
    );
    let page = jobs_page(&app, &customer).await;
    let waiting = page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|job| job["status"] == "waiting")
        .count();
    assert_eq!(waiting, 10, "the Jobs page says which wait");

    // The watcher samples too: it must have seen the 40 before any finishes, or its most would
    // say nothing about the cap.
    tokio::time::timeout(
        Duration::from_secs(30),
        seen.wait_for(|&(running, slots)| running >= 40 && slots >= 40),
    )
    .await
    .expect("the watcher saw 40 running")
    .expect("watcher alive");
    // The first 40 finish; the last 10 take their slots.
    app.github.finish_running_jobs();
    running_and_waiting(10, 0).await;
    app.github.finish_running_jobs();
    eventually_within(120, "all 50 finished, metered, every slot released", || {
        let db = db.clone();
        let workspace_id = customer.workspace_id;
        async move {
            count(&db, COMPLETED, workspace_id).await == 50
                && count(&db, SLOTS, workspace_id).await == 0
                && count(
                    &db,
                    "SELECT count(*) FROM usage_records WHERE workspace_id = $1",
                    workspace_id,
                )
                .await
                    == 50
        }
    })
    .await;
    let _ = stop.send(true);
    let (most_running, most_slots) = watcher.await.expect("watcher");
    assert_eq!(most_running, 40, "never more than 40 running");
    assert_eq!(most_slots, 40, "never more than 40 slots held");
}

#[sqlx::test(migrations = "../migrations")]
async fn ten_bought_slots_give_50_x64_and_five_give_45_macos_at_once(db: PgPool) {
    let app = busy_server(db.clone(), &[]).await;
    let customer = customer(&app, "slots-org").await;
    support::set_slots(&db, &customer.email, "x64", 10)
        .await
        .expect("x64 slots");
    support::set_slots(&db, &customer.email, "macos", 5)
        .await
        .expect("macOS slots");
    support::set_addon(&db, &customer.email, "macos", true, Utc::now())
        .await
        .expect("macOS add-on");
    for _ in 0..60 {
        queue_untaken_job(
            &app,
            &customer,
            "tenki-standard-2c",
            chrono::Duration::zero(),
        )
        .await;
    }
    for _ in 0..50 {
        queue_untaken_job(
            &app,
            &customer,
            "tenki-macos-m4-6c",
            chrono::Duration::zero(),
        )
        .await;
    }
    let held = |class: &'static str| {
        let db = db.clone();
        let workspace_id = customer.workspace_id;
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM runner_slots WHERE workspace_id = $1 AND runner_class = $2",
            )
            .bind(workspace_id)
            .bind(class)
            .fetch_one(&db)
            .await
            .expect("count")
        }
    };
    eventually_within(
        90,
        "50 x64 and 45 macOS jobs admitted, the rest waiting",
        || {
            let db = db.clone();
            let workspace_id = customer.workspace_id;
            async move {
                held("x64").await == 50
                    && held("macos").await == 45
                    && count(&db, WAITING, workspace_id).await == 15
            }
        },
    )
    .await;
}

#[sqlx::test(migrations = "../migrations")]
async fn no_free_minutes_and_no_card_blocks_and_a_card_releases_the_job(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "card-org").await;
    use_up_free_minutes(&app, customer.workspace_id).await;
    let id = app
        .github
        .queue_sample_workflow(
            customer.installation_id,
            &customer.repository,
            "tenki-standard-2c",
            1,
            Duration::from_secs(2),
        )
        .await[0];
    eventually_within(30, "blocked for free minutes", || {
        let db = db.clone();
        async move { job_admission(&db, id).await.1 == "blocked" }
    })
    .await;
    let page = jobs_page(&app, &customer).await;
    assert_eq!(page["jobs"][0]["status"], "blocked");
    assert_eq!(
        page["jobs"][0]["waiting_reason"],
        "blocked: free minutes used up — add a card"
    );
    assert!(
        app.kubernetes.objects("jobs").is_empty(),
        "no runner started"
    );

    support::set_card(&db, &customer.email, true)
        .await
        .expect("card recorded");
    eventually_within(60, "released, run and billed", || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT metered FROM github_jobs WHERE github_job_id = $1",
            )
            .bind(id)
            .fetch_optional(&db)
            .await
            .expect("job")
                == Some(true)
        }
    })
    .await;
    let amount: i64 = sqlx::query_scalar("SELECT amount FROM usage_records WHERE job_key = $1")
        .bind(format!("{id}:1"))
        .fetch_one(&db)
        .await
        .expect("usage");
    assert_eq!(amount, 300_000, "one paid minute on 2c: $0.003");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_running_job_finishes_when_free_minutes_run_out_mid_job(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "midjob-org").await;
    let id = app
        .github
        .queue_sample_workflow(
            customer.installation_id,
            &customer.repository,
            "tenki-standard-2c",
            1,
            Duration::from_secs(4),
        )
        .await[0];
    eventually_within(30, "running", || {
        let db = db.clone();
        async move { job_admission(&db, id).await.0 == "in_progress" }
    })
    .await;
    use_up_free_minutes(&app, customer.workspace_id).await;
    eventually_within(60, "finished and billed", || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT metered FROM github_jobs WHERE github_job_id = $1",
            )
            .bind(id)
            .fetch_optional(&db)
            .await
            .expect("job")
                == Some(true)
        }
    })
    .await;
    let page = jobs_page(&app, &customer).await;
    assert_eq!(page["jobs"][0]["status"], "succeeded");
}

#[sqlx::test(migrations = "../migrations")]
async fn macos_needs_the_add_on_and_starts_once_it_is_on(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "mac-org").await;
    let id = app
        .github
        .queue_sample_workflow(
            customer.installation_id,
            &customer.repository,
            "Tenki-MacOS-M4-6c",
            1,
            Duration::from_secs(2),
        )
        .await[0];
    eventually_within(30, "blocked for the add-on", || {
        let db = db.clone();
        async move {
            job_admission(&db, id).await
                == (
                    "queued".to_owned(),
                    "blocked".to_owned(),
                    Some("blocked: macOS needs the macOS add-on".to_owned()),
                )
        }
    })
    .await;
    support::set_addon(&db, &customer.email, "macos", true, Utc::now())
        .await
        .expect("add-on on");
    eventually_within(60, "released and run", || {
        let db = db.clone();
        async move { job_admission(&db, id).await.0 == "completed" }
    })
    .await;
    let page = jobs_page(&app, &customer).await;
    assert_eq!(page["jobs"][0]["status"], "succeeded");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_boosted_workspace_starts_first_when_capacity_is_short_and_aging_prevents_starvation(
    db: PgPool,
) {
    // Room for one 4-vCPU runner on the whole platform.
    let app = TestApp::spawn_with(db.clone(), settings(&[("TENKI_CAPACITY_X64_VCPUS", "4")])).await;
    let plain = customer(&app, "plain-org").await;
    let boosted = customer(&app, "boost-org").await;
    support::set_addon(&db, &boosted.email, "priority-boost", true, Utc::now())
        .await
        .expect("boost on");
    let label = "tenki-standard-4c";
    let state_of = |id: i64| {
        let db = db.clone();
        async move { job_admission(&db, id).await.1 }
    };
    // A job holds the only room while the others queue.
    let blocker = queue_untaken_job(&app, &plain, label, chrono::Duration::zero()).await;
    eventually_within(30, "the first job admitted", || {
        let state = state_of(blocker);
        async move { state.await == "admitted" }
    })
    .await;
    // The plain job waited 2 minutes, the boosted one 1: the boost goes first.
    let plain_job = queue_untaken_job(&app, &plain, label, chrono::Duration::minutes(2)).await;
    let boosted_job = queue_untaken_job(&app, &boosted, label, chrono::Duration::minutes(1)).await;
    let both_waiting = |a: i64, b: i64| {
        move || {
            let (a, b) = (state_of(a), state_of(b));
            async move { a.await == "waiting" && b.await == "waiting" }
        }
    };
    eventually_within(
        30,
        "both waiting for capacity",
        both_waiting(plain_job, boosted_job),
    )
    .await;
    cancel_waiting_job(&app, &plain, blocker, label).await;
    eventually_within(30, "the boosted job admitted", || {
        let state = state_of(boosted_job);
        async move { state.await == "admitted" }
    })
    .await;
    assert_eq!(
        job_admission(&db, plain_job).await,
        (
            "queued".to_owned(),
            "waiting".to_owned(),
            Some("waiting for a runner: Tenki's capacity is busy (1st in line)".to_owned())
        )
    );
    // A second boosted job, queued now, still goes first (5 minutes' head start)…
    let second_boosted = queue_untaken_job(&app, &boosted, label, chrono::Duration::zero()).await;
    eventually_within(
        30,
        "the second boosted job waiting",
        both_waiting(plain_job, second_boosted),
    )
    .await;
    cancel_waiting_job(&app, &boosted, boosted_job, label).await;
    eventually_within(30, "the next boosted job admitted", || {
        let state = state_of(second_boosted);
        async move { state.await == "admitted" }
    })
    .await;
    assert_eq!(job_admission(&db, plain_job).await.1, "waiting");
    // …but a plain job that has waited longer than the head start is not overtaken.
    let starving = queue_untaken_job(&app, &plain, label, chrono::Duration::minutes(9)).await;
    let third_boosted =
        queue_untaken_job(&app, &boosted, label, chrono::Duration::minutes(1)).await;
    eventually_within(30, "both waiting", both_waiting(starving, third_boosted)).await;
    cancel_waiting_job(&app, &boosted, second_boosted, label).await;
    eventually_within(30, "the long-waiting plain job admitted", || {
        let state = state_of(starving);
        async move { state.await == "admitted" }
    })
    .await;
    assert_eq!(job_admission(&db, third_boosted).await.1, "waiting");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_job_cancelled_while_waiting_releases_its_place_and_is_never_billed(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "cancel-org").await;
    let label = "tenki-standard-2c";
    let id = queue_untaken_job(&app, &customer, label, chrono::Duration::zero()).await;
    eventually_within(30, "admitted with a runner starting", || {
        let db = db.clone();
        async move {
            let starting: i64 =
                sqlx::query_scalar("SELECT count(*) FROM runners WHERE state = 'starting'")
                    .fetch_one(&db)
                    .await
                    .expect("count");
            job_admission(&db, id).await.1 == "admitted" && starting == 1
        }
    })
    .await;
    cancel_waiting_job(&app, &customer, id, label).await;
    eventually_within(30, "slot released and the unused runner removed", || {
        let db = db.clone();
        let kubernetes = app.kubernetes.clone();
        let workspace_id = customer.workspace_id;
        async move {
            count(&db, SLOTS, workspace_id).await == 0 && kubernetes.objects("jobs").is_empty()
        }
    })
    .await;
    let (status, admission, _) = job_admission(&db, id).await;
    assert_eq!((status.as_str(), admission.as_str()), ("completed", "done"));
    let records: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_records")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(records, 0, "never billed");
}

#[sqlx::test(migrations = "../migrations")]
async fn the_reaper_removes_an_idle_runner_after_five_minutes_and_never_a_busy_one(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "reap-org").await;
    // A job GitHub gives to no runner: its runner waits idle.
    untaken_job_once_its_runner_is(&app, &customer, "starting").await;
    let soon = reaper_pass(&app, Utc::now() + chrono::Duration::minutes(4)).await;
    assert!(soon.idle_removed.is_empty(), "{soon:?}");
    let later = reaper_pass(&app, Utc::now() + chrono::Duration::minutes(6)).await;
    assert_eq!(later.idle_removed.len(), 1, "{later:?}");
    assert!(
        app.github
            .runners()
            .iter()
            .all(|(name, _)| *name != later.idle_removed[0]),
        "deregistered"
    );
    assert!(
        app.kubernetes
            .objects("jobs")
            .iter()
            .all(|j| j["metadata"]["name"] != later.idle_removed[0].as_str()),
        "its objects deleted"
    );

    // A runner that took a job whose `in_progress` delivery has not arrived yet looks idle to
    // Tenki; GitHub says it is busy, so it stays.
    let busy = customer_with_running_job_unseen(&app).await;
    let report = reaper_pass(&app, Utc::now() + chrono::Duration::minutes(6)).await;
    assert!(report.busy_kept.contains(&busy), "{report:?}");
    assert!(!report.idle_removed.contains(&busy));
    app.github.set_intake_unreachable(false);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_finished_runner_whose_removal_request_was_lost_is_removed_by_the_reaper(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "lost-removal-org").await;
    let (id, runner) = untaken_job_once_its_runner_is(&app, &customer, "starting").await;
    // The job completes on it and the server dies before its removal loop enqueued anything:
    // the completion's transaction alone, as the delivery's processing commits it.
    let mut tx = db.begin().await.expect("begin");
    let completion = tenki_core::runners::job_completed(
        &mut tx,
        customer.workspace_id,
        JobKey {
            github_job_id: id,
            run_attempt: 1,
        },
        Some(&runner),
        Utc::now(),
    )
    .await
    .expect("completed");
    tx.commit().await.expect("commit");
    assert_eq!(
        completion.to_remove,
        [(runner.clone(), tenki_core::runners::Removal::Finished)]
    );
    assert_eq!(
        app.kubernetes.objects("jobs").len(),
        1,
        "nothing removed yet"
    );

    // The pass the minute cron runs (called here; a cron tick may have run it just before).
    let report = reaper_pass(&app, Utc::now()).await;
    assert!(
        app.kubernetes.objects("jobs").is_empty(),
        "its objects deleted: {report:?}"
    );
    assert!(
        app.github.runners().iter().all(|(name, _)| *name != runner),
        "deregistered"
    );
    let state: String = sqlx::query_scalar("SELECT state FROM runners WHERE name = $1")
        .bind(&runner)
        .fetch_one(&db)
        .await
        .expect("runner");
    assert_eq!(state, "deleted");
}

/// A customer whose job runs on a Tenki runner while GitHub cannot reach Tenki (the runner
/// stays "starting" in Tenki's records): returns the runner's name.
async fn customer_with_running_job_unseen(app: &TestApp) -> String {
    let customer = customer(app, "busy-org").await;
    app.github
        .queue_sample_workflow(
            customer.installation_id,
            &customer.repository,
            "tenki-standard-8c",
            1,
            Duration::from_secs(60),
        )
        .await;
    // Tenki has stored the `queued` delivery; from here GitHub's deliveries fail, so the
    // `in_progress` one never arrives however soon the runner takes the job.
    app.github.set_intake_unreachable(true);
    eventually_within(30, "a runner starting", || {
        let db = app.core.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM runners WHERE label = 'tenki-standard-8c' AND state = 'starting'",
            )
            .fetch_one(&db)
            .await
            .expect("count")
                == 1
        }
    })
    .await;
    eventually_within(30, "GitHub says the runner is busy", || {
        let github = app.github.clone();
        async move { github.runners().iter().any(|(_, busy)| *busy) }
    })
    .await;
    sqlx::query_scalar("SELECT name FROM runners WHERE label = 'tenki-standard-8c'")
        .fetch_one(&app.core.db)
        .await
        .expect("runner")
}

#[sqlx::test(migrations = "../migrations")]
async fn a_pod_that_cannot_start_is_retried_then_the_job_says_why(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "pull-org").await;
    app.kubernetes.set_fail_image_pulls(true);
    let id = queue_untaken_job(
        &app,
        &customer,
        "tenki-standard-2c",
        chrono::Duration::zero(),
    )
    .await;
    for attempt in 1..=3 {
        eventually_within(30, "a runner's pod failing to pull its image", || {
            let kubernetes = app.kubernetes.clone();
            async move {
                kubernetes.objects("pods").iter().any(|p| {
                    p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                        == "ErrImagePull"
                })
            }
        })
        .await;
        reaper_pass(&app, Utc::now()).await;
        // This pass, or the every-minute one, saw the failure.
        eventually_within(30, "the failure counted", || {
            let db = db.clone();
            async move {
                sqlx::query_scalar::<_, i32>(
                    "SELECT runner_failures FROM github_jobs WHERE github_job_id = $1",
                )
                .bind(id)
                .fetch_one(&db)
                .await
                .expect("job")
                    == attempt
            }
        })
        .await;
        // The next runner is due after a back-off: bring it forward instead of waiting.
        sqlx::query(
            "UPDATE graphile_worker._private_jobs SET run_at = now() WHERE key LIKE 'provision:%'",
        )
        .execute(&db)
        .await
        .expect("no waiting");
        eventually_within(30, "the failed runner removed", || {
            let kubernetes = app.kubernetes.clone();
            async move {
                !kubernetes.objects("pods").iter().any(|p| {
                    p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                        == "ErrImagePull"
                        && p["metadata"]["labels"]["tenki.dev/runner"]
                            .as_str()
                            .is_some_and(|n| n.ends_with(&format!("-{attempt}")))
                })
            }
        })
        .await;
    }
    let (status, admission, reason) = job_admission(&db, id).await;
    assert_eq!((status.as_str(), admission.as_str()), ("queued", "done"));
    let reason = reason.expect("a reason");
    assert!(
        reason.starts_with("could not start a runner: the runner image could not be pulled"),
        "{reason}"
    );
    assert_eq!(
        count(&db, SLOTS, customer.workspace_id).await,
        0,
        "slot released"
    );
    let page = jobs_page(&app, &customer).await;
    assert_eq!(page["jobs"][0]["waiting_reason"], reason.as_str());
}

#[sqlx::test(migrations = "../migrations")]
async fn an_orphaned_runner_found_after_a_restart_is_removed(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let workspace_id = Uuid::new_v4();
    let namespace = format!("tenki-ws-{}", workspace_id.simple());
    app.kubernetes
        .insert(
            "v1",
            "namespaces",
            json!({ "metadata": { "name": namespace } }),
        )
        .expect("namespace");
    app.kubernetes
        .insert(
            "batch/v1",
            "jobs",
            json!({ "metadata": { "name": "tenki-orphan-1-1-1", "namespace": namespace,
                    "labels": { "app.kubernetes.io/managed-by": "tenki", "tenki.dev/runner": "tenki-orphan-1-1-1" } },
                    "spec": { "template": { "spec": { "containers": [] } } } }),
        )
        .expect("orphan");
    let report = reaper_pass(&app, Utc::now()).await;
    assert_eq!(report.orphans_removed, ["tenki-orphan-1-1-1"]);
    assert!(app.kubernetes.objects("jobs").is_empty());
}

#[sqlx::test(migrations = "../migrations")]
async fn a_runner_name_github_already_knows_is_replaced_not_failed(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "conflict-org").await;
    app.github.set_runner_names_taken(true);
    let id = app
        .github
        .queue_sample_workflow(
            customer.installation_id,
            &customer.repository,
            "tenki-standard-2c",
            1,
            Duration::from_secs(1),
        )
        .await[0];
    eventually_within(60, "the job ran despite the 409", || {
        let db = db.clone();
        async move { job_admission(&db, id).await.0 == "completed" }
    })
    .await;
    let runners: i64 = sqlx::query_scalar("SELECT count(*) FROM runners")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(runners, 1, "the same runner name, registered again");
}

#[sqlx::test(migrations = "../migrations")]
async fn provisioning_cut_off_midway_is_finished_later_and_leaks_no_slot(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "crash-org").await;
    // Kubernetes is down: the runner is registered on GitHub and recorded, and its objects are
    // never created, as when the process dies between the two.
    app.kubernetes.set_unavailable(true);
    let id = app
        .github
        .queue_sample_workflow(
            customer.installation_id,
            &customer.repository,
            "tenki-standard-2c",
            1,
            Duration::from_secs(1),
        )
        .await[0];
    eventually_within(30, "a runner registered but not started", || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM runners WHERE state = 'requested'")
                .fetch_one(&db)
                .await
                .expect("count")
                == 1
        }
    })
    .await;
    assert_eq!(
        count(&db, SLOTS, customer.workspace_id).await,
        1,
        "the slot is held"
    );
    app.kubernetes.set_unavailable(false);
    // The reconcile loop finishes what was cut off (the retried task may get there first). Its
    // clock is past the one-minute grace of a runner asked for, and short of the two minutes after
    // which a Job the retried task has just created would count as one Kubernetes gave no pod.
    let report = reaper_pass(&app, Utc::now() + chrono::Duration::seconds(90)).await;
    assert!(report.failed.is_empty(), "{report:?}");
    eventually_within(60, "the job ran", || {
        let db = db.clone();
        async move { job_admission(&db, id).await.0 == "completed" }
    })
    .await;
    eventually_within(30, "no slot left", || {
        let db = db.clone();
        let workspace_id = customer.workspace_id;
        async move { count(&db, SLOTS, workspace_id).await == 0 }
    })
    .await;
}

/// GitHub sends job `id`'s `status` (`in_progress` or `completed`) on `runner`.
async fn job_on_runner(
    app: &TestApp,
    customer: &Customer,
    id: i64,
    status: &'static str,
    runner: &str,
) {
    let mut job = SampleJob::queued("tenki-standard-2c");
    job.id = id;
    job.status = status;
    job.runner_name = Some(runner.to_owned());
    job.started_at = Some(Utc::now() - chrono::Duration::seconds(5));
    if status == "completed" {
        job.completed_at = Some(Utc::now());
        job.conclusion = Some("success");
    }
    let body = app
        .github
        .workflow_job_body(customer.installation_id, &customer.repository, &job);
    assert_eq!(app.github.deliver("workflow_job", body).await, 202);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_job_whose_runner_another_job_took_gets_that_jobs_runner_at_once(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "robbed-org").await;
    let (robbed, robbed_runner) = untaken_job_once_its_runner_is(&app, &customer, "starting").await;
    let (taker, takers_runner) = untaken_job_once_its_runner_is(&app, &customer, "starting").await;

    // GitHub gives the second job to the first job's runner.
    job_on_runner(&app, &customer, taker, "in_progress", &robbed_runner).await;
    handed_over(&db, robbed, &takers_runner, 30).await;
    job_on_runner(&app, &customer, taker, "completed", &robbed_runner).await;
    eventually_within(30, "the runner that ran the second job removed", || {
        let kubernetes = app.kubernetes.clone();
        let robbed_runner = robbed_runner.clone();
        async move {
            kubernetes
                .objects("jobs")
                .iter()
                .all(|j| j["metadata"]["name"] != robbed_runner.as_str())
        }
    })
    .await;
    // The first job keeps the runner it was handed: still on Kubernetes, and past the grace of a
    // runner asked for, the reaper finds nothing to ask for again.
    assert_eq!(
        unused_runners_of(&db, robbed).await,
        [(takers_runner.clone(), "starting".to_owned())]
    );
    assert!(
        app.kubernetes
            .objects("jobs")
            .iter()
            .any(|j| j["metadata"]["name"] == takers_runner.as_str()),
        "the handed runner is still there"
    );
    let report = reaper_pass(&app, Utc::now() + chrono::Duration::seconds(90)).await;
    assert_eq!(report.provisioning_requested, 0, "{report:?}");
    assert_eq!(job_admission(&db, robbed).await.1, "admitted");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_job_whose_runner_was_taken_before_the_takers_runner_started_gets_one_started(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "robbed-early-org").await;
    let (robbed, robbed_runner) = untaken_job_once_its_runner_is(&app, &customer, "starting").await;
    // Kubernetes is down: the second job's runner is asked for and never started.
    app.kubernetes.set_unavailable(true);
    let (taker, takers_runner) = untaken_job_once_its_runner_is(&app, &customer, "requested").await;

    // GitHub gives the second job to the first job's runner; the second job's provisioning stops
    // (its job runs), and the first job's starts the runner that was asked for.
    job_on_runner(&app, &customer, taker, "in_progress", &robbed_runner).await;
    app.kubernetes.set_unavailable(false);
    handed_over(&db, robbed, &takers_runner, 60).await;
    assert_eq!(unused_runners_of(&db, taker).await, []);
    assert_eq!(
        app.kubernetes.objects("jobs").len(),
        2,
        "the taken runner and the handed one"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_spare_runner_is_handed_to_the_next_job_instead_of_asking_for_one_more(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "spare-org").await;
    let (cancelled, spare) = untaken_job_once_its_runner_is(&app, &customer, "starting").await;
    // GitHub refuses Tenki's calls for a while, so the cancelled job's runner cannot be removed
    // yet: it is online and idle, and GitHub would give it any queued job of its label.
    app.github
        .set_rate_limited_until(Some(Utc::now() + chrono::Duration::minutes(5)));
    cancel_waiting_job(&app, &customer, cancelled, "tenki-standard-2c").await;
    let next = queue_untaken_job(
        &app,
        &customer,
        "tenki-standard-2c",
        chrono::Duration::zero(),
    )
    .await;
    handed_over(&db, next, &spare, 30).await;
    // No second runner: one idle runner for one admitted job.
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM runners WHERE state NOT IN ('deleted', 'finished')",
    )
    .fetch_one(&db)
    .await
    .expect("runners");
    assert_eq!(live, 1, "{:?}", unused_runners_of(&db, next).await);
    app.github.set_rate_limited_until(None);
}

#[sqlx::test(migrations = "../migrations")]
async fn kubectl_style_discovery_and_listing_answer_like_kubernetes(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let base = format!("{}/sandbox/kubernetes", app.address);
    let (status, body) = app.get("/sandbox/kubernetes/api").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON")["versions"],
        json!(["v1"])
    );
    let groups: Value = app
        .client
        .get(format!("{base}/apis"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, ["batch", "networking.k8s.io"]);
    let pods: Value = app
        .client
        .get(format!("{base}/api/v1/pods"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(pods["kind"], "PodList");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_runner_github_never_registers_ends_with_a_reason_after_three_tries(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let mut customer = customer(&app, "gone-org").await;
    // An installation Tenki knows and GitHub no longer does: every registration is refused.
    customer.installation_id = 987_654_321;
    sqlx::query(
        "INSERT INTO github_installations VALUES ($1, 'gone-org', 'Organization', $2, 'active', now())",
    )
    .bind(customer.installation_id)
    .bind(customer.workspace_id)
    .execute(&db)
    .await
    .expect("installation");
    let id = queue_untaken_job(
        &app,
        &customer,
        "tenki-standard-2c",
        chrono::Duration::zero(),
    )
    .await;
    for attempt in 1..=3 {
        eventually_within(30, "a runner asked for", || {
            let db = db.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM runners WHERE state = 'requested'",
                )
                .fetch_one(&db)
                .await
                .expect("count")
                    == 1
            }
        })
        .await;
        reaper_pass(&app, Utc::now() + chrono::Duration::minutes(11)).await;
        let failures: i32 =
            sqlx::query_scalar("SELECT runner_failures FROM github_jobs WHERE github_job_id = $1")
                .bind(id)
                .fetch_one(&db)
                .await
                .expect("job");
        assert_eq!(failures, attempt);
        sqlx::query(
            "UPDATE graphile_worker._private_jobs SET run_at = now() WHERE key LIKE 'provision:%'",
        )
        .execute(&db)
        .await
        .expect("no waiting");
    }
    let (status, admission, reason) = job_admission(&db, id).await;
    assert_eq!((status.as_str(), admission.as_str()), ("queued", "done"));
    assert_eq!(
        reason.as_deref(),
        Some(
            "could not start a runner: it could not be registered on GitHub and started within 10 minutes"
        )
    );
    assert_eq!(count(&db, SLOTS, customer.workspace_id).await, 0);
}
