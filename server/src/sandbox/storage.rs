//! A double of the storage service for the sandbox: it measures nothing, but sends what the real
//! service would send, through the same door. Every hour (and when the server starts) it posts
//! today's sample of every workspace to `POST /internal/storage-samples` with the internal token,
//! so that the Billing and Usage pages, the invoices and the projection run on samples in
//! `make run` exactly as in production.
//!
//! The sizes follow each workspace's jobs of the last 30 days, so that a busy demo stores more:
//! 40 MB of artifacts per job, and 250 MB of dependency cache per job, of which the cache keeps
//! 10 GB and evicts the rest, least recently used first.

use std::time::Duration;

use axum::response::IntoResponse as _;
use chrono::{NaiveDate, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use tenki_core::billing::storage::INCLUDED_CACHE_BYTES;

/// How often the double sends samples (a day's sample is replaced by the later ones).
const EVERY: Duration = Duration::from_secs(3_600);
const ARTIFACT_BYTES_PER_JOB: i64 = 40_000_000;
const CACHE_BYTES_PER_JOB: i64 = 250_000_000;

/// The sandbox's storage service: reads the jobs from `db`, posts to Tenki at `tenki_url`.
#[derive(Clone)]
pub struct StorageDouble {
    db: PgPool,
    tenki_url: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for StorageDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageDouble")
            .field("tenki_url", &self.tenki_url)
            .finish_non_exhaustive()
    }
}

/// Today's sample of one workspace that has run `jobs` jobs in the last 30 days.
fn sample(workspace_id: Uuid, day: NaiveDate, jobs: i64) -> serde_json::Value {
    let cache_wanted = jobs * CACHE_BYTES_PER_JOB;
    json!({
        "workspace_id": workspace_id,
        "day": day,
        "artifact_bytes": jobs * ARTIFACT_BYTES_PER_JOB,
        "cache_bytes": cache_wanted.min(INCLUDED_CACHE_BYTES),
        "cache_evicted_bytes": (cache_wanted - INCLUDED_CACHE_BYTES).max(0),
    })
}

impl StorageDouble {
    /// A double posting to Tenki at `tenki_url` with `token` (`TENKI_INTERNAL_TOKEN`).
    pub fn new(db: PgPool, tenki_url: &str, token: &str) -> Self {
        Self {
            db,
            tenki_url: tenki_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Posts today's samples once; returns how many Tenki recorded.
    pub async fn send_samples(&self) -> anyhow::Result<u64> {
        let now = Utc::now();
        let jobs: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT w.id, count(u.job_key) FROM workspaces w
             LEFT JOIN usage_records u ON u.workspace_id = w.id AND u.completed_at > $1
             GROUP BY w.id ORDER BY w.id",
        )
        .bind(now - chrono::Duration::days(30))
        .fetch_all(&self.db)
        .await?;
        let mut recorded = 0;
        for chunk in jobs.chunks(1_000) {
            let samples: Vec<_> = chunk
                .iter()
                .map(|(id, jobs)| sample(*id, now.date_naive(), *jobs))
                .collect();
            let answer = self
                .http
                .post(format!("{}/internal/storage-samples", self.tenki_url))
                .bearer_auth(&self.token)
                .json(&json!({ "samples": samples }))
                .send()
                .await?
                .error_for_status()?
                .json::<serde_json::Value>()
                .await?;
            recorded += answer["recorded"].as_u64().unwrap_or(0);
        }
        Ok(recorded)
    }

    /// The double's switch, nested under [`crate::settings::SANDBOX_STORAGE_PATH`]:
    /// `POST /send-samples` sends today's samples now (tests and demos need not wait an hour).
    pub fn router(&self) -> axum::Router {
        let double = self.clone();
        axum::Router::new().route(
            "/send-samples",
            axum::routing::post(move || {
                let double = double.clone();
                async move {
                    match double.send_samples().await {
                        Ok(recorded) => axum::Json(json!({ "recorded": recorded })).into_response(),
                        Err(e) => (
                            axum::http::StatusCode::BAD_GATEWAY,
                            format!("the samples were not sent: {e:#}"),
                        )
                            .into_response(),
                    }
                }
            }),
        )
    }

    /// Sends samples now and then every hour, until the process stops.
    pub async fn run(self) {
        loop {
            if let Err(e) = self.send_samples().await {
                tracing::warn!("the sandbox's storage samples were not sent: {e:#}");
            }
            tokio::time::sleep(EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_workspace_keeps_10_gb_of_cache_and_reports_the_rest_evicted() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 29).expect("day");
        let sample = sample(Uuid::nil(), day, 50);
        assert_eq!(sample["artifact_bytes"], 2_000_000_000_i64);
        assert_eq!(sample["cache_bytes"], 10_000_000_000_i64);
        assert_eq!(sample["cache_evicted_bytes"], 2_500_000_000_i64);
    }
}
