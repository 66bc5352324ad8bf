//! Metering, free minutes and the ledger (SPEC §3, §6, §7, §8) against real PostgreSQL and
//! TigerBeetle: every acceptance number, exactly-once metering, reversal, promotional credit and
//! reconciliation.

use chrono::{Duration, Utc};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use sqlx::PgPool;
use tenki_core::ledger::adjustments::{self, Adjusted, AdminRequest};
use tenki_core::ledger::reconcile::{self, Scope};
use tenki_core::ledger::{Ledger, UsagePosting};
use tenki_core::metering::{self, FinishedJob, JobKey, MeteringError, UsageRecord};
use tenki_core::{identity, usage};
use uuid::Uuid;

use crate::harness::TestApp;

/// $0.01 in micro-cents.
const CENT: i64 = 1_000_000;

/// A fresh workspace with 1,000 free minutes.
pub(crate) async fn workspace(app: &TestApp) -> Uuid {
    let email = format!("{}@metering.test", Uuid::new_v4());
    let signed_up = identity::sign_up(
        &app.core.db,
        &app.core.ledger,
        &email,
        "a long enough password",
        "Meter",
        &identity::SignUpClient::LOCAL,
        Utc::now(),
    )
    .await
    .expect("sign-up");
    identity::verification::verify(
        &app.core.db,
        &app.core.ledger,
        &signed_up.email_verification,
        Utc::now(),
    )
    .await
    .expect("verified");
    signed_up.workspace_id
}

/// A job id no other test (or earlier test run on the same TigerBeetle) uses.
fn fresh_job_id() -> i64 {
    i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000_000_000).expect("fits")
}

fn job(workspace_id: Uuid, label: &str, run: Duration) -> FinishedJob {
    let completed_at = Utc::now() - Duration::minutes(1);
    FinishedJob {
        workspace_id,
        key: JobKey {
            github_job_id: fresh_job_id(),
            run_attempt: 1,
        },
        label: label.to_owned(),
        started_at: completed_at - run,
        completed_at,
        repository: "acme/web".to_owned(),
        workflow: "CI".to_owned(),
    }
}

async fn meter(app: &TestApp, job: &FinishedJob) -> UsageRecord {
    metering::meter_job(&app.core.db, &app.core.ledger, job, Utc::now())
        .await
        .expect("metered")
}

async fn free_minutes_left(ledger: &Ledger, workspace_id: Uuid) -> u128 {
    ledger
        .free_vcpu_minutes_left(workspace_id)
        .await
        .expect("balance")
        / 2
}

/// Uses up a workspace's free minutes with one long 2-vCPU job (1,000 minutes).
async fn exhaust_free_minutes(app: &TestApp, workspace_id: Uuid) {
    meter(
        app,
        &job(workspace_id, "tenki-standard-2c", Duration::minutes(1_000)),
    )
    .await;
    assert_eq!(free_minutes_left(&app.core.ledger, workspace_id).await, 0);
}

/// The posted debits and credits of a workspace's money account, in micro-cents.
async fn money_totals(app: &TestApp, workspace_id: Uuid) -> (u128, u128) {
    app.core
        .ledger
        .account_totals(tenki_core::ledger::WorkspaceAccounts::of(workspace_id).money)
        .await
        .expect("lookup")
        .expect("account")
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

#[sqlx::test(migrations = "../migrations")]
async fn ten_minutes_use_10_20_40_free_minutes_on_2_4_8_vcpus(db: PgPool) {
    let app = TestApp::spawn(db).await;
    for (label, expected) in [
        ("tenki-standard-2c", 10),
        ("tenki-standard-4c", 20),
        ("tenki-standard-8c", 40),
    ] {
        let workspace_id = workspace(&app).await;
        let record = meter(&app, &job(workspace_id, label, Duration::minutes(10))).await;
        assert_eq!(record.free_vcpu_minutes / 2, expected, "{label}");
        assert_eq!(record.amount, 0, "{label} is covered by free minutes");
        assert_eq!(
            free_minutes_left(&app.core.ledger, workspace_id).await,
            1_000 - u128::try_from(expected).expect("positive"),
            "{label}"
        );
        assert_balanced(&app, vec![workspace_id]).await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn paid_minutes_cost_3_9_4_5_and_9_cents(db: PgPool) {
    let app = TestApp::spawn(db).await;
    for (label, minutes, expected) in [
        ("tenki-standard-2c", 10, 3 * CENT),
        ("tenki-standard-4c", 15, 9 * CENT),
        ("tenki-standard-2c-premium", 10, 4 * CENT + CENT / 2),
        ("tenki-standard-4c-premium", 10, 9 * CENT),
    ] {
        let workspace_id = workspace(&app).await;
        exhaust_free_minutes(&app, workspace_id).await;
        let record = meter(&app, &job(workspace_id, label, Duration::minutes(minutes))).await;
        assert_eq!(record.amount, expected, "{label} for {minutes} minutes");
        assert_eq!(record.free_vcpu_minutes, 0);
        assert_balanced(&app, vec![workspace_id]).await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_3_5_minute_job_is_billed_as_4_minutes(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let workspace_id = workspace(&app).await;
    exhaust_free_minutes(&app, workspace_id).await;
    let record = meter(
        &app,
        &job(workspace_id, "tenki-standard-2c", Duration::seconds(210)),
    )
    .await;
    assert_eq!(record.minutes, 4);
    assert_eq!(record.amount, 4 * 300_000, "4 minutes at $0.003");
}

#[sqlx::test(migrations = "../migrations")]
async fn five_hundred_minutes_of_4c_or_250_of_8c_use_all_free_minutes(db: PgPool) {
    let app = TestApp::spawn(db).await;
    for (label, minutes) in [("tenki-standard-4c", 500), ("tenki-standard-8c", 250)] {
        let workspace_id = workspace(&app).await;
        let record = meter(&app, &job(workspace_id, label, Duration::minutes(minutes))).await;
        assert_eq!(record.free_vcpu_minutes, 2_000, "{label}");
        assert_eq!(record.amount, 0, "{label}");
        assert_eq!(free_minutes_left(&app.core.ledger, workspace_id).await, 0);
        // The next minute is paid.
        let next = meter(&app, &job(workspace_id, label, Duration::minutes(1))).await;
        assert!(next.amount > 0, "{label}: paid after the free minutes");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_job_needing_more_free_minutes_than_left_pays_the_rest_to_the_micro_cent(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let workspace_id = workspace(&app).await;
    // 997 minutes on 2c leave 3 free minutes (6 vCPU-minutes).
    meter(
        &app,
        &job(workspace_id, "tenki-standard-2c", Duration::minutes(997)),
    )
    .await;
    assert_eq!(free_minutes_left(&app.core.ledger, workspace_id).await, 3);
    // 10 minutes on 4c need 40 vCPU-minutes: 6 free, 34 paid at $0.006 per 4 vCPUs.
    let record = meter(
        &app,
        &job(workspace_id, "tenki-standard-4c", Duration::minutes(10)),
    )
    .await;
    assert_eq!(record.free_vcpu_minutes, 6);
    assert_eq!(record.amount, 5_100_000, "$0.051 = 8.5 minutes × $0.006");
    assert_eq!(free_minutes_left(&app.core.ledger, workspace_id).await, 0);
    assert_balanced(&app, vec![workspace_id]).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn the_same_job_metered_concurrently_is_charged_once(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let workspace_id = workspace(&app).await;
    exhaust_free_minutes(&app, workspace_id).await;
    let the_job = job(workspace_id, "tenki-standard-4c", Duration::minutes(15));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (db, ledger, job) = (
                app.core.db.clone(),
                app.core.ledger.clone(),
                the_job.clone(),
            );
            tokio::spawn(async move { metering::meter_job(&db, &ledger, &job, Utc::now()).await })
        })
        .collect();
    for task in tasks {
        let record = task.await.expect("task").expect("metered");
        assert_eq!(record.amount, 9 * CENT);
    }
    let (debits, _) = money_totals(&app, workspace_id).await;
    assert_eq!(debits, 9_000_000, "charged once");
    assert_balanced(&app, vec![workspace_id]).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_crash_between_ledger_and_database_is_finished_without_a_second_charge(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let workspace_id = workspace(&app).await;
    exhaust_free_minutes(&app, workspace_id).await;
    let the_job = job(workspace_id, "tenki-standard-2c", Duration::minutes(10));
    // The ledger step of a first attempt that died before writing the usage record.
    let posting = UsagePosting::for_job(workspace_id, &the_job.key.to_string());
    app.core
        .ledger
        .post_usage(&posting, 0, 3_000_000)
        .await
        .expect("posted");
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM usage_records WHERE workspace_id = $1")
            .bind(workspace_id)
            .fetch_one(&db)
            .await
            .expect("count")
    };
    assert_eq!(count().await, 1, "only the exhausting job so far");

    let record = meter(&app, &the_job).await;
    assert_eq!(record.amount, 3 * CENT);
    assert_eq!(count().await, 2);
    let again = meter(&app, &the_job).await;
    assert_eq!(again, record, "metering again returns the same record");
    let (debits, _) = money_totals(&app, workspace_id).await;
    assert_eq!(debits, 3_000_000, "one charge");
    assert_balanced(&app, vec![workspace_id]).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_jobs_are_refused_and_charge_nothing(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let workspace_id = workspace(&app).await;
    let refuse = |job: FinishedJob| {
        let app = &app;
        async move { metering::meter_job(&app.core.db, &app.core.ledger, &job, Utc::now()).await }
    };
    let unknown = refuse(job(workspace_id, "ubuntu-latest", Duration::minutes(3))).await;
    assert!(
        matches!(unknown, Err(MeteringError::Catalog(_))),
        "{unknown:?}"
    );
    let macos_premium = refuse(job(
        workspace_id,
        "tenki-macos-m4-6c-premium",
        Duration::minutes(3),
    ))
    .await;
    assert!(
        matches!(macos_premium, Err(MeteringError::Catalog(_))),
        "{macos_premium:?}"
    );
    let backwards = refuse(job(
        workspace_id,
        "tenki-standard-2c",
        Duration::minutes(-3),
    ))
    .await;
    assert!(
        matches!(backwards, Err(MeteringError::CompletedBeforeStarted(_))),
        "{backwards:?}"
    );
    // GitHub stops a self-hosted job after 5 days: 6 days is a data error.
    let absurd = refuse(job(workspace_id, "tenki-standard-2c", Duration::days(6))).await;
    assert!(
        matches!(absurd, Err(MeteringError::TooLong { .. })),
        "{absurd:?}"
    );
    let nobody = refuse(job(
        Uuid::new_v4(),
        "tenki-standard-2c",
        Duration::minutes(3),
    ))
    .await;
    assert!(
        matches!(nobody, Err(MeteringError::UnknownWorkspace(_))),
        "{nobody:?}"
    );
    assert_eq!(
        free_minutes_left(&app.core.ledger, workspace_id).await,
        1_000
    );
    assert_balanced(&app, vec![workspace_id]).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_price_change_never_alters_past_usage(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let workspace_id = workspace(&app).await;
    exhaust_free_minutes(&app, workspace_id).await;
    let before = meter(
        &app,
        &job(workspace_id, "tenki-standard-8c", Duration::minutes(10)),
    )
    .await;
    assert_eq!(before.price_per_minute, 1_200_000);
    sqlx::query("INSERT INTO runner_prices VALUES ('tenki-standard-8c', $1, 1500000, 750000)")
        .bind(Utc::now() - Duration::hours(1))
        .execute(&db)
        .await
        .expect("new price");
    let after = meter(
        &app,
        &job(workspace_id, "tenki-standard-8c", Duration::minutes(10)),
    )
    .await;
    assert_eq!(
        after.price_per_minute, 1_500_000,
        "new jobs use the new price"
    );
    let stored: i64 = sqlx::query_scalar("SELECT amount FROM usage_records WHERE job_key = $1")
        .bind(&before.job_key)
        .fetch_one(&db)
        .await
        .expect("stored");
    assert_eq!(stored, 12 * CENT, "the earlier job keeps its price");
}

/// Sets `basis_points` as the workspace's discount from `from` on.
async fn set_discount(
    db: &PgPool,
    workspace_id: Uuid,
    from: chrono::DateTime<Utc>,
    basis_points: i32,
) {
    sqlx::query("INSERT INTO workspace_discounts (workspace_id, active_from, basis_points) VALUES ($1, $2, $3)")
        .bind(workspace_id)
        .bind(from)
        .bind(basis_points)
        .execute(db)
        .await
        .expect("discount");
}

#[sqlx::test(migrations = "../migrations")]
async fn discount_and_custom_prices_apply(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let workspace_id = workspace(&app).await;
    exhaust_free_minutes(&app, workspace_id).await;
    set_discount(&db, workspace_id, Utc::now() - Duration::days(1), 2_000).await;
    let discounted = meter(
        &app,
        &job(workspace_id, "tenki-standard-2c", Duration::minutes(10)),
    )
    .await;
    assert_eq!(discounted.amount, 2_400_000, "$0.03 less 20%");
    assert_eq!(
        discounted.discount_basis_points, 2_000,
        "the record keeps its discount"
    );
    // A custom price given without its surcharge gets it (50 %), as the premium rule says.
    sqlx::query(
        "INSERT INTO workspace_prices (workspace_id, label, active_from, price_per_minute) VALUES ($1, 'tenki-standard-4c', $2, 400000)",
    )
    .bind(workspace_id)
    .bind(Utc::now() - Duration::days(1))
    .execute(&db)
    .await
    .expect("custom price");
    let custom = meter(
        &app,
        &job(workspace_id, "tenki-standard-4c", Duration::minutes(10)),
    )
    .await;
    assert_eq!(custom.amount, 3_200_000, "$0.004 × 10 less 20%");
    let premium = meter(
        &app,
        &job(
            workspace_id,
            "tenki-standard-4c-premium",
            Duration::minutes(10),
        ),
    )
    .await;
    assert_eq!(
        premium.premium_surcharge_per_minute, 200_000,
        "half the custom price"
    );
    assert_eq!(premium.amount, 4_800_000, "($0.004 + $0.002) × 10 less 20%");
    let bad = sqlx::query("INSERT INTO workspace_discounts VALUES ($1, now(), 6000)")
        .bind(workspace_id)
        .execute(&db)
        .await;
    assert!(bad.is_err(), "discounts above 50% are refused");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_job_pays_the_discount_in_force_when_it_started_not_when_it_is_metered(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let workspace_id = workspace(&app).await;
    exhaust_free_minutes(&app, workspace_id).await;
    let early = job(workspace_id, "tenki-standard-2c", Duration::minutes(10));
    // Sales sets 50 % from after the job started; the job keeps no discount.
    set_discount(
        &db,
        workspace_id,
        early.started_at + Duration::minutes(1),
        5_000,
    )
    .await;
    let record = meter(&app, &early).await;
    assert_eq!(record.discount_basis_points, 0);
    assert_eq!(
        record.amount,
        3 * CENT,
        "full price: the discount came later"
    );
    let later = job(workspace_id, "tenki-standard-2c", Duration::minutes(5));
    let later = FinishedJob {
        started_at: early.started_at + Duration::minutes(2),
        completed_at: early.started_at + Duration::minutes(12),
        ..later
    };
    let record = meter(&app, &later).await;
    assert_eq!(record.discount_basis_points, 5_000);
    assert_eq!(
        record.amount,
        3 * CENT / 2,
        "half price: started under the discount"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn premium_is_half_the_price_for_every_x64_sku_and_none_for_macos(db: PgPool) {
    let wrong = sqlx::query(
        "INSERT INTO runner_prices VALUES ('tenki-standard-8c', now(), 1200000, 500000)",
    )
    .execute(&db)
    .await;
    let message = wrong
        .expect_err("a surcharge other than 50 % is refused")
        .to_string();
    assert!(message.contains("must be 50 %"), "{message}");
    let macos = sqlx::query(
        "INSERT INTO runner_prices VALUES ('tenki-macos-m4-6c', now(), 12000000, 6000000)",
    )
    .execute(&db)
    .await;
    assert!(macos.is_err(), "macOS has no premium variant");
    sqlx::query(
        "INSERT INTO runner_prices (label, active_from, price_per_minute) VALUES ('tenki-standard-8c', now(), 1300000)",
    )
    .execute(&db)
    .await
    .expect("a new price without a surcharge");
    let surcharge: Option<i64> = sqlx::query_scalar(
        "SELECT premium_surcharge_per_minute FROM runner_prices WHERE label = 'tenki-standard-8c' ORDER BY active_from DESC LIMIT 1",
    )
    .fetch_one(&db)
    .await
    .expect("price");
    assert_eq!(surcharge, Some(650_000), "the rule fills it in");
    let off_rule: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM runner_prices p JOIN runner_skus s USING (label)
         WHERE (s.class = 'x64' AND p.premium_surcharge_per_minute IS DISTINCT FROM p.price_per_minute / 2)
            OR (s.class = 'macos' AND p.premium_surcharge_per_minute IS NOT NULL)",
    )
    .fetch_one(&db)
    .await
    .expect("count");
    assert_eq!(off_rule, 0, "every catalog price follows the rule");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_label_without_a_premium_variant_is_refused_with_its_reason_and_charges_nothing(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let workspace_id = workspace(&app).await;
    let the_job = job(
        workspace_id,
        "tenki-macos-m4-6c-premium",
        Duration::minutes(10),
    );
    let error = metering::meter_job(&db, &app.core.ledger, &the_job, Utc::now())
        .await
        .expect_err("no macOS premium");
    assert_eq!(
        error.not_billed_reason().as_deref(),
        Some("label not offered: tenki-macos-m4-6c-premium")
    );
    assert_eq!(
        free_minutes_left(&app.core.ledger, workspace_id).await,
        1_000
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn labels_are_matched_without_regard_to_case_as_github_does(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let workspace_id = workspace(&app).await;
    let found = tenki_core::catalog::first_tenki_label(&db, &["self-hosted", "Tenki-Standard-4C"])
        .await
        .expect("query");
    assert_eq!(found.as_deref(), Some("tenki-standard-4c"));
    let premium = tenki_core::catalog::first_tenki_label(&db, &["TENKI-STANDARD-2C-Premium"])
        .await
        .expect("query");
    assert_eq!(premium.as_deref(), Some("tenki-standard-2c-premium"));
    let record = meter(
        &app,
        &job(workspace_id, "Tenki-Standard-4C", Duration::minutes(10)),
    )
    .await;
    assert_eq!(record.sku_label, "tenki-standard-4c");
    assert_eq!(record.label, "tenki-standard-4c", "kept as Tenki writes it");
    assert_eq!(record.free_vcpu_minutes, 40);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_job_longer_than_five_days_and_a_margin_is_refused_and_charges_nothing(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let workspace_id = workspace(&app).await;
    let too_long = job(
        workspace_id,
        "tenki-standard-2c",
        Duration::days(5) + Duration::hours(2),
    );
    let error = metering::meter_job(&db, &app.core.ledger, &too_long, Utc::now())
        .await
        .expect_err("longer than GitHub allows");
    assert!(matches!(error, MeteringError::TooLong { .. }), "{error:?}");
    let within = job(workspace_id, "tenki-standard-2c", Duration::days(5));
    let record = meter(&app, &within).await;
    assert_eq!(record.minutes, 5 * 24 * 60);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_job_key_already_metered_for_another_workspace_is_refused(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let first = workspace(&app).await;
    let second = workspace(&app).await;
    let the_job = job(first, "tenki-standard-2c", Duration::minutes(10));
    meter(&app, &the_job).await;
    let elsewhere = FinishedJob {
        workspace_id: second,
        ..the_job
    };
    let error = metering::meter_job(&db, &app.core.ledger, &elsewhere, Utc::now())
        .await
        .expect_err("another workspace's record is not returned as this one's");
    assert!(
        matches!(error, MeteringError::OtherWorkspace { .. }),
        "{error:?}"
    );
    assert_eq!(free_minutes_left(&app.core.ledger, second).await, 1_000);
}

#[sqlx::test(migrations = "../migrations")]
async fn usage_reversal_gives_back_money_and_free_minutes_and_keeps_the_trail(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let workspace_id = workspace(&app).await;
    // 990 free minutes used, then a job partly free (10) and partly paid.
    meter(
        &app,
        &job(workspace_id, "tenki-standard-2c", Duration::minutes(990)),
    )
    .await;
    let the_job = job(workspace_id, "tenki-standard-4c", Duration::minutes(10));
    let record = meter(&app, &the_job).await;
    assert_eq!((record.free_vcpu_minutes, record.amount), (20, 3 * CENT));
    let request = AdminRequest {
        admin_email: "ops@tenki.test".to_owned(),
        reason: "runner crashed mid-job".to_owned(),
    };
    let first =
        adjustments::reverse_usage(&db, &app.core.ledger, &record.job_key, &request, Utc::now())
            .await;
    assert_eq!(first.expect("reversed"), Adjusted::Done);
    let again =
        adjustments::reverse_usage(&db, &app.core.ledger, &record.job_key, &request, Utc::now())
            .await;
    assert_eq!(again.expect("idempotent"), Adjusted::AlreadyDone);
    assert_eq!(free_minutes_left(&app.core.ledger, workspace_id).await, 10);
    let audit: (String, String) =
        sqlx::query_as("SELECT reason, admin_email FROM ledger_adjustments WHERE job_key = $1")
            .bind(&record.job_key)
            .fetch_one(&db)
            .await
            .expect("audited");
    assert_eq!(
        audit,
        (
            "runner crashed mid-job".to_owned(),
            "ops@tenki.test".to_owned()
        )
    );
    let metered_again = metering::meter_job(&db, &app.core.ledger, &the_job, Utc::now()).await;
    assert!(
        matches!(metered_again, Err(MeteringError::Reversed(_))),
        "{metered_again:?}"
    );
    assert_balanced(&app, vec![workspace_id]).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn promotional_credit_is_posted_once_per_key_and_needs_a_reason(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let workspace_id = workspace(&app).await;
    let request = AdminRequest {
        admin_email: "sales@tenki.test".to_owned(),
        reason: "conference voucher".to_owned(),
    };
    let add = |amount: i64, key: &'static str| {
        let (db, ledger, request) = (db.clone(), app.core.ledger.clone(), request.clone());
        async move {
            adjustments::promotional_credit(
                &db,
                &ledger,
                workspace_id,
                amount,
                key,
                &request,
                Utc::now(),
            )
            .await
        }
    };
    assert_eq!(
        add(2_500_000_000, "voucher-1").await.expect("credited"),
        Adjusted::Done
    );
    assert_eq!(
        add(2_500_000_000, "voucher-1").await.expect("same key"),
        Adjusted::AlreadyDone
    );
    // The same key with another amount is a mistake, not "done".
    let reused = add(3_000_000_000, "voucher-1").await;
    match reused {
        Err(adjustments::AdjustmentError::KeyReused { amount, .. }) => {
            assert_eq!(amount, 2_500_000_000);
        }
        other => panic!("expected KeyReused, got {other:?}"),
    }
    let reused = add(-2_500_000_000, "voucher-1").await;
    assert!(
        matches!(reused, Err(adjustments::AdjustmentError::KeyReused { .. })),
        "a deduction under a credit's key: {reused:?}"
    );
    assert_eq!(
        add(-500_000_000, "voucher-1-fix").await.expect("deducted"),
        Adjusted::Done
    );
    let (debits, credits) = money_totals(&app, workspace_id).await;
    assert_eq!(
        (debits, credits),
        (500_000_000, 2_500_000_000),
        "$25 credited, $5 deducted"
    );
    let no_reason = AdminRequest {
        admin_email: "sales@tenki.test".to_owned(),
        reason: " ".to_owned(),
    };
    let refused = adjustments::promotional_credit(
        &db,
        &app.core.ledger,
        workspace_id,
        1,
        "k",
        &no_reason,
        Utc::now(),
    )
    .await;
    assert!(refused.is_err());
    assert_balanced(&app, vec![workspace_id]).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn reconciliation_reports_a_ledger_transfer_the_database_does_not_know(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let workspace_id = workspace(&app).await;
    exhaust_free_minutes(&app, workspace_id).await;
    assert_balanced(&app, vec![workspace_id]).await;
    // A charge in the ledger with no usage record behind it.
    let stray = UsagePosting::for_job(workspace_id, &format!("stray:{}", Uuid::new_v4()));
    app.core
        .ledger
        .post_usage(&stray, 0, 123)
        .await
        .expect("posted");
    let report = reconcile::reconcile(
        &app.core.db,
        &app.core.ledger,
        &Scope::Workspaces(vec![workspace_id]),
    )
    .await
    .expect("runs");
    assert!(!report.is_balanced());
    let difference = &report.differences[0];
    assert_eq!(
        (difference.database, difference.ledger),
        (0, 123),
        "{difference}"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn random_job_sequences_never_overdraw_free_minutes_and_always_reconcile(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let labels = [
        ("tenki-standard-2c", 2_i64, 300_000_i64),
        ("tenki-standard-4c", 4, 600_000),
        ("tenki-standard-8c", 8, 1_200_000),
        ("tenki-standard-4c-premium", 4, 900_000),
        ("tenki-macos-m4-6c", 6, 12_000_000),
    ];
    // proptest generates the sequences; the async metering runs outside its (sync) runner.
    let strategy = proptest::collection::vec((0..labels.len(), 1_i64..=30_000), 1..25);
    let mut runner = TestRunner::deterministic();
    for case in 0..12 {
        let jobs = strategy.new_tree(&mut runner).expect("case").current();
        let workspace_id = workspace(&app).await;
        let mut free_left: i64 = 2_000;
        for (index, seconds) in &jobs {
            let (label, vcpus, rate) = labels[*index];
            let record = meter(&app, &job(workspace_id, label, Duration::seconds(*seconds))).await;
            let needed = record.minutes * vcpus;
            let free = needed.min(free_left);
            free_left -= free;
            assert_eq!(record.free_vcpu_minutes, free, "case {case}: {jobs:?}");
            // Free part plus paid part is the job's full price.
            let full_price = record.minutes * rate;
            let free_value = free * rate / vcpus;
            assert_eq!(
                record.amount + free_value,
                full_price,
                "case {case}: {jobs:?}"
            );
            assert!(free_left >= 0);
        }
        let ledger_left = app
            .core
            .ledger
            .free_vcpu_minutes_left(workspace_id)
            .await
            .expect("balance");
        assert_eq!(
            i128::try_from(ledger_left).expect("fits"),
            i128::from(free_left),
            "case {case}"
        );
        assert_balanced(&app, vec![workspace_id]).await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn usage_page_and_csv_show_the_month_per_job(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.sign_up(
        &app.client,
        "Usage Co",
        "usage@acme.test",
        "a long enough password",
    )
    .await;
    let workspace_id =
        tenki_core::workspaces::first_workspace_of_email(&app.core.db, "usage@acme.test")
            .await
            .expect("query")
            .expect("workspace");
    let now = Utc::now();
    let jobs = [
        ("tenki-standard-2c", 10),
        ("tenki-standard-4c", 5),
        ("tenki-standard-2c", 3),
    ];
    for (label, minutes) in jobs {
        let mut the_job = job(workspace_id, label, Duration::minutes(minutes));
        the_job.workflow = "Build, test".to_owned();
        meter(&app, &the_job).await;
    }
    let month = usage::Month::containing(now - Duration::minutes(1)).to_string();

    let response = app.call(&app.client, "usage", &[("month", &month)]).await;
    assert_eq!(response.status(), 200);
    let view: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(view["jobs"], 3);
    assert_eq!(view["minutes"], 18);
    assert_eq!(view["free_minutes"], 10 + 10 + 3);
    assert_eq!(view["by_label"][0]["key"], "tenki-standard-2c");
    assert_eq!(view["by_label"][0]["minutes"], 13);

    let csv = app
        .client
        .get(format!("{}/usage/export.csv?month={month}", app.address))
        .send()
        .await
        .expect("CSV");
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let body = csv.text().await.expect("text");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 1 + 3, "a header and one row per job: {body}");
    assert!(lines[0].starts_with("job_key,"), "{body}");
    assert!(lines[1].contains("\"Build, test\""), "quoted: {body}");
    // Then an empty GitHub page: these jobs were metered without a delivery.
    assert!(
        lines[1].ends_with(",0.000000,0,"),
        "free job costs $0: {body}"
    );

    let stranger = app.new_browser();
    let refused = stranger
        .get(format!("{}/usage/export.csv?month={month}", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 401, "no session, no CSV");
}

#[sqlx::test(migrations = "../migrations")]
async fn the_usage_pages_lines_add_up_to_the_total_it_shows(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let email = format!("{}@usage.test", Uuid::new_v4());
    app.sign_up(&app.client, "Usage", &email, "a long enough password")
        .await;
    let workspace_id = tenki_core::workspaces::first_workspace_of_email(&db, &email)
        .await
        .expect("query")
        .expect("workspace");
    exhaust_free_minutes(&app, workspace_id).await;
    // $0.003 + $0.0045 + $0.009: at cents the lines read $0.00 + $0.00 + $0.01 under $0.02.
    for label in [
        "tenki-standard-2c",
        "tenki-standard-2c-premium",
        "tenki-standard-4c-premium",
    ] {
        meter(&app, &job(workspace_id, label, Duration::minutes(1))).await;
    }
    let response = app.call(&app.client, "usage", &[("month", "")]).await;
    assert_eq!(response.status(), 200);
    let page: serde_json::Value = response.json().await.expect("JSON");
    let in_micro_cents = |text: &serde_json::Value| {
        tenki_core::money::parse_dollars(text.as_str().expect("text")).expect("an amount")
    };
    let total = in_micro_cents(&page["cost"]);
    for breakdown in ["by_label", "by_repository", "by_workflow"] {
        let lines: i64 = page[breakdown]
            .as_array()
            .expect("rows")
            .iter()
            .map(|row| in_micro_cents(&row["cost"]))
            .sum();
        assert_eq!(lines, total, "{breakdown}: {page}");
    }
    assert_eq!(
        page["cost"], "0.017",
        "one more decimal, so the lines add up"
    );
}
