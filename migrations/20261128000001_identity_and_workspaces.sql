-- People, their workspaces and the sessions of the built-in identity.

CREATE TABLE users (
    id               uuid PRIMARY KEY,
    email            text NOT NULL,
    -- Lower-cased, trimmed: what makes two sign-ups "the same e-mail".
    email_normalized text NOT NULL UNIQUE,
    password_hash    text NOT NULL,
    created_at       timestamptz NOT NULL
);

CREATE TABLE workspaces (
    id                      uuid PRIMARY KEY,
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    -- TigerBeetle account ids (u128, stored as uuid): money (micro-cents) and free minutes
    -- (vCPU-minutes).
    money_account_id        uuid NOT NULL UNIQUE,
    free_minutes_account_id uuid NOT NULL UNIQUE,
    created_at              timestamptz NOT NULL
);

CREATE TABLE workspace_members (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at    timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_by_user ON workspace_members (user_id, joined_at);

-- The sign-up credit of SPEC §7: one row per workspace, the TigerBeetle transfer that granted it.
CREATE TABLE free_minute_grants (
    workspace_id uuid PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    transfer_id  uuid NOT NULL UNIQUE,
    vcpu_minutes bigint NOT NULL CHECK (vcpu_minutes > 0),
    granted_at   timestamptz NOT NULL
);

-- Only a SHA-256 of the random token is kept: a database leak does not leak sessions.
CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Sign-in attempts, for rate limiting per e-mail and per IP across all server replicas.
CREATE TABLE sign_in_attempts (
    id               bigserial PRIMARY KEY,
    email_normalized text NOT NULL,
    ip               text NOT NULL,
    succeeded        boolean NOT NULL,
    attempted_at     timestamptz NOT NULL
);
CREATE INDEX sign_in_attempts_by_email ON sign_in_attempts (email_normalized, attempted_at);
CREATE INDEX sign_in_attempts_by_ip ON sign_in_attempts (ip, attempted_at);
