//! The delivery drain through the real `tenki serve` process: a delivery GitHub got a 2xx for is
//! processed even when the server is killed during a burst (SPEC §4: stored durably before the
//! 2xx, processed afterwards).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tenki_core::github::intake::sign;
use uuid::Uuid;

use crate::harness;
use crate::webhooks::{job_delivery, linked_installation};

const SECRET: &[u8] = server::settings::SANDBOX_WEBHOOK_SECRET.as_bytes();

/// `tenki serve` on `port` against `database_url` and the test run's TigerBeetle, once it is
/// ready. Killed when dropped.
async fn start_server(database_url: &str, port: u16) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenki"))
        .arg("serve")
        .env("TENKI_DATABASE_URL", database_url)
        .env("TENKI_ADDR", format!("127.0.0.1:{port}"))
        .env("TENKI_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env(
            "TENKI_TIGERBEETLE_ADDRESSES",
            harness::tigerbeetle_addresses(),
        )
        .env("TENKI_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("tenki serve starts");
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && response.status() == 200
        {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tenki serve exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("tenki serve not ready within 60 s");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The URL of the test's own database (`#[sqlx::test]` made it on `DATABASE_URL`'s server).
fn url_of(db: &PgPool) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by `make test`");
    let (server, _) = server.rsplit_once('/').expect("a database URL");
    let name = db
        .connect_options()
        .get_database()
        .expect("a database name")
        .to_owned();
    format!("{server}/{name}")
}

#[sqlx::test(migrations = "../migrations")]
async fn deliveries_acknowledged_before_the_server_is_killed_are_all_processed_after_it_restarts(
    db: PgPool,
) {
    // A customer with a linked installation; `connect_on` runs nothing in the background.
    let core = server::connect_on(db.clone(), &harness::settings(&[]))
        .await
        .expect("core");
    let (workspace_id, installation_id) = linked_installation(&db, &core.ledger).await;

    // 100 jobs, each queued, started and completed, sent by 8 senders at once.
    let base = i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000_000).expect("fits") * 1_000;
    let start = Utc::now() - chrono::Duration::hours(1);
    let jobs: VecDeque<i64> = (0..100).map(|n| base + n).collect();
    let jobs = Arc::new(Mutex::new(jobs));
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, i64, String)>::new()));
    let database_url = url_of(&db);
    let port = free_port();
    let mut first = start_server(&database_url, port).await;
    let client = reqwest::Client::new();
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (jobs, acknowledged, client) = (jobs.clone(), acknowledged.clone(), client.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let Some(id) = jobs.lock().expect("jobs").pop_front() else {
                    return;
                };
                for status in ["queued", "in_progress", "completed"] {
                    let delivery_id = format!("{id}-{status}");
                    let body = serde_json::to_vec(&job_delivery(
                        installation_id,
                        id,
                        status,
                        "tenki-standard-2c",
                        start,
                        3,
                    ))
                    .expect("JSON");
                    let sent = client
                        .post(format!("http://127.0.0.1:{port}/webhooks/github"))
                        .header("content-type", "application/json")
                        .header("x-github-event", "workflow_job")
                        .header("x-github-delivery", &delivery_id)
                        .header("x-hub-signature-256", sign(SECRET, &body))
                        .body(body)
                        .send()
                        .await;
                    // Once the server is killed, sending fails: GitHub would keep the rest.
                    match sent {
                        Ok(response) if response.status().is_success() => acknowledged
                            .lock()
                            .expect("acknowledged")
                            .push((delivery_id, id, status.to_owned())),
                        _ => return,
                    }
                }
            }
        }));
    }
    harness::eventually_within(60, "120 deliveries acknowledged", || async {
        acknowledged.lock().expect("acknowledged").len() >= 120
    })
    .await;
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("killed");
    for sender in senders {
        sender.await.expect("sender");
    }
    let acknowledged = acknowledged.lock().expect("acknowledged").clone();
    let ids: Vec<String> = acknowledged.iter().map(|(id, _, _)| id.clone()).collect();
    let unprocessed_at_kill: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM github_deliveries WHERE delivery_id = ANY($1) AND status <> 'processed'",
    )
    .bind(&ids)
    .fetch_one(&db)
    .await
    .expect("count");
    println!(
        "{} deliveries acknowledged before the kill, {unprocessed_at_kill} of them not processed yet",
        ids.len()
    );

    let _second = start_server(&database_url, free_port()).await;
    harness::eventually_within(
        90,
        "every acknowledged delivery processed after the restart",
        || async {
            let processed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM github_deliveries WHERE delivery_id = ANY($1) AND status = 'processed'",
            )
            .bind(&ids)
            .fetch_one(&db)
            .await
            .expect("count");
            processed == i64::try_from(ids.len()).expect("fits")
        },
    )
    .await;

    // Every job whose completion GitHub got a 2xx for is metered, once, for its 3 minutes. (A
    // completion stored but not answered before the kill may be metered too: GitHub would send
    // it again, and it would be a duplicate.)
    let metered: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT j.github_job_id, u.minutes FROM github_jobs j
         JOIN usage_records u ON u.workspace_id = $1
                             AND u.job_key = j.github_job_id || ':' || j.run_attempt
         WHERE j.installation_id = $2 AND j.metered",
    )
    .bind(workspace_id)
    .bind(installation_id)
    .fetch_all(&db)
    .await
    .expect("metered jobs");
    for (_, job, status) in &acknowledged {
        if status == "completed" {
            assert_eq!(
                metered.iter().filter(|(metered, _)| metered == job).count(),
                1,
                "job {job} metered once"
            );
        }
    }
    assert!(
        metered.iter().all(|(_, minutes)| *minutes == 3),
        "{metered:?}"
    );
    let report = tenki_core::ledger::reconcile::reconcile(
        &db,
        &core.ledger,
        &tenki_core::ledger::reconcile::Scope::Workspaces(vec![workspace_id]),
    )
    .await
    .expect("reconciles");
    assert!(report.is_balanced(), "{:?}", report.differences);
}
