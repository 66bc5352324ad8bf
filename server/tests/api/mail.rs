//! E-mail of the owners' notifications (SPEC §9) through a real SMTP conversation: a local SMTP
//! server receives what the `send_notification_emails` cron sends through the worker, with the
//! production client (lettre) pointed at it by `TENKI_SMTP_URL`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::harness::{TestApp, settings};
use crate::runners::customer;

/// One e-mail as the SMTP server received it.
#[derive(Debug, Clone, Default)]
struct Received {
    to: Vec<String>,
    data: String,
}

/// Starts an SMTP server on a free port of 127.0.0.1 that accepts every message and keeps it;
/// returns its `smtp://` URL and what it received. Written here rather than taken from a crate:
/// mailin-embedded, the embeddable SMTP server, turns on rustls's aws-lc provider next to the
/// ring provider the rest of Tenki uses, and rustls then has no default provider at all.
async fn smtp_sink() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("free port");
    let port = listener.local_addr().expect("bound").port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let kept = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let mut mail = Received::default();
                let mut in_data = false;
                let reply = |text: &'static str| text.as_bytes();
                if write
                    .write_all(reply("220 smtp.test ready\r\n"))
                    .await
                    .is_err()
                {
                    return;
                }
                while let Ok(Some(line)) = lines.next_line().await {
                    let answer: &[u8] = if in_data {
                        if line == "." {
                            in_data = false;
                            kept.lock().expect("sink").push(std::mem::take(&mut mail));
                            reply("250 2.0.0 queued\r\n")
                        } else {
                            mail.data.push_str(&line);
                            mail.data.push('\n');
                            continue;
                        }
                    } else {
                        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                        match verb.as_str() {
                            "EHLO" | "HELO" => reply("250 smtp.test\r\n"),
                            "RCPT" => {
                                let to = line.split(['<', '>']).nth(1).unwrap_or_default();
                                mail.to.push(to.to_owned());
                                reply("250 2.1.5 ok\r\n")
                            }
                            "DATA" => {
                                in_data = true;
                                reply("354 end with .\r\n")
                            }
                            "QUIT" => {
                                drop(write.write_all(reply("221 2.0.0 bye\r\n")).await);
                                return;
                            }
                            _ => reply("250 2.0.0 ok\r\n"),
                        }
                    };
                    if write.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("smtp://127.0.0.1:{port}"), received)
}

async fn send_emails_through_the_worker(db: &PgPool) {
    sqlx::query("SELECT graphile_worker.add_job('send_notification_emails', '{}'::json)")
        .execute(db)
        .await
        .expect("job added");
    for _ in 0..100 {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM graphile_worker._private_jobs")
            .fetch_one(db)
            .await
            .expect("jobs");
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the e-mail task did not run within 10 s");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_failed_payment_is_emailed_to_the_owner_once(db: PgPool) {
    let (url, received) = smtp_sink().await;
    let app = TestApp::spawn_with(
        db.clone(),
        settings(&[
            ("TENKI_SMTP_URL", url.as_str()),
            ("TENKI_MAIL_FROM", "Tenki Billing <billing@tenki.test>"),
        ]),
    )
    .await;
    let customer = customer(&app, "mail-co").await;
    let owner: String = sqlx::query_scalar(
        "SELECT u.email FROM users u JOIN workspace_members m ON m.user_id = u.id
         WHERE m.workspace_id = $1 AND m.role = 'owner'",
    )
    .bind(customer.workspace_id)
    .fetch_one(&db)
    .await
    .expect("owner");
    let mut tx = db.begin().await.expect("tx");
    tenki_core::billing::invoices::notify(
        &mut tx,
        customer.workspace_id,
        "payment_failed",
        "The payment for October 2026 failed (card declined).",
        "mail-test:1",
        chrono::Utc::now(),
    )
    .await
    .expect("notified");
    tx.commit().await.expect("commit");

    send_emails_through_the_worker(&db).await;
    send_emails_through_the_worker(&db).await;
    let (verification, mails): (Vec<Received>, Vec<Received>) = received
        .lock()
        .expect("sink")
        .clone()
        .into_iter()
        .partition(|mail| {
            mail.data
                .contains("Subject: Confirm your e-mail address for Tenki")
        });
    // The sign-up's verification link went out through the same SMTP server, once.
    assert_eq!(verification.len(), 1, "{verification:?}");
    assert_eq!(verification[0].to, std::slice::from_ref(&owner));
    assert!(verification[0].data.contains("/verify-email?token="));
    assert_eq!(mails.len(), 1, "one e-mail, not one per tick: {mails:?}");
    assert_eq!(mails[0].to, [owner]);
    assert!(
        mails[0].data.contains("Subject: Tenki (mail-co"),
        "{}",
        mails[0].data
    );
    assert!(
        mails[0]
            .data
            .contains("The payment for October 2026 failed (card declined).")
    );
    let from = mails[0]
        .data
        .lines()
        .find(|l| l.starts_with("From: "))
        .unwrap_or_default();
    assert!(
        from.contains("Tenki Billing") && from.contains("<billing@tenki.test>"),
        "{from}"
    );
    let emailed: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT emailed_at FROM notifications WHERE dedupe_key = 'mail-test:1'")
            .fetch_one(&db)
            .await
            .expect("notification");
    assert!(emailed.is_some());
}

#[sqlx::test(migrations = "../migrations")]
async fn an_smtp_server_that_is_down_leaves_the_notification_to_try_again(db: PgPool) {
    // Nothing listens on this port once the listener is dropped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("bound")
        .port();
    let url = format!("smtp://127.0.0.1:{port}");
    let app = TestApp::spawn_with(db.clone(), settings(&[("TENKI_SMTP_URL", url.as_str())])).await;
    let customer = customer(&app, "mail-down-co").await;
    let mut tx = db.begin().await.expect("tx");
    tenki_core::billing::invoices::notify(
        &mut tx,
        customer.workspace_id,
        "suspended",
        "No new runners start.",
        "mail-test:2",
        chrono::Utc::now(),
    )
    .await
    .expect("notified");
    tx.commit().await.expect("commit");
    send_emails_through_the_worker(&db).await;
    let (emailed, attempts, error): (Option<chrono::DateTime<chrono::Utc>>, i32, Option<String>) =
        sqlx::query_as(
            "SELECT emailed_at, email_attempts, email_error FROM notifications
             WHERE dedupe_key = 'mail-test:2'",
        )
        .fetch_one(&db)
        .await
        .expect("notification");
    assert_eq!((emailed, attempts), (None, 1));
    assert!(error.is_some_and(|e| !e.is_empty()));
}

#[sqlx::test(migrations = "../migrations")]
async fn two_senders_at_once_send_a_confirmation_link_once(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let now = chrono::Utc::now();
    tenki_core::identity::sign_up(
        &db,
        &app.core.ledger,
        "once@example.com",
        "a long enough password",
        "Once",
        &tenki_core::identity::SignUpClient::LOCAL,
        now,
    )
    .await
    .expect("sign-up");
    let mailer = tenki_core::billing::mail::Mailer::Log {
        dashboard_url: app.address.clone(),
    };
    let (a, b) = tokio::join!(
        tenki_core::billing::mail::send_outbox(&db, &mailer, now),
        tenki_core::billing::mail::send_outbox(&db, &mailer, now),
    );
    // (The test server's own cron may be the one that sends it: one claim in all, either way.)
    let sent = a.expect("first").sent + b.expect("second").sent;
    assert!(sent <= 1, "{sent}");
    // And a later tick finds nothing left to send.
    let later =
        tenki_core::billing::mail::send_outbox(&db, &mailer, now + chrono::Duration::minutes(10))
            .await
            .expect("later");
    assert_eq!(later.sent, 0);
    let (attempts, sent_at): (i32, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
        "SELECT attempts, sent_at FROM outbox_emails WHERE to_address = 'once@example.com'",
    )
    .fetch_one(&db)
    .await
    .expect("outbox");
    assert_eq!(attempts, 1);
    assert!(sent_at.is_some());
}
