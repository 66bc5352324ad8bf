//! Roles, through the routes production serves: a member of a workspace reads it, and is refused
//! every change that only its owners and admins make (billing, add-ons, slots, the spending
//! limit, GitHub connections), with nothing changed and nothing sent to Stripe or GitHub.
//! (Invitations come with the identity issue; until then the member is added in the database.)

use chrono::Utc;
use sqlx::PgPool;

use crate::harness::TestApp;
use crate::runners::{Customer, customer};

/// Makes the person behind `member` a plain member of `owner`'s workspace, the one their session
/// then opens (their own workspace joined later).
async fn join_as_member(db: &PgPool, owner: &Customer, member: &Customer) {
    let user_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE email_normalized = lower($1)")
            .bind(&member.email)
            .fetch_one(db)
            .await
            .expect("user");
    sqlx::query(
        "UPDATE workspace_members SET joined_at = now() + interval '1 day' WHERE user_id = $1",
    )
    .bind(user_id)
    .execute(db)
    .await
    .expect("own workspace later");
    sqlx::query(
        "INSERT INTO workspace_members (workspace_id, user_id, role, joined_at) VALUES ($1, $2, 'member', $3)",
    )
    .bind(owner.workspace_id)
    .bind(user_id)
    .bind(Utc::now() - chrono::Duration::days(1))
    .execute(db)
    .await
    .expect("member");
}

/// Where a plain route sent the browser.
async fn redirect_of(response: reqwest::Response) -> String {
    assert!(response.status().is_redirection(), "{}", response.status());
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_owned()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_member_reads_the_workspace_and_is_refused_every_change_owners_and_admins_make(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    let owner = customer(&app, "roles-owner").await;
    let member = customer(&app, "roles-member").await;
    join_as_member(&db, &owner, &member).await;
    let url = |path: &str| format!("{}{path}", app.address);
    let post = |path: &'static str, form: Vec<(&'static str, &'static str)>| {
        member.browser.post(url(path)).form(&form).send()
    };

    // Reads: the owner's workspace is the one the member sees, without the way to connect GitHub.
    let (status, overview) = app.overview(&member.browser).await;
    assert_eq!(status, 200);
    assert_eq!(overview["workspace_name"], "roles-owner", "{overview}");
    let runners = member
        .browser
        .get(url("/runners"))
        .send()
        .await
        .expect("runners")
        .text()
        .await
        .expect("page");
    assert!(runners.contains("connect-github-not-allowed"), "{runners}");
    assert!(!runners.contains("href=\"/github/connect\""), "{runners}");

    // Changes: each refused in words, through the route the page posts to.
    let refusals = [
        (
            post("/billing/add-card", vec![]).await.expect("add card"),
            "/billing?card=not_allowed",
        ),
        (
            post("/billing/manage", vec![]).await.expect("manage"),
            "/billing?card=not_allowed",
        ),
        (
            post("/add-ons/addon", vec![("addon", "macos"), ("action", "on")])
                .await
                .expect("add-on"),
            "/add-ons?error=not_allowed",
        ),
        (
            post("/add-ons/slots", vec![("class", "x64"), ("slots", "10")])
                .await
                .expect("slots"),
            "/add-ons?error=not_allowed",
        ),
        (
            post("/settings/spending-limit", vec![("limit", "100")])
                .await
                .expect("limit"),
            "/settings?error=not_allowed",
        ),
    ];
    for (response, expected) in refusals {
        assert_eq!(redirect_of(response).await, expected);
    }
    // Connecting GitHub: refused before the install page, and a setup return is refused before
    // GitHub is asked anything.
    let connect = member
        .browser
        .get(url("/github/connect"))
        .send()
        .await
        .expect("connect");
    assert_eq!(
        redirect_of(connect).await,
        "/github/connected?refused=not_allowed"
    );
    let requests_before = app.github.api_requests();
    let setup = member
        .browser
        .get(url(
            "/github/setup?installation_id=123&setup_action=install&code=abc&state=x",
        ))
        .send()
        .await
        .expect("setup");
    assert!(redirect_of(setup).await.contains("refused=not_allowed"));
    assert_eq!(
        app.github.api_requests(),
        requests_before,
        "GitHub was not asked"
    );
    let page = member
        .browser
        .get(url("/github/connected?refused=not_allowed"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 403);
    let text = page.text().await.expect("text");
    assert!(
        text.contains("owners and admins can connect GitHub"),
        "{text}"
    );

    // Nothing changed, nothing reached Stripe.
    assert!(app.stripe.requests().is_empty(), "nothing reached Stripe");
    let (addons, slots, limit): (i64, i64, Option<i64>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM workspace_addons WHERE workspace_id = $1),
                (SELECT count(*) FROM workspace_extra_slots WHERE workspace_id = $1),
                (SELECT spending_limit FROM workspaces WHERE id = $1)",
    )
    .bind(owner.workspace_id)
    .fetch_one(&db)
    .await
    .expect("state");
    assert_eq!((addons, slots, limit), (0, 0, None));

    // The owner may.
    let allowed = owner
        .browser
        .post(url("/settings/spending-limit"))
        .form(&[("limit", "100")])
        .send()
        .await
        .expect("owner");
    assert_eq!(redirect_of(allowed).await, "/settings?saved=1");
}
