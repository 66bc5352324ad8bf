-- The GitHub deliveries table is its own queue (ADR 0007): the intake only inserts the row, and
-- each server's delivery drain claims due rows in batches with FOR UPDATE SKIP LOCKED. No queue
-- job and no NOTIFY per delivery, so concurrent intakes no longer commit one at a time.
ALTER TABLE github_deliveries
    -- Processing attempts started (counted when claimed, so a delivery that kills the process
    -- is given up too).
    ADD COLUMN attempts smallint NOT NULL DEFAULT 0,
    -- When the next attempt is due; NULL once processed, ignored or given up.
    ADD COLUMN next_attempt_at timestamptz,
    -- A drain holds a claimed delivery until then; after it, a crashed drain's claim lapses.
    ADD COLUMN claimed_until timestamptz;

-- Deliveries of the previous design were waiting on graphile_worker jobs: due now, and those jobs
-- go (the worker no longer knows their task). The queue's schema exists only once a worker ran.
DO $$
BEGIN
    IF to_regclass('graphile_worker._private_jobs') IS NOT NULL THEN
        UPDATE github_deliveries d SET next_attempt_at = now()
        FROM graphile_worker._private_jobs j
        JOIN graphile_worker._private_tasks t ON t.id = j.task_id
        WHERE t.identifier = 'process_github_delivery' AND j.attempts < j.max_attempts
          AND j.payload->>'delivery_id' = d.delivery_id;
        DELETE FROM graphile_worker._private_jobs j
        USING graphile_worker._private_tasks t
        WHERE t.id = j.task_id AND t.identifier = 'process_github_delivery';
    END IF;
END $$;
UPDATE github_deliveries SET next_attempt_at = received_at
WHERE status = 'queued' AND next_attempt_at IS NULL;

CREATE INDEX github_deliveries_due ON github_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
