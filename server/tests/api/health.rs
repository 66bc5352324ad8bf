//! `/healthz`, `/readyz`, `/metrics`, request ids and body limits.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::PgPool;

use crate::harness::{self, TestApp};

#[sqlx::test(migrations = "../migrations")]
async fn healthz_answers_and_every_response_has_a_request_id(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let id = response.headers().get("x-request-id").expect("request id");
    assert_eq!(id.to_str().expect("ascii").len(), 36, "a UUID");
    // A webhook's answer too, though it has none of the pages' own headers.
    let refused = app
        .client
        .post(format!("{}/webhooks/github", app.address))
        .header("x-github-event", "ping")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 401, "unsigned");
    let id = refused.headers().get("x-request-id").expect("request id");
    assert_eq!(id.to_str().expect("ascii").len(), 36, "a UUID");
    assert!(refused.headers().get("content-security-policy").is_none());
}

#[sqlx::test(migrations = "../migrations")]
async fn metrics_count_requests_by_route_and_status(db: PgPool) {
    let app = TestApp::spawn(db).await;
    assert_eq!(app.get("/healthz").await.0, 200);
    let unsigned = app
        .client
        .post(format!("{}/webhooks/github", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(unsigned.status(), 401);
    let (status, body) = app.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.lines()
            .any(|line| line.starts_with("http_requests_total")
                && line.contains(r#"route="/healthz""#)
                && line.contains(r#"status="200""#)),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|line| line.starts_with("http_requests_total")
                && line.contains(r#"route="/webhooks/github""#)
                && line.contains(r#"status="401""#)),
        "webhooks are counted too: {body}"
    );
    assert!(
        body.contains("http_request_duration_seconds_bucket"),
        "{body}"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn oversized_bodies_are_refused_with_413(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let big = "x".repeat(2 * 1024 * 1024);
    let response = app
        .client
        .post(format!("{}/api/sign-in", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("email={big}&password=x"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 413);
}

#[sqlx::test(migrations = "../migrations")]
async fn dashboard_pages_render_on_the_server_and_unknown_sessions_go_to_sign_in(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let (status, body) = app.get("/sign-in").await;
    assert_eq!(status, 200);
    assert!(body.contains("Sign in to Tenki"), "{body}");
    let bundle = server::bundle_name(&crate::harness::settings(&[]).site_root);
    assert!(
        body.contains(&format!("/pkg/{bundle}.js")),
        "hydration script of the bundle built: {body}"
    );
    let response = app
        .client
        .get(format!("{}/", app.address))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 302, "no session: redirected to sign in");
    assert_eq!(response.headers()["location"], "/sign-in");
    let (status, css) = app.get("/pkg/tenki.css").await;
    assert_eq!(status, 200);
    assert!(css.contains(".bg-indigo-600"), "Tailwind classes generated");
}

/// A TigerBeetle of this test's own, so it can be stopped and started again.
struct OwnTigerBeetle {
    binary: PathBuf,
    file: PathBuf,
    port: u16,
    process: Option<Child>,
}

impl OwnTigerBeetle {
    fn format(dir: &std::path::Path) -> Self {
        let binary = PathBuf::from(
            std::env::var("TENKI_TIGERBEETLE_BIN")
                .expect("TENKI_TIGERBEETLE_BIN is set by `make test`"),
        );
        let file = dir.join("0_0.tigerbeetle");
        let status = Command::new(&binary)
            .args([
                "format",
                "--cluster=0",
                "--replica=0",
                "--replica-count=1",
                "--development",
            ])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("tigerbeetle format");
        assert!(status.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Self {
            binary,
            file,
            port,
            process: None,
        }
    }

    fn start(&mut self) {
        let child = Command::new(&self.binary)
            .arg("start")
            .arg(format!("--addresses=127.0.0.1:{}", self.port))
            .args(["--development", "--experimental", "--limit-request=1MiB"])
            .arg(&self.file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tigerbeetle start");
        self.process = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            child.kill().expect("kill");
            child.wait().expect("reaped");
        }
    }
}

impl Drop for OwnTigerBeetle {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn readyz(app: &TestApp) -> (u16, serde_json::Value) {
    let response = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

async fn wait_for_readyz(app: &TestApp, want: u16) -> serde_json::Value {
    // Bounded: 60 tries; readyz itself answers within its 2 s timeout.
    for _ in 0..60 {
        let (status, body) = readyz(app).await;
        if status == want {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("/readyz never answered {want}");
}

#[sqlx::test(migrations = "../migrations")]
async fn readyz_turns_503_when_tigerbeetle_stops_and_200_when_it_returns(db: PgPool) {
    let dir = std::env::temp_dir().join(format!("tenki-readyz-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut tigerbeetle = OwnTigerBeetle::format(&dir);
    tigerbeetle.start();
    let address = format!("127.0.0.1:{}", tigerbeetle.port);
    let settings = harness::settings(&[("TENKI_TIGERBEETLE_ADDRESSES", &address)]);
    let app = TestApp::spawn_with(db, settings).await;

    let body = wait_for_readyz(&app, 200).await;
    assert_eq!(body["database"], "ok");
    assert_eq!(body["tigerbeetle"], "ok");

    tigerbeetle.stop();
    let body = wait_for_readyz(&app, 503).await;
    assert_eq!(body["database"], "ok");
    assert_eq!(
        body["tigerbeetle"], "down",
        "names the failing part, never its error text: {body}"
    );

    tigerbeetle.start();
    let body = wait_for_readyz(&app, 200).await;
    assert_eq!(body["tigerbeetle"], "ok");
    drop(tigerbeetle);
    std::fs::remove_dir_all(&dir).ok();
}
