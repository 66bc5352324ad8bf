-- Installations requested from Tenki that wait for an organization owner's approval
-- (setup_action=request): which GitHub user asked, from which workspace. GitHub names the
-- requester in the `installation.created` delivery that follows the approval, and the
-- installation is then linked to the workspace the request came from.

CREATE TABLE github_install_requests (
    -- Lower-cased GitHub login of the requester, confirmed with their own token.
    github_login text NOT NULL,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    requested_at timestamptz NOT NULL,
    PRIMARY KEY (github_login, workspace_id)
);
