//! Workspaces and who belongs to them: every read and write is scoped to a workspace the caller
//! is a member of (SPEC §1).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ledger::{self, Ledger, LedgerError};
use crate::money::convert;
use crate::usage;

pub mod audit;
pub mod members;

/// What a member may do in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role {
    /// Created the workspace; everything.
    Owner,
    /// Changes billing, add-ons and runner settings.
    Admin,
    /// Sees usage.
    Member,
}

impl Role {
    /// Whether this role changes what costs money or runs code for the workspace: billing,
    /// add-ons, runner settings, GitHub connections and members (SPEC §1). Owners and admins do;
    /// members read.
    pub fn may_manage(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }

    fn from_db(role: &str) -> Self {
        match role {
            "owner" => Self::Owner,
            "admin" => Self::Admin,
            _ => Self::Member,
        }
    }
}

/// A workspace as one of its members sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub role: Role,
}

/// The figures on the Overview page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    pub workspace_name: String,
    /// Free minutes left (2-vCPU minutes), rounded down.
    pub free_minutes_left: u64,
    /// Free minutes granted so far.
    pub free_minutes_granted: u64,
    /// Why the workspace got no free minutes, when its grant was refused
    /// ([`crate::identity::grants`]).
    pub free_grant_refusal: Option<String>,
    /// Micro-cents charged this calendar month (UTC) so far.
    pub month_to_date_amount: i64,
    /// Jobs not finished, by what they are doing in the customer's words ("running",
    /// "starting", "waiting for a slot", "blocked: macOS needs the macOS add-on"), most first.
    pub jobs_now: Vec<(String, i64)>,
    /// How far the workspace is in getting its first job onto Tenki.
    pub getting_started: GettingStarted,
}

/// The steps from a new workspace to its first job on Tenki, each done or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GettingStarted {
    /// An installation of the GitHub App is linked to the workspace.
    pub github_connected: bool,
    /// GitHub sent a job with a Tenki label (a workflow points `runs-on:` at Tenki).
    pub first_job_sent: bool,
    /// A job finished on Tenki and was metered.
    pub first_job_ran: bool,
}

/// Why the overview could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OverviewError {
    #[error(transparent)]
    OutOfRange(#[from] crate::money::OutOfRange),
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("ledger")]
    Ledger(#[from] LedgerError),
}

/// Every workspace the person belongs to, oldest membership first.
pub async fn memberships(db: &PgPool, user_id: Uuid) -> Result<Vec<Membership>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT w.id, w.name, m.role
         FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id
         WHERE m.user_id = $1
         ORDER BY m.joined_at, w.id",
        user_id,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Membership {
            workspace_id: row.id,
            workspace_name: row.name,
            role: Role::from_db(&row.role),
        })
        .collect())
}

/// The person's membership of one workspace, or `None` when they do not belong to it.
pub async fn membership(
    db: &PgPool,
    user_id: Uuid,
    workspace_id: Uuid,
) -> Result<Option<Membership>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT w.id, w.name, m.role
         FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id
         WHERE m.user_id = $1 AND m.workspace_id = $2",
        user_id,
        workspace_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| Membership {
        workspace_id: row.id,
        workspace_name: row.name,
        role: Role::from_db(&row.role),
    }))
}

/// The Overview figures of a workspace the caller is a member of (see [`membership`]).
pub async fn overview(
    db: &PgPool,
    ledger: &Ledger,
    member: &Membership,
    now: DateTime<Utc>,
) -> Result<Overview, OverviewError> {
    // What a grant taken back had left is not counted as granted.
    let granted = sqlx::query_scalar!(
        r#"SELECT coalesce(sum(vcpu_minutes - coalesce(withdrawn_vcpu_minutes, 0)), 0)::bigint
                  AS "vcpu_minutes!"
           FROM free_minute_grants WHERE workspace_id = $1"#,
        member.workspace_id,
    )
    .fetch_one(db)
    .await?;
    let left = ledger.free_vcpu_minutes_left(member.workspace_id).await?;
    let month_to_date_amount = usage::month_to_date_amount(db, member.workspace_id, now).await?;
    let per_minute = ledger::VCPUS_PER_FREE_MINUTE;
    // The place in line is per job: the Overview counts jobs per reason without it.
    let jobs_now: Vec<(String, i64)> = sqlx::query_as(
        r"SELECT CASE WHEN j.status = 'in_progress' THEN 'running'
                     WHEN j.admission = 'admitted' THEN 'starting'
                     ELSE coalesce(regexp_replace(j.admission_reason, ' \(\d+\w+ in line\)$', ''), 'queued')
                END AS what, count(*)
         FROM github_jobs j JOIN github_installations i ON i.installation_id = j.installation_id
         WHERE i.workspace_id = $1 AND j.status IN ('waiting', 'queued', 'in_progress')
         GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    .bind(member.workspace_id)
    .fetch_all(db)
    .await?;
    let getting_started = sqlx::query!(
        r#"SELECT
             EXISTS (SELECT 1 FROM github_installations
                     WHERE workspace_id = $1 AND state <> 'deleted') AS "github_connected!",
             EXISTS (SELECT 1 FROM github_jobs j
                     JOIN github_installations i ON i.installation_id = j.installation_id
                     WHERE i.workspace_id = $1) AS "first_job_sent!",
             EXISTS (SELECT 1 FROM usage_daily WHERE workspace_id = $1) AS "first_job_ran!",
             (SELECT free_grant_refusal FROM workspaces WHERE id = $1) AS free_grant_refusal"#,
        member.workspace_id,
    )
    .fetch_one(db)
    .await?;
    Ok(Overview {
        getting_started: GettingStarted {
            github_connected: getting_started.github_connected,
            first_job_sent: getting_started.first_job_sent,
            first_job_ran: getting_started.first_job_ran,
        },
        jobs_now,
        workspace_name: member.workspace_name.clone(),
        free_minutes_left: convert::<u64, _>(left, || "free minutes left".to_owned())? / per_minute,
        free_minutes_granted: convert::<u64, _>(granted, || "free minutes granted".to_owned())?
            / per_minute,
        free_grant_refusal: getting_started.free_grant_refusal,
        month_to_date_amount,
    })
}

/// The cookie naming the workspace a person of several switched to last.
pub const WORKSPACE_COOKIE: &str = "tenki_workspace";

/// The workspace the person switched to, among the `Cookie` header values of a request.
pub fn preferred_workspace_from_cookies<'a>(
    cookie_headers: impl IntoIterator<Item = &'a str>,
) -> Option<Uuid> {
    crate::identity::cookie_value(cookie_headers, WORKSPACE_COOKIE)?
        .parse()
        .ok()
}

/// A signed-in person and the workspace they act in.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: crate::identity::SessionUser,
    pub member: Membership,
}

/// Why the caller of a request could not be named.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("Kratos asks for a second factor")]
    SecondFactorRequired,
    #[error("looking up the session")]
    Lookup(#[from] crate::identity::provider::LookupError),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// The signed-in caller of a request and the session they called with.
#[derive(Debug, Clone)]
pub struct SignedInCaller {
    pub caller: Caller,
    /// Identifies the session (see [`crate::identity::SessionLookup`]).
    pub session_key: String,
}

/// The caller a request's cookies name, through the identity provider: the person and the
/// workspace they act in, the one they switched to last (its cookie) when they are still a
/// member of it, else their first. `None` without a valid session, or for a person without a
/// workspace.
pub async fn caller_of_request<'a>(
    db: &PgPool,
    ledger: &Ledger,
    identity: &crate::identity::IdentityProvider,
    cookie_headers: impl IntoIterator<Item = &'a str> + Clone,
    now: DateTime<Utc>,
) -> Result<Option<SignedInCaller>, CallerError> {
    use crate::identity::SessionLookup;

    let (user, session_key) = match identity
        .session(db, ledger, cookie_headers.clone(), now)
        .await?
    {
        SessionLookup::SignedIn { user, session_key } => (user, session_key),
        SessionLookup::SignedOut => return Ok(None),
        SessionLookup::SecondFactorRequired => return Err(CallerError::SecondFactorRequired),
    };
    let preferred = preferred_workspace_from_cookies(cookie_headers);
    let all = memberships(db, user.user_id).await?;
    let member = preferred
        .and_then(|id| all.iter().find(|m| m.workspace_id == id).cloned())
        .or_else(|| all.into_iter().next());
    Ok(member.map(|member| SignedInCaller {
        caller: Caller { user, member },
        session_key,
    }))
}

/// Why a workspace was not renamed. Nothing changes in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum RenameError {
    #[error("Only the workspace's owners and admins rename it.")]
    NotAllowed,
    #[error(transparent)]
    Invalid(#[from] crate::identity::FieldError),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// Renames the caller's workspace (owners and admins), with a line in its audit log.
pub async fn rename(
    db: &PgPool,
    caller: &Caller,
    name: &str,
    now: DateTime<Utc>,
) -> Result<(), RenameError> {
    if !caller.member.role.may_manage() {
        return Err(RenameError::NotAllowed);
    }
    let name = crate::identity::WorkspaceName::parse(name)?;
    let mut tx = db.begin().await?;
    let before: String = sqlx::query_scalar("SELECT name FROM workspaces WHERE id = $1 FOR UPDATE")
        .bind(caller.member.workspace_id)
        .fetch_one(&mut *tx)
        .await?;
    if before == name.as_str() {
        return Ok(());
    }
    sqlx::query("UPDATE workspaces SET name = $2 WHERE id = $1")
        .bind(caller.member.workspace_id)
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        caller,
        "workspace.renamed",
        &format!("renamed the workspace from {before} to {}", name.as_str()),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Creates a workspace owned by `owner`, in the transaction that creates the person or their
/// sign-up. Its ledger accounts are opened by the caller, before the commit.
pub async fn create_owned(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    owner: Uuid,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Uuid, sqlx::Error> {
    let workspace_id = Uuid::new_v4();
    let accounts = ledger::WorkspaceAccounts::of(workspace_id);
    sqlx::query!(
        "INSERT INTO workspaces (id, name, money_account_id, free_minutes_account_id, created_at)
         VALUES ($1, $2, $3, $4, $5)",
        workspace_id,
        name,
        Uuid::from_u128(accounts.money),
        Uuid::from_u128(accounts.free_minutes),
        now,
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query!(
        "INSERT INTO workspace_members (workspace_id, user_id, role, joined_at)
         VALUES ($1, $2, 'owner', $3)",
        workspace_id,
        owner,
        now,
    )
    .execute(&mut **tx)
    .await?;
    Ok(workspace_id)
}

/// The first workspace of the person with this e-mail (compared without case), if any.
pub async fn first_workspace_of_email(
    db: &PgPool,
    email: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT m.workspace_id FROM users u JOIN workspace_members m ON m.user_id = u.id
         WHERE u.email_normalized = lower(trim($1))
         ORDER BY m.joined_at LIMIT 1",
        email,
    )
    .fetch_optional(db)
    .await
}
