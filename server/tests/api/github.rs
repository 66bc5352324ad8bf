//! Connecting GitHub (SPEC §2) and the safety nets, against the GitHub double the server
//! serves in sandbox mode: onboarding in both orders, forged installations, bad states, the
//! redelivery loop, the queued-job poll, rate limits, the token cache and the sample workflow.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use server::sandbox::github::{SANDBOX_USER, SampleJob};
use sqlx::PgPool;
use tenki_core::github::onboarding;
use tenki_core::github::safety_nets;
use uuid::Uuid;

use crate::harness::TestApp;
use crate::webhooks::{fixture, wait_until_processed};

const PASSWORD: &str = "correct horse battery";

/// A customer's browser, holding its session cookie by hand so the test can sign states with it.
struct Customer {
    client: reqwest::Client,
    session: String,
    workspace_id: Uuid,
}

impl Customer {
    async fn sign_up(app: &TestApp, email: &str) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let response = client
            .post(format!("{}/api/sign-up", app.address))
            .form(&[
                ("workspace", "Acme"),
                ("email", email),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .expect("sign-up");
        let session = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("tenki_session="))
            .and_then(|v| v.split(';').next())
            .expect("a session cookie")
            .to_owned();
        app.open_verification_link(&client, email).await;
        let workspace_id = sqlx::query_scalar(
            "SELECT m.workspace_id FROM workspace_members m JOIN users u ON u.id = m.user_id
             WHERE u.email = $1",
        )
        .bind(email)
        .fetch_one(&app.core.db)
        .await
        .expect("workspace");
        Self {
            client,
            session,
            workspace_id,
        }
    }

    async fn get(&self, url: &str) -> (reqwest::StatusCode, Option<String>, String) {
        let response = self
            .client
            .get(url)
            .header("cookie", format!("tenki_session={}", self.session))
            .send()
            .await
            .expect("request");
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, location, response.text().await.unwrap_or_default())
    }

    /// Returns from GitHub to `setup_url`: Tenki does the work and redirects to the result
    /// page. Returns that page's status and HTML.
    async fn return_from_github(
        &self,
        app: &TestApp,
        setup_url: &str,
    ) -> (reqwest::StatusCode, String) {
        let (status, location, body) = self.get(setup_url).await;
        assert_eq!(status, 303, "the setup redirects to its result: {body}");
        let location = location.expect("location");
        assert!(location.starts_with("/github/connected?"), "{location}");
        let (status, _, page) = self.get(&format!("{}{location}", app.address)).await;
        (status, page)
    }

    /// "Connect GitHub": the install page URL and the state in it.
    async fn connect(&self, app: &TestApp) -> (String, String) {
        let (status, location, _) = self.get(&format!("{}/github/connect", app.address)).await;
        assert_eq!(status, 303, "connect redirects to GitHub");
        let location = location.expect("location");
        let state = location
            .split_once("state=")
            .map(|(_, s)| s.to_owned())
            .expect("state in the install URL");
        (location, state)
    }
}

async fn linked_workspace(db: &PgPool, installation_id: i64) -> Option<Uuid> {
    sqlx::query_scalar("SELECT workspace_id FROM github_installations WHERE installation_id = $1")
        .bind(installation_id)
        .fetch_optional(db)
        .await
        .expect("query")
        .flatten()
}

async fn repositories(db: &PgPool, installation_id: i64) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT full_name FROM github_repositories WHERE installation_id = $1 AND NOT removed ORDER BY full_name",
    )
    .bind(installation_id)
    .fetch_all(db)
    .await
    .expect("query")
}

/// Waits (bounded) for `check` to hold.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10 s: {what}");
}

#[sqlx::test(migrations = "../migrations")]
async fn connecting_github_links_the_installation_when_the_webhook_comes_first(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = Customer::sign_up(&app, "first@example.com").await;
    let (install_url, state) = customer.connect(&app).await;
    assert!(
        install_url.starts_with(&format!(
            "{}/sandbox/github/apps/tenki-sandbox/installations/new?state=",
            app.address
        )),
        "{install_url}"
    );
    let (status, _, page) = customer.get(&install_url).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Install Tenki") && page.contains("Sandbox GitHub"),
        "{page}"
    );

    // The install page sends `installation.created` and then the browser back to Tenki.
    let response = customer
        .client
        .post(&install_url)
        .form(&[
            ("state", state.as_str()),
            ("account", "acme"),
            ("repositories", "api, web"),
            ("action", "install"),
        ])
        .send()
        .await
        .expect("install");
    assert_eq!(response.status(), 303);
    let setup_url = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("setup redirect")
        .to_owned();
    assert!(
        setup_url.contains("/github/setup?installation_id="),
        "{setup_url}"
    );
    let installation_id = app.github.installation_on("acme").expect("installed");
    wait_until_processed(&db).await;
    assert_eq!(
        linked_workspace(&db, installation_id).await,
        None,
        "not linked by the webhook alone"
    );

    let (status, page) = customer.return_from_github(&app, &setup_url).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("GitHub is connected"), "{page}");
    assert!(page.contains("acme"), "{page}");
    assert_eq!(
        linked_workspace(&db, installation_id).await,
        Some(customer.workspace_id)
    );
    assert_eq!(
        repositories(&db, installation_id).await,
        ["acme/api", "acme/web"]
    );

    // Reloading the page (the code is spent now) still shows the link, and changes nothing.
    let (status, page) = customer.return_from_github(&app, &setup_url).await;
    assert_eq!(status, 200);
    assert!(page.contains("GitHub is connected"), "{page}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM github_installations")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(rows, 1);

    let (_, _, runners) = customer.get(&format!("{}/runners", app.address)).await;
    assert!(
        runners.contains("acme/api, acme/web"),
        "the Runners page lists the repositories"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn connecting_github_links_the_installation_when_the_redirect_comes_first(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = Customer::sign_up(&app, "second@example.com").await;
    let (_, state) = customer.connect(&app).await;
    let installation_id = app.github.install(SANDBOX_USER, "globex", &["site"]);
    let code = app.github.authorize(SANDBOX_USER);
    let setup_url = app
        .github
        .setup_url(installation_id, "install", &code, &state);

    let (status, page) = customer.return_from_github(&app, &setup_url).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("GitHub is connected"), "{page}");
    assert_eq!(
        linked_workspace(&db, installation_id).await,
        Some(customer.workspace_id)
    );
    // Repositories come from GitHub right after linking, before any webhook.
    let db_for_check = db.clone();
    eventually("repositories synced from the installation", || {
        let db = db_for_check.clone();
        async move { repositories(&db, installation_id).await == ["globex/site"] }
    })
    .await;

    // The webhook arrives late: still one installation, still linked, with its account.
    assert_eq!(
        app.github.send_installation_created(installation_id).await,
        202
    );
    wait_until_processed(&db).await;
    let (count, login, workspace): (i64, String, Option<Uuid>) = sqlx::query_as(
        "SELECT count(*) OVER (), account_login, workspace_id FROM github_installations",
    )
    .fetch_one(&db)
    .await
    .expect("row");
    assert_eq!(
        (count, login.as_str(), workspace),
        (1, "globex", Some(customer.workspace_id))
    );
    assert_eq!(repositories(&db, installation_id).await, ["globex/site"]);
}

#[sqlx::test(migrations = "../migrations")]
async fn an_installation_the_user_cannot_access_is_not_linked(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = Customer::sign_up(&app, "mallory@example.com").await;
    let (_, state) = customer.connect(&app).await;
    // Someone else's installation; the customer edits its id into the setup URL.
    let theirs = app
        .github
        .install("someone-else", "victim-org", &["secrets"]);
    app.github.send_installation_created(theirs).await;
    wait_until_processed(&db).await;
    let code = app.github.authorize(SANDBOX_USER);
    let forged = app.github.setup_url(theirs, "install", &code, &state);

    let (status, page) = customer.return_from_github(&app, &forged).await;
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains(&format!(
            "Your GitHub account cannot access installation {theirs}"
        )),
        "{page}"
    );
    assert_eq!(linked_workspace(&db, theirs).await, None);
}

#[sqlx::test(migrations = "../migrations")]
async fn an_expired_tampered_or_borrowed_state_is_refused_with_a_clear_page(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = Customer::sign_up(&app, "state@example.com").await;
    let other = Customer::sign_up(&app, "other@example.com").await;
    let installation_id = app.github.install(SANDBOX_USER, "initech", &["app"]);
    let key = server::settings::SANDBOX_SECRET_KEY.as_bytes();

    let expired = onboarding::sign_state(
        key,
        &customer.session,
        customer.workspace_id,
        Utc::now() - onboarding::STATE_LIFETIME - chrono::Duration::minutes(1),
    );
    let (_, fresh) = customer.connect(&app).await;
    let tampered = format!(
        "{}{}",
        &fresh[..fresh.len() - 2],
        if fresh.ends_with("00") { "11" } else { "00" }
    );
    let (_, borrowed) = other.connect(&app).await;

    for (state, message) in [
        (expired.as_str(), "expired"),
        (tampered.as_str(), "not valid"),
        (borrowed.as_str(), "not valid"),
        ("", "not valid"),
    ] {
        let code = app.github.authorize(SANDBOX_USER);
        let url = app
            .github
            .setup_url(installation_id, "install", &code, state);
        let (status, page) = customer.return_from_github(&app, &url).await;
        assert_eq!(status, 400, "{message}: {page}");
        assert!(page.contains(message), "{message}: {page}");
        assert!(page.contains("Start again from the Runners page"), "{page}");
    }
    assert_eq!(linked_workspace(&db, installation_id).await, None);
}

#[sqlx::test(migrations = "../migrations")]
async fn an_installation_request_waits_for_an_owners_approval_and_is_linked_by_it(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = Customer::sign_up(&app, "request@example.com").await;
    let (install_url, state) = customer.connect(&app).await;
    let response = customer
        .client
        .post(&install_url)
        .form(&[
            ("state", state.as_str()),
            ("account", "big-corp"),
            ("repositories", "monorepo"),
            ("action", "request"),
        ])
        .send()
        .await
        .expect("request");
    let setup_url = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("redirect")
        .to_owned();
    assert!(setup_url.contains("setup_action=request"), "{setup_url}");
    let (status, page) = customer.return_from_github(&app, &setup_url).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Waiting for an organization owner to approve"),
        "{page}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM github_installations")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(rows, 0);
    // The Runners page keeps showing the request until an owner decides.
    let (_, _, runners) = customer.get(&format!("{}/runners", app.address)).await;
    assert!(
        runners.contains("data-testid=\"pending-installation\""),
        "{runners}"
    );
    assert!(
        runners.contains(&format!("Installation requested by @{SANDBOX_USER}")),
        "{runners}"
    );

    // An owner approves; GitHub's delivery names the requester, whose request came from here.
    let (installation_id, status) = app
        .github
        .approve_request("big-corp-owner", "big-corp", &["monorepo"], SANDBOX_USER)
        .await;
    assert_eq!(status, 202);
    wait_until_processed(&db).await;
    assert_eq!(
        linked_workspace(&db, installation_id).await,
        Some(customer.workspace_id)
    );
    assert_eq!(
        repositories(&db, installation_id).await,
        ["big-corp/monorepo"]
    );
    let (_, _, runners) = customer.get(&format!("{}/runners", app.address)).await;
    assert!(!runners.contains("pending-installation"), "{runners}");
    assert!(runners.contains("big-corp/monorepo"), "{runners}");

    // A requester who never asked from Tenki links nothing.
    let (unrequested, _) = app
        .github
        .approve_request("owner", "other-corp", &["x"], "a-stranger")
        .await;
    wait_until_processed(&db).await;
    assert_eq!(linked_workspace(&db, unrequested).await, None);
}

/// An installation of the sandbox user, linked to a fresh customer's workspace, with its
/// repositories copied.
async fn linked_installation(app: &TestApp, email: &str, account: &str) -> (Customer, i64) {
    let customer = Customer::sign_up(app, email).await;
    let installation_id = app.github.install(SANDBOX_USER, account, &["api", "web"]);
    onboarding::link_installation(
        &app.core.db,
        installation_id,
        customer.workspace_id,
        None,
        false,
        Utc::now(),
    )
    .await
    .expect("linked");
    // Linking queues copying the repositories from GitHub.
    let db = app.core.db.clone();
    eventually("repositories synced after linking", || {
        let db = db.clone();
        async move { repositories(&db, installation_id).await.len() == 2 }
    })
    .await;
    (customer, installation_id)
}

async fn job_status(db: &PgPool, job_id: i64) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM github_jobs WHERE github_job_id = $1")
        .bind(job_id)
        .fetch_optional(db)
        .await
        .expect("query")
}

#[sqlx::test(migrations = "../migrations")]
async fn deliveries_that_never_reached_tenki_are_redelivered_once(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (_, installation_id) = linked_installation(&app, "redeliver@example.com", "umbrella").await;
    let job = SampleJob::queued("tenki-standard-4c");
    let body = app
        .github
        .workflow_job_body(installation_id, "umbrella/api", &job);

    app.github.set_intake_unreachable(true);
    assert_eq!(app.github.deliver("workflow_job", body).await, 502);
    app.github.set_intake_unreachable(false);
    let guid = app.github.delivery_guids().pop().expect("a delivery");
    assert_eq!(
        job_status(&db, job.id).await,
        None,
        "Tenki never heard of it"
    );

    let report = safety_nets::redeliver_failed(&db, &app.core.github, Utc::now())
        .await
        .expect("round");
    assert_eq!(report.redelivered, std::slice::from_ref(&guid));
    let db_for_check = db.clone();
    eventually("the redelivered job is recorded", || {
        let db = db_for_check.clone();
        async move { job_status(&db, job.id).await.as_deref() == Some("queued") }
    })
    .await;
    assert_eq!(app.github.attempts(&guid), [(502, false), (202, true)]);

    let again = safety_nets::redeliver_failed(&db, &app.core.github, Utc::now())
        .await
        .expect("round");
    assert!(
        again.redelivered.is_empty(),
        "a delivery that got through is not asked for again"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn queued_jobs_no_webhook_announced_are_found_by_polling(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (_, installation_id) = linked_installation(&app, "poll@example.com", "hooli").await;
    let tenki_job =
        app.github
            .queue_job_silently(installation_id, "hooli/web", "tenki-standard-4c");
    let other_job = app
        .github
        .queue_job_silently(installation_id, "hooli/web", "ubuntu-latest");

    let report = safety_nets::poll_queued_jobs(&db, &app.core.github, Utc::now())
        .await
        .expect("poll");
    assert_eq!((report.repositories, report.recorded), (2, 1));
    wait_until_processed(&db).await;
    assert_eq!(job_status(&db, other_job).await, None, "not a Tenki label");
    // Found by the poll, the job gets a runner like any other and runs.
    crate::harness::eventually_within(60, "the polled job ran on a Tenki runner", || {
        let db = db.clone();
        async move { job_status(&db, tenki_job).await.as_deref() == Some("completed") }
    })
    .await;

    let again = safety_nets::poll_queued_jobs(&db, &app.core.github, Utc::now())
        .await
        .expect("poll");
    assert_eq!(again.recorded, 0, "a known job is not recorded twice");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_spent_rate_limit_holds_every_call_until_its_reset(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (_, installation_id) = linked_installation(&app, "limits@example.com", "vandelay").await;
    app.github
        .queue_job_silently(installation_id, "vandelay/api", "tenki-standard-4c");
    let reset = Utc::now() + chrono::Duration::minutes(10);
    app.github.set_rate_limited_until(Some(reset));

    let report = safety_nets::poll_queued_jobs(&db, &app.core.github, Utc::now())
        .await
        .expect("poll");
    assert_eq!(report.recorded, 0);
    let paused = report.paused_until.expect("paused by the rate limit");
    assert_eq!(paused.timestamp(), reset.timestamp());
    let requests = app.github.api_requests();

    // Until the reset nothing reaches GitHub: no spinning, no retries.
    let redelivery = safety_nets::redeliver_failed(&db, &app.core.github, Utc::now())
        .await
        .expect("round");
    assert!(redelivery.paused_until.is_some());
    let poll = safety_nets::poll_queued_jobs(&db, &app.core.github, Utc::now())
        .await
        .expect("poll");
    assert!(poll.paused_until.is_some());
    assert_eq!(app.github.api_requests(), requests);
}

#[sqlx::test(migrations = "../migrations")]
async fn installation_tokens_are_reused_until_shortly_before_they_expire(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (_, installation_id) = linked_installation(&app, "tokens@example.com", "stark").await;
    for _ in 0..3 {
        onboarding::sync_repositories(&db, &app.core.github, installation_id, Utc::now())
            .await
            .expect("synced");
    }
    safety_nets::poll_queued_jobs(&db, &app.core.github, Utc::now())
        .await
        .expect("poll");
    assert_eq!(
        app.github.tokens_issued(),
        1,
        "one token for every call of the hour"
    );
}

/// Every field GitHub's payload has, the double's has too, at the levels Tenki reads.
fn assert_same_shape(fixture: &Value, double: &Value, path: &str) {
    let (Some(expected), Some(actual)) = (fixture.as_object(), double.as_object()) else {
        panic!("{path} is not an object");
    };
    for key in expected.keys() {
        assert!(
            actual.contains_key(key),
            "the double's {path} lacks {key:?}"
        );
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn the_doubles_deliveries_are_shaped_like_githubs(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let installation_id = app.github.install(SANDBOX_USER, "shape", &["repo"]);
    let mut job = SampleJob::queued("tenki-standard-4c");
    job.status = "in_progress";
    job.started_at = Some(Utc::now());
    job.runner_name = Some("runner".to_owned());
    let double = app
        .github
        .workflow_job_body(installation_id, "shape/repo", &job);
    let github = fixture("workflow_job.in_progress.json");
    assert_same_shape(&github, &double, "workflow_job delivery");
    assert_same_shape(
        &github["workflow_job"],
        &double["workflow_job"],
        "workflow_job",
    );
    assert_same_shape(
        &github["installation"],
        &double["installation"],
        "installation",
    );

    assert_eq!(
        app.github.send_installation_created(installation_id).await,
        202
    );
    let guid = app.github.delivery_guids().pop().expect("sent");
    let stored: String =
        sqlx::query_scalar("SELECT body FROM github_deliveries WHERE delivery_id = $1")
            .bind(&guid)
            .fetch_one(&db)
            .await
            .expect("stored");
    let stored: Value = serde_json::from_str(&stored).expect("a JSON body");
    let github = fixture("installation.created.json");
    assert_same_shape(&github, &stored, "installation delivery");
    assert_same_shape(
        &github["installation"],
        &stored["installation"],
        "installation",
    );
    assert_same_shape(
        &github["repositories"][0],
        &stored["repositories"][0],
        "repository",
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_sample_workflow_is_recorded_from_queued_to_completed_and_metered(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (customer, installation_id) =
        linked_installation(&app, "sample@example.com", "sample-org").await;
    app.github
        .queue_sample_workflow(
            installation_id,
            "sample-org/api",
            "tenki-standard-4c",
            1,
            // GitHub's timestamps have whole seconds: more than one keeps the run time above 0.
            Duration::from_millis(1_100),
        )
        .await;
    // Admitted, a runner started on Kubernetes, the runner took the job and finished it.
    crate::harness::eventually_within(60, "the sample job completed and metered", || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT metered FROM github_jobs")
                .fetch_optional(&db)
                .await
                .expect("query")
                == Some(true)
        }
    })
    .await;
    wait_until_processed(&db).await;
    let (status, metered, workflow): (String, bool, String) =
        sqlx::query_as("SELECT status, metered, workflow FROM github_jobs")
            .fetch_one(&db)
            .await
            .expect("one job");
    assert_eq!(
        (status.as_str(), metered, workflow.as_str()),
        ("completed", true, "Sample workflow")
    );
    // Under a minute on 4 vCPUs: one billable minute, 4 of the 2,000 free vCPU-minutes.
    let free_left = app
        .core
        .ledger
        .free_vcpu_minutes_left(customer.workspace_id)
        .await
        .expect("ledger");
    assert_eq!(free_left, 1_996);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_delivery_that_fails_processing_shows_on_its_workspaces_runners_page(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (customer, installation_id) =
        linked_installation(&app, "failing@example.com", "wayne").await;
    let stranger = Customer::sign_up(&app, "stranger@example.com").await;
    // Signed and stored, but with no job inside: processing fails and is retried.
    let body = serde_json::json!({
        "action": "queued",
        "installation": { "id": installation_id },
        "workflow_job": { "status": "queued" },
    });
    assert_eq!(app.github.deliver("workflow_job", body).await, 202);
    let guid = app.github.delivery_guids().pop().expect("sent");
    let db_for_check = db.clone();
    eventually("the delivery is marked failed", || {
        let db = db_for_check.clone();
        async move {
            !tenki_core::github::intake::failed_deliveries(&db, None, 10)
                .await
                .expect("query")
                .is_empty()
        }
    })
    .await;

    let (_, _, page) = customer.get(&format!("{}/runners", app.address)).await;
    assert!(
        page.contains("GitHub events Tenki could not process"),
        "{page}"
    );
    assert!(page.contains(&guid), "the delivery id is shown: {page}");
    assert!(page.contains("workflow_job.queued"), "{page}");
    let (_, _, theirs) = stranger.get(&format!("{}/runners", app.address)).await;
    assert!(!theirs.contains(&guid), "another workspace does not see it");

    assert!(
        tenki_core::github::intake::retry_delivery(&db, &guid)
            .await
            .expect("retry")
    );
    assert!(
        !tenki_core::github::intake::retry_delivery(&db, "no-such-delivery")
            .await
            .expect("retry")
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_job_is_tenkis_by_its_first_catalog_label_premium_included(db: PgPool) {
    let first = |labels: &'static [&'static str]| {
        let db = db.clone();
        async move {
            tenki_core::catalog::first_tenki_label(&db, labels)
                .await
                .expect("query")
        }
    };
    assert_eq!(
        first(&[
            "self-hosted",
            "tenki-standard-4c-premium",
            "tenki-standard-2c"
        ])
        .await
        .as_deref(),
        Some("tenki-standard-4c-premium")
    );
    assert_eq!(
        first(&["ubuntu-latest", "tenki-standard-2c"])
            .await
            .as_deref(),
        Some("tenki-standard-2c")
    );
    assert_eq!(
        first(&["ubuntu-latest", "tenki-nonexistent-9c"]).await,
        None
    );
    assert_eq!(first(&[]).await, None);
}
