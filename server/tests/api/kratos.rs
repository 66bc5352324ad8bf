//! Ory Kratos as the identity provider, through the production paths: Tenki's pages render the
//! Kratos double's flows, the browser posts to it, and every request's cookies are checked with
//! its `/sessions/whoami` by the real `ory-kratos-client`.

use chrono::Duration;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::harness::{TestApp, settings};

const PASSWORD: &str = "a long enough password";

async fn spawn_with_kratos(db: PgPool) -> TestApp {
    TestApp::spawn_with(db, settings(&[("TENKI_KRATOS_PUBLIC_URL", "sandbox")])).await
}

fn double(app: &TestApp) -> &server::sandbox::kratos::KratosDouble {
    app.kratos.as_ref().expect("the Kratos double is served")
}

/// A browser whose requests carry `cookie` (a Kratos session the double issued).
fn browser_with(cookie: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::COOKIE,
        reqwest::header::HeaderValue::from_str(&format!("ory_kratos_session={cookie}"))
            .expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The `Location` of a redirect, made absolute.
fn location(app: &TestApp, response: &reqwest::Response) -> String {
    let to = response
        .headers()
        .get(reqwest::header::LOCATION)
        .unwrap_or_else(|| panic!("{} is not a redirect", response.status()))
        .to_str()
        .expect("ASCII")
        .to_owned();
    if to.starts_with('/') {
        format!("{}{to}", app.address)
    } else {
        to
    }
}

/// A page visit: the browser asks for HTML.
async fn get(browser: &reqwest::Client, url: &str) -> reqwest::Response {
    browser
        .get(url)
        .header(reqwest::header::ACCEPT, "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("request reaches the server")
}

/// The value of the form field `name` in a page's HTML.
fn field_value(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no field {name} in {html}"));
    let rest = &html[at..];
    let start = rest.find("value=\"").expect("a value") + "value=\"".len();
    rest[start..]
        .split('"')
        .next()
        .expect("closing quote")
        .to_owned()
}

/// The address the page's Kratos form posts to.
fn form_action(html: &str) -> String {
    let at = html
        .find("<form method=\"POST\" action=\"")
        .expect("a Kratos form")
        + "<form method=\"POST\" action=\"".len();
    html[at..]
        .split('"')
        .next()
        .expect("closing quote")
        .replace("&amp;", "&")
}

/// Follows Tenki's page `path` to the Kratos flow it starts, and returns the flow page's HTML.
async fn open_flow_page(app: &TestApp, browser: &reqwest::Client, path: &str) -> String {
    let page = get(browser, &format!("{}{path}", app.address)).await;
    assert_eq!(page.status(), 302, "{path} sends the browser to Kratos");
    let start = location(app, &page);
    assert!(start.contains("/sandbox/kratos/self-service/"), "{start}");
    let started = get(browser, &start).await;
    assert_eq!(started.status(), 303);
    let flow_page = location(app, &started);
    assert!(flow_page.contains("?flow="), "{flow_page}");
    let shown = get(browser, &flow_page).await;
    assert_eq!(shown.status(), 200, "{flow_page}");
    shown.text().await.expect("HTML")
}

async fn overview(app: &TestApp, browser: &reqwest::Client) -> (u16, Value) {
    let response = app.call(browser, "overview", &[]).await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

async fn free_vcpu_minutes(app: &TestApp, workspace_id: Uuid) -> u128 {
    app.core
        .ledger
        .free_vcpu_minutes_left(workspace_id)
        .await
        .expect("balance")
}

async fn workspaces_of_subject(db: &PgPool, subject: &str) -> Vec<Uuid> {
    sqlx::query_scalar(
        "SELECT m.workspace_id FROM users u JOIN workspace_members m ON m.user_id = u.id
         WHERE u.provider = 'kratos' AND u.subject = $1",
    )
    .bind(subject)
    .fetch_all(db)
    .await
    .expect("query")
}

#[sqlx::test(migrations = "../migrations")]
async fn signing_up_through_kratos_creates_the_workspace_and_its_code_brings_the_free_minutes(
    db: PgPool,
) {
    let app = spawn_with_kratos(db.clone()).await;
    let browser = app.new_browser();
    let email = "ada@lovelace.test";

    // Tenki's sign-up page shows Kratos's registration form, token included.
    let html = open_flow_page(&app, &browser, "/sign-up").await;
    let action = form_action(&html);
    assert!(
        action.contains("/sandbox/kratos/self-service/registration?flow="),
        "{action}"
    );
    let csrf = field_value(&html, "csrf_token");
    assert!(!csrf.is_empty());

    // A refused form comes back with Kratos's message and what was typed.
    let refused = browser
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("traits.email", email),
            ("password", "short"),
            ("method", "password"),
        ])
        .send()
        .await
        .expect("Kratos answers");
    assert_eq!(refused.status(), 303);
    let again = get(&browser, &location(&app, &refused))
        .await
        .text()
        .await
        .expect("HTML");
    assert!(
        again.contains("length must be &gt;= 8, but got 5")
            || again.contains("length must be >= 8, but got 5"),
        "{again}"
    );
    assert_eq!(field_value(&again, "traits.email"), email);

    // A forged token is refused by Kratos and creates nobody.
    let forged = browser
        .post(&action)
        .form(&[
            ("csrf_token", "forged"),
            ("traits.email", email),
            ("password", PASSWORD),
            ("method", "password"),
        ])
        .send()
        .await
        .expect("Kratos answers");
    assert_eq!(forged.status(), 403);

    let registered = browser
        .post(&action)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("traits.email", email),
            ("password", PASSWORD),
            ("method", "password"),
        ])
        .send()
        .await
        .expect("Kratos answers");
    assert_eq!(registered.status(), 303);
    assert_eq!(location(&app, &registered), format!("{}/", app.address));

    // The first request creates the person and their workspace; no free minutes before the code.
    let (status, first) = overview(&app, &browser).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["workspace_name"], "ada's workspace");
    assert_eq!(first["free_minutes_granted"], 0);
    assert_eq!(
        first["free_minutes_waiting"],
        "Confirm your e-mail address to receive your 1,000 free minutes: we sent a code to ada@lovelace.test."
    );
    let workspace_id = tenki_core::workspaces::first_workspace_of_email(&db, email)
        .await
        .expect("query")
        .expect("workspace");
    assert_eq!(free_vcpu_minutes(&app, workspace_id).await, 0);

    // The link in Kratos's e-mail verifies; the page says so, and the minutes arrive at once
    // (the cached whoami answer is dropped on that page).
    let body = newest_mail(&app, &browser, email).await;
    let link = body
        .lines()
        .find(|line| line.contains("/self-service/verification?code="))
        .expect("a verification link")
        .trim()
        .to_owned();
    let opened = get(&browser, &link).await;
    assert_eq!(opened.status(), 303);
    let shown = get(&browser, &location(&app, &opened))
        .await
        .text()
        .await
        .expect("HTML");
    assert!(
        shown.contains("You successfully verified your email address."),
        "{shown}"
    );
    let (_, after) = overview(&app, &browser).await;
    assert_eq!(after["free_minutes_granted"], 1000, "{after}");
    assert_eq!(free_vcpu_minutes(&app, workspace_id).await, 2_000);
}

#[sqlx::test(migrations = "../migrations")]
async fn whoami_decides_with_a_valid_an_expired_a_forged_and_no_cookie(db: PgPool) {
    let app = spawn_with_kratos(db).await;
    let kratos = double(&app);
    kratos.add_identity("grace@hopper.test", PASSWORD, true);
    let valid = kratos.sign_in("grace@hopper.test", Duration::hours(1));
    let expired = kratos.sign_in("grace@hopper.test", Duration::seconds(-1));

    let (status, body) = overview(&app, &browser_with(&valid)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["free_minutes_granted"], 1000,
        "a verified address is granted at once"
    );
    for (what, browser) in [
        ("expired", browser_with(&expired)),
        ("forged", browser_with("not-a-session")),
        ("missing", app.new_browser()),
    ] {
        let (status, body) = overview(&app, &browser).await;
        assert_eq!(status, 401, "{what}: {body}");
    }
    // A page visit without a session goes to sign-in, which goes on to Kratos.
    let page = get(&app.new_browser(), &format!("{}/usage", app.address)).await;
    assert_eq!(page.status(), 302);
    assert_eq!(
        location(&app, &page),
        format!("{}/sign-in?next=/usage", app.address)
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_session_without_its_second_factor_is_sent_to_give_it_and_then_works(db: PgPool) {
    let app = spawn_with_kratos(db).await;
    let kratos = double(&app);
    kratos.add_identity("mfa@example.test", PASSWORD, true);
    let session = kratos.sign_in("mfa@example.test", Duration::hours(1));
    kratos.require_second_factor("mfa@example.test");
    let browser = browser_with(&session);

    let (status, body) = overview(&app, &browser).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.to_string().contains("second_factor_required"),
        "{body}"
    );

    // The page sends the person to sign-in with aal2, which asks Kratos for the second factor.
    let page = get(&browser, &format!("{}/usage", app.address)).await;
    assert_eq!(page.status(), 302);
    let sign_in = location(&app, &page);
    assert!(
        sign_in.ends_with("/sign-in?next=/usage&aal=aal2"),
        "{sign_in}"
    );
    let to_kratos = get(&browser, &sign_in).await;
    assert_eq!(to_kratos.status(), 302);
    let start = location(&app, &to_kratos);
    assert!(
        start.contains("/self-service/login/browser?") && start.ends_with("&aal=aal2"),
        "{start}"
    );
    let started = get(&browser, &start).await;
    assert_eq!(started.status(), 303);
    // The double's CSRF cookie, carried by hand next to the session's.
    let csrf_cookie = started
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("an anti-CSRF cookie")
        .to_owned();
    let with_csrf = |request: reqwest::RequestBuilder| {
        request.header(
            reqwest::header::COOKIE,
            format!("ory_kratos_session={session}; {csrf_cookie}"),
        )
    };
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let html = with_csrf(plain.get(location(&app, &started)))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("HTML");
    assert!(html.contains("name=\"totp_code\""), "{html}");
    let csrf = field_value(&html, "csrf_token");
    let wrong = with_csrf(plain.post(form_action(&html)))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("totp_code", "000000"),
            ("method", "totp"),
        ])
        .send()
        .await
        .expect("Kratos answers");
    assert_eq!(wrong.status(), 303);
    assert_eq!(
        overview(&app, &browser).await.0,
        403,
        "a wrong code steps nothing up"
    );
    let right = with_csrf(plain.post(form_action(&html)))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("totp_code", server::sandbox::kratos::SECOND_FACTOR_CODE),
            ("method", "totp"),
        ])
        .send()
        .await
        .expect("Kratos answers");
    assert_eq!(right.status(), 303);
    assert_eq!(location(&app, &right), format!("{}/usage", app.address));
    // Not cached while it needed the step-up: the very next request is let in.
    let (status, body) = overview(&app, &browser).await;
    assert_eq!(status, 200, "{body}");
}

#[sqlx::test(migrations = "../migrations")]
async fn the_first_requests_of_a_new_person_at_once_create_exactly_one_workspace(db: PgPool) {
    let app = spawn_with_kratos(db.clone()).await;
    let kratos = double(&app);
    let subject = kratos.add_identity("burst@example.test", PASSWORD, true);
    let session = kratos.sign_in("burst@example.test", Duration::hours(1));
    let calls = (0..8).map(|_| {
        let browser = browser_with(&session);
        let app = &app;
        async move { overview(app, &browser).await }
    });
    let answers = futures_util::future::join_all(calls).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    let workspaces = workspaces_of_subject(&db, &subject).await;
    assert_eq!(workspaces.len(), 1, "{workspaces:?}");
    let people: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE subject = $1")
        .bind(&subject)
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(people, 1);
    assert_eq!(
        free_vcpu_minutes(&app, workspaces[0]).await,
        2_000,
        "one grant"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn signing_out_ends_the_kratos_session_at_once(db: PgPool) {
    let app = spawn_with_kratos(db).await;
    let kratos = double(&app);
    kratos.add_identity("leaving@example.test", PASSWORD, true);
    let session = kratos.sign_in("leaving@example.test", Duration::hours(1));
    let browser = browser_with(&session);
    assert_eq!(overview(&app, &browser).await.0, 200);

    let answer: Value = app
        .call(&browser, "sign-out", &[])
        .await
        .json()
        .await
        .expect("JSON");
    let logout = answer
        .as_str()
        .expect("Kratos's sign-out address")
        .to_owned();
    assert!(
        logout.contains("/sandbox/kratos/self-service/logout?token="),
        "{logout}"
    );
    let out = get(&browser, &logout).await;
    assert_eq!(out.status(), 303);
    assert_eq!(location(&app, &out), format!("{}/sign-in", app.address));
    // The cached answer was dropped: the old cookie opens nothing, even within the cache's time.
    assert_eq!(overview(&app, &browser).await.0, 401);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_built_in_account_moves_to_kratos_only_with_a_verified_address(db: PgPool) {
    // Signed up while the built-in identity signed people in.
    let built_in = TestApp::spawn(db.clone()).await;
    let before = built_in.new_browser();
    built_in
        .sign_up(&before, "Moving Co", "mover@example.test", PASSWORD)
        .await;
    let workspace_id = tenki_core::workspaces::first_workspace_of_email(&db, "mover@example.test")
        .await
        .expect("query")
        .expect("workspace");

    let app = spawn_with_kratos(db.clone()).await;
    let kratos = double(&app);
    // Someone registering that address in Kratos without verifying it gets nothing of it.
    kratos.add_identity("Mover@example.test", PASSWORD, false);
    let unverified = kratos.sign_in("mover@example.test", Duration::hours(1));
    let (status, body) = overview(&app, &browser_with(&unverified)).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.to_string()
            .contains("belongs to another Tenki account"),
        "{body}"
    );

    kratos.add_identity("mover@example.test", PASSWORD, true);
    let verified = kratos.sign_in("mover@example.test", Duration::hours(1));
    // A page's several requests at once: one takes the account over, the others find it so.
    let calls = (0..6).map(|_| {
        let browser = browser_with(&verified);
        let app = &app;
        async move { overview(app, &browser).await }
    });
    for (status, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = overview(&app, &browser_with(&verified)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["workspace_name"], "Moving Co");
    assert_eq!(
        body["free_minutes_granted"], 1000,
        "the grant it had, not a second"
    );
    let (provider, has_password): (String, bool) = sqlx::query_as(
        "SELECT provider, password_hash IS NOT NULL FROM users WHERE email_normalized = $1",
    )
    .bind("mover@example.test")
    .fetch_one(&db)
    .await
    .expect("person");
    assert_eq!((provider.as_str(), has_password), ("kratos", false));
    assert_eq!(free_vcpu_minutes(&app, workspace_id).await, 2_000);

    // With Kratos signing people in, the built-in forms are closed.
    let refused = app
        .call(
            &app.new_browser(),
            "sign-in",
            &[("email", "mover@example.test"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(refused.status(), 404);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_grant_cut_off_after_the_address_was_marked_is_made_on_the_next_request(db: PgPool) {
    let app = spawn_with_kratos(db.clone()).await;
    let kratos = double(&app);
    let subject = kratos.add_identity("crash@example.test", PASSWORD, false);
    let session = kratos.sign_in("crash@example.test", Duration::hours(1));
    let browser = browser_with(&session);
    assert_eq!(overview(&app, &browser).await.1["free_minutes_granted"], 0);
    // As if the server stopped right after marking the address verified, before deciding.
    sqlx::query("UPDATE users SET email_verified_at = now() WHERE subject = $1")
        .bind(&subject)
        .execute(&db)
        .await
        .expect("marked");
    let (status, body) = overview(&app, &browser).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["free_minutes_granted"], 1000, "{body}");
    let workspaces = workspaces_of_subject(&db, &subject).await;
    assert_eq!(free_vcpu_minutes(&app, workspaces[0]).await, 2_000);
}

/// The body of the newest e-mail the Kratos double's courier sent to `email`.
async fn newest_mail(app: &TestApp, browser: &reqwest::Client, email: &str) -> String {
    let messages: Value = get(
        browser,
        &format!(
            "{}/sandbox/kratos/admin/courier/messages?recipient={email}",
            app.address
        ),
    )
    .await
    .json()
    .await
    .expect("JSON");
    messages[0]["body"].as_str().expect("an e-mail").to_owned()
}

/// The code in the newest e-mail the Kratos double sent to `email`.
async fn newest_code(app: &TestApp, browser: &reqwest::Client, email: &str) -> String {
    let body = newest_mail(app, browser, email).await;
    body.lines()
        .map(str::trim)
        .find(|line| line.len() == 6 && line.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no code in {body}"))
        .to_owned()
}

/// Posts `form` (its anti-CSRF token added) to the Kratos form of `html`, and opens the page
/// Kratos sends the browser to.
async fn submit(
    app: &TestApp,
    browser: &reqwest::Client,
    html: &str,
    form: &[(&str, &str)],
) -> (String, String) {
    let csrf = field_value(html, "csrf_token");
    let mut fields = vec![("csrf_token", csrf.as_str())];
    fields.extend_from_slice(form);
    let posted = browser
        .post(form_action(html))
        .form(&fields)
        .send()
        .await
        .expect("Kratos answers");
    assert_eq!(posted.status(), 303, "{form:?}");
    let to = location(app, &posted);
    let page = get(browser, &to).await;
    (to, page.text().await.expect("HTML"))
}

#[sqlx::test(migrations = "../migrations")]
async fn a_forgotten_password_is_reset_with_the_code_kratos_e_mails(db: PgPool) {
    let app = spawn_with_kratos(db).await;
    let email = "forgetful@example.test";
    double(&app).add_identity(email, PASSWORD, true);
    let browser = app.new_browser();

    let sign_in = open_flow_page(&app, &browser, "/sign-in").await;
    assert!(
        sign_in.contains(r#"href="/recovery""#),
        "the way to a reset: {sign_in}"
    );
    let recovery = open_flow_page(&app, &browser, "/recovery").await;
    let (_, sent) = submit(
        &app,
        &browser,
        &recovery,
        &[("email", email), ("method", "code")],
    )
    .await;
    assert!(
        sent.contains("An email containing a recovery code has been sent"),
        "{sent}"
    );
    let (_, wrong) = submit(
        &app,
        &browser,
        &sent,
        &[("code", "000000"), ("method", "code")],
    )
    .await;
    assert!(wrong.contains("The recovery code is invalid"), "{wrong}");
    let code = newest_code(&app, &browser, email).await;
    let (settings_page, settings) = submit(
        &app,
        &browser,
        &wrong,
        &[("code", &code), ("method", "code")],
    )
    .await;
    assert!(settings_page.contains("/account?flow="), "{settings_page}");
    assert!(
        settings.contains("You successfully recovered your account."),
        "{settings}"
    );
    let new_password = "a brand new password";
    let (_, saved) = submit(
        &app,
        &browser,
        &settings,
        &[("password", new_password), ("method", "password")],
    )
    .await;
    assert!(saved.contains("Your changes have been saved!"), "{saved}");
    assert!(saved.contains("Back to the Overview"), "{saved}");
    // The recovery signed the browser in.
    assert_eq!(overview(&app, &browser).await.0, 200);

    // Elsewhere: the old password no longer signs in, the new one does.
    let elsewhere = app.new_browser();
    let login = open_flow_page(&app, &elsewhere, "/sign-in").await;
    let (_, refused) = submit(
        &app,
        &elsewhere,
        &login,
        &[
            ("identifier", email),
            ("password", PASSWORD),
            ("method", "password"),
        ],
    )
    .await;
    assert!(
        refused.contains("The provided credentials are invalid"),
        "{refused}"
    );
    let csrf = field_value(&refused, "csrf_token");
    let accepted = elsewhere
        .post(form_action(&refused))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("identifier", email),
            ("password", new_password),
            ("method", "password"),
        ])
        .send()
        .await
        .expect("Kratos answers");
    assert_eq!(location(&app, &accepted), format!("{}/", app.address));
    assert_eq!(overview(&app, &elsewhere).await.0, 200);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_kratos_that_never_answers_fails_the_request_instead_of_holding_it(db: PgPool) {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let url = format!("http://{}", silent.local_addr().expect("bound"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let app = TestApp::spawn_with(db, settings(&[("TENKI_KRATOS_PUBLIC_URL", &url)])).await;
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        overview(&app, &browser_with("some-session")),
    )
    .await
    .expect("answered, not held");
    assert_eq!(answer.0, 500, "{}", answer.1);
    assert!(answer.1.to_string().contains("Internal"), "{}", answer.1);
}
