-- Annual prepayment of an add-on, set by sales (SPEC §10: boost $499/year, macOS $399/year): the
-- invoice of its first month carries the year's price, and its twelve months bill the add-on at $0.
CREATE TABLE addon_prepayments (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    addon        text NOT NULL CHECK (addon IN ('macos', 'priority_boost')),
    -- The first day of the first month covered, and of the month after the last.
    starts       date NOT NULL CHECK (extract(day FROM starts) = 1),
    ends         date NOT NULL CHECK (ends > starts),
    price        bigint NOT NULL CHECK (price > 0),
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, addon, starts)
);
