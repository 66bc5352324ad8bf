//! Payments undone after they were recorded (SPEC §9): refunds and disputes arrive as Stripe
//! events through the real intake and worker, support reverses with the admin operation; each
//! once, never beyond what was paid, and the ledger reconciles.

use chrono::Utc;
use sqlx::PgPool;
use tenki_core::billing::invoices::{self, Advanced};
use tenki_core::billing::reversals::{self, Reversed};
use tenki_core::ledger::adjustments::AdminRequest;
use tenki_core::ledger::reconcile::{self, Scope};
use uuid::Uuid;

use crate::billing::add_card;
use crate::harness::{TestApp, eventually_within};
use crate::invoices::{assert_balanced, manual_invoice, month, october_usage, state};
use crate::runners::{Customer, customer};

/// October's $1.20 invoiced and paid with a working card; returns (Tenki's, Stripe's) ids.
async fn paid_invoice(app: &TestApp, customer: &Customer) -> (Uuid, String) {
    add_card(app, customer, "4242 4242 4242 4242").await;
    october_usage(app, customer).await;
    let invoice_id = manual_invoice(&app.core.db, customer, month(2026, 10)).await;
    let settled = invoices::advance(
        &app.core.db,
        &app.core.stripe,
        &app.core.ledger,
        invoice_id,
        Utc::now(),
        10,
    )
    .await
    .expect("advance");
    assert_eq!(settled, Advanced::Settled("paid".to_owned()));
    let stripe_id: String =
        sqlx::query_scalar("SELECT stripe_invoice_id FROM invoices WHERE id = $1")
            .bind(invoice_id)
            .fetch_one(&app.core.db)
            .await
            .expect("Stripe invoice");
    (invoice_id, stripe_id)
}

async fn reversals_of(db: &PgPool, invoice_id: Uuid) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT kind, amount_cents FROM payment_reversals WHERE invoice_id = $1
         ORDER BY created_at, amount_cents",
    )
    .bind(invoice_id)
    .fetch_all(db)
    .await
    .expect("reversals")
}

async fn events_settled(db: &PgPool) {
    eventually_within(30, "every Stripe event processed", || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM stripe_events WHERE status NOT IN ('processed', 'ignored')",
            )
            .fetch_one(&db)
            .await
            .expect("count")
                == 0
        }
    })
    .await;
}

fn admin(reason: &str) -> AdminRequest {
    AdminRequest {
        admin_email: "support@tenki.example".to_owned(),
        reason: reason.to_owned(),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn refunds_from_stripe_come_out_of_revenue_once_each_and_support_reverses_only_what_is_left(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "refund-co").await;
    let (invoice_id, stripe_id) = paid_invoice(&app, &customer).await;

    // $0.50 refunded from Stripe's dashboard: charge.refunded through the intake and the worker.
    assert!(app.stripe.refund(&stripe_id, 50).await);
    events_settled(&db).await;
    assert_eq!(
        reversals_of(&db, invoice_id).await,
        [("refund".to_owned(), 50)]
    );
    // The same event again changes nothing.
    let refunded = app
        .stripe
        .events()
        .into_iter()
        .rfind(|e| e["type"] == "charge.refunded")
        .expect("charge.refunded");
    assert_eq!(app.stripe.post_event(&refunded).await, 200);
    let again = reversals::refunded_in_stripe(
        &db,
        &app.core.stripe,
        &app.core.ledger,
        refunded["data"]["object"]["id"].as_str().expect("charge"),
        Utc::now(),
    )
    .await
    .expect("again");
    assert_eq!(again, Reversed::AlreadyDone);
    events_settled(&db).await;
    assert_eq!(reversals_of(&db, invoice_id).await.len(), 1);
    // A refund stays a payment: the invoice is paid, the customer owes nothing more.
    assert_eq!(state(&db, invoice_id).await, "paid");
    assert!(
        !app.stripe.refund(&stripe_id, 71).await,
        "Stripe refuses more than the $0.70 left"
    );

    // Support reverses the rest: $0.70, owed again, audited; a second time changes nothing.
    let reversed = reversals::reverse_by_admin(
        &db,
        &app.core.ledger,
        invoice_id,
        &admin("the bank returned the payment"),
        Utc::now(),
    )
    .await
    .expect("reverse");
    assert_eq!(reversed, Reversed::Done(70));
    assert_eq!(state(&db, invoice_id).await, "reversed");
    let again = reversals::reverse_by_admin(
        &db,
        &app.core.ledger,
        invoice_id,
        &admin("the bank returned the payment"),
        Utc::now(),
    )
    .await
    .expect("again");
    assert_eq!(again, Reversed::AlreadyDone);
    let audited: Vec<(String, String)> =
        sqlx::query_as("SELECT action, admin_email FROM admin_audit WHERE workspace_id = $1")
            .bind(customer.workspace_id)
            .fetch_all(&db)
            .await
            .expect("audit");
    assert_eq!(
        audited,
        [(
            "payment_reversal".to_owned(),
            "support@tenki.example".to_owned()
        )]
    );
    let refused =
        reversals::reverse_by_admin(&db, &app.core.ledger, invoice_id, &admin(" "), Utc::now())
            .await;
    assert!(refused.is_err(), "a reversal without a reason is refused");
    assert_balanced(&app, &customer).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_dispute_puts_the_whole_payment_back_on_the_account_and_tells_the_owner(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let customer = customer(&app, "dispute-co").await;
    let (invoice_id, stripe_id) = paid_invoice(&app, &customer).await;
    let fee: i64 = sqlx::query_scalar("SELECT fee_cents FROM payments WHERE invoice_id = $1")
        .bind(invoice_id)
        .fetch_one(&db)
        .await
        .expect("fee");
    assert_eq!(fee, 33, "Stripe's fee read from the balance transaction");

    assert!(app.stripe.dispute(&stripe_id).await);
    events_settled(&db).await;
    assert_eq!(
        reversals_of(&db, invoice_id).await,
        [("dispute".to_owned(), 120)]
    );
    assert_eq!(state(&db, invoice_id).await, "reversed");
    let told: Vec<String> = sqlx::query_scalar(
        "SELECT message FROM notifications WHERE workspace_id = $1 AND kind = 'dispute'",
    )
    .bind(customer.workspace_id)
    .fetch_all(&db)
    .await
    .expect("notifications");
    assert_eq!(told.len(), 1);
    assert!(told[0].starts_with("$1.20 of the payment for October 2026 was reversed"));
    // Nothing is left for support to reverse.
    let reversed = reversals::reverse_by_admin(
        &db,
        &app.core.ledger,
        invoice_id,
        &admin("double entry"),
        Utc::now(),
    )
    .await
    .expect("reverse");
    assert_eq!(reversed, Reversed::NothingLeft);
    assert_balanced(&app, &customer).await;

    // Reconciliation sees an invoice that no longer sums its month's usage to the micro-cent.
    sqlx::query(
        "UPDATE invoice_lines SET amount_micro_cents = amount_micro_cents + 1
         WHERE invoice_id = $1 AND kind = 'usage' AND position = 0",
    )
    .bind(invoice_id)
    .execute(&db)
    .await
    .expect("tamper");
    let report = reconcile::reconcile(
        &db,
        &app.core.ledger,
        &Scope::Workspaces(vec![customer.workspace_id]),
    )
    .await
    .expect("reconcile");
    let found: Vec<String> = report.differences.iter().map(|d| d.what.clone()).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with("usage lines vs the month's usage records (micro-cents)"));
}
