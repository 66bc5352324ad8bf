//! The spending limit (Settings): alerts at 50, 80 and 100 % once each, and the hard cap that
//! holds new jobs back until the limit is raised.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use sqlx::PgPool;
use tenki_core::metering::{self, FinishedJob, JobKey};
use uuid::Uuid;

use crate::billing::add_card;
use crate::harness::{TestApp, eventually_within};
use crate::runners::{Customer, customer, job_admission};

async fn meter_now(app: &TestApp, customer: &Customer, minutes: i64) {
    let now = Utc::now();
    let job = FinishedJob {
        workspace_id: customer.workspace_id,
        key: JobKey {
            github_job_id: i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000_000)
                .expect("fits"),
            run_attempt: 1,
        },
        label: "tenki-standard-2c".to_owned(),
        started_at: now - chrono::Duration::minutes(minutes),
        completed_at: now,
        repository: "acme/web".to_owned(),
        workflow: "CI".to_owned(),
    };
    metering::meter_job(&app.core.db, &app.core.ledger, &job, now)
        .await
        .expect("metered");
}

async fn save(app: &TestApp, customer: &Customer, form: &[(&str, &str)]) -> String {
    let response = customer
        .browser
        .post(format!("{}/settings/spending-limit", app.address))
        .form(form)
        .send()
        .await
        .expect("form");
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("redirect")
        .to_owned()
}

async fn spending_notifications(app: &TestApp, customer: &Customer) -> Vec<String> {
    let page: Value = app
        .call(&customer.browser, "billing", &[])
        .await
        .json()
        .await
        .expect("JSON");
    page["notifications"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|n| n.as_str())
        .filter(|n| n.contains("spending limit"))
        .map(str::to_owned)
        .collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn spending_alerts_come_once_at_50_80_and_100_percent_and_the_hard_cap_holds_jobs_until_raised(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "limit-co").await;
    add_card(&app, &customer, "4242 4242 4242 4242").await;
    assert_eq!(
        save(&app, &customer, &[("limit", "abc")]).await,
        "/settings?error=bad_limit"
    );
    assert_eq!(
        save(&app, &customer, &[("limit", "-1")]).await,
        "/settings?error=bad_limit"
    );
    assert_eq!(
        save(&app, &customer, &[("limit", "0.05"), ("hard_cap", "on")]).await,
        "/settings?saved=1"
    );
    let page: Value = app
        .call(&customer.browser, "spending", &[])
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(page["limit"], "0.05");
    assert_eq!(page["hard_cap"], true);

    meter_now(&app, &customer, 1_000).await; // free
    meter_now(&app, &customer, 10).await; // $0.03: 60 %
    let alerts = spending_notifications(&app, &customer).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].starts_with(&format!(
        "{}: You have used 60 % of your $0.05 monthly spending limit",
        Utc::now().format("%B %-d, %Y")
    )));
    meter_now(&app, &customer, 10).await; // $0.06: 120 %
    let alerts = spending_notifications(&app, &customer).await;
    assert_eq!(alerts.len(), 3, "50, 80 and 100 %: {alerts:?}");
    assert!(alerts.iter().any(|a| a.contains("No new jobs start")));
    assert_eq!(
        spending_notifications(&app, &customer).await.len(),
        3,
        "once each"
    );

    let id = app
        .github
        .queue_sample_workflow(
            customer.installation_id,
            &customer.repository,
            "tenki-standard-2c",
            1,
            Duration::from_secs(1),
        )
        .await[0];
    eventually_within(30, "held back by the hard cap", || {
        let db = db.clone();
        async move {
            job_admission(&db, id).await.2.as_deref()
                == Some(
                    "blocked: the monthly spending limit ($0.05) is reached — raise it in Settings",
                )
        }
    })
    .await;
    save(&app, &customer, &[("limit", "100.00"), ("hard_cap", "on")]).await;
    eventually_within(60, "started once the limit was raised", || {
        let db = db.clone();
        async move { job_admission(&db, id).await.0 == "completed" }
    })
    .await;
}
