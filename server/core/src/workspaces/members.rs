//! Who belongs to a workspace and with which role (SPEC §1): invitations by a secret, expiring
//! link, role changes, removal and leaving. Owners and admins change members; only an owner makes
//! or unmakes owners; a workspace always keeps at least one owner, even when two changes race
//! (each change locks the workspace's member rows first).

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Caller, Membership, Role};

/// How long an invitation link can be used.
pub const INVITATION_LIFETIME: Duration = Duration::days(7);

/// A member as the Members list shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

/// An invitation just made: the token goes into the link sent to the person and is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub token: String,
    pub email: String,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
}

/// Why a change of members was refused, in words for the page.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("Only the workspace's owners and admins change its members.")]
    NotAllowed,
    #[error("Only an owner makes someone an owner or changes an owner.")]
    OwnersOnly,
    #[error("A workspace keeps at least one owner: make someone else an owner first.")]
    LastOwner,
    #[error("That person is not a member of this workspace.")]
    NotAMember,
    #[error("{0}")]
    InvalidEmail(String),
    #[error("{0} is a member already.")]
    AlreadyMember(String),
    #[error("This invitation link is not valid. Ask for a new one.")]
    UnknownInvitation,
    #[error("This invitation has expired. Ask for a new one.")]
    ExpiredInvitation,
    #[error("This invitation was used already.")]
    UsedInvitation,
    #[error("This invitation is for {0}. Sign in with that e-mail to accept it.")]
    SomeoneElsesInvitation(String),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

impl MemberError {
    /// A stable code for the page's address (`?error=…`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAllowed => "not_allowed",
            Self::OwnersOnly => "owners_only",
            Self::LastOwner => "last_owner",
            Self::NotAMember => "not_a_member",
            Self::InvalidEmail(_) => "invalid_email",
            Self::AlreadyMember(_) => "already_member",
            Self::UnknownInvitation => "unknown_invitation",
            Self::ExpiredInvitation => "expired_invitation",
            Self::UsedInvitation => "used_invitation",
            Self::SomeoneElsesInvitation(_) => "someone_elses_invitation",
            Self::Database(_) => "internal",
        }
    }
}

impl Role {
    /// The role as stored and as forms send it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// `owner`, `admin` or `member`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "owner" => Some(Self::Owner),
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// The workspace's members, owners first, then by when they joined.
pub async fn list(db: &PgPool, workspace_id: Uuid) -> Result<Vec<Member>, sqlx::Error> {
    let rows: Vec<(Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT u.id, u.email, m.role, m.joined_at
         FROM workspace_members m JOIN users u ON u.id = m.user_id
         WHERE m.workspace_id = $1
         ORDER BY array_position(ARRAY['owner', 'admin', 'member'], m.role), m.joined_at, u.id",
    )
    .bind(workspace_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, email, role, joined_at)| Member {
            user_id,
            email,
            role: Role::from_db(&role),
            joined_at,
        })
        .collect())
}

/// Invites `email` into the caller's workspace as `role`. Owners and admins invite; only an
/// owner invites an owner.
pub async fn invite(
    db: &PgPool,
    caller: &Caller,
    email: &str,
    role: Role,
    now: DateTime<Utc>,
) -> Result<Invitation, MemberError> {
    may_change(caller.member.role, role, role)?;
    let email = crate::identity::Email::parse(email)
        .map_err(|field| MemberError::InvalidEmail(field.message))?;
    let already: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM workspace_members m JOIN users u ON u.id = m.user_id
                        WHERE m.workspace_id = $1 AND u.email_normalized = $2)",
    )
    .bind(caller.member.workspace_id)
    .bind(email.normalized())
    .fetch_one(db)
    .await?;
    if already {
        return Err(MemberError::AlreadyMember(email.as_str().to_owned()));
    }
    let token = crate::identity::new_secret_token();
    let expires_at = now + INVITATION_LIFETIME;
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO workspace_invitations (token_hash, workspace_id, email_normalized, role,
             invited_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(crate::identity::token_hash(&token).as_slice())
    .bind(caller.member.workspace_id)
    .bind(email.normalized())
    .bind(role.as_str())
    .bind(caller.user.user_id)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    crate::billing::mail::queue_email(
        &mut tx,
        email.as_str(),
        &format!(
            "{} invited you to {} on Tenki",
            caller.user.email, caller.member.workspace_name
        ),
        &format!(
            "{} invited you to the Tenki workspace {} as {}. Open this link to join; it works once, for {} days, for {}.",
            caller.user.email,
            caller.member.workspace_name,
            role.as_str(),
            INVITATION_LIFETIME.num_days(),
            email.as_str(),
        ),
        &format!("/join?token={token}"),
        now,
    )
    .await?;
    crate::workspaces::audit::record(
        &mut tx,
        caller,
        "member.invited",
        &format!("invited {} as {}", email.as_str(), role.as_str()),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Invitation {
        token,
        email: email.as_str().to_owned(),
        role,
        expires_at,
    })
}

#[derive(sqlx::FromRow)]
struct StoredInvitation {
    workspace_id: Uuid,
    email_normalized: String,
    role: String,
    expires_at: DateTime<Utc>,
    accepted_at: Option<DateTime<Utc>>,
}

/// The signed-in `user` accepts the invitation `token`: they become a member of its workspace
/// with its role. Only the person invited (the same e-mail), once, before it expires.
pub async fn accept(
    db: &PgPool,
    user: &crate::identity::SessionUser,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Membership, MemberError> {
    let mut tx = db.begin().await?;
    let invitation: Option<StoredInvitation> = sqlx::query_as(
        "SELECT workspace_id, email_normalized, role, expires_at, accepted_at
         FROM workspace_invitations WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(crate::identity::token_hash(token.trim()).as_slice())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(StoredInvitation {
        workspace_id,
        email_normalized: email,
        role,
        expires_at,
        accepted_at,
    }) = invitation
    else {
        return Err(MemberError::UnknownInvitation);
    };
    if accepted_at.is_some() {
        return Err(MemberError::UsedInvitation);
    }
    if expires_at <= now {
        return Err(MemberError::ExpiredInvitation);
    }
    if user.email.trim().to_lowercase() != email {
        return Err(MemberError::SomeoneElsesInvitation(email));
    }
    // Already a member (invited twice): keeps the role they have.
    sqlx::query(
        "INSERT INTO workspace_members (workspace_id, user_id, role, joined_at)
         VALUES ($1, $2, $3, $4) ON CONFLICT (workspace_id, user_id) DO NOTHING",
    )
    .bind(workspace_id)
    .bind(user.user_id)
    .bind(&role)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE workspace_invitations SET accepted_at = $2 WHERE token_hash = $1")
        .bind(crate::identity::token_hash(token.trim()).as_slice())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    super::audit::record_by(
        &mut tx,
        workspace_id,
        Some(user.user_id),
        &user.email,
        "member.joined",
        &format!("accepted the invitation and joined as {role}"),
        now,
    )
    .await?;
    tx.commit().await?;
    super::membership(db, user.user_id, workspace_id)
        .await?
        .ok_or(MemberError::NotAMember)
}

/// Gives member `user_id` of the caller's workspace the role `role`.
pub async fn change_role(
    db: &PgPool,
    caller: &Caller,
    user_id: Uuid,
    role: Role,
    now: DateTime<Utc>,
) -> Result<(), MemberError> {
    let mut tx = db.begin().await?;
    let roles = lock_members(&mut tx, caller.member.workspace_id).await?;
    // The caller's role as it is now, not as it was when their request began.
    let acting = role_of(&roles, caller.user.user_id).map_err(|_| MemberError::NotAllowed)?;
    let current = role_of(&roles, user_id)?;
    may_change(acting, current, role)?;
    if current == Role::Owner && role != Role::Owner && owners(&roles) == 1 {
        return Err(MemberError::LastOwner);
    }
    sqlx::query("UPDATE workspace_members SET role = $3 WHERE workspace_id = $1 AND user_id = $2")
        .bind(caller.member.workspace_id)
        .bind(user_id)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
    if current != role {
        let whom = email_of(&mut tx, user_id).await?;
        super::audit::record(
            &mut tx,
            caller,
            "member.role_changed",
            &format!(
                "changed {whom} from {} to {}",
                current.as_str(),
                role.as_str()
            ),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn email_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user_id: Uuid,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&mut **tx)
        .await
}

/// Removes member `user_id` from the caller's workspace; removing oneself is leaving, which
/// every role may do, unless they are its last owner.
pub async fn remove(
    db: &PgPool,
    caller: &Caller,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), MemberError> {
    let mut tx = db.begin().await?;
    let roles = lock_members(&mut tx, caller.member.workspace_id).await?;
    let acting = role_of(&roles, caller.user.user_id).map_err(|_| MemberError::NotAllowed)?;
    let current = role_of(&roles, user_id)?;
    if user_id != caller.user.user_id {
        may_change(acting, current, current)?;
    }
    if current == Role::Owner && owners(&roles) == 1 {
        return Err(MemberError::LastOwner);
    }
    sqlx::query("DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id = $2")
        .bind(caller.member.workspace_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let (action, detail) = if user_id == caller.user.user_id {
        (
            "member.left",
            format!("left the workspace ({})", current.as_str()),
        )
    } else {
        let whom = email_of(&mut tx, user_id).await?;
        (
            "member.removed",
            format!("removed {whom} ({})", current.as_str()),
        )
    };
    super::audit::record(&mut tx, caller, action, &detail, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Owners and admins (`acting`) change members; a change that makes or touches an owner is an
/// owner's.
fn may_change(acting: Role, from: Role, to: Role) -> Result<(), MemberError> {
    if !acting.may_manage() {
        return Err(MemberError::NotAllowed);
    }
    if (from == Role::Owner || to == Role::Owner) && acting != Role::Owner {
        return Err(MemberError::OwnersOnly);
    }
    Ok(())
}

/// Every member's role, with their rows locked until `tx` ends: two changes of one workspace's
/// members run one after the other, so neither can remove its last owner behind the other.
async fn lock_members(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    workspace_id: Uuid,
) -> Result<Vec<(Uuid, Role)>, sqlx::Error> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT user_id, role FROM workspace_members WHERE workspace_id = $1
         ORDER BY user_id FOR UPDATE",
    )
    .bind(workspace_id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, role)| (user_id, Role::from_db(&role)))
        .collect())
}

fn role_of(roles: &[(Uuid, Role)], user_id: Uuid) -> Result<Role, MemberError> {
    roles
        .iter()
        .find(|(id, _)| *id == user_id)
        .map(|(_, role)| *role)
        .ok_or(MemberError::NotAMember)
}

fn owners(roles: &[(Uuid, Role)]) -> usize {
    roles
        .iter()
        .filter(|(_, role)| *role == Role::Owner)
        .count()
}
