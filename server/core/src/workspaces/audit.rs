//! The audit log: who changed what in a workspace, and when. Every change owners and admins make
//! (members, GitHub connections, cards, add-ons, slots, the spending limit) records one event in
//! the transaction of the change, so a change is never without its record nor a record without
//! its change; operators' changes are in `admin_audit` and `ledger_adjustments` with their reason.
//! Owners and admins read them all, merged, on Settings.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Caller, Role};

/// Events shown per page.
pub const PAGE: i64 = 100;

/// One event as the Audit log shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    /// The person's e-mail at the time, or "Tenki operator" / "GitHub" / "Stripe".
    pub actor: String,
    /// What kind of change, e.g. `member.role_changed`.
    pub action: String,
    /// The change in words: "made bob@example.com an admin".
    pub detail: String,
}

/// Why the log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("only owners and admins read the audit log")]
    NotAllowed,
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// Records that `caller` did `action` (`detail` in words) in their workspace at `now`.
pub async fn record(
    conn: &mut sqlx::PgConnection,
    caller: &Caller,
    action: &str,
    detail: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    record_by(
        conn,
        caller.member.workspace_id,
        Some(caller.user.user_id),
        &caller.user.email,
        action,
        detail,
        now,
    )
    .await
}

/// Records an event by someone who is not a signed-in member: `actor` names them ("Tenki
/// operator").
pub async fn record_by(
    conn: &mut sqlx::PgConnection,
    workspace_id: Uuid,
    actor_id: Option<Uuid>,
    actor: &str,
    action: &str,
    detail: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_events (workspace_id, actor_id, actor, action, detail, at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(workspace_id)
    .bind(actor_id)
    .bind(actor)
    .bind(action)
    .bind(detail)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The caller's workspace's newest [`PAGE`] events, newest first. Owners and admins only.
pub async fn newest(db: &PgPool, caller: &Caller) -> Result<Vec<AuditEvent>, AuditError> {
    if caller.member.role == Role::Member {
        return Err(AuditError::NotAllowed);
    }
    // Operators' changes (`tenki admin …`) are kept, with their reason, in `admin_audit` (prices,
    // discounts, annual prepayments) and `ledger_adjustments` (reversals, promotional credit).
    Ok(sqlx::query_as(
        "SELECT at, actor, action, detail FROM (
             SELECT at, actor, action, detail, id AS tie FROM audit_events WHERE workspace_id = $1
             UNION ALL
             SELECT at, 'Tenki support (' || admin_email || ')', 'admin.' || action,
                    detail || ' (reason: ' || reason || ')', 0
             FROM admin_audit WHERE workspace_id = $1
             UNION ALL
             SELECT created_at, 'Tenki support (' || admin_email || ')', 'admin.' || kind,
                    CASE kind WHEN 'usage_reversal' THEN 'reversed the usage of job ' || job_key
                              WHEN 'promo_credit' THEN 'added promotional credit'
                              ELSE 'deducted promotional credit' END
                    || ': $' || to_char(amount / 100000000.0, 'FM999999999990.00')
                    || ' (reason: ' || reason || ')', 0
             FROM ledger_adjustments WHERE workspace_id = $1
         ) events
         ORDER BY at DESC, tie DESC LIMIT $2",
    )
    .bind(caller.member.workspace_id)
    .bind(PAGE)
    .fetch_all(db)
    .await?)
}
