//! Reconciliation (SPEC §8): proves that the ledger and the database agree to the micro-cent,
//! per workspace and in total. Every difference is reported; none is corrected silently.

use std::collections::HashMap;

use sqlx::PgPool;
use uuid::Uuid;

use crate::ledger::{Ledger, LedgerError, WorkspaceAccounts, fixed_account};

/// TigerBeetle answers at most this many ids per lookup with a 1 MiB request limit.
const LOOKUP_BATCH: usize = 8_000;

/// One figure on which the database and the ledger disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `None` for platform totals.
    pub workspace_id: Option<Uuid>,
    pub what: String,
    pub database: i128,
    pub ledger: i128,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scope = self
            .workspace_id
            .map_or_else(|| "platform".to_owned(), |id| format!("workspace {id}"));
        write!(
            f,
            "{scope}: {}: database {} ≠ ledger {}",
            self.what, self.database, self.ledger
        )
    }
}

/// The outcome of a reconciliation.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub workspaces_checked: usize,
    pub usage_records_checked: usize,
    /// Usage rollups (daily and monthly) compared with the records they sum.
    pub usage_rollups_checked: usize,
    pub invoices_checked: usize,
    pub differences: Vec<Difference>,
}

impl Report {
    /// True when nothing differs.
    pub fn is_balanced(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Which workspaces to check.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every workspace, and the platform accounts against the sum of all of them. Only meaningful
    /// when the TigerBeetle cluster belongs to this database alone (production, `make run`).
    Everything,
    /// These workspaces only.
    Workspaces(Vec<Uuid>),
}

/// Reconciles `scope`.
#[tracing::instrument(skip_all)]
pub async fn reconcile(
    db: &PgPool,
    ledger: &Ledger,
    scope: &Scope,
) -> Result<Report, ReconcileError> {
    let workspaces: Vec<Uuid> = match scope {
        Scope::Everything => {
            sqlx::query_scalar!("SELECT id FROM workspaces ORDER BY id")
                .fetch_all(db)
                .await?
        }
        Scope::Workspaces(ids) => ids.clone(),
    };
    let mut report = Report::default();
    let mut platform = Expected::default();
    for workspace_id in workspaces {
        let expected = expected_for(db, workspace_id).await?;
        let accounts = WorkspaceAccounts::of(workspace_id);
        let (money_debits, money_credits) = totals(ledger, accounts.money).await?;
        let (free_debits, free_credits) = totals(ledger, accounts.free_minutes).await?;
        let checks = [
            (
                "money debits (micro-cents)",
                expected.money_debits,
                money_debits,
            ),
            (
                "money credits (micro-cents)",
                expected.money_credits,
                money_credits,
            ),
            (
                "free-minute debits (vCPU-minutes)",
                expected.free_debits,
                free_debits,
            ),
            (
                "free-minute credits (vCPU-minutes)",
                expected.free_credits,
                free_credits,
            ),
        ];
        for (what, database, ledger) in checks {
            if database != ledger {
                report.differences.push(Difference {
                    workspace_id: Some(workspace_id),
                    what: what.to_owned(),
                    database,
                    ledger,
                });
            }
        }
        report.usage_records_checked +=
            check_usage_transfers(db, ledger, workspace_id, &mut report.differences).await?;
        report.usage_rollups_checked +=
            check_usage_rollups(db, workspace_id, &mut report.differences).await?;
        report.invoices_checked +=
            check_invoices(db, ledger, workspace_id, &mut report.differences).await?;
        platform.add(&expected);
        report.workspaces_checked += 1;
    }
    if matches!(scope, Scope::Everything) {
        let (revenue_debits, revenue_credits) = totals(ledger, fixed_account::REVENUE).await?;
        let net_usage = platform.usage_amount + platform.subscriptions - platform.refunds;
        if revenue_credits - revenue_debits != net_usage {
            report.differences.push(Difference {
                workspace_id: None,
                what: "REVENUE from runner charges and subscriptions, less refunds (micro-cents)"
                    .to_owned(),
                database: net_usage,
                ledger: revenue_credits - revenue_debits,
            });
        }
    }
    Ok(report)
}

/// Why reconciliation could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("ledger")]
    Ledger(#[from] LedgerError),
}

/// What the database says a workspace's accounts must hold.
#[derive(Debug, Default)]
struct Expected {
    money_debits: i128,
    money_credits: i128,
    free_debits: i128,
    free_credits: i128,
    /// Charges of usage records still standing (reversed ones excluded).
    usage_amount: i128,
    /// Add-on and slot charges of the invoices (SPEC §10).
    subscriptions: i128,
    /// Money Tenki refunded from payments (out of REVENUE).
    refunds: i128,
}

impl Expected {
    fn add(&mut self, other: &Expected) {
        self.usage_amount += other.usage_amount;
        self.subscriptions += other.subscriptions;
        self.refunds += other.refunds;
    }
}

async fn expected_for(db: &PgPool, workspace_id: Uuid) -> Result<Expected, sqlx::Error> {
    let usage = sqlx::query!(
        r#"SELECT coalesce(sum(amount), 0)::bigint AS "amount!",
                  coalesce(sum(free_vcpu_minutes), 0)::bigint AS "free!"
           FROM usage_records WHERE workspace_id = $1"#,
        workspace_id,
    )
    .fetch_one(db)
    .await?;
    let grants = sqlx::query!(
        r#"SELECT coalesce(sum(vcpu_minutes), 0)::bigint AS "granted!",
                  coalesce(sum(withdrawn_vcpu_minutes), 0)::bigint AS "withdrawn!"
           FROM free_minute_grants WHERE workspace_id = $1"#,
        workspace_id,
    )
    .fetch_one(db)
    .await?;
    let adjustments = sqlx::query!(
        r#"SELECT kind, coalesce(sum(amount), 0)::bigint AS "amount!",
                  coalesce(sum(free_vcpu_minutes), 0)::bigint AS "free!"
           FROM ledger_adjustments WHERE workspace_id = $1 GROUP BY kind"#,
        workspace_id,
    )
    .fetch_all(db)
    .await?;
    // Invoices: their add-on and slot lines were charged to the workspace, their payments
    // credited to it.
    let billed = sqlx::query!(
        r#"SELECT
             (SELECT coalesce(sum(l.amount_micro_cents), 0)::bigint FROM invoice_lines l
              JOIN invoices i ON i.id = l.invoice_id
              WHERE i.workspace_id = $1 AND l.kind IN ('addon', 'slots')) AS "subscriptions!",
             (SELECT coalesce(sum(amount_cents), 0)::bigint FROM payments WHERE workspace_id = $1) AS "paid_cents!""#,
        workspace_id,
    )
    .fetch_one(db)
    .await?;
    let mut expected = Expected {
        money_debits: i128::from(usage.amount) + i128::from(billed.subscriptions),
        money_credits: i128::from(billed.paid_cents)
            * i128::from(crate::money::MICRO_CENTS_PER_CENT),
        subscriptions: i128::from(billed.subscriptions),
        // A grant taken back debits what was left of it.
        free_debits: i128::from(usage.free) + i128::from(grants.withdrawn),
        free_credits: i128::from(grants.granted),
        usage_amount: i128::from(usage.amount),
        refunds: 0,
    };
    // Payments undone: a dispute or support's reversal charges the workspace again; a refund
    // comes out of REVENUE.
    let reversals: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, coalesce(sum(amount_cents), 0)::bigint FROM payment_reversals
         WHERE workspace_id = $1 GROUP BY kind",
    )
    .bind(workspace_id)
    .fetch_all(db)
    .await?;
    for (kind, cents) in reversals {
        let amount = i128::from(cents) * i128::from(crate::money::MICRO_CENTS_PER_CENT);
        match kind.as_str() {
            "refund" => expected.refunds += amount,
            _ => expected.money_debits += amount,
        }
    }
    for row in adjustments {
        let (amount, free) = (i128::from(row.amount), i128::from(row.free));
        match row.kind.as_str() {
            // The original charge stays in the ledger; the reversal credits it back.
            "usage_reversal" => {
                expected.money_debits += amount;
                expected.money_credits += amount;
                expected.free_debits += free;
                expected.free_credits += free;
            }
            "promo_credit" => expected.money_credits += amount,
            "promo_deduction" => expected.money_debits += amount,
            _ => {}
        }
    }
    Ok(expected)
}

async fn totals(ledger: &Ledger, account: u128) -> Result<(i128, i128), LedgerError> {
    let (debits, credits) = ledger.account_totals(account).await?.unwrap_or((0, 0));
    Ok((
        i128::try_from(debits).unwrap_or(i128::MAX),
        i128::try_from(credits).unwrap_or(i128::MAX),
    ))
}

/// Every usage record's transfers exist in the ledger with the recorded amounts.
async fn check_usage_transfers(
    db: &PgPool,
    ledger: &Ledger,
    workspace_id: Uuid,
    differences: &mut Vec<Difference>,
) -> Result<usize, ReconcileError> {
    let records = sqlx::query!(
        "SELECT job_key, amount, free_vcpu_minutes, free_minutes_transfer_id, charge_transfer_id
         FROM usage_records WHERE workspace_id = $1 ORDER BY job_key",
        workspace_id,
    )
    .fetch_all(db)
    .await?;
    let mut wanted: HashMap<u128, (String, i128)> = HashMap::new();
    for record in &records {
        if let Some(id) = record.free_minutes_transfer_id {
            wanted.insert(
                id.as_u128(),
                (record.job_key.clone(), i128::from(record.free_vcpu_minutes)),
            );
        }
        if let Some(id) = record.charge_transfer_id {
            wanted.insert(
                id.as_u128(),
                (record.job_key.clone(), i128::from(record.amount)),
            );
        }
    }
    let ids: Vec<u128> = wanted.keys().copied().collect();
    let mut found = HashMap::new();
    for batch in ids.chunks(LOOKUP_BATCH) {
        for transfer in ledger.lookup_transfers(batch.to_vec()).await? {
            found.insert(
                transfer.id(),
                i128::try_from(transfer.amount()).unwrap_or(i128::MAX),
            );
        }
    }
    let mut missing: Vec<_> = wanted
        .iter()
        .filter(|(id, (_, amount))| found.get(*id) != Some(amount))
        .collect();
    missing.sort_by(|a, b| a.1.0.cmp(&b.1.0));
    for (id, (job_key, amount)) in missing {
        differences.push(Difference {
            workspace_id: Some(workspace_id),
            what: format!("job {job_key} transfer {id:#x}"),
            database: *amount,
            ledger: found.get(id).copied().unwrap_or(0),
        });
    }
    Ok(records.len())
}

/// Every usage rollup (`usage_daily`, `usage_monthly`) equals the sums of the usage records it
/// stands for, and every day and month with records has its rollups: the Usage page and the
/// Overview read them (ADR 0009).
async fn check_usage_rollups(
    db: &PgPool,
    workspace_id: Uuid,
    differences: &mut Vec<Difference>,
) -> Result<usize, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        rollup: String,
        present: bool,
        figures: Vec<i64>,
        records: Vec<i64>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "WITH records AS (
             SELECT (completed_at AT TIME ZONE 'UTC')::date AS day, label, repository, workflow,
                    count(*)::bigint AS jobs, sum(minutes)::bigint AS minutes,
                    sum(free_vcpu_minutes)::bigint AS free_vcpu_minutes, sum(amount)::bigint AS amount
             FROM usage_records WHERE workspace_id = $1
             GROUP BY 1, 2, 3, 4
         ), daily AS (
             SELECT day, label, sum(jobs)::bigint AS jobs, sum(minutes)::bigint AS minutes,
                    sum(free_vcpu_minutes)::bigint AS free_vcpu_minutes, sum(amount)::bigint AS amount
             FROM records GROUP BY 1, 2
         ), monthly AS (
             SELECT date_trunc('month', day)::date AS month, label, repository, workflow,
                    sum(jobs)::bigint AS jobs, sum(minutes)::bigint AS minutes,
                    sum(free_vcpu_minutes)::bigint AS free_vcpu_minutes, sum(amount)::bigint AS amount
             FROM records GROUP BY 1, 2, 3, 4
         )
         SELECT format('daily rollup %s %s', day, label) AS rollup, d.day IS NOT NULL AS present,
                ARRAY[coalesce(d.jobs, 0), coalesce(d.minutes, 0), coalesce(d.free_vcpu_minutes, 0),
                      coalesce(d.amount, 0)] AS figures,
                ARRAY[coalesce(r.jobs, 0), coalesce(r.minutes, 0), coalesce(r.free_vcpu_minutes, 0),
                      coalesce(r.amount, 0)] AS records
         FROM (SELECT * FROM usage_daily WHERE workspace_id = $1) d
         FULL JOIN daily r USING (day, label)
         UNION ALL
         SELECT format('monthly rollup %s %s %s · %s', to_char(month, 'YYYY-MM'), label, repository,
                       workflow),
                m.month IS NOT NULL,
                ARRAY[coalesce(m.jobs, 0), coalesce(m.minutes, 0), coalesce(m.free_vcpu_minutes, 0),
                      coalesce(m.amount, 0)],
                ARRAY[coalesce(r.jobs, 0), coalesce(r.minutes, 0), coalesce(r.free_vcpu_minutes, 0),
                      coalesce(r.amount, 0)]
         FROM (SELECT * FROM usage_monthly WHERE workspace_id = $1) m
         FULL JOIN monthly r USING (month, label, repository, workflow)
         ORDER BY 1",
    )
    .bind(workspace_id)
    .fetch_all(db)
    .await?;
    const FIGURES: [&str; 4] = ["jobs", "minutes", "free vCPU-minutes", "micro-cents"];
    for row in &rows {
        for ((figure, rollup), records) in FIGURES.iter().zip(&row.figures).zip(&row.records) {
            if rollup != records {
                differences.push(Difference {
                    workspace_id: Some(workspace_id),
                    what: format!(
                        "{}: {figure} in the rollup vs the usage records",
                        row.rollup
                    ),
                    database: i128::from(*rollup),
                    ledger: i128::from(*records),
                });
            }
        }
    }
    Ok(rows.iter().filter(|row| row.present).count())
}

/// Every invoice agrees with what it bills and what paid it: its total is the sum of its lines;
/// once its lines are built, its usage lines sum the month's usage records to the micro-cent
/// (usage metered or reversed after the invoice was issued shows here); a paid invoice has one
/// payment of its total, and every payment's transfer is in the ledger with that amount.
async fn check_invoices(
    db: &PgPool,
    ledger: &Ledger,
    workspace_id: Uuid,
    differences: &mut Vec<Difference>,
) -> Result<usize, ReconcileError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        month: chrono::NaiveDate,
        state: String,
        total_cents: Option<i64>,
        lines_cents: i64,
        usage_lines: i64,
        usage_records: i64,
        paid_cents: Option<i64>,
    }
    let invoices: Vec<Row> = sqlx::query_as(
        "SELECT i.id, i.month, i.state, i.total_cents,
             (SELECT coalesce(sum(amount_cents), 0)::bigint FROM invoice_lines
              WHERE invoice_id = i.id) AS lines_cents,
             (SELECT coalesce(sum(amount_micro_cents), 0)::bigint FROM invoice_lines
              WHERE invoice_id = i.id AND kind = 'usage') AS usage_lines,
             (SELECT coalesce(sum(amount), 0)::bigint FROM usage_records u
              WHERE u.workspace_id = i.workspace_id
                AND u.completed_at >= i.month::timestamp AT TIME ZONE 'UTC'
                AND u.completed_at < (i.month + interval '1 month')::timestamp AT TIME ZONE 'UTC')
                AS usage_records,
             (SELECT amount_cents FROM payments WHERE invoice_id = i.id) AS paid_cents
         FROM invoices i WHERE i.workspace_id = $1 ORDER BY i.month",
    )
    .bind(workspace_id)
    .fetch_all(db)
    .await?;
    let mut differ = |what: String, database: i64, ledger: i64| {
        differences.push(Difference {
            workspace_id: Some(workspace_id),
            what,
            database: i128::from(database),
            ledger: i128::from(ledger),
        });
    };
    let mut payments = Vec::new();
    for invoice in &invoices {
        let name = format!("invoice {} ({})", invoice.id, invoice.month.format("%Y-%m"));
        if invoice.state == "draft" {
            continue;
        }
        let total = invoice.total_cents.unwrap_or(0);
        if total != invoice.lines_cents {
            differ(
                format!("{name}: total vs its lines (cents)"),
                total,
                invoice.lines_cents,
            );
        }
        if invoice.usage_lines != invoice.usage_records {
            differ(
                format!("{name}: usage lines vs the month's usage records (micro-cents)"),
                invoice.usage_lines,
                invoice.usage_records,
            );
        }
        match (invoice.state.as_str(), invoice.paid_cents) {
            ("paid" | "reversed", Some(paid)) if paid != total => {
                differ(format!("{name}: payment vs total (cents)"), paid, total);
            }
            ("paid" | "reversed", None) => {
                differ(format!("{name}: paid without a payment (cents)"), 0, total);
            }
            _ => {}
        }
        if let Some(paid) = invoice.paid_cents {
            payments.push((invoice.id, name, paid));
        }
    }
    let ids: Vec<u128> = payments
        .iter()
        .map(|(id, _, _)| crate::ledger::derive_id("stripe-payment", id.to_string().as_bytes()))
        .collect();
    let mut found = HashMap::new();
    for batch in ids.chunks(LOOKUP_BATCH) {
        for transfer in ledger.lookup_transfers(batch.to_vec()).await? {
            found.insert(transfer.id(), transfer.amount());
        }
    }
    for ((_, name, cents), id) in payments.iter().zip(&ids) {
        let wanted = u128::try_from(*cents).unwrap_or(0)
            * u128::try_from(crate::money::MICRO_CENTS_PER_CENT).unwrap_or(0);
        let posted = found.get(id).copied().unwrap_or(0);
        if posted != wanted {
            differ(
                format!("{name}: payment in the ledger (micro-cents)"),
                i64::try_from(wanted).unwrap_or(i64::MAX),
                i64::try_from(posted).unwrap_or(i64::MAX),
            );
        }
    }
    Ok(invoices.len())
}
