-- Admission (SPEC §5) and the runners Tenki starts for it (SPEC §4).

-- What admission reads about a workspace. The payments issue sells cards and add-ons; until
-- then, and afterwards for support, `tenki admin set-card / set-addon / set-slots` set them.
ALTER TABLE workspaces
    ADD COLUMN payment_method text NOT NULL DEFAULT 'none' CHECK (payment_method IN ('none', 'valid')),
    ADD COLUMN suspended_at timestamptz;

CREATE TABLE workspace_addons (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    addon        text NOT NULL CHECK (addon IN ('macos', 'priority_boost')),
    active_since timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, addon)
);

-- Concurrency slots bought on top of the 40 included per runner class.
CREATE TABLE workspace_extra_slots (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    runner_class text NOT NULL CHECK (runner_class IN ('x64', 'macos')),
    slots        integer NOT NULL CHECK (slots >= 0),
    PRIMARY KEY (workspace_id, runner_class)
);

-- Where each job stands in admission: pending (not looked at yet), waiting (for a slot or the
-- platform's capacity), blocked (a gate: free minutes, macOS add-on, suspension), admitted (holds
-- a slot), done (released its slot or never needed one). Jobs from before runners existed are done.
ALTER TABLE github_jobs
    ADD COLUMN admission text NOT NULL DEFAULT 'done'
        CHECK (admission IN ('pending', 'waiting', 'blocked', 'admitted', 'done')),
    ADD COLUMN admission_reason text,
    ADD COLUMN admitted_at timestamptz,
    -- Runners that failed to start for this job; after a few, the job shows why and stops trying.
    ADD COLUMN runner_failures integer NOT NULL DEFAULT 0;
ALTER TABLE github_jobs ALTER COLUMN admission SET DEFAULT 'pending';
CREATE INDEX github_jobs_in_admission ON github_jobs (created_at)
    WHERE admission IN ('pending', 'waiting', 'blocked');

-- One row per held concurrency slot. The admission pass that inserts it holds a transaction-wide
-- advisory lock and counts the rows of the class first, so the limit is never exceeded; the row
-- goes in the same transaction as the job's `admitted` state and its provisioning task.
CREATE TABLE runner_slots (
    github_job_id bigint NOT NULL,
    run_attempt   integer NOT NULL,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    runner_class  text NOT NULL CHECK (runner_class IN ('x64', 'macos')),
    vcpus         integer NOT NULL CHECK (vcpus > 0),
    acquired_at   timestamptz NOT NULL,
    PRIMARY KEY (github_job_id, run_attempt),
    FOREIGN KEY (github_job_id, run_attempt) REFERENCES github_jobs (github_job_id, run_attempt)
);
CREATE INDEX runner_slots_by_workspace ON runner_slots (workspace_id, runner_class);

-- Every runner Tenki asked for. Its name is derived from (workspace, job, attempt, try), so a
-- retried provisioning task finds the runner it started before.
CREATE TABLE runners (
    name             text PRIMARY KEY,
    workspace_id     uuid NOT NULL REFERENCES workspaces (id),
    installation_id  bigint NOT NULL,
    label            text NOT NULL,
    namespace        text NOT NULL,
    -- Where the runner is registered on GitHub: `orgs/<login>` or `repos/<owner>/<name>`.
    github_scope     text NOT NULL,
    -- The job whose admission asked for it; GitHub may give it any queued job of its label.
    github_job_id    bigint NOT NULL,
    run_attempt      integer NOT NULL,
    try              integer NOT NULL,
    github_runner_id bigint,
    -- requested: registered or about to be; starting: its Kubernetes objects exist; running: it
    -- took a job; finished: its job completed; failed: it could not start; deleted: gone.
    state            text NOT NULL CHECK (state IN ('requested', 'starting', 'running', 'finished', 'failed', 'deleted')),
    failure          text,
    -- The job it actually ran (from GitHub's in_progress delivery).
    ran_github_job_id bigint,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    online_at        timestamptz,
    finished_at      timestamptz,
    deleted_at       timestamptz,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX runners_live ON runners (workspace_id, created_at) WHERE state <> 'deleted';
CREATE INDEX runners_by_job ON runners (github_job_id, run_attempt);

-- The runner a billed job ran on (SPEC §6: only Tenki's runners are billed).
ALTER TABLE usage_records ADD COLUMN runner_name text;
