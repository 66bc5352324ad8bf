//! GitHub webhook intake (SPEC §4): the signature check over the raw body, and storing a
//! delivery together with the queue job that processes it, in one transaction, before the 2xx.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;

/// The queue task that processes a stored delivery (see [`crate::queue`]).
pub const PROCESS_DELIVERY_TASK: &str = "process_github_delivery";

/// Attempts at processing a delivery before it is given up (and shown as failed).
pub const MAX_ATTEMPTS: i16 = 25;

/// Events Tenki acts on; every other event is stored as ignored.
const USED_EVENTS: [&str; 3] = ["workflow_job", "installation", "installation_repositories"];

/// True when `signature_header` (`X-Hub-Signature-256: sha256=<hex>`) is the HMAC-SHA256 of
/// `body` under `secret`. The comparison is constant-time (`Mac::verify_slice`).
pub fn signature_is_valid(secret: &[u8], body: &[u8], signature_header: Option<&str>) -> bool {
    let Some(hex_signature) = signature_header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(signature) = hex::decode(hex_signature) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// The `X-Hub-Signature-256` header GitHub would send for `body` (for the sandbox and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What happened to a delivery at intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// Stored and queued for processing.
    Queued,
    /// Stored as an event Tenki does not use.
    Ignored,
    /// This delivery id was stored before; nothing changed.
    Duplicate,
}

/// What the intake reads of a delivery's body before storing it whole: its action and
/// installation. Parsing it checks that the body is a JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Envelope {
    pub action: Option<String>,
    #[serde(default, deserialize_with = "installation_id")]
    #[serde(rename = "installation")]
    pub installation_id: Option<i64>,
}

fn installation_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Installation {
        id: Option<i64>,
    }
    Ok(<Option<Installation> as serde::Deserialize>::deserialize(d)?.and_then(|i| i.id))
}

impl Envelope {
    /// The envelope of `body`, or why it is not a JSON object. Every field is parsed (and
    /// checked), only these two are kept: no copy of the whole document is built.
    pub fn parse(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }
}

/// Stores a verified delivery (`body` is its JSON text, `envelope` parsed from it) and, for
/// events Tenki uses, enqueues its processing in the same statement: a delivery is never stored
/// without its job, nor queued without being stored.
#[tracing::instrument(level = "debug", skip(db, envelope, body, now))]
pub async fn store_delivery(
    db: &PgPool,
    delivery_id: &str,
    event: &str,
    envelope: &Envelope,
    body: &str,
    now: DateTime<Utc>,
) -> Result<Intake, sqlx::Error> {
    let used = USED_EVENTS.contains(&event);
    let action = envelope.action.as_deref();
    let installation_id = envelope.installation_id;
    if !used {
        let inserted = sqlx::query!(
            "INSERT INTO github_deliveries (delivery_id, event, action, installation_id, body,
                 received_at, status)
             VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, 'ignored')
             ON CONFLICT (delivery_id) DO NOTHING",
            delivery_id,
            event,
            action,
            installation_id,
            body,
            now,
        )
        .execute(db)
        .await?;
        return Ok(if inserted.rows_affected() == 0 {
            Intake::Duplicate
        } else {
            Intake::Ignored
        });
    }
    // One statement, so one round trip and its own transaction: the job is added only for a
    // delivery this statement stored, and neither exists without the other. The delivery id's
    // uniqueness already makes one job per delivery, so the job needs no job key (which costs
    // graphile_worker a conflict check). `add_job` is created by the worker's migrations, hence
    // a query checked at run time. The one place `add_job` is called inside a statement instead
    // of through `queue::enqueue`: the intake's single round trip is its hot path.
    let queued = sqlx::query(
        "WITH stored AS (
             INSERT INTO github_deliveries (delivery_id, event, action, installation_id, body,
                 received_at, status)
             VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, 'queued')
             ON CONFLICT (delivery_id) DO NOTHING
             RETURNING delivery_id)
         SELECT graphile_worker.add_job(identifier => $7,
                    payload => json_build_object('delivery_id', stored.delivery_id),
                    max_attempts => $8::smallint)
         FROM stored",
    )
    .bind(delivery_id)
    .bind(event)
    .bind(action)
    .bind(installation_id)
    .bind(body)
    .bind(now)
    .bind(PROCESS_DELIVERY_TASK)
    .bind(MAX_ATTEMPTS)
    .execute(db)
    .await?;
    Ok(if queued.rows_affected() == 0 {
        Intake::Duplicate
    } else {
        Intake::Queued
    })
}

/// A delivery whose processing failed; the queue retries it with back-off until it gives up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDelivery {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    pub received_at: DateTime<Utc>,
    /// The last attempt's error.
    pub error: Option<String>,
}

/// The newest `limit` failed deliveries: of `workspace_id`'s installations, or of everyone.
pub async fn failed_deliveries(
    db: &PgPool,
    workspace_id: Option<uuid::Uuid>,
    limit: i64,
) -> Result<Vec<FailedDelivery>, sqlx::Error> {
    sqlx::query_as!(
        FailedDelivery,
        r#"SELECT d.delivery_id, d.event, d.action, d.installation_id, d.received_at, d.error
           FROM github_deliveries d
           LEFT JOIN github_installations i ON i.installation_id = d.installation_id
           WHERE d.status = 'failed' AND ($1::uuid IS NULL OR i.workspace_id = $1)
           ORDER BY d.received_at DESC
           LIMIT $2"#,
        workspace_id,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Queues a stored delivery for processing again, with a fresh set of attempts (after the
/// cause of its failure is fixed). `false`: no such delivery, or one Tenki does not process.
pub async fn retry_delivery(db: &PgPool, delivery_id: &str) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let updated = sqlx::query!(
        "UPDATE github_deliveries SET status = 'queued' WHERE delivery_id = $1 AND status <> 'ignored'",
        delivery_id,
    )
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(false);
    }
    enqueue_retry(&mut tx, delivery_id).await?;
    tx.commit().await?;
    Ok(true)
}

async fn enqueue_retry(tx: &mut sqlx::PgConnection, delivery_id: &str) -> Result<(), sqlx::Error> {
    // The job key keeps one retry job per delivery however often support asks.
    let job_key = format!("github-delivery-retry:{delivery_id}");
    crate::queue::enqueue(
        tx,
        crate::queue::NewJob {
            task: PROCESS_DELIVERY_TASK,
            payload: serde_json::json!({ "delivery_id": delivery_id }),
            job_key: Some(&job_key),
            max_attempts: MAX_ATTEMPTS,
            run_at: None,
        },
    )
    .await
}

/// How many deliveries are in each state, and how old the oldest waiting one is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryBacklog {
    pub queued: i64,
    pub failed: i64,
    /// Seconds since the oldest queued or failed delivery was received; 0 when none waits.
    pub oldest_waiting_seconds: f64,
}

/// The delivery backlog, for `/metrics`.
pub async fn backlog(db: &PgPool, now: DateTime<Utc>) -> Result<DeliveryBacklog, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE status = 'queued') AS "queued!",
                  count(*) FILTER (WHERE status = 'failed') AS "failed!",
                  coalesce(extract(epoch FROM $1 - min(received_at)), 0)::float8 AS "oldest!"
           FROM github_deliveries WHERE status IN ('queued', 'failed')"#,
        now,
    )
    .fetch_one(db)
    .await?;
    Ok(DeliveryBacklog {
        queued: row.queued,
        failed: row.failed,
        oldest_waiting_seconds: row.oldest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_made_with_the_secret_verifies_and_any_other_does_not() {
        let body = br#"{"zen":"Design for failure."}"#;
        let header = sign(b"secret", body);
        assert!(header.starts_with("sha256="));
        assert!(signature_is_valid(b"secret", body, Some(&header)));
        assert!(!signature_is_valid(b"other secret", body, Some(&header)));
        assert!(!signature_is_valid(b"secret", b"{}", Some(&header)));
        assert!(!signature_is_valid(b"secret", body, None));
        assert!(!signature_is_valid(b"secret", body, Some("sha256=zz")));
        assert!(!signature_is_valid(
            b"secret",
            body,
            Some(&header.replace("sha256=", "sha1="))
        ));
    }

    #[test]
    fn the_envelope_keeps_action_and_installation_and_refuses_what_is_not_an_object() {
        let envelope = Envelope::parse(
            r#"{"action":"queued","installation":{"id":5,"node_id":"x"},"zen":[1,{"a":null}]}"#,
        )
        .expect("an object");
        assert_eq!(envelope.action.as_deref(), Some("queued"));
        assert_eq!(envelope.installation_id, Some(5));
        assert_eq!(
            Envelope::parse(r#"{"zen":"Keep it logically awesome.","installation":null}"#)
                .expect("object"),
            Envelope::default()
        );
        assert!(Envelope::parse("[1, 2]").is_err());
        assert!(Envelope::parse(r#"{"action":"queued""#).is_err());
        assert!(Envelope::parse(r#"{"action":"queued"} trailing"#).is_err());
        assert!(Envelope::parse("").is_err());
    }

    #[test]
    fn matches_githubs_documented_example() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let header = sign(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            header,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
