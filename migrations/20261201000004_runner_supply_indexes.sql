-- Provisioning counts, per installation and label, the runners no job took yet and the admitted
-- jobs still waiting for one (runners::runner_for): both sets are small at any moment, while
-- runners and jobs keep every row they ever had. These partial indexes hold only the small sets.
CREATE INDEX runners_untaken ON runners (installation_id)
    WHERE state IN ('requested', 'starting') AND ran_github_job_id IS NULL;
CREATE INDEX github_jobs_admitted_waiting ON github_jobs (installation_id)
    WHERE admission = 'admitted' AND status IN ('waiting', 'queued');
