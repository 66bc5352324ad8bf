//! E-mail verification of the built-in identity: a link with a random, expiring token is e-mailed
//! at sign-up (and again on request); opening it marks the address verified, which is what the
//! free minutes wait for ([`super::grants`]).
//!
//! Only the token's SHA-256 is stored, as for sessions and invitations: a random 32-byte token
//! cannot be forged, so it needs no signature, and a database leak yields no working link.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::grants::{self, GrantError, GrantOutcome};
use crate::ledger::Ledger;

/// How long a verification link works.
pub const LINK_LIFETIME: Duration = Duration::hours(48);
/// Verification e-mails one person may ask for per hour (each is an e-mail we send).
pub const MAX_LINKS_PER_HOUR: i64 = 5;

/// Why an address could not be verified, or a link not sent.
#[derive(Debug, thiserror::Error)]
pub enum VerificationError {
    #[error("this verification link is not valid")]
    Unknown,
    #[error("this verification link has expired")]
    Expired,
    #[error("this link was sent to an address the account no longer uses")]
    AddressChanged,
    #[error("too many verification e-mails; try again in an hour")]
    TooMany,
    #[error("the e-mail address is verified already")]
    AlreadyVerified,
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// Creates a verification link for `user_id`'s current address and puts its e-mail in the
/// outbox, in the caller's transaction (the e-mail cron sends it; [`send_now`] asks for it at
/// once). Returns the token (only the e-mail carries it to the person; the CLI's demo account
/// uses it directly).
pub async fn send_link(
    tx: &mut sqlx::PgConnection,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<String, VerificationError> {
    let user: (String, String, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT email, email_normalized, email_verified_at FROM users WHERE id = $1 FOR UPDATE",
    )
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await?;
    let (email, normalized, verified_at) = user;
    if verified_at.is_some() {
        return Err(VerificationError::AlreadyVerified);
    }
    let recent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM email_verifications WHERE user_id = $1 AND created_at > $2",
    )
    .bind(user_id)
    .bind(now - Duration::hours(1))
    .fetch_one(&mut *tx)
    .await?;
    if recent >= MAX_LINKS_PER_HOUR {
        return Err(VerificationError::TooMany);
    }
    let token = super::new_secret_token();
    sqlx::query(
        "INSERT INTO email_verifications (token_hash, user_id, email_normalized, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(super::token_hash(&token).as_slice())
    .bind(user_id)
    .bind(&normalized)
    .bind(now)
    .bind(now + LINK_LIFETIME)
    .execute(&mut *tx)
    .await?;
    crate::billing::mail::queue_email(
        tx,
        &email,
        "Confirm your e-mail address for Tenki",
        &format!(
            "Open this link to confirm your e-mail address and receive your 1,000 free minutes. It works for {} hours.",
            LINK_LIFETIME.num_hours()
        ),
        &format!("/verify-email?token={token}"),
        now,
    )
    .await?;
    Ok(token)
}

/// Asks the worker to send the outbox now rather than on the next minute's tick: the person is
/// waiting for their link. The cron sends it anyway if this fails.
pub async fn send_now(db: &PgPool) {
    let asked = async {
        let mut conn = db.acquire().await?;
        crate::queue::enqueue(
            &mut conn,
            crate::queue::NewJob {
                task: "send_outbox_emails",
                payload: serde_json::json!({}),
                job_key: Some("send-outbox-now"),
                max_attempts: 3,
                run_at: None,
            },
        )
        .await
    };
    if let Err(error) = asked.await {
        tracing::warn!("asking for the e-mails to be sent now: {error}");
    }
}

/// A verification link as stored.
#[derive(Debug, sqlx::FromRow)]
struct Link {
    user_id: Uuid,
    email_normalized: String,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
}

/// What opening a verification link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user_id: Uuid,
    /// The grant decision of each workspace the person owns.
    pub grants: Vec<(Uuid, GrantOutcome)>,
}

/// Verifies the address link `token` was sent to, then decides the free minutes of every
/// workspace its owner holds. Opening a link again is harmless.
pub async fn verify(
    db: &PgPool,
    ledger: &Ledger,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Verified, VerificationError> {
    let hash = super::token_hash(token.trim());
    let mut tx = db.begin().await?;
    let link: Option<Link> = sqlx::query_as(
        "SELECT user_id, email_normalized, expires_at, used_at FROM email_verifications
         WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(hash.as_slice())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(Link {
        user_id,
        email_normalized: email,
        expires_at,
        used_at,
    }) = link
    else {
        return Err(VerificationError::Unknown);
    };
    if used_at.is_none() {
        if expires_at < now {
            return Err(VerificationError::Expired);
        }
        let marked = sqlx::query(
            "UPDATE users SET email_verified_at = coalesce(email_verified_at, $3)
             WHERE id = $1 AND email_normalized = $2",
        )
        .bind(user_id)
        .bind(&email)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked == 0 {
            return Err(VerificationError::AddressChanged);
        }
        sqlx::query("UPDATE email_verifications SET used_at = $2 WHERE token_hash = $1")
            .bind(hash.as_slice())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(%user_id, "e-mail verified");
    }
    // Decided after the commit, and again on a second opening: a grant cut off by a crash
    // finishes then.
    let grants = grants::decide_for_owner(db, ledger, user_id, now).await?;
    Ok(Verified { user_id, grants })
}
