//! The batched money path against the one-at-a-time rules (performance issue): random jobs across
//! workspaces metered in batches give the same usage, free minutes, money and ledger as the same
//! jobs metered one by one, including free minutes running out inside a batch, duplicates inside
//! and across batches, a chain the ledger refuses and a batch that dies between the ledger and the
//! database. Real PostgreSQL and TigerBeetle.

use chrono::{DateTime, Duration, Utc};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use sqlx::PgPool;
use tenki_core::ledger::reconcile::{self, Scope};
use tenki_core::ledger::{UsagePosting, WorkspaceAccounts};
use tenki_core::metering::{self, FinishedJob, JobKey, MeteringError, UsageRecord};
use uuid::Uuid;

use crate::harness::TestApp;
use crate::metering::workspace;

/// Labels with their vCPUs and price per minute in micro-cents.
const LABELS: [(&str, i64, i64); 5] = [
    ("tenki-standard-2c", 2, 300_000),
    ("tenki-standard-4c", 4, 600_000),
    ("TENKI-standard-8c", 8, 1_200_000),
    ("tenki-standard-4c-premium", 4, 900_000),
    ("tenki-macos-m4-6c", 6, 12_000_000),
];

/// A block of job ids no other test (or earlier run on the same TigerBeetle) uses.
pub(crate) fn fresh_job_ids() -> i64 {
    i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000_000).expect("fits") * 1_000
}

pub(crate) fn job(
    workspace_id: Uuid,
    id: i64,
    label: &str,
    seconds: i64,
    completed_at: DateTime<Utc>,
) -> FinishedJob {
    FinishedJob {
        workspace_id,
        key: JobKey {
            github_job_id: id,
            run_attempt: 1,
        },
        label: label.to_owned(),
        started_at: completed_at - Duration::seconds(seconds),
        completed_at,
        repository: "acme/web".to_owned(),
        workflow: "CI".to_owned(),
    }
}

/// One job per (workspace index, seconds) of `plan`, ids counted up from `base`.
fn planned_jobs(
    plan: &[(usize, i64)],
    workspaces: &[Uuid],
    base: i64,
    label: &str,
    completed_at: DateTime<Utc>,
) -> Vec<FinishedJob> {
    plan.iter()
        .enumerate()
        .map(|(n, (w, seconds))| {
            let id = base + i64::try_from(n).expect("small");
            job(workspaces[*w], id, label, *seconds, completed_at)
        })
        .collect()
}

/// What a customer sees of a usage record; the job key and workspace differ between twins.
fn figures(record: &UsageRecord) -> (String, i64, i64, i64, i64, i32) {
    (
        record.sku_label.clone(),
        record.minutes,
        record.free_vcpu_minutes,
        record.amount,
        record.price_per_minute + record.premium_surcharge_per_minute,
        record.discount_basis_points,
    )
}

/// A workspace's free minutes left (vCPU-minutes) and money charged (micro-cents) in the ledger.
async fn balances(app: &TestApp, workspace_id: Uuid) -> (u128, u128) {
    let free = app
        .core
        .ledger
        .free_vcpu_minutes_left(workspace_id)
        .await
        .expect("free minutes");
    let (debits, _) = app
        .core
        .ledger
        .account_totals(WorkspaceAccounts::of(workspace_id).money)
        .await
        .expect("lookup")
        .expect("money account");
    (free, debits)
}

async fn assert_balanced(app: &TestApp, workspaces: Vec<Uuid>) {
    let report = reconcile::reconcile(
        &app.core.db,
        &app.core.ledger,
        &Scope::Workspaces(workspaces),
    )
    .await
    .expect("reconciliation runs");
    assert!(
        report.is_balanced(),
        "differences: {:?}",
        report.differences
    );
}

/// Twin workspaces: the same jobs go to `batched[i]` through `meter_jobs` and to `one_by_one[i]`
/// through `meter_job`.
struct Twins {
    batched: Vec<Uuid>,
    one_by_one: Vec<Uuid>,
}

impl Twins {
    /// `count` pairs; pair `i` has used `used_minutes[i]` free minutes already and pays a 10 %
    /// discount when `i` is 2.
    async fn new(app: &TestApp, count: usize, used_minutes: &[i64]) -> Self {
        let mut twins = Self {
            batched: Vec::new(),
            one_by_one: Vec::new(),
        };
        let earlier = Utc::now() - Duration::days(1);
        for i in 0..count {
            for side in [&mut twins.batched, &mut twins.one_by_one] {
                let workspace_id = workspace(app).await;
                if i == 2 {
                    sqlx::query("INSERT INTO workspace_discounts (workspace_id, active_from, basis_points) VALUES ($1, $2, 1000)")
                        .bind(workspace_id)
                        .bind(earlier - Duration::days(1))
                        .execute(&app.core.db)
                        .await
                        .expect("discount");
                }
                let used = used_minutes.get(i).copied().unwrap_or(0);
                if used > 0 {
                    let warm_up = job(
                        workspace_id,
                        fresh_job_ids(),
                        "tenki-standard-2c",
                        used * 60,
                        earlier,
                    );
                    metering::meter_job(&app.core.db, &app.core.ledger, &warm_up, Utc::now())
                        .await
                        .expect("warm-up job");
                }
                side.push(workspace_id);
            }
        }
        twins
    }

    async fn assert_same_balances(&self, app: &TestApp, case: &str) {
        for (batched, one_by_one) in self.batched.iter().zip(&self.one_by_one) {
            assert_eq!(
                balances(app, *batched).await,
                balances(app, *one_by_one).await,
                "free minutes and money of twin workspaces, {case}"
            );
        }
        let mut all = self.batched.clone();
        all.extend(&self.one_by_one);
        assert_balanced(app, all).await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn batched_metering_gives_every_job_and_workspace_what_one_by_one_metering_gives(db: PgPool) {
    let app = TestApp::spawn(db).await;
    // A case: free minutes already used per workspace, then jobs (workspace, label, seconds,
    // repeat an earlier job?, end the batch after it?).
    let strategy = (
        proptest::collection::vec(0_i64..1_000, 3),
        proptest::collection::vec(
            (
                0_usize..3,
                0..LABELS.len(),
                1_i64..=20_000,
                0_u8..8,
                proptest::bool::weighted(0.2),
            ),
            1..60,
        ),
    );
    let mut runner = TestRunner::deterministic();
    for case in 0..10 {
        let (used, planned) = strategy.new_tree(&mut runner).expect("case").current();
        let twins = Twins::new(&app, 3, &used).await;
        let completed_at = Utc::now() - Duration::minutes(1);
        let (base_batched, base_one_by_one) = (fresh_job_ids(), fresh_job_ids());
        let mut batched_jobs: Vec<FinishedJob> = Vec::new();
        let mut one_by_one_jobs: Vec<FinishedJob> = Vec::new();
        let mut cuts = Vec::new();
        for (n, (workspace, label, seconds, repeat, cut)) in planned.iter().enumerate() {
            // One in eight repeats an earlier job: GitHub's duplicate deliveries.
            if *repeat == 0 && n > 0 {
                let earlier = n / 2;
                batched_jobs.push(batched_jobs[earlier].clone());
                one_by_one_jobs.push(one_by_one_jobs[earlier].clone());
            } else {
                let id = i64::try_from(n).expect("small");
                let label = LABELS[*label].0;
                batched_jobs.push(job(
                    twins.batched[*workspace],
                    base_batched + id,
                    label,
                    *seconds,
                    completed_at,
                ));
                one_by_one_jobs.push(job(
                    twins.one_by_one[*workspace],
                    base_one_by_one + id,
                    label,
                    *seconds,
                    completed_at,
                ));
            }
            if *cut {
                cuts.push(n + 1);
            }
        }
        cuts.push(batched_jobs.len());

        let mut expected = Vec::new();
        for job in &one_by_one_jobs {
            expected.push(
                metering::meter_job(&app.core.db, &app.core.ledger, job, Utc::now())
                    .await
                    .expect("metered one by one"),
            );
        }
        let mut got = Vec::new();
        let mut from = 0;
        for to in cuts {
            if to <= from {
                continue;
            }
            let outcomes = metering::meter_jobs(
                &app.core.db,
                &app.core.ledger,
                &batched_jobs[from..to],
                Utc::now(),
            )
            .await
            .expect("batch");
            got.extend(outcomes.into_iter().map(|o| o.expect("metered in a batch")));
            from = to;
        }

        let label = format!("case {case}: used {used:?}, jobs {planned:?}");
        assert_eq!(got.len(), expected.len());
        for (n, (got, expected)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(figures(got), figures(expected), "job {n} of {label}");
        }
        twins.assert_same_balances(&app, &label).await;
    }
}

/// Makes TigerBeetle refuse a job's transfers for good: each id is first used by a transfer that
/// fails for a reason TigerBeetle remembers (its debit account does not exist).
async fn burn_transfer_ids(app: &TestApp, posting: UsagePosting) {
    let nowhere = Uuid::new_v4();
    for (free, amount, id_of) in [
        (5, 0, posting.free_minutes_transfer_id),
        (0, 5, posting.charge_transfer_id),
    ] {
        let mut failing = UsagePosting::for_job(nowhere, "burn");
        failing.free_minutes_transfer_id = id_of;
        failing.charge_transfer_id = id_of;
        app.core
            .ledger
            .post_usage(&failing, free, amount)
            .await
            .expect_err("no such account");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_chain_the_ledger_refuses_leaves_its_workspace_as_one_by_one_metering_would(db: PgPool) {
    let app = TestApp::spawn(db).await;
    // 990 free minutes used: 10 left, so which job gets them matters.
    let twins = Twins::new(&app, 2, &[990, 0]).await;
    let completed_at = Utc::now() - Duration::minutes(1);
    let (base_batched, base_one_by_one) = (fresh_job_ids(), fresh_job_ids());
    // Job 1 is refused by the ledger; jobs 0 and 2 share its workspace, job 3 is elsewhere.
    let plan = [(0, 240), (0, 360), (0, 600), (1, 300)];
    let jobs = |workspaces: &[Uuid], base: i64| {
        planned_jobs(&plan, workspaces, base, "tenki-standard-2c", completed_at)
    };
    let batched_jobs = jobs(&twins.batched, base_batched);
    let one_by_one_jobs = jobs(&twins.one_by_one, base_one_by_one);
    for jobs in [&batched_jobs, &one_by_one_jobs] {
        burn_transfer_ids(
            &app,
            UsagePosting::for_job(jobs[1].workspace_id, &jobs[1].key.to_string()),
        )
        .await;
    }

    let mut expected = Vec::new();
    for job in &one_by_one_jobs {
        expected.push(metering::meter_job(&app.core.db, &app.core.ledger, job, Utc::now()).await);
    }
    let got = metering::meter_jobs(&app.core.db, &app.core.ledger, &batched_jobs, Utc::now())
        .await
        .expect("batch");

    assert!(
        matches!(expected[1], Err(MeteringError::Ledger(_))),
        "{:?}",
        expected[1]
    );
    assert!(
        matches!(got[1], Err(MeteringError::Ledger(_))),
        "the refused job fails: {:?}",
        got[1]
    );
    for n in [0, 2, 3] {
        let got = got[n].as_ref().expect("metered");
        let expected = expected[n].as_ref().expect("metered");
        assert_eq!(figures(got), figures(expected), "job {n}");
    }
    // Job 0 took the last 10 free minutes (20 vCPU-minutes) of 4; job 2 paid all of its 10.
    let figures_0 = figures(got[0].as_ref().expect("metered"));
    assert_eq!((figures_0.2, figures_0.3), (8, 0), "job 0: 4 minutes free");
    let figures_2 = figures(got[2].as_ref().expect("metered"));
    assert_eq!(
        (figures_2.2, figures_2.3),
        (12, 1_200_000),
        "job 2: 6 minutes free, 4 paid"
    );
    twins.assert_same_balances(&app, "refused chain").await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_batch_that_dies_between_ledger_and_database_is_finished_from_what_it_posted(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let twins = Twins::new(&app, 2, &[995, 400]).await;
    let completed_at = Utc::now() - Duration::minutes(1);
    let (base_batched, base_one_by_one) = (fresh_job_ids(), fresh_job_ids());
    let plan = [(0, 300), (1, 600), (0, 420), (1, 60), (0, 120)];
    let jobs = |workspaces: &[Uuid], base: i64| {
        planned_jobs(&plan, workspaces, base, "tenki-standard-4c", completed_at)
    };
    let mut batched_jobs = jobs(&twins.batched, base_batched);
    batched_jobs[2].repository = "acme/dies".to_owned();
    let one_by_one_jobs = jobs(&twins.one_by_one, base_one_by_one);

    // The database refuses the batch's usage records after the ledger took its chains: the
    // process dying at that moment leaves the same state.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_usage() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.repository = 'acme/dies' THEN RAISE EXCEPTION 'the server died'; END IF;
         RETURN NEW; END $$;
         CREATE TRIGGER refuse_usage BEFORE INSERT ON usage_records
             FOR EACH ROW EXECUTE FUNCTION refuse_usage();",
    )
    .execute(&db)
    .await
    .expect("trigger");
    let died = metering::meter_jobs(
        &app.core.db,
        &app.core.ledger,
        &batched_jobs[..4],
        Utc::now(),
    )
    .await;
    assert!(matches!(died, Err(MeteringError::Database(_))), "{died:?}");
    let records: i64 =
        sqlx::query_scalar("SELECT count(*) FROM usage_records WHERE workspace_id = ANY($1)")
            .bind(&twins.batched)
            .fetch_one(&db)
            .await
            .expect("count");
    assert_eq!(
        records, 2,
        "only the warm-up jobs' records: the batch's were rolled back"
    );
    sqlx::raw_sql("DROP TRIGGER refuse_usage ON usage_records")
        .execute(&db)
        .await
        .expect("drop trigger");

    // The next attempt comes in another order and with a new job: the posted jobs keep what
    // the ledger took, the new one is priced after them.
    let mut retried = vec![
        batched_jobs[4].clone(),
        batched_jobs[2].clone(),
        batched_jobs[0].clone(),
    ];
    retried.extend([batched_jobs[3].clone(), batched_jobs[1].clone()]);
    let outcomes = metering::meter_jobs(&app.core.db, &app.core.ledger, &retried, Utc::now())
        .await
        .expect("batch");
    let mut got: Vec<UsageRecord> = outcomes.into_iter().map(|o| o.expect("metered")).collect();
    got.sort_by(|a, b| a.job_key.cmp(&b.job_key));

    // One by one in the order the ledger saw them: the dead batch's four, then the new one.
    let mut expected = Vec::new();
    for job in &one_by_one_jobs {
        expected.push(
            metering::meter_job(&app.core.db, &app.core.ledger, job, Utc::now())
                .await
                .expect("metered"),
        );
    }
    for (n, (got, expected)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(figures(got), figures(expected), "job {n}");
    }
    twins
        .assert_same_balances(&app, "died between ledger and database")
        .await;
}

#[sqlx::test(migrations = "../migrations")]
async fn jobs_sent_to_the_batcher_at_once_are_each_metered_once_and_add_up(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let meter = app.core.meter.clone();
    let workspaces = [
        workspace(&app).await,
        workspace(&app).await,
        workspace(&app).await,
    ];
    let completed_at = Utc::now() - Duration::minutes(1);
    let base = fresh_job_ids();
    // 300 jobs of 7 minutes on 2 vCPUs, 100 per workspace, each sent three times at once.
    let mut sends = Vec::new();
    for n in 0..300_i64 {
        let finished = job(
            workspaces[usize::try_from(n % 3).expect("small")],
            base + n,
            "tenki-standard-2c",
            420,
            completed_at,
        );
        for _ in 0..3 {
            let (meter, finished) = (meter.clone(), finished.clone());
            sends.push(tokio::spawn(async move { meter.meter(finished).await }));
        }
    }
    let mut records = Vec::new();
    for send in sends {
        records.push(send.await.expect("task").expect("metered"));
    }
    for copies in records.chunks(3) {
        assert_eq!(copies[0], copies[1], "the same job answers the same record");
        assert_eq!(copies[0], copies[2]);
    }
    for workspace_id in workspaces {
        // 100 jobs × 7 minutes × 2 vCPUs = 1,400 vCPU-minutes of the 2,000 free: all free.
        let (free_left, charged) = balances(&app, workspace_id).await;
        assert_eq!((free_left, charged), (600, 0), "workspace {workspace_id}");
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM usage_records WHERE workspace_id = $1")
                .bind(workspace_id)
                .fetch_one(&app.core.db)
                .await
                .expect("count");
        assert_eq!(count, 100, "one record per job");
    }
    // 200 more 10-minute jobs in the first workspace cross zero: 600 vCPU-minutes free, the
    // other 3,400 paid at $0.003 a minute on 2 vCPUs.
    let mut sends = Vec::new();
    for n in 300..500_i64 {
        let finished = job(
            workspaces[0],
            base + n,
            "tenki-standard-2c",
            600,
            completed_at,
        );
        let meter = meter.clone();
        sends.push(tokio::spawn(async move { meter.meter(finished).await }));
    }
    let mut free_used = 0;
    for send in sends {
        free_used += send
            .await
            .expect("task")
            .expect("metered")
            .free_vcpu_minutes;
    }
    assert_eq!(free_used, 600);
    assert_eq!(balances(&app, workspaces[0]).await, (0, 3_400 * 150_000));
    assert_balanced(&app, workspaces.to_vec()).await;
}
