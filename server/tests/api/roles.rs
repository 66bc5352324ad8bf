//! Roles, through the routes production serves: a member of a workspace reads it, and is refused
//! every change that only its owners and admins make (billing, add-ons, slots, the spending
//! limit, GitHub connections), with nothing changed and nothing sent to Stripe or GitHub.
//! Invitations, role changes and removals keep the rules: only the person invited, once, in
//! time; owners for owners; always an owner.

use chrono::Utc;
use sqlx::PgPool;
use tenki_core::identity::SessionUser;
use tenki_core::workspaces::members::{self, MemberError};
use tenki_core::workspaces::{self, Caller, Role};

use crate::billing::location;
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
        (
            post("/settings/workspace-name", vec![("name", "Taken over")])
                .await
                .expect("rename"),
            "/settings?error=rename_not_allowed",
        ),
    ];
    for (response, expected) in refusals {
        assert_eq!(location(&response), expected);
    }
    // Connecting GitHub: refused before the install page, and a setup return is refused before
    // GitHub is asked anything.
    let connect = member
        .browser
        .get(url("/github/connect"))
        .send()
        .await
        .expect("connect");
    assert_eq!(location(&connect), "/github/connected?refused=not_allowed");
    let requests_before = app.github.api_requests();
    let setup = member
        .browser
        .get(url(
            "/github/setup?installation_id=123&setup_action=install&code=abc&state=x",
        ))
        .send()
        .await
        .expect("setup");
    assert!(location(&setup).contains("refused=not_allowed"));
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
    assert_eq!(location(&allowed), "/settings?saved=1");
    let rename = |name: &'static str| {
        owner
            .browser
            .post(url("/settings/workspace-name"))
            .form(&[("name", name)])
            .send()
    };
    assert_eq!(
        location(&rename("   ").await.expect("blank")),
        "/settings?error=bad_name"
    );
    assert_eq!(
        location(&rename("  Roles & Co  ").await.expect("rename")),
        "/settings?renamed=1"
    );
    let (_, overview) = app.overview(&member.browser).await;
    assert_eq!(
        overview["workspace_name"], "Roles & Co",
        "the member sees the new name"
    );
    let renamed: String = sqlx::query_scalar(
        "SELECT detail FROM audit_events WHERE workspace_id = $1 AND action = 'workspace.renamed'",
    )
    .bind(owner.workspace_id)
    .fetch_one(&db)
    .await
    .expect("an audit line");
    assert_eq!(
        renamed,
        "renamed the workspace from roles-owner to Roles & Co"
    );
}

/// The caller `email`'s session would name, acting in `workspace_id`.
async fn caller_in(db: &PgPool, email: &str, workspace_id: uuid::Uuid) -> Caller {
    let user_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE email_normalized = lower($1)")
            .bind(email)
            .fetch_one(db)
            .await
            .expect("user");
    Caller {
        user: SessionUser {
            user_id,
            email: email.to_owned(),
            email_verified: true,
        },
        member: workspaces::membership(db, user_id, workspace_id)
            .await
            .expect("query")
            .expect("member"),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn an_invitation_is_accepted_once_by_the_person_invited_before_it_expires(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let owner = customer(&app, "invite-owner").await;
    let bob = customer(&app, "invite-bob").await;
    let carol = customer(&app, "invite-carol").await;
    let now = Utc::now();
    let alice = caller_in(&db, &owner.email, owner.workspace_id).await;

    // Bob's own e-mail, typed in another case, as an admin.
    let invitation = members::invite(&db, &alice, &bob.email.to_uppercase(), Role::Admin, now)
        .await
        .expect("invited");
    assert_eq!(invitation.expires_at, now + members::INVITATION_LIFETIME);
    let carol_user = caller_in(&db, &carol.email, carol.workspace_id).await.user;
    let refused = members::accept(&db, &carol_user, &invitation.token, now).await;
    assert!(
        matches!(refused, Err(MemberError::SomeoneElsesInvitation(_))),
        "{refused:?}"
    );
    let bob_user = caller_in(&db, &bob.email, bob.workspace_id).await.user;
    let joined = members::accept(&db, &bob_user, &invitation.token, now)
        .await
        .expect("accepted");
    assert_eq!(
        (joined.workspace_id, joined.role),
        (owner.workspace_id, Role::Admin)
    );
    let again = members::accept(&db, &bob_user, &invitation.token, now).await;
    assert!(
        matches!(again, Err(MemberError::UsedInvitation)),
        "{again:?}"
    );
    let unknown = members::accept(&db, &bob_user, &"0".repeat(64), now).await;
    assert!(
        matches!(unknown, Err(MemberError::UnknownInvitation)),
        "{unknown:?}"
    );

    let late = members::invite(&db, &alice, &carol.email, Role::Member, now)
        .await
        .expect("invited");
    let expired = members::accept(
        &db,
        &carol_user,
        &late.token,
        now + members::INVITATION_LIFETIME,
    )
    .await;
    assert!(
        matches!(expired, Err(MemberError::ExpiredInvitation)),
        "{expired:?}"
    );
    let twice = members::invite(&db, &alice, &bob.email, Role::Member, now).await;
    assert!(
        matches!(twice, Err(MemberError::AlreadyMember(_))),
        "{twice:?}"
    );

    // An admin invites members and admins, not owners; a member invites nobody.
    let bob_admin = caller_in(&db, &bob.email, owner.workspace_id).await;
    let owner_by_admin =
        members::invite(&db, &bob_admin, "dave@example.com", Role::Owner, now).await;
    assert!(
        matches!(owner_by_admin, Err(MemberError::OwnersOnly)),
        "{owner_by_admin:?}"
    );
    members::invite(&db, &bob_admin, "dave@example.com", Role::Member, now)
        .await
        .expect("an admin invites a member");
    members::change_role(&db, &alice, bob_user.user_id, Role::Member, Utc::now())
        .await
        .expect("demoted");
    let bob_member = caller_in(&db, &bob.email, owner.workspace_id).await;
    let by_member = members::invite(&db, &bob_member, "erin@example.com", Role::Member, now).await;
    assert!(
        matches!(by_member, Err(MemberError::NotAllowed)),
        "{by_member:?}"
    );
    let names: Vec<(String, Role)> = members::list(&db, owner.workspace_id)
        .await
        .expect("list")
        .into_iter()
        .map(|m| (m.email, m.role))
        .collect();
    assert_eq!(
        names,
        [
            (owner.email.clone(), Role::Owner),
            (bob.email.clone(), Role::Member)
        ]
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_workspace_always_keeps_an_owner_even_when_two_changes_race(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let owner = customer(&app, "owners-a").await;
    let other = customer(&app, "owners-b").await;
    let now = Utc::now();
    let alice = caller_in(&db, &owner.email, owner.workspace_id).await;

    // The only owner can neither step down nor leave.
    let demote_self =
        members::change_role(&db, &alice, alice.user.user_id, Role::Admin, Utc::now()).await;
    assert!(
        matches!(demote_self, Err(MemberError::LastOwner)),
        "{demote_self:?}"
    );
    let leave = members::remove(&db, &alice, alice.user.user_id, Utc::now()).await;
    assert!(matches!(leave, Err(MemberError::LastOwner)), "{leave:?}");

    let invitation = members::invite(&db, &alice, &other.email, Role::Owner, now)
        .await
        .expect("invited");
    let bob_user = caller_in(&db, &other.email, other.workspace_id).await.user;
    members::accept(&db, &bob_user, &invitation.token, now)
        .await
        .expect("accepted");
    let bob = caller_in(&db, &other.email, owner.workspace_id).await;
    assert_eq!(bob.member.role, Role::Owner);

    // Each owner demotes the other at the same moment: one wins, one owner stays.
    let (a, b) = tokio::join!(
        members::change_role(&db, &alice, bob.user.user_id, Role::Admin, Utc::now()),
        members::change_role(&db, &bob, alice.user.user_id, Role::Admin, Utc::now()),
    );
    assert!(a.is_ok() != b.is_ok(), "exactly one wins: {a:?} {b:?}");
    let owners: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM workspace_members WHERE workspace_id = $1 AND role = 'owner'",
    )
    .bind(owner.workspace_id)
    .fetch_one(&db)
    .await
    .expect("count");
    assert_eq!(owners, 1);

    // The one left an admin may leave; removing someone is for owners and admins only.
    let (winner, loser) = if a.is_ok() {
        (alice, bob)
    } else {
        (bob, alice)
    };
    let loser = caller_in(&db, &loser.user.email, owner.workspace_id).await;
    let removes_owner = members::remove(&db, &loser, winner.user.user_id, Utc::now()).await;
    assert!(
        matches!(removes_owner, Err(MemberError::OwnersOnly)),
        "{removes_owner:?}"
    );
    members::remove(&db, &loser, loser.user.user_id, Utc::now())
        .await
        .expect("an admin leaves");
    assert_eq!(
        members::list(&db, owner.workspace_id)
            .await
            .expect("list")
            .len(),
        1
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn every_server_function_but_signing_in_and_out_refuses_a_caller_without_a_session(
    db: PgPool,
) {
    let app = TestApp::spawn(db).await;
    // Signing up, in and out, reading a refused form's message, and the sign-in pages' Kratos
    // flows, are for visitors.
    let public = [
        "/api/sign-up",
        "/api/sign-in",
        "/api/sign-out",
        "/api/form-error",
        "/api/identity-flow",
    ];
    let mut paths: Vec<&str> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, _)| path)
        .collect();
    paths.sort_unstable();
    assert!(
        paths.len() >= 15 && public.iter().all(|p| paths.contains(p)),
        "the enumeration sees every server function: {paths:?}"
    );
    // Every argument any of them takes, empty, so each call reaches the function's own check
    // (a new function with another argument fails here until it is listed).
    let arguments = [
        ("month", ""),
        ("status", ""),
        ("label", ""),
        ("repository", ""),
        ("before", ""),
        ("account", ""),
    ];
    for path in paths.iter().filter(|path| !public.contains(path)) {
        let response = app
            .client
            .post(format!("{}{path}", app.address))
            .form(&arguments)
            .send()
            .await
            .expect("call");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, 401, "{path} answered without a session: {body}");
        assert!(body.contains("SignInRequired"), "{path}: {body}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn the_audit_log_shows_owners_and_admins_who_changed_what_and_members_nothing(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let owner = customer(&app, "audit-owner").await;
    let bob = customer(&app, "audit-bob").await;
    let post = |path: &str, form: Vec<(&str, String)>| {
        owner
            .browser
            .post(format!("{}{path}", app.address))
            .form(&form)
            .send()
    };
    // Through the routes the Settings and Add-ons pages post to.
    let invited = post(
        "/settings/members/invite",
        vec![("email", bob.email.clone()), ("role", "member".to_owned())],
    )
    .await
    .expect("invite");
    assert!(location(&invited).starts_with("/settings?invitation="));
    // Bob follows the e-mailed link, which the outbox holds for him.
    let link = app.newest_link_to(&bob.email).await;
    let token = link.rsplit_once("token=").expect("token").1.to_owned();
    let joined = bob
        .browser
        .post(format!("{}/join", app.address))
        .form(&[("token", token)])
        .send()
        .await
        .expect("join");
    assert_eq!(location(&joined), "/");
    let bob_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE email_normalized = lower($1)")
            .bind(&bob.email)
            .fetch_one(&db)
            .await
            .expect("bob");
    post(
        "/settings/members/role",
        vec![
            ("user_id", bob_id.to_string()),
            ("role", "admin".to_owned()),
        ],
    )
    .await
    .expect("role");
    post(
        "/settings/spending-limit",
        vec![
            ("limit", "250.00".to_owned()),
            ("hard_cap", "on".to_owned()),
        ],
    )
    .await
    .expect("limit");
    post(
        "/settings/members/role",
        vec![
            ("user_id", bob_id.to_string()),
            ("role", "member".to_owned()),
        ],
    )
    .await
    .expect("role");
    // Support adds $25.00 of promotional credit (`tenki admin promo-credit`).
    tenki_core::ledger::adjustments::promotional_credit(
        &db,
        &app.core.ledger,
        owner.workspace_id,
        25 * 100_000_000,
        "welcome",
        &tenki_core::ledger::adjustments::AdminRequest {
            admin_email: "support@tenki.test".to_owned(),
            reason: "a late runner".to_owned(),
        },
        Utc::now(),
    )
    .await
    .expect("credit");

    let log: serde_json::Value = app
        .call(&owner.browser, "audit-log", &[])
        .await
        .json()
        .await
        .expect("JSON");
    let seen: Vec<(String, String, String)> = log
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or_default().to_owned(),
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let (o, b) = (owner.email.clone(), bob.email.clone());
    assert_eq!(
        seen,
        [
            (
                "Tenki support (support@tenki.test)".to_owned(),
                "admin.promo_credit".to_owned(),
                "added promotional credit: $25.00 (reason: a late runner)".to_owned()
            ),
            (
                o.clone(),
                "member.role_changed".to_owned(),
                format!("changed {b} from admin to member")
            ),
            (
                o.clone(),
                "spending_limit.changed".to_owned(),
                "set the monthly spending limit to $250.00, a hard cap".to_owned()
            ),
            (
                o.clone(),
                "member.role_changed".to_owned(),
                format!("changed {b} from member to admin")
            ),
            (
                b.clone(),
                "member.joined".to_owned(),
                "accepted the invitation and joined as member".to_owned()
            ),
            (
                o.clone(),
                "member.invited".to_owned(),
                format!("invited {b} as member")
            ),
        ]
    );
    // Bob, a member again (acting in the owner's workspace he joined last), reads none of it.
    let switched = bob
        .browser
        .post(format!("{}/workspaces/switch", app.address))
        .form(&[("workspace", owner.workspace_id.to_string())])
        .send()
        .await
        .expect("switch");
    assert_eq!(location(&switched), "/");
    let refused = app.call(&bob.browser, "audit-log", &[]).await;
    assert_eq!(refused.status(), 403);
}

#[sqlx::test(migrations = "../migrations")]
async fn an_owner_of_one_workspace_reaches_nothing_of_another_by_its_ids(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let a = customer(&app, "tenant-a").await;
    let b = customer(&app, "tenant-b").await;
    let b_owner: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE email_normalized = lower($1)")
            .bind(&b.email)
            .fetch_one(&db)
            .await
            .expect("b's owner");
    let post = |path: &str, form: Vec<(&str, String)>| {
        a.browser
            .post(format!("{}{path}", app.address))
            .form(&form)
            .send()
    };
    let roles_of_b = || async {
        sqlx::query_as::<_, (uuid::Uuid, String)>(
            "SELECT user_id, role FROM workspace_members WHERE workspace_id = $1",
        )
        .bind(b.workspace_id)
        .fetch_all(&db)
        .await
        .expect("members")
    };
    let before = roles_of_b().await;

    // Switching to B (the form, or a hand-made cookie): A stays in their own workspace.
    let switched = post(
        "/workspaces/switch",
        vec![("workspace", b.workspace_id.to_string())],
    )
    .await
    .expect("switch");
    assert_eq!(location(&switched), "/");
    let session = tenki_core::identity::sign_in(
        &db,
        &a.email,
        "a long enough password",
        "127.0.0.1",
        Utc::now(),
    )
    .await
    .expect("signed in");
    let forged = app
        .client
        .post(format!("{}/api/overview", app.address))
        .header(
            "cookie",
            format!(
                "tenki_session={}; tenki_workspace={}",
                session.token, b.workspace_id
            ),
        )
        .send()
        .await
        .expect("overview");
    let overview: serde_json::Value = forged.json().await.expect("JSON");
    assert_eq!(overview["workspace_name"], "tenant-a", "{overview}");

    // B's owner by id: neither demoted nor removed from A's Settings.
    let demote = post(
        "/settings/members/role",
        vec![
            ("user_id", b_owner.to_string()),
            ("role", "member".to_owned()),
        ],
    )
    .await
    .expect("role");
    assert_eq!(
        location(&demote),
        "/settings?members_error=not_a_member#members"
    );
    let remove = post(
        "/settings/members/remove",
        vec![("user_id", b_owner.to_string())],
    )
    .await
    .expect("remove");
    assert_eq!(
        location(&remove),
        "/settings?members_error=not_a_member#members"
    );
    assert_eq!(roles_of_b().await, before);

    // B's Checkout session, returned to from A's browser: refused, no card for either.
    let checkout = crate::billing::open_checkout(&app, &b).await;
    let session_id = checkout.rsplit('/').next().expect("session id").to_owned();
    let returned = a
        .browser
        .get(format!(
            "{}/billing/card-added?session_id={session_id}",
            app.address
        ))
        .send()
        .await
        .expect("return");
    assert_eq!(location(&returned), "/billing?card=other_workspace");
    let cards: i64 = sqlx::query_scalar("SELECT count(*) FROM cards")
        .fetch_one(&db)
        .await
        .expect("cards");
    assert_eq!(cards, 0);

    // B's audit log is B's: A's reading shows only A's events.
    let log: serde_json::Value = app
        .call(&a.browser, "audit-log", &[])
        .await
        .json()
        .await
        .expect("JSON");
    assert!(
        log.as_array()
            .expect("events")
            .iter()
            .all(|e| e["actor"] != b.email.as_str()),
        "{log}"
    );
}
