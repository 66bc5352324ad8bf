//! Cards and Stripe's webhooks (SPEC §9) end to end: the Billing page's buttons, the Stripe
//! double's Checkout and billing portal driven over HTTP as a browser drives them, the production
//! `async-stripe` client talking to the double, and its signed events arriving at the intake.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use stripe_webhook::Webhook;
use tenki_core::billing::cards::{self, CardError, ReturnUrls};
use tenki_core::workspaces::{Caller, Membership, Role};

use crate::harness::{TestApp, eventually_within};
use crate::runners::{Customer, customer, job_admission, jobs_page, use_up_free_minutes};

/// Follows one redirect: the `Location` of a 303 (or 302/307), which must be there.
pub(crate) fn location(response: &reqwest::Response) -> String {
    assert!(
        response.status().is_redirection(),
        "expected a redirect, got {}",
        response.status()
    );
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_owned()
}

/// The Billing page's server function, as the browser reads it.
async fn billing(app: &TestApp, customer: &Customer) -> Value {
    let response = app.call(&customer.browser, "billing", &[]).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

/// "Add a card" → the double's Checkout page: the session's address.
pub(crate) async fn open_checkout(app: &TestApp, customer: &Customer) -> String {
    let response = customer
        .browser
        .post(format!("{}/billing/add-card", app.address))
        .send()
        .await
        .expect("add-card");
    let checkout = location(&response);
    assert!(
        checkout.starts_with(&format!("{}/sandbox/stripe/checkout/cs_test_", app.address)),
        "{checkout}"
    );
    checkout
}

/// Types `card` into Checkout and submits, as the browser does; the response.
pub(crate) async fn submit_card(
    customer: &Customer,
    checkout: &str,
    card: &str,
) -> reqwest::Response {
    customer
        .browser
        .post(checkout)
        .form(&[("card", card), ("expiry", "12 / 34"), ("cvc", "123")])
        .send()
        .await
        .expect("checkout")
}

/// Adds a card through Checkout and follows Stripe's return to the Billing page.
pub async fn add_card(app: &TestApp, customer: &Customer, card: &str) -> String {
    let checkout = open_checkout(app, customer).await;
    let back = location(&submit_card(customer, &checkout, card).await);
    assert!(
        back.starts_with(&format!(
            "{}/billing/card-added?session_id=cs_test_",
            app.address
        )),
        "{back}"
    );
    let response = customer.browser.get(&back).send().await.expect("return");
    location(&response)
}

async fn payment_method_flag(db: &PgPool, customer: &Customer) -> String {
    sqlx::query_scalar("SELECT payment_method FROM workspaces WHERE id = $1")
        .bind(customer.workspace_id)
        .fetch_one(db)
        .await
        .expect("workspace")
}

#[sqlx::test(migrations = "../migrations")]
async fn adding_a_card_in_checkout_shows_it_on_billing_and_releases_jobs_blocked_for_free_minutes(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "card-co").await;
    let page = billing(&app, &customer).await;
    assert_eq!(page["cards"], json!([]));
    assert_eq!(page["can_change"], true);

    use_up_free_minutes(&app, customer.workspace_id).await;
    let id = app
        .github
        .queue_sample_workflow(
            customer.installation_id,
            &customer.repository,
            "tenki-standard-2c",
            1,
            Duration::from_secs(2),
        )
        .await[0];
    eventually_within(30, "blocked for free minutes", || {
        let db = db.clone();
        async move { job_admission(&db, id).await.1 == "blocked" }
    })
    .await;

    let landed = add_card(&app, &customer, "4242 4242 4242 4242").await;
    assert_eq!(landed, "/billing?card=added");
    let page = billing(&app, &customer).await;
    assert_eq!(
        page["cards"],
        json!([{"brand": "Visa", "last4": "4242", "expires": "12/2034"}])
    );
    assert_eq!(payment_method_flag(&db, &customer).await, "valid");
    let stored: (String, String) = sqlx::query_as(
        "SELECT brand, last4 FROM cards WHERE workspace_id = $1 AND removed_at IS NULL",
    )
    .bind(customer.workspace_id)
    .fetch_one(&db)
    .await
    .expect("card row");
    assert_eq!(
        stored,
        ("visa".to_owned(), "4242".to_owned()),
        "never the number"
    );

    eventually_within(60, "released, run and billed", || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT metered FROM github_jobs WHERE github_job_id = $1",
            )
            .bind(id)
            .fetch_optional(&db)
            .await
            .expect("job")
                == Some(true)
        }
    })
    .await;
    let amount: i64 = sqlx::query_scalar("SELECT amount FROM usage_records WHERE job_key = $1")
        .bind(format!("{id}:1"))
        .fetch_one(&db)
        .await
        .expect("usage");
    assert_eq!(amount, 300_000, "one paid minute on 2c: $0.003");
    assert_eq!(
        jobs_page(&app, &customer).await["jobs"][0]["status"],
        "succeeded"
    );

    // One Stripe customer, however many cards and clicks.
    add_card(&app, &customer, "5555 5555 5555 4444").await;
    let creates = app
        .stripe
        .requests()
        .iter()
        .filter(|r| *r == "POST /v1/customers")
        .count();
    assert_eq!(creates, 1);
    assert_eq!(
        billing(&app, &customer).await["cards"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_declined_card_saves_nothing_and_checkout_says_why(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "declined-co").await;
    let checkout = open_checkout(&app, &customer).await;
    let response = submit_card(&customer, &checkout, "4000 0000 0000 0002").await;
    assert_eq!(response.status(), 200, "shown inline, as on Stripe's page");
    assert!(
        response
            .text()
            .await
            .expect("page")
            .contains("Your card was declined.")
    );
    assert_eq!(billing(&app, &customer).await["cards"], json!([]));
    assert_eq!(payment_method_flag(&db, &customer).await, "none");
    assert!(
        app.stripe.events().is_empty(),
        "no event for a declined card"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn the_webhook_records_the_card_when_the_browser_never_comes_back(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "closed-tab-co").await;
    let checkout = open_checkout(&app, &customer).await;
    let session = checkout.rsplit('/').next().expect("session id").to_owned();
    // The card is saved on Stripe's page, and the tab is closed before the return.
    app.stripe
        .complete_checkout(&session, "4242424242424242")
        .await
        .expect("saved");
    eventually_within(30, "the card recorded from the webhooks", || {
        let db = db.clone();
        let workspace_id = customer.workspace_id;
        async move {
            cards::cards_of(&db, workspace_id)
                .await
                .expect("cards")
                .len()
                == 1
        }
    })
    .await;
    assert_eq!(payment_method_flag(&db, &customer).await, "valid");
    let processed: Vec<(String, String)> =
        sqlx::query_as("SELECT type, status FROM stripe_events ORDER BY received_at")
            .fetch_all(&db)
            .await
            .expect("events");
    let types: Vec<&str> = processed.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "payment_method.attached",
            "setup_intent.succeeded",
            "checkout.session.completed"
        ]
    );
    eventually_within(30, "every event processed", || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM stripe_events WHERE status <> 'processed'",
            )
            .fetch_one(&db)
            .await
            .expect("count")
                == 0
        }
    })
    .await;
}

#[sqlx::test(migrations = "../migrations")]
async fn removing_the_last_card_in_the_billing_portal_is_seen_through_its_webhook(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "portal-co").await;
    add_card(&app, &customer, "4242 4242 4242 4242").await;
    assert_eq!(payment_method_flag(&db, &customer).await, "valid");

    let response = customer
        .browser
        .post(format!("{}/billing/manage", app.address))
        .send()
        .await
        .expect("manage");
    let portal = location(&response);
    assert!(portal.starts_with(&format!("{}/sandbox/stripe/portal/bps_", app.address)));
    let page = customer.browser.get(&portal).send().await.expect("portal");
    let page = page.text().await.expect("page");
    assert!(page.contains("visa ending in 4242"), "{page}");
    assert!(
        page.contains(&format!("href=\"{}/billing\"", app.address)),
        "the portal returns to the Billing page"
    );
    let card: String = sqlx::query_scalar("SELECT stripe_payment_method_id FROM cards")
        .fetch_one(&db)
        .await
        .expect("card");
    let removed = customer
        .browser
        .post(format!("{portal}/remove"))
        .form(&[("payment_method", card.as_str())])
        .send()
        .await
        .expect("remove");
    assert!(removed.status().is_redirection());

    eventually_within(
        30,
        "the removal seen through payment_method.detached",
        || {
            let db = db.clone();
            let workspace_id = customer.workspace_id;
            async move {
                cards::cards_of(&db, workspace_id)
                    .await
                    .expect("cards")
                    .is_empty()
            }
        },
    )
    .await;
    assert_eq!(payment_method_flag(&db, &customer).await, "none");
    assert_eq!(billing(&app, &customer).await["cards"], json!([]));
    let detached = app
        .stripe
        .events()
        .into_iter()
        .find(|e| e["type"] == "payment_method.detached")
        .expect("event");
    assert_eq!(
        detached["data"]["object"]["customer"],
        Value::Null,
        "as Stripe sends it"
    );
}

/// A signed event body for the intake.
fn event(id: &str, kind: &str, object: Value) -> String {
    json!({
        "id": id, "object": "event", "type": kind, "created": 1_700_000_000,
        "livemode": false, "pending_webhooks": 1, "api_version": null,
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": object},
    })
    .to_string()
}

async fn post_event(app: &TestApp, body: &str, signature: &str) -> (u16, String) {
    let response = app
        .client
        .post(format!("{}/webhooks/stripe", app.address))
        .header("stripe-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .expect("intake");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn stored_events(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM stripe_events")
        .fetch_one(db)
        .await
        .expect("count")
}

#[sqlx::test(migrations = "../migrations")]
async fn a_stripe_event_with_a_bad_or_stale_signature_is_refused_and_nothing_is_stored(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let secret = server::settings::SANDBOX_STRIPE_WEBHOOK_SECRET;
    let body = event(
        "evt_bad",
        "customer.updated",
        json!({"id": "cus_x", "object": "customer"}),
    );
    let now = chrono::Utc::now().timestamp();
    let other_secret = Webhook::generate_test_header(&body, "whsec_someone_else", None);
    let stale = Webhook::generate_test_header(&body, secret, Some(now - 301));
    let tampered = Webhook::generate_test_header(&body.replace("cus_x", "cus_y"), secret, None);
    for signature in [
        "",
        "t=1,v1=00",
        other_secret.as_str(),
        stale.as_str(),
        tampered.as_str(),
    ] {
        let (status, _) = post_event(&app, &body, signature).await;
        assert_eq!(status, 401, "signature {signature:?}");
    }
    assert_eq!(stored_events(&db).await, 0);

    // Stripe signs with every active secret while one is rolled: any matching v1 is enough.
    let good = Webhook::generate_test_header(&body, secret, Some(now - 299));
    let good_v1 = good.split("v1=").nth(1).expect("v1");
    let rolled = format!("t={},v1={},v1={good_v1}", now - 299, "ab".repeat(32));
    let (status, _) = post_event(&app, &body, &rolled).await;
    assert_eq!(status, 200);
    assert_eq!(stored_events(&db).await, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_same_stripe_event_twice_is_stored_once_and_unknown_types_are_kept_as_ignored(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let secret = server::settings::SANDBOX_STRIPE_WEBHOOK_SECRET;
    let body = event(
        "evt_twice",
        "customer.updated",
        json!({"id": "cus_nobody", "object": "customer"}),
    );
    let signature = Webhook::generate_test_header(&body, secret, None);
    assert_eq!(
        post_event(&app, &body, &signature).await,
        (200, "queued".to_owned())
    );
    assert_eq!(
        post_event(&app, &body, &signature).await,
        (200, "already received".to_owned())
    );
    assert_eq!(stored_events(&db).await, 1);
    eventually_within(
        30,
        "processed (a customer no workspace has: nothing to do)",
        || {
            let db = db.clone();
            async move {
                sqlx::query_scalar::<_, String>(
                    "SELECT status FROM stripe_events WHERE event_id = 'evt_twice'",
                )
                .fetch_one(&db)
                .await
                .expect("status")
                    == "processed"
            }
        },
    )
    .await;

    let unknown = event(
        "evt_plan",
        "plan.created",
        json!({"id": "plan_1", "object": "plan"}),
    );
    let signature = Webhook::generate_test_header(&unknown, secret, None);
    let (status, text) = post_event(&app, &unknown, &signature).await;
    assert_eq!(status, 200, "{text}");
    let status: String =
        sqlx::query_scalar("SELECT status FROM stripe_events WHERE event_id = 'evt_plan'")
            .fetch_one(&db)
            .await
            .expect("stored");
    assert_eq!(status, "ignored");

    let not_an_event = r#"{"object": "event"}"#;
    let signature = Webhook::generate_test_header(not_an_event, secret, None);
    assert_eq!(post_event(&app, not_an_event, &signature).await.0, 400);
    assert_eq!(stored_events(&db).await, 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn only_owners_and_admins_change_billing(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "roles-co").await;
    let member = Caller {
        user: tenki_core::identity::SessionUser {
            user_id: uuid::Uuid::new_v4(),
            email: "member@roles-co.test".to_owned(),
            email_verified: true,
        },
        member: Membership {
            workspace_id: customer.workspace_id,
            workspace_name: "roles-co".to_owned(),
            role: Role::Member,
        },
    };
    let urls = ReturnUrls {
        card_added: format!("{}/billing/card-added", app.address),
        billing_page: format!("{}/billing", app.address),
    };
    let refused = cards::start_checkout(&db, &app.core.stripe, &member, &urls).await;
    assert!(matches!(refused, Err(CardError::NotAllowed)), "{refused:?}");
    let refused = cards::portal_url(&db, &app.core.stripe, &member, &urls).await;
    assert!(matches!(refused, Err(CardError::NotAllowed)), "{refused:?}");
    assert!(app.stripe.requests().is_empty(), "nothing reached Stripe");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_checkout_session_of_another_workspace_records_nothing_here(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let victim = customer(&app, "victim-co").await;
    let intruder = customer(&app, "intruder-co").await;
    let checkout = open_checkout(&app, &victim).await;
    let session = checkout.rsplit('/').next().expect("session id").to_owned();
    app.stripe
        .complete_checkout(&session, "4242424242424242")
        .await
        .expect("saved");
    let response = intruder
        .browser
        .get(format!(
            "{}/billing/card-added?session_id={session}",
            app.address
        ))
        .send()
        .await
        .expect("return");
    assert_eq!(location(&response), "/billing?card=other_workspace");
    assert_eq!(billing(&app, &intruder).await["cards"], json!([]));
}

#[sqlx::test(migrations = "../migrations")]
async fn the_stripe_double_honours_idempotency_keys_like_stripe(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let post = |key: &'static str, email: &'static str| {
        app.client
            .post(format!("{}/sandbox/stripe/v1/customers", app.address))
            .bearer_auth(server::sandbox::stripe::SECRET_KEY)
            .header("idempotency-key", key)
            .form(&[("email", email)])
            .send()
    };
    let first: Value = post("k1", "a@b.test")
        .await
        .expect("first")
        .json()
        .await
        .expect("json");
    let again: Value = post("k1", "a@b.test")
        .await
        .expect("again")
        .json()
        .await
        .expect("json");
    assert_eq!(
        first["id"], again["id"],
        "the same answer, not a second customer"
    );
    let other = post("k1", "other@b.test").await.expect("other");
    assert_eq!(other.status(), 400);
    let other: Value = other.json().await.expect("json");
    assert_eq!(other["error"]["type"], "idempotency_error");
    assert_eq!(app.stripe.customers().len(), 1);
    let unauthorized = app
        .client
        .get(format!(
            "{}/sandbox/stripe/v1/customers/{}",
            app.address,
            first["id"].as_str().expect("id")
        ))
        .bearer_auth("sk_test_wrong")
        .send()
        .await
        .expect("request");
    assert_eq!(unauthorized.status(), 401);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_customer_stripe_no_longer_has_is_replaced_when_a_card_is_added(db: PgPool) {
    // The sandbox's double forgets its customers on restart; in Stripe a customer can be deleted.
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "gone-co").await;
    sqlx::query("UPDATE workspaces SET stripe_customer_id = 'cus_gone' WHERE id = $1")
        .bind(customer.workspace_id)
        .execute(&db)
        .await
        .expect("stale customer");
    assert_eq!(
        add_card(&app, &customer, "4242 4242 4242 4242").await,
        "/billing?card=added"
    );
    let stored: String =
        sqlx::query_scalar("SELECT stripe_customer_id FROM workspaces WHERE id = $1")
            .bind(customer.workspace_id)
            .fetch_one(&db)
            .await
            .expect("customer");
    assert_ne!(stored, "cus_gone");
    assert_eq!(
        billing(&app, &customer).await["cards"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}
