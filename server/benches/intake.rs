//! Benchmark: signed `workflow_job` deliveries accepted per second by `POST /webhooks/github`
//! (the real router over TCP: signature check, the action and installation read, one INSERT of
//! the delivery, which is its own queue) with 1, 8, 32 and 128 concurrent senders, and their
//! p50/p99 latency; each next to a same-run baseline of single-row INSERT transactions of the
//! same body at the same concurrency on the same pool.
//!
//! The background processing is not started for that figure, so it is the intake's alone. Then,
//! end to end with the whole server (drain, worker, GitHub and Kubernetes doubles): how long
//! after the last 2xx of a burst of 1,002 deliveries (334 jobs queued, started and completed, a
//! job started only once admitted) every job is recorded and metered, and the latency from 2xx
//! to processed of single deliveries on an idle server. `TENKI_BENCH_CONCURRENCY` and
//! `TENKI_BENCH_POOL` set the server's deliveries at once and pool (unset: its defaults). Run
//! with `bash scripts/bench.sh`. Bounded; traffic stays on 127.0.0.1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use tenki_core::github::intake::sign;
use uuid::Uuid;

/// Concurrent senders of each round of the intake figures.
const SENDERS: [usize; 4] = [1, 8, 32, 128];
/// Deliveries per round (rounded down to a multiple of the senders).
const DELIVERIES: usize = 8_000;
/// Concurrent senders of the end-to-end burst.
const BURST_SENDERS: usize = 32;
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

    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/github/workflow_job.queued.json"),
    )?;
    let body: serde_json::Value = serde_json::from_str(&fixture)?;
    let body = Arc::new(serde_json::to_vec(&body)?);
    println!(
        "machine: {} cores; {DELIVERIES} deliveries of {} bytes per round; pool of {POOL}",
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
    // The same, into a table shaped like the deliveries' (text, lz4 where the server has it).
    sqlx::raw_sql(
        "CREATE TABLE bench_baseline_text (LIKE bench_baseline);
         ALTER TABLE bench_baseline_text ALTER COLUMN body TYPE text;
         DO $$ BEGIN
             IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression'
                        AND 'lz4' = ANY (enumvals)) THEN
                 ALTER TABLE bench_baseline_text ALTER COLUMN body SET COMPRESSION lz4;
             END IF;
         END $$",
    )
    .execute(&db)
    .await?;
    let text = Arc::new(String::from_utf8(body.to_vec())?);
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
        .pool_max_idle_per_host(128)
        .build()?;

    // How the ratio moves with the number of concurrent senders; the baseline and the intake
    // take turns at each, on the same pool of POOL connections.
    let mut sent = 0;
    // TENKI_BENCH_INTAKE=off: only the end-to-end figures.
    let rounds = if std::env::var("TENKI_BENCH_INTAKE").is_ok_and(|v| v == "off") {
        &[][..]
    } else {
        &SENDERS[..]
    };
    for &senders in rounds {
        let baseline = insert_baseline(&db, &text, senders, "bench_baseline", "$2::jsonb").await?;
        let intake = send_all(
            &client,
            &address,
            "workflow_job",
            &body,
            &signature,
            senders,
        )
        .await?;
        sent += intake.sent;
        println!(
            "{senders:>3} senders: baseline INSERT {:.0} tx/s (p50 {:.1} ms, p99 {:.1} ms); webhook intake {:.0} deliveries/s ({:.0}% of baseline; p50 {:.1} ms, p99 {:.1} ms)",
            baseline.rate,
            millis(percentile(&baseline.latencies, 50)),
            millis(percentile(&baseline.latencies, 99)),
            intake.rate,
            intake.rate / baseline.rate * 100.0,
            millis(percentile(&intake.latencies, 50)),
            millis(percentile(&intake.latencies, 99)),
        );
        if senders == 32 {
            let text_baseline =
                insert_baseline(&db, &text, senders, "bench_baseline_text", "$2").await?;
            println!(
                "{senders:>3} senders, baseline into a text column: {:.0} tx/s (p50 {:.1} ms, p99 {:.1} ms); the intake is {:.0}% of it",
                text_baseline.rate,
                millis(percentile(&text_baseline.latencies, 50)),
                millis(percentile(&text_baseline.latencies, 99)),
                intake.rate / text_baseline.rate * 100.0,
            );
            // The same HTTP path for an event Tenki stores but does not process.
            let ignored = send_all(
                &client,
                &address,
                "workflow_run",
                &body,
                &signature,
                senders,
            )
            .await?;
            sent += ignored.sent;
            println!(
                "{senders:>3} senders, unused event: {:.0} deliveries/s ({:.0}% of baseline); p50 {:.1} ms, p99 {:.1} ms (stored, never processed)",
                ignored.rate,
                ignored.rate / baseline.rate * 100.0,
                millis(percentile(&ignored.latencies, 50)),
                millis(percentile(&ignored.latencies, 99))
            );
        }
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM github_deliveries")
        .fetch_one(&db)
        .await?;
    anyhow::ensure!(
        stored == sent as i64,
        "sent {sent}, stored {stored} deliveries"
    );
    // Nobody processes what was sent above; the end-to-end run starts from an empty backlog.
    sqlx::query(
        "UPDATE github_deliveries SET status = 'processed', next_attempt_at = NULL
         WHERE status = 'queued'",
    )
    .execute(&db)
    .await?;
    end_to_end(&db, url).await?;
    db.close().await;
    Ok(())
}

/// Jobs in the end-to-end burst: each sends queued, in_progress and completed.
const BURST_JOBS: usize = 334;

/// The whole server on `db`: a burst of `BURST_JOBS` jobs' deliveries, then single deliveries.
async fn end_to_end(db: &sqlx::PgPool, url: &str) -> anyhow::Result<()> {
    use server::sandbox::github::{SANDBOX_USER, SampleJob};
    // Unset: the server's defaults.
    let concurrency = std::env::var("TENKI_BENCH_CONCURRENCY").ok();
    // TENKI_BENCH_PROVISIONING=off: the workspace is suspended, so admission blocks its queued
    // jobs and no runner is provisioned (the doubles of GitHub and Kubernetes, which share these
    // 2 cores, stay idle); what is left is recording, starting and metering the jobs.
    let provisioning =
        std::env::var("TENKI_BENCH_PROVISIONING").unwrap_or_else(|_| "on".to_owned());
    let settings = server::settings::Settings::from_lookup(|name| match name {
        "TENKI_DATABASE_URL" => Some(url.to_owned()),
        "TENKI_TIGERBEETLE_ADDRESSES" => std::env::var("TENKI_TIGERBEETLE_ADDRESSES").ok(),
        "TENKI_LOG" => Some("error".to_owned()),
        "TENKI_DATABASE_MAX_CONNECTIONS" => std::env::var("TENKI_BENCH_POOL").ok(),
        "TENKI_DELIVERY_CONCURRENCY" => concurrency.clone(),
        _ => None,
    })?;
    let (delivery_concurrency, pool) = (
        settings.delivery_concurrency,
        settings.database_max_connections,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    // The server's own pool, of the size it has in production; the bench's queries use its own.
    let server_db = tenki_core::db::pool(url, pool)?;
    let application = server::Application::build_on(server_db, &settings, &address).await?;
    let github = application
        .github_double
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the bench runs against the GitHub double"))?;
    let ledger = application.core.ledger.clone();
    tokio::spawn(server::run_until_stopped(
        application,
        listener,
        std::future::pending(),
    ));
    let installation_id = github.install(SANDBOX_USER, "bench", &["app"]);
    let signed_up = tenki_core::identity::sign_up(
        db,
        &ledger,
        &format!("{}@bench.test", Uuid::new_v4()),
        "a long enough password",
        "Bench",
        &tenki_core::identity::SignUpClient::LOCAL,
        chrono::Utc::now(),
    )
    .await?;
    tenki_core::identity::verification::verify(
        db,
        &ledger,
        &signed_up.email_verification,
        chrono::Utc::now(),
    )
    .await?;
    let workspace_id = signed_up.workspace_id;
    sqlx::query(
        "UPDATE workspaces SET payment_method = 'valid',
             suspended_at = CASE WHEN $2 = 'off' THEN now() END
         WHERE id = $1",
    )
    .bind(workspace_id)
    .bind(&provisioning)
    .execute(db)
    .await?;
    sqlx::query("INSERT INTO github_installations VALUES ($1, 'bench', 'Organization', $2, 'active', now())")
        .bind(installation_id)
        .bind(workspace_id)
        .execute(db)
        .await?;
    let stages = |job: &SampleJob| {
        let mut started = job.clone();
        started.status = "in_progress";
        started.started_at = Some(job.created_at + chrono::Duration::seconds(5));
        started.runner_name = Some(format!("bench-runner-{}", job.id));
        let mut completed = started.clone();
        completed.status = "completed";
        completed.completed_at = Some(job.created_at + chrono::Duration::seconds(185));
        completed.conclusion = Some("success");
        [job.clone(), started, completed]
            .map(|stage| github.workflow_job_body(installation_id, "bench/app", &stage))
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(BURST_SENDERS)
        .build()?;
    let secret = server::settings::SANDBOX_WEBHOOK_SECRET.as_bytes();
    let send = move |body: serde_json::Value| {
        let client = client.clone();
        let address = format!("{address}/webhooks/github");
        async move {
            let body = serde_json::to_vec(&body)?;
            let delivery = Uuid::new_v4().to_string();
            let signature = sign(secret, &body);
            post_delivery(
                &client,
                &address,
                "workflow_job",
                &delivery,
                &signature,
                body,
            )
            .await?;
            Ok::<_, anyhow::Error>(delivery)
        }
    };

    // The burst: every job's three deliveries in order, BURST_SENDERS jobs at a time. Each job ran on
    // its own runner that Tenki started, so its minutes are billed.
    let burst: Vec<SampleJob> = (0..BURST_JOBS)
        .map(|_| SampleJob::queued("tenki-standard-2c"))
        .collect();
    let runners: Vec<String> = burst
        .iter()
        .map(|job| format!("bench-runner-{}", job.id))
        .collect();
    sqlx::query(
        "INSERT INTO runners (name, workspace_id, installation_id, label, namespace, github_scope,
             github_job_id, run_attempt, try, state, created_at, updated_at)
         SELECT name, $1, $2, 'tenki-standard-2c', 'tenki-bench', 'orgs/bench', job, 1, 1,
                'starting', now(), now()
         FROM unnest($3::text[], $4::bigint[]) AS r(name, job)",
    )
    .bind(workspace_id)
    .bind(installation_id)
    .bind(&runners)
    .bind(burst.iter().map(|job| job.id).collect::<Vec<i64>>())
    .execute(db)
    .await?;
    // The workspace has bought slots for the whole burst, so the 40 included slots do not pace it.
    sqlx::query("INSERT INTO workspace_extra_slots (workspace_id, runner_class, slots) VALUES ($1, 'x64', $2)")
        .bind(workspace_id)
        .bind(i32::try_from(BURST_JOBS)?)
        .execute(db)
        .await?;
    let burst = Arc::new(Burst::new(
        burst.iter().map(|job| (job.id, stages(job))).collect(),
    ));
    let metrics_before = server_metrics();
    let started = Instant::now();
    let decided = tokio::spawn(Arc::clone(&burst).follow_admission(db.clone(), installation_id));
    let mut senders = Vec::new();
    for _ in 0..BURST_SENDERS {
        let burst = Arc::clone(&burst);
        let send = send.clone();
        senders.push(tokio::spawn(async move {
            while let Some(bodies) = burst.next().await? {
                for body in bodies {
                    send(body).await?;
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for sender in senders {
        sender.await??;
    }
    let sent_in = started.elapsed();
    decided.abort();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut metered = 0_i64;
    while Instant::now() < deadline {
        metered = sqlx::query_scalar(
            "SELECT count(*) FROM github_jobs WHERE installation_id = $1 AND metered",
        )
        .bind(installation_id)
        .fetch_one(db)
        .await?;
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM github_deliveries WHERE installation_id = $1 AND status <> 'processed'",
        )
        .bind(installation_id)
        .fetch_one(db)
        .await?;
        if metered == BURST_JOBS as i64 && waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let processed_after = started.elapsed() - sent_in;
    anyhow::ensure!(metered == BURST_JOBS as i64, "only {metered} jobs metered");
    let (retried, attempts): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE attempts > 1), coalesce(sum(attempts), 0)
         FROM github_deliveries WHERE installation_id = $1",
    )
    .bind(installation_id)
    .fetch_one(db)
    .await?;
    let errors: Vec<(String, i64)> = sqlx::query_as(
        "SELECT left(coalesce(error, ''), 120), count(*) FROM github_deliveries
         WHERE installation_id = $1 AND attempts > 1 GROUP BY 1",
    )
    .bind(installation_id)
    .fetch_all(db)
    .await?;
    println!(
        "  {retried} deliveries needed more than one attempt ({attempts} attempts in all): {errors:?}"
    );
    // What the burst cost: TigerBeetle requests (each a durable write), processing time by the
    // job's status, metering batches.
    let metrics_after = server_metrics();
    for (series, (count, sum)) in &metrics_after {
        let (count_before, sum_before) = metrics_before.get(series).copied().unwrap_or_default();
        let (count, sum) = (count - count_before, sum - sum_before);
        if series.starts_with("metering_batch_jobs") {
            println!("  metering: {count:.0} batches, {sum:.0} jobs");
        } else {
            println!(
                "  {series}: {count:.0} requests, {:.0} ms in all",
                sum * 1_000.0
            );
        }
    }
    println!(
        "end to end, {} deliveries at once on a pool of {}, provisioning {provisioning}: {} deliveries sent in {:.2} s ({:.0}/s); every job recorded and metered {:.0} ms after the last 2xx",
        delivery_concurrency,
        pool,
        BURST_JOBS * 3,
        sent_in.as_secs_f64(),
        (BURST_JOBS * 3) as f64 / sent_in.as_secs_f64(),
        millis(processed_after)
    );

    // Single deliveries on an idle server: from the 2xx to processed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut latencies = Vec::new();
    for _ in 0..200 {
        let [queued, _, _] = stages(&SampleJob::queued("tenki-standard-2c"));
        let at = Instant::now();
        let delivery = send(queued).await?;
        loop {
            let status: String =
                sqlx::query_scalar("SELECT status FROM github_deliveries WHERE delivery_id = $1")
                    .bind(&delivery)
                    .fetch_one(db)
                    .await?;
            if status == "processed" {
                break;
            }
            anyhow::ensure!(
                at.elapsed() < Duration::from_secs(30),
                "not processed in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(at.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort();
    println!(
        "single deliveries, idle server: sent to processed p50 {:.1} ms, p99 {:.1} ms",
        millis(percentile(&latencies, 50)),
        millis(percentile(&latencies, 99))
    );
    Ok(())
}

/// What one round measured.
struct Measured {
    sent: usize,
    /// Per second.
    rate: f64,
    /// Sorted.
    latencies: Vec<Duration>,
}

/// Runs `DELIVERIES` calls of `one` (given a fresh id each) from `senders` concurrent tasks.
/// Single-row INSERT transactions of the body into `table` from `senders` tasks; `body` is how
/// the statement takes the text (`$2::jsonb` or `$2`).
async fn insert_baseline(
    db: &sqlx::PgPool,
    text: &Arc<String>,
    senders: usize,
    table: &str,
    body: &str,
) -> anyhow::Result<Measured> {
    let statement = Arc::new(format!(
        "INSERT INTO {table} (id, event, body, received_at) VALUES ($1, 'workflow_job', {body}, now())"
    ));
    measure(senders, {
        let (db, text) = (db.clone(), Arc::clone(text));
        move |id| {
            let (db, text, statement) = (db.clone(), Arc::clone(&text), Arc::clone(&statement));
            async move {
                sqlx::query(sqlx::AssertSqlSafe(statement.as_str()))
                    .bind(id)
                    .bind(text.as_str())
                    .execute(&db)
                    .await?;
                Ok(())
            }
        }
    })
    .await
}

async fn measure<F, Fut>(senders: usize, one: F) -> anyhow::Result<Measured>
where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let each = DELIVERIES / senders;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(each);
            for _ in 0..each {
                let at = Instant::now();
                one(Uuid::new_v4().to_string()).await?;
                latencies.push(at.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(each * senders);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    Ok(Measured {
        sent: latencies.len(),
        rate,
        latencies,
    })
}

/// Sends `DELIVERIES` signed deliveries of `event` from `senders` concurrent senders; every
/// answer must be 202.
async fn send_all(
    client: &reqwest::Client,
    address: &str,
    event: &'static str,
    body: &Arc<Vec<u8>>,
    signature: &Arc<String>,
    senders: usize,
) -> anyhow::Result<Measured> {
    let (client, address) = (client.clone(), address.to_owned());
    let (body, signature) = (Arc::clone(body), Arc::clone(signature));
    measure(senders, move |delivery| {
        let (client, address) = (client.clone(), address.clone());
        let (body, signature) = (Arc::clone(&body), Arc::clone(&signature));
        async move {
            post_delivery(
                &client,
                &address,
                event,
                &delivery,
                &signature,
                body.to_vec(),
            )
            .await
        }
    })
    .await
}

/// Posts one signed delivery; the intake must answer 202.
async fn post_delivery(
    client: &reqwest::Client,
    address: &str,
    event: &str,
    delivery: &str,
    signature: &str,
    body: Vec<u8>,
) -> anyhow::Result<()> {
    let response = client
        .post(address)
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 202,
        "intake answered {}",
        response.status()
    );
    Ok(())
}

/// The burst's deliveries in the order GitHub sends them: a job's `queued` first, its
/// `in_progress` and `completed` only once Tenki has admitted it, since a Tenki runner exists only
/// for an admitted job. Senders start admitted jobs before queueing new ones.
struct Burst {
    /// (queued, in_progress and completed) of the jobs not queued yet.
    unsent: std::sync::Mutex<Vec<(i64, [serde_json::Value; 3])>>,
    /// Jobs queued, waiting for admission: their `in_progress` and `completed`.
    queued: std::sync::Mutex<std::collections::HashMap<i64, [serde_json::Value; 2]>>,
    /// Jobs admitted, ready to start.
    admitted: std::sync::Mutex<Vec<[serde_json::Value; 2]>>,
}

/// A lock of the burst's state; poisoned only when a sender panicked.
fn locked<T>(state: &std::sync::Mutex<T>) -> anyhow::Result<std::sync::MutexGuard<'_, T>> {
    state
        .lock()
        .map_err(|_| anyhow::anyhow!("a sender panicked"))
}

impl Burst {
    fn new(jobs: Vec<(i64, [serde_json::Value; 3])>) -> Self {
        Self {
            unsent: std::sync::Mutex::new(jobs),
            queued: std::sync::Mutex::default(),
            admitted: std::sync::Mutex::default(),
        }
    }

    /// The next deliveries a sender sends in order; `None` once every job has been sent.
    async fn next(&self) -> anyhow::Result<Option<Vec<serde_json::Value>>> {
        // Bounded: admission takes milliseconds; a minute means it is broken.
        for _ in 0..30_000 {
            {
                // Held while both other lists are read, as `follow_admission` holds it while it
                // moves jobs: a job is always in one of the three.
                let mut waiting = locked(&self.queued)?;
                if let Some(started) = locked(&self.admitted)?.pop() {
                    return Ok(Some(started.into()));
                }
                if let Some((id, [queued, in_progress, completed])) = locked(&self.unsent)?.pop() {
                    waiting.insert(id, [in_progress, completed]);
                    return Ok(Some(vec![queued]));
                }
                if waiting.is_empty() {
                    return Ok(None);
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        anyhow::bail!("jobs still not admitted after a minute")
    }

    /// Moves the jobs Tenki has admitted to the senders, looking every 5 ms (one query for all).
    async fn follow_admission(
        self: Arc<Self>,
        db: sqlx::PgPool,
        installation_id: i64,
    ) -> anyhow::Result<()> {
        loop {
            // With TENKI_BENCH_PROVISIONING=off every job is blocked, and is started anyway.
            let admitted: Vec<i64> = sqlx::query_scalar(
                "SELECT github_job_id FROM github_jobs
                 WHERE installation_id = $1 AND admission IN ('admitted', 'blocked') AND status = 'queued'",
            )
            .bind(installation_id)
            .fetch_all(&db)
            .await?;
            {
                let mut queued = locked(&self.queued)?;
                let mut ready = locked(&self.admitted)?;
                ready.extend(admitted.iter().filter_map(|id| queued.remove(id)));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The server's TigerBeetle requests, delivery processing times and metering batch sizes so far:
/// (count, sum) per series, from its Prometheus metrics.
fn server_metrics() -> std::collections::BTreeMap<String, (f64, f64)> {
    let mut totals = std::collections::BTreeMap::<String, (f64, f64)>::new();
    for line in server::telemetry::metrics_handle().render().lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        for prefix in [
            "ledger_request_seconds",
            "metering_batch_jobs",
            "github_delivery_processing_seconds",
            "github_delivery_claim_seconds",
        ] {
            let Some(rest) = name.strip_prefix(prefix) else {
                continue;
            };
            if let Some(labels) = rest.strip_prefix("_count") {
                totals.entry(format!("{prefix}{labels}")).or_default().0 += value;
            } else if let Some(labels) = rest.strip_prefix("_sum") {
                totals.entry(format!("{prefix}{labels}")).or_default().1 += value;
            }
        }
    }
    totals
}
