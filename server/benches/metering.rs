//! Benchmark: jobs metered per second end to end (PostgreSQL + TigerBeetle), one at a time by 16
//! concurrent tasks and through the metering batcher (as many as it can, and at a steady 5,000
//! jobs/s), next to a same-run baseline of plain single-row INSERTs; and the Usage page's query
//! latency with 100,000 and then 1,000,000 usage records in a workspace
//! (`TENKI_BENCH_USAGE=off` skips that part).
//!
//! Run with `bash scripts/bench.sh` (it starts the services). Loops are bounded; traffic stays on
//! 127.0.0.1. Results go to docs/benchmarks.md by hand.

use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tenki_core::ledger::Ledger;
use tenki_core::metering::{self, FinishedJob, JobKey, Meter};
use tenki_core::usage::{self, Month};
use uuid::Uuid;

const TASKS: usize = 16;
const JOBS: usize = 4_000;
const WORKSPACES: usize = 64;
/// Concurrent senders to the batcher, and the jobs they send.
const BATCHED_SENDERS: usize = 256;
const BATCHED_JOBS: usize = 40_960;
/// Jobs per second offered to the batcher in the steady phase.
const STEADY_RATE: usize = 5_000;

#[path = "support/scratch.rs"]
mod scratch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addresses = std::env::var("TENKI_TIGERBEETLE_ADDRESSES")?;
    let scratch = scratch::ScratchDatabase::create().await?;
    let url = scratch.url.clone();
    let db = PgPoolOptions::new()
        .max_connections(32)
        .connect(&url)
        .await?;
    tenki_core::db::migrate(&db).await?;
    let ledger = Ledger::connect(0, &addresses)?;
    ledger.ensure_fixed_accounts().await?;

    let result = run(&db, &ledger).await;
    db.close().await;
    scratch.drop_it().await?;
    result
}

async fn run(db: &PgPool, ledger: &Ledger) -> anyhow::Result<()> {
    println!(
        "machine: {} cores; {TASKS} concurrent tasks",
        std::thread::available_parallelism()?
    );

    // Baseline: single-row INSERT transactions of a usage-sized row.
    sqlx::query(
        "CREATE TABLE bench_baseline (id bigserial PRIMARY KEY, job_key text NOT NULL,
         workspace_id uuid NOT NULL, amount bigint NOT NULL, at timestamptz NOT NULL)",
    )
    .execute(db)
    .await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let db = db.clone();
            tokio::spawn(async move {
                for i in 0..JOBS / TASKS {
                    sqlx::query("INSERT INTO bench_baseline (job_key, workspace_id, amount, at) VALUES ($1, $2, $3, now())")
                        .bind(format!("{task}:{i}"))
                        .bind(Uuid::new_v4())
                        .bind(3_000_000_i64)
                        .execute(&db)
                        .await?;
                }
                Ok::<_, sqlx::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let baseline = JOBS as f64 / started.elapsed().as_secs_f64();
    println!("baseline: {baseline:.0} single-row INSERTs/s");

    // Metering: jobs spread over 64 workspaces (metering serializes per workspace).
    let mut workspaces = Vec::new();
    for i in 0..WORKSPACES {
        let email = format!("bench-{i}-{}@bench.test", Uuid::new_v4());
        let signed_up = tenki_core::identity::sign_up(
            db,
            ledger,
            &email,
            "bench password 1",
            "Bench",
            &tenki_core::identity::SignUpClient::LOCAL,
            Utc::now(),
        )
        .await?;
        workspaces.push(signed_up.workspace_id);
    }
    let base_id = i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000_000)? * 1_000;
    let job_of = {
        let workspaces = workspaces.clone();
        move |n: usize| {
            let completed_at = Utc::now();
            FinishedJob {
                workspace_id: workspaces[n % WORKSPACES],
                key: JobKey {
                    github_job_id: base_id + i64::try_from(n).unwrap_or(0),
                    run_attempt: 1,
                },
                label: "tenki-standard-4c".to_owned(),
                started_at: completed_at - chrono::Duration::seconds(317),
                completed_at,
                repository: "acme/web".to_owned(),
                workflow: "CI".to_owned(),
            }
        }
    };

    // One at a time, 16 tasks: the path before the batcher.
    let started = Instant::now();
    let one_at_a_time = {
        let (db, ledger) = (db.clone(), ledger.clone());
        move |job: FinishedJob| {
            let (db, ledger) = (db.clone(), ledger.clone());
            async move {
                metering::meter_job(&db, &ledger, &job, Utc::now()).await?;
                Ok(())
            }
        }
    };
    let latencies = closed_loop(TASKS, JOBS, 0, job_of.clone(), one_at_a_time).await?;
    report(
        "one at a time, 16 tasks",
        JOBS,
        started.elapsed(),
        latencies,
        baseline,
    );

    // The batcher, as fast as it goes: BATCHED_SENDERS tasks each sending its next job as soon
    // as the last is metered.
    let meter = Meter::start(db.clone(), ledger.clone());
    let started = Instant::now();
    let batched = {
        let meter = meter.clone();
        move |job: FinishedJob| {
            let meter = meter.clone();
            async move {
                meter.meter(job).await?;
                Ok(())
            }
        }
    };
    let latencies =
        closed_loop(BATCHED_SENDERS, BATCHED_JOBS, JOBS, job_of.clone(), batched).await?;
    report(
        &format!("batcher, {BATCHED_SENDERS} senders"),
        BATCHED_JOBS,
        started.elapsed(),
        latencies,
        baseline,
    );

    // The batcher at a steady rate: a job every 200 µs (5,000 jobs/s) for 4 seconds, each
    // timed from its send to its answer.
    let first = JOBS + BATCHED_JOBS;
    let steady_jobs = STEADY_RATE * 4;
    let interval = Duration::from_secs(1) / u32::try_from(STEADY_RATE)?;
    let started = tokio::time::Instant::now();
    let mut sends = Vec::with_capacity(steady_jobs);
    for n in 0..steady_jobs {
        tokio::time::sleep_until(started + interval * u32::try_from(n)?).await;
        let (meter, job) = (meter.clone(), job_of(first + n));
        sends.push(tokio::spawn(async move {
            let one = Instant::now();
            meter.meter(job).await.map(|_| one.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(steady_jobs);
    for send in sends {
        latencies.push(send.await??);
    }
    report(
        &format!("batcher, {STEADY_RATE} jobs/s offered"),
        steady_jobs,
        started.elapsed(),
        latencies,
        baseline,
    );
    let metered: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_records")
        .fetch_one(db)
        .await?;
    anyhow::ensure!(
        metered == i64::try_from(JOBS + BATCHED_JOBS + steady_jobs)?,
        "every job metered once: {metered} records"
    );

    if std::env::var("TENKI_BENCH_USAGE").as_deref() == Ok("off") {
        return Ok(());
    }

    // Usage page latency as a workspace's history grows: ~1,000 jobs a day, so a month holds
    // ~30,000 records whatever the total.
    let workspace_id = workspaces[0];
    let month = Month::containing(Utc::now()).previous();
    for total in [100_000_i64, 1_000_000] {
        fill_history(db, workspace_id, total).await?;
        sqlx::query("ANALYZE usage_records").execute(db).await?;
        let mut times = Vec::new();
        for _ in 0..30 {
            let one = Instant::now();
            let view = usage::month_usage(db, workspace_id, month, Utc::now()).await?;
            times.push(one.elapsed());
            assert!(view.jobs > 0);
        }
        times.sort();
        println!(
            "usage page query, {total} records in the workspace ({month}): p50 {:.1} ms, p95 {:.1} ms",
            millis(percentile(&times, 50)),
            millis(percentile(&times, 95)),
        );
    }
    let plan: Vec<(String,)> = sqlx::query_as(
        "EXPLAIN SELECT label, count(*), sum(minutes) FROM usage_records
         WHERE workspace_id = $1 AND completed_at >= $2 AND completed_at < $3 GROUP BY label",
    )
    .bind(workspace_id)
    .bind(month.start())
    .bind(month.end())
    .fetch_all(db)
    .await?;
    println!("plan:");
    for (line,) in plan {
        println!("  {line}");
    }
    Ok(())
}

/// Adds usage records (1,000 a day, going back from now) until the workspace has `total`.
async fn fill_history(db: &PgPool, workspace_id: Uuid, total: i64) -> anyhow::Result<()> {
    let have: i64 =
        sqlx::query_scalar("SELECT count(*) FROM usage_records WHERE workspace_id = $1")
            .bind(workspace_id)
            .fetch_one(db)
            .await?;
    sqlx::query(
        "INSERT INTO usage_records (job_key, workspace_id, label, sku_label, premium, vcpus,
             repository, workflow, started_at, completed_at, minutes, free_vcpu_minutes,
             price_per_minute, premium_surcharge_per_minute, discount_basis_points, amount, metered_at)
         SELECT 'history:' || $1::text || ':' || n, $1, l.label, l.label, false, 2,
                'acme/repo-' || (n % 7), 'CI', at - interval '5 minutes', at, 5, 0, 300000, 0, 0, 1500000, at
         FROM generate_series($2::bigint, $3::bigint - 1) AS n,
              LATERAL (SELECT now() - (n * interval '86.4 seconds') AS at) t,
              LATERAL (SELECT (ARRAY['tenki-standard-2c','tenki-standard-4c','tenki-standard-8c'])[1 + n % 3] AS label) l",
    )
    .bind(workspace_id)
    .bind(have)
    .bind(total)
    .execute(db)
    .await?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// Meters `jobs` jobs (numbered from `first`) from `senders` tasks, each sending its next job as
/// soon as the last is answered; returns each job's latency.
async fn closed_loop<M, F>(
    senders: usize,
    jobs: usize,
    first: usize,
    job_of: impl Fn(usize) -> FinishedJob + Clone + Send + 'static,
    meter: M,
) -> anyhow::Result<Vec<Duration>>
where
    M: Fn(FinishedJob) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let tasks: Vec<_> = (0..senders)
        .map(|task| {
            let (meter, job_of) = (meter.clone(), job_of.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in 0..jobs / senders {
                    let job = job_of(first + task * (jobs / senders) + i);
                    let one = Instant::now();
                    meter(job).await?;
                    latencies.push(one.elapsed());
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(latencies)
}

/// Prints a phase's throughput, its ratio to the baseline and its per-job latency.
fn report(phase: &str, jobs: usize, took: Duration, mut latencies: Vec<Duration>, baseline: f64) {
    let rate = jobs as f64 / took.as_secs_f64();
    latencies.sort();
    println!(
        "metering, {phase}: {jobs} jobs in {:.2} s = {rate:.0} jobs/s ({:.0}% of baseline); per job p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        took.as_secs_f64(),
        100.0 * rate / baseline,
        millis(percentile(&latencies, 50)),
        millis(percentile(&latencies, 99)),
        millis(latencies.last().copied().unwrap_or_default()),
    );
}
