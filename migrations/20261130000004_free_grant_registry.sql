-- Free minutes once per verified identity (SPEC §7): an e-mail address is verified by a link sent
-- to it, and the 1,000 free minutes are granted when a workspace has a verified owner, once per
-- grant key. Each key (the normalized verified e-mail, the GitHub account of a linked
-- installation, a card's fingerprint) is registered once, to the workspace whose grant it made.

ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
-- People who signed up before verification existed got their grant at sign-up; they count as
-- verified rather than being asked again.
UPDATE users SET email_verified_at = created_at;

-- A verification link's token: only its SHA-256 is kept; it works until it expires, for the
-- address it was sent to.
CREATE TABLE email_verifications (
    token_hash       bytea PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email_normalized text NOT NULL,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    used_at          timestamptz
);
CREATE INDEX email_verifications_of_user ON email_verifications (user_id, created_at);

-- E-mail to one person (verification links, invitations): the outbox, written in the transaction
-- of what caused it and sent by the e-mail cron. The link is kept as a path; the cron prefixes
-- the dashboard's address.
CREATE TABLE outbox_emails (
    id          uuid PRIMARY KEY,
    to_address  text NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL,
    link_path   text NOT NULL,
    created_at  timestamptz NOT NULL,
    sent_at     timestamptz,
    -- A sender claims an e-mail until then: two runs of the cron never send it twice.
    try_after   timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text
);
CREATE INDEX outbox_emails_to_send ON outbox_emails (try_after) WHERE sent_at IS NULL;
CREATE INDEX outbox_emails_to_address ON outbox_emails (to_address, created_at);

CREATE TABLE free_grant_keys (
    key           text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('email', 'github_account', 'card')),
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    registered_at timestamptz NOT NULL
);

-- Which key's grant a workspace got, and why a workspace got none (shown on its Overview).
ALTER TABLE free_minute_grants ADD COLUMN grant_key text;
ALTER TABLE workspaces ADD COLUMN free_grant_refusal text;

-- The GitHub account's id: a login can be renamed, the id cannot.
ALTER TABLE github_installations ADD COLUMN account_id bigint;

-- A card's fingerprint (Stripe's, the same for the same card number in every account).
ALTER TABLE cards ADD COLUMN fingerprint text;

-- The e-mail keys of the grants made before the registry, from each workspace's first owner.
INSERT INTO free_grant_keys (key, kind, workspace_id, registered_at)
SELECT DISTINCT ON (g.workspace_id)
       'email:' || CASE
           WHEN split_part(u.email_normalized, '@', 2) IN ('gmail.com', 'googlemail.com')
               THEN replace(split_part(split_part(u.email_normalized, '@', 1), '+', 1), '.', '') || '@gmail.com'
           ELSE split_part(split_part(u.email_normalized, '@', 1), '+', 1) || '@' || split_part(u.email_normalized, '@', 2)
       END,
       'email', g.workspace_id, g.granted_at
FROM free_minute_grants g
JOIN workspace_members m ON m.workspace_id = g.workspace_id AND m.role = 'owner'
JOIN users u ON u.id = m.user_id
ORDER BY g.workspace_id, m.joined_at
ON CONFLICT (key) DO NOTHING;
UPDATE free_minute_grants g SET grant_key = k.key
FROM free_grant_keys k WHERE k.workspace_id = g.workspace_id;
