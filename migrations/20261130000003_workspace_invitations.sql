-- Invitations to join a workspace (SPEC §1: a person belongs to several workspaces with roles):
-- sent as a link with a secret token, of which only the SHA-256 is kept; accepted once, by the
-- person signed in with the invited e-mail, before it expires.
CREATE TABLE workspace_invitations (
    token_hash       bytea PRIMARY KEY,
    workspace_id     uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email_normalized text NOT NULL,
    role             text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    invited_by       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    accepted_at      timestamptz
);
CREATE INDEX workspace_invitations_open ON workspace_invitations (workspace_id, created_at)
    WHERE accepted_at IS NULL;
