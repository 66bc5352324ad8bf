//! Sign-up, free-minute grant, sessions, sign-in limits and tenant scoping, against real
//! PostgreSQL and TigerBeetle.

use crate::harness::{self, TestApp};
use chrono::{Duration, Utc};
use sqlx::PgPool;
use tenki_core::identity::{self, SignInError, SignUpError};
use tenki_core::ledger::Ledger;
use tenki_core::workspaces;

const PASSWORD: &str = "a long enough password";

async fn count(db: &PgPool, table: &str) -> i64 {
    // `table` is always one of this file's literals.
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(db)
        .await
        .expect("count")
}

#[sqlx::test(migrations = "../migrations")]
async fn the_verified_email_brings_exactly_1000_free_minutes_once(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let now = Utc::now();
    let signed_up = identity::sign_up(
        &db,
        &app.core.ledger,
        "Ada@Example.com",
        PASSWORD,
        "Ada's CI",
        &identity::SignUpClient::LOCAL,
        now,
    )
    .await
    .expect("sign-up");
    let workspace = signed_up.workspace_id;
    let ledger = &app.core.ledger;
    let balance = || async {
        ledger
            .free_vcpu_minutes_left(workspace)
            .await
            .expect("balance")
    };
    assert_eq!(
        balance().await,
        0,
        "nothing before the address is confirmed"
    );
    let verified = identity::verification::verify(&db, ledger, &signed_up.email_verification, now)
        .await
        .expect("verified");
    assert_eq!(
        verified.grants,
        [(workspace, identity::grants::GrantOutcome::Granted)]
    );
    assert_eq!(balance().await, 2_000);
    // The link opened again (a mail scanner, a second click): nothing more.
    let again = identity::verification::verify(&db, ledger, &signed_up.email_verification, now)
        .await
        .expect("opened again");
    assert_eq!(
        again.grants,
        [(workspace, identity::grants::GrantOutcome::AlreadyGranted)]
    );
    assert_eq!(balance().await, 2_000);

    // The same person signs up again (another case, another workspace name): refused, no grant.
    let again = identity::sign_up(
        &db,
        ledger,
        "ada@example.COM",
        PASSWORD,
        "Second",
        &identity::SignUpClient::LOCAL,
        now,
    )
    .await;
    assert!(matches!(again, Err(SignUpError::EmailTaken)), "{again:?}");
    assert_eq!(count(&db, "workspaces").await, 1);
    assert_eq!(count(&db, "free_minute_grants").await, 1);

    // A retried ledger step (a crash after it, say) posts nothing twice.
    ledger
        .open_workspace(workspace)
        .await
        .expect("retry is harmless");
    ledger
        .grant_free_minutes(
            workspace,
            tenki_core::ledger::free_grant_transfer_id(workspace, "email:ada@example.com"),
        )
        .await
        .expect("retry is harmless");
    assert_eq!(balance().await, 2_000);

    // A restarted server: a new client, fixed accounts created again, same balance.
    let restarted = Ledger::connect(0, &harness::tigerbeetle_addresses()).expect("client");
    restarted.ensure_fixed_accounts().await.expect("idempotent");
    let again = TestApp::spawn(db.clone()).await;
    let member = workspaces::membership(&db, signed_up.session.user_id, workspace)
        .await
        .expect("query")
        .expect("member");
    let overview = workspaces::overview(&db, &again.core.ledger, &member, Utc::now())
        .await
        .expect("overview");
    assert_eq!(overview.free_minutes_left, 1_000);
    assert_eq!(overview.free_minutes_granted, 1_000);
}

#[sqlx::test(migrations = "../migrations")]
async fn overview_over_http_shows_1000_free_minutes_after_sign_up_and_verification(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.sign_up(&app.client, "Acme", "ops@acme.test", PASSWORD)
        .await;
    let (status, body) = app.overview(&app.client).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["free_minutes_left"], 1_000);
    assert_eq!(body["free_minutes_granted"], 1_000);
    assert_eq!(body["workspace_name"], "Acme");
}

/// The `Set-Cookie` header of a successful sign-up.
async fn session_cookie_of_sign_up(app: &TestApp, email: &str) -> String {
    let form = [
        ("workspace", "Acme"),
        ("email", email),
        ("password", PASSWORD),
    ];
    let response = app.call(&app.client, "sign-up", &form).await;
    response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_owned()
}

#[sqlx::test(migrations = "../migrations")]
async fn session_cookie_is_http_only_and_same_site_lax(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let cookie = session_cookie_of_sign_up(&app, "c@acme.test").await;
    assert!(cookie.starts_with("tenki_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    // Served over http here: no Secure flag, or the browser would drop the cookie.
    assert!(!cookie.contains("Secure"), "{cookie}");
}

#[sqlx::test(migrations = "../migrations")]
async fn session_cookie_is_secure_when_served_over_https(db: PgPool) {
    let settings = harness::settings(&[("TENKI_PUBLIC_URL", "https://app.tenki.test")]);
    let app = TestApp::spawn_with(db, settings).await;
    let cookie = session_cookie_of_sign_up(&app, "s@acme.test").await;
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[sqlx::test(migrations = "../migrations")]
async fn session_expires_after_its_lifetime(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let start = Utc::now();
    identity::sign_up(
        &db,
        &app.core.ledger,
        "e@acme.test",
        PASSWORD,
        "Acme",
        &identity::SignUpClient::LOCAL,
        start,
    )
    .await
    .expect("sign-up");
    let session = identity::sign_in(&db, "e@acme.test", PASSWORD, "10.0.0.1", start)
        .await
        .expect("sign-in");
    let almost = start + identity::SESSION_LIFETIME - Duration::seconds(1);
    let after = start + identity::SESSION_LIFETIME + Duration::seconds(1);
    assert!(
        identity::session_user(&db, &session.token, almost)
            .await
            .expect("query")
            .is_some()
    );
    assert_eq!(
        identity::session_user(&db, &session.token, after)
            .await
            .expect("query"),
        None
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn sign_out_ends_the_session(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.sign_up(&app.client, "Acme", "out@acme.test", PASSWORD)
        .await;
    assert_eq!(app.overview(&app.client).await.0, 200);
    let response = app.call(&app.client, "sign-out", &[]).await;
    assert!(response.status().is_success() || response.status().is_redirection());
    let (status, body) = app.overview(&app.client).await;
    assert!(
        status.is_server_error() || status.is_client_error(),
        "{status}"
    );
    assert_eq!(body, serde_json::json!("SignInRequired"));
}

#[sqlx::test(migrations = "../migrations")]
async fn wrong_password_and_unknown_email_are_refused(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let now = Utc::now();
    identity::sign_up(
        &db,
        &app.core.ledger,
        "w@acme.test",
        PASSWORD,
        "Acme",
        &identity::SignUpClient::LOCAL,
        now,
    )
    .await
    .expect("sign-up");
    let wrong = identity::sign_in(&db, "w@acme.test", "not the password", "10.0.0.2", now).await;
    assert!(
        matches!(wrong, Err(SignInError::WrongPassword)),
        "{wrong:?}"
    );
    let unknown = identity::sign_in(&db, "nobody@acme.test", PASSWORD, "10.0.0.2", now).await;
    assert!(
        matches!(unknown, Err(SignInError::UnknownEmail)),
        "{unknown:?}"
    );

    let response = app
        .call(
            &app.client,
            "sign-in",
            &[("email", "w@acme.test"), ("password", "not the password")],
        )
        .await;
    assert!(response.headers().get("set-cookie").is_none());
    let wrong_password: serde_json::Value = response.json().await.expect("JSON error");
    assert_eq!(wrong_password["Refused"]["code"], "wrong_credentials");
    assert_eq!(
        wrong_password["Refused"]["message"],
        "Wrong e-mail or password. Try again."
    );
    // An e-mail with no account gets the very same answer: sign-in does not tell which exist.
    let response = app
        .call(
            &app.client,
            "sign-in",
            &[("email", "nobody@acme.test"), ("password", PASSWORD)],
        )
        .await;
    let unknown_email: serde_json::Value = response.json().await.expect("JSON error");
    assert_eq!(unknown_email, wrong_password);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_flood_of_wrong_passwords_from_elsewhere_never_locks_the_owner_out(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let now = Utc::now();
    identity::sign_up(
        &db,
        &app.core.ledger,
        "r@acme.test",
        PASSWORD,
        "Acme",
        &identity::SignUpClient::LOCAL,
        now,
    )
    .await
    .expect("sign-up");
    // An attacker tries the owner's e-mail from many addresses, many times each.
    for attempt in 0..(identity::MAX_FAILED_SIGN_INS_PER_EMAIL_AND_ADDRESS * 4) {
        let ip = format!("10.1.0.{}", attempt % 4);
        let result = identity::sign_in(&db, "r@acme.test", "wrong password", &ip, now).await;
        assert!(
            matches!(
                result,
                Err(SignInError::WrongPassword) | Err(SignInError::TooManyAttempts)
            ),
            "{result:?}"
        );
    }
    // The attacker's addresses are limited now...
    let limited = identity::sign_in(&db, "r@acme.test", PASSWORD, "10.1.0.1", now).await;
    assert!(
        matches!(limited, Err(SignInError::TooManyAttempts)),
        "{limited:?}"
    );
    // ...and the owner, from their own address, signs in with the right password.
    identity::sign_in(&db, "r@acme.test", PASSWORD, "192.0.2.10", now)
        .await
        .expect("the owner is never locked out by others' failures");
}

#[sqlx::test(migrations = "../migrations")]
async fn sign_in_is_rate_limited_per_email_and_address_and_per_address(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let now = Utc::now();
    identity::sign_up(
        &db,
        &app.core.ledger,
        "r@acme.test",
        PASSWORD,
        "Acme",
        &identity::SignUpClient::LOCAL,
        now,
    )
    .await
    .expect("sign-up");
    for _ in 0..identity::MAX_FAILED_SIGN_INS_PER_EMAIL_AND_ADDRESS {
        let result = identity::sign_in(&db, "r@acme.test", "wrong password", "10.2.0.1", now).await;
        assert!(
            matches!(result, Err(SignInError::WrongPassword)),
            "{result:?}"
        );
    }
    // From that address even the right password waits for the window to pass.
    let limited = identity::sign_in(&db, "r@acme.test", PASSWORD, "10.2.0.1", now).await;
    assert!(
        matches!(limited, Err(SignInError::TooManyAttempts)),
        "{limited:?}"
    );
    let later = now + identity::SIGN_IN_WINDOW + Duration::seconds(1);
    identity::sign_in(&db, "r@acme.test", PASSWORD, "10.2.0.1", later)
        .await
        .expect("allowed again after the window");

    // One address guessing many e-mails.
    for attempt in 0..identity::MAX_FAILED_SIGN_INS_PER_ADDRESS {
        let email = format!("guess{attempt}@acme.test");
        let result = identity::sign_in(&db, &email, PASSWORD, "10.9.9.9", later).await;
        assert!(
            matches!(result, Err(SignInError::UnknownEmail)),
            "{result:?}"
        );
    }
    let limited = identity::sign_in(&db, "r@acme.test", PASSWORD, "10.9.9.9", later).await;
    assert!(
        matches!(limited, Err(SignInError::TooManyAttempts)),
        "{limited:?}"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn sign_ups_are_limited_per_client_address(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let now = Utc::now();
    let client = identity::SignUpClient {
        address: "198.51.100.20",
        max_per_window: 3,
    };
    for n in 0..3 {
        identity::sign_up(
            &db,
            &app.core.ledger,
            &format!("u{n}@acme.test"),
            PASSWORD,
            "Acme",
            &client,
            now,
        )
        .await
        .expect("within the limit");
    }
    let refused = identity::sign_up(
        &db,
        &app.core.ledger,
        "u9@acme.test",
        PASSWORD,
        "Acme",
        &client,
        now,
    )
    .await;
    assert!(
        matches!(refused, Err(SignUpError::TooManySignUps)),
        "{refused:?}"
    );
    assert_eq!(
        count(&db, "workspaces").await,
        3,
        "nothing created for the refused sign-up"
    );
    // Another address is not affected.
    let other = identity::SignUpClient {
        address: "198.51.100.21",
        ..client
    };
    identity::sign_up(
        &db,
        &app.core.ledger,
        "u9@acme.test",
        PASSWORD,
        "Acme",
        &other,
        now,
    )
    .await
    .expect("another address");
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_sign_up_fields_name_the_problem_and_create_nothing(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let now = Utc::now();
    let cases = [
        ("", "x@acme.test", PASSWORD, "workspace"),
        ("Acme", "", PASSWORD, "email"),
        ("Acme", "not-an-email", PASSWORD, "email"),
        ("Acme", "x@acme.test", "", "password"),
        ("Acme", "x@acme.test", "short", "password"),
    ];
    for (workspace, email, password, field) in cases {
        match identity::sign_up(
            &db,
            &app.core.ledger,
            email,
            password,
            workspace,
            &identity::SignUpClient::LOCAL,
            now,
        )
        .await
        {
            Err(SignUpError::Invalid(error)) => assert_eq!(error.field, field, "{error}"),
            other => panic!("expected {field} to be refused, got {other:?}"),
        }
    }
    assert_eq!(count(&db, "users").await, 0);
    assert_eq!(count(&db, "workspaces").await, 0);
    assert_eq!(count(&db, "sessions").await, 0);

    let response = app
        .call(
            &app.client,
            "sign-up",
            &[
                ("workspace", "Acme"),
                ("email", "x@acme.test"),
                ("password", "short"),
            ],
        )
        .await;
    let body: serde_json::Value = response.json().await.expect("JSON error");
    assert_eq!(body["Invalid"]["field"], "password");
    assert_eq!(
        body["Invalid"]["message"],
        "Use at least 10 characters for your password."
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_second_user_sees_only_their_own_workspace(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let alice = app.new_browser();
    let bob = app.new_browser();
    app.sign_up(&alice, "Alice Corp", "alice@acme.test", PASSWORD)
        .await;
    app.sign_up(&bob, "Bob Labs", "bob@acme.test", PASSWORD)
        .await;
    assert_eq!(app.overview(&alice).await.1["workspace_name"], "Alice Corp");
    assert_eq!(app.overview(&bob).await.1["workspace_name"], "Bob Labs");

    let user = |email: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM users WHERE email = $1")
                .bind(email)
                .fetch_one(&db)
                .await
                .expect("user")
        }
    };
    let (alice_id, bob_id) = (user("alice@acme.test").await, user("bob@acme.test").await);
    let alice_workspace =
        workspaces::memberships(&db, alice_id).await.expect("query")[0].workspace_id;
    assert_eq!(
        workspaces::memberships(&db, bob_id)
            .await
            .expect("query")
            .len(),
        1
    );
    assert_eq!(
        workspaces::membership(&db, bob_id, alice_workspace)
            .await
            .expect("query"),
        None,
        "Bob is no member of Alice's workspace"
    );
}
