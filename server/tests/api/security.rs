//! What every response and request must satisfy: security headers with a script nonce, no
//! cross-site state changes, `/metrics` behind its token, production without the sandbox, and a
//! shutdown that finishes what is in flight.

use std::time::Duration;

use sqlx::PgPool;

use crate::harness::{self, TestApp};

#[sqlx::test(migrations = "../migrations")]
async fn every_page_carries_a_csp_whose_nonce_is_on_its_inline_scripts(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let response = app
        .client
        .get(format!("{}/sign-in", app.address))
        .send()
        .await
        .expect("request");
    let headers = response.headers().clone();
    let csp = headers["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(!csp.contains("'unsafe-inline' 'wasm"), "{csp}");
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a nonce in the policy")
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(
        headers["referrer-policy"],
        "strict-origin-when-cross-origin"
    );
    assert!(
        headers.get("strict-transport-security").is_none(),
        "served over http"
    );
    let body = response.text().await.expect("page");
    let scripts: Vec<&str> = body.split("<script").skip(1).collect();
    assert!(!scripts.is_empty(), "the hydration script");
    for script in scripts {
        let tag = script.split('>').next().unwrap_or_default();
        assert!(
            tag.contains(&format!("nonce=\"{nonce}\"")) || tag.contains(" src="),
            "an inline script without the response's nonce: <script{tag}>"
        );
    }
    assert!(!body.contains("onclick="), "no inline event handlers");
    // A fresh nonce per response.
    let again = app
        .client
        .get(format!("{}/sign-in", app.address))
        .send()
        .await
        .expect("request");
    let second = again.headers()["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(!second.contains(&nonce));
    // Plain routes carry the headers too.
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
}

#[sqlx::test(migrations = "../migrations")]
async fn hsts_is_sent_when_served_over_https(db: PgPool) {
    let app = TestApp::spawn_with(
        db,
        harness::settings(&[("TENKI_PUBLIC_URL", "https://app.tenki.test")]),
    )
    .await;
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("request");
    assert!(
        response.headers()["strict-transport-security"]
            .to_str()
            .expect("ascii")
            .starts_with("max-age=")
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn cross_site_requests_that_change_state_are_refused(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let form = [
        ("workspace", "Evil"),
        ("email", "victim@acme.test"),
        ("password", "a long enough password"),
    ];
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ] {
        for endpoint in ["sign-up", "sign-in", "sign-out", "overview"] {
            let response = app
                .client
                .post(format!("{}/api/{endpoint}", app.address))
                .header(name, value)
                .form(&form)
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), 403, "{endpoint} with {name}: {value}");
        }
        let connect = app
            .client
            .get(format!("{}/github/connect", app.address))
            .header(name, value)
            .send()
            .await
            .expect("request");
        assert_eq!(connect.status(), 403, "connect with {name}: {value}");
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(users, 0, "nothing was created");
    // The same requests from our own pages go through.
    let ours = app
        .client
        .post(format!("{}/api/sign-up", app.address))
        .header("sec-fetch-site", "same-origin")
        .header("origin", &app.address)
        .form(&form)
        .send()
        .await
        .expect("request");
    assert!(
        ours.status().is_success() || ours.status().is_redirection(),
        "{}",
        ours.status()
    );
    // GitHub's return to the setup URL is cross-site by nature and is not refused.
    let setup = app
        .client
        .get(format!("{}/github/setup?installation_id=1", app.address))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("request");
    assert_ne!(setup.status(), 403);
}

#[sqlx::test(migrations = "../migrations")]
async fn metrics_need_the_bearer_token_when_one_is_set(db: PgPool) {
    let app = TestApp::spawn_with(
        db,
        harness::settings(&[("TENKI_METRICS_TOKEN", "s3cret-metrics")]),
    )
    .await;
    let url = format!("{}/metrics", app.address);
    let none = app.client.get(&url).send().await.expect("request");
    assert_eq!(none.status(), 401);
    let wrong = app
        .client
        .get(&url)
        .bearer_auth("guess")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);
    let right = app
        .client
        .get(&url)
        .bearer_auth("s3cret-metrics")
        .send()
        .await
        .expect("request");
    assert_eq!(right.status(), 200);
    assert!(
        right
            .text()
            .await
            .expect("text")
            .contains("http_requests_total")
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn production_mounts_no_sandbox_route(db: PgPool) {
    let key = std::env::temp_dir().join(format!("tenki-prod-key-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nreal\n-----END PRIVATE KEY-----\n",
    )
    .expect("key");
    let key = key.display().to_string();
    let production = harness::settings(&[
        ("TENKI_MODE", "production"),
        ("TENKI_GITHUB_APP_ID", "12345"),
        ("TENKI_GITHUB_APP_SLUG", "tenki"),
        ("TENKI_GITHUB_PRIVATE_KEY_FILE", &key),
        ("TENKI_GITHUB_CLIENT_ID", "Iv1.real"),
        ("TENKI_GITHUB_CLIENT_SECRET", "real client secret"),
        ("TENKI_GITHUB_WEBHOOK_SECRET", "real webhook secret"),
        ("TENKI_STRIPE_SECRET_KEY", "sk_live_real"),
        ("TENKI_STRIPE_WEBHOOK_SECRET", "whsec_real"),
        ("TENKI_SECRET_KEY", "a long random production secret"),
        ("TENKI_METRICS_TOKEN", "metrics"),
        ("TENKI_PUBLIC_URL", "https://app.tenki.test"),
    ]);
    assert!(server::sandbox_github(&production).is_none());
    assert!(!production.kratos_sandbox());
    let app = TestApp::spawn(db).await;
    let router = server::router(
        &production,
        &production.public_url,
        app.core.clone(),
        server::Doubles::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let address = format!("http://{}", listener.local_addr().expect("bound"));
    tokio::spawn(server::serve(listener, router, std::future::pending()));
    for path in [
        "/sandbox/github/login/oauth/authorize",
        "/sandbox/github/api/app",
        "/sandbox/stripe/v1/customers/cus_1",
        "/sandbox/kubernetes/api/v1/namespaces",
        "/sandbox/kratos/sessions/whoami",
    ] {
        let response = reqwest::get(format!("{address}{path}"))
            .await
            .expect("request");
        assert_eq!(
            response.status(),
            404,
            "{path} is not mounted in production"
        );
    }
    // The sandbox's webhook secret signs nothing there.
    let body = br#"{"zen":"x"}"#;
    let response = reqwest::Client::new()
        .post(format!("{address}/webhooks/github"))
        .header("x-github-event", "ping")
        .header("x-github-delivery", "forged-1")
        .header(
            "x-hub-signature-256",
            tenki_core::github::intake::sign(
                server::settings::SANDBOX_WEBHOOK_SECRET.as_bytes(),
                body,
            ),
        )
        .body(body.to_vec())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let event = r#"{"id":"evt_forged","type":"customer.updated"}"#;
    let response = reqwest::Client::new()
        .post(format!("{address}/webhooks/stripe"))
        .header(
            "stripe-signature",
            stripe_webhook::Webhook::generate_test_header(
                event,
                server::settings::SANDBOX_STRIPE_WEBHOOK_SECRET,
                None,
            ),
        )
        .body(event)
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.status(),
        401,
        "the sandbox's Stripe secret signs nothing in production"
    );
}

/// A server as `main` runs it, with `grace` to finish after the signal: its address, the signal,
/// and the task that returns what `run_until_stopped` returned.
async fn stoppable_server(
    db: PgPool,
    grace: Duration,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let settings = harness::settings(&[]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let address = format!("http://{}", listener.local_addr().expect("bound"));
    let application = server::Application::build_on(db, &settings, &address)
        .await
        .expect("application");
    let running = tokio::spawn(server::run_until_stopped_within(
        application,
        listener,
        async move {
            drop(stopped.await);
        },
        grace,
    ));
    let up = reqwest::get(format!("{address}/healthz"))
        .await
        .expect("up");
    assert_eq!(up.status(), 200);
    (address, stop, running)
}

#[sqlx::test(migrations = "../migrations")]
async fn shutdown_finishes_what_is_in_flight_or_says_it_cut_it(db: PgPool) {
    let (address, stop, running) = stoppable_server(db, Duration::from_secs(2)).await;
    // A request still sending its body when the signal comes: it is waited for, then cut.
    let host = address.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(
        &mut slow,
        format!(
            "POST /webhooks/github HTTP/1.1\r\nhost: {host}\r\nx-github-event: ping\r\ncontent-length: 100\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .expect("partial request");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).expect("the server waits for the signal");
    let outcome = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops within the grace period plus a margin")
        .expect("joined");
    let error = outcome.expect_err("a request was cut");
    assert!(error.to_string().contains("were cut"), "{error}");
    drop(slow);
}

#[sqlx::test(migrations = "../migrations")]
async fn shutdown_with_nothing_in_flight_is_clean(db: PgPool) {
    let (_, stop, running) = stoppable_server(db, Duration::from_secs(5)).await;
    stop.send(()).expect("the server waits for the signal");
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops")
        .expect("joined")
        .expect("a clean stop");
}
