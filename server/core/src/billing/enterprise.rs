//! Enterprise (SPEC §12): the inquiry form, and what sales sets on a workspace: a discount on all
//! usage (0–50 %) and custom per-SKU prices, both for jobs that start afterwards (metering reads
//! the ones in force when a job started), and an add-on's annual prepayment (SPEC §10). Each is
//! audited with the reason and the admin's e-mail.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ledger::adjustments::AdminRequest;
use crate::money;

/// Most discount sales may give, in basis points (50 %).
pub const MAX_DISCOUNT_BASIS_POINTS: i32 = 5_000;

/// Why a change or an inquiry was refused; nothing is stored then.
#[derive(Debug, thiserror::Error)]
pub enum EnterpriseError {
    #[error("give a reason and the admin's e-mail")]
    MissingReasonOrAdmin,
    #[error("a discount is from 0 to 50 %")]
    DiscountOutOfRange,
    #[error("the price is refused: {0}")]
    PriceRefused(String),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

fn check(request: &AdminRequest) -> Result<(), EnterpriseError> {
    if !request.is_complete() {
        return Err(EnterpriseError::MissingReasonOrAdmin);
    }
    Ok(())
}

/// Records what an admin changed on a workspace, with who and why.
pub(crate) async fn audit(
    tx: &mut sqlx::PgConnection,
    workspace_id: Uuid,
    action: &str,
    detail: &str,
    request: &AdminRequest,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO admin_audit (id, workspace_id, action, detail, reason, admin_email, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(Uuid::new_v4())
    .bind(workspace_id)
    .bind(action)
    .bind(detail)
    .bind(request.reason.trim())
    .bind(request.admin_email.trim())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Sets the workspace's discount on all usage to `basis_points` (100 = 1 %) from `now`.
pub async fn set_discount(
    db: &PgPool,
    workspace_id: Uuid,
    basis_points: i32,
    request: &AdminRequest,
    now: DateTime<Utc>,
) -> Result<(), EnterpriseError> {
    check(request)?;
    if !(0..=MAX_DISCOUNT_BASIS_POINTS).contains(&basis_points) {
        return Err(EnterpriseError::DiscountOutOfRange);
    }
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO workspace_discounts (workspace_id, active_from, basis_points) VALUES ($1, $2, $3)
         ON CONFLICT (workspace_id, active_from) DO UPDATE SET basis_points = EXCLUDED.basis_points",
    )
    .bind(workspace_id)
    .bind(now)
    .bind(basis_points)
    .execute(&mut *tx)
    .await?;
    let detail = format!(
        "discount {}.{:02} %",
        basis_points / 100,
        basis_points % 100
    );
    audit(&mut tx, workspace_id, "set_discount", &detail, request, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Sets a custom price per minute (micro-cents) for `label` on the workspace from `now`. The
/// database's premium rule gives an x64 price its 50 % surcharge and refuses an odd one.
pub async fn set_price(
    db: &PgPool,
    workspace_id: Uuid,
    label: &str,
    per_minute: i64,
    request: &AdminRequest,
    now: DateTime<Utc>,
) -> Result<(), EnterpriseError> {
    check(request)?;
    if per_minute < 0 {
        return Err(EnterpriseError::PriceRefused(
            "a price cannot be negative".to_owned(),
        ));
    }
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO workspace_prices (workspace_id, label, active_from, price_per_minute)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(workspace_id)
    .bind(label)
    .bind(now)
    .bind(per_minute)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23514") => {
            return Err(EnterpriseError::PriceRefused(e.message().to_owned()));
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23503") => {
            return Err(EnterpriseError::PriceRefused(format!(
                "{label} is not in the catalog"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let detail = format!(
        "price of {label}: ${} per minute",
        money::dollars(per_minute, 6)
    );
    audit(&mut tx, workspace_id, "set_price", &detail, request, now).await?;
    tx.commit().await?;
    Ok(())
}

/// An inquiry as sales reads it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Inquiry {
    pub created_at: DateTime<Utc>,
    pub company: String,
    pub email: String,
    pub message: String,
    pub workspace_id: Option<Uuid>,
}

/// Stores an inquiry from the form.
pub async fn record_inquiry(
    db: &PgPool,
    workspace_id: Option<Uuid>,
    company: &str,
    email: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Result<(), EnterpriseError> {
    let (company, email, message) = (company.trim(), email.trim(), message.trim());
    if company.is_empty() || company.len() > 200 {
        return Err(EnterpriseError::Invalid("give the company's name"));
    }
    if !email.contains('@') || email.len() > 320 {
        return Err(EnterpriseError::Invalid(
            "give an e-mail address sales can answer",
        ));
    }
    if message.len() > 5_000 {
        return Err(EnterpriseError::Invalid(
            "the message is limited to 5,000 characters",
        ));
    }
    sqlx::query(
        "INSERT INTO enterprise_inquiries (id, workspace_id, company, email, message, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(Uuid::new_v4())
    .bind(workspace_id)
    .bind(company)
    .bind(email)
    .bind(message)
    .bind(now)
    .execute(db)
    .await?;
    tracing::info!(company, "enterprise inquiry received");
    metrics::counter!("enterprise_inquiries_total").increment(1);
    Ok(())
}

/// The newest inquiries.
pub async fn inquiries(db: &PgPool, limit: i64) -> Result<Vec<Inquiry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT created_at, company, email, message, workspace_id FROM enterprise_inquiries
         ORDER BY created_at DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

/// What an annual prepayment covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepaid {
    /// The first day of the first month covered.
    pub starts: chrono::NaiveDate,
    /// The first day of the month after the last one covered.
    pub ends: chrono::NaiveDate,
    /// The year's price, in micro-cents.
    pub price: i64,
}

/// Sales' annual prepayment of `addon` (boost $499, macOS $399 a year): twelve months from the
/// 1st of this one. The add-on is turned on now (with an admission pass); the invoice of this
/// month carries the year's price and the twelve months bill the add-on at $0. Refused for an
/// add-on without an annual price, or one already prepaid for part of those months.
pub async fn prepay_annually(
    db: &PgPool,
    workspace_id: Uuid,
    addon: super::addons::Addon,
    request: &AdminRequest,
    now: DateTime<Utc>,
) -> Result<Prepaid, EnterpriseError> {
    check(request)?;
    let price = addon
        .annual_price()
        .ok_or(EnterpriseError::Invalid("this add-on is sold monthly only"))?;
    let first = crate::usage::Month::containing(now);
    let starts = first.first_day();
    let ends = (0..12).fold(first, |month, _| month.next()).first_day();
    let mut tx = db.begin().await?;
    let overlapping: Option<chrono::NaiveDate> = sqlx::query_scalar(
        "SELECT ends FROM addon_prepayments
         WHERE workspace_id = $1 AND addon = $2 AND starts < $4 AND ends > $3 FOR UPDATE",
    )
    .bind(workspace_id)
    .bind(addon.key())
    .bind(starts)
    .bind(ends)
    .fetch_optional(&mut *tx)
    .await?;
    if overlapping.is_some() {
        return Err(EnterpriseError::Invalid(
            "this add-on is already prepaid for some of these months",
        ));
    }
    sqlx::query(
        "INSERT INTO addon_prepayments (workspace_id, addon, starts, ends, price, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(workspace_id)
    .bind(addon.key())
    .bind(starts)
    .bind(ends)
    .bind(price)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO workspace_addons (workspace_id, addon, active_since) VALUES ($1, $2, $3)
         ON CONFLICT (workspace_id, addon) DO UPDATE SET cancelled_at = NULL, ends_at = NULL",
    )
    .bind(workspace_id)
    .bind(addon.key())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    crate::admission::request_pass(&mut tx).await?;
    let detail = format!(
        "{} prepaid for {} to {} at ${}",
        addon.name(),
        starts.format("%B %Y"),
        crate::usage::Month::of_day(ends)
            .previous()
            .first_day()
            .format("%B %Y"),
        money::dollars(price, 2)
    );
    audit(
        &mut tx,
        workspace_id,
        "prepay_annually",
        &detail,
        request,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Prepaid {
        starts,
        ends,
        price,
    })
}
