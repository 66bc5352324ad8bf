-- A grant taken back: a GitHub organization linked after the grant had brought free minutes to
-- another workspace already. What was left of the grant went back (a balancing transfer, code
-- 3005); what the workspace had used stays used.
ALTER TABLE free_minute_grants
    ADD COLUMN withdrawal_due_at timestamptz,
    ADD COLUMN withdrawn_vcpu_minutes bigint CHECK (withdrawn_vcpu_minutes >= 0),
    ADD COLUMN withdrawn_at timestamptz;
