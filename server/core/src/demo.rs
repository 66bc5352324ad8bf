//! Demo data for the sandbox: a month of realistic jobs for a workspace, in the shape GitHub
//! would have sent them (`tenki demo` delivers them through the same intake as real deliveries),
//! so a newcomer sees a living Jobs and Usage page.

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use uuid::Uuid;

use crate::metering::JobKey;

/// The GitHub organization the demo's jobs come from.
pub const ACCOUNT: &str = "acme";
/// Its repositories (`acme/<name>`).
pub const REPOSITORIES: [&str; 4] = ["web", "api", "mobile", "infra"];

/// Labels demo jobs run on, with their weight (out of 100).
const LABELS: [(&str, u32); 7] = [
    ("tenki-standard-2c", 38),
    ("tenki-standard-4c", 28),
    ("tenki-standard-8c", 14),
    ("tenki-standard-4c-premium", 6),
    ("tenki-standard-16c", 6),
    ("tenki-macos-m4-6c", 5),
    ("tenki-standard-2c-premium", 3),
];
/// Workflows and the jobs in each.
const WORKFLOWS: [(&str, &[&str]); 4] = [
    ("CI", &["build", "test", "lint"]),
    ("Release", &["package", "publish"]),
    ("Nightly", &["e2e", "benchmarks"]),
    ("Docs", &["docs"]),
];

/// One demo job: what GitHub would have said about it, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoJob {
    pub key: JobKey,
    pub run_id: i64,
    pub label: String,
    /// `acme/<name>`.
    pub repository: String,
    pub workflow: String,
    pub job_name: String,
    /// When GitHub queued it.
    pub created_at: DateTime<Utc>,
    /// When Tenki received its `queued` delivery.
    pub delivered_at: DateTime<Utc>,
    /// When a runner took it.
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    /// success (most), failure or cancelled.
    pub conclusion: &'static str,
}

/// `days` days of jobs ending before `now` for `workspace_id`, oldest first. The same workspace
/// gives the same jobs, so running the demo twice delivers nothing new.
pub fn jobs(workspace_id: Uuid, days: i64, now: DateTime<Utc>) -> Vec<DemoJob> {
    let seed = u64::from_be_bytes(workspace_id.as_bytes()[..8].try_into().unwrap_or([0; 8]));
    let mut rng = StdRng::seed_from_u64(seed);
    // Job ids in a range of their own per workspace, clear of GitHub's real ids.
    let base_id = 9_000_000_000_000 + i64::try_from(seed % 1_000_000).unwrap_or(0) * 100_000;
    let mut jobs = Vec::new();
    for day in (0..days).rev() {
        let day_start = now - Duration::days(day + 1);
        let jobs_today = rng.gen_range(12..36);
        let mut today = Vec::new();
        for _ in 0..jobs_today {
            let created_at = day_start + Duration::seconds(rng.gen_range(0..86_400));
            // GitHub takes a second or a few to send the job; a runner takes it 8–40 s later.
            let delivered_at = created_at + Duration::milliseconds(rng.gen_range(400..6_000));
            let started_at = delivered_at + Duration::seconds(rng.gen_range(8..40));
            // Mostly short jobs, some long ones: 1–10 minutes, 1 in 6 up to 40.
            let seconds = if rng.gen_ratio(1, 6) {
                rng.gen_range(600..2_400)
            } else {
                rng.gen_range(40..600)
            };
            let completed_at = started_at + Duration::seconds(seconds);
            let (workflow, names) = WORKFLOWS[rng.gen_range(0..WORKFLOWS.len())];
            let conclusion = match rng.gen_range(0..100) {
                0..=6 => "failure",
                7..=8 => "cancelled",
                _ => "success",
            };
            let job = DemoJob {
                key: JobKey {
                    github_job_id: 0,
                    run_attempt: 1,
                },
                run_id: 0,
                label: pick_label(&mut rng).to_owned(),
                repository: format!(
                    "{ACCOUNT}/{}",
                    REPOSITORIES[rng.gen_range(0..REPOSITORIES.len())]
                ),
                workflow: workflow.to_owned(),
                job_name: names[rng.gen_range(0..names.len())].to_owned(),
                created_at,
                delivered_at,
                started_at,
                completed_at,
                conclusion,
            };
            if completed_at <= now {
                today.push(job);
            }
        }
        today.sort_by_key(|job| job.created_at);
        jobs.extend(today);
    }
    for (n, job) in jobs.iter_mut().enumerate() {
        job.key.github_job_id = base_id + i64::try_from(n).unwrap_or(0);
        job.run_id = job.key.github_job_id + 500_000_000;
    }
    jobs
}

fn pick_label(rng: &mut StdRng) -> &'static str {
    let mut roll = rng.gen_range(0..100);
    for (label, weight) in LABELS {
        if roll < weight {
            return label;
        }
        roll -= weight;
    }
    LABELS[0].0
}

/// Records the runner Tenki started for `job` as one that ran it and was removed long ago, so
/// the job's deliveries find it Tenki's (SPEC §6: only those are billed) and nothing is left to
/// remove. Returns the runner's name. Recording it again changes nothing.
pub async fn record_past_runner(
    db: &PgPool,
    workspace_id: Uuid,
    installation_id: i64,
    job: &DemoJob,
) -> Result<String, sqlx::Error> {
    let name = crate::runners::runner_name(workspace_id, job.key, 1);
    sqlx::query(
        "INSERT INTO runners (name, workspace_id, installation_id, label, namespace, github_scope,
             github_job_id, run_attempt, try, state, ran_github_job_id, created_at, started_at,
             online_at, finished_at, deleted_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 'deleted', $7, $9, $9, $10, $11, $11, $11)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&name)
    .bind(workspace_id)
    .bind(installation_id)
    .bind(&job.label)
    .bind(crate::runners::kubernetes::namespace_of(workspace_id))
    .bind(format!("orgs/{ACCOUNT}"))
    .bind(job.key.github_job_id)
    .bind(job.key.run_attempt)
    .bind(job.delivered_at)
    .bind(job.started_at)
    .bind(job.completed_at)
    .execute(db)
    .await?;
    Ok(name)
}
