-- People signed in by Ory Kratos: unique by (provider, subject), the Kratos identity id. The
-- built-in identity keeps its rows as they are: provider 'built_in', no subject, a password hash.
ALTER TABLE users
    ADD COLUMN provider text NOT NULL DEFAULT 'built_in'
        CHECK (provider IN ('built_in', 'kratos')),
    ADD COLUMN subject text,
    ALTER COLUMN password_hash DROP NOT NULL,
    ADD CONSTRAINT users_provider_has_its_credentials CHECK (
        (provider = 'built_in' AND subject IS NULL AND password_hash IS NOT NULL)
        OR (provider = 'kratos' AND subject IS NOT NULL AND password_hash IS NULL)
    );

CREATE UNIQUE INDEX users_provider_subject ON users (provider, subject) WHERE subject IS NOT NULL;
