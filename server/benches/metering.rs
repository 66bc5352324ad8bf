//! Benchmark: jobs metered per second end to end (PostgreSQL + TigerBeetle) with 16 concurrent
//! tasks, next to a same-run baseline of plain single-row INSERTs at the same concurrency; and
//! the Usage page's query latency with 100,000 and then 1,000,000 usage records in a workspace.
//!
//! Run with `bash scripts/bench.sh` (it starts the services). Loops are bounded; traffic stays on
//! 127.0.0.1. Results go to docs/benchmarks.md by hand.

use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tenki_core::ledger::Ledger;
use tenki_core::metering::{self, FinishedJob, JobKey};
use tenki_core::usage::{self, Month};
use uuid::Uuid;

const TASKS: usize = 16;
const JOBS: usize = 4_000;
const WORKSPACES: usize = 64;

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
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (db, ledger, workspaces) = (db.clone(), ledger.clone(), workspaces.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in 0..JOBS / TASKS {
                    let n = task * (JOBS / TASKS) + i;
                    let completed_at = Utc::now();
                    let job = FinishedJob {
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
                    };
                    let one = Instant::now();
                    metering::meter_job(&db, &ledger, &job, Utc::now()).await?;
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
    let metered = JOBS as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    println!(
        "metering: {metered:.0} jobs/s ({:.0}% of baseline); per job p50 {:.1} ms, p99 {:.1} ms",
        100.0 * metered / baseline,
        millis(percentile(&latencies, 50)),
        millis(percentile(&latencies, 99)),
    );

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
