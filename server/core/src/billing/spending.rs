//! The monthly spending limit (Settings): the owner is told at 50, 80 and 100 % of it (a
//! notification on the Billing page, once per threshold and month), and with the hard cap on,
//! admission starts no new runner once the month's usage reaches it. The measure is the month's
//! usage so far (UTC), the figure the Overview shows; add-ons and slots are fixed and known.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::money;
use crate::workspaces::{Caller, Role};

/// The percentages at which the owner is told.
pub const THRESHOLDS: [i64; 3] = [50, 80, 100];

/// A workspace's limit and where the month stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spending {
    /// In micro-cents; `None`: no limit.
    pub limit: Option<i64>,
    pub hard_cap: bool,
    /// The month's usage so far, in micro-cents.
    pub spent: i64,
}

impl Spending {
    /// How much of the limit is used, in whole percent.
    pub fn percent(&self) -> Option<i64> {
        self.limit.map(|limit| {
            i64::try_from(i128::from(self.spent) * 100 / i128::from(limit)).unwrap_or(i64::MAX)
        })
    }
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpendingError {
    #[error("only the workspace's owners and admins can change its spending limit")]
    NotAllowed,
    #[error("give the limit in dollars, more than $0 (e.g. 250.00), or leave it empty for none")]
    BadLimit,
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// The workspace's limit and the month's usage so far.
pub async fn spending_of(
    db: &PgPool,
    workspace_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Spending, sqlx::Error> {
    let (limit, hard_cap, spent): (Option<i64>, bool, i64) = sqlx::query_as(
        "SELECT w.spending_limit, w.spending_hard_cap,
                (SELECT coalesce(sum(u.amount), 0)::bigint FROM usage_records u
                 WHERE u.workspace_id = w.id AND u.completed_at >= $2)
         FROM workspaces w WHERE w.id = $1",
    )
    .bind(workspace_id)
    .bind(crate::usage::Month::containing(now).start())
    .fetch_one(db)
    .await?;
    Ok(Spending {
        limit,
        hard_cap,
        spent,
    })
}

/// Sets (or with `None` removes) the caller's workspace's limit, and the hard cap. A pass of
/// admission follows at once: a raised limit starts the jobs it held back.
pub async fn set_limit(
    db: &PgPool,
    caller: &Caller,
    limit: Option<i64>,
    hard_cap: bool,
    now: DateTime<Utc>,
) -> Result<(), SpendingError> {
    if !matches!(caller.member.role, Role::Owner | Role::Admin) {
        return Err(SpendingError::NotAllowed);
    }
    if limit.is_some_and(|l| l <= 0) {
        return Err(SpendingError::BadLimit);
    }
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE workspaces SET spending_limit = $2, spending_hard_cap = $3 WHERE id = $1")
        .bind(caller.member.workspace_id)
        .bind(limit)
        .bind(hard_cap && limit.is_some())
        .execute(&mut *tx)
        .await?;
    crate::admission::request_pass(&mut tx).await?;
    let detail = match limit {
        Some(limit) => format!(
            "set the monthly spending limit to ${}{}",
            crate::money::dollars(limit, 2),
            if hard_cap {
                ", a hard cap"
            } else {
                ", alerts only"
            }
        ),
        None => "removed the monthly spending limit".to_owned(),
    };
    crate::workspaces::audit::record(&mut tx, caller, "spending_limit.changed", &detail, now)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Tells the owner of every threshold the month's usage has crossed, once per threshold and
/// month. Returns the thresholds newly reported.
pub async fn check(
    db: &PgPool,
    workspace_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, sqlx::Error> {
    let spending = spending_of(db, workspace_id, now).await?;
    let (Some(limit), Some(percent)) = (spending.limit, spending.percent()) else {
        return Ok(Vec::new());
    };
    let mut reported = Vec::new();
    let mut tx = db.begin().await?;
    for threshold in THRESHOLDS.into_iter().filter(|t| percent >= *t) {
        let mut message = format!(
            "You have used {percent} % of your ${} monthly spending limit (${} so far in {}).",
            money::dollars(limit, 2),
            money::dollars(spending.spent, 2),
            now.format("%B")
        );
        if threshold == 100 && spending.hard_cap {
            message.push_str(" No new jobs start until next month or a higher limit in Settings.");
        }
        let inserted = sqlx::query(
            "INSERT INTO notifications (id, workspace_id, kind, message, created_at, dedupe_key)
             VALUES ($1, $2, 'spending', $3, $4, $5) ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(Uuid::new_v4())
        .bind(workspace_id)
        .bind(message)
        .bind(now)
        .bind(format!(
            "spending:{workspace_id}:{}:{threshold}",
            now.format("%Y-%m")
        ))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted > 0 {
            reported.push(threshold);
        }
    }
    tx.commit().await?;
    Ok(reported)
}

/// [`check`] for every workspace with a limit (every minute).
pub async fn check_all(db: &PgPool, now: DateTime<Utc>) -> Result<usize, sqlx::Error> {
    let limited: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM workspaces WHERE spending_limit IS NOT NULL")
            .fetch_all(db)
            .await?;
    let mut reported = 0;
    for workspace_id in limited {
        reported += check(db, workspace_id, now).await?.len();
    }
    Ok(reported)
}
