-- The runner catalog (SPEC §3), versioned prices, workspace discounts and custom prices, and the
-- usage record of every metered job (SPEC §6). Money is bigint micro-cents (1/1,000,000 cent).

CREATE TABLE runner_skus (
    label     text PRIMARY KEY,
    class     text NOT NULL CHECK (class IN ('x64', 'macos')),
    vcpus     integer NOT NULL CHECK (vcpus > 0),
    memory_gb integer NOT NULL CHECK (memory_gb > 0),
    os        text NOT NULL,
    arch      text NOT NULL
);

-- A price applies from `active_from` until the next row of the same label. A change is a new
-- row: past usage keeps the price it was billed at.
CREATE TABLE runner_prices (
    label                        text NOT NULL REFERENCES runner_skus (label),
    active_from                  timestamptz NOT NULL,
    price_per_minute             bigint NOT NULL CHECK (price_per_minute >= 0),
    -- NULL: no premium variant (macOS).
    premium_surcharge_per_minute bigint CHECK (premium_surcharge_per_minute >= 0),
    PRIMARY KEY (label, active_from)
);

INSERT INTO runner_skus (label, class, vcpus, memory_gb, os, arch) VALUES
    ('tenki-standard-2c',  'x64',   2,   4, 'linux', 'x64'),
    ('tenki-standard-4c',  'x64',   4,   8, 'linux', 'x64'),
    ('tenki-standard-8c',  'x64',   8,  16, 'linux', 'x64'),
    ('tenki-standard-16c', 'x64',  16,  32, 'linux', 'x64'),
    ('tenki-standard-32c', 'x64',  32,  64, 'linux', 'x64'),
    ('tenki-standard-64c', 'x64',  64, 256, 'linux', 'x64'),
    ('tenki-macos-m4-6c',  'macos', 6,  16, 'macos', 'arm64'),
    ('tenki-macos-m4-12c', 'macos', 12, 32, 'macos', 'arm64');

-- $0.0015 per vCPU-minute on Linux (premium +50%), $0.02 per vCPU-minute on macOS.
INSERT INTO runner_prices (label, active_from, price_per_minute, premium_surcharge_per_minute) VALUES
    ('tenki-standard-2c',  '2026-01-01T00:00:00Z',   300000,  150000),
    ('tenki-standard-4c',  '2026-01-01T00:00:00Z',   600000,  300000),
    ('tenki-standard-8c',  '2026-01-01T00:00:00Z',  1200000,  600000),
    ('tenki-standard-16c', '2026-01-01T00:00:00Z',  2400000, 1200000),
    ('tenki-standard-32c', '2026-01-01T00:00:00Z',  4800000, 2400000),
    ('tenki-standard-64c', '2026-01-01T00:00:00Z',  9600000, 4800000),
    ('tenki-macos-m4-6c',  '2026-01-01T00:00:00Z', 12000000,    NULL),
    ('tenki-macos-m4-12c', '2026-01-01T00:00:00Z', 24000000,    NULL);

-- Sales may discount all usage of a workspace by 0–50 % (in basis points: 5000 = 50 %).
ALTER TABLE workspaces
    ADD COLUMN discount_basis_points integer NOT NULL DEFAULT 0
        CHECK (discount_basis_points BETWEEN 0 AND 5000);

-- Enterprise prices per workspace and label; they take precedence over the catalog.
CREATE TABLE workspace_prices (
    workspace_id                 uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    label                        text NOT NULL REFERENCES runner_skus (label),
    active_from                  timestamptz NOT NULL,
    price_per_minute             bigint NOT NULL CHECK (price_per_minute >= 0),
    premium_surcharge_per_minute bigint CHECK (premium_surcharge_per_minute >= 0),
    PRIMARY KEY (workspace_id, label, active_from)
);

-- One row per metered job, keyed by the GitHub job id and run attempt. It keeps what the job was
-- billed at (SKU, prices, discount) and the TigerBeetle transfers that moved the money and
-- the free minutes.
CREATE TABLE usage_records (
    job_key                      text PRIMARY KEY,
    workspace_id                 uuid NOT NULL REFERENCES workspaces (id),
    label                        text NOT NULL,
    sku_label                    text NOT NULL REFERENCES runner_skus (label),
    premium                      boolean NOT NULL,
    vcpus                        integer NOT NULL,
    repository                   text NOT NULL,
    workflow                     text NOT NULL,
    started_at                   timestamptz NOT NULL,
    completed_at                 timestamptz NOT NULL CHECK (completed_at >= started_at),
    minutes                      bigint NOT NULL CHECK (minutes >= 0),
    free_vcpu_minutes            bigint NOT NULL CHECK (free_vcpu_minutes >= 0),
    price_per_minute             bigint NOT NULL,
    premium_surcharge_per_minute bigint NOT NULL,
    discount_basis_points        integer NOT NULL,
    amount                       bigint NOT NULL CHECK (amount >= 0),
    free_minutes_transfer_id     uuid,
    charge_transfer_id           uuid,
    metered_at                   timestamptz NOT NULL
);
CREATE INDEX usage_records_by_workspace_time ON usage_records (workspace_id, completed_at);

-- Admin adjustments (usage reversals, promotional credits), with who did it and why. A reversed
-- usage record is deleted; this row and the ledger keep the trail.
CREATE TABLE ledger_adjustments (
    idempotency_key text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('usage_reversal', 'promo_credit', 'promo_deduction')),
    workspace_id    uuid NOT NULL REFERENCES workspaces (id),
    job_key         text,
    amount          bigint NOT NULL CHECK (amount >= 0),
    free_vcpu_minutes bigint NOT NULL DEFAULT 0,
    transfer_ids    uuid[] NOT NULL,
    reason          text NOT NULL CHECK (length(reason) > 0),
    admin_email     text NOT NULL CHECK (length(admin_email) > 0),
    created_at      timestamptz NOT NULL
);
