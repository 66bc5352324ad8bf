//! Endpoints for Tenki's own services, not for customers: `POST /internal/storage-samples`
//! (the storage service's daily samples). Each answers only with the bearer token
//! `TENKI_INTERNAL_TOKEN`; without one configured they answer nobody.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tenki_core::billing::storage::{self, Sample, StorageError};

use crate::AppState;

/// The body: the samples of one or more workspaces and days.
#[derive(Debug, Deserialize)]
pub struct Samples {
    samples: Vec<Sample>,
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (&state.internal_token, given) {
        (Some(expected), Some(given)) => crate::settings::metrics_token_matches(expected, given),
        _ => false,
    }
}

/// `POST /internal/storage-samples`: 401 without the token, 400 for a body that is not samples,
/// 422 for a negative size or an unknown workspace (nothing stored), 200 with the count stored.
pub async fn storage_samples(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&state, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            "a bearer token (TENKI_INTERNAL_TOKEN) is required",
        )
            .into_response();
    }
    let samples: Samples = match serde_json::from_slice(&body) {
        Ok(samples) => samples,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("expected {{\"samples\": [...]}}: {e}"),
            )
                .into_response();
        }
    };
    match storage::record_samples(&state.core.db, &samples.samples).await {
        Ok(recorded) => Json(serde_json::json!({ "recorded": recorded })).into_response(),
        Err(error @ (StorageError::Negative { .. } | StorageError::UnknownWorkspace { .. })) => {
            (StatusCode::UNPROCESSABLE_ENTITY, error.to_string()).into_response()
        }
        Err(error) => app::error::AppError::internal_error(&error).into_response(),
    }
}
