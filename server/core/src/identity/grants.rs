//! The free-grant registry (SPEC §7): 1,000 free minutes once per verified identity.
//!
//! A workspace gets its grant when it has an owner with a verified e-mail. Every identity the
//! grant stands on is a key registered once, to the workspace whose grant it made: the owner's
//! normalized e-mail (lower case, `+tag` removed, Gmail's dots removed), the GitHub account of each
//! installation linked at that moment, and the card's fingerprint when a card is what unlocked it.
//! A key already registered to another workspace means no grant, and the Overview says which
//! identity already had one. Addresses of throwaway e-mail services (mailchecker's list) get their
//! grant once a card is added, keyed by that card. Keys are registered in the grant's transaction,
//! under the key's primary key, so two servers racing cannot grant one identity twice; the ledger
//! transfer's id is derived from the workspace and key, so a retried grant posts nothing twice.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ledger::{self, Ledger, LedgerError};

/// Why a grant could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    OutOfRange(#[from] crate::money::OutOfRange),
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("ledger")]
    Ledger(#[from] LedgerError),
}

/// What deciding a workspace's grant did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantOutcome {
    /// The free minutes were granted now.
    Granted,
    /// The workspace had its grant already.
    AlreadyGranted,
    /// No owner has verified their e-mail yet.
    WaitingForVerifiedOwner,
    /// No grant, for the reason given (shown on the Overview).
    Refused(String),
}

/// The grant key of a normalized e-mail: mailboxes that receive the same mail share it
/// (`Ada.Lovelace+ci@Gmail.com` and `adalovelace@googlemail.com` are one Gmail mailbox).
pub fn email_grant_key(email_normalized: &str) -> String {
    let lower = email_normalized.trim().to_lowercase();
    let (local, domain) = lower.rsplit_once('@').unwrap_or((lower.as_str(), ""));
    let local = local.split('+').next().unwrap_or(local);
    match domain {
        "gmail.com" | "googlemail.com" => format!("email:{}@gmail.com", local.replace('.', "")),
        _ => format!("email:{local}@{domain}"),
    }
}

/// Whether `email` belongs to a throwaway (disposable) e-mail service.
pub fn is_throwaway(email: &str) -> bool {
    !mailchecker::is_valid(email)
}

/// The sentence the Overview shows for a refused grant, by the kind of key already used.
fn refusal(kind: &str) -> String {
    match kind {
        "email" => "Free minutes were already granted to this e-mail address in another workspace.",
        "github_account" => {
            "Free minutes were already granted to this GitHub organization in another workspace."
        }
        "card" => "Free minutes were already granted to this card in another workspace.",
        _ => "Free minutes were already granted to this identity in another workspace.",
    }
    .to_owned()
}

/// The message for an owner whose address is a throwaway one.
pub const THROWAWAY_REFUSAL: &str =
    "Sign-ups with a throwaway e-mail address get their 1,000 free minutes once a card is added.";

/// Grants workspace `workspace_id` its free minutes if it has a verified owner and none of its
/// keys made a grant before; otherwise records why not. Safe to repeat and to run concurrently
/// (the workspace row is locked; a key is registered once).
pub async fn decide(
    db: &PgPool,
    ledger: &Ledger,
    workspace_id: Uuid,
    now: DateTime<Utc>,
) -> Result<GrantOutcome, GrantError> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT id FROM workspaces WHERE id = $1 FOR UPDATE")
        .bind(workspace_id)
        .execute(&mut *tx)
        .await?;
    let granted: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM free_minute_grants WHERE workspace_id = $1)",
    )
    .bind(workspace_id)
    .fetch_one(&mut *tx)
    .await?;
    if granted {
        return Ok(GrantOutcome::AlreadyGranted);
    }
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT u.email_normalized FROM workspace_members m JOIN users u ON u.id = m.user_id
         WHERE m.workspace_id = $1 AND m.role = 'owner' AND u.email_verified_at IS NOT NULL
         ORDER BY m.joined_at LIMIT 1",
    )
    .bind(workspace_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(email) = owner else {
        return Ok(GrantOutcome::WaitingForVerifiedOwner);
    };
    let card: Option<String> = sqlx::query_scalar(
        "SELECT fingerprint FROM cards
         WHERE workspace_id = $1 AND removed_at IS NULL AND fingerprint IS NOT NULL
         ORDER BY added_at LIMIT 1",
    )
    .bind(workspace_id)
    .fetch_optional(&mut *tx)
    .await?;
    let email_key = email_grant_key(&email);
    let card_key = card.map(|fingerprint| format!("card:{fingerprint}"));
    let primary = if is_throwaway(&email) {
        match &card_key {
            Some(key) => key.clone(),
            None => {
                tx.rollback().await?;
                return record_refusal(db, workspace_id, THROWAWAY_REFUSAL).await;
            }
        }
    } else {
        email_key.clone()
    };
    let mut keys = vec![(email_key, "email")];
    let accounts: Vec<(Option<i64>, String)> = sqlx::query_as(
        "SELECT account_id, lower(account_login) FROM github_installations
         WHERE workspace_id = $1 AND state <> 'deleted'
           AND (account_id IS NOT NULL OR account_login <> '')
         ORDER BY installation_id",
    )
    .bind(workspace_id)
    .fetch_all(&mut *tx)
    .await?;
    for (id, login) in accounts {
        let key = match id {
            Some(id) => format!("github:{id}"),
            None => format!("github-login:{login}"),
        };
        keys.push((key, "github_account"));
    }
    if let Some(key) = card_key {
        keys.push((key, "card"));
    }
    for (key, kind) in &keys {
        // Waits for a concurrent registration of the same key to commit or roll back; one that
        // committed meanwhile is not in this statement's snapshot (no row: held by another).
        let holder: Option<Uuid> = sqlx::query_scalar(
            "WITH registered AS (
                 INSERT INTO free_grant_keys (key, kind, workspace_id, registered_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING RETURNING workspace_id)
             SELECT workspace_id FROM registered
             UNION ALL SELECT workspace_id FROM free_grant_keys WHERE key = $1
             LIMIT 1",
        )
        .bind(key)
        .bind(kind)
        .bind(workspace_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if holder != Some(workspace_id) {
            tx.rollback().await?;
            tracing::info!(%workspace_id, kind, "free minutes refused: identity granted before");
            return record_refusal(db, workspace_id, &refusal(kind)).await;
        }
    }
    let transfer_id = ledger::free_grant_transfer_id(workspace_id, &primary);
    sqlx::query(
        "INSERT INTO free_minute_grants (workspace_id, transfer_id, vcpu_minutes, granted_at, grant_key)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(workspace_id)
    .bind(Uuid::from_u128(transfer_id))
    .bind(crate::money::convert::<i64, u64>(
        ledger::SIGN_UP_FREE_MINUTES * ledger::VCPUS_PER_FREE_MINUTE,
        || "the free-minute grant".to_owned(),
    )?)
    .bind(now)
    .bind(&primary)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE workspaces SET free_grant_refusal = NULL WHERE id = $1")
        .bind(workspace_id)
        .execute(&mut *tx)
        .await?;
    // The ledger before the commit: if the commit fails, deciding again posts the same transfer
    // id (a no-op) and commits; reconcile reports the grant in between.
    ledger.grant_free_minutes(workspace_id, transfer_id).await?;
    tx.commit().await?;
    tracing::info!(%workspace_id, "free minutes granted");
    Ok(GrantOutcome::Granted)
}

async fn record_refusal(
    db: &PgPool,
    workspace_id: Uuid,
    reason: &str,
) -> Result<GrantOutcome, GrantError> {
    sqlx::query("UPDATE workspaces SET free_grant_refusal = $2 WHERE id = $1")
        .bind(workspace_id)
        .bind(reason)
        .execute(db)
        .await?;
    Ok(GrantOutcome::Refused(reason.to_owned()))
}

/// Decides the grant of every workspace `user_id` owns (after they verified their e-mail).
pub async fn decide_for_owner(
    db: &PgPool,
    ledger: &Ledger,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<(Uuid, GrantOutcome)>, GrantError> {
    let owned: Vec<Uuid> = sqlx::query_scalar(
        "SELECT workspace_id FROM workspace_members WHERE user_id = $1 AND role = 'owner'
         ORDER BY joined_at",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    let mut outcomes = Vec::with_capacity(owned.len());
    for workspace_id in owned {
        outcomes.push((workspace_id, decide(db, ledger, workspace_id, now).await?));
    }
    Ok(outcomes)
}

/// Registers the GitHub account of an installation just linked to a workspace that has its grant
/// already, so that the account cannot bring a grant to another workspace later.
///
/// When the account brought free minutes to another workspace already, this workspace's grant
/// would be a second one for that organization: what is left of it is taken back
/// ([`withdraw`], by the worker, asked for here in the linking transaction) and the Overview says
/// why.
pub async fn register_linked_account(
    tx: &mut sqlx::PgConnection,
    installation_id: i64,
    workspace_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let holder: Option<Uuid> = sqlx::query_scalar(
        "WITH account AS (
             SELECT CASE WHEN i.account_id IS NOT NULL THEN 'github:' || i.account_id
                         ELSE 'github-login:' || lower(i.account_login) END AS key
             FROM github_installations i
             WHERE i.installation_id = $1 AND i.account_login <> ''
               AND EXISTS (SELECT 1 FROM free_minute_grants WHERE workspace_id = $2)),
         registered AS (
             INSERT INTO free_grant_keys (key, kind, workspace_id, registered_at)
             SELECT key, 'github_account', $2, $3 FROM account
             ON CONFLICT (key) DO NOTHING RETURNING workspace_id)
         SELECT workspace_id FROM registered
         UNION ALL SELECT k.workspace_id FROM free_grant_keys k JOIN account a ON a.key = k.key
         LIMIT 1",
    )
    .bind(installation_id)
    .bind(workspace_id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if holder.is_none_or(|holder| holder == workspace_id) {
        return Ok(());
    }
    let due = sqlx::query(
        "UPDATE free_minute_grants SET withdrawal_due_at = $2
         WHERE workspace_id = $1 AND withdrawal_due_at IS NULL",
    )
    .bind(workspace_id)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if due == 0 {
        return Ok(());
    }
    sqlx::query("UPDATE workspaces SET free_grant_refusal = $2 WHERE id = $1")
        .bind(workspace_id)
        .bind(refusal("github_account"))
        .execute(&mut *tx)
        .await?;
    crate::queue::enqueue(
        tx,
        crate::queue::NewJob {
            task: WITHDRAW_TASK,
            payload: serde_json::json!({ "workspace_id": workspace_id }),
            job_key: Some(&format!("withdraw-free-grant:{workspace_id}")),
            max_attempts: 25,
            run_at: None,
        },
    )
    .await?;
    tracing::info!(%workspace_id, installation_id, "free minutes to be taken back: the organization brought a grant elsewhere");
    Ok(())
}

/// The worker's task that runs [`withdraw`].
pub const WITHDRAW_TASK: &str = "withdraw_free_grant";

/// Takes back what is left of the grant of `workspace_id` once a withdrawal is due (see
/// [`register_linked_account`]): a balancing transfer of at most the grant, under the workspace's
/// lock, so metering never prices a job with minutes being taken. Returns the vCPU-minutes taken,
/// or `None` when no withdrawal is due. Safe to repeat: the transfer id derives from the grant.
pub async fn withdraw(
    db: &PgPool,
    ledger: &Ledger,
    workspace_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<i64>, GrantError> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT id FROM workspaces WHERE id = $1 FOR UPDATE")
        .bind(workspace_id)
        .execute(&mut *tx)
        .await?;
    // Grants older than the registry have no key: the workspace alone names their withdrawal.
    let key: Option<String> = sqlx::query_scalar(
        "SELECT coalesce(grant_key, '') FROM free_minute_grants
         WHERE workspace_id = $1 AND withdrawal_due_at IS NOT NULL AND withdrawn_at IS NULL",
    )
    .bind(workspace_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(key) = key else {
        return Ok(None);
    };
    let taken = ledger
        .withdraw_free_minutes(
            workspace_id,
            ledger::free_grant_withdrawal_id(workspace_id, &key),
        )
        .await?;
    let taken: i64 = crate::money::convert(taken, || "a free-minute withdrawal".to_owned())?;
    sqlx::query(
        "UPDATE free_minute_grants SET withdrawn_vcpu_minutes = $2, withdrawn_at = $3
         WHERE workspace_id = $1",
    )
    .bind(workspace_id)
    .bind(taken)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(%workspace_id, vcpu_minutes = taken, "free minutes taken back");
    Ok(Some(taken))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mailbox_is_one_key_however_it_is_written() {
        let key = email_grant_key("adalovelace@gmail.com");
        for same in [
            "Ada.Lovelace@gmail.com",
            "ada.lovelace+ci@gmail.com",
            "a.d.a.lovelace@googlemail.com",
            "ADALOVELACE+x+y@GMAIL.COM",
        ] {
            assert_eq!(email_grant_key(same), key, "{same}");
        }
        // Dots matter outside Gmail; the tag does not.
        assert_eq!(
            email_grant_key("ada.l+tenki@example.com"),
            "email:ada.l@example.com"
        );
        assert_ne!(
            email_grant_key("ada.l@example.com"),
            email_grant_key("adal@example.com")
        );
    }

    #[test]
    fn throwaway_services_are_recognised() {
        assert!(is_throwaway("someone@mailinator.com"));
        assert!(is_throwaway("someone@10minutemail.com"));
        assert!(!is_throwaway("someone@gmail.com"));
        assert!(!is_throwaway("ada@example.com"));
    }
}
