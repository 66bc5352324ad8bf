//! The test harness: the real server on a free port, with the test's own database (from
//! `#[sqlx::test]`) and the test run's TigerBeetle (`TENKI_TEST_TIGERBEETLE_ADDRESSES`).

use std::collections::HashMap;

use server::sandbox::github::GitHubDouble;
use server::sandbox::kratos::KratosDouble;
use server::sandbox::kubernetes::KubernetesDouble;
use server::sandbox::stripe::StripeDouble;
use server::settings::Settings;
use sqlx::PgPool;
use tenki_core::Core;

/// A running Tenki server and an HTTP client that keeps cookies, like a browser.
pub struct TestApp {
    pub address: String,
    pub core: Core,
    pub client: reqwest::Client,
    /// The GitHub double the server talks to (and serves under `/sandbox/github`).
    pub github: GitHubDouble,
    /// The Kubernetes double the server's runners start on (served under `/sandbox/kubernetes`).
    pub kubernetes: KubernetesDouble,
    /// The Stripe double the server's payments talk to (served under `/sandbox/stripe`).
    pub stripe: StripeDouble,
    /// The Kratos double, when the server signs people in through it
    /// (`TENKI_KRATOS_PUBLIC_URL=sandbox`).
    pub kratos: Option<KratosDouble>,
}

/// The TigerBeetle of this test run (`make test` starts it).
pub fn tigerbeetle_addresses() -> String {
    std::env::var("TENKI_TEST_TIGERBEETLE_ADDRESSES")
        .expect("TENKI_TEST_TIGERBEETLE_ADDRESSES is set by `make test`")
}

/// Settings for a test server: defaults, plus `overrides`.
pub fn settings(overrides: &[(&str, &str)]) -> Settings {
    let mut values: HashMap<String, String> = HashMap::from([
        ("TENKI_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        (
            "TENKI_TIGERBEETLE_ADDRESSES".to_owned(),
            tigerbeetle_addresses(),
        ),
        ("TENKI_LOG".to_owned(), "warn".to_owned()),
    ]);
    for (name, value) in overrides {
        values.insert((*name).to_owned(), (*value).to_owned());
    }
    Settings::from_lookup(|name| values.get(name).cloned()).expect("test settings are valid")
}

impl TestApp {
    /// Starts a server on `db` and the test run's TigerBeetle.
    pub async fn spawn(db: PgPool) -> Self {
        Self::spawn_with(db, settings(&[])).await
    }

    /// Starts a server on `db` with `settings` (their TigerBeetle addresses are used), built
    /// by the same [`server::Application::build`] as `main`.
    pub async fn spawn_with(db: PgPool, settings: Settings) -> Self {
        server::telemetry::init_logging(&settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("free port");
        let address = format!("http://{}", listener.local_addr().expect("bound"));
        let application = server::Application::build_on(db, &settings, &address)
            .await
            .expect("application (is TigerBeetle up?)");
        let core = application.core.clone();
        let github = application
            .github_double
            .clone()
            .expect("tests run against the GitHub sandbox");
        let kubernetes = application
            .kubernetes_double
            .clone()
            .expect("tests run against the Kubernetes sandbox");
        let stripe = application
            .stripe_double
            .clone()
            .expect("tests run against the Stripe sandbox");
        let kratos = application.kratos_double.clone();
        tokio::spawn(server::run_until_stopped(
            application,
            listener,
            std::future::pending(),
        ));
        Self {
            address,
            core,
            client: browser_like_client(),
            github,
            kubernetes,
            stripe,
            kratos,
        }
    }

    /// A second browser: its own cookies.
    pub fn new_browser(&self) -> reqwest::Client {
        browser_like_client()
    }

    /// Calls a server function with a form body, as a hydrated page does.
    pub async fn call(
        &self,
        client: &reqwest::Client,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        client
            .post(format!("{}/api/{endpoint}", self.address))
            .form(form)
            .send()
            .await
            .expect("request reaches the server")
    }

    /// Signs up through the server function; panics unless it succeeds.
    pub async fn sign_up(
        &self,
        client: &reqwest::Client,
        workspace: &str,
        email: &str,
        password: &str,
    ) {
        let response = self
            .call(
                client,
                "sign-up",
                &[
                    ("workspace", workspace),
                    ("email", email),
                    ("password", password),
                ],
            )
            .await;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status.is_success() || status.is_redirection(),
            "sign-up: {status} {body}"
        );
        self.open_verification_link(client, email).await;
    }

    /// Signs up through the server function without confirming the e-mail address.
    pub async fn sign_up_unverified(
        &self,
        client: &reqwest::Client,
        workspace: &str,
        email: &str,
        password: &str,
    ) -> reqwest::StatusCode {
        self.call(
            client,
            "sign-up",
            &[
                ("workspace", workspace),
                ("email", email),
                ("password", password),
            ],
        )
        .await
        .status()
    }

    /// The newest link e-mailed to `email`, read from the outbox the e-mail is sent from (also
    /// when a test's SMTP server receives it instead of the sandbox's mailbox).
    pub async fn newest_link_to(&self, email: &str) -> String {
        let path: String = sqlx::query_scalar(
            "SELECT link_path FROM outbox_emails WHERE lower(to_address) = lower($1)
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(email)
        .fetch_optional(&self.core.db)
        .await
        .expect("outbox")
        .unwrap_or_else(|| panic!("no e-mail to {email}"));
        format!("{}{path}", self.address)
    }

    /// Opens the verification link e-mailed to `email`, as its owner does; panics unless it
    /// confirms the address.
    pub async fn open_verification_link(&self, client: &reqwest::Client, email: &str) {
        let link = self.newest_link_to(email).await;
        let response = client.get(&link).send().await.expect("link opens");
        let landed = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|location| location.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(
            landed,
            "/?email=verified",
            "verification of {email}: {}",
            response.status()
        );
    }

    /// The Overview server function's JSON answer.
    pub async fn overview(
        &self,
        client: &reqwest::Client,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self.call(client, "overview", &[]).await;
        let status = response.status();
        let body = response.json().await.expect("JSON answer");
        (status, body)
    }

    /// GET a path; returns the status and body.
    pub async fn get(&self, path: &str) -> (reqwest::StatusCode, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request reaches the server");
        let status = response.status();
        (status, response.text().await.unwrap_or_default())
    }
}

fn browser_like_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
}

/// The runner name the tests' own deliveries use: [`register_test_runner`] records it as one
/// Tenki started, since only jobs on Tenki's runners are billed.
pub const TEST_RUNNER: &str = "tenki-test-runner";

/// Records [`TEST_RUNNER`] as a runner Tenki started for `workspace_id` (tests that send
/// GitHub's deliveries themselves, without the Kubernetes double's runners).
pub async fn register_test_runner(db: &PgPool, workspace_id: uuid::Uuid, installation_id: i64) {
    sqlx::query(
        "INSERT INTO runners (name, workspace_id, installation_id, label, namespace, github_scope,
             github_job_id, run_attempt, try, state, created_at, updated_at)
         VALUES ($1, $2, $3, 'tenki-standard-2c', 'tenki-test', 'orgs/acme', 0, 1, 1, 'running', now(), now())",
    )
    .bind(TEST_RUNNER)
    .bind(workspace_id)
    .bind(installation_id)
    .execute(db)
    .await
    .expect("test runner recorded");
}

/// Waits up to `seconds` for `check` to hold; panics with `what` otherwise.
pub async fn eventually_within<F, Fut>(seconds: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("not within {seconds} s: {what}");
}
