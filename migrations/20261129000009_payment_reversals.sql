-- Payments undone after they were recorded (SPEC §9): refunds Tenki gave from Stripe, disputes
-- the customer's bank opened, and reversals support made with `tenki admin reverse-payment`.
-- Each is posted to the ledger once: its transfer id derives from `key`.

-- How Stripe names the money of a payment, so that its refunds and disputes find it.
ALTER TABLE payments ADD COLUMN stripe_payment_intent text UNIQUE;

CREATE TABLE payment_reversals (
    -- 'refund:{charge}:{refunded so far}', 'dispute:{dispute}' or 'admin:{invoice}'.
    key          text PRIMARY KEY,
    invoice_id   uuid NOT NULL REFERENCES payments (invoice_id),
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    -- refund: Tenki gave the money back, the customer owes nothing (REVENUE → STRIPE_RECEIVABLE).
    -- dispute, admin: the payment is undone, the customer owes it again (USER → STRIPE_RECEIVABLE).
    kind         text NOT NULL CHECK (kind IN ('refund', 'dispute', 'admin')),
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    reason       text NOT NULL,
    admin_email  text,
    transfer_id  uuid NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX payment_reversals_of_workspace ON payment_reversals (workspace_id);

-- A payment undone by a dispute or by support: the invoice is owed again.
ALTER TABLE invoices DROP CONSTRAINT invoices_state_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_state_check
    CHECK (state IN ('draft', 'lines_built', 'stripe_created', 'items_added', 'finalized', 'paid',
                     'payment_failed', 'uncollectible', 'nothing_due', 'carried', 'reversed'));
