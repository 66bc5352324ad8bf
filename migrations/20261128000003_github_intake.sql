-- GitHub webhook deliveries (stored before the 2xx answer), installations, and the jobs they
-- announce (SPEC §2, §4).

CREATE TABLE github_deliveries (
    delivery_id     text PRIMARY KEY,
    event           text NOT NULL,
    action          text,
    installation_id bigint,
    body            jsonb NOT NULL,
    received_at     timestamptz NOT NULL,
    -- queued: waiting for a worker; processed; ignored (an event Tenki does not use); failed.
    status          text NOT NULL CHECK (status IN ('queued', 'processed', 'ignored', 'failed')),
    processed_at    timestamptz,
    error           text
);
CREATE INDEX github_deliveries_by_status ON github_deliveries (status, received_at);

CREATE TABLE github_installations (
    installation_id bigint PRIMARY KEY,
    account_login   text NOT NULL,
    account_type    text NOT NULL,
    -- NULL until a workspace owner links it (onboarding).
    workspace_id    uuid REFERENCES workspaces (id),
    state           text NOT NULL CHECK (state IN ('active', 'suspended', 'deleted')),
    updated_at      timestamptz NOT NULL
);

CREATE TABLE github_repositories (
    repository_id   bigint PRIMARY KEY,
    installation_id bigint NOT NULL REFERENCES github_installations (installation_id),
    full_name       text NOT NULL,
    private         boolean NOT NULL,
    removed         boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL
);

-- One row per job attempt with a Tenki label. `status` only moves forward
-- (waiting → queued → in_progress → completed), whatever order the deliveries arrive in.
CREATE TABLE github_jobs (
    github_job_id      bigint NOT NULL,
    run_attempt        integer NOT NULL,
    installation_id    bigint,
    repository         text NOT NULL,
    workflow           text NOT NULL,
    label              text NOT NULL,
    status             text NOT NULL CHECK (status IN ('waiting', 'queued', 'in_progress', 'completed')),
    conclusion         text,
    runner_name        text,
    created_at         timestamptz NOT NULL,
    first_delivery_at  timestamptz NOT NULL,
    started_at         timestamptz,
    completed_at       timestamptz,
    metered            boolean NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (github_job_id, run_attempt)
);
CREATE INDEX github_jobs_by_installation ON github_jobs (installation_id, created_at);
