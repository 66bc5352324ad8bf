//! GitHub webhook intake and the job lifecycle (SPEC §4), fed with the real payloads of
//! `fixtures/github`, against real PostgreSQL, TigerBeetle and the durable queue.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use rand::seq::SliceRandom;
use serde_json::{Value, json};
use sqlx::PgPool;
use tenki_core::github::intake::sign;
use uuid::Uuid;

use crate::harness::TestApp;

const SECRET: &[u8] = server::settings::SANDBOX_WEBHOOK_SECRET.as_bytes();

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/github")
}

pub(crate) fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join(name)).expect("fixture");
    serde_json::from_str(&text).expect("JSON")
}

/// The event name of a fixture file: `workflow_job.queued.json` → `workflow_job`.
fn event_of(file: &str) -> &str {
    file.split('.').next().expect("name")
}

async fn deliver(
    app: &TestApp,
    event: &str,
    delivery_id: &str,
    body: &[u8],
    signature: Option<String>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/webhooks/github", app.address))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery_id)
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    request.send().await.expect("delivered")
}

/// Posts `body` signed with the sandbox secret, as GitHub would.
pub(crate) async fn deliver_signed(
    app: &TestApp,
    event: &str,
    delivery_id: &str,
    body: &[u8],
) -> reqwest::Response {
    deliver(app, event, delivery_id, body, Some(sign(SECRET, body))).await
}

async fn stored(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM github_deliveries")
        .fetch_one(db)
        .await
        .expect("count")
}

/// Waits (bounded) until no delivery is waiting for the queue.
pub(crate) async fn wait_until_processed(db: &PgPool) {
    for _ in 0..600 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM github_deliveries WHERE status IN ('queued', 'failed')",
        )
        .fetch_one(db)
        .await
        .expect("count");
        if waiting == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stuck: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT delivery_id, error FROM github_deliveries WHERE status <> 'processed' AND status <> 'ignored' LIMIT 5")
            .fetch_all(db)
            .await
            .expect("query");
    panic!("deliveries not processed within 60 s: {stuck:?}");
}

#[sqlx::test(migrations = "../migrations")]
async fn every_fixture_is_accepted_when_signed_and_refused_when_not(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let mut files: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    for (n, file) in files.iter().enumerate() {
        let body = std::fs::read(fixtures_dir().join(file)).expect("read");
        let event = event_of(file);
        let wrong = deliver(
            &app,
            event,
            &format!("bad-{n}"),
            &body,
            Some(sign(b"not the secret", &body)),
        )
        .await;
        assert_eq!(wrong.status(), 401, "{file}: wrong signature");
        let missing = deliver(&app, event, &format!("none-{n}"), &body, None).await;
        assert_eq!(missing.status(), 401, "{file}: no signature");
        assert_eq!(
            stored(&db).await,
            i64::try_from(n).expect("small"),
            "{file}: nothing stored when refused"
        );

        let accepted = deliver_signed(&app, event, &format!("ok-{n}"), &body).await;
        assert_eq!(accepted.status(), 202, "{file}");
        let again = deliver_signed(&app, event, &format!("ok-{n}"), &body).await;
        assert_eq!(
            again.status(),
            200,
            "{file}: the same delivery twice is stored once"
        );
    }
    assert_eq!(
        stored(&db).await,
        i64::try_from(files.len()).expect("small")
    );
    wait_until_processed(&db).await;

    // As documented: workflow_run and ping are ignored; the fixtures' jobs carry no Tenki label.
    let ignored: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT event FROM github_deliveries WHERE status = 'ignored' ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .expect("query");
    assert_eq!(ignored, ["ping", "workflow_run"]);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM github_jobs")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(
        jobs, 0,
        "ubuntu-latest and self-hosted jobs are not Tenki's"
    );
    // Installations: created, then suspended/unsuspended, deleted.
    let installations: Vec<(i64, String)> =
        sqlx::query_as("SELECT installation_id, state FROM github_installations ORDER BY 1")
            .fetch_all(&db)
            .await
            .expect("query");
    assert!(
        installations.contains(&(957_387, "active".to_owned())),
        "{installations:?}"
    );
    assert!(
        installations.contains(&(2, "deleted".to_owned())),
        "{installations:?}"
    );
    let repositories: i64 =
        sqlx::query_scalar("SELECT count(*) FROM github_repositories WHERE NOT removed")
            .fetch_one(&db)
            .await
            .expect("count");
    assert!(repositories > 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn malformed_json_missing_headers_and_oversized_bodies_store_nothing(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let body = b"{not json";
    let response = deliver_signed(&app, "workflow_job", "malformed", body).await;
    assert_eq!(response.status(), 400);
    let body = br#"{"action":"queued"}"#;
    let no_id = app
        .client
        .post(format!("{}/webhooks/github", app.address))
        .header("x-github-event", "workflow_job")
        .header("x-hub-signature-256", sign(SECRET, body))
        .body(body.to_vec())
        .send()
        .await
        .expect("sent");
    assert_eq!(no_id.status(), 400);
    let huge = vec![b' '; 26 * 1024 * 1024];
    let response = deliver_signed(&app, "workflow_job", "huge", &huge).await;
    assert_eq!(response.status(), 413);
    assert_eq!(stored(&db).await, 0);
}

/// A `workflow_job` delivery for job `id` in `status`, built from the real fixture.
pub(crate) fn job_delivery(
    installation_id: i64,
    id: i64,
    status: &str,
    label: &str,
    start: chrono::DateTime<Utc>,
    minutes: i64,
) -> Value {
    let mut body = fixture(match status {
        "queued" => "workflow_job.queued.json",
        "in_progress" => "workflow_job.in_progress.json",
        _ => "workflow_job.completed.success.with-organization.json",
    });
    body["action"] = json!(status);
    body["installation"] = json!({ "id": installation_id });
    let job = &mut body["workflow_job"];
    job["id"] = json!(id);
    job["run_id"] = json!(id / 10);
    job["run_attempt"] = json!(1);
    job["status"] = json!(status);
    job["labels"] = json!([label]);
    job["created_at"] = json!((start - chrono::Duration::seconds(20)).to_rfc3339());
    job["started_at"] = json!(start.to_rfc3339());
    job["completed_at"] = if status == "completed" {
        json!(
            (start + chrono::Duration::minutes(minutes) - chrono::Duration::seconds(30))
                .to_rfc3339()
        )
    } else {
        Value::Null
    };
    job["conclusion"] = if status == "completed" {
        json!("success")
    } else {
        Value::Null
    };
    if status != "queued" {
        job["runner_name"] = json!(crate::harness::TEST_RUNNER);
    }
    body
}

/// A workspace signed up with the built-in identity, its installation linked and
/// [`TEST_RUNNER`](crate::harness::TEST_RUNNER) recorded as its runner: without a browser.
pub(crate) async fn linked_installation(
    db: &PgPool,
    ledger: &tenki_core::ledger::Ledger,
) -> (Uuid, i64) {
    let workspace_id = tenki_core::identity::sign_up(
        db,
        ledger,
        &format!("{}@hooks.test", Uuid::new_v4()),
        "a long enough password",
        "Hooks",
        &tenki_core::identity::SignUpClient::LOCAL,
        Utc::now(),
    )
    .await
    .expect("sign-up")
    .workspace_id;
    let installation_id = i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000).expect("fits");
    sqlx::query(
        "INSERT INTO github_installations VALUES ($1, 'acme', 'Organization', $2, 'active', now())",
    )
    .bind(installation_id)
    .bind(workspace_id)
    .execute(db)
    .await
    .expect("linked installation");
    crate::harness::register_test_runner(db, workspace_id, installation_id).await;
    (workspace_id, installation_id)
}

#[sqlx::test(migrations = "../migrations")]
async fn a_thousand_shuffled_deliveries_with_duplicates_make_100_jobs_metered_once(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (workspace_id, installation_id) = linked_installation(&db, &app.core.ledger).await;

    let base = i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000_000).expect("fits") * 1_000;
    let start = Utc::now() - chrono::Duration::hours(2);
    let mut deliveries = Vec::new();
    for n in 0..100_i64 {
        let minutes = 1 + n % 7;
        for status in ["queued", "in_progress", "completed"] {
            let body = serde_json::to_vec(&job_delivery(
                installation_id,
                base + n,
                status,
                "tenki-standard-2c",
                start,
                minutes,
            ))
            .expect("JSON");
            deliveries.push((format!("{}-{n}-{status}", base), body));
        }
    }
    // 300 distinct deliveries, each sent 3 or 4 times: 1,000 in all, in random order.
    let mut sends: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, delivery) in deliveries.iter().enumerate() {
        let copies = if i < 100 { 4 } else { 3 };
        for _ in 0..copies {
            sends.push(delivery.clone());
        }
    }
    assert_eq!(sends.len(), 1_000);
    sends.shuffle(&mut rand::thread_rng());
    for (id, body) in &sends {
        let response = deliver_signed(&app, "workflow_job", id, body).await;
        assert!(response.status().is_success(), "{}", response.status());
    }
    assert_eq!(stored(&db).await, 300, "each delivery stored once");
    wait_until_processed(&db).await;

    let jobs: Vec<(String, bool)> =
        sqlx::query_as("SELECT status, metered FROM github_jobs WHERE installation_id = $1")
            .bind(installation_id)
            .fetch_all(&db)
            .await
            .expect("jobs");
    assert_eq!(jobs.len(), 100);
    assert!(
        jobs.iter()
            .all(|(status, metered)| status == "completed" && *metered),
        "{jobs:?}"
    );
    let minutes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT job_key, minutes FROM usage_records WHERE workspace_id = $1 ORDER BY job_key",
    )
    .bind(workspace_id)
    .fetch_all(&db)
    .await
    .expect("usage");
    assert_eq!(minutes.len(), 100, "one usage record per job");
    for (job_key, minutes) in minutes {
        let n: i64 = job_key
            .split(':')
            .next()
            .expect("id")
            .parse::<i64>()
            .expect("number")
            - base;
        // Ran `1 + n % 7` minutes less 30 s: rounded up to the whole minutes.
        assert_eq!(minutes, 1 + n % 7, "{job_key}");
    }
    let report = tenki_core::ledger::reconcile::reconcile(
        &db,
        &app.core.ledger,
        &tenki_core::ledger::reconcile::Scope::Workspaces(vec![workspace_id]),
    )
    .await
    .expect("reconciles");
    assert!(report.is_balanced(), "{:?}", report.differences);
}

#[sqlx::test(migrations = "../migrations")]
async fn deliveries_sent_at_once_are_each_stored_once_as_github_signed_them(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    // 200 distinct deliveries, each sent three times, all at once: the writer stores concurrent
    // deliveries together, so copies of one delivery land in the same INSERT as often as not.
    let deliveries: Vec<(String, Vec<u8>)> = (0..200)
        .map(|n| {
            let mut body = fixture("workflow_job.queued.json");
            body["workflow_job"]["id"] = json!(9_100_000 + n);
            // Spacing and key order as GitHub sent them must survive storage.
            let text = format!("{{ \"zen\":  \"n{n}\",\n {}", &body.to_string()[1..]);
            (format!("at-once-{n}"), text.into_bytes())
        })
        .collect();
    let sends = deliveries.iter().flat_map(|delivery| [delivery; 3]);
    let app = &app;
    let statuses = futures_util::future::join_all(sends.map(|(id, body)| async move {
        let response = deliver_signed(app, "workflow_job", id, body).await;
        (id.clone(), response.status().as_u16())
    }))
    .await;
    for (id, _) in &deliveries {
        let mut answers: Vec<u16> = statuses
            .iter()
            .filter(|(sent, _)| sent == id)
            .map(|(_, status)| *status)
            .collect();
        answers.sort_unstable();
        assert_eq!(
            answers,
            [200, 200, 202],
            "{id}: queued once, then already received"
        );
    }
    assert_eq!(stored(&db).await, 200, "each delivery stored once");
    for (id, body) in &deliveries {
        let kept: String =
            sqlx::query_scalar("SELECT body FROM github_deliveries WHERE delivery_id = $1")
                .bind(id)
                .fetch_one(&db)
                .await
                .expect("stored");
        assert_eq!(kept.as_bytes(), body, "{id}: the body as signed");
    }
    let (_, metrics) = app.get("/metrics").await;
    let batches: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("github_delivery_batch_size_count "))
        .expect("the batch size is reported")
        .parse()
        .expect("a number");
    assert!(
        batches < 600.0,
        "600 deliveries sent at once went into {batches} INSERTs"
    );
    wait_until_processed(&db).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_delivery_the_database_refuses_fails_alone_and_its_batch_is_stored(db: PgPool) {
    use tenki_core::github::intake::{Envelope, Intake, NewDelivery};
    use tenki_core::github::writer::{DeliveryWriter, WriteError};

    // A stand-in for any row PostgreSQL would refuse: a constraint this one delivery breaks.
    sqlx::query(
        "ALTER TABLE github_deliveries ADD CONSTRAINT refuse_one CHECK (delivery_id <> 'refused')",
    )
    .execute(&db)
    .await
    .expect("constraint");
    let writer = DeliveryWriter::start(db.clone());
    let ids = ["before", "refused", "after", "before"];
    let outcomes = futures_util::future::join_all(ids.map(|id| {
        writer.store(NewDelivery {
            delivery_id: id.to_owned(),
            event: "ping".to_owned(),
            envelope: Envelope::default(),
            body: format!(r#"{{"zen":"{id}"}}"#),
            received_at: Utc::now(),
        })
    }))
    .await;
    assert!(matches!(outcomes[0], Ok(Intake::Ignored)), "{outcomes:?}");
    assert!(
        matches!(outcomes[1], Err(WriteError::Database(_))),
        "{outcomes:?}"
    );
    assert!(matches!(outcomes[2], Ok(Intake::Ignored)), "{outcomes:?}");
    assert!(matches!(outcomes[3], Ok(Intake::Duplicate)), "{outcomes:?}");
    let kept: Vec<String> =
        sqlx::query_scalar("SELECT delivery_id FROM github_deliveries ORDER BY 1")
            .fetch_all(&db)
            .await
            .expect("query");
    assert_eq!(kept, ["after", "before"]);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_completed_job_never_moves_back_when_queued_arrives_late(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let start = Utc::now() - chrono::Duration::minutes(30);
    let id = i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000_000).expect("fits");
    for (n, status) in ["completed", "in_progress", "queued"].iter().enumerate() {
        let body = serde_json::to_vec(&job_delivery(42, id, status, "tenki-standard-4c", start, 5))
            .expect("JSON");
        let response = deliver_signed(&app, "workflow_job", &format!("late-{id}-{n}"), &body).await;
        assert_eq!(response.status(), 202);
    }
    wait_until_processed(&db).await;
    let (status, started, completed): (
        String,
        Option<chrono::DateTime<Utc>>,
        Option<chrono::DateTime<Utc>>,
    ) = sqlx::query_as(
        "SELECT status, started_at, completed_at FROM github_jobs WHERE github_job_id = $1",
    )
    .bind(id)
    .fetch_one(&db)
    .await
    .expect("job");
    assert_eq!(status, "completed");
    assert!(started.is_some() && completed.is_some());
}

#[sqlx::test(migrations = "../migrations")]
async fn a_delivery_that_cannot_be_processed_is_kept_marked_failed_and_shows_in_metrics(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    // Signed and JSON, so stored; but no workflow_job inside, so processing fails.
    let body = br#"{"action":"queued","workflow_job":{"status":"queued"}}"#;
    let response = deliver_signed(&app, "workflow_job", "broken-1", body).await;
    assert_eq!(response.status(), 202);
    let mut error = None;
    for _ in 0..100 {
        error = sqlx::query_scalar::<_, Option<String>>("SELECT error FROM github_deliveries WHERE delivery_id = 'broken-1' AND status = 'failed'")
            .fetch_optional(&db)
            .await
            .expect("query")
            .flatten();
        if error.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = error.expect("marked failed with its error");
    assert!(error.contains("workflow_job"), "{error}");
    let (_, metrics) = app.get("/metrics").await;
    assert!(
        metrics.contains("github_deliveries_waiting{status=\"failed\"} 1"),
        "{metrics}"
    );

    // Tried again after e^1 s, then e^2 s, …; the 25th failure gives it up.
    let (attempts, wait): (i16, f64) = sqlx::query_as(
        "SELECT attempts, extract(epoch FROM next_attempt_at - now())::float8
         FROM github_deliveries WHERE delivery_id = 'broken-1'",
    )
    .fetch_one(&db)
    .await
    .expect("retry");
    assert!(attempts >= 1, "{attempts}");
    assert!(wait < 7.4, "next attempt in {wait} s");
    sqlx::query(
        "UPDATE github_deliveries SET attempts = 24, next_attempt_at = now()
         WHERE delivery_id = 'broken-1'",
    )
    .execute(&db)
    .await
    .expect("24 attempts made");
    crate::harness::eventually_within(10, "the 25th attempt gives the delivery up", || async {
        let state: (i16, Option<chrono::DateTime<Utc>>, String) = sqlx::query_as(
            "SELECT attempts, next_attempt_at, status FROM github_deliveries
             WHERE delivery_id = 'broken-1'",
        )
        .fetch_one(&db)
        .await
        .expect("state");
        state.0 == 25 && state.1.is_none() && state.2 == "failed"
    })
    .await;
}

/// A signed-up customer (signed in on `app.client`) with a linked installation.
async fn linked_customer(app: &TestApp, db: &PgPool) -> (Uuid, i64) {
    let email = format!("{}@hooks.test", Uuid::new_v4());
    app.sign_up(&app.client, "Hooks", &email, "a long enough password")
        .await;
    let workspace_id = tenki_core::workspaces::first_workspace_of_email(db, &email)
        .await
        .expect("query")
        .expect("workspace");
    let installation_id = i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000).expect("fits");
    sqlx::query(
        "INSERT INTO github_installations VALUES ($1, 'acme', 'Organization', $2, 'active', now())",
    )
    .bind(installation_id)
    .bind(workspace_id)
    .execute(db)
    .await
    .expect("linked installation");
    crate::harness::register_test_runner(db, workspace_id, installation_id).await;
    (workspace_id, installation_id)
}

/// The Jobs page's server function, as the signed-in customer's browser calls it.
async fn jobs_page(app: &TestApp) -> Value {
    let response = app
        .call(
            &app.client,
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

async fn delivery_statuses(db: &PgPool, prefix: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT status FROM github_deliveries WHERE delivery_id LIKE $1 || '%' ORDER BY 1",
    )
    .bind(prefix)
    .fetch_all(db)
    .await
    .expect("statuses")
}

#[sqlx::test(migrations = "../migrations")]
async fn the_jobs_page_names_each_job_and_links_only_to_web_addresses(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (_, installation_id) = linked_customer(&app, &db).await;
    let id = i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000_000).expect("fits");
    let now = Utc::now();
    let mut named = job_delivery(installation_id, id, "queued", "tenki-standard-2c", now, 0);
    named["workflow_job"]["name"] = json!("build (ubuntu, 1.95)");
    named["workflow_job"]["workflow_name"] = json!("CI");
    let url = format!("https://github.com/octo-org/octo-repo/actions/runs/7/job/{id}");
    named["workflow_job"]["html_url"] = json!(url);
    let mut scripted = job_delivery(
        installation_id,
        id + 1,
        "queued",
        "tenki-standard-2c",
        now - chrono::Duration::minutes(1),
        0,
    );
    scripted["workflow_job"]["html_url"] = json!("javascript:alert(document.cookie)");
    for (n, body) in [named, scripted].iter().enumerate() {
        let body = serde_json::to_vec(body).expect("JSON");
        let response =
            deliver_signed(&app, "workflow_job", &format!("named-{id}-{n}"), &body).await;
        assert_eq!(response.status(), 202);
    }
    wait_until_processed(&db).await;
    let page = jobs_page(&app).await;
    assert_eq!(page["jobs"][0]["id"], format!("{id}:1"));
    assert_eq!(page["jobs"][0]["name"], "build (ubuntu, 1.95)");
    assert_eq!(page["jobs"][0]["workflow"], "CI");
    assert_eq!(page["jobs"][0]["github_url"], url.as_str());
    assert_eq!(page["jobs"][1]["id"], format!("{}:1", id + 1));
    assert_eq!(
        page["jobs"][1]["github_url"],
        Value::Null,
        "only https addresses become links"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_job_cancelled_while_queued_is_never_billed_for_its_queue_time(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (workspace_id, installation_id) = linked_customer(&app, &db).await;
    let id = i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000_000).expect("fits");
    // A 64c job waits 24 hours and GitHub cancels it: GitHub's delivery names no runner, has no
    // steps, and still fills `started_at` (with the queue time).
    let created = Utc::now() - chrono::Duration::hours(25);
    let mut queued = job_delivery(
        installation_id,
        id,
        "queued",
        "tenki-standard-64c",
        created,
        0,
    );
    queued["workflow_job"]["created_at"] = json!(created.to_rfc3339());
    let mut cancelled = fixture("workflow_job.completed.cancelled-while-queued.derived.json");
    cancelled["installation"] = json!({ "id": installation_id });
    let job = &mut cancelled["workflow_job"];
    job["id"] = json!(id);
    job["run_attempt"] = json!(1);
    job["labels"] = json!(["tenki-standard-64c"]);
    job["created_at"] = json!(created.to_rfc3339());
    job["started_at"] = json!(created.to_rfc3339());
    job["completed_at"] = json!((created + chrono::Duration::hours(24)).to_rfc3339());
    assert!(job["runner_name"].is_null() && job["steps"] == json!([]));
    for (n, body) in [queued, cancelled].iter().enumerate() {
        let body = serde_json::to_vec(body).expect("JSON");
        let response =
            deliver_signed(&app, "workflow_job", &format!("cancel-{id}-{n}"), &body).await;
        assert_eq!(response.status(), 202);
    }
    wait_until_processed(&db).await;
    let (status, metered, reason): (String, bool, Option<String>) = sqlx::query_as(
        "SELECT status, metered, not_billed_reason FROM github_jobs WHERE github_job_id = $1",
    )
    .bind(id)
    .fetch_one(&db)
    .await
    .expect("job");
    assert_eq!((status.as_str(), metered), ("completed", false));
    assert_eq!(
        reason.as_deref(),
        Some("not billed: cancelled before a runner took it")
    );
    let records: i64 =
        sqlx::query_scalar("SELECT count(*) FROM usage_records WHERE workspace_id = $1")
            .bind(workspace_id)
            .fetch_one(&db)
            .await
            .expect("count");
    assert_eq!(records, 0, "about $140 of queue time is not billed");
    assert_eq!(
        app.core
            .ledger
            .free_vcpu_minutes_left(workspace_id)
            .await
            .expect("balance"),
        2_000,
        "no free minutes used either"
    );
    let page = jobs_page(&app).await;
    assert_eq!(page["jobs"][0]["status"], "cancelled");
    assert_eq!(page["jobs"][0]["cost"], "—");
    assert_eq!(
        page["jobs"][0]["duration"], "—",
        "it never ran: no run time"
    );
    assert_eq!(
        page["stats"][0]["run"], "— / —",
        "queue time is not run time"
    );
}

/// Sends a 10-minute job's queued, in-progress and completed deliveries for `label`, each as
/// its own delivery (ids `<prefix>-<status>`), and waits until they are processed. Returns the
/// job id.
async fn run_job_through_deliveries(
    app: &TestApp,
    db: &PgPool,
    installation_id: i64,
    label: &str,
    prefix: &str,
) -> i64 {
    let id = i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000_000).expect("fits");
    let start = Utc::now() - chrono::Duration::minutes(20);
    for status in ["queued", "in_progress", "completed"] {
        let body = serde_json::to_vec(&job_delivery(installation_id, id, status, label, start, 10))
            .expect("JSON");
        let response =
            deliver_signed(app, "workflow_job", &format!("{prefix}-{status}"), &body).await;
        assert_eq!(response.status(), 202);
    }
    wait_until_processed(db).await;
    id
}

#[sqlx::test(migrations = "../migrations")]
async fn a_label_that_is_not_offered_ends_at_once_visible_and_charges_nothing(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (workspace_id, installation_id) = linked_customer(&app, &db).await;
    run_job_through_deliveries(
        &app,
        &db,
        installation_id,
        "tenki-macos-m4-6c-premium",
        "macos",
    )
    .await;
    // Processed, not failed and retried 25 times.
    assert_eq!(
        delivery_statuses(&db, "macos").await,
        ["processed", "processed", "processed"]
    );
    let page = jobs_page(&app).await;
    assert_eq!(
        page["jobs"][0]["not_billed_reason"],
        "label not offered: tenki-macos-m4-6c-premium"
    );
    assert_eq!(page["jobs"][0]["cost"], "—");
    assert_eq!(
        app.core
            .ledger
            .free_vcpu_minutes_left(workspace_id)
            .await
            .expect("balance"),
        2_000
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_label_in_another_case_is_tenkis_as_github_matches_it(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (workspace_id, installation_id) = linked_customer(&app, &db).await;
    let id =
        run_job_through_deliveries(&app, &db, installation_id, "Tenki-Standard-4C", "case").await;
    let (label, metered): (String, bool) =
        sqlx::query_as("SELECT label, metered FROM github_jobs WHERE github_job_id = $1")
            .bind(id)
            .fetch_one(&db)
            .await
            .expect("recorded, not 'not a Tenki runner label'");
    assert_eq!((label.as_str(), metered), ("tenki-standard-4c", true));
    // 10 minutes on 4 vCPUs: 20 free minutes (40 vCPU-minutes).
    assert_eq!(
        app.core
            .ledger
            .free_vcpu_minutes_left(workspace_id)
            .await
            .expect("balance"),
        2_000 - 40
    );
}
