//! Reading usage back: month summaries for the Usage page and the Overview from the usage
//! rollups (`usage_daily`, `usage_monthly`, kept with the records by the database, ADR 0009),
//! and the records of a month streamed for the CSV export. Every query is bounded by one workspace and one month.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use futures_util::{Stream, StreamExt};
use sqlx::PgPool;
use uuid::Uuid;

use crate::metering::UsageRecord;
use crate::money::{self, OutOfRange};

/// A calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// The month containing `at`.
    pub fn containing(at: DateTime<Utc>) -> Self {
        Self {
            year: at.year(),
            month: at.month(),
        }
    }

    /// Parses `YYYY-MM`.
    pub fn parse(input: &str) -> Option<Self> {
        let (year, month) = input.trim().split_once('-')?;
        let year: i32 = year.parse().ok()?;
        let month: u32 = month.parse().ok()?;
        ((2000..=9999).contains(&year) && (1..=12).contains(&month)).then_some(Self { year, month })
    }

    /// The first instant of the month.
    pub fn start(self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The first instant of the next month.
    pub fn end(self) -> DateTime<Utc> {
        self.next().start()
    }

    /// The month after this one.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The month before this one.
    pub fn previous(self) -> Self {
        if self.month == 1 {
            Self {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Self {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// The month of the calendar day `day`.
    pub fn of_day(day: chrono::NaiveDate) -> Self {
        Self {
            year: day.year(),
            month: day.month(),
        }
    }

    /// Its first day.
    pub fn first_day(self) -> chrono::NaiveDate {
        self.start().date_naive()
    }

    /// Days in the month.
    pub fn days(self) -> u32 {
        u32::try_from((self.end() - self.start()).num_days()).unwrap_or(31)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Usage grouped by one dimension (label, repository or workflow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageGroup {
    pub key: String,
    pub jobs: i64,
    pub minutes: i64,
    /// Free minutes used (2-vCPU minutes), rounded down.
    pub free_minutes: i64,
    /// Micro-cents charged.
    pub amount: i64,
}

/// One label's usage on one day, for the daily chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyUsage {
    pub day: NaiveDate,
    pub label: String,
    pub minutes: i64,
    pub amount: i64,
}

/// Everything the Usage page shows for a month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthUsage {
    pub month: Month,
    pub jobs: i64,
    pub minutes: i64,
    pub free_minutes: i64,
    /// Micro-cents charged so far in the month.
    pub amount: i64,
    /// The month's expected total at the current pace (the total itself for a past month).
    pub projected_amount: i64,
    pub by_label: Vec<UsageGroup>,
    pub by_repository: Vec<UsageGroup>,
    pub by_workflow: Vec<UsageGroup>,
    pub daily: Vec<DailyUsage>,
}

/// Why usage could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// The month's total at the pace so far: the amount so far over the elapsed part of the month.
pub fn project(amount_so_far: i64, month: Month, now: DateTime<Utc>) -> Result<i64, OutOfRange> {
    if now >= month.end() {
        return Ok(amount_so_far);
    }
    if now <= month.start() {
        return Ok(0);
    }
    let elapsed = (now - month.start()).num_seconds().max(1);
    let whole = (month.end() - month.start()).num_seconds();
    let projected = i128::from(amount_so_far) * i128::from(whole) / i128::from(elapsed);
    money::convert(projected, || format!("the projected cost of {month}"))
}

/// Micro-cents charged to a workspace in the month containing `now`, from its daily rollups.
pub async fn month_to_date_amount(
    db: &PgPool,
    workspace_id: Uuid,
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let month = Month::containing(now);
    sqlx::query_scalar!(
        r#"SELECT coalesce(sum(amount), 0)::bigint AS "amount!" FROM usage_daily
           WHERE workspace_id = $1 AND day >= $2 AND day < $3"#,
        workspace_id,
        month.first_day(),
        month.next().first_day(),
    )
    .fetch_one(db)
    .await
}

/// The Usage page's figures for `month`, from its rollups (ADR 0009), so the cost follows the
/// month's days, labels, repositories and workflows, not its jobs.
pub async fn month_usage(
    db: &PgPool,
    workspace_id: Uuid,
    month: Month,
    now: DateTime<Utc>,
) -> Result<MonthUsage, UsageError> {
    let (from, to) = (month.first_day(), month.next().first_day());
    // The daily chart and the per-label table from the daily rollups, the per-repository and
    // per-workflow tables from the month's: one round trip over about a thousand rows.
    let rows = sqlx::query!(
        r#"SELECT CASE WHEN GROUPING(day) = 0 THEN 'day' ELSE 'label' END AS "dimension!",
                  day AS "day?", label AS "key!",
                  sum(jobs)::bigint AS "jobs!", sum(minutes)::bigint AS "minutes!",
                  sum(free_vcpu_minutes)::bigint AS "free_vcpu_minutes!",
                  sum(amount)::bigint AS "amount!"
           FROM usage_daily WHERE workspace_id = $1 AND day >= $2 AND day < $3
           GROUP BY GROUPING SETS ((day, label), (label))
           UNION ALL
           SELECT CASE WHEN GROUPING(workflow) = 0 THEN 'workflow' ELSE 'repository' END,
                  NULL,
                  CASE WHEN GROUPING(workflow) = 0 THEN repository || ' · ' || workflow
                       ELSE repository END,
                  sum(jobs)::bigint, sum(minutes)::bigint, sum(free_vcpu_minutes)::bigint,
                  sum(amount)::bigint
           FROM usage_monthly WHERE workspace_id = $1 AND month = $2
           GROUP BY GROUPING SETS ((repository), (repository, workflow))
           ORDER BY 1, 2, 7 DESC, 3"#,
        workspace_id,
        from,
        to,
    )
    .fetch_all(db)
    .await?;
    let (mut by_label, mut by_repository, mut by_workflow) = (Vec::new(), Vec::new(), Vec::new());
    let mut daily = Vec::new();
    for row in rows {
        if let ("day", Some(day)) = (row.dimension.as_str(), row.day) {
            daily.push(DailyUsage {
                day,
                label: row.key,
                minutes: row.minutes,
                amount: row.amount,
            });
            continue;
        }
        let group = UsageGroup {
            key: row.key,
            jobs: row.jobs,
            minutes: row.minutes,
            free_minutes: row.free_vcpu_minutes / 2,
            amount: row.amount,
        };
        match row.dimension.as_str() {
            "label" => by_label.push(group),
            "workflow" => by_workflow.push(group),
            _ => by_repository.push(group),
        }
    }
    let sum = |f: fn(&UsageGroup) -> i64| by_label.iter().map(f).sum::<i64>();
    let amount = sum(|g| g.amount);
    Ok(MonthUsage {
        month,
        jobs: sum(|g| g.jobs),
        minutes: sum(|g| g.minutes),
        free_minutes: sum(|g| g.free_minutes),
        amount,
        projected_amount: project(amount, month, now)?,
        by_repository,
        by_workflow,
        by_label,
        daily,
    })
}

/// Rows of the CSV export fetched per query: the export holds at most this many records in
/// memory, whatever the month holds.
const CSV_PAGE: i64 = 2_000;

/// The CSV export of a month's usage records, oldest first, as a stream of text chunks (the
/// header, then up to [`CSV_PAGE`] rows per chunk). Each chunk is one keyset query on
/// `(workspace_id, completed_at)`, so a month of a million jobs is never held in memory.
pub fn month_csv(
    db: PgPool,
    workspace_id: Uuid,
    month: Month,
) -> impl Stream<Item = Result<String, sqlx::Error>> + Send + 'static {
    let header = futures_util::stream::once(async { Ok(format!("{CSV_HEADER}\n")) });
    let pages =
        futures_util::stream::try_unfold(Some((month.start(), String::new())), move |after| {
            let db = db.clone();
            async move {
                let Some((after_time, after_key)) = after else {
                    return Ok(None);
                };
                let records = records_after(&db, workspace_id, month, (after_time, &after_key))
                    .await
                    .inspect_err(|e| tracing::error!(error = %e, %workspace_id, "usage CSV"))?;
                let urls = github_urls(&db, workspace_id, &records)
                    .await
                    .inspect_err(|e| tracing::error!(error = %e, %workspace_id, "usage CSV"))?;
                let next = match records.last() {
                    Some(last) if i64::try_from(records.len()) == Ok(CSV_PAGE) => {
                        Some((last.completed_at, last.job_key.clone()))
                    }
                    Some(_) => None,
                    None => return Ok(None),
                };
                Ok(Some((csv_rows(&records, &urls), next)))
            }
        });
    header.chain(pages)
}

/// Up to [`CSV_PAGE`] records of the month after `(completed_at, job_key)`, in that order.
async fn records_after(
    db: &PgPool,
    workspace_id: Uuid,
    month: Month,
    (after_time, after_key): (DateTime<Utc>, &str),
) -> Result<Vec<UsageRecord>, sqlx::Error> {
    sqlx::query_as!(
        UsageRecord,
        "SELECT job_key, workspace_id, label, sku_label, premium, vcpus, repository, workflow,
                started_at, completed_at, minutes, free_vcpu_minutes, price_per_minute,
                premium_surcharge_per_minute, discount_basis_points, amount
         FROM usage_records
         WHERE workspace_id = $1 AND completed_at < $2 AND (completed_at, job_key) > ($3, $4)
         ORDER BY completed_at, job_key
         LIMIT $5",
        workspace_id,
        month.end(),
        after_time,
        after_key,
        CSV_PAGE,
    )
    .fetch_all(db)
    .await
}

/// The pages on GitHub of the jobs behind `records` (by job key), from their `workflow_job`
/// deliveries; a job metered by hand has none.
async fn github_urls(
    db: &PgPool,
    workspace_id: Uuid,
    records: &[UsageRecord],
) -> Result<std::collections::HashMap<String, String>, sqlx::Error> {
    // `<GitHub job id>:<attempt>`; a key of another shape came from no delivery.
    let (ids, attempts): (Vec<i64>, Vec<i32>) = records
        .iter()
        .filter_map(|r| {
            let (id, attempt) = r.job_key.split_once(':')?;
            Some((id.parse::<i64>().ok()?, attempt.parse::<i32>().ok()?))
        })
        .unzip();
    let rows: Vec<(i64, i32, String)> = sqlx::query_as(
        "SELECT g.github_job_id, g.run_attempt, g.html_url
         FROM unnest($2::bigint[], $3::integer[]) AS k (github_job_id, run_attempt)
         JOIN github_jobs g USING (github_job_id, run_attempt)
         JOIN github_installations i ON i.installation_id = g.installation_id
         WHERE i.workspace_id = $1 AND g.html_url IS NOT NULL",
    )
    .bind(workspace_id)
    .bind(&ids)
    .bind(&attempts)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, attempt, url)| (format!("{id}:{attempt}"), url))
        .collect())
}

/// The CSV header, for finance: times in UTC (RFC 3339), the job's run in seconds and its billed
/// minutes (whole minutes, rounded up), free minutes in 2-vCPU minutes (10 minutes on 4 vCPUs use
/// 20), the price per minute with any premium surcharge, the discount, and the amount in US
/// dollars (6 decimals) and exactly, in millionths of a cent; last, the job's page on GitHub.
pub const CSV_HEADER: &str = "job_key,started_at,completed_at,repository,workflow,label,premium,vcpus,run_seconds,billed_minutes,free_minutes_used_2vcpu_minutes,price_per_minute_usd,discount_percent,currency,amount_usd,amount_millionths_of_a_cent,github_url";

/// CSV rows of `records`, one per job, with the GitHub page of each job in `urls`.
fn csv_rows(records: &[UsageRecord], urls: &std::collections::HashMap<String, String>) -> String {
    let mut csv = String::with_capacity(records.len() * 220);
    for record in records {
        let fields = [
            record.job_key.clone(),
            record.started_at.to_rfc3339(),
            record.completed_at.to_rfc3339(),
            record.repository.clone(),
            record.workflow.clone(),
            record.label.clone(),
            record.premium.to_string(),
            record.vcpus.to_string(),
            (record.completed_at - record.started_at)
                .num_seconds()
                .to_string(),
            record.minutes.to_string(),
            free_minutes_text(record.free_vcpu_minutes),
            money::dollars(
                record.price_per_minute + record.premium_surcharge_per_minute,
                6,
            ),
            format!(
                "{}.{:02}",
                record.discount_basis_points / 100,
                record.discount_basis_points % 100
            ),
            "USD".to_owned(),
            money::dollars(record.amount, 6),
            record.amount.to_string(),
            urls.get(&record.job_key).cloned().unwrap_or_default(),
        ];
        let escaped: Vec<String> = fields.iter().map(|field| csv_field(field)).collect();
        csv.push_str(&escaped.join(","));
        csv.push('\n');
    }
    csv
}

/// Free minutes used, in 2-vCPU minutes, from vCPU-minutes: 20 → "10", 3 → "1.5".
pub fn free_minutes_text(free_vcpu_minutes: i64) -> String {
    if free_vcpu_minutes % 2 == 0 {
        (free_vcpu_minutes / 2).to_string()
    } else {
        format!("{}.5", free_vcpu_minutes / 2)
    }
}

/// A CSV cell, quoted when needed. A cell a spreadsheet would run as a formula (starting with
/// `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`: repository and workflow
/// names come from customers, and a CSV opened in a spreadsheet must not execute them.
fn csv_field(field: &str) -> String {
    let neutralised = if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{field}")
    } else {
        field.to_owned()
    };
    if neutralised.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", neutralised.replace('"', "\"\""))
    } else {
        neutralised
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn months_parse_and_step() {
        let november = Month::parse("2026-11").expect("valid");
        assert_eq!(november.to_string(), "2026-11");
        assert_eq!(november.days(), 30);
        assert_eq!(november.next().to_string(), "2026-12");
        assert_eq!(november.next().next().to_string(), "2027-01");
        assert_eq!(
            Month::parse("2027-01").expect("valid").previous(),
            Month::parse("2026-12").expect("valid")
        );
        assert_eq!(Month::parse("2026-13"), None);
        assert_eq!(Month::parse("soon"), None);
    }

    #[test]
    fn projection_scales_the_amount_so_far_to_the_whole_month() {
        let month = Month::parse("2026-11").expect("valid");
        let halfway = month.start() + Duration::days(15);
        assert_eq!(project(1_000, month, halfway), Ok(2_000));
        assert_eq!(
            project(1_000, month, month.end() + Duration::days(3)),
            Ok(1_000)
        );
        assert_eq!(
            project(1_000, month, month.start() - Duration::days(1)),
            Ok(0)
        );
    }

    #[test]
    fn a_csv_row_carries_what_finance_needs_to_check_the_charge() {
        let completed_at = Utc
            .with_ymd_and_hms(2026, 11, 3, 10, 4, 30)
            .single()
            .expect("time");
        let record = UsageRecord {
            job_key: "123:2".to_owned(),
            workspace_id: Uuid::nil(),
            label: "tenki-standard-4c-premium".to_owned(),
            sku_label: "tenki-standard-4c".to_owned(),
            premium: true,
            vcpus: 4,
            repository: "acme/web".to_owned(),
            workflow: "Build, test".to_owned(),
            started_at: completed_at - Duration::seconds(185),
            completed_at,
            minutes: 4,
            free_vcpu_minutes: 3,
            price_per_minute: 600_000,
            premium_surcharge_per_minute: 300_000,
            discount_basis_points: 1_050,
            amount: 2_416_500,
        };
        let urls = std::collections::HashMap::from([(
            "123:2".to_owned(),
            "https://github.com/acme/web/actions/runs/9/job/123".to_owned(),
        )]);
        let row = csv_rows(&[record], &urls);
        assert_eq!(
            row,
            "123:2,2026-11-03T10:01:25+00:00,2026-11-03T10:04:30+00:00,acme/web,\"Build, test\",\
             tenki-standard-4c-premium,true,4,185,4,1.5,0.009000,10.50,USD,0.024165,2416500,\
             https://github.com/acme/web/actions/runs/9/job/123\n"
        );
        assert_eq!(
            CSV_HEADER.split(',').count(),
            row.trim_end()
                .replace("\"Build, test\"", "x")
                .split(',')
                .count(),
            "a column per header"
        );
    }

    #[test]
    fn csv_quotes_fields_with_commas() {
        assert_eq!(csv_field("build, test"), "\"build, test\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }

    #[test]
    fn csv_cells_a_spreadsheet_would_run_are_neutralised() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-2"), "'-2");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("acme/build"), "acme/build");
        assert!(CSV_HEADER.contains("free_minutes_used_2vcpu_minutes"));
    }
}
