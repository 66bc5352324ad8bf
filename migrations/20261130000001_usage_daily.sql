-- Per-day usage rollups (ADR 0009): what the Usage page, the Overview's month-to-date cost and the
-- projection read, so they cost the same at a million jobs a month as at ten. One row per
-- workspace, UTC day, label, repository and workflow, summing the usage records of that day.
--
-- The rollups are kept by statement-level triggers on usage_records, so every statement that
-- inserts or deletes usage records (metering one job or a batch, a usage reversal, a backfill)
-- changes them in the same statement and transaction: they are never behind, and a retried job
-- (its insert refused by the job_key primary key, or rolled back) never counts twice.
CREATE TABLE usage_daily (
    workspace_id      uuid NOT NULL REFERENCES workspaces (id),
    day               date NOT NULL,
    label             text NOT NULL,
    repository        text NOT NULL,
    workflow          text NOT NULL,
    jobs              bigint NOT NULL CHECK (jobs > 0),
    minutes           bigint NOT NULL CHECK (minutes >= 0),
    free_vcpu_minutes bigint NOT NULL CHECK (free_vcpu_minutes >= 0),
    -- Micro-cents charged.
    amount            bigint NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (workspace_id, day, label, repository, workflow)
);

-- Adds the records a statement inserted. Rows are upserted in key order, so two statements
-- touching the same rollups lock them in the same order.
CREATE FUNCTION usage_daily_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_daily AS d (workspace_id, day, label, repository, workflow, jobs, minutes,
                                  free_vcpu_minutes, amount)
    SELECT workspace_id, (completed_at AT TIME ZONE 'UTC')::date, label, repository, workflow,
           count(*), sum(minutes), sum(free_vcpu_minutes), sum(amount)
    FROM inserted
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (workspace_id, day, label, repository, workflow) DO UPDATE
    SET jobs = d.jobs + excluded.jobs,
        minutes = d.minutes + excluded.minutes,
        free_vcpu_minutes = d.free_vcpu_minutes + excluded.free_vcpu_minutes,
        amount = d.amount + excluded.amount;
    RETURN NULL;
END $$;

-- Takes away the records a statement deleted; a rollup left with no job goes.
CREATE FUNCTION usage_daily_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH removed AS (
        SELECT workspace_id, (completed_at AT TIME ZONE 'UTC')::date AS day, label, repository,
               workflow, count(*) AS jobs, sum(minutes) AS minutes,
               sum(free_vcpu_minutes) AS free_vcpu_minutes, sum(amount) AS amount
        FROM deleted
        GROUP BY 1, 2, 3, 4, 5
    ), lowered AS (
        UPDATE usage_daily d
        SET jobs = d.jobs - r.jobs,
            minutes = d.minutes - r.minutes,
            free_vcpu_minutes = d.free_vcpu_minutes - r.free_vcpu_minutes,
            amount = d.amount - r.amount
        FROM removed r
        WHERE (d.workspace_id, d.day, d.label, d.repository, d.workflow)
            = (r.workspace_id, r.day, r.label, r.repository, r.workflow)
          AND d.jobs > r.jobs
    )
    DELETE FROM usage_daily d
    USING removed r
    WHERE (d.workspace_id, d.day, d.label, d.repository, d.workflow)
        = (r.workspace_id, r.day, r.label, r.repository, r.workflow)
      AND d.jobs <= r.jobs;
    RETURN NULL;
END $$;

CREATE TRIGGER usage_daily_add AFTER INSERT ON usage_records
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION usage_daily_add();
CREATE TRIGGER usage_daily_remove AFTER DELETE ON usage_records
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION usage_daily_remove();

-- What a record bills never changes once metered (only its runner's name is filled in later);
-- the rollups rely on that.
CREATE FUNCTION usage_records_billed_figures_are_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'usage record %: what it billed cannot change; reverse it instead', OLD.job_key;
END $$;
CREATE TRIGGER usage_records_billed_figures_are_fixed
    BEFORE UPDATE OF workspace_id, label, repository, workflow, completed_at, minutes,
                     free_vcpu_minutes, amount, job_key ON usage_records
    FOR EACH ROW EXECUTE FUNCTION usage_records_billed_figures_are_fixed();

-- The usage metered before this migration.
INSERT INTO usage_daily (workspace_id, day, label, repository, workflow, jobs, minutes,
                         free_vcpu_minutes, amount)
SELECT workspace_id, (completed_at AT TIME ZONE 'UTC')::date, label, repository, workflow,
       count(*), sum(minutes), sum(free_vcpu_minutes), sum(amount)
FROM usage_records
GROUP BY 1, 2, 3, 4, 5;
