//! Enterprise (SPEC §12): a discount and a custom price apply to jobs that start afterwards,
//! are audited, and refuse what the rules forbid; the inquiry form reaches sales.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use tenki_core::billing::enterprise::{self, EnterpriseError};
use tenki_core::ledger::adjustments::AdminRequest;
use tenki_core::metering::{self, FinishedJob, JobKey};
use uuid::Uuid;

use crate::harness::TestApp;
use crate::runners::{Customer, customer};

/// Meters a 2c (or `label`) job of `minutes` that started at `started_at`; its amount.
async fn amount_of(
    app: &TestApp,
    customer: &Customer,
    label: &str,
    started_at: DateTime<Utc>,
    minutes: i64,
) -> i64 {
    let job = FinishedJob {
        workspace_id: customer.workspace_id,
        key: JobKey {
            github_job_id: i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000_000)
                .expect("fits"),
            run_attempt: 1,
        },
        label: label.to_owned(),
        started_at,
        completed_at: started_at + Duration::minutes(minutes),
        repository: "acme/web".to_owned(),
        workflow: "CI".to_owned(),
    };
    metering::meter_job(&app.core.db, &app.core.ledger, &job, Utc::now())
        .await
        .expect("metered")
        .amount
}

fn sales() -> AdminRequest {
    AdminRequest {
        admin_email: "sales@tenki.test".to_owned(),
        reason: "annual contract".to_owned(),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_discount_applies_to_jobs_that_start_afterwards_and_is_audited(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "discount-co").await;
    let from = Utc::now() - Duration::hours(1);
    amount_of(
        &app,
        &customer,
        "tenki-standard-2c",
        from - Duration::days(1),
        1_000,
    )
    .await; // free
    let refused = enterprise::set_discount(&db, customer.workspace_id, 5_001, &sales(), from).await;
    assert!(
        matches!(refused, Err(EnterpriseError::DiscountOutOfRange)),
        "{refused:?}"
    );
    let no_reason = AdminRequest {
        reason: " ".to_owned(),
        ..sales()
    };
    let refused =
        enterprise::set_discount(&db, customer.workspace_id, 2_000, &no_reason, from).await;
    assert!(
        matches!(refused, Err(EnterpriseError::MissingReasonOrAdmin)),
        "{refused:?}"
    );
    enterprise::set_discount(&db, customer.workspace_id, 2_000, &sales(), from)
        .await
        .expect("20 %");
    let before = amount_of(
        &app,
        &customer,
        "tenki-standard-2c",
        from - Duration::minutes(20),
        10,
    )
    .await;
    let after = amount_of(
        &app,
        &customer,
        "tenki-standard-2c",
        from + Duration::minutes(5),
        10,
    )
    .await;
    assert_eq!(before, 3_000_000, "started before: $0.03");
    assert_eq!(after, 2_400_000, "started after: 20 % off, $0.024");
    let audit: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT action, detail, reason, admin_email FROM admin_audit WHERE workspace_id = $1",
    )
    .bind(customer.workspace_id)
    .fetch_all(&db)
    .await
    .expect("audit");
    assert_eq!(
        audit,
        [(
            "set_discount".to_owned(),
            "discount 20.00 %".to_owned(),
            "annual contract".to_owned(),
            "sales@tenki.test".to_owned()
        )]
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_custom_price_applies_to_jobs_that_start_afterwards_and_keeps_the_premium_rule(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "price-co").await;
    let from = Utc::now() - Duration::hours(1);
    amount_of(
        &app,
        &customer,
        "tenki-standard-2c",
        from - Duration::days(1),
        1_000,
    )
    .await; // free
    let odd = enterprise::set_price(
        &db,
        customer.workspace_id,
        "tenki-standard-2c",
        200_001,
        &sales(),
        from,
    )
    .await;
    assert!(
        matches!(&odd, Err(EnterpriseError::PriceRefused(m)) if m.contains("even")),
        "{odd:?}"
    );
    let unknown = enterprise::set_price(
        &db,
        customer.workspace_id,
        "tenki-huge-99c",
        200_000,
        &sales(),
        from,
    )
    .await;
    assert!(
        matches!(&unknown, Err(EnterpriseError::PriceRefused(m)) if m.contains("not in the catalog")),
        "{unknown:?}"
    );
    enterprise::set_price(
        &db,
        customer.workspace_id,
        "tenki-standard-2c",
        200_000,
        &sales(),
        from,
    )
    .await
    .expect("$0.002 a minute");
    let before = amount_of(
        &app,
        &customer,
        "tenki-standard-2c",
        from - Duration::minutes(20),
        10,
    )
    .await;
    let after = amount_of(
        &app,
        &customer,
        "tenki-standard-2c",
        from + Duration::minutes(5),
        10,
    )
    .await;
    let premium = amount_of(
        &app,
        &customer,
        "tenki-standard-2c-premium",
        from + Duration::minutes(5),
        10,
    )
    .await;
    assert_eq!(
        (before, after, premium),
        (3_000_000, 2_000_000, 3_000_000),
        "$0.03 before, $0.02 after, premium the price + 50 %"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn an_enterprise_inquiry_from_the_add_ons_page_reaches_sales(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "big-co").await;
    let post = |form: Vec<(&'static str, &'static str)>| {
        customer
            .browser
            .post(format!("{}/enterprise/inquiry", app.address))
            .form(&form)
            .send()
    };
    let refused = post(vec![
        ("company", ""),
        ("email", "cto@big.test"),
        ("message", ""),
    ])
    .await
    .expect("form");
    assert_eq!(refused.headers()["location"], "/add-ons?error=bad_inquiry");
    let sent = post(vec![
        ("company", "Big Co"),
        ("email", "cto@big.test"),
        ("message", "2,000 jobs a day"),
    ])
    .await
    .expect("form");
    assert_eq!(sent.headers()["location"], "/add-ons?done=inquiry");
    let listed = enterprise::inquiries(&db, 10).await.expect("inquiries");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].company.as_str(),
            listed[0].email.as_str(),
            listed[0].message.as_str()
        ),
        ("Big Co", "cto@big.test", "2,000 jobs a day")
    );
    assert_eq!(listed[0].workspace_id, Some(customer.workspace_id));
}
