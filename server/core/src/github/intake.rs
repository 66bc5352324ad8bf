//! GitHub webhook intake (SPEC §4): the signature check over the raw body, and storing a
//! delivery, due for processing by the delivery drain, before the 2xx.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;

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

/// A verified delivery, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// `X-GitHub-Delivery`.
    pub delivery_id: String,
    /// `X-GitHub-Event`.
    pub event: String,
    /// Read from `body`.
    pub envelope: Envelope,
    /// The body as GitHub signed it: a JSON object.
    pub body: String,
    pub received_at: DateTime<Utc>,
}

/// Stores a verified delivery, due for processing at once when Tenki uses its event. The row is
/// the queue entry (the delivery drain takes it from the table), so storing it is one INSERT,
/// committed before the 2xx: a delivery is never stored without being queued, nor queued without
/// being stored. The caller wakes its drain once this returns [`Intake::Queued`]. The webhook
/// route goes through the [`DeliveryWriter`](super::writer::DeliveryWriter) instead, which stores
/// concurrent deliveries together.
pub async fn store_delivery(db: &PgPool, delivery: NewDelivery) -> Result<Intake, sqlx::Error> {
    let stored = store_deliveries(db, std::slice::from_ref(&delivery)).await?;
    Ok(stored[0])
}

/// Stores `deliveries` with one INSERT, in one transaction, and says what happened to each, in
/// their order. A delivery id already stored, or twice in `deliveries`, is stored once: the
/// first time it comes, and every later one is a [`Intake::Duplicate`].
#[tracing::instrument(level = "debug", skip_all, fields(deliveries = deliveries.len()))]
pub async fn store_deliveries(
    db: &PgPool,
    deliveries: &[NewDelivery],
) -> Result<Vec<Intake>, sqlx::Error> {
    let used = |delivery: &NewDelivery| USED_EVENTS.contains(&delivery.event.as_str());
    let text = |f: fn(&NewDelivery) -> &str| deliveries.iter().map(f).collect::<Vec<&str>>();
    let status: Vec<&str> = deliveries
        .iter()
        .map(|d| if used(d) { "queued" } else { "ignored" })
        .collect();
    let due: Vec<Option<DateTime<Utc>>> = deliveries
        .iter()
        .map(|d| used(d).then_some(d.received_at))
        .collect();
    let action: Vec<Option<&str>> = deliveries
        .iter()
        .map(|d| d.envelope.action.as_deref())
        .collect();
    let installation: Vec<Option<i64>> = deliveries
        .iter()
        .map(|d| d.envelope.installation_id)
        .collect();
    let received: Vec<DateTime<Utc>> = deliveries.iter().map(|d| d.received_at).collect();
    let inserted: Vec<String> = sqlx::query_scalar!(
        "INSERT INTO github_deliveries (delivery_id, event, action, installation_id, body,
             received_at, status, next_attempt_at)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[],
             $6::timestamptz[], $7::text[], $8::timestamptz[])
         ON CONFLICT (delivery_id) DO NOTHING
         RETURNING delivery_id",
        &text(|d| &d.delivery_id) as &[&str],
        &text(|d| &d.event) as &[&str],
        &action as &[Option<&str>],
        &installation as &[Option<i64>],
        &text(|d| &d.body) as &[&str],
        &received,
        &status as &[&str],
        &due as &[Option<DateTime<Utc>>],
    )
    .fetch_all(db)
    .await?;
    let mut inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
    Ok(deliveries
        .iter()
        .map(|d| match (inserted.remove(&d.delivery_id), used(d)) {
            (false, _) => Intake::Duplicate,
            (true, true) => Intake::Queued,
            (true, false) => Intake::Ignored,
        })
        .collect())
}

/// A delivery whose processing failed; the drain retries it with back-off until it gives up.
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
    // A claim in force stays: the drain working on it finishes first.
    let updated = sqlx::query!(
        "UPDATE github_deliveries SET status = 'queued', attempts = 0, next_attempt_at = now()
         WHERE delivery_id = $1 AND status <> 'ignored'",
        delivery_id,
    )
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
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
