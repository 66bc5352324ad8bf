-- Add-ons bought from the dashboard (SPEC §10): priority support joins macOS and the boost; a
-- cancelled add-on stays on to the end of its month (`ends_at`, the 1st of the next month UTC),
-- and a lowered slot count takes effect then too. Ended add-ons move to `addon_periods`, so the
-- invoices know what was on in any month.
ALTER TABLE workspace_addons DROP CONSTRAINT workspace_addons_addon_check;
ALTER TABLE workspace_addons
    ADD CONSTRAINT workspace_addons_addon_check
        CHECK (addon IN ('macos', 'priority_boost', 'priority_support')),
    ADD COLUMN cancelled_at timestamptz,
    ADD COLUMN ends_at timestamptz,
    ADD CONSTRAINT workspace_addons_cancel_ends CHECK ((cancelled_at IS NULL) = (ends_at IS NULL));

CREATE TABLE addon_periods (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    addon        text NOT NULL,
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, addon, started_at)
);

ALTER TABLE workspace_extra_slots
    ADD COLUMN next_slots integer CHECK (next_slots >= 0),
    ADD COLUMN next_slots_from timestamptz,
    ADD CONSTRAINT workspace_extra_slots_next CHECK ((next_slots IS NULL) = (next_slots_from IS NULL));
