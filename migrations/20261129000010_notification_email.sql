-- The notifications table is the outbox of e-mail to the workspace's owners (SPEC §9): each
-- notification is e-mailed once, by the `send_notification_emails` cron, and retried on failure.
ALTER TABLE notifications
    ADD COLUMN emailed_at     timestamptz,
    ADD COLUMN email_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN email_error    text;
-- Notifications from before e-mail existed are not sent now.
UPDATE notifications SET emailed_at = created_at;
CREATE INDEX notifications_to_email ON notifications (created_at) WHERE emailed_at IS NULL;
