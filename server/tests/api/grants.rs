//! Free minutes once per verified identity (SPEC §7), through the production paths: the sign-up
//! server function, the link from the sandbox's mailbox, GitHub's `installation` deliveries,
//! Checkout with the Stripe double, and the ledger's balances.

use chrono::{Duration, Utc};
use serde_json::Value;
use sqlx::PgPool;
use tenki_core::identity::{self, grants::GrantOutcome, verification::VerificationError};
use uuid::Uuid;

use crate::billing::add_card;
use crate::harness::{TestApp, eventually_within};
use crate::runners::Customer;
use crate::webhooks::{deliver_signed, fixture, wait_until_processed};

const PASSWORD: &str = "a long enough password";

async fn workspace_of(app: &TestApp, email: &str) -> Uuid {
    tenki_core::workspaces::first_workspace_of_email(&app.core.db, email)
        .await
        .expect("query")
        .expect("workspace")
}

async fn free_vcpu_minutes(app: &TestApp, workspace_id: Uuid) -> u128 {
    app.core
        .ledger
        .free_vcpu_minutes_left(workspace_id)
        .await
        .expect("balance")
}

/// Signs up `email` (confirmed through its link) in a browser of its own.
async fn verified_customer(app: &TestApp, email: &str) -> Customer {
    let browser = app.new_browser();
    app.sign_up(&browser, "Workspace", email, PASSWORD).await;
    Customer {
        email: email.to_owned(),
        browser,
        workspace_id: workspace_of(app, email).await,
        installation_id: 0,
        repository: String::new(),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn free_minutes_wait_for_the_link_e_mailed_at_sign_up(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let browser = app.new_browser();
    let email = "grace@hopper.test";
    let status = app
        .sign_up_unverified(&browser, "Hopper", email, PASSWORD)
        .await;
    assert!(status.is_success() || status.is_redirection(), "{status}");
    let workspace_id = workspace_of(&app, email).await;
    let (_, overview) = app.overview(&browser).await;
    assert_eq!(overview["free_minutes_granted"], 0);
    assert_eq!(overview["email_unverified"], true);
    assert_eq!(
        overview["free_minutes_waiting"],
        "Confirm your e-mail address to receive your 1,000 free minutes: we sent a link to grace@hopper.test."
    );
    assert_eq!(free_vcpu_minutes(&app, workspace_id).await, 0);

    // A second link on request; a made-up one is refused.
    let resent = app.call(&browser, "resend-verification", &[]).await;
    assert!(resent.status().is_success(), "{}", resent.status());
    let mails: Value = app
        .client
        .get(format!("{}/sandbox/mail", app.address))
        .query(&[("to", email)])
        .send()
        .await
        .expect("mailbox")
        .json()
        .await
        .expect("JSON");
    assert_eq!(mails.as_array().map(Vec::len), Some(2), "{mails}");
    assert_eq!(mails[0]["subject"], "Confirm your e-mail address for Tenki");
    let made_up = browser
        .get(format!("{}/verify-email?token=00ff", app.address))
        .send()
        .await
        .expect("opens");
    assert_eq!(
        made_up.headers()["location"].to_str().ok(),
        Some("/?email=unknown_link")
    );
    assert_eq!(free_vcpu_minutes(&app, workspace_id).await, 0);

    app.open_verification_link(&browser, email).await;
    let (_, overview) = app.overview(&browser).await;
    assert_eq!(overview["free_minutes_granted"], 1_000);
    assert_eq!(overview["free_minutes_left"], 1_000);
    assert_eq!(overview["free_minutes_waiting"], Value::Null);
    assert_eq!(overview["email_unverified"], false);
    assert_eq!(free_vcpu_minutes(&app, workspace_id).await, 2_000);
    let again = app.call(&browser, "resend-verification", &[]).await;
    assert_eq!(again.status(), 409, "nothing to confirm any more");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_link_works_for_48_hours(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let now = Utc::now();
    let signed_up = identity::sign_up(
        &db,
        &app.core.ledger,
        "late@example.com",
        PASSWORD,
        "Late",
        &identity::SignUpClient::LOCAL,
        now,
    )
    .await
    .expect("sign-up");
    let expired = identity::verification::verify(
        &db,
        &app.core.ledger,
        &signed_up.email_verification,
        now + Duration::hours(48) + Duration::seconds(1),
    )
    .await;
    assert!(
        matches!(expired, Err(VerificationError::Expired)),
        "{expired:?}"
    );
    assert_eq!(free_vcpu_minutes(&app, signed_up.workspace_id).await, 0);
    identity::verification::verify(
        &db,
        &app.core.ledger,
        &signed_up.email_verification,
        now + Duration::hours(47),
    )
    .await
    .expect("in time");
    assert_eq!(free_vcpu_minutes(&app, signed_up.workspace_id).await, 2_000);
}

#[sqlx::test(migrations = "../migrations")]
async fn one_gmail_mailbox_written_another_way_gets_no_second_grant(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let first = verified_customer(&app, "ada.lovelace+ci@gmail.com").await;
    assert_eq!(free_vcpu_minutes(&app, first.workspace_id).await, 2_000);
    for (n, same) in ["AdaLovelace@googlemail.com", "a.d.a.lovelace+x@Gmail.com"]
        .into_iter()
        .enumerate()
    {
        let again = verified_customer(&app, same).await;
        assert_eq!(free_vcpu_minutes(&app, again.workspace_id).await, 0, "{n}");
        let (_, overview) = app.overview(&again.browser).await;
        assert_eq!(overview["free_minutes_granted"], 0);
        assert_eq!(
            overview["free_minutes_waiting"],
            "Free minutes were already granted to this e-mail address in another workspace."
        );
    }
    // Another person at another provider: their own grant.
    let other = verified_customer(&app, "ada.lovelace@example.com").await;
    assert_eq!(free_vcpu_minutes(&app, other.workspace_id).await, 2_000);
    let grants: i64 = sqlx::query_scalar("SELECT count(*) FROM free_minute_grants")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(grants, 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn two_sign_ups_of_one_mailbox_confirming_at_once_get_one_grant(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let now = Utc::now();
    let mut links = Vec::new();
    for email in ["twin@gmail.com", "t.w.i.n@gmail.com"] {
        let signed_up = identity::sign_up(
            &db,
            &app.core.ledger,
            email,
            PASSWORD,
            "Twin",
            &identity::SignUpClient::LOCAL,
            now,
        )
        .await
        .expect("sign-up");
        links.push((signed_up.workspace_id, signed_up.email_verification));
    }
    let (a, b) = tokio::join!(
        identity::verification::verify(&db, &app.core.ledger, &links[0].1, now),
        identity::verification::verify(&db, &app.core.ledger, &links[1].1, now),
    );
    let outcomes: Vec<GrantOutcome> = [a, b]
        .into_iter()
        .flat_map(|verified| verified.expect("verified").grants)
        .map(|(_, outcome)| outcome)
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == GrantOutcome::Granted)
            .count(),
        1,
        "{outcomes:?}"
    );
    let total =
        free_vcpu_minutes(&app, links[0].0).await + free_vcpu_minutes(&app, links[1].0).await;
    assert_eq!(total, 2_000);
}

/// Delivers GitHub's `installation.created` for `installation_id` of the fixture's account
/// (id 186853002) and links it to `workspace_id`, as an owner's setup does.
async fn install_fixture_account(app: &TestApp, installation_id: i64, workspace_id: Uuid) {
    let mut body = fixture("installation.created.json");
    body["installation"]["id"] = installation_id.into();
    let body = serde_json::to_vec(&body).expect("JSON");
    let delivered = deliver_signed(app, "installation", &Uuid::new_v4().to_string(), &body).await;
    assert_eq!(delivered.status(), 202);
    wait_until_processed(&app.core.db).await;
    tenki_core::github::onboarding::link_delivered_installation(
        &app.core.db,
        installation_id,
        workspace_id,
        Utc::now(),
    )
    .await
    .expect("linked");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_github_organization_brings_no_second_grant(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let first = verified_customer(&app, "owner@first.test").await;
    install_fixture_account(&app, 7_000_001, first.workspace_id).await;
    assert_eq!(free_vcpu_minutes(&app, first.workspace_id).await, 2_000);

    // A second workspace, another e-mail, the same GitHub organization (installed again after
    // being removed from the first): no second grant, and the Overview says why.
    let browser = app.new_browser();
    let email = "someone@second.test";
    app.sign_up_unverified(&browser, "Second", email, PASSWORD)
        .await;
    let second = workspace_of(&app, email).await;
    install_fixture_account(&app, 7_000_002, second).await;
    app.open_verification_link(&browser, email).await;
    assert_eq!(free_vcpu_minutes(&app, second).await, 0);
    let (_, overview) = app.overview(&browser).await;
    assert_eq!(
        overview["free_minutes_waiting"],
        "Free minutes were already granted to this GitHub organization in another workspace."
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_throwaway_address_gets_its_free_minutes_with_a_card_and_a_card_only_once(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let throwaway = verified_customer(&app, "burner@mailinator.com").await;
    assert_eq!(free_vcpu_minutes(&app, throwaway.workspace_id).await, 0);
    let (_, overview) = app.overview(&throwaway.browser).await;
    assert_eq!(
        overview["free_minutes_waiting"],
        identity::grants::THROWAWAY_REFUSAL
    );

    add_card(&app, &throwaway, "4242 4242 4242 4242").await;
    eventually_within(30, "free minutes granted with the card", || {
        let app = &app;
        let workspace_id = throwaway.workspace_id;
        async move { free_vcpu_minutes(app, workspace_id).await == 2_000 }
    })
    .await;

    // Another throwaway sign-up with the same card: the card made a grant already.
    let again = verified_customer(&app, "burner2@mailinator.com").await;
    add_card(&app, &again, "4242 4242 4242 4242").await;
    eventually_within(30, "the card's grant refused", || {
        let db = db.clone();
        let workspace_id = again.workspace_id;
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT free_grant_refusal FROM workspaces WHERE id = $1",
            )
            .bind(workspace_id)
            .fetch_one(&db)
            .await
            .expect("workspace")
            .as_deref()
                == Some("Free minutes were already granted to this card in another workspace.")
        }
    })
    .await;
    assert_eq!(free_vcpu_minutes(&app, again.workspace_id).await, 0);
}

/// Meters a job of `minutes` on a 2-vCPU runner for `workspace_id`, finished now, through the
/// production metering.
async fn meter_2_vcpu_job(app: &TestApp, workspace_id: Uuid, github_job_id: i64, minutes: i64) {
    use tenki_core::metering::{self, FinishedJob, JobKey};

    let now = Utc::now();
    let job = FinishedJob {
        workspace_id,
        key: JobKey {
            github_job_id,
            run_attempt: 1,
        },
        label: "tenki-standard-2c".to_owned(),
        started_at: now - Duration::minutes(minutes),
        completed_at: now,
        repository: "acme/app".to_owned(),
        workflow: "ci".to_owned(),
    };
    metering::meter_job(&app.core.db, &app.core.ledger, &job, now)
        .await
        .expect("metered");
}

#[sqlx::test(migrations = "../migrations")]
async fn an_organization_linked_after_a_grant_takes_back_what_is_left_of_a_second_grant(
    db: PgPool,
) {
    use tenki_core::ledger::reconcile::{Scope, reconcile};

    let app = TestApp::spawn(db.clone()).await;
    let first = verified_customer(&app, "owner@first.test").await;
    install_fixture_account(&app, 7_000_001, first.workspace_id).await;
    assert_eq!(free_vcpu_minutes(&app, first.workspace_id).await, 2_000);

    // A second workspace gets its grant by its own address, runs a 150-minute job on 2 vCPUs
    // (300 vCPU-minutes), then links the organization the first workspace brought.
    let second = verified_customer(&app, "someone@second.test").await;
    assert_eq!(free_vcpu_minutes(&app, second.workspace_id).await, 2_000);
    meter_2_vcpu_job(&app, second.workspace_id, 91_000_001, 150).await;
    assert_eq!(free_vcpu_minutes(&app, second.workspace_id).await, 1_700);
    install_fixture_account(&app, 7_000_002, second.workspace_id).await;

    // What was left goes back; what was used stays used; the Overview says why.
    eventually_within(30, "the rest of the second grant taken back", || {
        let app = &app;
        async move { free_vcpu_minutes(app, second.workspace_id).await == 0 }
    })
    .await;
    let (_, overview) = app.overview(&second.browser).await;
    assert_eq!(overview["free_minutes_granted"], 150, "{overview}");
    assert_eq!(overview["free_minutes_left"], 0, "{overview}");
    assert_eq!(
        overview["free_minutes_waiting"],
        "Free minutes were already granted to this GitHub organization in another workspace."
    );
    let withdrawn: Option<i64> = sqlx::query_scalar(
        "SELECT withdrawn_vcpu_minutes FROM free_minute_grants WHERE workspace_id = $1",
    )
    .bind(second.workspace_id)
    .fetch_one(&db)
    .await
    .expect("grant");
    assert_eq!(withdrawn, Some(1_700));
    // The first workspace keeps its grant; the ledger and the database agree.
    assert_eq!(free_vcpu_minutes(&app, first.workspace_id).await, 2_000);
    let report = reconcile(
        &db,
        &app.core.ledger,
        &Scope::Workspaces(vec![first.workspace_id, second.workspace_id]),
    )
    .await
    .expect("reconciled");
    assert!(report.differences.is_empty(), "{:?}", report.differences);

    // Taking back again (a retried task) moves nothing more.
    let again = identity::grants::withdraw(&db, &app.core.ledger, second.workspace_id, Utc::now())
        .await
        .expect("repeat");
    assert_eq!(again, None);
    assert_eq!(free_vcpu_minutes(&app, second.workspace_id).await, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_grant_used_up_before_the_organization_was_linked_has_nothing_to_take_back(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let first = verified_customer(&app, "owner@first.test").await;
    install_fixture_account(&app, 7_000_001, first.workspace_id).await;
    let second = verified_customer(&app, "spent@second.test").await;
    // 1,200 minutes on 2 vCPUs: the 1,000 free minutes and then some, paid.
    meter_2_vcpu_job(&app, second.workspace_id, 91_000_002, 1_200).await;
    assert_eq!(free_vcpu_minutes(&app, second.workspace_id).await, 0);
    install_fixture_account(&app, 7_000_002, second.workspace_id).await;
    eventually_within(30, "the withdrawal recorded", || {
        let db = db.clone();
        let workspace_id = second.workspace_id;
        async move {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT withdrawn_vcpu_minutes FROM free_minute_grants WHERE workspace_id = $1",
            )
            .bind(workspace_id)
            .fetch_one(&db)
            .await
            .expect("grant")
                == Some(0)
        }
    })
    .await;
    let (_, overview) = app.overview(&second.browser).await;
    assert_eq!(overview["free_minutes_granted"], 1000, "all of it was used");
}
