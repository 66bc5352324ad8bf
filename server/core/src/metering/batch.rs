//! Metering many finished jobs at once, by the rules of [`meter_job`]: the same minutes, free
//! minutes, prices and exactly-once guarantee, in about seven round trips per batch instead of
//! six per job.
//!
//! One batch: resolve every label and price in one query; lock the batch's workspaces in id order
//! (so two batches never deadlock); read discounts, reversals and existing usage records with one
//! query each and, at the same time, every workspace's free minutes and every job's ledger
//! transfers with one lookup each; price the jobs in memory, in the order given, each
//! workspace's free minutes running down as one-by-one metering would; post one linked chain per
//! workspace in one `create_transfers` call; insert every record with one statement; commit.
//!
//! A workspace's chain is linked whole, so the ledger applies all of its jobs or none: when
//! TigerBeetle refuses one job's transfers, the other jobs of that workspace were not posted
//! either and are metered again one by one after the batch, and get exactly what one-by-one
//! metering gives them. Duplicates of a job inside the batch are metered one by one after it too
//! (they find its record). A batch that dies between the ledger and the database leaves posted
//! chains; the next attempt finds them and records exactly what they moved.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, SubsecRound as _, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    Charge, FinishedJob, MAX_JOB_LIFETIME, MeteringError, UsageRecord, billable_minutes,
    insert_usage_records, meter_job, price_job, usage_record,
};
use crate::catalog::{self, CatalogError, Price, ResolvedLabel};
use crate::ledger::{Ledger, LedgerError, UsageEntry, UsagePosting, WorkspaceAccounts};
use crate::money;

/// A job that passed the checks that need no lock, waiting to be priced.
struct Candidate {
    index: usize,
    job_key: String,
    started_at: DateTime<Utc>,
    completed_at: DateTime<Utc>,
    minutes: i64,
    resolved: ResolvedLabel,
    price: Price,
    surcharge: i64,
}

/// Meters `jobs` as one batch; answers in the order given, one result per job. `Err` only
/// when the batch as a whole failed (the database or the ledger did not answer): no usage
/// record of it was written then, and metering its jobs again records what it posted.
#[tracing::instrument(level = "debug", skip_all, fields(jobs = jobs.len()))]
pub async fn meter_jobs(
    db: &PgPool,
    ledger: &Ledger,
    jobs: &[FinishedJob],
    now: DateTime<Utc>,
) -> Result<Vec<Result<UsageRecord, MeteringError>>, MeteringError> {
    // `None` at the end: metered one by one after the batch (duplicates, refused chains).
    let mut outcomes: Vec<Option<Result<UsageRecord, MeteringError>>> =
        jobs.iter().map(|_| None).collect();

    let mut seen = HashSet::with_capacity(jobs.len());
    let mut checked = Vec::with_capacity(jobs.len());
    for (index, job) in jobs.iter().enumerate() {
        let job_key = job.key.to_string();
        if !seen.insert(job_key.clone()) {
            continue;
        }
        match check_times(job, &job_key) {
            Ok((started_at, completed_at, minutes)) => {
                checked.push((index, job_key, started_at, completed_at, minutes));
            }
            Err(error) => outcomes[index] = Some(Err(error)),
        }
    }

    let wanted: Vec<(Uuid, &str, DateTime<Utc>)> = checked
        .iter()
        .map(|(index, _, started_at, _, _)| {
            let job = &jobs[*index];
            (job.workspace_id, job.label.as_str(), *started_at)
        })
        .collect();
    let prices = catalog::label_prices_at(db, &wanted).await?;
    let mut candidates = Vec::with_capacity(checked.len());
    for ((index, job_key, started_at, completed_at, minutes), price) in
        checked.into_iter().zip(prices)
    {
        let candidate = price.and_then(|(resolved, price)| {
            let surcharge = if resolved.premium {
                price
                    .premium_surcharge_per_minute
                    .ok_or_else(|| CatalogError::NoPremiumVariant(jobs[index].label.clone()))?
            } else {
                0
            };
            Ok(Candidate {
                index,
                job_key,
                started_at,
                completed_at,
                minutes,
                resolved,
                price,
                surcharge,
            })
        });
        match candidate {
            Ok(candidate) => candidates.push(candidate),
            Err(error) => outcomes[index] = Some(Err(error.into())),
        }
    }

    let mut tx = db.begin().await?;
    let mut workspace_ids: Vec<Uuid> = candidates
        .iter()
        .map(|c| jobs[c.index].workspace_id)
        .collect();
    workspace_ids.sort_unstable();
    workspace_ids.dedup();
    // Serializes metering per workspace, with `meter_job`'s lock; in id order, so that batches
    // locking overlapping workspaces wait for each other instead of deadlocking.
    let locked: HashSet<Uuid> = sqlx::query_scalar!(
        "SELECT id FROM workspaces WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
        &workspace_ids,
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    // Under the lock, the database's reads and the ledger's lookups at once: what the batch's
    // workspaces have left cannot change until the commit (every writer takes these locks), and
    // looking up every candidate's transfers, even of jobs that turn out to be recorded already,
    // costs nothing more in the same request.
    let postings: Vec<UsagePosting> = candidates
        .iter()
        .map(|c| UsagePosting::for_job(jobs[c.index].workspace_id, &c.job_key))
        .collect();
    let locked_ids: Vec<Uuid> = locked.iter().copied().collect();
    let job_keys: Vec<&str> = candidates.iter().map(|c| c.job_key.as_str()).collect();
    let reads = async {
        let (discounts, reversed) = discounts_and_reversals(&mut tx, jobs, &candidates).await?;
        let existing: HashMap<String, UsageRecord> = sqlx::query_as!(
            UsageRecord,
            "SELECT job_key, workspace_id, label, sku_label, premium, vcpus, repository, workflow,
                started_at, completed_at, minutes, free_vcpu_minutes, price_per_minute,
                premium_surcharge_per_minute, discount_basis_points, amount
         FROM usage_records WHERE job_key = ANY($1)",
            &job_keys as &[&str],
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|record| (record.job_key.clone(), record))
        .collect();
        Ok::<_, MeteringError>((discounts, reversed, existing))
    };
    let ((discounts, reversed, mut existing), posted, mut left) = tokio::try_join!(
        reads,
        async { Ok(ledger.find_usage_postings(&postings).await?) },
        async { Ok(ledger.free_vcpu_minutes_left_of(&locked_ids).await?) },
    )?;

    let mut to_price = Vec::with_capacity(candidates.len());
    for (position, ((candidate, posting), posted)) in
        candidates.into_iter().zip(postings).zip(posted).enumerate()
    {
        let index = candidate.index;
        let job = &jobs[index];
        let outcome = if !locked.contains(&job.workspace_id) {
            Err(MeteringError::UnknownWorkspace(job.workspace_id))
        } else if let Some(record) = existing.remove(&candidate.job_key) {
            if record.workspace_id == job.workspace_id {
                Ok(record)
            } else {
                Err(MeteringError::OtherWorkspace {
                    job: candidate.job_key,
                })
            }
        } else if reversed[position] {
            Err(MeteringError::Reversed(candidate.job_key))
        } else {
            to_price.push((candidate, discounts[position], posting, posted));
            continue;
        };
        outcomes[index] = Some(outcome);
    }

    // In the order given, each workspace's free minutes running down job by job.
    let mut chains: BTreeMap<Uuid, Vec<UsageEntry>> = BTreeMap::new();
    let mut priced = Vec::with_capacity(to_price.len());
    for (candidate, discount, posting, posted) in to_price {
        let job = &jobs[candidate.index];
        let charge = match (posted, left.get_mut(&job.workspace_id)) {
            // A batch that died after the ledger: record exactly what it posted.
            (Some(posted), _) => Charge::posted(candidate.minutes, posted, &candidate.job_key),
            (None, None) => Err(MeteringError::Ledger(LedgerError::MissingAccount(
                WorkspaceAccounts::of(job.workspace_id).free_minutes,
            ))),
            (None, Some(left)) => price_and_draw(&candidate, discount, left).and_then(|charge| {
                chains
                    .entry(job.workspace_id)
                    .or_default()
                    .push(UsageEntry {
                        posting,
                        free_vcpu_minutes: charge.free_vcpu_minutes,
                        amount: money::convert(charge.amount, || {
                            format!("job {}'s charge", candidate.job_key)
                        })?,
                    });
                Ok(charge)
            }),
        };
        match charge {
            Ok(charge) => priced.push((candidate, discount, posting, charge)),
            Err(error) => outcomes[candidate.index] = Some(Err(error)),
        }
    }

    let (chain_workspaces, chain_entries): (Vec<Uuid>, Vec<Vec<UsageEntry>>) =
        chains.into_iter().unzip();
    let applied = ledger.post_usage_chains(&chain_entries).await?;
    let mut refused = HashSet::new();
    for (workspace_id, outcome) in chain_workspaces.iter().zip(applied) {
        if let Err(reasons) = outcome {
            tracing::warn!(workspace = %workspace_id, "usage chain refused, metering its jobs one by one: {reasons}");
            refused.insert(*workspace_id);
        }
    }

    let mut records = Vec::with_capacity(priced.len());
    for (candidate, discount, posting, charge) in priced {
        let job = &jobs[candidate.index];
        if refused.contains(&job.workspace_id) {
            continue;
        }
        let record = usage_record(
            job,
            candidate.job_key,
            (candidate.started_at, candidate.completed_at),
            &candidate.resolved,
            &candidate.price,
            candidate.surcharge,
            discount,
            charge,
        );
        match record {
            Ok(record) => records.push((candidate.index, record, posting)),
            Err(error) => outcomes[candidate.index] = Some(Err(error)),
        }
    }
    let rows: Vec<(UsageRecord, UsagePosting)> = records
        .iter()
        .map(|(_, record, posting)| (record.clone(), *posting))
        .collect();
    insert_usage_records(&mut tx, &rows, now).await?;
    tx.commit().await?;
    for (index, record, _) in records {
        outcomes[index] = Some(Ok(record));
    }

    let mut answers = Vec::with_capacity(jobs.len());
    for (job, outcome) in jobs.iter().zip(outcomes) {
        answers.push(match outcome {
            Some(outcome) => outcome,
            None => meter_job(db, ledger, job, now).await,
        });
    }
    Ok(answers)
}

/// A job's billable minutes and its times as PostgreSQL keeps them (microseconds), or why it
/// cannot be billed.
pub(super) fn check_times(
    job: &FinishedJob,
    job_key: &str,
) -> Result<(DateTime<Utc>, DateTime<Utc>, i64), MeteringError> {
    let started_at = job.started_at.trunc_subsecs(6);
    let completed_at = job.completed_at.trunc_subsecs(6);
    let minutes = billable_minutes(started_at, completed_at)
        .ok_or_else(|| MeteringError::CompletedBeforeStarted(job_key.to_owned()))?;
    if completed_at - started_at > MAX_JOB_LIFETIME {
        return Err(MeteringError::TooLong {
            job: job_key.to_owned(),
            minutes,
        });
    }
    Ok((started_at, completed_at, minutes))
}

/// Prices a job against its workspace's free minutes `left`, and takes what it uses from them.
fn price_and_draw(
    candidate: &Candidate,
    discount: i32,
    left: &mut u128,
) -> Result<Charge, MeteringError> {
    let charge = price_job(
        &candidate.job_key,
        candidate.minutes,
        candidate.resolved.sku.vcpus,
        candidate.price.per_minute + candidate.surcharge,
        discount,
        money::convert(*left, || {
            format!("job {}'s workspace's free minutes", candidate.job_key)
        })?,
    )?;
    *left -= u128::from(charge.free_vcpu_minutes);
    Ok(charge)
}

/// The discount in force when each candidate started, and whether support reversed its usage:
/// one query for the whole batch, in the candidates' order.
async fn discounts_and_reversals(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    jobs: &[FinishedJob],
    candidates: &[Candidate],
) -> Result<(Vec<i32>, Vec<bool>), sqlx::Error> {
    let workspaces: Vec<Uuid> = candidates
        .iter()
        .map(|c| jobs[c.index].workspace_id)
        .collect();
    let job_keys: Vec<&str> = candidates.iter().map(|c| c.job_key.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = candidates.iter().map(|c| c.started_at).collect();
    let rows = sqlx::query!(
        r#"SELECT q.ord AS "ord!",
                  coalesce((SELECT basis_points FROM workspace_discounts d
                            WHERE d.workspace_id = q.workspace_id AND d.active_from <= q.started_at
                            ORDER BY d.active_from DESC LIMIT 1), 0) AS "discount!",
                  EXISTS (SELECT 1 FROM ledger_adjustments a
                          WHERE a.kind = 'usage_reversal' AND a.job_key = q.job_key
                            AND a.workspace_id = q.workspace_id) AS "reversed!"
           FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) WITH ORDINALITY
                AS q(workspace_id, job_key, started_at, ord)"#,
        &workspaces,
        &job_keys as &[&str],
        &starts,
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut discounts = vec![0; candidates.len()];
    let mut reversed = vec![false; candidates.len()];
    for row in rows {
        if let Some(at) = usize::try_from(row.ord - 1)
            .ok()
            .filter(|&at| at < candidates.len())
        {
            discounts[at] = row.discount;
            reversed[at] = row.reversed;
        }
    }
    Ok((discounts, reversed))
}
