-- The audit log (SPEC §1, issue "identity"): who changed what in a workspace, and when. Written in
-- the transaction of the change it records; read by owners and admins on Settings.
CREATE TABLE audit_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    -- NULL for Tenki's operators (`tenki admin …`) and GitHub's or Stripe's deliveries.
    actor_id     uuid REFERENCES users (id) ON DELETE SET NULL,
    -- Kept as written at the time: the person may change their address or leave.
    actor        text NOT NULL,
    action       text NOT NULL,
    detail       text NOT NULL,
    at           timestamptz NOT NULL
);
CREATE INDEX audit_events_of_workspace ON audit_events (workspace_id, at DESC, id DESC);
