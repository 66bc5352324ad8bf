//! Benchmark of the monthly cycle (SPEC §9) for 10,000 workspaces with usage, against the
//! in-process Stripe double and real PostgreSQL and TigerBeetle: from `run_cycle` to every
//! invoice paid (lines built, Stripe invoice created, one item per line, finalized, paid, the
//! payment and Stripe's fee in the ledger), with the `invoice.paid` events through the intake.
//! Next to it, the same-run baseline: as many plain Stripe calls straight to the double, at the
//! same concurrency, through the same client (what the cycle cannot go below).
//!
//! Run with `bash scripts/bench.sh` (it starts the services). Loops are bounded; traffic stays on
//! 127.0.0.1. Results go to docs/benchmarks.md by hand.

use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

#[path = "support/scratch.rs"]
mod scratch;

/// Workspaces with usage last month.
const WORKSPACES: usize = 10_000;
/// Ledger accounts opened at once while seeding.
const SEEDING_CONCURRENCY: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Warnings and errors (a worker restart, a failed step) are part of the result.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .init();
    let addresses = std::env::var("TENKI_TIGERBEETLE_ADDRESSES")?;
    let workspaces = std::env::var("TENKI_BENCH_WORKSPACES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(WORKSPACES);
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()?.get()
    );
    // Worker concurrencies to run, e.g. `TENKI_BENCH_CONCURRENCY=16`.
    let concurrencies =
        std::env::var("TENKI_BENCH_CONCURRENCY").unwrap_or_else(|_| "16,64".to_owned());
    for concurrency in concurrencies.split(',').map(str::trim) {
        let scratch = scratch::ScratchDatabase::create().await?;
        let result = cycle(&scratch.url, &addresses, concurrency, workspaces).await;
        scratch.drop_it().await?;
        result?;
    }
    Ok(())
}

async fn cycle(
    url: &str,
    addresses: &str,
    concurrency: &str,
    workspaces: usize,
) -> anyhow::Result<()> {
    let db = PgPoolOptions::new()
        .max_connections(80)
        .connect(url)
        .await?;
    let settings = server::settings::Settings::from_lookup(|name| match name {
        "TENKI_TIGERBEETLE_ADDRESSES" => Some(addresses.to_owned()),
        "TENKI_LOG" => Some("error".to_owned()),
        "TENKI_ADDR" => Some("127.0.0.1:0".to_owned()),
        "TENKI_DATABASE_MAX_CONNECTIONS" => Some("80".to_owned()),
        "TENKI_WORKER_CONCURRENCY" => Some(concurrency.to_owned()),
        _ => None,
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let application = server::Application::build_on(db.clone(), &settings, &address).await?;
    let stripe_double = application
        .stripe_double
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the bench runs against the Stripe double"))?;
    let core = application.core.clone();
    tokio::spawn(server::run_until_stopped(
        application,
        listener,
        std::future::pending(),
    ));

    // Last month: per workspace a paying customer with a card, its ledger accounts, and two
    // usage records ($6.00 on 2c, $4.50 on 4c).
    let now = Utc::now();
    let month = tenki_core::usage::Month::containing(now).previous();
    let seeded = Instant::now();
    let mut tasks: tokio::task::JoinSet<anyhow::Result<()>> = tokio::task::JoinSet::new();
    let ids: Vec<Uuid> = (0..workspaces).map(|_| Uuid::new_v4()).collect();
    let customers: Vec<String> = ids
        .iter()
        .map(|id| stripe_double.customer_with_card(&id.to_string()))
        .collect();
    sqlx::query(
        "INSERT INTO workspaces (id, name, money_account_id, free_minutes_account_id, created_at,
             payment_method, stripe_customer_id)
         SELECT id, 'Bench', gen_random_uuid(), gen_random_uuid(), now(), 'valid', customer
         FROM unnest($1::uuid[], $2::text[]) AS t(id, customer)",
    )
    .bind(&ids)
    .bind(&customers)
    .execute(&db)
    .await?;
    for chunk in ids.chunks(ids.len().div_ceil(SEEDING_CONCURRENCY)) {
        let (ledger, chunk) = (core.ledger.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for id in chunk {
                ledger.open_workspace(id).await?;
            }
            Ok(())
        });
    }
    while let Some(opened) = tasks.join_next().await {
        opened??;
    }
    let day = month.start() + chrono::Duration::days(9);
    sqlx::query(
        "INSERT INTO usage_records (job_key, workspace_id, label, sku_label, premium, vcpus,
             repository, workflow, started_at, completed_at, minutes, free_vcpu_minutes,
             price_per_minute, premium_surcharge_per_minute, discount_basis_points, amount,
             metered_at)
         SELECT id::text || ':' || n, id, s.label, s.label, false, s.vcpus, 'acme/web', 'CI',
                $2 - interval '1 hour', $2, 60 * s.factor, 0, s.price, 0, 0,
                60 * s.factor * s.price, $2
         FROM unnest($1::uuid[]) AS id,
              (VALUES (1, 'tenki-standard-2c', 2, 10, 1000000),
                      (2, 'tenki-standard-4c', 4, 5, 1500000)) AS s(n, label, vcpus, factor, price)",
    )
    .bind(&ids)
    .bind(day)
    .execute(&db)
    .await?;
    println!(
        "worker concurrency {concurrency}: seeded {workspaces} workspaces in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );

    let requests_before = stripe_double.requests().len();
    let started = Instant::now();
    let report = tenki_core::billing::invoices::run_cycle(&db, month.first_day(), now).await?;
    let created_in = started.elapsed();
    let deadline = started + Duration::from_secs(600);
    let mut paid: i64 = 0;
    while Instant::now() < deadline {
        paid = sqlx::query_scalar("SELECT count(*) FROM invoices WHERE state = 'paid'")
            .fetch_one(&db)
            .await?;
        if paid == i64::try_from(workspaces)? {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let paid_in = started.elapsed();
    let mut events_left: i64 = 1;
    while Instant::now() < deadline && events_left > 0 {
        events_left = sqlx::query_scalar(
            "SELECT count(*) FROM stripe_events WHERE status NOT IN ('processed', 'ignored')",
        )
        .fetch_one(&db)
        .await?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let events_in = started.elapsed();
    let calls = stripe_double.requests().len() - requests_before;
    let totals: (i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(amount_cents), 0)::bigint, coalesce(sum(fee_cents), 0)::bigint
         FROM payments",
    )
    .fetch_one(&db)
    .await?;
    println!(
        "  cycle: {} invoices created in {:.2} s; {paid} paid after {:.1} s ({:.0} invoices/s); \
         invoice.paid events processed after {:.1} s; {calls} Stripe calls; \
         payments ${:.2}, fees ${:.2}",
        report.created,
        created_in.as_secs_f64(),
        paid_in.as_secs_f64(),
        paid as f64 / paid_in.as_secs_f64(),
        events_in.as_secs_f64(),
        totals.0 as f64 / 100.0,
        totals.1 as f64 / 100.0,
    );

    // Baseline: the same number of Stripe calls, straight to the double at the same concurrency.
    let parallel: usize = concurrency.parse()?;
    let customer_ids: Vec<stripe_shared::CustomerId> =
        customers.iter().map(|c| c.as_str().into()).collect();
    let baseline = Instant::now();
    for lane in 0..parallel {
        let (stripe, customer_ids) = (core.stripe.clone(), customer_ids.clone());
        tasks.spawn(async move {
            for n in (lane..calls).step_by(parallel) {
                let customer = customer_ids[n % customer_ids.len()].clone();
                stripe_core::customer::RetrieveCustomer::new(customer)
                    .send(stripe.client())
                    .await?;
            }
            Ok(())
        });
    }
    while let Some(lane) = tasks.join_next().await {
        lane??;
    }
    println!(
        "  baseline: {calls} plain Stripe calls (retrieve customer) at concurrency {parallel} in {:.1} s",
        baseline.elapsed().as_secs_f64()
    );
    db.close().await;
    Ok(())
}
