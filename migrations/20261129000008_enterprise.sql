-- Enterprise (SPEC §12): inquiries from the dashboard, and an audit of what sales and support
-- changed on a workspace (discounts, custom prices), with who and why.
CREATE TABLE enterprise_inquiries (
    id           uuid PRIMARY KEY,
    workspace_id uuid REFERENCES workspaces (id),
    company      text NOT NULL CHECK (length(company) BETWEEN 1 AND 200),
    email        text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    message      text NOT NULL CHECK (length(message) <= 5000),
    created_at   timestamptz NOT NULL
);

CREATE TABLE admin_audit (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    action       text NOT NULL,
    detail       text NOT NULL,
    reason       text NOT NULL,
    admin_email  text NOT NULL,
    at           timestamptz NOT NULL
);
CREATE INDEX admin_audit_of_workspace ON admin_audit (workspace_id, at);
