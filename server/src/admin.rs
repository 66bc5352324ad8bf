//! `tenki admin …` and `tenki demo`: operations staff's commands, each audited where it changes
//! money, and the sandbox's demo data.

use anyhow::{Context as _, bail};
use chrono::{Duration, Utc};
use clap::Subcommand;
use tenki_core::Core;
use tenki_core::ledger::adjustments::{self, Adjusted, AdminRequest};
use tenki_core::ledger::reconcile::{self, Scope};
use tenki_core::metering::{self, FinishedJob, JobKey};
use tenki_core::{admission, demo, identity, money, runners, workspaces};
use uuid::Uuid;

/// The admin subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Prove that the ledger, the usage records, the adjustments, the invoices and the payments
    /// agree to the micro-cent.
    /// Prints the differences, or "balanced"; exits non-zero when anything differs.
    Reconcile,
    /// Reverse a job's usage: give back its free minutes and money, remove its usage record.
    ReverseUsage {
        /// The job key: `<GitHub job id>:<run attempt>`.
        #[arg(long)]
        job: String,
        #[arg(long)]
        reason: String,
        /// The e-mail of the admin doing it.
        #[arg(long)]
        admin: String,
    },
    /// Add promotional credit (dollars, e.g. 25.00) to a workspace's balance.
    PromoCredit(PromoArgs),
    /// Deduct promotional credit (dollars) from a workspace's balance.
    PromoDeduct(PromoArgs),
    /// List the newest GitHub deliveries whose processing failed, with their errors.
    FailedDeliveries {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Process a stored GitHub delivery again, with fresh attempts (after fixing the cause).
    RetryDelivery {
        /// The `X-GitHub-Delivery` id.
        #[arg(long)]
        id: String,
    },
    /// Link a GitHub installation to the workspace of a person (support: customers connect
    /// GitHub from the Runners page).
    LinkInstallation {
        #[arg(long)]
        email: String,
        #[arg(long)]
        installation_id: i64,
    },
    /// Meter one finished job by hand, for the workspace of a person (support and the sandbox).
    MeterJob {
        #[arg(long)]
        email: String,
        #[arg(long)]
        label: String,
        /// Run time in seconds.
        #[arg(long)]
        seconds: i64,
        #[arg(long, default_value = "acme/web")]
        repository: String,
        #[arg(long, default_value = "CI")]
        workflow: String,
        /// The GitHub job id; default: a fresh one.
        #[arg(long)]
        job_id: Option<i64>,
        /// When it finished (RFC 3339); default: now. A past month can have usage to invoice.
        #[arg(long)]
        completed_at: Option<chrono::DateTime<Utc>>,
    },
    /// Run the monthly cycle for a month now (running it again changes nothing) and wait until
    /// its invoices settle or wait for a retry.
    RunBilling {
        /// The month billed, YYYY-MM; default: the previous month.
        #[arg(long)]
        month: Option<String>,
    },
    /// Discount all usage of a person's workspace (0–50 %) for jobs that start from now; audited.
    SetDiscount {
        #[arg(long)]
        email: String,
        /// Percent, e.g. 20 or 12.5.
        #[arg(long)]
        percent: String,
        #[arg(long)]
        reason: String,
        /// The e-mail of the admin doing it.
        #[arg(long)]
        admin: String,
    },
    /// A custom price per minute of a label for a person's workspace, for jobs that start from
    /// now (x64 prices get their 50 % premium surcharge); audited.
    SetPrice {
        #[arg(long)]
        email: String,
        #[arg(long)]
        label: String,
        /// Dollars per minute, e.g. 0.0025.
        #[arg(long)]
        per_minute: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        admin: String,
    },
    /// An add-on paid for a year ahead (sales): macOS $399 or boost $499, twelve months from the
    /// 1st of this one, billed on this month's invoice; the add-on is turned on now. Audited.
    PrepayAnnually {
        #[arg(long)]
        email: String,
        /// `macos` or `priority_boost`.
        #[arg(long)]
        addon: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        admin: String,
    },
    /// The newest enterprise inquiries.
    Inquiries {
        #[arg(long, default_value = "50")]
        limit: i64,
    },
    /// Undo what is left of a paid invoice's payment (the bank returned it, or it was recorded
    /// by mistake): the workspace owes it again, the owner is told; audited, once per invoice.
    ReversePayment {
        /// The invoice id (`tenki admin invoices` prints it).
        #[arg(long)]
        invoice: Uuid,
        #[arg(long)]
        reason: String,
        /// The e-mail of the admin doing it.
        #[arg(long)]
        admin: String,
    },
    /// Print each invoice of a person's workspace: status, lines, totals.
    Invoices {
        #[arg(long)]
        email: String,
        /// Only this month, YYYY-MM.
        #[arg(long)]
        month: Option<String>,
    },
    /// Record whether a person's workspace has a valid payment method (admission's free-minute
    /// gate; customers add cards on the Billing page, and card events set it from Stripe).
    SetCard {
        #[arg(long)]
        email: String,
        /// `valid` or `none`.
        #[arg(long)]
        status: CardStatus,
    },
    /// Turn an add-on of a person's workspace on or off (`macos`, `priority-boost`).
    SetAddon {
        #[arg(long)]
        email: String,
        #[arg(long)]
        addon: String,
        #[arg(long, conflicts_with = "off")]
        on: bool,
        #[arg(long)]
        off: bool,
    },
    /// Set the extra concurrency slots of a person's workspace, on top of the 40 included.
    SetSlots {
        #[arg(long)]
        email: String,
        /// `x64` or `macos`.
        #[arg(long)]
        class: RunnerClass,
        #[arg(long)]
        slots: u16,
    },
    /// Suspend a person's workspace (no new runners) or lift the suspension.
    Suspend {
        #[arg(long)]
        email: String,
        /// Lift the suspension instead.
        #[arg(long)]
        lift: bool,
    },
    /// List the runners Tenki has not deleted yet: state, label, age, job.
    Runners,
}

/// A payment method's state, as support records it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CardStatus {
    Valid,
    None,
}

/// The two concurrency pools.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RunnerClass {
    X64,
    Macos,
}

/// A promotional credit or deduction.
#[derive(Debug, clap::Args)]
pub struct PromoArgs {
    #[arg(long)]
    workspace: Uuid,
    /// Dollars, e.g. 25.00.
    #[arg(long, allow_hyphen_values = true)]
    amount: String,
    #[arg(long)]
    reason: String,
    /// The e-mail of the admin doing it.
    #[arg(long)]
    admin: String,
    /// Names this request: the same key twice changes the balance once. Default: derived from
    /// the workspace, amount, reason, admin and today's date.
    #[arg(long)]
    key: Option<String>,
}

/// Runs an admin command; `Ok(false)` means "ran, and found differences".
pub async fn run(core: &Core, command: AdminCommand) -> anyhow::Result<bool> {
    let now = Utc::now();
    match command {
        AdminCommand::Reconcile => {
            let report = reconcile::reconcile(&core.db, &core.ledger, &Scope::Everything)
                .await
                .context("reconciling")?;
            for difference in &report.differences {
                println!("{difference}");
            }
            if report.is_balanced() {
                println!(
                    "balanced: {} workspaces, {} usage records, {} usage rollups, {} invoices",
                    report.workspaces_checked,
                    report.usage_records_checked,
                    report.usage_rollups_checked,
                    report.invoices_checked
                );
            } else {
                println!("{} differences", report.differences.len());
            }
            Ok(report.is_balanced())
        }
        AdminCommand::ReverseUsage { job, reason, admin } => {
            let request = AdminRequest {
                admin_email: admin,
                reason,
            };
            let outcome = adjustments::reverse_usage(&core.db, &core.ledger, &job, &request, now)
                .await
                .with_context(|| format!("reversing job {job}"))?;
            println!(
                "{}",
                describe(&outcome, &format!("usage of job {job} reversed"))
            );
            Ok(true)
        }
        AdminCommand::PromoCredit(args) => promotional(core, args, 1).await,
        AdminCommand::PromoDeduct(args) => promotional(core, args, -1).await,
        AdminCommand::FailedDeliveries { limit } => {
            let failed = tenki_core::github::intake::failed_deliveries(&core.db, None, limit)
                .await
                .context("listing failed deliveries")?;
            for delivery in &failed {
                println!(
                    "{}  {}  {}.{}  installation {}  {}",
                    delivery.received_at.format("%Y-%m-%d %H:%M:%S"),
                    delivery.delivery_id,
                    delivery.event,
                    delivery.action.as_deref().unwrap_or("-"),
                    delivery
                        .installation_id
                        .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                    delivery.error.as_deref().unwrap_or("")
                );
            }
            println!("{} failed deliveries", failed.len());
            Ok(true)
        }
        AdminCommand::RetryDelivery { id } => {
            if tenki_core::github::intake::retry_delivery(&core.db, &id).await? {
                println!("delivery {id} queued for processing again");
                Ok(true)
            } else {
                bail!("no delivery {id} that Tenki processes is stored")
            }
        }
        AdminCommand::LinkInstallation {
            email,
            installation_id,
        } => {
            let workspace_id = workspaces::first_workspace_of_email(&core.db, &email)
                .await?
                .with_context(|| format!("no workspace for {email}"))?;
            tenki_core::github::onboarding::link_installation(
                &core.db,
                installation_id,
                workspace_id,
                None,
                false,
                now,
            )
            .await
            .with_context(|| format!("linking installation {installation_id}"))?;
            println!("installation {installation_id} linked to the workspace of {email}");
            Ok(true)
        }
        AdminCommand::SetCard { email, status } => {
            let valid = matches!(status, CardStatus::Valid);
            admission::support::set_card(&core.db, &email, valid).await?;
            println!(
                "payment method of {email}'s workspace: {}",
                if valid { "valid" } else { "none" }
            );
            Ok(true)
        }
        AdminCommand::SetAddon {
            email,
            addon,
            on,
            off,
        } => {
            if on == off {
                bail!("say --on or --off");
            }
            admission::support::set_addon(&core.db, &email, &addon, on, now).await?;
            println!(
                "add-on {addon} of {email}'s workspace: {}",
                if on { "on" } else { "off" }
            );
            Ok(true)
        }
        AdminCommand::SetSlots {
            email,
            class,
            slots,
        } => {
            let class = match class {
                RunnerClass::X64 => "x64",
                RunnerClass::Macos => "macos",
            };
            admission::support::set_slots(&core.db, &email, class, i32::from(slots)).await?;
            println!(
                "{email}'s workspace: {} {class} slots ({} included + {slots} extra)",
                admission::INCLUDED_SLOTS + i64::from(slots),
                admission::INCLUDED_SLOTS
            );
            Ok(true)
        }
        AdminCommand::Suspend { email, lift } => {
            admission::support::set_suspended(&core.db, &email, !lift, now).await?;
            println!(
                "{email}'s workspace: {}",
                if lift { "active" } else { "suspended" }
            );
            Ok(true)
        }
        AdminCommand::Runners => {
            let runners = runners::live_runners(&core.db, None).await?;
            if runners.is_empty() {
                println!("no runners");
            }
            for runner in runners {
                let age = (now - runner.created_at).num_seconds();
                println!(
                    "{}  {:<9}  {:<28}  {:>6}s  {}  {}{}",
                    runner.name,
                    runner.state,
                    runner.label,
                    age,
                    runner.workspace_id,
                    runner.repository.unwrap_or_default(),
                    runner
                        .failure
                        .map(|f| format!("  ({f})"))
                        .unwrap_or_default()
                );
            }
            Ok(true)
        }
        AdminCommand::MeterJob {
            email,
            label,
            seconds,
            repository,
            workflow,
            job_id,
            completed_at,
        } => {
            let workspace_id = workspaces::first_workspace_of_email(&core.db, &email)
                .await?
                .with_context(|| format!("no workspace for {email}"))?;
            // A fresh id from the real clock, whatever month the job is put in.
            let github_job_id = job_id.unwrap_or_else(|| fresh_job_id(now));
            let now = completed_at.unwrap_or(now);
            let job = FinishedJob {
                workspace_id,
                key: JobKey {
                    github_job_id,
                    run_attempt: 1,
                },
                label,
                started_at: now - Duration::seconds(seconds),
                completed_at: now,
                repository,
                workflow,
            };
            let record = metering::meter_job(&core.db, &core.ledger, &job, now).await?;
            println!(
                "job {} metered: {} minutes, {} free minutes, ${}",
                record.job_key,
                record.minutes,
                record.free_vcpu_minutes / 2,
                money::dollars(record.amount, 6)
            );
            Ok(true)
        }
        AdminCommand::RunBilling { month } => {
            use tenki_core::billing::invoices;
            let month = match month {
                Some(month) => parse_month(&month)?,
                None => invoices::previous_month(now),
            };
            let report = invoices::run_cycle(&core.db, month, now).await?;
            println!(
                "{}: {} invoices created, {} to move forward",
                month.format("%B %Y"),
                report.created,
                report.enqueued
            );
            // The server's workers move them; this command waits for them, so support sees the
            // outcome (bounded: 60 s).
            for _ in 0..600 {
                let open: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM invoices WHERE month = $1
                       AND state IN ('draft', 'lines_built', 'stripe_created', 'items_added', 'finalized')",
                )
                .bind(month)
                .fetch_one(&core.db)
                .await?;
                if open == 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let states: Vec<(String, i64)> = sqlx::query_as(
                "SELECT state, count(*) FROM invoices WHERE month = $1 GROUP BY state ORDER BY state",
            )
            .bind(month)
            .fetch_all(&core.db)
            .await?;
            for (state, count) in states {
                println!("  {state}: {count}");
            }
            Ok(true)
        }
        AdminCommand::SetDiscount {
            email,
            percent,
            reason,
            admin,
        } => {
            use tenki_core::billing::enterprise;
            let workspace_id = workspaces::first_workspace_of_email(&core.db, &email)
                .await?
                .with_context(|| format!("no workspace for {email}"))?;
            // Percent with up to two decimals → basis points, through the money parser's rules.
            let basis_points = money::parse_dollars(percent.trim().trim_end_matches('%'))
                .and_then(|micro| i32::try_from(micro / 10_000).ok())
                .with_context(|| format!("{percent:?} is not a percentage"))?;
            let request = tenki_core::ledger::adjustments::AdminRequest {
                admin_email: admin,
                reason,
            };
            enterprise::set_discount(&core.db, workspace_id, basis_points, &request, now).await?;
            println!("discount of {percent} % for jobs starting from {now}");
            Ok(true)
        }
        AdminCommand::PrepayAnnually {
            email,
            addon,
            reason,
            admin,
        } => {
            use tenki_core::billing::{addons::Addon, enterprise};
            let workspace_id = workspaces::first_workspace_of_email(&core.db, &email)
                .await?
                .with_context(|| format!("no workspace for {email}"))?;
            let addon = Addon::from_key(&addon)
                .with_context(|| format!("{addon:?} is not an add-on (macos, priority_boost)"))?;
            let request = tenki_core::ledger::adjustments::AdminRequest {
                admin_email: admin,
                reason,
            };
            let prepaid =
                enterprise::prepay_annually(&core.db, workspace_id, addon, &request, now).await?;
            println!(
                "{} paid for the year from {} (before {}): ${} on the invoice of {}",
                addon.name(),
                prepaid.starts,
                prepaid.ends,
                money::dollars(prepaid.price, 2),
                prepaid.starts.format("%B %Y")
            );
            Ok(true)
        }
        AdminCommand::SetPrice {
            email,
            label,
            per_minute,
            reason,
            admin,
        } => {
            use tenki_core::billing::enterprise;
            let workspace_id = workspaces::first_workspace_of_email(&core.db, &email)
                .await?
                .with_context(|| format!("no workspace for {email}"))?;
            let price = money::parse_dollars(&per_minute)
                .with_context(|| format!("{per_minute:?} is not a dollar amount"))?;
            let request = tenki_core::ledger::adjustments::AdminRequest {
                admin_email: admin,
                reason,
            };
            enterprise::set_price(&core.db, workspace_id, &label, price, &request, now).await?;
            println!("{label}: ${per_minute} per minute for jobs starting from {now}");
            Ok(true)
        }
        AdminCommand::Inquiries { limit } => {
            for inquiry in tenki_core::billing::enterprise::inquiries(&core.db, limit).await? {
                println!(
                    "{} {} <{}>: {}",
                    inquiry.created_at.format("%Y-%m-%d %H:%M"),
                    inquiry.company,
                    inquiry.email,
                    inquiry.message.replace('\n', " ")
                );
            }
            Ok(true)
        }
        AdminCommand::ReversePayment {
            invoice,
            reason,
            admin,
        } => {
            use tenki_core::billing::reversals::{self, Reversed};
            let request = AdminRequest {
                admin_email: admin,
                reason,
            };
            let outcome =
                reversals::reverse_by_admin(&core.db, &core.ledger, invoice, &request, now)
                    .await
                    .with_context(|| format!("reversing the payment of invoice {invoice}"))?;
            match outcome {
                Reversed::Done(cents) => println!(
                    "reversed ${} of invoice {invoice}; it is owed again",
                    money::dollars(cents * money::MICRO_CENTS_PER_CENT, 2)
                ),
                Reversed::AlreadyDone => println!("invoice {invoice} was reversed before"),
                Reversed::NothingLeft => {
                    println!(
                        "nothing left to reverse: invoice {invoice}'s payment was refunded or reversed"
                    )
                }
                Reversed::UnknownPayment => bail!("invoice {invoice} has no payment"),
            }
            Ok(true)
        }
        AdminCommand::Invoices { email, month } => {
            let workspace_id = workspaces::first_workspace_of_email(&core.db, &email)
                .await?
                .with_context(|| format!("no workspace for {email}"))?;
            let month = month.as_deref().map(parse_month).transpose()?;
            let all = tenki_core::billing::invoices::invoices_of(&core.db, workspace_id).await?;
            for invoice in all.iter().filter(|i| month.is_none_or(|m| i.month == m)) {
                println!(
                    "{} {}: {}, total ${}",
                    invoice.month.format("%B %Y"),
                    invoice.id,
                    invoice.state,
                    money::dollars(
                        invoice.total_cents.unwrap_or(0) * money::MICRO_CENTS_PER_CENT,
                        2
                    )
                );
                for (description, cents) in &invoice.lines {
                    println!(
                        "  {description}: ${}",
                        money::dollars(cents * money::MICRO_CENTS_PER_CENT, 2)
                    );
                }
                if let Some(url) = &invoice.hosted_invoice_url {
                    println!("  {url}");
                }
            }
            Ok(true)
        }
    }
}

/// "2026-10" → 2026-10-01.
fn parse_month(month: &str) -> anyhow::Result<chrono::NaiveDate> {
    tenki_core::usage::Month::parse(month)
        .map(tenki_core::usage::Month::first_day)
        .with_context(|| format!("{month:?} is not a month (YYYY-MM)"))
}

/// Credits (`sign` 1) or deducts (`sign` -1) a positive dollar amount.
async fn promotional(core: &Core, args: PromoArgs, sign: i64) -> anyhow::Result<bool> {
    let now = Utc::now();
    let PromoArgs {
        workspace,
        amount,
        reason,
        admin,
        key,
    } = args;
    let amount = amount.as_str();
    let request = AdminRequest {
        admin_email: admin,
        reason,
    };
    let micro_cents = money::parse_dollars(amount)
        .with_context(|| format!("{amount:?} is not an amount in dollars"))?;
    if micro_cents <= 0 {
        bail!("give a positive amount in dollars, e.g. 25.00");
    }
    let signed = sign * micro_cents;
    let key = key.unwrap_or_else(|| {
        format!(
            "{workspace}:{signed}:{}:{}:{}",
            request.reason,
            request.admin_email,
            now.date_naive()
        )
    });
    let outcome = adjustments::promotional_credit(
        &core.db,
        &core.ledger,
        workspace,
        signed,
        &key,
        &request,
        now,
    )
    .await
    .context("posting promotional credit")?;
    println!(
        "{}",
        describe(
            &outcome,
            &format!("${} promotional credit", money::dollars(signed, 2))
        )
    );
    Ok(true)
}

fn describe(outcome: &Adjusted, done: &str) -> String {
    match outcome {
        Adjusted::Done => done.to_owned(),
        Adjusted::AlreadyDone => format!("{done} before; nothing changed now"),
    }
}

/// A job id for a job metered by hand: far above GitHub's ids, unique per millisecond.
fn fresh_job_id(now: chrono::DateTime<Utc>) -> i64 {
    8_000_000_000_000 + now.timestamp_millis() % 1_000_000_000_000
}

/// The demo account `make run` creates on a fresh database.
pub const DEMO_EMAIL: &str = "demo@tenki.local";
/// Its password (sandbox only).
pub const DEMO_PASSWORD: &str = "tenki-demo-password";

/// `tenki demo`: creates the demo account (if missing), links a sandbox GitHub organization
/// to its workspace and delivers 30 days of that organization's jobs (queued, in progress,
/// completed) through the same intake as GitHub's deliveries: the jobs, their runners and their
/// usage are then what a real month would have left. Running it again adds nothing.
pub async fn demo(core: &Core, email: &str, password: &str) -> anyhow::Result<()> {
    use futures_util::StreamExt as _;

    let now = Utc::now();
    let workspace_id = match workspaces::first_workspace_of_email(&core.db, email).await? {
        Some(id) => id,
        None => {
            let signed_up = identity::sign_up(
                &core.db,
                &core.ledger,
                email,
                password,
                "Demo workspace",
                &identity::SignUpClient::LOCAL,
                now,
            )
            .await
            .context("creating the demo account")?;
            // The operator made the account: its address counts as confirmed.
            identity::verification::verify(
                &core.db,
                &core.ledger,
                &signed_up.email_verification,
                now,
            )
            .await
            .context("confirming the demo account's e-mail")?;
            signed_up.workspace_id
        }
    };
    let double = crate::sandbox::github::GitHubDouble::new(
        "http://127.0.0.1:1",
        secrecy::SecretString::from("unused: deliveries go straight to the intake"),
    );
    let installation_id = demo_installation(core, &double, workspace_id, now).await?;
    let jobs = demo::jobs(workspace_id, 30, now);
    let delivered = futures_util::stream::iter(&jobs)
        .map(|job| deliver_demo_job(core, &double, workspace_id, installation_id, job))
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?
        .len();
    println!(
        "demo workspace ready: {delivered} jobs over 30 days from the {} organization",
        demo::ACCOUNT
    );
    println!("sign in as {email} with password {password}");
    Ok(())
}

/// The demo organization's installation linked to `workspace_id`: found, or installed on the
/// sandbox GitHub, delivered as `installation.created` and linked.
async fn demo_installation(
    core: &Core,
    double: &crate::sandbox::github::GitHubDouble,
    workspace_id: Uuid,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<i64> {
    let linked: Option<i64> = sqlx::query_scalar(
        "SELECT installation_id FROM github_installations
         WHERE workspace_id = $1 AND account_login = $2 AND state = 'active'",
    )
    .bind(workspace_id)
    .bind(demo::ACCOUNT)
    .fetch_optional(&core.db)
    .await
    .context("looking for the demo installation")?;
    if let Some(id) = linked {
        return Ok(id);
    }
    let id = double.install(
        crate::sandbox::github::SANDBOX_USER,
        demo::ACCOUNT,
        &demo::REPOSITORIES,
    );
    let body = double
        .installation_created_body(id)
        .context("the sandbox GitHub lost the demo installation")?;
    deliver_locally(
        core,
        &format!("demo-installation-{id}"),
        "installation",
        &body,
        now,
    )
    .await?;
    // Its delivery listed its repositories: nothing for a running server to copy from a GitHub
    // double that has not heard of it.
    tenki_core::github::onboarding::link_delivered_installation(&core.db, id, workspace_id, now)
        .await
        .context("linking the demo installation")?;
    Ok(id)
}

/// Delivers one demo job's life as GitHub would: `queued`, then `in_progress` on a runner Tenki
/// started, then `completed`, each processed at the moment it happened.
async fn deliver_demo_job(
    core: &Core,
    double: &crate::sandbox::github::GitHubDouble,
    workspace_id: Uuid,
    installation_id: i64,
    job: &demo::DemoJob,
) -> anyhow::Result<()> {
    let runner = demo::record_past_runner(&core.db, workspace_id, installation_id, job)
        .await
        .context("recording a demo job's runner")?;
    let mut sample = crate::sandbox::github::SampleJob::queued(&job.label);
    sample.id = job.key.github_job_id;
    sample.run_id = job.run_id;
    sample.created_at = job.created_at;
    sample.name.clone_from(&job.job_name);
    sample.workflow.clone_from(&job.workflow);
    let steps = [
        ("queued", job.delivered_at),
        ("in_progress", job.started_at + Duration::seconds(1)),
        ("completed", job.completed_at + Duration::seconds(2)),
    ];
    for (status, at) in steps {
        sample.status = status;
        if status != "queued" {
            sample.started_at = Some(job.started_at);
            sample.runner_name = Some(runner.clone());
        }
        if status == "completed" {
            sample.completed_at = Some(job.completed_at);
            sample.conclusion = Some(job.conclusion);
        }
        let body = double.workflow_job_body(installation_id, &job.repository, &sample);
        let delivery_id = format!("demo-{}-{}", job.key, status);
        deliver_locally(core, &delivery_id, "workflow_job", &body, at).await?;
    }
    Ok(())
}

/// Stores a delivery as the intake does and processes it at once, both at `at`. A delivery
/// stored before (the demo ran already) is left as it is.
async fn deliver_locally(
    core: &Core,
    delivery_id: &str,
    event: &str,
    body: &serde_json::Value,
    at: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    use tenki_core::github::{events, intake};

    let text = body.to_string();
    let envelope = intake::Envelope::parse(&text).context("a demo delivery's envelope")?;
    let delivery = intake::NewDelivery {
        delivery_id: delivery_id.to_owned(),
        event: event.to_owned(),
        envelope,
        body: text,
        received_at: at,
    };
    let stored = intake::store_delivery(&core.db, delivery)
        .await
        .with_context(|| format!("storing demo delivery {delivery_id}"))?;
    if stored == intake::Intake::Queued {
        events::process_delivery(core, delivery_id, at)
            .await
            .with_context(|| format!("processing demo delivery {delivery_id}"))?;
    }
    Ok(())
}
