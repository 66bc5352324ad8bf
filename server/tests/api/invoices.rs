//! Invoices and the monthly cycle (SPEC §9) against the Stripe double through the production
//! client: lines and totals, the payment in the ledger, a crash after every Stripe call, the
//! retry schedule and suspension on a controlled clock, zero and under-minimum totals, add-ons.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde_json::Value;
use sqlx::PgPool;
use tenki_core::billing::invoices::{self, Advanced};
use tenki_core::ledger::reconcile::{self, Scope};
use tenki_core::metering::{self, FinishedJob, JobKey};
use uuid::Uuid;

use crate::billing::add_card;
use crate::harness::{TestApp, eventually_within};
use crate::runners::{Customer, customer};

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .expect("time")
}

pub fn month(y: i32, m: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, 1).expect("month")
}

/// Meters one finished job of `minutes` on `label`, completed at `completed_at`.
async fn meter(
    app: &TestApp,
    customer: &Customer,
    label: &str,
    minutes: i64,
    completed_at: DateTime<Utc>,
) {
    let job = FinishedJob {
        workspace_id: customer.workspace_id,
        key: JobKey {
            github_job_id: i64::try_from(Uuid::new_v4().as_u128() % 1_000_000_000_000)
                .expect("fits"),
            run_attempt: 1,
        },
        label: label.to_owned(),
        started_at: completed_at - Duration::minutes(minutes),
        completed_at,
        repository: "acme/web".to_owned(),
        workflow: "CI".to_owned(),
    };
    metering::meter_job(&app.core.db, &app.core.ledger, &job, completed_at)
        .await
        .expect("metered");
}

/// 1,000 free minutes used up on 2c, then $0.60 more on 2c and $0.60 on 4c: $1.20.
pub async fn october_usage(app: &TestApp, customer: &Customer) {
    meter(
        app,
        customer,
        "tenki-standard-2c",
        1_000,
        at(2026, 10, 10, 12),
    )
    .await;
    meter(
        app,
        customer,
        "tenki-standard-2c",
        200,
        at(2026, 10, 12, 12),
    )
    .await;
    meter(
        app,
        customer,
        "tenki-standard-4c",
        100,
        at(2026, 10, 20, 12),
    )
    .await;
}

/// An invoice row with no queue job, moved by hand (the worker never touches it).
pub async fn manual_invoice(db: &PgPool, customer: &Customer, month: NaiveDate) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO invoices (id, workspace_id, month, state, created_at, updated_at)
         VALUES ($1, $2, $3, 'draft', now(), now())",
    )
    .bind(id)
    .bind(customer.workspace_id)
    .bind(month)
    .execute(db)
    .await
    .expect("invoice");
    id
}

pub async fn state(db: &PgPool, invoice_id: Uuid) -> String {
    sqlx::query_scalar("SELECT state FROM invoices WHERE id = $1")
        .bind(invoice_id)
        .fetch_one(db)
        .await
        .expect("invoice")
}

pub async fn lines(db: &PgPool, invoice_id: Uuid) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT description, amount_cents FROM invoice_lines WHERE invoice_id = $1 ORDER BY position")
        .bind(invoice_id)
        .fetch_all(db)
        .await
        .expect("lines")
}

fn stripe_invoices_of(app: &TestApp, customer_id: &str) -> Vec<Value> {
    app.stripe
        .invoices()
        .into_iter()
        .filter(|i| i["customer"] == customer_id)
        .collect()
}

pub async fn stripe_customer(db: &PgPool, customer: &Customer) -> String {
    sqlx::query_scalar("SELECT stripe_customer_id FROM workspaces WHERE id = $1")
        .bind(customer.workspace_id)
        .fetch_one(db)
        .await
        .expect("customer")
}

pub async fn assert_balanced(app: &TestApp, customer: &Customer) {
    let report = reconcile::reconcile(
        &app.core.db,
        &app.core.ledger,
        &Scope::Workspaces(vec![customer.workspace_id]),
    )
    .await
    .expect("reconcile");
    assert!(report.is_balanced(), "{:?}", report.differences);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_monthly_cycle_invoices_usage_per_label_charges_the_card_once_and_records_the_payment(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "invoice-co").await;
    add_card(&app, &customer, "4242 4242 4242 4242").await;
    october_usage(&app, &customer).await;

    let report = invoices::run_cycle(&db, month(2026, 10), Utc::now())
        .await
        .expect("cycle");
    assert_eq!(report.created, 1);
    let invoice_id: Uuid = sqlx::query_scalar("SELECT id FROM invoices WHERE workspace_id = $1")
        .bind(customer.workspace_id)
        .fetch_one(&db)
        .await
        .expect("one invoice");
    eventually_within(30, "invoice paid by the worker", || {
        let db = db.clone();
        async move { state(&db, invoice_id).await == "paid" }
    })
    .await;
    assert_eq!(
        lines(&db, invoice_id).await,
        [
            ("tenki-standard-2c: 1200 min".to_owned(), 60),
            ("tenki-standard-2c: 1000 free minutes used".to_owned(), 0),
            ("tenki-standard-4c: 100 min".to_owned(), 60),
        ]
    );
    let (total, fee): (i64, i64) = sqlx::query_as(
        "SELECT i.total_cents, p.fee_cents FROM invoices i JOIN payments p ON p.invoice_id = i.id
         WHERE i.id = $1",
    )
    .bind(invoice_id)
    .fetch_one(&db)
    .await
    .expect("payment");
    assert_eq!((total, fee), (120, 33), "$1.20, Stripe's 2.9 % + 30 ¢");
    let in_stripe = stripe_invoices_of(&app, &stripe_customer(&db, &customer).await);
    assert_eq!(in_stripe.len(), 1);
    assert_eq!(in_stripe[0]["status"], "paid");
    assert_eq!(in_stripe[0]["total"], 120);
    assert_eq!(
        in_stripe[0]["auto_advance"], false,
        "Tenki owns the retries"
    );
    assert_balanced(&app, &customer).await;

    // The same month again: nothing new.
    let again = invoices::run_cycle(&db, month(2026, 10), Utc::now())
        .await
        .expect("cycle");
    assert_eq!(again.created, 0);
    assert_eq!(
        stripe_invoices_of(&app, &stripe_customer(&db, &customer).await).len(),
        1
    );

    // The Billing page lists it with its lines and Stripe's page.
    let page: Value = app
        .call(&customer.browser, "billing", &[])
        .await
        .json()
        .await
        .expect("JSON");
    let listed = &page["invoices"][0];
    assert_eq!(listed["month"], "October 2026");
    assert_eq!(listed["total"], "$1.20");
    assert_eq!(listed["status"], "Paid");
    assert!(
        listed["hosted_invoice_url"]
            .as_str()
            .is_some_and(|u| u.contains("/sandbox/stripe/invoice/in_"))
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_crash_after_any_stripe_call_resumes_without_a_second_invoice_item_or_charge(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "crash-co").await;
    add_card(&app, &customer, "4242 4242 4242 4242").await;
    october_usage(&app, &customer).await;
    let invoice_id = manual_invoice(&db, &customer, month(2026, 10)).await;

    // Each step runs, then its database write is lost (the process died after Stripe answered):
    // the step runs again from the state before, with the same idempotency keys.
    let steps = [
        "draft",
        "lines_built",
        "stripe_created",
        "items_added",
        "finalized",
    ];
    for before in steps {
        assert_eq!(state(&db, invoice_id).await, before);
        invoices::advance(
            &db,
            &app.core.stripe,
            &app.core.ledger,
            invoice_id,
            Utc::now(),
            1,
        )
        .await
        .expect("step");
        let after = state(&db, invoice_id).await;
        sqlx::query("UPDATE invoices SET state = $2 WHERE id = $1")
            .bind(invoice_id)
            .bind(before)
            .execute(&db)
            .await
            .expect("lose the write");
        if before == "stripe_created" {
            sqlx::query(
                "UPDATE invoice_lines SET stripe_invoice_item_id = NULL WHERE invoice_id = $1",
            )
            .bind(invoice_id)
            .execute(&db)
            .await
            .expect("lose the item ids");
        }
        invoices::advance(
            &db,
            &app.core.stripe,
            &app.core.ledger,
            invoice_id,
            Utc::now(),
            1,
        )
        .await
        .expect("step again");
        assert_eq!(state(&db, invoice_id).await, after, "after {before} again");
    }
    assert_eq!(state(&db, invoice_id).await, "paid");
    let in_stripe = stripe_invoices_of(&app, &stripe_customer(&db, &customer).await);
    assert_eq!(in_stripe.len(), 1, "one Stripe invoice");
    assert_eq!(
        in_stripe[0]["lines"]["data"].as_array().map(Vec::len),
        Some(3),
        "one item per line"
    );
    assert_eq!(in_stripe[0]["total"], 120);
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE invoice_id = $1")
        .bind(invoice_id)
        .fetch_one(&db)
        .await
        .expect("payments");
    assert_eq!(payments, 1);
    // The same invoice.paid event twice, and the payment recorded again: one payment.
    let paid = app
        .stripe
        .events()
        .into_iter()
        .find(|e| e["type"] == "invoice.paid")
        .expect("invoice.paid");
    assert_eq!(app.stripe.post_event(&paid).await, 200);
    let (payment_intent, fee_cents): (Option<String>, i64) = sqlx::query_as(
        "SELECT stripe_payment_intent, fee_cents FROM payments WHERE invoice_id = $1",
    )
    .bind(invoice_id)
    .fetch_one(&db)
    .await
    .expect("payment");
    let with = invoices::PaidWith {
        payment_intent,
        fee_cents,
    };
    invoices::record_payment(&db, &app.core.ledger, invoice_id, &with, Utc::now())
        .await
        .expect("again");
    eventually_within(30, "every Stripe event processed", || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM stripe_events WHERE status <> 'processed' AND status <> 'ignored'")
                .fetch_one(&db)
                .await
                .expect("count")
                == 0
        }
    })
    .await;
    assert_balanced(&app, &customer).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_declined_payment_is_retried_3_5_7_14_21_days_after_suspends_on_the_10th_and_paying_lifts_it(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "declined-co").await;
    add_card(&app, &customer, "4000 0000 0000 0341").await;
    // A month in the future, so the retries the worker is given are not due in real time.
    meter(
        &app,
        &customer,
        "tenki-standard-2c",
        1_200,
        at(2027, 1, 15, 12),
    )
    .await;
    let invoice_id = manual_invoice(&db, &customer, month(2027, 1)).await;
    let first = at(2027, 2, 1, 0);
    let outcome = invoices::advance(
        &db,
        &app.core.stripe,
        &app.core.ledger,
        invoice_id,
        first,
        10,
    )
    .await
    .expect("advance");
    assert_eq!(outcome, Advanced::RetryAt(first + Duration::days(3)));
    assert_eq!(state(&db, invoice_id).await, "payment_failed");

    let mut seen = Vec::new();
    let mut now = first + Duration::days(3);
    for _ in 0..5 {
        match invoices::advance(&db, &app.core.stripe, &app.core.ledger, invoice_id, now, 10)
            .await
            .expect("retry")
        {
            Advanced::RetryAt(next) => {
                seen.push((next - first).num_days());
                // Not due a second before.
                assert_eq!(
                    invoices::advance(
                        &db,
                        &app.core.stripe,
                        &app.core.ledger,
                        invoice_id,
                        next - Duration::seconds(1),
                        10
                    )
                    .await
                    .expect("early"),
                    Advanced::RetryAt(next)
                );
                now = next;
            }
            Advanced::Settled(state) => {
                assert_eq!(state, "uncollectible");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        seen,
        [5, 7, 14, 21],
        "retries after 3 (the first), 5, 7, 14 and 21 days"
    );
    assert_eq!(state(&db, invoice_id).await, "uncollectible");
    let notified: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE workspace_id = $1 AND kind = 'payment_failed'",
    )
    .bind(customer.workspace_id)
    .fetch_one(&db)
    .await
    .expect("notifications");
    assert_eq!(notified, 6, "the owner is told of every failed attempt");

    // Still unpaid on the 9th: nothing; on the 10th: suspended, and admission says why.
    assert_eq!(
        invoices::suspend_unpaid(&db, at(2027, 2, 9, 23))
            .await
            .expect("suspend"),
        0
    );
    assert_eq!(
        invoices::suspend_unpaid(&db, at(2027, 2, 10, 0))
            .await
            .expect("suspend"),
        1
    );
    let suspended: Option<String> =
        sqlx::query_scalar("SELECT suspended_reason FROM workspaces WHERE id = $1")
            .bind(customer.workspace_id)
            .fetch_one(&db)
            .await
            .expect("workspace");
    assert!(suspended.is_some_and(|r| r.contains("January 2027 is unpaid")));

    // The customer pays on Stripe's invoice page: the webhook lifts the suspension.
    let stripe_id: String =
        sqlx::query_scalar("SELECT stripe_invoice_id FROM invoices WHERE id = $1")
            .bind(invoice_id)
            .fetch_one(&db)
            .await
            .expect("stripe id");
    assert!(app.stripe.pay_by_hand(&stripe_id).await);
    eventually_within(30, "paid and the suspension lifted", || {
        let db = db.clone();
        let workspace_id = customer.workspace_id;
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT suspended_at IS NULL FROM workspaces WHERE id = $1",
            )
            .bind(workspace_id)
            .fetch_one(&db)
            .await
            .expect("workspace")
        }
    })
    .await;
    assert_eq!(state(&db, invoice_id).await, "paid");
    assert_balanced(&app, &customer).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_payment_that_fails_once_then_succeeds_is_paid_on_the_first_retry(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "flaky-co").await;
    add_card(&app, &customer, "4242 4242 4242 4242").await;
    meter(
        &app,
        &customer,
        "tenki-standard-2c",
        1_200,
        at(2027, 1, 15, 12),
    )
    .await;
    let invoice_id = manual_invoice(&db, &customer, month(2027, 1)).await;
    app.stripe.fail_next_payments(1);
    let first = at(2027, 2, 1, 0);
    assert_eq!(
        invoices::advance(
            &db,
            &app.core.stripe,
            &app.core.ledger,
            invoice_id,
            first,
            10
        )
        .await
        .expect("advance"),
        Advanced::RetryAt(first + Duration::days(3))
    );
    assert_eq!(
        invoices::advance(
            &db,
            &app.core.stripe,
            &app.core.ledger,
            invoice_id,
            first + Duration::days(3),
            10
        )
        .await
        .expect("retry"),
        Advanced::Settled("paid".to_owned())
    );
    assert_balanced(&app, &customer).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_zero_total_is_not_charged_and_one_under_the_minimum_is_carried_to_next_month(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "small-co").await;
    add_card(&app, &customer, "4242 4242 4242 4242").await;
    // August: free minutes only → $0. September: 10 paid minutes → $0.03. October: $1.20.
    meter(
        &app,
        &customer,
        "tenki-standard-2c",
        1_000,
        at(2026, 8, 10, 12),
    )
    .await;
    meter(
        &app,
        &customer,
        "tenki-standard-2c",
        10,
        at(2026, 9, 10, 12),
    )
    .await;
    meter(
        &app,
        &customer,
        "tenki-standard-2c",
        200,
        at(2026, 10, 10, 12),
    )
    .await;
    let mut states = Vec::new();
    for m in [8, 9, 10] {
        let id = manual_invoice(&db, &customer, month(2026, m)).await;
        let outcome =
            invoices::advance(&db, &app.core.stripe, &app.core.ledger, id, Utc::now(), 10)
                .await
                .expect("advance");
        states.push((outcome, lines(&db, id).await));
    }
    assert_eq!(states[0].0, Advanced::Settled("nothing_due".to_owned()));
    assert_eq!(states[1].0, Advanced::Settled("carried".to_owned()));
    assert_eq!(states[1].1, [("tenki-standard-2c: 10 min".to_owned(), 3)]);
    assert_eq!(states[2].0, Advanced::Settled("paid".to_owned()));
    assert_eq!(
        states[2].1,
        [
            ("tenki-standard-2c: 200 min".to_owned(), 60),
            ("Carried from September 2026".to_owned(), 3),
        ]
    );
    let in_stripe = stripe_invoices_of(&app, &stripe_customer(&db, &customer).await);
    assert_eq!(
        in_stripe.len(),
        1,
        "August and September never reached Stripe"
    );
    assert_eq!(in_stripe[0]["total"], 63);
}

#[sqlx::test(migrations = "../migrations")]
async fn an_addon_cancelled_mid_month_is_billed_the_full_month_and_ten_x64_slots_70_dollars(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "subs-co").await;
    add_card(&app, &customer, "4242 4242 4242 4242").await;
    // On since before November, cancelled on November 15: on (and billed) to December 1.
    sqlx::query(
        "INSERT INTO workspace_addons (workspace_id, addon, active_since, cancelled_at, ends_at)
         VALUES ($1, 'macos', $2, $3, $4)",
    )
    .bind(customer.workspace_id)
    .bind(at(2026, 10, 3, 9))
    .bind(at(2026, 11, 15, 9))
    .bind(at(2026, 12, 1, 0))
    .execute(&db)
    .await
    .expect("add-on");
    sqlx::query("INSERT INTO workspace_extra_slots (workspace_id, runner_class, slots) VALUES ($1, 'x64', 10)")
        .bind(customer.workspace_id)
        .execute(&db)
        .await
        .expect("slots");
    tenki_core::billing::addons::end_due(&db, at(2026, 12, 1, 0))
        .await
        .expect("ended on the 1st");
    let invoice_id = manual_invoice(&db, &customer, month(2026, 11)).await;
    let outcome = invoices::advance(
        &db,
        &app.core.stripe,
        &app.core.ledger,
        invoice_id,
        Utc::now(),
        10,
    )
    .await
    .expect("advance");
    assert_eq!(outcome, Advanced::Settled("paid".to_owned()));
    assert_eq!(
        lines(&db, invoice_id).await,
        [
            ("macOS M4 runners".to_owned(), 3_900),
            ("10 extra x64 concurrency slots".to_owned(), 7_000),
        ]
    );
    // December: the add-on is gone, the slots stay.
    let december = manual_invoice(&db, &customer, month(2026, 12)).await;
    invoices::advance(
        &db,
        &app.core.stripe,
        &app.core.ledger,
        december,
        Utc::now(),
        1,
    )
    .await
    .expect("lines");
    assert_eq!(
        lines(&db, december).await,
        [("10 extra x64 concurrency slots".to_owned(), 7_000)]
    );
    assert_balanced(&app, &customer).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn an_invoice_without_a_card_fails_says_add_a_card_and_is_paid_on_the_retry_after_one_is_added(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "nocard-co").await;
    meter(
        &app,
        &customer,
        "tenki-standard-2c",
        1_200,
        at(2027, 1, 15, 12),
    )
    .await;
    let invoice_id = manual_invoice(&db, &customer, month(2027, 1)).await;
    let first = at(2027, 2, 1, 0);
    assert_eq!(
        invoices::advance(
            &db,
            &app.core.stripe,
            &app.core.ledger,
            invoice_id,
            first,
            10
        )
        .await
        .expect("advance"),
        Advanced::RetryAt(first + Duration::days(3))
    );
    let page: Value = app
        .call(&customer.browser, "billing", &[])
        .await
        .json()
        .await
        .expect("JSON");
    assert!(
        page["notifications"][0]
            .as_str()
            .is_some_and(|n| n.contains("no card on file")),
        "{page}"
    );
    assert_eq!(
        page["invoices"][0]["status"],
        "Payment failed: tried again on February 4"
    );
    add_card(&app, &customer, "4242 4242 4242 4242").await;
    assert_eq!(
        invoices::advance(
            &db,
            &app.core.stripe,
            &app.core.ledger,
            invoice_id,
            first + Duration::days(3),
            10
        )
        .await
        .expect("retry"),
        Advanced::Settled("paid".to_owned())
    );
    assert_eq!(
        stripe_invoices_of(&app, &stripe_customer(&db, &customer).await).len(),
        1
    );
    assert_balanced(&app, &customer).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn an_invoice_for_a_customer_stripe_no_longer_has_fails_as_no_card_instead_of_retrying_forever(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "deleted-co").await;
    meter(
        &app,
        &customer,
        "tenki-standard-2c",
        1_200,
        at(2027, 1, 15, 12),
    )
    .await;
    sqlx::query("UPDATE workspaces SET stripe_customer_id = 'cus_deleted' WHERE id = $1")
        .bind(customer.workspace_id)
        .execute(&db)
        .await
        .expect("deleted customer");
    let invoice_id = manual_invoice(&db, &customer, month(2027, 1)).await;
    let first = at(2027, 2, 1, 0);
    assert_eq!(
        invoices::advance(
            &db,
            &app.core.stripe,
            &app.core.ledger,
            invoice_id,
            first,
            10
        )
        .await
        .expect("advance"),
        Advanced::RetryAt(first + Duration::days(3))
    );
    let (customer_id, error): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT w.stripe_customer_id, i.last_error FROM invoices i JOIN workspaces w ON w.id = i.workspace_id
         WHERE i.id = $1",
    )
    .bind(invoice_id)
    .fetch_one(&db)
    .await
    .expect("invoice");
    assert_eq!(
        customer_id, None,
        "forgotten: the next card creates a new customer"
    );
    assert_eq!(error.as_deref(), Some("no card on file"));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_boost_prepaid_for_the_year_bills_499_dollars_once_then_0_for_its_twelve_months(
    db: PgPool,
) {
    use tenki_core::billing::addons::Addon;
    use tenki_core::billing::enterprise;
    use tenki_core::ledger::adjustments::AdminRequest;

    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "annual-co").await;
    add_card(&app, &customer, "4242 4242 4242 4242").await;
    let sales = AdminRequest {
        admin_email: "sales@tenki.example".to_owned(),
        reason: "annual contract".to_owned(),
    };
    let prepaid = enterprise::prepay_annually(
        &db,
        customer.workspace_id,
        Addon::PriorityBoost,
        &sales,
        at(2027, 1, 10, 12),
    )
    .await
    .expect("prepaid");
    assert_eq!(
        (prepaid.starts, prepaid.ends),
        (month(2027, 1), month(2028, 1))
    );
    // Support has no annual price; a second year over the same months is refused.
    assert!(
        enterprise::prepay_annually(
            &db,
            customer.workspace_id,
            Addon::PrioritySupport,
            &sales,
            at(2027, 1, 10, 12)
        )
        .await
        .is_err()
    );
    assert!(
        enterprise::prepay_annually(
            &db,
            customer.workspace_id,
            Addon::PriorityBoost,
            &sales,
            at(2027, 6, 1, 12)
        )
        .await
        .is_err()
    );

    let january = manual_invoice(&db, &customer, month(2027, 1)).await;
    let settled = invoices::advance(
        &db,
        &app.core.stripe,
        &app.core.ledger,
        january,
        at(2027, 2, 1, 0),
        10,
    )
    .await
    .expect("January");
    assert_eq!(settled, Advanced::Settled("paid".to_owned()));
    assert_eq!(
        lines(&db, january).await,
        [
            (
                "Priority queue boost, paid for the year January 2027 to December 2027".to_owned(),
                49_900
            ),
            (
                "Priority queue boost (paid for the year, to December 2027)".to_owned(),
                0
            ),
        ]
    );
    let february = manual_invoice(&db, &customer, month(2027, 2)).await;
    let settled = invoices::advance(
        &db,
        &app.core.stripe,
        &app.core.ledger,
        february,
        at(2027, 3, 1, 0),
        10,
    )
    .await
    .expect("February");
    assert_eq!(settled, Advanced::Settled("nothing_due".to_owned()));
    assert_eq!(
        lines(&db, february).await,
        [(
            "Priority queue boost (paid for the year, to December 2027)".to_owned(),
            0
        )]
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM admin_audit WHERE workspace_id = $1 AND action = 'prepay_annually'",
    )
    .bind(customer.workspace_id)
    .fetch_one(&db)
    .await
    .expect("audit");
    assert_eq!(audited, 1);
    assert_balanced(&app, &customer).await;
}
