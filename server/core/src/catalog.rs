//! The runner catalog (SPEC §3): SKUs with their vCPUs and per-minute prices, versioned by
//! `active_from`, with per-workspace custom prices taking precedence.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// The suffix that turns a standard label into its premium variant.
pub const PREMIUM_SUFFIX: &str = "-premium";

/// A runner type customers put in `runs-on:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku {
    pub label: String,
    /// `x64` or `macos`: the two concurrency pools.
    pub class: String,
    pub vcpus: i32,
    pub memory_gb: i32,
    pub os: String,
    pub arch: String,
}

/// What a minute of a SKU costs at one moment, in micro-cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub per_minute: i64,
    /// `None`: the SKU has no premium variant.
    pub premium_surcharge_per_minute: Option<i64>,
}

/// A label as requested in a workflow, resolved to its SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedLabel {
    pub sku: Sku,
    pub premium: bool,
}

/// A catalog entry with its current price, for the Runners page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub sku: Sku,
    pub price: Price,
}

/// Why a label or price could not be found.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0:?} is not a Tenki runner label")]
    UnknownLabel(String),
    #[error("{0:?} has no premium variant")]
    NoPremiumVariant(String),
    #[error("{label:?} has no price in force at {at}")]
    NoPrice { label: String, at: DateTime<Utc> },
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// A label as Tenki keeps it: lower case, since GitHub matches `runs-on:` labels without regard
/// to case (`Tenki-Standard-4C` runs on a `tenki-standard-4c` runner).
pub fn normalize_label(label: &str) -> String {
    label.trim().to_lowercase()
}

/// The label without its `-premium` suffix, and whether it had one.
fn split_premium(label: &str) -> (&str, bool) {
    match label.strip_suffix(PREMIUM_SUFFIX) {
        Some(base) => (base, true),
        None => (label, false),
    }
}

/// The first of a job's `labels` that is a Tenki label (with or without `-premium`, in any
/// case), normalized, in one query. `None`: the job is not Tenki's. A database error is an
/// error, never "not Tenki's", so a delivery is retried rather than a job dropped.
pub async fn first_tenki_label(
    db: &PgPool,
    labels: &[&str],
) -> Result<Option<String>, sqlx::Error> {
    let normalized: Vec<String> = labels.iter().map(|label| normalize_label(label)).collect();
    let bases: Vec<String> = normalized
        .iter()
        .map(|label| split_premium(label).0.to_owned())
        .collect();
    let known = sqlx::query_scalar!(
        "SELECT label FROM runner_skus WHERE label = ANY($1)",
        &bases,
    )
    .fetch_all(db)
    .await?;
    Ok(normalized
        .into_iter()
        .find(|label| known.iter().any(|k| k == split_premium(label).0)))
}

/// Resolves `tenki-standard-4c` or `tenki-standard-4c-premium` to its SKU.
pub async fn resolve_label(db: &PgPool, label: &str) -> Result<ResolvedLabel, CatalogError> {
    let normalized = normalize_label(label);
    let (base, premium) = split_premium(&normalized);
    let sku = sqlx::query_as!(
        Sku,
        "SELECT label, class, vcpus, memory_gb, os, arch FROM runner_skus WHERE label = $1",
        base,
    )
    .fetch_optional(db)
    .await?
    .ok_or_else(|| CatalogError::UnknownLabel(label.to_owned()))?;
    Ok(ResolvedLabel { sku, premium })
}

/// Resolves `label` and its price for `workspace_id` at `at` in one query: the workspace's
/// custom price if one is in force, else the catalog's.
pub async fn label_price_at(
    db: &PgPool,
    workspace_id: Uuid,
    label: &str,
    at: DateTime<Utc>,
) -> Result<(ResolvedLabel, Price), CatalogError> {
    label_prices_at(db, &[(workspace_id, label, at)])
        .await?
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(CatalogError::UnknownLabel(label.to_owned())))
}

/// [`label_price_at`] for many (workspace, label, moment) at once, in one query, answered in the
/// order asked. The metering hot path uses this.
pub async fn label_prices_at(
    db: &PgPool,
    wanted: &[(Uuid, &str, DateTime<Utc>)],
) -> Result<Vec<Result<(ResolvedLabel, Price), CatalogError>>, sqlx::Error> {
    let mut workspaces = Vec::with_capacity(wanted.len());
    let mut bases = Vec::with_capacity(wanted.len());
    let mut moments = Vec::with_capacity(wanted.len());
    for (workspace_id, label, at) in wanted {
        let normalized = normalize_label(label);
        workspaces.push(*workspace_id);
        bases.push(split_premium(&normalized).0.to_owned());
        moments.push(*at);
    }
    let rows = sqlx::query!(
        r#"SELECT q.ord AS "ord!", s.label, s.class, s.vcpus, s.memory_gb, s.os, s.arch,
                  (c.price_per_minute IS NOT NULL) AS "custom!",
                  coalesce(c.price_per_minute, p.price_per_minute) AS price_per_minute,
                  c.premium_surcharge_per_minute AS "custom_surcharge?",
                  p.premium_surcharge_per_minute AS "catalog_surcharge?"
           FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) WITH ORDINALITY
                AS q(workspace_id, label, at, ord)
           JOIN runner_skus s ON s.label = q.label
           LEFT JOIN LATERAL (
               SELECT price_per_minute, premium_surcharge_per_minute FROM workspace_prices
               WHERE workspace_id = q.workspace_id AND label = s.label AND active_from <= q.at
               ORDER BY active_from DESC LIMIT 1
           ) c ON true
           LEFT JOIN LATERAL (
               SELECT price_per_minute, premium_surcharge_per_minute FROM runner_prices
               WHERE label = s.label AND active_from <= q.at
               ORDER BY active_from DESC LIMIT 1
           ) p ON true"#,
        &workspaces,
        &bases,
        &moments,
    )
    .fetch_all(db)
    .await?;
    let mut answers: Vec<Result<(ResolvedLabel, Price), CatalogError>> = wanted
        .iter()
        .map(|(_, label, _)| Err(CatalogError::UnknownLabel((*label).to_owned())))
        .collect();
    for row in rows {
        let Some(index) = usize::try_from(row.ord - 1)
            .ok()
            .filter(|&i| i < wanted.len())
        else {
            continue;
        };
        let (_, label, at) = wanted[index];
        let (_, premium) = split_premium(&normalize_label(label));
        answers[index] = match row.price_per_minute {
            None => Err(CatalogError::NoPrice {
                label: label.to_owned(),
                at,
            }),
            Some(per_minute) => Ok((
                ResolvedLabel {
                    sku: Sku {
                        label: row.label,
                        class: row.class,
                        vcpus: row.vcpus,
                        memory_gb: row.memory_gb,
                        os: row.os,
                        arch: row.arch,
                    },
                    premium,
                },
                Price {
                    per_minute,
                    premium_surcharge_per_minute: if row.custom {
                        row.custom_surcharge
                    } else {
                        row.catalog_surcharge
                    },
                },
            )),
        };
    }
    Ok(answers)
}

/// Every SKU with the catalog price in force at `at`, cheapest first within each class.
pub async fn catalog(db: &PgPool, at: DateTime<Utc>) -> Result<Vec<CatalogEntry>, CatalogError> {
    let rows = sqlx::query!(
        r#"SELECT s.label, s.class, s.vcpus, s.memory_gb, s.os, s.arch,
                  p.price_per_minute AS "price_per_minute?",
                  p.premium_surcharge_per_minute
           FROM runner_skus s
           LEFT JOIN LATERAL (
               SELECT price_per_minute, premium_surcharge_per_minute FROM runner_prices
               WHERE label = s.label AND active_from <= $1
               ORDER BY active_from DESC LIMIT 1
           ) p ON true
           ORDER BY s.class DESC, s.vcpus"#,
        at,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(CatalogEntry {
                price: Price {
                    per_minute: row.price_per_minute?,
                    premium_surcharge_per_minute: row.premium_surcharge_per_minute,
                },
                sku: Sku {
                    label: row.label,
                    class: row.class,
                    vcpus: row.vcpus,
                    memory_gb: row.memory_gb,
                    os: row.os,
                    arch: row.arch,
                },
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_kept_in_lower_case_as_github_matches_them() {
        assert_eq!(normalize_label("Tenki-Standard-4C"), "tenki-standard-4c");
        assert_eq!(
            split_premium(&normalize_label(" TENKI-STANDARD-2C-PREMIUM ")),
            ("tenki-standard-2c", true)
        );
        assert_eq!(
            split_premium("tenki-macos-m4-6c"),
            ("tenki-macos-m4-6c", false)
        );
    }
}
