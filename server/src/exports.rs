//! Downloads that are files, not pages: the usage CSV of a month.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tenki_core::usage::{self, Month};

use crate::AppState;
use crate::extract::SignedIn;

/// `?month=YYYY-MM`; absent: this month.
#[derive(Debug, Deserialize)]
pub struct MonthQuery {
    month: Option<String>,
}

/// `GET /usage/export.csv`: one row per job of the month, for the signed-in workspace.
pub async fn usage_csv(
    State(state): State<AppState>,
    SignedIn { caller, .. }: SignedIn,
    Query(query): Query<MonthQuery>,
) -> Response {
    let month = match query.month.as_deref().filter(|m| !m.is_empty()) {
        None => Month::containing(chrono::Utc::now()),
        Some(text) => match Month::parse(text) {
            Some(month) => month,
            None => {
                return (StatusCode::BAD_REQUEST, "Choose a month as YYYY-MM.").into_response();
            }
        },
    };
    // Streamed: a month of a million jobs is sent page by page, never held in memory. A database
    // failure after the first bytes cuts the download short (the browser reports it failed)
    // rather than ending it as if it were complete.
    let csv = usage::month_csv(state.core.db.clone(), caller.member.workspace_id, month);
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"tenki-usage-{month}.csv\""),
            ),
        ],
        Body::from_stream(csv),
    )
        .into_response()
}
