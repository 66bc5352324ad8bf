//! Demo data for the sandbox: a workspace with a month of realistic jobs, metered through the
//! same function as real jobs, so a newcomer sees a living Usage page.

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ledger::Ledger;
use crate::metering::{self, FinishedJob, JobKey, MeteringError};

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
const REPOSITORIES: [&str; 4] = ["acme/web", "acme/api", "acme/mobile", "acme/infra"];
const WORKFLOWS: [&str; 4] = ["CI", "Release", "Nightly", "Lint"];

/// Meters `days` days of jobs (ending at `now`) into `workspace_id`. The same workspace and
/// seed give the same jobs, and metering is idempotent, so running it twice adds nothing.
/// Returns the number of jobs metered.
pub async fn fill_workspace(
    db: &PgPool,
    ledger: &Ledger,
    workspace_id: Uuid,
    days: i64,
    now: DateTime<Utc>,
) -> Result<usize, MeteringError> {
    let seed = u64::from_be_bytes(workspace_id.as_bytes()[..8].try_into().unwrap_or([0; 8]));
    let mut rng = StdRng::seed_from_u64(seed);
    // Job ids in a range of their own per workspace, clear of GitHub's real ids.
    let base_id = 9_000_000_000_000 + i64::try_from(seed % 1_000_000).unwrap_or(0) * 100_000;
    let mut metered = 0;
    for day in (0..days).rev() {
        let day_start = now - Duration::days(day + 1);
        let jobs_today = rng.gen_range(12..36);
        for _ in 0..jobs_today {
            let started_at = day_start + Duration::seconds(rng.gen_range(0..86_400));
            // Mostly short jobs, some long ones: 1–10 minutes, 1 in 6 up to 40.
            let seconds = if rng.gen_ratio(1, 6) {
                rng.gen_range(600..2_400)
            } else {
                rng.gen_range(40..600)
            };
            let completed_at = started_at + Duration::seconds(seconds);
            if completed_at > now {
                continue;
            }
            let job = FinishedJob {
                workspace_id,
                key: JobKey {
                    github_job_id: base_id + i64::try_from(metered).unwrap_or(0),
                    run_attempt: 1,
                },
                label: pick_label(&mut rng).to_owned(),
                started_at,
                completed_at,
                repository: REPOSITORIES[rng.gen_range(0..REPOSITORIES.len())].to_owned(),
                workflow: WORKFLOWS[rng.gen_range(0..WORKFLOWS.len())].to_owned(),
            };
            metering::meter_job(db, ledger, &job, now).await?;
            metered += 1;
        }
    }
    Ok(metered)
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
