-- What the Jobs page shows of a job besides its workflow: the job's own name (`build`, `lint`),
-- its workflow run, and its page on GitHub (`html_url` of the workflow_job delivery).
ALTER TABLE github_jobs
    ADD COLUMN job_name text,
    ADD COLUMN run_id bigint,
    ADD COLUMN html_url text;

-- The Jobs page pages through a workspace's jobs newest first (keyset on this order).
CREATE INDEX github_jobs_newest_first ON github_jobs (installation_id, created_at DESC, github_job_id DESC, run_attempt DESC);
DROP INDEX github_jobs_by_installation;
