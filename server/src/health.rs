//! `/healthz` (the process is alive), `/readyz` (PostgreSQL and TigerBeetle answer) and
//! `/metrics` (Prometheus text).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;

/// How long a dependency may take before `/readyz` calls it down.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Always 200 while the process serves requests.
pub async fn healthz() -> &'static str {
    "ok"
}

/// 200 when PostgreSQL and TigerBeetle both answer within two seconds, else 503 naming the part
/// that does not.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = async {
        match tokio::time::timeout(
            READY_TIMEOUT,
            sqlx::query("SELECT 1").execute(&state.core.db),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {READY_TIMEOUT:?}")),
        }
    };
    let ledger = async {
        state
            .core
            .ledger
            .ping(READY_TIMEOUT)
            .await
            .map_err(|e| e.to_string())
    };
    let (database, tigerbeetle) = tokio::join!(database, ledger);
    let ready = database.is_ok() && tigerbeetle.is_ok();
    // The answer names the failing part; the error text (hosts, users) goes to the log only.
    let describe = |result: &Result<(), String>| if result.is_ok() { "ok" } else { "down" };
    let status = if ready {
        StatusCode::OK
    } else {
        tracing::warn!(?database, ?tigerbeetle, "not ready");
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "unavailable" },
            "database": describe(&database),
            "tigerbeetle": describe(&tigerbeetle),
        })),
    )
}

/// The Prometheus exposition of every metric recorded in this process, plus the webhook backlog
/// read from the database (so every replica reports the same shared queue). With
/// `TENKI_METRICS_TOKEN` set, only for `Authorization: Bearer <token>`.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        if !crate::settings::metrics_token_matches(expected, given) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "/metrics needs Authorization: Bearer <TENKI_METRICS_TOKEN>",
            )
                .into_response();
        }
    }
    let mut text = state.metrics.render();
    match tenki_core::github::intake::backlog(&state.core.db, chrono::Utc::now()).await {
        Ok(backlog) => text.push_str(&format!(
            "# TYPE github_deliveries_waiting gauge\n\
             github_deliveries_waiting{{status=\"queued\"}} {}\n\
             github_deliveries_waiting{{status=\"failed\"}} {}\n\
             # TYPE github_deliveries_oldest_waiting_seconds gauge\n\
             github_deliveries_oldest_waiting_seconds {}\n",
            backlog.queued, backlog.failed, backlog.oldest_waiting_seconds
        )),
        Err(e) => tracing::warn!("cannot read the webhook backlog for /metrics: {e}"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
