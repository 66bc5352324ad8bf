//! E-mail to a workspace's owners of what its Billing page's Notifications say (SPEC §9): a
//! payment failed, the workspace is suspended, a payment was reversed, a spending alert.
//!
//! The notifications table is the outbox: a notification is written in the transaction of what
//! caused it, and the `send_notification_emails` cron e-mails the ones not yet sent, once each,
//! and tries a failed one again on the next ticks (up to [`MAX_ATTEMPTS`]). Real e-mail goes
//! through the SMTP server of `TENKI_SMTP_URL` (lettre); the sandbox without one writes each
//! e-mail to the log instead, so nothing leaves the machine.

use chrono::{DateTime, Duration, Utc};
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use sqlx::PgPool;
use uuid::Uuid;

/// Attempts per notification before it is left on the dashboard only.
pub const MAX_ATTEMPTS: i32 = 10;
/// Notifications older than this are not e-mailed any more (news that old helps nobody).
const FRESH_FOR_DAYS: i64 = 7;
/// Notifications e-mailed per tick.
const PER_TICK: i64 = 200;

/// Where notifications are e-mailed.
#[derive(Clone)]
pub enum Mailer {
    /// Through an SMTP server, from `from`.
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
        dashboard_url: String,
    },
    /// The sandbox without SMTP: each e-mail is written to the log.
    Log { dashboard_url: String },
    /// Production without SMTP: notifications stay on the dashboard.
    Off,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Smtp { .. } => "Mailer::Smtp",
            Self::Log { .. } => "Mailer::Log",
            Self::Off => "Mailer::Off",
        })
    }
}

/// Why e-mail could not be configured or sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("TENKI_SMTP_URL is not a usable SMTP URL: {0}")]
    Url(String),
    #[error("TENKI_MAIL_FROM is not an e-mail address: {0}")]
    From(String),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

impl Mailer {
    /// E-mail through the SMTP server at `url` (`smtps://user:pass@host:465`,
    /// `smtp://host:587?tls=required`, or `smtp://127.0.0.1:2525` for a local relay), from `from`.
    pub fn smtp(url: &str, from: &str, dashboard_url: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailError::Url(e.to_string()))?
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| MailError::From(format!("{from:?}: {e}")))?;
        Ok(Self::Smtp {
            transport,
            from,
            dashboard_url: dashboard_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The dashboard's address links in e-mail start with; `None` when e-mail is off.
    fn dashboard_url(&self) -> Option<&str> {
        match self {
            Self::Smtp { dashboard_url, .. } | Self::Log { dashboard_url } => Some(dashboard_url),
            Self::Off => None,
        }
    }

    /// Sends one e-mail to `to`: through SMTP, or to the log in the sandbox.
    async fn deliver(&self, to: &[String], subject: &str, body: String) -> Result<(), String> {
        match self {
            Self::Smtp {
                transport, from, ..
            } => send(transport, from, to, subject, body).await,
            Self::Log { .. } => {
                tracing::info!(
                    to = to.join(", "),
                    subject,
                    "sandbox e-mail (TENKI_SMTP_URL unset): {body}"
                );
                Ok(())
            }
            Self::Off => Ok(()),
        }
    }
}

/// Puts an e-mail to one person in the outbox, in the caller's transaction; the e-mail cron sends
/// it ([`send_outbox`]) with `link_path` made absolute after `body`.
pub async fn queue_email(
    conn: &mut sqlx::PgConnection,
    to: &str,
    subject: &str,
    body: &str,
    link_path: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox_emails (id, to_address, subject, body, link_path, created_at, try_after)
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(Uuid::new_v4())
    .bind(to)
    .bind(subject)
    .bind(body)
    .bind(link_path)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// One notification to e-mail, with its workspace's owners.
#[derive(Debug, sqlx::FromRow)]
struct Pending {
    id: Uuid,
    kind: String,
    message: String,
    workspace: String,
    owners: Vec<String>,
}

/// What a tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub sent: u64,
    pub failed: u64,
}

fn subject(kind: &str, workspace: &str) -> String {
    let what = match kind {
        "payment_failed" => "a payment failed",
        "suspended" => "no new runners start until the invoice is paid",
        "refund" => "a payment was refunded",
        "dispute" | "admin" => "a payment was reversed",
        "spending" => "spending alert",
        _ => "billing notice",
    };
    format!("Tenki ({workspace}): {what}")
}

/// E-mails the notifications not sent yet to their workspace's owners.
pub async fn send_pending(
    db: &PgPool,
    mailer: &Mailer,
    now: DateTime<Utc>,
) -> Result<Sent, MailError> {
    let Some(dashboard_url) = mailer.dashboard_url() else {
        return Ok(Sent::default());
    };
    let pending: Vec<Pending> = sqlx::query_as(
        "SELECT n.id, n.kind, n.message, w.name AS workspace,
                array_agg(u.email ORDER BY u.email) AS owners
         FROM notifications n
         JOIN workspaces w ON w.id = n.workspace_id
         JOIN workspace_members m ON m.workspace_id = n.workspace_id AND m.role = 'owner'
         JOIN users u ON u.id = m.user_id
         WHERE n.emailed_at IS NULL AND n.email_attempts < $1 AND n.created_at > $2
         GROUP BY n.id, w.name
         ORDER BY n.created_at LIMIT $3",
    )
    .bind(MAX_ATTEMPTS)
    .bind(now - Duration::days(FRESH_FOR_DAYS))
    .bind(PER_TICK)
    .fetch_all(db)
    .await?;
    let mut report = Sent::default();
    for notification in pending {
        let subject = subject(&notification.kind, &notification.workspace);
        let body = format!(
            "{}\n\nYour billing page: {dashboard_url}/billing\n\nYou receive this as an owner of the workspace {} on Tenki.\n",
            notification.message, notification.workspace
        );
        let outcome = mailer.deliver(&notification.owners, &subject, body).await;
        match outcome {
            Ok(()) => {
                sqlx::query(
                    "UPDATE notifications SET emailed_at = $2, email_attempts = email_attempts + 1,
                         email_error = NULL
                     WHERE id = $1",
                )
                .bind(notification.id)
                .bind(now)
                .execute(db)
                .await?;
                report.sent += 1;
            }
            Err(error) => {
                tracing::warn!(notification = %notification.id, "e-mailing a notification failed: {error}");
                sqlx::query(
                    "UPDATE notifications SET email_attempts = email_attempts + 1, email_error = $2
                     WHERE id = $1",
                )
                .bind(notification.id)
                .bind(&error)
                .execute(db)
                .await?;
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

/// One e-mail of the personal outbox (verification links), with its link made absolute.
#[derive(Debug, sqlx::FromRow)]
struct OutboxEmail {
    id: Uuid,
    to_address: String,
    subject: String,
    body: String,
    link_path: String,
}

/// E-mails the outbox's messages to one person not sent yet (verification links), once each,
/// trying a failed one again on the next ticks (up to [`MAX_ATTEMPTS`]).
pub async fn send_outbox(
    db: &PgPool,
    mailer: &Mailer,
    now: DateTime<Utc>,
) -> Result<Sent, MailError> {
    let Some(dashboard_url) = mailer.dashboard_url() else {
        return Ok(Sent::default());
    };
    // Claimed for a few minutes before sending: a second run meanwhile (the cron and sign-up's
    // "send now") skips them rather than sending them twice.
    let pending: Vec<OutboxEmail> = sqlx::query_as(
        "UPDATE outbox_emails SET try_after = $4 + interval '5 minutes', attempts = attempts + 1
         WHERE id IN (SELECT id FROM outbox_emails
                      WHERE sent_at IS NULL AND attempts < $1 AND created_at > $2 AND try_after <= $4
                      ORDER BY try_after LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING id, to_address, subject, body, link_path",
    )
    .bind(MAX_ATTEMPTS)
    .bind(now - Duration::days(FRESH_FOR_DAYS))
    .bind(PER_TICK)
    .bind(now)
    .fetch_all(db)
    .await?;
    let mut report = Sent::default();
    for email in pending {
        let body = format!("{}\n\n{dashboard_url}{}\n", email.body, email.link_path);
        let outcome = mailer
            .deliver(
                std::slice::from_ref(&email.to_address),
                &email.subject,
                body,
            )
            .await;
        let error = outcome.err();
        // A failed one is tried again on the next tick.
        sqlx::query(
            "UPDATE outbox_emails SET last_error = $3, try_after = $2,
                 sent_at = CASE WHEN $3::text IS NULL THEN $2 END
             WHERE id = $1",
        )
        .bind(email.id)
        .bind(now)
        .bind(&error)
        .execute(db)
        .await?;
        match error {
            None => report.sent += 1,
            Some(error) => {
                tracing::warn!(email = %email.id, "sending an e-mail failed: {error}");
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

async fn send(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
    recipients: &[String],
    subject: &str,
    body: String,
) -> Result<(), String> {
    let mut message = Message::builder()
        .from(from.clone())
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for recipient in recipients {
        let to = recipient
            .parse::<Mailbox>()
            .map_err(|e| format!("address {recipient:?}: {e}"))?;
        message = message.to(to);
    }
    let message = message.body(body).map_err(|e| e.to_string())?;
    transport
        .send(message)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_says_what_happened_and_to_which_workspace() {
        assert_eq!(
            subject("payment_failed", "Acme"),
            "Tenki (Acme): a payment failed"
        );
        assert_eq!(
            subject("dispute", "Acme"),
            "Tenki (Acme): a payment was reversed"
        );
    }

    // lettre's connection pool needs a Tokio runtime, as in the server.
    #[tokio::test]
    async fn a_url_that_is_not_smtp_is_refused() {
        assert!(matches!(
            Mailer::smtp(
                "http://example.com",
                "Tenki <billing@tenki.dev>",
                "http://x"
            ),
            Err(MailError::Url(_))
        ));
        assert!(matches!(
            Mailer::smtp("smtp://127.0.0.1:2525", "not an address", "http://x"),
            Err(MailError::From(_))
        ));
    }
}
