//! Connecting GitHub (SPEC §2): the signed, expiring `state` that carries the workspace through
//! the App's install page, and the setup step that links an installation only after GitHub
//! confirms, with the user's own token, that the user can access it.
//!
//! The `installation.created` delivery may arrive before or after the browser returns; both
//! write the same installation row, and linking only sets its workspace, so either order ends in
//! one linked installation.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use http::Method;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::github::client::{GitHubApp, GitHubError};

/// How long a customer has between "Connect GitHub" and returning from GitHub.
pub const STATE_LIFETIME: chrono::Duration = chrono::Duration::minutes(30);

/// The queue task that copies an installation's repositories from GitHub.
pub const SYNC_REPOSITORIES_TASK: &str = "sync_github_repositories";

/// What is wrong with a `state` that came back from GitHub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error(
        "this GitHub connection link is not valid: it was changed, or it was started in another browser session. Start again from the Runners page"
    )]
    Invalid,
    #[error("this GitHub connection link expired. Start again from the Runners page")]
    Expired,
}

/// Signs a `state` for `workspace_id`, bound to the session that asked for it, valid until
/// `now + STATE_LIFETIME`.
pub fn sign_state(
    key: &[u8],
    session_token: &str,
    workspace_id: Uuid,
    now: DateTime<Utc>,
) -> String {
    let nonce: [u8; 8] = rand::random();
    let payload = format!(
        "{}.{}.{}",
        workspace_id.simple(),
        (now + STATE_LIFETIME).timestamp(),
        hex::encode(nonce)
    );
    format!(
        "{payload}.{}",
        hex::encode(state_mac(key, session_token, &payload))
    )
}

/// The workspace a `state` was signed for, if it is authentic, unexpired and signed for this
/// session.
pub fn verify_state(
    key: &[u8],
    session_token: &str,
    state: &str,
    now: DateTime<Utc>,
) -> Result<Uuid, StateError> {
    let (payload, mac) = state.rsplit_once('.').ok_or(StateError::Invalid)?;
    let mac = hex::decode(mac).map_err(|_| StateError::Invalid)?;
    let mut expected = Hmac::<Sha256>::new_from_slice(key).map_err(|_| StateError::Invalid)?;
    expected.update(session_binding(session_token, payload).as_bytes());
    expected
        .verify_slice(&mac)
        .map_err(|_| StateError::Invalid)?;
    let mut parts = payload.split('.');
    let workspace_id = parts
        .next()
        .and_then(|w| Uuid::parse_str(w).ok())
        .ok_or(StateError::Invalid)?;
    let expires = parts
        .next()
        .and_then(|e| e.parse::<i64>().ok())
        .ok_or(StateError::Invalid)?;
    if now.timestamp() > expires {
        return Err(StateError::Expired);
    }
    Ok(workspace_id)
}

fn session_binding(session_token: &str, payload: &str) -> String {
    format!(
        "{payload}|{}",
        hex::encode(Sha256::digest(session_token.as_bytes()))
    )
}

fn state_mac(key: &[u8], session_token: &str, payload: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(session_binding(session_token, payload).as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// What GitHub sent back to the setup URL.
#[derive(Debug, Clone, Default)]
pub struct SetupReturn {
    pub installation_id: Option<i64>,
    pub setup_action: Option<String>,
    pub code: Option<String>,
    pub state: Option<String>,
}

/// How the setup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupOutcome {
    /// The installation is linked to the workspace.
    Linked {
        installation_id: i64,
        account: String,
    },
    /// An organization owner must approve the installation first.
    AwaitingApproval,
}

impl SetupError {
    /// A stable code for the kind of refusal, which the setup page words for the customer.
    pub fn code(&self) -> &'static str {
        match self {
            Self::State(StateError::Invalid) => "invalid_state",
            Self::State(StateError::Expired) => "expired",
            Self::MissingInstallation => "missing_installation",
            Self::MissingCode => "missing_code",
            Self::NotAllowed => "not_allowed",
            Self::NotYourInstallation(_) => "not_yours",
            Self::LinkedElsewhere(_) => "linked_elsewhere",
            Self::GitHub(error) => error.code(),
            Self::Database(_) => "internal",
        }
    }
}

/// Why the setup did not link anything.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("GitHub did not say which installation to link. Start again from the Runners page")]
    MissingInstallation,
    #[error(
        "GitHub did not send an authorization code, so Tenki cannot confirm who you are. Start again from the Runners page"
    )]
    MissingCode,
    #[error("only the workspace's owners and admins connect GitHub")]
    NotAllowed,
    #[error("your GitHub account cannot access installation {0}, so it was not linked")]
    NotYourInstallation(i64),
    #[error("installation {0} is already linked to another Tenki workspace; remove it there first")]
    LinkedElsewhere(i64),
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Deserialize)]
struct GitHubUser {
    login: String,
}

/// How long an installation request waits for an owner's approval before it is forgotten.
pub const REQUEST_LIFETIME: chrono::Duration = chrono::Duration::days(30);

/// When GitHub reports a new installation with its requester, links it to the workspace that
/// requester asked from (the newest unexpired request), unless it is linked already. Returns
/// the workspace it was linked to.
pub async fn link_requested_installation(
    tx: &mut sqlx::PgConnection,
    installation_id: i64,
    requester_login: &str,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, sqlx::Error> {
    let request = sqlx::query_scalar!(
        "DELETE FROM github_install_requests
         WHERE github_login = lower($1) AND workspace_id = (
             SELECT workspace_id FROM github_install_requests
             WHERE github_login = lower($1) AND requested_at > $2
             ORDER BY requested_at DESC LIMIT 1)
         RETURNING workspace_id",
        requester_login,
        now - REQUEST_LIFETIME,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(workspace_id) = request else {
        return Ok(None);
    };
    let linked = sqlx::query!(
        "UPDATE github_installations SET workspace_id = $2, updated_at = $3
         WHERE installation_id = $1 AND workspace_id IS NULL",
        installation_id,
        workspace_id,
        now,
    )
    .execute(&mut *tx)
    .await?;
    if linked.rows_affected() == 0 {
        return Ok(None);
    }
    crate::identity::grants::register_linked_account(tx, installation_id, workspace_id, now)
        .await?;
    Ok(Some(workspace_id))
}

/// An installation this workspace asked for that an organization owner has yet to approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    /// The GitHub user who asked (lower case).
    pub github_login: String,
    pub requested_at: DateTime<Utc>,
}

/// The workspace's installation requests still waiting for approval (not yet expired), newest
/// first. An approval links the installation and removes the request.
pub async fn pending_requests(
    db: &PgPool,
    workspace_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<PendingRequest>, sqlx::Error> {
    sqlx::query_as!(
        PendingRequest,
        "SELECT github_login, requested_at FROM github_install_requests
         WHERE workspace_id = $1 AND requested_at > $2
         ORDER BY requested_at DESC",
        workspace_id,
        now - REQUEST_LIFETIME,
    )
    .fetch_all(db)
    .await
}

#[derive(Debug, Deserialize)]
struct UserInstallations {
    installations: Vec<UserInstallation>,
}

#[derive(Debug, Deserialize)]
struct UserInstallation {
    id: i64,
    account: Option<UserInstallationAccount>,
    suspended_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct UserInstallationAccount {
    login: String,
    #[serde(rename = "type")]
    kind: String,
}

/// Finishes "Connect GitHub" for the signed-in session: checks the caller may (an owner or admin
/// of the workspace) and the state, then (for an install or an update) confirms with the user's
/// token that the user can access the installation, and links it to the state's workspace.
/// `caller` acts in their workspace, which the state must name.
#[tracing::instrument(skip_all, fields(workspace_id = %caller.member.workspace_id))]
pub async fn complete_setup(
    db: &PgPool,
    github: &GitHubApp,
    state_key: &[u8],
    session_token: &str,
    caller: &crate::workspaces::Caller,
    setup: &SetupReturn,
    now: DateTime<Utc>,
) -> Result<SetupOutcome, SetupError> {
    let member = &caller.member;
    if !member.role.may_manage() {
        return Err(SetupError::NotAllowed);
    }
    let workspace_id = member.workspace_id;
    let state = setup.state.as_deref().ok_or(StateError::Invalid)?;
    let signed_for = verify_state(state_key, session_token, state, now)?;
    if signed_for != workspace_id {
        return Err(StateError::Invalid.into());
    }
    if setup.setup_action.as_deref() == Some("request") {
        // With a code, remember who asked: the owner's approval then links the installation.
        if let Some(code) = setup.code.as_deref() {
            let user_token = github.exchange_code(code).await?;
            let user = github
                .as_user::<GitHubUser>(&user_token, Method::GET, "/user")
                .await?
                .items;
            sqlx::query!(
                "INSERT INTO github_install_requests (github_login, workspace_id, requested_at)
                 VALUES (lower($1), $2, $3)
                 ON CONFLICT (github_login, workspace_id) DO UPDATE SET requested_at = EXCLUDED.requested_at",
                user.login,
                workspace_id,
                now,
            )
            .execute(db)
            .await?;
        }
        return Ok(SetupOutcome::AwaitingApproval);
    }
    let installation_id = setup
        .installation_id
        .ok_or(SetupError::MissingInstallation)?;
    // One setup per installation at a time: the browser may ask twice at once (a double
    // submit, the back button), and GitHub's code can be exchanged only once. The second waits
    // here, then finds the installation linked. The lock ends with `guard`'s transaction.
    let mut guard = db.begin().await?;
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", installation_id)
        .execute(&mut *guard)
        .await?;
    // Coming back to this URL after a successful link must not fail on the spent code.
    if let Some(account) = linked_account(db, installation_id, workspace_id).await? {
        return Ok(SetupOutcome::Linked {
            installation_id,
            account,
        });
    }
    let code = setup.code.as_deref().ok_or(SetupError::MissingCode)?;
    let user_token = github.exchange_code(code).await?;
    let found = find_user_installation(github, &user_token, installation_id)
        .await?
        .ok_or(SetupError::NotYourInstallation(installation_id))?;
    let account = found.account.map(|a| (a.login, a.kind));
    let account = link_installation(
        db,
        installation_id,
        workspace_id,
        account
            .as_ref()
            .map(|(login, kind)| (login.as_str(), kind.as_str())),
        found.suspended_at.is_some(),
        now,
    )
    .await?;
    crate::workspaces::audit::record(
        &mut guard,
        caller,
        "github.connected",
        &format!("connected the GitHub account {account} (installation {installation_id})"),
        now,
    )
    .await?;
    guard.commit().await?;
    Ok(SetupOutcome::Linked {
        installation_id,
        account,
    })
}

/// Links an installation to a workspace, creating its row when its `installation.created`
/// delivery has not arrived yet (with `account`, its login and type, when known), and queues
/// copying its repositories. Linking it again to the same workspace changes nothing; an
/// installation linked to another workspace is refused. Returns the account's login.
#[tracing::instrument(skip(db, now))]
pub async fn link_installation(
    db: &PgPool,
    installation_id: i64,
    workspace_id: Uuid,
    account: Option<(&str, &str)>,
    suspended: bool,
    now: DateTime<Utc>,
) -> Result<String, SetupError> {
    link(
        db,
        installation_id,
        workspace_id,
        account,
        suspended,
        true,
        now,
    )
    .await
}

/// [`link_installation`] for an installation whose `installation.created` delivery was processed
/// already, with the repositories it listed: nothing to copy from GitHub (the sandbox's demo).
pub async fn link_delivered_installation(
    db: &PgPool,
    installation_id: i64,
    workspace_id: Uuid,
    now: DateTime<Utc>,
) -> Result<String, SetupError> {
    link(db, installation_id, workspace_id, None, false, false, now).await
}

async fn link(
    db: &PgPool,
    installation_id: i64,
    workspace_id: Uuid,
    account: Option<(&str, &str)>,
    suspended: bool,
    copy_repositories: bool,
    now: DateTime<Utc>,
) -> Result<String, SetupError> {
    let (login, kind) = account.unwrap_or_default();
    let state = if suspended { "suspended" } else { "active" };
    let mut tx = db.begin().await?;
    let linked = sqlx::query_scalar!(
        r#"INSERT INTO github_installations (installation_id, account_login, account_type, workspace_id, state, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (installation_id) DO UPDATE SET
               workspace_id = EXCLUDED.workspace_id,
               account_login = CASE WHEN github_installations.account_login = '' THEN EXCLUDED.account_login
                                    ELSE github_installations.account_login END,
               account_type = CASE WHEN github_installations.account_type = '' THEN EXCLUDED.account_type
                                   ELSE github_installations.account_type END,
               updated_at = EXCLUDED.updated_at
               WHERE github_installations.workspace_id IS NULL OR github_installations.workspace_id = EXCLUDED.workspace_id
           RETURNING account_login"#,
        installation_id,
        login,
        kind,
        workspace_id,
        state,
        now,
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(SetupError::LinkedElsewhere(installation_id))?;
    if copy_repositories {
        enqueue_repository_sync(&mut tx, installation_id).await?;
    }
    crate::identity::grants::register_linked_account(&mut tx, installation_id, workspace_id, now)
        .await?;
    tx.commit().await?;
    Ok(linked)
}

async fn linked_account(
    db: &PgPool,
    installation_id: i64,
    workspace_id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT account_login FROM github_installations WHERE installation_id = $1 AND workspace_id = $2",
        installation_id,
        workspace_id,
    )
    .fetch_optional(db)
    .await
}

/// Looks through the installations the user can access (all pages) for `installation_id`.
async fn find_user_installation(
    github: &GitHubApp,
    user_token: &secrecy::SecretString,
    installation_id: i64,
) -> Result<Option<UserInstallation>, GitHubError> {
    let mut path = Some("/user/installations?per_page=100".to_owned());
    // A user with more than 2,000 installations is not a case to loop over forever.
    for _ in 0..20 {
        let Some(current) = path.take() else { break };
        let page = github
            .as_user::<UserInstallations>(user_token, Method::GET, &current)
            .await?;
        if let Some(found) = page
            .items
            .installations
            .into_iter()
            .find(|i| i.id == installation_id)
        {
            return Ok(Some(found));
        }
        path = page.next;
    }
    Ok(None)
}

/// Enqueues copying the installation's repositories from GitHub, once per installation at a
/// time, in the caller's transaction.
pub async fn enqueue_repository_sync(
    tx: &mut sqlx::PgConnection,
    installation_id: i64,
) -> Result<(), sqlx::Error> {
    let job_key = format!("github-repositories:{installation_id}");
    crate::queue::enqueue(
        tx,
        crate::queue::NewJob {
            task: SYNC_REPOSITORIES_TASK,
            payload: serde_json::json!({ "installation_id": installation_id }),
            job_key: Some(&job_key),
            max_attempts: 10,
            run_at: None,
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
struct InstallationRepositories {
    repositories: Vec<crate::github::events::Repository>,
}

/// Copies the installation's repositories from GitHub (as the installation): new ones are
/// added, ones GitHub no longer lists are marked removed.
#[tracing::instrument(skip(db, github, now))]
pub async fn sync_repositories(
    db: &PgPool,
    github: &GitHubApp,
    installation_id: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
    use anyhow::Context as _;
    let mut repositories = Vec::new();
    let mut path = Some("/installation/repositories?per_page=100".to_owned());
    for _ in 0..50 {
        let Some(current) = path.take() else { break };
        let page = github
            .as_installation::<InstallationRepositories>(
                installation_id,
                Method::GET,
                &current,
                None::<&()>,
            )
            .await
            .with_context(|| {
                format!("listing the repositories of installation {installation_id}")
            })?;
        repositories.extend(page.items.repositories);
        path = page.next;
    }
    let ids: Vec<i64> = repositories.iter().map(|r| r.id).collect();
    let mut tx = db.begin().await?;
    crate::github::events::upsert_repositories(&mut tx, installation_id, &repositories, false, now)
        .await?;
    sqlx::query!(
        "UPDATE github_repositories SET removed = true, updated_at = $3
         WHERE installation_id = $1 AND NOT (repository_id = ANY($2)) AND NOT removed",
        installation_id,
        &ids,
        now,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(repositories.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"state signing key";

    #[test]
    fn a_state_verifies_for_its_session_until_it_expires() {
        let now = Utc::now();
        let workspace = Uuid::new_v4();
        let state = sign_state(KEY, "session-a", workspace, now);
        assert_eq!(verify_state(KEY, "session-a", &state, now), Ok(workspace));
        assert_eq!(
            verify_state(
                KEY,
                "session-a",
                &state,
                now + STATE_LIFETIME + chrono::Duration::seconds(1)
            ),
            Err(StateError::Expired)
        );
        assert_eq!(
            verify_state(KEY, "session-b", &state, now),
            Err(StateError::Invalid)
        );
        assert_eq!(
            verify_state(b"other key", "session-a", &state, now),
            Err(StateError::Invalid)
        );
    }

    #[test]
    fn a_tampered_state_is_refused() {
        let now = Utc::now();
        let state = sign_state(KEY, "session", Uuid::new_v4(), now);
        let other = Uuid::new_v4().simple().to_string();
        let (_, rest) = state.split_once('.').expect("dotted");
        let forged = format!("{other}.{rest}");
        assert_eq!(
            verify_state(KEY, "session", &forged, now),
            Err(StateError::Invalid)
        );
        // Pushing the expiry out breaks the signature too.
        let parts: Vec<&str> = state.split('.').collect();
        let later = format!(
            "{}.{}.{}.{}",
            parts[0],
            parts[1].parse::<i64>().expect("n") + 3600,
            parts[2],
            parts[3]
        );
        assert_eq!(
            verify_state(KEY, "session", &later, now),
            Err(StateError::Invalid)
        );
        assert_eq!(
            verify_state(KEY, "session", "garbage", now),
            Err(StateError::Invalid)
        );
    }
}
