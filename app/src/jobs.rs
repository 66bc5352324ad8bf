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
    pub id: String,
    pub repository: String,
    pub workflow: String,
    pub label: String,
    /// queued, running, succeeded, failed…
    pub status: String,
    pub github_queue: String,
    pub tenki_queue: String,
    pub duration: String,
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

/// Everything the Jobs page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsView {
    pub jobs: Vec<JobView>,
    pub stats: Vec<LabelStatsView>,
}

/// The caller's recent jobs, optionally only those with `status` and `label` (empty: all).
#[server(prefix = "/api", endpoint = "jobs")]
pub async fn list_jobs(status: String, label: String) -> Result<JobsView, AppError> {
    crate::server::respond(
        async move {
            use tenki_core::jobs::{self, JobFilter};
            use tenki_core::money;

            let context = crate::server::context()?;
            let caller = crate::server::caller(&context).await?;
            let now = chrono::Utc::now();
            let filter = JobFilter {
                status: Some(status).filter(|s| !s.is_empty()),
                label: Some(label).filter(|l| !l.is_empty()),
            };
            let workspace = caller.member.workspace_id;
            let rows = jobs::recent_jobs(&context.core.db, workspace, &filter, 100, now)
                .await
                .map_err(|e| AppError::internal_error(&e))?;
            let stats =
                jobs::label_stats(&context.core.db, workspace, now - chrono::Duration::days(7))
                    .await
                    .map_err(|e| AppError::internal_error(&e))?;
            let seconds =
                |s: Option<f64>| s.map_or_else(|| "—".to_owned(), |s| duration(s.round() as i64));
            Ok(JobsView {
                jobs: rows
                    .into_iter()
                    .map(|row| JobView {
                        id: format!("{}:{}", row.github_job_id, row.run_attempt),
                        repository: row.repository,
                        workflow: row.workflow,
                        label: row.label,
                        status: admission_word(&row.status, &row.admission)
                            .unwrap_or_else(|| status_word(&row.status, row.conclusion.as_deref()))
                            .to_owned(),
                        waiting_reason: row
                            .admission_reason
                            .filter(|_| matches!(row.status.as_str(), "waiting" | "queued")),
                        runner: row.runner_name,
                        github_queue: row
                            .github_queue_seconds
                            .map_or_else(|| "—".to_owned(), duration),
                        tenki_queue: row
                            .tenki_queue_seconds
                            .map_or_else(|| "—".to_owned(), duration),
                        duration: row.run_seconds.map_or_else(|| "—".to_owned(), duration),
                        cost: row.amount.map_or_else(
                            || "—".to_owned(),
                            |a| format!("${}", money::dollars(a, 4)),
                        ),
                        not_billed_reason: row.not_billed_reason,
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
            })
        }
        .await,
    )
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
    let query = use_query_map();
    let filter = move || {
        let query = query.read();
        (
            query.get("status").unwrap_or_default(),
            query.get("label").unwrap_or_default(),
        )
    };
    let data = Resource::new(filter, |(status, label)| list_jobs(status, label));
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
            {STATUSES.iter().map(|(value, name)| {
                let href = if value.is_empty() { "/jobs".to_owned() } else { format!("/jobs?status={value}") };
                view! {
                    <a href=href class="rounded-full border border-slate-300 bg-white px-3 py-1 text-sm text-slate-700 hover:bg-slate-100">{*name}</a>
                }
            }).collect_view()}
        </nav>
        <Transition fallback=|| view! { <p class="mt-6 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(view) => view! { <JobsBody view/> }.into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn JobsBody(view: JobsView) -> impl IntoView {
    let empty = view.jobs.is_empty();
    view! {
        <section class="mt-6 overflow-x-auto rounded-xl border border-slate-200 bg-white shadow-sm">
            <h2 class="px-4 pt-4 text-sm font-medium text-slate-500">"Last 7 days, by label"</h2>
            <table class="mt-2 w-full text-left text-sm" data-testid="job-stats">
                <thead class="border-b border-slate-200 text-slate-500">
                    <tr>
                        <th class="px-4 py-2 font-medium">"Label"</th>
                        <th class="px-4 py-2 text-right font-medium">"Jobs"</th>
                        <th class="px-4 py-2 text-right font-medium">"Queue p50 / p90"</th>
                        <th class="px-4 py-2 text-right font-medium">"Run p50 / p90"</th>
                        <th class="px-4 py-2 text-right font-medium">"Failure rate"</th>
                    </tr>
                </thead>
                <tbody>
                    {view.stats.into_iter().map(|s| {
                        let href = format!("/jobs?label={}", s.label);
                        view! {
                            <tr class="border-b border-slate-100 last:border-0">
                                <td class="px-4 py-2 font-mono text-xs"><a href=href class="text-indigo-700 hover:underline">{s.label}</a></td>
                                <td class="px-4 py-2 text-right">{s.jobs}</td>
                                <td class="px-4 py-2 text-right">{s.queue}</td>
                                <td class="px-4 py-2 text-right">{s.run}</td>
                                <td class="px-4 py-2 text-right">{s.failure_rate}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </section>
        <section class="mt-6 overflow-x-auto rounded-xl border border-slate-200 bg-white shadow-sm">
            <h2 class="px-4 pt-4 text-sm font-medium text-slate-500">"Recent jobs"</h2>
            <table class="mt-2 w-full text-left text-sm" data-testid="jobs">
                <thead class="border-b border-slate-200 text-slate-500">
                    <tr>
                        <th class="px-4 py-2 font-medium">"Repository · workflow"</th>
                        <th class="px-4 py-2 font-medium">"Label"</th>
                        <th class="px-4 py-2 font-medium">"Status"</th>
                        <th class="px-4 py-2 text-right font-medium">"Queued at GitHub"</th>
                        <th class="px-4 py-2 text-right font-medium">"Queued at Tenki"</th>
                        <th class="px-4 py-2 text-right font-medium">"Duration"</th>
                        <th class="px-4 py-2 text-right font-medium">"Cost"</th>
                    </tr>
                </thead>
                <tbody>
                    {view.jobs.into_iter().map(|job| view! {
                        <tr class="border-b border-slate-100 last:border-0" data-job=job.id>
                            <td class="px-4 py-2">{job.repository} " · " {job.workflow}</td>
                            <td class="px-4 py-2 font-mono text-xs">{job.label}</td>
                            <td class="px-4 py-2" data-testid="job-status">
                                {job.status}
                                {job.not_billed_reason.map(|reason| view! {
                                    <span class="block text-xs text-amber-700" data-testid="not-billed-reason">{reason}</span>
                                })}
                                {job.waiting_reason.map(|reason| view! {
                                    <span class="block text-xs text-amber-700" data-testid="waiting-reason">{reason}</span>
                                })}
                                {job.runner.map(|runner| view! {
                                    <span class="block font-mono text-xs text-slate-500" data-testid="job-runner">{runner}</span>
                                })}
                            </td>
                            <td class="px-4 py-2 text-right">{job.github_queue}</td>
                            <td class="px-4 py-2 text-right">{job.tenki_queue}</td>
                            <td class="px-4 py-2 text-right">{job.duration}</td>
                            <td class="px-4 py-2 text-right">{job.cost}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            {empty.then(|| view! { <p class="px-4 pb-4 text-sm text-slate-500">"No jobs yet."</p> })}
        </section>
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
    fn statuses_use_the_customers_words() {
        assert_eq!(status_word("in_progress", None), "running");
        assert_eq!(status_word("completed", Some("success")), "succeeded");
        assert_eq!(status_word("completed", Some("failure")), "failed");
        assert_eq!(admission_word("queued", "admitted"), Some("starting"));
        assert_eq!(admission_word("queued", "blocked"), Some("blocked"));
        assert_eq!(admission_word("in_progress", "admitted"), None);
    }
}
