//! Add-ons and extra slots (SPEC §10, §5) through the Add-ons page's forms: a card first, on at
//! once (admission sees it), a cancelled add-on on to the 1st and then off by itself, and the
//! slot prices and concurrency of the acceptance numbers.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use sqlx::PgPool;
use tenki_core::billing::addons::{self, start_of_next_month};

use crate::billing::add_card;
use crate::harness::{TestApp, eventually_within};
use crate::runners::{Customer, customer, job_admission};

async fn post_form(
    app: &TestApp,
    customer: &Customer,
    path: &str,
    form: &[(&str, &str)],
) -> String {
    let response = customer
        .browser
        .post(format!("{}{path}", app.address))
        .form(form)
        .send()
        .await
        .expect("form");
    assert!(response.status().is_redirection(), "{}", response.status());
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_owned()
}

async fn page(app: &TestApp, customer: &Customer) -> Value {
    let response = app.call(&customer.browser, "add-ons", &[]).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

fn addon<'a>(page: &'a Value, key: &str) -> &'a Value {
    page["addons"]
        .as_array()
        .and_then(|all| all.iter().find(|a| a["key"] == key))
        .expect("add-on listed")
}

fn slots<'a>(page: &'a Value, class: &str) -> &'a Value {
    page["slots"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["class"] == class))
        .expect("slots listed")
}

#[sqlx::test(migrations = "../migrations")]
async fn the_macos_addon_needs_a_card_starts_blocked_jobs_and_once_cancelled_stays_on_to_the_first(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "mac-co").await;
    let id = app
        .github
        .queue_sample_workflow(
            customer.installation_id,
            &customer.repository,
            "tenki-macos-m4-6c",
            1,
            Duration::from_secs(2),
        )
        .await[0];
    eventually_within(30, "blocked for the add-on", || {
        let db = db.clone();
        async move {
            job_admission(&db, id).await.2.as_deref()
                == Some("blocked: macOS needs the macOS add-on")
        }
    })
    .await;

    let on = [("addon", "macos"), ("action", "on")];
    assert_eq!(
        post_form(&app, &customer, "/add-ons/addon", &on).await,
        "/add-ons?error=no_card"
    );
    assert_eq!(addon(&page(&app, &customer).await, "macos")["state"], "off");

    add_card(&app, &customer, "4242 4242 4242 4242").await;
    assert_eq!(
        post_form(&app, &customer, "/add-ons/addon", &on).await,
        "/add-ons?done=on&addon=macos"
    );
    let listed = page(&app, &customer).await;
    assert_eq!(addon(&listed, "macos")["state"], "on");
    assert_eq!(addon(&listed, "macos")["price"], "$39.00 / month");
    eventually_within(60, "the blocked macOS job admitted and run", || {
        let db = db.clone();
        async move { job_admission(&db, id).await.0 == "completed" }
    })
    .await;

    let cancel = [("addon", "macos"), ("action", "cancel")];
    post_form(&app, &customer, "/add-ons/addon", &cancel).await;
    let first = start_of_next_month(Utc::now());
    let listed = page(&app, &customer).await;
    assert_eq!(addon(&listed, "macos")["state"], "ending");
    assert_eq!(
        addon(&listed, "macos")["status"],
        format!("On until {} (cancelled)", first.format("%B %-d, %Y"))
    );

    // Still on (and billed) up to the last second of the month; off on the 1st, by itself.
    let ended = addons::end_due(&db, first - chrono::Duration::seconds(1))
        .await
        .expect("end");
    assert_eq!(ended.addons, 0);
    assert_eq!(
        addon(&page(&app, &customer).await, "macos")["state"],
        "ending"
    );
    let ended = addons::end_due(&db, first).await.expect("end");
    assert_eq!(ended.addons, 1);
    assert_eq!(addon(&page(&app, &customer).await, "macos")["state"], "off");
    let period: (chrono::DateTime<Utc>,) = sqlx::query_as(
        "SELECT ended_at FROM addon_periods WHERE workspace_id = $1 AND addon = 'macos'",
    )
    .bind(customer.workspace_id)
    .fetch_one(&db)
    .await
    .expect("the month it was on is kept for the invoice");
    assert_eq!(period.0, first);
}

#[sqlx::test(migrations = "../migrations")]
async fn ten_extra_x64_slots_cost_70_dollars_and_five_macos_slots_245_and_fewer_apply_on_the_first(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "slots-co").await;
    let set = |class: &'static str, count: &'static str| [("class", class), ("slots", count)];
    assert_eq!(
        post_form(&app, &customer, "/add-ons/slots", &set("x64", "10")).await,
        "/add-ons?error=no_card"
    );
    add_card(&app, &customer, "4242 4242 4242 4242").await;
    post_form(&app, &customer, "/add-ons/slots", &set("x64", "10")).await;
    post_form(&app, &customer, "/add-ons/slots", &set("macos", "5")).await;
    let listed = page(&app, &customer).await;
    assert_eq!(slots(&listed, "x64")["monthly"], "$70.00 / month");
    assert_eq!(slots(&listed, "x64")["concurrent"], 50);
    assert_eq!(slots(&listed, "macos")["monthly"], "$245.00 / month");
    assert_eq!(slots(&listed, "macos")["concurrent"], 45);
    let admitted: i32 = sqlx::query_scalar(
        "SELECT slots FROM workspace_extra_slots WHERE workspace_id = $1 AND runner_class = 'x64'",
    )
    .bind(customer.workspace_id)
    .fetch_one(&db)
    .await
    .expect("slots");
    assert_eq!(admitted, 10, "what admission reads");

    assert_eq!(
        post_form(&app, &customer, "/add-ons/slots", &set("x64", "-1")).await,
        "/add-ons?error=bad_slots"
    );
    post_form(&app, &customer, "/add-ons/slots", &set("x64", "5")).await;
    let first = start_of_next_month(Utc::now());
    let listed = page(&app, &customer).await;
    assert_eq!(
        slots(&listed, "x64")["slots"],
        10,
        "paid for to the end of the month"
    );
    assert_eq!(
        slots(&listed, "x64")["next"],
        format!("Lowered to 5 from {}", first.format("%B %-d, %Y"))
    );
    addons::end_due(&db, first).await.expect("end");
    let listed = page(&app, &customer).await;
    assert_eq!(slots(&listed, "x64")["slots"], 5);
    assert_eq!(slots(&listed, "x64")["monthly"], "$35.00 / month");
    assert_eq!(slots(&listed, "x64")["next"], Value::Null);
}
