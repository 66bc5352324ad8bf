//! Data retention: what Tenki deletes, and when. Run daily by the queue's cron; safe to repeat.
//!
//! - sessions, once expired;
//! - sign-in and sign-up attempts, after [`ATTEMPTS_KEPT`] (the rate limits look back minutes);
//! - webhook delivery bodies, after [`DELIVERY_BODIES_KEPT`]: the delivery's id, event, action
//!   and outcome stay, so a duplicate is still recognised and the history still reads.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;

/// How long sign-in and sign-up attempts are kept.
pub const ATTEMPTS_KEPT: Duration = Duration::days(30);
/// How long a webhook delivery's body is kept.
pub const DELIVERY_BODIES_KEPT: Duration = Duration::days(30);

/// What one round deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub sessions: u64,
    pub sign_in_attempts: u64,
    pub sign_up_attempts: u64,
    pub delivery_bodies: u64,
}

/// Deletes everything past its retention at `now`.
#[tracing::instrument(skip(db))]
pub async fn delete_expired(db: &PgPool, now: DateTime<Utc>) -> Result<Deleted, sqlx::Error> {
    let sessions = sqlx::query!("DELETE FROM sessions WHERE expires_at <= $1", now)
        .execute(db)
        .await?
        .rows_affected();
    let sign_in_attempts = sqlx::query!(
        "DELETE FROM sign_in_attempts WHERE attempted_at < $1",
        now - ATTEMPTS_KEPT
    )
    .execute(db)
    .await?
    .rows_affected();
    let sign_up_attempts = sqlx::query!(
        "DELETE FROM sign_up_attempts WHERE attempted_at < $1",
        now - ATTEMPTS_KEPT
    )
    .execute(db)
    .await?
    .rows_affected();
    // A delivery still to be processed (or tried again) keeps its body, however old.
    let delivery_bodies = sqlx::query!(
        "UPDATE github_deliveries SET body = NULL
         WHERE body IS NOT NULL AND received_at < $1 AND next_attempt_at IS NULL",
        now - DELIVERY_BODIES_KEPT
    )
    .execute(db)
    .await?
    .rows_affected();
    Ok(Deleted {
        sessions,
        sign_in_attempts,
        sign_up_attempts,
        delivery_bodies,
    })
}
