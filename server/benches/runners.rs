//! Benchmark of the runners' control plane, against the in-process GitHub and Kubernetes doubles
//! and real PostgreSQL and TigerBeetle:
//! 1. overhead from a `queued` delivery stored to the provisioner's create call, p50/p99, with
//!    1,000 jobs a minute arriving for one minute (the doubles answer at once; what is measured
//!    is Tenki: intake, queue, admission, JIT registration, namespace checks);
//! 2. admission decisions per second with 10,000 waiting jobs (one pass), next to a same-run
//!    baseline: the pass's own read of the waiting jobs.
//!
//! Run with `bash scripts/bench.sh` (it starts the services). Loops are bounded; traffic stays on
//! 127.0.0.1. Results go to docs/benchmarks.md by hand.

use std::time::{Duration, Instant};

use chrono::Utc;
use server::sandbox::github::{SANDBOX_USER, SampleJob};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tenki_core::admission::{self, Capacity};
use uuid::Uuid;

#[path = "support/scratch.rs"]
mod scratch;

/// Jobs per minute arriving in part 1, for one minute.
const JOBS_PER_MINUTE: u64 = 1_000;
/// Workspaces the jobs are spread over (40 slots each: 25 hold all 1,000).
const WORKSPACES: usize = 25;
/// Waiting jobs in part 2, over 100 workspaces.
const WAITING: usize = 10_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addresses = std::env::var("TENKI_TIGERBEETLE_ADDRESSES")?;
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()?.get()
    );
    for concurrency in ["16", "64"] {
        let scratch = scratch::ScratchDatabase::create().await?;
        let result = control_plane(&scratch.url, &addresses, concurrency).await;
        scratch.drop_it().await?;
        result?;
    }
    let scratch = scratch::ScratchDatabase::create().await?;
    let result = admission_pass(&scratch.url, &addresses).await;
    scratch.drop_it().await?;
    result
}

/// A workspace with a valid card (no ledger lookup needed) and a linked installation.
async fn workspace(db: &PgPool, installation_id: i64, account: &str) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO workspaces (id, name, money_account_id, free_minutes_account_id, created_at, payment_method)
         VALUES ($1, 'Bench', $2, $3, now(), 'valid')",
    )
    .bind(id)
    .bind(Uuid::new_v4())
    .bind(Uuid::new_v4())
    .execute(db)
    .await?;
    sqlx::query(
        "INSERT INTO github_installations VALUES ($1, $2, 'Organization', $3, 'active', now())",
    )
    .bind(installation_id)
    .bind(account)
    .bind(id)
    .execute(db)
    .await?;
    Ok(id)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

async fn control_plane(url: &str, addresses: &str, concurrency: &str) -> anyhow::Result<()> {
    let db = PgPoolOptions::new()
        .max_connections(40)
        .connect(url)
        .await?;
    let settings = server::settings::Settings::from_lookup(|name| match name {
        "TENKI_TIGERBEETLE_ADDRESSES" => Some(addresses.to_owned()),
        "TENKI_LOG" => Some("error".to_owned()),
        "TENKI_ADDR" => Some("127.0.0.1:0".to_owned()),
        "TENKI_DATABASE_MAX_CONNECTIONS" => Some("40".to_owned()),
        "TENKI_WORKER_CONCURRENCY" => Some(concurrency.to_owned()),
        _ => None,
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let application = server::Application::build_on(db.clone(), &settings, &address).await?;
    let github = application
        .github_double
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the bench runs against the GitHub double"))?;
    tokio::spawn(server::run_until_stopped(
        application,
        listener,
        std::future::pending(),
    ));
    let mut installations = Vec::new();
    for n in 0..WORKSPACES {
        let account = format!("bench-{n}");
        let installation_id = github.install(SANDBOX_USER, &account, &["app"]);
        workspace(&db, installation_id, &account).await?;
        installations.push((installation_id, format!("{account}/app")));
    }
    // 1,000 jobs a minute, evenly spaced; GitHub gives them to no runner, so each stays admitted
    // with its runner starting: every job costs one provisioning.
    let jobs = JOBS_PER_MINUTE;
    let gap = Duration::from_millis(60_000 / JOBS_PER_MINUTE);
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..jobs {
        let (installation_id, repository) = installations[n as usize % WORKSPACES].clone();
        let github = github.clone();
        sends.spawn(async move {
            let job = SampleJob::queued("tenki-standard-2c");
            github
                .deliver(
                    "workflow_job",
                    github.workflow_job_body(installation_id, &repository, &job),
                )
                .await
        });
        tokio::time::sleep_until((started + gap * u32::try_from(n + 1)?).into()).await;
    }
    while let Some(status) = sends.join_next().await {
        anyhow::ensure!(status? == 202, "a delivery was refused");
    }
    let sent_in = started.elapsed();
    // Wait (bounded) until every job's runner was asked for.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut created: i64 = 0;
    while Instant::now() < deadline {
        created = sqlx::query_scalar("SELECT count(*) FROM runners WHERE started_at IS NOT NULL")
            .fetch_one(&db)
            .await?;
        if created == i64::try_from(jobs)? {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained_in = started.elapsed();
    let mut overheads: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM r.started_at - d.received_at)::float8 * 1000
         FROM runners r
         JOIN github_deliveries d ON d.body::jsonb->'workflow_job'->>'id' = r.github_job_id::text
                                 AND d.action = 'queued'
         WHERE r.started_at IS NOT NULL",
    )
    .fetch_all(&db)
    .await?;
    overheads.sort_by(f64::total_cmp);
    if overheads.is_empty() {
        anyhow::bail!("no runner was started");
    }
    println!(
        "control plane, worker concurrency {concurrency}: {jobs} jobs sent over {:.1} s, {created} runners asked for after {:.1} s",
        sent_in.as_secs_f64(),
        drained_in.as_secs_f64()
    );
    println!(
        "  delivery stored → Kubernetes create call: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        percentile(&overheads, 0.50),
        percentile(&overheads, 0.99),
        percentile(&overheads, 1.0)
    );
    db.close().await;
    Ok(())
}

async fn admission_pass(url: &str, addresses: &str) -> anyhow::Result<()> {
    let db = PgPoolOptions::new().max_connections(8).connect(url).await?;
    tenki_core::db::migrate(&db).await?;
    let ledger = tenki_core::ledger::Ledger::connect(0, addresses)?;
    // The queue's schema (graphile_worker.add_job) comes from the worker's migrations.
    let settings = server::settings::Settings::from_lookup(|name| match name {
        "TENKI_TIGERBEETLE_ADDRESSES" => Some(addresses.to_owned()),
        "TENKI_LOG" => Some("error".to_owned()),
        _ => None,
    })?;
    let core = server::connect_on(db.clone(), &settings).await?;
    drop(tenki_core::queue::worker(core, 1, async {}).await?);
    let workspaces = 100;
    let base_installation: i64 = 9_000_000;
    for n in 0..workspaces {
        workspace(&db, base_installation + n, &format!("admit-{n}")).await?;
    }
    let now = Utc::now();
    sqlx::query(
        "INSERT INTO github_jobs (github_job_id, run_attempt, installation_id, repository, workflow,
             label, status, created_at, first_delivery_at, updated_at)
         SELECT n, 1, $1 + n % $2, 'acme/app', 'CI', 'tenki-standard-2c', 'queued',
                $3 - make_interval(secs => n), $3, $3
         FROM generate_series(1, $4::bigint) AS n",
    )
    .bind(base_installation)
    .bind(workspaces)
    .bind(now)
    .bind(i64::try_from(WAITING)?)
    .execute(&db)
    .await?;
    // Baseline: the pass's own read of the waiting jobs, alone.
    let mut baseline = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let rows: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT j.github_job_id FROM github_jobs j
               JOIN github_installations i ON i.installation_id = j.installation_id
               JOIN runner_skus s ON s.label = regexp_replace(j.label, '-premium$', '')
               WHERE j.admission IN ('pending', 'waiting', 'blocked') AND j.status IN ('waiting', 'queued')
                 AND i.workspace_id IS NOT NULL AND i.state = 'active'
               ORDER BY j.created_at, j.github_job_id) AS waiting",
        )
        .fetch_one(&db)
        .await?;
        anyhow::ensure!(rows == i64::try_from(WAITING)?, "{rows} waiting");
        baseline.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    baseline.sort_by(f64::total_cmp);
    let started = Instant::now();
    let first = admission::admit_waiting(&db, &ledger, Capacity::default(), now).await?;
    let first_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut steady = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let report = admission::admit_waiting(&db, &ledger, Capacity::default(), now).await?;
        anyhow::ensure!(report.admitted.is_empty(), "nothing more to admit");
        steady.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    steady.sort_by(f64::total_cmp);
    println!(
        "admission, {WAITING} waiting jobs in {workspaces} workspaces: baseline read p50 {:.1} ms",
        percentile(&baseline, 0.5)
    );
    println!(
        "  first pass: {} admitted, {} waiting in {first_ms:.1} ms = {:.0} decisions/s (it writes {} slots and tasks)",
        first.admitted.len(),
        first.waiting,
        WAITING as f64 / (first_ms / 1000.0),
        first.admitted.len()
    );
    let p50 = percentile(&steady, 0.5);
    println!(
        "  next passes (nothing changes): p50 {p50:.1} ms = {:.0} decisions/s",
        (WAITING - first.admitted.len()) as f64 / (p50 / 1000.0)
    );
    db.close().await;
    Ok(())
}
