-- Storage (SPEC §11): one sample per workspace and day, from the storage service.
CREATE TABLE storage_samples (
    workspace_id        uuid NOT NULL REFERENCES workspaces (id),
    day                 date NOT NULL,
    -- Artifacts and data: billed at $0.20 per GB-month of the month's daily average.
    artifact_bytes      bigint NOT NULL CHECK (artifact_bytes >= 0),
    -- The dependency cache: 10 GB included, never billed.
    cache_bytes         bigint NOT NULL CHECK (cache_bytes >= 0),
    cache_evicted_bytes bigint NOT NULL DEFAULT 0 CHECK (cache_evicted_bytes >= 0),
    PRIMARY KEY (workspace_id, day)
);

ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_kind_check;
ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_kind_check
    CHECK (kind IN ('usage', 'free_usage', 'addon', 'slots', 'storage', 'carried'));
