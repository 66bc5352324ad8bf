-- Payments (SPEC §9), first part: the workspace's Stripe customer, its cards as Stripe describes
-- them (never the number), and the Stripe webhook events received.

ALTER TABLE workspaces ADD COLUMN stripe_customer_id text UNIQUE;

-- A card the workspace saved through Stripe Checkout. Rebuilt from Stripe's list of the
-- customer's payment methods after every card event, so events arriving twice or out of order
-- end in the same rows. `removed_at` keeps a removed card's trail.
CREATE TABLE cards (
    stripe_payment_method_id text PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    brand        text NOT NULL,
    last4        text NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month    smallint NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year     smallint NOT NULL,
    added_at     timestamptz NOT NULL,
    removed_at   timestamptz
);
CREATE INDEX cards_of_workspace ON cards (workspace_id) WHERE removed_at IS NULL;

-- Every verified Stripe webhook event, stored before the 2xx with its processing job.
CREATE TABLE stripe_events (
    event_id     text PRIMARY KEY,
    type         text NOT NULL,
    body         jsonb NOT NULL,
    received_at  timestamptz NOT NULL,
    status       text NOT NULL CHECK (status IN ('queued', 'processed', 'ignored', 'failed')),
    processed_at timestamptz,
    last_error   text
);
CREATE INDEX stripe_events_failed ON stripe_events (received_at) WHERE status = 'failed';
