-- Usage rollups (ADR 0009): what the Usage page, the Overview's month-to-date cost and the
-- projection read, so they cost the same at a million jobs a month as at ten. Two grains, each
-- as coarse as what reads it allows:
-- - usage_daily: per workspace, UTC day and label (the daily chart, the per-label table, the
--   month's totals and month-to-date cost): at most 31 rows a month per label;
-- - usage_monthly: per workspace, UTC month, label, repository and workflow (the per-repository
--   and per-workflow tables): one row a month per combination, however many days it ran.
-- (One daily rollup by all five held 24,800 rows for a large customer's month, and summing
-- them took the Usage page 68-73 ms at p95: docs/benchmarks.md.)
--
-- Both are kept by statement-level triggers on usage_records, so every statement that inserts or
-- deletes usage records (metering one job or a batch, a usage reversal, a backfill) changes them
-- in the same statement and transaction: they are never behind, and a retried job (its insert
-- refused by the job_key primary key, or rolled back) never counts twice.
CREATE TABLE usage_daily (
    workspace_id      uuid NOT NULL REFERENCES workspaces (id),
    day               date NOT NULL,
    label             text NOT NULL,
    jobs              bigint NOT NULL CHECK (jobs > 0),
    minutes           bigint NOT NULL CHECK (minutes >= 0),
    free_vcpu_minutes bigint NOT NULL CHECK (free_vcpu_minutes >= 0),
    -- Micro-cents charged.
    amount            bigint NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (workspace_id, day, label)
);

CREATE TABLE usage_monthly (
    workspace_id      uuid NOT NULL REFERENCES workspaces (id),
    -- The month's first day.
    month             date NOT NULL CHECK (extract(day FROM month) = 1),
    label             text NOT NULL,
    repository        text NOT NULL,
    workflow          text NOT NULL,
    jobs              bigint NOT NULL CHECK (jobs > 0),
    minutes           bigint NOT NULL CHECK (minutes >= 0),
    free_vcpu_minutes bigint NOT NULL CHECK (free_vcpu_minutes >= 0),
    amount            bigint NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (workspace_id, month, label, repository, workflow)
);

-- Adds the records a statement inserted. Rows are upserted in key order, so two statements
-- touching the same rollups lock them in the same order.
CREATE FUNCTION usage_rollups_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_daily AS d (workspace_id, day, label, jobs, minutes, free_vcpu_minutes,
                                  amount)
    SELECT workspace_id, (completed_at AT TIME ZONE 'UTC')::date, label,
           count(*), sum(minutes), sum(free_vcpu_minutes), sum(amount)
    FROM inserted
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (workspace_id, day, label) DO UPDATE
    SET jobs = d.jobs + excluded.jobs,
        minutes = d.minutes + excluded.minutes,
        free_vcpu_minutes = d.free_vcpu_minutes + excluded.free_vcpu_minutes,
        amount = d.amount + excluded.amount;
    INSERT INTO usage_monthly AS m (workspace_id, month, label, repository, workflow, jobs,
                                    minutes, free_vcpu_minutes, amount)
    SELECT workspace_id, date_trunc('month', completed_at AT TIME ZONE 'UTC')::date, label,
           repository, workflow, count(*), sum(minutes), sum(free_vcpu_minutes), sum(amount)
    FROM inserted
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (workspace_id, month, label, repository, workflow) DO UPDATE
    SET jobs = m.jobs + excluded.jobs,
        minutes = m.minutes + excluded.minutes,
        free_vcpu_minutes = m.free_vcpu_minutes + excluded.free_vcpu_minutes,
        amount = m.amount + excluded.amount;
    RETURN NULL;
END $$;

-- Takes away the records a statement deleted; a rollup left with no job goes.
CREATE FUNCTION usage_rollups_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH removed AS (
        SELECT workspace_id, (completed_at AT TIME ZONE 'UTC')::date AS day, label,
               count(*) AS jobs, sum(minutes) AS minutes,
               sum(free_vcpu_minutes) AS free_vcpu_minutes, sum(amount) AS amount
        FROM deleted
        GROUP BY 1, 2, 3
    ), lowered AS (
        UPDATE usage_daily d
        SET jobs = d.jobs - r.jobs,
            minutes = d.minutes - r.minutes,
            free_vcpu_minutes = d.free_vcpu_minutes - r.free_vcpu_minutes,
            amount = d.amount - r.amount
        FROM removed r
        WHERE (d.workspace_id, d.day, d.label) = (r.workspace_id, r.day, r.label)
          AND d.jobs > r.jobs
    )
    DELETE FROM usage_daily d
    USING removed r
    WHERE (d.workspace_id, d.day, d.label) = (r.workspace_id, r.day, r.label)
      AND d.jobs <= r.jobs;
    WITH removed AS (
        SELECT workspace_id, date_trunc('month', completed_at AT TIME ZONE 'UTC')::date AS month,
               label, repository, workflow, count(*) AS jobs, sum(minutes) AS minutes,
               sum(free_vcpu_minutes) AS free_vcpu_minutes, sum(amount) AS amount
        FROM deleted
        GROUP BY 1, 2, 3, 4, 5
    ), lowered AS (
        UPDATE usage_monthly m
        SET jobs = m.jobs - r.jobs,
            minutes = m.minutes - r.minutes,
            free_vcpu_minutes = m.free_vcpu_minutes - r.free_vcpu_minutes,
            amount = m.amount - r.amount
        FROM removed r
        WHERE (m.workspace_id, m.month, m.label, m.repository, m.workflow)
            = (r.workspace_id, r.month, r.label, r.repository, r.workflow)
          AND m.jobs > r.jobs
    )
    DELETE FROM usage_monthly m
    USING removed r
    WHERE (m.workspace_id, m.month, m.label, m.repository, m.workflow)
        = (r.workspace_id, r.month, r.label, r.repository, r.workflow)
      AND m.jobs <= r.jobs;
    RETURN NULL;
END $$;

CREATE TRIGGER usage_rollups_add AFTER INSERT ON usage_records
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION usage_rollups_add();
CREATE TRIGGER usage_rollups_remove AFTER DELETE ON usage_records
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION usage_rollups_remove();

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
INSERT INTO usage_daily (workspace_id, day, label, jobs, minutes, free_vcpu_minutes, amount)
SELECT workspace_id, (completed_at AT TIME ZONE 'UTC')::date, label,
       count(*), sum(minutes), sum(free_vcpu_minutes), sum(amount)
FROM usage_records
GROUP BY 1, 2, 3;
INSERT INTO usage_monthly (workspace_id, month, label, repository, workflow, jobs, minutes,
                           free_vcpu_minutes, amount)
SELECT workspace_id, date_trunc('month', completed_at AT TIME ZONE 'UTC')::date, label,
       repository, workflow, count(*), sum(minutes), sum(free_vcpu_minutes), sum(amount)
FROM usage_records
GROUP BY 1, 2, 3, 4, 5;
