//! The usage rollups (daily and monthly) the Usage page and the Overview read (usage rollups issue): whatever
//! happens to usage records — metering one by one or in batches, retries, a crash between the
//! ledger and the database, admin reversals — the rollups equal the records' sums, reconcile
//! proves it, and the CSV export streams every record of a month however many there are. Real
//! PostgreSQL and TigerBeetle.

use chrono::{DateTime, Duration, Utc};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use sqlx::PgPool;
use tenki_core::ledger::adjustments::{self, AdminRequest};
use tenki_core::ledger::reconcile::{self, Scope};
use tenki_core::metering::{self, FinishedJob, JobKey, MeteringError};
use tenki_core::usage::{self, Month};
use uuid::Uuid;

use crate::batched_metering::{fresh_job_ids, job};
use crate::harness::TestApp;
use crate::metering::workspace;

const LABELS: [&str; 4] = [
    "tenki-standard-2c",
    "tenki-standard-4c",
    "TENKI-standard-8c",
    "tenki-standard-4c-premium",
];
const REPOSITORIES: [&str; 3] = ["acme/web", "acme/api", "acme/docs"];
const WORKFLOWS: [&str; 2] = ["CI", "Release"];

/// One of a case's jobs: workspace index, days before now it completed, label, repository and
/// workflow indexes, and how long it ran in seconds.
type PlannedJob = (usize, i64, usize, usize, usize, i64);

/// What happens to usage records in a case, on the case's jobs (indexes into its job list).
#[derive(Debug, Clone)]
enum Step {
    /// `meter_job`, as a completion metered alone.
    MeterOne(usize),
    /// `meter_jobs`, as the batcher does; a job twice in a batch is a duplicate delivery.
    MeterBatch(Vec<usize>),
    /// A batch whose records the database refuses after the ledger posted their chains: the
    /// process dying at that moment leaves the same state.
    Crash(Vec<usize>),
    /// An admin reverses the job's usage.
    Reverse(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let jobs = proptest::collection::vec(0_usize..12, 1..6);
    proptest::prop_oneof![
        3 => (0_usize..12).prop_map(Step::MeterOne),
        3 => jobs.clone().prop_map(Step::MeterBatch),
        1 => jobs.prop_map(Step::Crash),
        1 => (0_usize..12).prop_map(Step::Reverse),
    ]
}

fn finished_job(
    workspaces: &[Uuid],
    base: i64,
    n: usize,
    planned: &PlannedJob,
    now: DateTime<Utc>,
) -> FinishedJob {
    let (workspace, days_ago, label, repository, workflow, seconds) = *planned;
    // Spread over the day so some jobs of a case share a day and some do not.
    let completed_at = now - Duration::days(days_ago) - Duration::minutes(seconds % 600);
    FinishedJob {
        workspace_id: workspaces[workspace],
        key: JobKey {
            github_job_id: base + i64::try_from(n).expect("small"),
            run_attempt: 1,
        },
        label: LABELS[label].to_owned(),
        started_at: completed_at - Duration::seconds(seconds),
        completed_at,
        repository: REPOSITORIES[repository].to_owned(),
        workflow: WORKFLOWS[workflow].to_owned(),
    }
}

/// Outcomes a step may have besides success: a reversed job is never metered again.
fn assert_expected(outcome: Result<(), MeteringError>, step: &Step) {
    match outcome {
        Ok(()) | Err(MeteringError::Reversed(_)) => {}
        Err(other) => panic!("{step:?}: {other:?}"),
    }
}

/// Each rollup of `workspaces` (daily and monthly) next to the sums of the records it stands
/// for; the rows that differ.
async fn rollups_differing_from_records(db: &PgPool, workspaces: &[Uuid]) -> Vec<String> {
    sqlx::query_scalar(
        "WITH records AS (
             SELECT workspace_id, (completed_at AT TIME ZONE 'UTC')::date AS day,
                    date_trunc('month', completed_at AT TIME ZONE 'UTC')::date AS month, label,
                    repository, workflow, minutes, free_vcpu_minutes, amount
             FROM usage_records WHERE workspace_id = ANY($1)
         ), daily AS (
             SELECT workspace_id, day, label, count(*)::bigint AS jobs,
                    sum(minutes)::bigint AS minutes,
                    sum(free_vcpu_minutes)::bigint AS free_vcpu_minutes,
                    sum(amount)::bigint AS amount
             FROM records GROUP BY 1, 2, 3
         ), monthly AS (
             SELECT workspace_id, month, label, repository, workflow, count(*)::bigint AS jobs,
                    sum(minutes)::bigint AS minutes,
                    sum(free_vcpu_minutes)::bigint AS free_vcpu_minutes,
                    sum(amount)::bigint AS amount
             FROM records GROUP BY 1, 2, 3, 4, 5
         )
         SELECT format('daily %s %s: rollup %s, records %s', day, label, d, r)
         FROM (SELECT * FROM usage_daily WHERE workspace_id = ANY($1)) d
         FULL JOIN daily r USING (workspace_id, day, label)
         WHERE (d.jobs, d.minutes, d.free_vcpu_minutes, d.amount)
               IS DISTINCT FROM (r.jobs, r.minutes, r.free_vcpu_minutes, r.amount)
         UNION ALL
         SELECT format('monthly %s %s %s %s: rollup %s, records %s', month, label, repository,
                       workflow, m, r)
         FROM (SELECT * FROM usage_monthly WHERE workspace_id = ANY($1)) m
         FULL JOIN monthly r USING (workspace_id, month, label, repository, workflow)
         WHERE (m.jobs, m.minutes, m.free_vcpu_minutes, m.amount)
               IS DISTINCT FROM (r.jobs, r.minutes, r.free_vcpu_minutes, r.amount)",
    )
    .bind(workspaces)
    .fetch_all(db)
    .await
    .expect("compare")
}

/// Makes the database refuse every usage record until [`revive`].
async fn die_before_recording(db: &PgPool) {
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_usage() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'the server died'; END $$;
         CREATE TRIGGER refuse_usage BEFORE INSERT ON usage_records
             FOR EACH ROW EXECUTE FUNCTION refuse_usage();",
    )
    .execute(db)
    .await
    .expect("trigger");
}

async fn revive(db: &PgPool) {
    sqlx::raw_sql("DROP TRIGGER refuse_usage ON usage_records; DROP FUNCTION refuse_usage();")
        .execute(db)
        .await
        .expect("drop trigger");
}

#[sqlx::test(migrations = "../migrations")]
async fn rollups_equal_the_records_after_any_metering_retries_crashes_and_reversals(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let request = AdminRequest {
        admin_email: "ops@tenki.test".to_owned(),
        reason: "runner crashed mid-job".to_owned(),
    };
    let strategy = (
        proptest::collection::vec(
            (
                0_usize..2,
                0_i64..40,
                0..LABELS.len(),
                0..3_usize,
                0..2_usize,
                1_i64..30_000,
            ),
            12,
        ),
        proptest::collection::vec(step(), 1..14),
    );
    let mut runner = TestRunner::deterministic();
    for case in 0..12 {
        let (planned, steps) = strategy.new_tree(&mut runner).expect("case").current();
        let workspaces = [workspace(&app).await, workspace(&app).await];
        let now = Utc::now();
        let base = fresh_job_ids();
        let jobs: Vec<FinishedJob> = planned
            .iter()
            .enumerate()
            .map(|(n, planned)| finished_job(&workspaces, base, n, planned, now))
            .collect();
        for step in &steps {
            match step {
                Step::MeterOne(n) => {
                    let outcome = metering::meter_job(&db, &app.core.ledger, &jobs[*n], now).await;
                    assert_expected(outcome.map(|_| ()), step);
                }
                Step::MeterBatch(batch) => {
                    let batch: Vec<FinishedJob> = batch.iter().map(|n| jobs[*n].clone()).collect();
                    let outcomes = metering::meter_jobs(&db, &app.core.ledger, &batch, now)
                        .await
                        .expect("batch");
                    for outcome in outcomes {
                        assert_expected(outcome.map(|_| ()), step);
                    }
                }
                Step::Crash(batch) => {
                    let batch: Vec<FinishedJob> = batch.iter().map(|n| jobs[*n].clone()).collect();
                    die_before_recording(&db).await;
                    let outcome = metering::meter_jobs(&db, &app.core.ledger, &batch, now).await;
                    revive(&db).await;
                    // A batch with nothing new to record (its jobs recorded or reversed already)
                    // still succeeds; its duplicates, metered one by one, die too.
                    match outcome {
                        Err(MeteringError::Database(_)) => {}
                        Ok(outcomes) => {
                            for outcome in outcomes {
                                match outcome {
                                    Ok(_)
                                    | Err(
                                        MeteringError::Reversed(_) | MeteringError::Database(_),
                                    ) => {}
                                    Err(other) => panic!("{step:?}: {other:?}"),
                                }
                            }
                        }
                        Err(other) => panic!("{step:?}: {other:?}"),
                    }
                }
                Step::Reverse(n) => {
                    let job_key = jobs[*n].key.to_string();
                    match adjustments::reverse_usage(&db, &app.core.ledger, &job_key, &request, now)
                        .await
                    {
                        Ok(_) | Err(adjustments::AdjustmentError::UnknownJob(_)) => {}
                        Err(other) => panic!("{step:?}: {other:?}"),
                    }
                }
            }
        }
        // Every job still standing is retried, as the delivery drain would.
        for job in &jobs {
            let outcome = metering::meter_job(&db, &app.core.ledger, job, now).await;
            assert_expected(outcome.map(|_| ()), &Step::MeterOne(0));
        }

        let label = format!("case {case}: jobs {planned:?}, steps {steps:?}");
        assert_eq!(
            rollups_differing_from_records(&db, &workspaces).await,
            Vec::<String>::new(),
            "{label}"
        );
        let report = reconcile::reconcile(
            &db,
            &app.core.ledger,
            &Scope::Workspaces(workspaces.to_vec()),
        )
        .await
        .expect("reconciliation runs");
        assert!(report.is_balanced(), "{label}: {:?}", report.differences);
        // The Usage page of this month and the last shows what the records hold.
        for month in [Month::containing(now), Month::containing(now).previous()] {
            let view = usage::month_usage(&db, workspaces[0], month, now)
                .await
                .expect("usage");
            let (jobs, minutes, amount): (i64, i64, i64) = sqlx::query_as(
                "SELECT count(*), coalesce(sum(minutes), 0)::bigint, coalesce(sum(amount), 0)::bigint
                 FROM usage_records
                 WHERE workspace_id = $1 AND completed_at >= $2 AND completed_at < $3",
            )
            .bind(workspaces[0])
            .bind(month.start())
            .bind(month.end())
            .fetch_one(&db)
            .await
            .expect("sums");
            assert_eq!(
                (view.jobs, view.minutes, view.amount),
                (jobs, minutes, amount),
                "{month} of {label}"
            );
            let daily_minutes: i64 = view.daily.iter().map(|day| day.minutes).sum();
            assert_eq!(daily_minutes, minutes, "daily chart of {month} of {label}");
        }
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_job_counts_in_the_utc_day_and_month_it_completed(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let workspace_id = workspace(&app).await;
    let november = Month::parse("2026-11").expect("month");
    let base = fresh_job_ids();
    // One second before and at midnight UTC between November and December, 10 minutes each.
    for (n, completed_at) in [
        november.end() - Duration::seconds(1),
        november.end(),
        november.end() + Duration::hours(23),
    ]
    .into_iter()
    .enumerate()
    {
        let id = base + i64::try_from(n).expect("small");
        let job = job(workspace_id, id, "tenki-standard-2c", 600, completed_at);
        metering::meter_job(&db, &app.core.ledger, &job, completed_at)
            .await
            .expect("metered");
    }
    let in_november = usage::month_usage(&db, workspace_id, november, november.end())
        .await
        .expect("usage");
    let in_december = usage::month_usage(&db, workspace_id, november.next(), november.end())
        .await
        .expect("usage");
    assert_eq!((in_november.jobs, in_november.minutes), (1, 10));
    assert_eq!((in_december.jobs, in_december.minutes), (2, 20));
    let december_days: Vec<(String, i64)> = in_december
        .daily
        .iter()
        .map(|day| (day.day.to_string(), day.minutes))
        .collect();
    assert_eq!(december_days, vec![("2026-12-01".to_owned(), 20)]);
    assert_eq!(
        in_december.free_minutes, 20,
        "free minutes are 2-vCPU minutes"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn reconcile_reports_a_rollup_that_differs_from_its_records(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let workspace_id = workspace(&app).await;
    let completed_at = Utc::now() - Duration::minutes(1);
    let job = job(
        workspace_id,
        fresh_job_ids(),
        "tenki-standard-2c",
        180,
        completed_at,
    );
    metering::meter_job(&db, &app.core.ledger, &job, Utc::now())
        .await
        .expect("metered");

    let changed = sqlx::query("UPDATE usage_records SET minutes = 1 WHERE workspace_id = $1")
        .bind(workspace_id)
        .execute(&db)
        .await;
    assert!(
        changed.is_err(),
        "a record's billed figures cannot change under its rollup"
    );

    sqlx::query("UPDATE usage_daily SET minutes = minutes + 2 WHERE workspace_id = $1")
        .bind(workspace_id)
        .execute(&db)
        .await
        .expect("tamper");
    sqlx::query("UPDATE usage_monthly SET amount = amount + 7 WHERE workspace_id = $1")
        .bind(workspace_id)
        .execute(&db)
        .await
        .expect("tamper");
    let report = reconcile::reconcile(
        &db,
        &app.core.ledger,
        &Scope::Workspaces(vec![workspace_id]),
    )
    .await
    .expect("runs");
    let found: Vec<(String, i128, i128)> = report
        .differences
        .iter()
        .map(|d| (d.what.clone(), d.database, d.ledger))
        .collect();
    let day = completed_at.date_naive();
    let month = Month::containing(completed_at);
    assert_eq!(
        found,
        vec![
            (
                format!(
                    "daily rollup {day} tenki-standard-2c: minutes in the rollup vs the usage records"
                ),
                5,
                3
            ),
            (
                format!(
                    "monthly rollup {month} tenki-standard-2c acme/web · CI: micro-cents in the rollup vs the usage records"
                ),
                7,
                0
            ),
        ]
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn the_csv_export_streams_every_job_of_the_month_once_in_order(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let email = format!("{}@csv.test", Uuid::new_v4());
    app.sign_up(&app.client, "CSV", &email, "a long enough password")
        .await;
    let workspace_id = tenki_core::workspaces::first_workspace_of_email(&db, &email)
        .await
        .expect("query")
        .expect("workspace");
    let october = Month::parse("2026-10").expect("month");
    // 4,501 jobs in October (more than two pages of the export, three at each instant), plus
    // one just before and one just after it, which the export leaves out.
    sqlx::query(
        "INSERT INTO usage_records (job_key, workspace_id, label, sku_label, premium, vcpus,
             repository, workflow, started_at, completed_at, minutes, free_vcpu_minutes,
             price_per_minute, premium_surcharge_per_minute, discount_basis_points, amount, metered_at)
         SELECT 'csv:' || n, $1, 'tenki-standard-2c', 'tenki-standard-2c', false, 2, 'acme/web',
                'CI', at - interval '1 minute', at, 1, 0, 300000, 0, 0, 300000, at
         FROM generate_series(0, 4500) AS n,
              LATERAL (SELECT $2::timestamptz + (n / 3) * interval '9 minutes' AS at) t
         UNION ALL
         SELECT job_key, $1, 'tenki-standard-2c', 'tenki-standard-2c', false, 2, 'acme/web',
                'CI', at - interval '1 minute', at, 1, 0, 300000, 0, 0, 300000, at
         FROM (VALUES ('csv:before', $2::timestamptz - interval '1 second'),
                      ('csv:after', $3::timestamptz)) AS outside (job_key, at)",
    )
    .bind(workspace_id)
    .bind(october.start())
    .bind(october.end())
    .execute(&db)
    .await
    .expect("records");

    let csv = app
        .client
        .get(format!("{}/usage/export.csv?month={october}", app.address))
        .send()
        .await
        .expect("CSV");
    assert_eq!(csv.status(), 200);
    assert_eq!(
        csv.headers()["content-disposition"],
        "attachment; filename=\"tenki-usage-2026-10.csv\""
    );
    let body = csv.text().await.expect("text");
    let rows: Vec<&str> = body.lines().skip(1).collect();
    assert_eq!(rows.len(), 4_501, "every October job once");
    let keys: Vec<&str> = rows
        .iter()
        .map(|row| row.split(',').next().expect("job key"))
        .collect();
    let mut unique = keys.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 4_501, "no job twice");
    assert!(!keys.contains(&"csv:before") && !keys.contains(&"csv:after"));
    let times: Vec<&str> = rows
        .iter()
        .map(|row| row.split(',').nth(2).expect("completed_at"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    // Then an empty GitHub page: these records came from no delivery.
    assert!(rows[0].ends_with(",0.003000,300000,"), "{}", rows[0]);

    let view = usage::month_usage(&db, workspace_id, october, october.end())
        .await
        .expect("usage");
    assert_eq!(
        (view.jobs, view.amount),
        (4_501, 4_501 * 300_000),
        "the Usage page agrees with the export"
    );
}
