//! The scheduled tasks run through the worker exactly as the server schedules them: the
//! server's own crontab, the payload graphile_worker gives a cron tick, the real handlers.
//! (Calling the functions directly once hid that every tick failed on its payload.)

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;

use crate::harness::TestApp;

/// Adds one tick of every entry of the server's crontab, with the payload the cron runner would
/// give it (the entry's payload plus `_cron`, or null), and also a bare null payload.
async fn tick_every_cron(db: &PgPool) -> Vec<String> {
    let entries = tenki_core::queue::parse_crontab(tenki_core::queue::CRONTAB).expect("crontab");
    let mut tasks = Vec::new();
    for entry in entries {
        let tick = match entry.payload.clone() {
            Some(serde_json::Value::Object(mut payload)) => {
                payload.insert(
                    "_cron".to_owned(),
                    serde_json::json!({ "ts": Utc::now().to_rfc3339(), "backfilled": false }),
                );
                serde_json::Value::Object(payload)
            }
            other => other.unwrap_or(serde_json::Value::Null),
        };
        for payload in [tick, serde_json::Value::Null] {
            sqlx::query("SELECT graphile_worker.add_job($1, $2::json)")
                .bind(&entry.task_identifier)
                .bind(payload)
                .execute(db)
                .await
                .expect("job added");
        }
        tasks.push(entry.task_identifier.clone());
    }
    tasks
}

/// Waits (bounded) until the worker has run every job; panics with the first error.
async fn wait_for_jobs(db: &PgPool) {
    for _ in 0..300 {
        let left: Vec<(String, i16, Option<String>)> = sqlx::query_as(
            "SELECT t.identifier, j.attempts, j.last_error
             FROM graphile_worker._private_jobs j
             JOIN graphile_worker._private_tasks t ON t.id = j.task_id",
        )
        .fetch_all(db)
        .await
        .expect("jobs");
        if let Some((task, _, Some(error))) = left.iter().find(|(_, _, e)| e.is_some()) {
            panic!("{task} failed through the worker: {error}");
        }
        if left.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("scheduled tasks not run within 30 s");
}

#[sqlx::test(migrations = "../migrations")]
async fn every_scheduled_task_runs_through_the_worker_with_a_cron_ticks_payload(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    // Something for retention to delete, and something it must keep.
    let old = Utc::now() - chrono::Duration::days(31);
    sqlx::query(
        "INSERT INTO github_deliveries (delivery_id, event, body, received_at, status)
         VALUES ('old-1', 'ping', '{\"zen\":\"x\"}', $1, 'ignored'),
                ('new-1', 'ping', '{\"zen\":\"y\"}', now(), 'ignored')",
    )
    .bind(old)
    .execute(&db)
    .await
    .expect("deliveries");
    sqlx::query("INSERT INTO sign_in_attempts (email_normalized, ip, succeeded, attempted_at) VALUES ('a@b.c', '1.2.3.4', false, $1)")
        .bind(old)
        .execute(&db)
        .await
        .expect("old attempt");

    let tasks = tick_every_cron(&db).await;
    assert_eq!(
        tasks,
        [
            "redeliver_failed_github_deliveries",
            "poll_queued_github_jobs",
            "delete_expired_data",
            "admit_waiting_jobs",
            "reconcile_runners",
            "end_cancelled_addons",
            "run_monthly_billing",
            "resume_invoices",
            "suspend_unpaid_workspaces",
            "check_spending_limits",
            "send_notification_emails",
        ]
    );
    wait_for_jobs(&db).await;

    let bodies: Vec<(String, bool)> =
        sqlx::query_as("SELECT delivery_id, body IS NOT NULL FROM github_deliveries ORDER BY 1")
            .fetch_all(&db)
            .await
            .expect("deliveries");
    assert_eq!(
        bodies,
        [("new-1".to_owned(), true), ("old-1".to_owned(), false)],
        "a 31-day-old body is deleted, its id and outcome kept"
    );
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM sign_in_attempts")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(attempts, 0);

    let (_, metrics) = app.get("/metrics").await;
    for task in tasks {
        let line = format!("cron_runs_total{{task=\"{task}\",outcome=\"succeeded\"}}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

/// The supervisor's stall check: a due job the worker cannot take (another transaction holds its
/// row, so graphile_worker's `SKIP LOCKED` passes it by and nothing runs) is a stall; a due job of
/// a task this version does not know is not, and neither is a worker that takes what is due.
#[sqlx::test(migrations = "../migrations")]
async fn the_worker_supervisor_tells_a_stalled_queue_from_a_busy_or_foreign_one(db: PgPool) {
    let _app = TestApp::spawn(db.clone()).await;
    let every = Duration::from_millis(300);
    let quiet = |db: PgPool| async move {
        tokio::time::timeout(
            Duration::from_secs(2),
            tenki_core::queue::stalled(&db, every),
        )
        .await
    };
    // A job of a task no version of this server runs: never taken, and no stall.
    sqlx::query("SELECT graphile_worker.add_job('a_task_from_another_version', '{}'::json)")
        .execute(&db)
        .await
        .expect("foreign job");
    assert!(
        quiet(db.clone()).await.is_err(),
        "a foreign job is no stall"
    );
    // A job the worker takes at once: no stall.
    sqlx::query("SELECT graphile_worker.add_job('admit_waiting_jobs', '{}'::json)")
        .execute(&db)
        .await
        .expect("job");
    assert!(
        quiet(db.clone()).await.is_err(),
        "a working queue is no stall"
    );
    // A job held by another transaction from before it is due: the worker passes it by, and
    // nothing runs.
    sqlx::query(
        "SELECT graphile_worker.add_job('admit_waiting_jobs', '{}'::json,
             run_at => now() + interval '1 second')",
    )
    .execute(&db)
    .await
    .expect("job due in a second");
    let mut holder = db.begin().await.expect("tx");
    sqlx::query("SELECT id FROM graphile_worker._private_jobs WHERE run_at > now() FOR UPDATE")
        .fetch_one(&mut *holder)
        .await
        .expect("held job");
    let due = tokio::time::timeout(
        Duration::from_secs(5),
        tenki_core::queue::stalled(&db, every),
    )
    .await
    .expect("a stall is seen within 5 s");
    assert_eq!(due, 1);
    holder.rollback().await.expect("rollback");
}
