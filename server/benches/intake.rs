//! Benchmark: signed `workflow_job` deliveries accepted per second by `POST /webhooks/github`
//! (the real router over TCP: signature check, JSON parse, delivery row and queue job in one
//! transaction) with 32 concurrent senders, and their p50/p99 latency; next to a same-run
//! baseline of single-row INSERT transactions of the same body at the same concurrency.
//!
//! The background worker is not started, so the figure is the intake's alone. Run with
//! `bash scripts/bench.sh`. Bounded; traffic stays on 127.0.0.1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use tenki_core::github::intake::sign;
use uuid::Uuid;

const SENDERS: usize = 32;
const DELIVERIES: usize = 8_000;
const POOL: u32 = 32;

#[path = "support/scratch.rs"]
mod scratch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let scratch = scratch::ScratchDatabase::create().await?;
    let result = run(&scratch.url).await;
    scratch.drop_it().await?;
    result
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

async fn run(url: &str) -> anyhow::Result<()> {
    let db = PgPoolOptions::new()
        .max_connections(POOL)
        .connect(url)
        .await?;
    tenki_core::db::migrate(&db).await?;
    let settings = server::settings::Settings::from_lookup(|name| match name {
        "TENKI_DATABASE_URL" => Some(url.to_owned()),
        "TENKI_TIGERBEETLE_ADDRESSES" => std::env::var("TENKI_TIGERBEETLE_ADDRESSES").ok(),
        "TENKI_LOG" => Some("error".to_owned()),
        _ => None,
    })?;
    let core = server::connect_on(db.clone(), &settings).await?;
    // The queue's schema (graphile_worker.add_job) comes from the worker's migrations.
    drop(tenki_core::queue::worker(core.clone(), 1, async {}).await?);

    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/github/workflow_job.queued.json"),
    )?;
    let body: serde_json::Value = serde_json::from_str(&fixture)?;
    let body = Arc::new(serde_json::to_vec(&body)?);
    println!(
        "machine: {} cores; {SENDERS} concurrent senders; {DELIVERIES} deliveries of {} bytes",
        std::thread::available_parallelism()?,
        body.len()
    );

    // Baseline: the same body, one INSERT transaction per delivery.
    sqlx::query(
        "CREATE TABLE bench_baseline (id text PRIMARY KEY, event text NOT NULL, body jsonb NOT NULL,
         received_at timestamptz NOT NULL)",
    )
    .execute(&db)
    .await?;
    let text = Arc::new(String::from_utf8(body.to_vec())?);
    let started = Instant::now();
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let db = db.clone();
        let text = Arc::clone(&text);
        senders.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in 0..DELIVERIES / SENDERS {
                let at = Instant::now();
                sqlx::query("INSERT INTO bench_baseline (id, event, body, received_at) VALUES ($1, 'workflow_job', $2::jsonb, now())")
                    .bind(format!("{sender}:{i}"))
                    .bind(text.as_str())
                    .execute(&db)
                    .await?;
                latencies.push(at.elapsed());
            }
            Ok::<_, sqlx::Error>(latencies)
        }));
    }
    let mut baseline_latencies = Vec::new();
    for sender in senders {
        baseline_latencies.extend(sender.await??);
    }
    let baseline = DELIVERIES as f64 / started.elapsed().as_secs_f64();
    baseline_latencies.sort();

    let router = server::router(
        &settings,
        &settings.public_url,
        core,
        server::Doubles::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}/webhooks/github", listener.local_addr()?);
    tokio::spawn(server::serve(listener, router, std::future::pending()));
    let secret = server::settings::SANDBOX_WEBHOOK_SECRET.as_bytes();
    let signature = Arc::new(sign(secret, &body));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(SENDERS)
        .build()?;
    let (intake, intake_latencies) =
        send_all(&client, &address, "workflow_job", &body, &signature).await?;
    // The same HTTP path for an event Tenki stores but does not process: no queue job.
    let (ignored, ignored_latencies) =
        send_all(&client, &address, "workflow_run", &body, &signature).await?;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM github_deliveries")
        .fetch_one(&db)
        .await?;
    anyhow::ensure!(
        stored == 2 * DELIVERIES as i64,
        "stored {stored} deliveries"
    );

    println!(
        "baseline INSERT: {baseline:.0} tx/s; p50 {:.1} ms, p99 {:.1} ms",
        millis(percentile(&baseline_latencies, 50)),
        millis(percentile(&baseline_latencies, 99))
    );
    println!(
        "webhook intake:  {intake:.0} deliveries/s ({:.0}% of baseline); p50 {:.1} ms, p99 {:.1} ms",
        intake / baseline * 100.0,
        millis(percentile(&intake_latencies, 50)),
        millis(percentile(&intake_latencies, 99))
    );
    println!(
        "unused event:    {ignored:.0} deliveries/s ({:.0}% of baseline); p50 {:.1} ms, p99 {:.1} ms (stored, no queue job)",
        ignored / baseline * 100.0,
        millis(percentile(&ignored_latencies, 50)),
        millis(percentile(&ignored_latencies, 99))
    );
    db.close().await;
    Ok(())
}

/// Sends `DELIVERIES` signed deliveries of `event` from `SENDERS` concurrent senders; returns
/// deliveries per second and the sorted latencies.
async fn send_all(
    client: &reqwest::Client,
    address: &str,
    event: &'static str,
    body: &Arc<Vec<u8>>,
    signature: &Arc<String>,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let client = client.clone();
        let body = Arc::clone(body);
        let signature = Arc::clone(signature);
        let address = address.to_owned();
        senders.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for _ in 0..DELIVERIES / SENDERS {
                let at = Instant::now();
                let response = client
                    .post(&address)
                    .header("content-type", "application/json")
                    .header("x-github-event", event)
                    .header("x-github-delivery", Uuid::new_v4().to_string())
                    .header("x-hub-signature-256", signature.as_str())
                    .body(body.to_vec())
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status() == 202,
                    "intake answered {}",
                    response.status()
                );
                latencies.push(at.elapsed());
            }
            Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for sender in senders {
        latencies.extend(sender.await??);
    }
    let rate = DELIVERIES as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    Ok((rate, latencies))
}
