//! Benchmark: jobs metered per second end to end (PostgreSQL + TigerBeetle), one at a time by 16
//! concurrent tasks and through the metering batcher (as many as it can, and at a steady 5,000
//! jobs/s), next to a same-run baseline of plain single-row INSERTs; and the Usage page, the
//! Overview and the CSV export with 100,000 and then 1,000,000 jobs in one workspace's month, next
//! to the same figures summed from the records (`TENKI_BENCH_USAGE=off` skips that part).
//!
//! Run with `bash scripts/bench.sh` (it starts the services). Loops are bounded; traffic stays on
//! 127.0.0.1. Results go to docs/benchmarks.md by hand.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use peak_alloc::PeakAlloc;

use chrono::Utc;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tenki_core::ledger::Ledger;
use tenki_core::metering::{self, FinishedJob, JobKey, Meter};
use tenki_core::usage::{self, Month};
use tenki_core::workspaces::{self, Membership, Role};
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
        tenki_core::identity::verification::verify(
            db,
            ledger,
            &signed_up.email_verification,
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

    usage_pages(db, ledger, workspaces[0]).await
}

/// The Usage page's server function and the Overview as one workspace's month grows to 100,000
/// and then 1,000,000 jobs, next to the same figures summed from the records themselves (what
/// the Usage page read before the rollups); then the CSV export of that month: time and peak
/// memory, streamed and (as before) all in memory.
async fn usage_pages(db: &PgPool, ledger: &Ledger, workspace_id: Uuid) -> anyhow::Result<()> {
    let month = Month::containing(Utc::now()).previous();
    let member = Membership {
        workspace_id,
        workspace_name: "Bench".to_owned(),
        role: Role::Owner,
    };
    let late_in_month = month.end() - chrono::Duration::seconds(1);
    for total in [100_000_i64, 1_000_000] {
        let filling = Instant::now();
        fill_month(db, workspace_id, month, total).await?;
        println!(
            "filled {month} to {total} jobs in {:.1} s (records and their rollups)",
            filling.elapsed().as_secs_f64()
        );
        sqlx::query("ANALYZE usage_records").execute(db).await?;
        sqlx::query("ANALYZE usage_daily, usage_monthly")
            .execute(db)
            .await?;
        let rollups: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM usage_daily WHERE workspace_id = $1)
                  + (SELECT count(*) FROM usage_monthly WHERE workspace_id = $1)",
        )
        .bind(workspace_id)
        .fetch_one(db)
        .await?;
        let mut page = Vec::new();
        let mut plain = Vec::new();
        let mut overview = Vec::new();
        for _ in 0..30 {
            let one = Instant::now();
            let view = usage::month_usage(db, workspace_id, month, Utc::now()).await?;
            page.push(one.elapsed());
            anyhow::ensure!(view.jobs == total, "the page counts {} jobs", view.jobs);
            let one = Instant::now();
            let jobs = month_from_records(db, workspace_id, month).await?;
            plain.push(one.elapsed());
            anyhow::ensure!(jobs == total, "the records count {jobs} jobs");
            let one = Instant::now();
            let figures = workspaces::overview(db, ledger, &member, late_in_month).await?;
            overview.push(one.elapsed());
            anyhow::ensure!(figures.month_to_date_amount > 0, "a cost this month");
        }
        for (what, times) in [
            ("Usage page (usage::month_usage, rollups)", &mut page),
            ("the same figures from the records", &mut plain),
            ("Overview (workspaces::overview)", &mut overview),
        ] {
            times.sort();
            println!(
                "{what}, {total} jobs in {month} ({rollups} rollup rows): p50 {:.1} ms, p95 {:.1} ms",
                millis(percentile(times, 50)),
                millis(percentile(times, 95)),
            );
        }
    }
    let plan: Vec<(String,)> = sqlx::query_as(
        "EXPLAIN SELECT repository, sum(jobs), sum(minutes) FROM usage_monthly
         WHERE workspace_id = $1 AND month = $2 GROUP BY repository",
    )
    .bind(workspace_id)
    .bind(month.first_day())
    .fetch_all(db)
    .await?;
    println!("plan of a monthly rollups query:");
    for (line,) in plan {
        println!("  {line}");
    }

    // The CSV export of the million-job month: streamed (production), then all in memory.
    HEAP.reset_peak_usage();
    let before = HEAP.current_usage();
    let one = Instant::now();
    let mut csv = std::pin::pin!(usage::month_csv(db.clone(), workspace_id, month));
    let (mut bytes, mut lines) = (0_usize, 0_usize);
    while let Some(chunk) = csv.next().await {
        let chunk = chunk?;
        bytes += chunk.len();
        lines += chunk.matches('\n').count();
    }
    println!(
        "CSV export streamed: {} rows, {:.0} MB in {:.1} s, peak heap +{:.1} MiB",
        lines - 1,
        bytes as f64 / 1e6,
        one.elapsed().as_secs_f64(),
        mib(HEAP.peak_usage().saturating_sub(before)),
    );
    anyhow::ensure!(lines == 1_000_001, "a header and a row per job: {lines}");
    HEAP.reset_peak_usage();
    let before = HEAP.current_usage();
    let one = Instant::now();
    let rows: Vec<CsvRow> = sqlx::query_as(
        "SELECT job_key, completed_at, repository, workflow, label, vcpus, minutes,
                    free_vcpu_minutes, amount
             FROM usage_records WHERE workspace_id = $1 AND completed_at >= $2 AND completed_at < $3
             ORDER BY completed_at, job_key",
    )
    .bind(workspace_id)
    .bind(month.start())
    .bind(month.end())
    .fetch_all(db)
    .await?;
    let mut text = String::new();
    for row in &rows {
        text.push_str(&format!("{row:?}\n"));
    }
    println!(
        "CSV export all in memory (before): {} rows, {:.0} MB in {:.1} s, peak heap +{:.1} MiB",
        rows.len(),
        text.len() as f64 / 1e6,
        one.elapsed().as_secs_f64(),
        mib(HEAP.peak_usage().saturating_sub(before)),
    );
    Ok(())
}

/// The columns the CSV export writes, as the export before streaming read them all at once.
type CsvRow = (
    String,
    chrono::DateTime<Utc>,
    String,
    String,
    String,
    i32,
    i64,
    i64,
    i64,
);

/// The Usage page's figures summed from the month's records (the query the page ran before the
/// rollups); returns the month's jobs.
async fn month_from_records(db: &PgPool, workspace_id: Uuid, month: Month) -> anyhow::Result<i64> {
    let rows: Vec<(String, String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT CASE WHEN GROUPING(label) = 0 THEN 'label'
                     WHEN GROUPING(workflow) = 0 THEN 'workflow' ELSE 'repository' END,
                CASE WHEN GROUPING(label) = 0 THEN label
                     WHEN GROUPING(workflow) = 0 THEN repository || ' · ' || workflow
                     ELSE repository END,
                count(*), sum(minutes)::bigint, sum(free_vcpu_minutes)::bigint, sum(amount)::bigint
         FROM usage_records WHERE workspace_id = $1 AND completed_at >= $2 AND completed_at < $3
         GROUP BY GROUPING SETS ((label), (repository), (repository, workflow))
         ORDER BY 1, sum(amount) DESC, 2",
    )
    .bind(workspace_id)
    .bind(month.start())
    .bind(month.end())
    .fetch_all(db)
    .await?;
    let daily: Vec<(chrono::NaiveDate, String, i64, i64)> = sqlx::query_as(
        "SELECT (completed_at AT TIME ZONE 'UTC')::date, label, sum(minutes)::bigint,
                sum(amount)::bigint
         FROM usage_records WHERE workspace_id = $1 AND completed_at >= $2 AND completed_at < $3
         GROUP BY 1, label ORDER BY 1, label",
    )
    .bind(workspace_id)
    .bind(month.start())
    .bind(month.end())
    .fetch_all(db)
    .await?;
    anyhow::ensure!(!daily.is_empty(), "a daily chart");
    Ok(rows
        .iter()
        .filter(|row| row.0 == "label")
        .map(|row| row.2)
        .sum())
}

/// Adds jobs to `month` until it holds `total`, spread evenly over its days, over 50
/// repositories with 4 workflows each and 4 labels (a large customer's variety: about 24,000
/// rollup rows a month). The rollups follow through the production triggers.
async fn fill_month(
    db: &PgPool,
    workspace_id: Uuid,
    month: Month,
    total: i64,
) -> anyhow::Result<()> {
    let have: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM usage_records
         WHERE workspace_id = $1 AND completed_at >= $2 AND completed_at < $3",
    )
    .bind(workspace_id)
    .bind(month.start())
    .bind(month.end())
    .fetch_one(db)
    .await?;
    let seconds = (month.end() - month.start()).num_seconds();
    // In slices of 100,000, so no statement's transition table is larger.
    let mut from = have;
    while from < total {
        let to = (from + 100_000).min(total);
        sqlx::query(
            "INSERT INTO usage_records (job_key, workspace_id, label, sku_label, premium, vcpus,
                 repository, workflow, started_at, completed_at, minutes, free_vcpu_minutes,
                 price_per_minute, premium_surcharge_per_minute, discount_basis_points, amount, metered_at)
             SELECT 'month:' || $1::text || ':' || n, $1, l.label, l.label, false, 2,
                    'acme/repo-' || (n % 50), 'workflow-' || (n / 50 % 4), at - interval '5 minutes',
                    at, 5, 0, 300000, 0, 0, 1500000, at
             FROM generate_series($2::bigint, $3::bigint - 1) AS n,
                  LATERAL (SELECT $4::timestamptz + (n * 7919 % $5) * interval '1 second' AS at) t,
                  LATERAL (SELECT (ARRAY['tenki-standard-2c','tenki-standard-4c','tenki-standard-8c',
                                         'tenki-standard-16c'])[1 + n / 200 % 4] AS label) l",
        )
        .bind(workspace_id)
        .bind(from)
        .bind(to)
        .bind(month.start())
        .bind(seconds)
        .execute(db)
        .await?;
        from = to;
    }
    Ok(())
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Counts the heap: the CSV export's memory is measured on it, not on the resident set, which
/// keeps pages the earlier phases freed.
#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

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
