//! The Jobs page: recent jobs with their queue time (GitHub's part and Tenki's), run time, cost
//! and status, filterable by status and label, and per-label p50/p90 and failure rate over the
//! last 7 days. Refreshes while it is open, so a running job's status moves on its own.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::dashboard::ErrorNotice;
use crate::error::AppError;

/// One job on the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    /// `<GitHub job id>:<attempt>`.
    pub id: String,
    /// When GitHub queued it: "12 min ago".
    pub when: String,
    /// The same moment exactly, in UTC, and when it started, for the hover text.
    pub when_exact: String,
    /// The same moment as RFC 3339, for `<time datetime>`.
    pub when_iso: String,
    /// The job's own name (`build`), or its workflow's when GitHub did not name it.
    pub name: String,
    pub workflow: String,
    pub repository: String,
    /// The job's page on GitHub.
    pub github_url: Option<String>,
    pub label: String,
    /// queued, starting, waiting, blocked, running, succeeded, failed, cancelled, skipped.
    pub status: String,
    pub github_queue: String,
    pub tenki_queue: String,
    pub duration: String,
    pub billed_minutes: String,
    /// In 2-vCPU minutes.
    pub free_minutes: String,
    pub cost: String,
    /// Why a completed job costs nothing and never will ("label not offered: …").
    pub not_billed_reason: Option<String>,
    /// Why a job that is not running yet waits, in the customer's words.
    pub waiting_reason: Option<String>,
    /// The runner it ran on.
    pub runner: Option<String>,
}

/// One label's figures over 7 days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelStatsView {
    pub label: String,
    pub jobs: i64,
    pub queue: String,
    pub run: String,
    pub failure_rate: String,
}

/// What the list is narrowed to, as the page's address says it (empty: everything).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsQuery {
    pub status: String,
    pub label: String,
    pub repository: String,
    /// Where the page starts (an older page), empty for the newest jobs.
    pub before: String,
}

impl JobsQuery {
    /// Whether any filter narrows the list (the page position is not a filter).
    pub fn filtered(&self) -> bool {
        !(self.status.is_empty() && self.label.is_empty() && self.repository.is_empty())
    }

    /// The Jobs page's address for these filters, starting at `before` (empty: the newest).
    pub fn href(&self, before: &str) -> String {
        use crate::dashboard::query_value;
        let pairs = [
            ("status", self.status.as_str()),
            ("label", self.label.as_str()),
            ("repository", self.repository.as_str()),
            ("before", before),
        ];
        let query: Vec<String> = pairs
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| format!("{name}={}", query_value(value)))
            .collect();
        if query.is_empty() {
            "/jobs".to_owned()
        } else {
            format!("/jobs?{}", query.join("&"))
        }
    }

    /// The same filters with another status, from the newest job.
    fn with_status(&self, status: &str) -> Self {
        Self {
            status: status.to_owned(),
            before: String::new(),
            ..self.clone()
        }
    }
}

/// Everything the Jobs page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsView {
    pub jobs: Vec<JobView>,
    /// Where the next, older page starts; `None` on the last page.
    pub older: Option<String>,
    pub stats: Vec<LabelStatsView>,
    /// What the filters offer: the workspace's repositories and Tenki's labels.
    pub repositories: Vec<String>,
    pub labels: Vec<String>,
}

/// Jobs on one page.
pub const PAGE_SIZE: usize = 50;

/// The caller's jobs with `status`, `label` and in `repository` (each empty: any), newest
/// first, a page at a time: the page after the job `before` names (empty: the newest).
#[server(prefix = "/api", endpoint = "jobs")]
pub async fn list_jobs(
    status: String,
    label: String,
    repository: String,
    before: String,
) -> Result<JobsView, AppError> {
    crate::server::respond(
        async move {
            use tenki_core::jobs::{self, JobCursor, JobFilter};
            use tenki_core::{catalog, money, usage};

            let context = crate::server::context()?;
            let caller = crate::server::caller(&context).await?;
            let now = chrono::Utc::now();
            let after = match before.trim() {
                "" => None,
                text => Some(
                    text.parse::<JobCursor>()
                        .map_err(|message| AppError::Invalid {
                            field: "before".to_owned(),
                            message,
                        })?,
                ),
            };
            let filter = JobFilter {
                status: Some(status).filter(|s| !s.is_empty()),
                label: Some(label).filter(|l| !l.is_empty()),
                repository: Some(repository).filter(|r| !r.is_empty()),
            };
            let workspace = caller.member.workspace_id;
            let db = &context.core.db;
            let page = jobs::job_page(db, workspace, &filter, after, PAGE_SIZE, now)
                .await
                .map_err(|e| AppError::internal_error(&e))?;
            let stats = jobs::label_stats(db, workspace, now - chrono::Duration::days(7))
                .await
                .map_err(|e| AppError::internal_error(&e))?;
            let repositories = jobs::repositories(db, workspace)
                .await
                .map_err(|e| AppError::internal_error(&e))?;
            let labels = catalog::catalog(db, now)
                .await
                .map_err(|e| AppError::internal_error(&e))?
                .into_iter()
                .flat_map(|entry| {
                    let premium = entry
                        .price
                        .premium_surcharge_per_minute
                        .map(|_| format!("{}{}", entry.sku.label, catalog::PREMIUM_SUFFIX));
                    std::iter::once(entry.sku.label).chain(premium)
                })
                .collect();
            let seconds =
                |s: Option<f64>| s.map_or_else(|| "—".to_owned(), |s| duration(s.round() as i64));
            let dash = || "—".to_owned();
            Ok(JobsView {
                older: page.older.map(|cursor| cursor.to_string()),
                jobs: page
                    .jobs
                    .into_iter()
                    .map(|row| {
                        // Listed in the order GitHub queued them, so that is the time shown.
                        let queued = row.created_at;
                        let started = row.started_at.map_or_else(String::new, |at| {
                            format!(", started {}", at.format("%H:%M:%S"))
                        });
                        JobView {
                            id: format!("{}:{}", row.github_job_id, row.run_attempt),
                            when: ago(
                                now.signed_duration_since(queued).num_seconds(),
                                &queued.format("%b %-d").to_string(),
                            ),
                            when_exact: format!(
                                "Queued {} UTC{started}",
                                queued.format("%Y-%m-%d %H:%M:%S")
                            ),
                            when_iso: queued.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            name: row.job_name.unwrap_or_else(|| row.workflow.clone()),
                            workflow: row.workflow,
                            repository: row.repository,
                            github_url: row.html_url,
                            label: row.label,
                            status: admission_word(&row.status, &row.admission)
                                .unwrap_or_else(|| {
                                    status_word(&row.status, row.conclusion.as_deref())
                                })
                                .to_owned(),
                            waiting_reason: row
                                .admission_reason
                                .filter(|_| matches!(row.status.as_str(), "waiting" | "queued")),
                            runner: row.runner_name,
                            github_queue: row.github_queue_seconds.map_or_else(dash, duration),
                            tenki_queue: row.tenki_queue_seconds.map_or_else(dash, duration),
                            duration: row.run_seconds.map_or_else(dash, duration),
                            billed_minutes: row.minutes.map_or_else(dash, |m| m.to_string()),
                            free_minutes: row
                                .free_vcpu_minutes
                                .map_or_else(dash, usage::free_minutes_text),
                            cost: row
                                .amount
                                .map_or_else(dash, |a| format!("${}", money::dollars(a, 4))),
                            not_billed_reason: row.not_billed_reason,
                        }
                    })
                    .collect(),
                stats: stats
                    .into_iter()
                    .map(|s| LabelStatsView {
                        label: s.label,
                        jobs: s.jobs,
                        queue: format!(
                            "{} / {}",
                            seconds(s.queue_p50_seconds),
                            seconds(s.queue_p90_seconds)
                        ),
                        run: format!(
                            "{} / {}",
                            seconds(s.run_p50_seconds),
                            seconds(s.run_p90_seconds)
                        ),
                        failure_rate: s
                            .failure_rate
                            .map_or_else(|| "—".to_owned(), |r| format!("{:.0}%", r * 100.0)),
                    })
                    .collect(),
                repositories,
                labels,
            })
        }
        .await,
    )
}

/// How long ago, as a person says it: "just now", "12 min ago", "3 h ago", "2 days ago"; past
/// a week, the day (`date`, "Nov 12").
pub fn ago(seconds: i64, date: &str) -> String {
    match seconds.max(0) {
        s if s < 45 => "just now".to_owned(),
        s if s < 3_600 => format!("{} min ago", (s + 30) / 60),
        s if s < 86_400 => format!("{} h ago", s / 3_600),
        s if s < 172_800 => "yesterday".to_owned(),
        s if s < 7 * 86_400 => format!("{} days ago", s / 86_400),
        _ => date.to_owned(),
    }
}

/// The badge colours of a status: green succeeded, red failed, blue running, amber held up,
/// grey waiting or not run. The word is always shown too.
pub fn status_tone(status: &str) -> &'static str {
    match status {
        "succeeded" => "border-emerald-200 bg-emerald-50 text-emerald-800",
        "failed" => "border-red-200 bg-red-50 text-red-800",
        "running" | "starting" => "border-sky-200 bg-sky-50 text-sky-800",
        "blocked" | "waiting" => "border-amber-200 bg-amber-50 text-amber-900",
        _ => "border-slate-200 bg-slate-50 text-slate-700",
    }
}

/// The status a customer reads.
pub fn status_word(status: &str, conclusion: Option<&str>) -> &'static str {
    match (status, conclusion) {
        ("waiting", _) => "waiting",
        ("queued", _) => "queued",
        ("in_progress", _) => "running",
        ("completed", Some("success")) => "succeeded",
        ("completed", Some("cancelled")) => "cancelled",
        ("completed", Some("skipped")) => "skipped",
        ("completed", _) => "failed",
        _ => "unknown",
    }
}

/// While a job waits for a runner, where it stands in admission: "starting" (a runner is on its
/// way), "waiting" (for a slot or capacity) or "blocked" (a gate). `None`: the job's own status.
pub fn admission_word(status: &str, admission: &str) -> Option<&'static str> {
    if !matches!(status, "waiting" | "queued") {
        return None;
    }
    match admission {
        "admitted" => Some("starting"),
        "waiting" => Some("waiting"),
        "blocked" => Some("blocked"),
        _ => None,
    }
}

/// 65 → "1m 05s"; 3,700 → "1h 01m".
pub fn duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3_600 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{}h {:02}m", s / 3_600, (s % 3_600) / 60),
    }
}

const STATUSES: [(&str, &str); 4] = [
    ("", "All"),
    ("queued", "Queued"),
    ("in_progress", "Running"),
    ("completed", "Completed"),
];

/// The Jobs page.
#[component]
pub fn JobsPage() -> impl IntoView {
    let query_map = use_query_map();
    let query = Memo::new(move |_| {
        let map = query_map.read();
        JobsQuery {
            status: map.get("status").unwrap_or_default(),
            label: map.get("label").unwrap_or_default(),
            repository: map.get("repository").unwrap_or_default(),
            before: map.get("before").unwrap_or_default(),
        }
    });
    let data = Resource::new(
        move || query.get(),
        |q| list_jobs(q.status, q.label, q.repository, q.before),
    );
    // Live: a running job's status, queue time and duration move while the page is open.
    Effect::new(move |_| {
        if let Ok(handle) =
            set_interval_with_handle(move || data.refetch(), crate::dashboard::LIVE_REFRESH)
        {
            on_cleanup(move || handle.clear());
        }
    });
    view! {
        <leptos_meta::Title text="Jobs · Tenki"/>
        <h1 class="text-2xl font-semibold text-slate-900">"Jobs"</h1>
        <nav class="mt-4 flex flex-wrap gap-2" aria-label="Filter by status">
            {move || {
                let current = query.get();
                STATUSES.iter().map(|(value, name)| {
                    let active = current.status == *value;
                    let class = if active {
                        "rounded-full border border-indigo-600 bg-indigo-600 px-3 py-1 text-sm font-medium text-white"
                    } else {
                        "rounded-full border border-slate-300 bg-white px-3 py-1 text-sm text-slate-700 hover:bg-slate-100"
                    };
                    view! {
                        <a href=current.with_status(value).href("") class=class
                            aria-current=active.then_some("page")>{*name}</a>
                    }
                }).collect_view()
            }}
        </nav>
        <Transition fallback=|| view! { <p class="mt-6 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(view) => view! { <JobsBody view query=query.get_untracked()/> }.into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// The repository and label filters: a plain GET form, so it works without JavaScript too.
#[component]
fn JobFilters(query: JobsQuery, repositories: Vec<String>, labels: Vec<String>) -> impl IntoView {
    let select =
        "mt-1 block w-full rounded-md border border-slate-300 bg-white px-2 py-1.5 text-sm sm:w-56";
    let option = |value: String, chosen: &str| {
        let selected = value == chosen;
        let text = value.clone();
        view! { <option value=value selected=selected>{text}</option> }
    };
    let filtered = query.filtered();
    view! {
        <form method="get" action="/jobs" class="mt-4 flex flex-wrap items-end gap-3" data-testid="job-filters">
            {(!query.status.is_empty()).then(|| view! { <input type="hidden" name="status" value=query.status.clone()/> })}
            <label class="text-sm text-slate-600">"Repository"
                <select name="repository" class=select>
                    <option value="" selected=query.repository.is_empty()>"All repositories"</option>
                    {repositories.into_iter().map(|r| option(r, &query.repository)).collect_view()}
                </select>
            </label>
            <label class="text-sm text-slate-600">"Label"
                <select name="label" class=select>
                    <option value="" selected=query.label.is_empty()>"All labels"</option>
                    {labels.into_iter().map(|l| option(l, &query.label)).collect_view()}
                </select>
            </label>
            <button type="submit" class="rounded-md bg-slate-900 px-3 py-1.5 text-sm font-medium text-white hover:bg-slate-700">"Show jobs"</button>
            {filtered.then(|| view! {
                <a href="/jobs" class="py-1.5 text-sm text-indigo-700 hover:underline">"Clear filters"</a>
            })}
        </form>
    }
}

#[component]
fn JobsBody(view: JobsView, query: JobsQuery) -> impl IntoView {
    let empty_text = view.jobs.is_empty().then_some(if query.filtered() {
        "No jobs match these filters."
    } else if query.before.is_empty() {
        "No jobs yet."
    } else {
        "No older jobs."
    });
    let newer = (!query.before.is_empty()).then(|| query.href(""));
    let older = view.older.as_deref().map(|cursor| query.href(cursor));
    let filters = view! {
        <JobFilters query=query.clone() repositories=view.repositories labels=view.labels/>
    }
    .into_any();
    let stats = view! { <LabelStatsTable stats=view.stats/> }.into_any();
    let table = view! { <JobTable jobs=view.jobs.clone()/> }.into_any();
    let cards = view! { <JobCards jobs=view.jobs/> }.into_any();
    let pages =
        (newer.is_some() || older.is_some()).then(|| view! { <Pager newer older/> }.into_any());
    view! {
        {filters}
        {stats}
        <section class="mt-6 rounded-xl border border-slate-200 bg-white shadow-sm">
            <h2 class="px-4 pt-4 text-sm font-medium text-slate-500">"Recent jobs"</h2>
            // Laptops: a table. Phones: a card per job, so no column is cut off.
            {table}
            {cards}
            {empty_text.map(|text| view! { <p class="px-4 pb-4 text-sm text-slate-500">{text}</p> })}
            {pages}
        </section>
    }
}

/// Queue and run time percentiles and the failure rate per label over 7 days.
#[component]
fn LabelStatsTable(stats: Vec<LabelStatsView>) -> impl IntoView {
    view! {
        <section class="mt-6 overflow-x-auto rounded-xl border border-slate-200 bg-white shadow-sm">
            <h2 class="px-4 pt-4 text-sm font-medium text-slate-500">"Last 7 days, by label"</h2>
            <table class="mt-2 w-full text-left text-sm" data-testid="job-stats">
                <thead class="border-b border-slate-200 text-slate-500">
                    <tr>
                        <th class="px-4 py-2 font-medium">"Label"</th>
                        <th class="px-4 py-2 text-right font-medium">"Jobs"</th>
                        <th class="px-4 py-2 text-right font-medium max-sm:hidden">"Queue p50 / p90"</th>
                        <th class="px-4 py-2 text-right font-medium max-sm:hidden">"Run p50 / p90"</th>
                        <th class="px-4 py-2 text-right font-medium">"Failure rate"</th>
                    </tr>
                </thead>
                <tbody>
                    {stats.into_iter().map(|s| {
                        let href = JobsQuery { label: s.label.clone(), ..JobsQuery::default() }.href("");
                        view! {
                            <tr class="border-b border-slate-100 last:border-0">
                                <td class="px-4 py-2">
                                    <a href=href class="font-mono text-xs whitespace-nowrap text-indigo-700 hover:underline">{s.label}</a>
                                    // On a phone the percentiles go under the label, not off screen.
                                    <span class="block text-xs text-slate-500 sm:hidden">"queue " {s.queue.clone()} " · run " {s.run.clone()}</span>
                                </td>
                                <td class="px-4 py-2 text-right">{s.jobs}</td>
                                <td class="px-4 py-2 text-right whitespace-nowrap max-sm:hidden">{s.queue}</td>
                                <td class="px-4 py-2 text-right whitespace-nowrap max-sm:hidden">{s.run}</td>
                                <td class="px-4 py-2 text-right">{s.failure_rate}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

/// The jobs as a table, on screens wider than a phone's.
#[component]
fn JobTable(jobs: Vec<JobView>) -> impl IntoView {
    view! {
        <div class="mt-2 overflow-x-auto max-md:hidden">
            <table class="w-full text-left text-sm" data-testid="jobs">
                <thead class="border-b border-slate-200 text-slate-500">
                    <tr>
                        <th class="px-2 py-2 font-medium">"Queued"</th>
                        <th class="px-2 py-2 font-medium">"Job"</th>
                        <th class="px-2 py-2 font-medium">"Label"</th>
                        <th class="px-2 py-2 font-medium">"Status"</th>
                        <th class="px-2 py-2 text-right font-medium"><abbr title="Queue time before GitHub sent the job to Tenki, then Tenki's own until a runner took it" class="no-underline">"Queued: GitHub + Tenki"</abbr></th>
                        <th class="px-2 py-2 text-right font-medium">"Duration"</th>
                        <th class="px-2 py-2 text-right font-medium">"Billed min"</th>
                        <th class="px-2 py-2 text-right font-medium"><abbr title="Free minutes used, counted in 2-vCPU minutes" class="no-underline">"Free min"</abbr></th>
                        <th class="px-2 py-2 text-right font-medium">"Cost"</th>
                    </tr>
                </thead>
                <tbody>
                    {jobs.into_iter().map(|job| {
                        let name = view! { <JobName job=job.clone()/> }.into_any();
                        let status = view! {
                            <StatusBadge status=job.status.clone()/>
                            <StatusNotes job=job.clone()/>
                        }
                        .into_any();
                        view! {
                            <tr class="border-b border-slate-100 align-top last:border-0" data-job=job.id>
                                <td class="px-2 py-2 whitespace-nowrap text-slate-600">
                                    <time datetime=job.when_iso title=job.when_exact data-testid="job-when">{job.when}</time>
                                </td>
                                <td class="px-2 py-2">{name}</td>
                                <td class="px-2 py-2 font-mono text-xs whitespace-nowrap">{job.label}</td>
                                <td class="px-2 py-2" data-testid="job-status">{status}</td>
                                <td class="px-2 py-2 text-right whitespace-nowrap" data-testid="job-queue">{job.github_queue} " + " {job.tenki_queue}</td>
                                <td class="px-2 py-2 text-right whitespace-nowrap" data-testid="job-duration">{job.duration}</td>
                                <td class="px-2 py-2 text-right" data-testid="job-billed-minutes">{job.billed_minutes}</td>
                                <td class="px-2 py-2 text-right" data-testid="job-free-minutes">{job.free_minutes}</td>
                                <td class="px-2 py-2 text-right" data-testid="job-cost">{job.cost}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// The jobs as cards, on a phone.
#[component]
fn JobCards(jobs: Vec<JobView>) -> impl IntoView {
    view! {
        <ul class="mt-2 divide-y divide-slate-100 md:hidden" data-testid="job-cards">
            {jobs.into_iter().map(|job| {
                let name = view! { <JobName job=job.clone()/> }.into_any();
                let badge = view! { <StatusBadge status=job.status.clone()/> }.into_any();
                let notes = view! { <StatusNotes job=job.clone()/> }.into_any();
                view! {
                    <li class="px-4 py-3" data-job=job.id data-testid="job-card">
                        <div class="flex items-start justify-between gap-3">
                            {name}
                            <div class="shrink-0" data-testid="job-status">{badge}</div>
                        </div>
                        <div class="mt-1">{notes}</div>
                        <dl class="mt-2 grid grid-cols-2 gap-x-4 gap-y-1 text-xs">
                            <dt class="text-slate-500">"Queued"</dt>
                            <dd class="text-right"><time datetime=job.when_iso title=job.when_exact>{job.when}</time></dd>
                            <dt class="text-slate-500">"Label"</dt>
                            <dd class="text-right font-mono break-all">{job.label}</dd>
                            <dt class="text-slate-500">"Queued: GitHub + Tenki"</dt>
                            <dd class="text-right">{job.github_queue} " + " {job.tenki_queue}</dd>
                            <dt class="text-slate-500">"Duration"</dt>
                            <dd class="text-right">{job.duration}</dd>
                            <dt class="text-slate-500">"Billed · free minutes"</dt>
                            <dd class="text-right">{job.billed_minutes} " · " {job.free_minutes}</dd>
                            <dt class="text-slate-500">"Cost"</dt>
                            <dd class="text-right font-medium" data-testid="job-cost">{job.cost}</dd>
                        </dl>
                    </li>
                }
            }).collect_view()}
        </ul>
    }
}

/// Links to the newest jobs and to the next, older page.
#[component]
fn Pager(newer: Option<String>, older: Option<String>) -> impl IntoView {
    view! {
        <nav class="flex justify-between border-t border-slate-100 px-4 py-3 text-sm" aria-label="Pages of jobs">
            {match newer {
                Some(href) => view! { <a href=href class="text-indigo-700 hover:underline">"← Newest jobs"</a> }.into_any(),
                None => view! { <span></span> }.into_any(),
            }}
            {older.map(|href| view! { <a href=href class="text-indigo-700 hover:underline" data-testid="older-jobs">"Older jobs →"</a> })}
        </nav>
    }
}

/// A job's name, workflow and repository, linked to its page on GitHub.
#[component]
fn JobName(job: JobView) -> impl IntoView {
    let label = format!("{} on GitHub (opens in a new tab)", job.name);
    view! {
        <div class="min-w-0">
            {match job.github_url {
                Some(url) => view! {
                    <a href=url target="_blank" rel="noopener noreferrer" aria-label=label
                        class="font-medium whitespace-nowrap text-indigo-700 hover:underline" data-testid="job-github-link">
                        {job.name.clone()} <span aria-hidden="true">" ↗"</span>
                    </a>
                }.into_any(),
                None => view! { <span class="font-medium text-slate-900">{job.name.clone()}</span> }.into_any(),
            }}
            <span class="block text-xs whitespace-nowrap text-slate-500" data-testid="job-where">{job.repository} " · " {job.workflow}</span>
        </div>
    }
}

/// A job's status as a coloured badge (the word is always there too).
#[component]
fn StatusBadge(status: String) -> impl IntoView {
    let badge = format!(
        "inline-block rounded-full border px-2 py-0.5 text-xs font-medium {}",
        status_tone(&status)
    );
    view! { <span class=badge data-testid="job-status-badge">{status}</span> }
}

/// Why a job waits or is not billed, and the runner it ran on.
#[component]
fn StatusNotes(job: JobView) -> impl IntoView {
    view! {
        {job.not_billed_reason.map(|reason| view! {
            <span class="block text-xs text-amber-700" data-testid="not-billed-reason">{reason}</span>
        })}
        {job.waiting_reason.map(|reason| view! {
            <span class="block text-xs text-amber-700" data-testid="waiting-reason">{reason}</span>
        })}
        {job.runner.map(|runner| view! {
            <span class="block font-mono text-xs text-slate-500" data-testid="job-runner">{runner}</span>
        })}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(65), "1m 05s");
        assert_eq!(duration(3_700), "1h 01m");
    }

    #[test]
    fn times_read_like_a_person_says_them() {
        assert_eq!(ago(10, "Nov 2"), "just now");
        assert_eq!(ago(12 * 60 + 10, "Nov 2"), "12 min ago");
        assert_eq!(ago(3 * 3_600 + 59, "Nov 2"), "3 h ago");
        assert_eq!(ago(30 * 3_600, "Nov 2"), "yesterday");
        assert_eq!(ago(3 * 86_400, "Nov 2"), "3 days ago");
        assert_eq!(ago(9 * 86_400, "Nov 2"), "Nov 2");
    }

    #[test]
    fn filters_keep_each_other_in_the_address() {
        let query = JobsQuery {
            status: "completed".to_owned(),
            label: "tenki-standard-4c".to_owned(),
            repository: "acme/web app".to_owned(),
            before: "17_1_1".to_owned(),
        };
        assert_eq!(
            query.href("9_2_1"),
            "/jobs?status=completed&label=tenki-standard-4c&repository=acme/web%20app&before=9_2_1"
        );
        assert_eq!(
            query.with_status("").href(""),
            "/jobs?label=tenki-standard-4c&repository=acme/web%20app"
        );
        assert_eq!(JobsQuery::default().href(""), "/jobs");
        assert!(
            !JobsQuery {
                before: "1_1_1".to_owned(),
                ..JobsQuery::default()
            }
            .filtered()
        );
    }

    #[test]
    fn statuses_use_the_customers_words() {
        assert_eq!(status_word("in_progress", None), "running");
        assert_eq!(status_word("completed", Some("success")), "succeeded");
        assert_eq!(status_word("completed", Some("failure")), "failed");
        assert_eq!(admission_word("queued", "admitted"), Some("starting"));
        assert_eq!(admission_word("queued", "blocked"), Some("blocked"));
        assert_eq!(admission_word("in_progress", "admitted"), None);
    }
}
