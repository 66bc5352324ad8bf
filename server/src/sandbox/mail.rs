//! The sandbox's mailbox: the e-mails to one person (verification links) that the sandbox, having
//! no SMTP server, writes to the log, readable as JSON at `/sandbox/mail?to=<address>` so that
//! `make run` users and the browser tests can open their link. Mounted only in the sandbox
//! without `TENKI_SMTP_URL`.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// What the mailbox reads from.
#[derive(Clone)]
struct Mailbox {
    db: PgPool,
    dashboard_url: String,
}

/// The mailbox's query.
#[derive(Debug, Deserialize)]
struct MailQuery {
    to: String,
}

/// One e-mail, newest first.
#[derive(Debug, Serialize, sqlx::FromRow)]
struct Mail {
    to: String,
    subject: String,
    body: String,
    link: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// The mailbox's routes; `dashboard_url` makes the links absolute, as the e-mail does.
pub fn router(db: PgPool, dashboard_url: &str) -> Router {
    Router::new().route("/", get(list)).with_state(Mailbox {
        db,
        dashboard_url: dashboard_url.trim_end_matches('/').to_owned(),
    })
}

async fn list(
    State(mailbox): State<Mailbox>,
    Query(query): Query<MailQuery>,
) -> Result<Json<Vec<Mail>>, StatusCode> {
    sqlx::query_as(
        "SELECT to_address AS to, subject, body, $2 || link_path AS link, created_at
         FROM outbox_emails WHERE lower(to_address) = lower($1)
         ORDER BY created_at DESC LIMIT 50",
    )
    .bind(query.to.trim())
    .bind(&mailbox.dashboard_url)
    .fetch_all(&mailbox.db)
    .await
    .map(Json)
    .map_err(|error| {
        tracing::error!("reading the sandbox mailbox: {error}");
        StatusCode::INTERNAL_SERVER_ERROR
    })
}
