-- Invoices and the monthly cycle (SPEC §9). An invoice is a local state machine, one per
-- (workspace, month); every Stripe id is saved before the next step, so a crash at any point
-- resumes without a second invoice, item or charge.
CREATE TABLE invoices (
    id                uuid PRIMARY KEY,
    workspace_id      uuid NOT NULL REFERENCES workspaces (id),
    -- The first day of the month billed.
    month             date NOT NULL CHECK (extract(day FROM month) = 1),
    state             text NOT NULL CHECK (state IN ('draft', 'lines_built', 'stripe_created',
                          'items_added', 'finalized', 'paid', 'payment_failed', 'uncollectible',
                          'nothing_due', 'carried')),
    -- Σ of the lines in cents (each line rounded half up from micro-cents).
    total_cents       bigint,
    stripe_invoice_id text UNIQUE,
    hosted_invoice_url text,
    invoice_pdf       text,
    -- Payment attempts made; the next one is due at `next_attempt_at` (3, 5, 7, 14, 21 days
    -- after the first failure).
    attempts          integer NOT NULL DEFAULT 0,
    first_failed_at   timestamptz,
    next_attempt_at   timestamptz,
    last_error        text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    paid_at           timestamptz,
    -- A `carried` invoice: the later invoice that took its amount.
    carried_into      uuid REFERENCES invoices (id),
    UNIQUE (workspace_id, month)
);
CREATE INDEX invoices_in_progress ON invoices (updated_at)
    WHERE state NOT IN ('paid', 'uncollectible', 'nothing_due', 'carried');

CREATE TABLE invoice_lines (
    invoice_id     uuid NOT NULL REFERENCES invoices (id),
    position       integer NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('usage', 'free_usage', 'addon', 'slots', 'carried')),
    description    text NOT NULL,
    quantity       bigint NOT NULL,
    -- Exact, and as charged (rounded half up to the cent).
    amount_micro_cents bigint NOT NULL CHECK (amount_micro_cents >= 0),
    amount_cents   bigint NOT NULL CHECK (amount_cents >= 0),
    stripe_invoice_item_id text UNIQUE,
    PRIMARY KEY (invoice_id, position)
);

-- A payment Stripe collected for an invoice; its ledger transfers derive from the invoice id.
CREATE TABLE payments (
    invoice_id   uuid PRIMARY KEY REFERENCES invoices (id),
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    fee_cents    bigint NOT NULL CHECK (fee_cents >= 0),
    received_at  timestamptz NOT NULL
);

-- What the owner is told (payment failed, suspended): the Billing page's Notifications, and
-- e-mail when TENKI_SMTP_URL is configured.
CREATE TABLE notifications (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    kind         text NOT NULL,
    message      text NOT NULL,
    created_at   timestamptz NOT NULL,
    -- Unique per cause, so a retried step notifies once.
    dedupe_key   text NOT NULL UNIQUE
);

-- Why a workspace is suspended, in the customer's words.
ALTER TABLE workspaces ADD COLUMN suspended_reason text;

-- The slot count a lowering replaced, and until when it held: the month before it is billed at it.
ALTER TABLE workspace_extra_slots
    ADD COLUMN previous_slots integer,
    ADD COLUMN previous_until timestamptz;
