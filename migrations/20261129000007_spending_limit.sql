-- The spending limit (SPEC §13, Settings): alerts at 50, 80 and 100 % of it, and with the hard
-- cap no new runner starts once the month's usage reaches it.
ALTER TABLE workspaces
    ADD COLUMN spending_limit bigint CHECK (spending_limit > 0),
    ADD COLUMN spending_hard_cap boolean NOT NULL DEFAULT false;
