//! Storage (SPEC §11) through the internal endpoint the storage service calls, and on the
//! invoice: the acceptance numbers ($10.00, $2.00, and $0 for the cache).

use chrono::{NaiveDate, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use tenki_core::billing::invoices::{self, Advanced};

use crate::billing::add_card;
use crate::harness::TestApp;
use crate::invoices::{lines, manual_invoice};
use crate::runners::{Customer, customer};

const GB: i64 = 1_000_000_000;

async fn post_samples(app: &TestApp, token: Option<&str>, body: &Value) -> (u16, String) {
    let mut request = app
        .client
        .post(format!("{}/internal/storage-samples", app.address))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// One sample per day of November 2026 (30 days): `artifact(day)` and `cache(day)` bytes.
fn november(
    customer: &Customer,
    artifact: impl Fn(u32) -> i64,
    cache: impl Fn(u32) -> i64,
) -> Value {
    let samples: Vec<Value> = (1..=30)
        .map(|day| {
            json!({
                "workspace_id": customer.workspace_id,
                "day": NaiveDate::from_ymd_opt(2026, 11, day).expect("day"),
                "artifact_bytes": artifact(day),
                "cache_bytes": cache(day),
            })
        })
        .collect();
    json!({ "samples": samples })
}

async fn samples_stored(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM storage_samples")
        .fetch_one(db)
        .await
        .expect("count")
}

#[sqlx::test(migrations = "../migrations")]
async fn storage_samples_need_the_internal_token_and_a_bad_one_stores_nothing(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "samples-co").await;
    let good = november(&customer, |_| GB, |_| 0);
    let token = server::settings::SANDBOX_INTERNAL_TOKEN;
    assert_eq!(post_samples(&app, None, &good).await.0, 401);
    assert_eq!(post_samples(&app, Some("wrong"), &good).await.0, 401);
    let mut negative = good.clone();
    negative["samples"][29]["artifact_bytes"] = json!(-1);
    let (status, text) = post_samples(&app, Some(token), &negative).await;
    assert_eq!(
        (status, text.as_str()),
        (422, "sample 29: bytes cannot be negative")
    );
    let mut unknown = good.clone();
    unknown["samples"][3]["workspace_id"] = json!(uuid::Uuid::new_v4());
    assert_eq!(post_samples(&app, Some(token), &unknown).await.0, 422);
    assert_eq!(
        post_samples(&app, Some(token), &json!({"rows": []}))
            .await
            .0,
        400
    );
    assert_eq!(samples_stored(&db).await, 0, "all or nothing");
    let (status, text) = post_samples(&app, Some(token), &good).await;
    assert_eq!((status, text.as_str()), (200, r#"{"recorded":30}"#));
    // The same days again replace, never add.
    assert_eq!(post_samples(&app, Some(token), &good).await.0, 200);
    assert_eq!(samples_stored(&db).await, 30);
}

/// Posts `samples`, then issues and pays November's invoice; its lines.
async fn november_invoice(
    app: &TestApp,
    db: &PgPool,
    customer: &Customer,
    samples: &Value,
) -> Vec<(String, i64)> {
    let token = server::settings::SANDBOX_INTERNAL_TOKEN;
    assert_eq!(post_samples(app, Some(token), samples).await.0, 200);
    let invoice_id = manual_invoice(
        db,
        customer,
        NaiveDate::from_ymd_opt(2026, 11, 1).expect("month"),
    )
    .await;
    let outcome = invoices::advance(
        db,
        &app.core.stripe,
        &app.core.ledger,
        invoice_id,
        Utc::now(),
        10,
    )
    .await
    .expect("advance");
    assert!(
        matches!(&outcome, Advanced::Settled(state) if state == "paid" || state == "nothing_due"),
        "{outcome:?}"
    );
    lines(db, invoice_id).await
}

#[sqlx::test(migrations = "../migrations")]
async fn fifty_gb_stored_all_month_is_billed_ten_dollars(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "fifty-co").await;
    add_card(&app, &customer, "4242 4242 4242 4242").await;
    let billed = november_invoice(
        &app,
        &db,
        &customer,
        &november(&customer, |_| 50 * GB, |_| 0),
    )
    .await;
    assert_eq!(billed, [("Storage: 50.00 GB on average".to_owned(), 1_000)]);
}

#[sqlx::test(migrations = "../migrations")]
async fn twenty_gb_from_day_16_of_a_30_day_month_is_billed_two_dollars_and_the_cache_nothing(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "twenty-co").await;
    add_card(&app, &customer, "4242 4242 4242 4242").await;
    let samples = november(
        &customer,
        |day| if day >= 16 { 20 * GB } else { 0 },
        |_| 10 * GB,
    );
    let billed = november_invoice(&app, &db, &customer, &samples).await;
    assert_eq!(billed, [("Storage: 10.00 GB on average".to_owned(), 200)]);
}

#[sqlx::test(migrations = "../migrations")]
async fn cache_use_up_to_ten_gb_costs_nothing(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "cache-co").await;
    add_card(&app, &customer, "4242 4242 4242 4242").await;
    let token = server::settings::SANDBOX_INTERNAL_TOKEN;
    assert_eq!(
        post_samples(&app, Some(token), &november(&customer, |_| 0, |_| 10 * GB))
            .await
            .0,
        200
    );
    let report = invoices::run_cycle(
        &db,
        NaiveDate::from_ymd_opt(2026, 11, 1).expect("month"),
        Utc::now(),
    )
    .await
    .expect("cycle");
    assert_eq!(report.created, 0, "nothing to bill: no invoice");
    let billed = november_invoice(&app, &db, &customer, &json!({"samples": []})).await;
    assert_eq!(billed, Vec::<(String, i64)>::new());
}
