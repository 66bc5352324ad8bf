-- Review fixes: premium is a rule, discounts are versioned like prices, a completed job that is
-- not billed says why, delivery bodies can be deleted after 30 days, sign-ups are rate limited.

-- Premium (SPEC §3): the surcharge of every x64 price is exactly 50 % of it; macOS has none.
-- Enforced here for the catalog and for custom workspace prices alike: a price given without
-- a surcharge gets it, one given with another surcharge is refused.
CREATE FUNCTION enforce_premium_rule() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sku_class text;
BEGIN
    SELECT class INTO sku_class FROM runner_skus WHERE label = NEW.label;
    IF sku_class = 'x64' THEN
        IF NEW.price_per_minute % 2 <> 0 THEN
            RAISE EXCEPTION 'the price of % must be an even number of micro-cents, so that its premium surcharge (50 %%) is exact', NEW.label
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.premium_surcharge_per_minute IS NOT NULL
           AND NEW.premium_surcharge_per_minute <> NEW.price_per_minute / 2 THEN
            RAISE EXCEPTION 'the premium surcharge of % must be 50 %% of its price (%), not %',
                NEW.label, NEW.price_per_minute / 2, NEW.premium_surcharge_per_minute
                USING ERRCODE = 'check_violation';
        END IF;
        NEW.premium_surcharge_per_minute := NEW.price_per_minute / 2;
    ELSIF NEW.premium_surcharge_per_minute IS NOT NULL THEN
        RAISE EXCEPTION '% has no premium variant: its premium surcharge must be empty', NEW.label
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER runner_prices_premium_rule BEFORE INSERT OR UPDATE ON runner_prices
    FOR EACH ROW EXECUTE FUNCTION enforce_premium_rule();
CREATE TRIGGER workspace_prices_premium_rule BEFORE INSERT OR UPDATE ON workspace_prices
    FOR EACH ROW EXECUTE FUNCTION enforce_premium_rule();
-- Existing custom prices without a surcharge get theirs.
UPDATE workspace_prices SET premium_surcharge_per_minute = NULL
    WHERE label IN (SELECT label FROM runner_skus WHERE class = 'x64');

-- A discount applies from `active_from` until the next row of the same workspace, like prices:
-- a job is billed at the discount in force when it started, and its usage record keeps it.
CREATE TABLE workspace_discounts (
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    active_from   timestamptz NOT NULL,
    basis_points  integer NOT NULL CHECK (basis_points BETWEEN 0 AND 5000),
    PRIMARY KEY (workspace_id, active_from)
);
INSERT INTO workspace_discounts (workspace_id, active_from, basis_points)
    SELECT id, '-infinity', discount_basis_points FROM workspaces WHERE discount_basis_points <> 0;
ALTER TABLE workspaces DROP COLUMN discount_basis_points;

-- A completed job that is not billed and never will be (it never ran on a runner, its label is
-- not offered, its usage was reversed, ...), in the customer's words. Set once, instead of
-- retrying a delivery that can never succeed.
ALTER TABLE github_jobs ADD COLUMN not_billed_reason text;

-- Retention deletes delivery bodies after 30 days and keeps the id and outcome.
ALTER TABLE github_deliveries ALTER COLUMN body DROP NOT NULL;
CREATE INDEX github_deliveries_by_received_at ON github_deliveries (received_at) WHERE body IS NOT NULL;

-- Sign-ups per client address, for the sign-up rate limit (argon2 is expensive).
CREATE TABLE sign_up_attempts (
    id           bigserial PRIMARY KEY,
    ip           text NOT NULL,
    attempted_at timestamptz NOT NULL
);
CREATE INDEX sign_up_attempts_by_ip ON sign_up_attempts (ip, attempted_at);
CREATE INDEX sign_in_attempts_by_time ON sign_in_attempts (attempted_at);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
