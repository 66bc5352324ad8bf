//! The Usage page: a month's minutes and cost by day (an SVG chart rendered on the server, so it
//! reads without JavaScript), by label, repository and workflow, with the CSV export.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::dashboard::ErrorNotice;
use crate::dashboard::thousands;
use crate::error::AppError;

/// One row of a breakdown table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    pub key: String,
    pub jobs: i64,
    pub minutes: i64,
    pub free_minutes: i64,
    /// Dollars, 2 decimals.
    pub cost: String,
}

/// One label's minutes on one day of the month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayBar {
    /// Day of the month, from 1.
    pub day: u32,
    pub label: String,
    pub minutes: i64,
    /// Micro-cents.
    pub amount: i64,
    pub cost: String,
}

/// Everything the Usage page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageView {
    /// `YYYY-MM`.
    pub month: String,
    /// "November 2026".
    pub month_name: String,
    pub previous_month: String,
    /// `None` while the next month has not started: there is nothing to show in it.
    pub next_month: Option<String>,
    /// The month has ended: its figures are totals, not figures so far.
    pub past: bool,
    pub days_in_month: u32,
    pub jobs: i64,
    pub minutes: i64,
    pub free_minutes: i64,
    pub cost: String,
    pub projected_cost: String,
    pub by_label: Vec<UsageRow>,
    pub by_repository: Vec<UsageRow>,
    pub by_workflow: Vec<UsageRow>,
    pub daily: Vec<DayBar>,
    /// What the workspace stores, in words (the Billing page shows the same).
    pub storage: Vec<String>,
}

/// The caller's workspace's usage in `month` (`YYYY-MM`; empty: this month).
#[server(prefix = "/api", endpoint = "usage")]
pub async fn usage_month(month: String) -> Result<UsageView, AppError> {
    crate::server::respond(
        async move {
            use chrono::Datelike;
            use tenki_core::money;
            use tenki_core::usage::{self, Month, UsageGroup};

            let context = crate::server::context()?;
            let caller = crate::server::caller(&context).await?;
            let now = chrono::Utc::now();
            let month = if month.trim().is_empty() {
                Month::containing(now)
            } else {
                Month::parse(&month).ok_or_else(|| AppError::Invalid {
                    field: "month".to_owned(),
                    message: "Choose a month as YYYY-MM.".to_owned(),
                })?
            };
            let month_name = month.start().format("%B %Y").to_string();
            if month.start() > now {
                return Err(AppError::Invalid {
                    field: "month".to_owned(),
                    message: format!("{month_name} has not started yet."),
                });
            }
            let found =
                usage::month_usage(&context.core.db, caller.member.workspace_id, month, now)
                    .await
                    .map_err(|e| AppError::internal_error(&e))?;
            // One precision for the whole page, enough that every table's lines add up to the
            // total shown (cents, unless sub-cent lines would not).
            let decimals = [&found.by_label, &found.by_repository, &found.by_workflow]
                .into_iter()
                .map(|groups| {
                    let amounts: Vec<i64> = groups.iter().map(|g| g.amount).collect();
                    money::decimals_that_add_up(&amounts, found.amount)
                })
                .max()
                .unwrap_or(2);
            let rows = |groups: Vec<UsageGroup>| -> Vec<UsageRow> {
                groups
                    .into_iter()
                    .map(|g| UsageRow {
                        key: g.key,
                        jobs: g.jobs,
                        minutes: g.minutes,
                        free_minutes: g.free_minutes,
                        cost: money::dollars(g.amount, decimals),
                    })
                    .collect()
            };
            let storage = crate::billing::storage_lines(
                &context.core,
                caller.member.workspace_id,
                month,
                now,
            )
            .await?;
            Ok(UsageView {
                storage,
                month: month.to_string(),
                month_name,
                previous_month: month.previous().to_string(),
                next_month: (month.end() <= now).then(|| month.next().to_string()),
                past: month.end() <= now,
                days_in_month: month.days(),
                jobs: found.jobs,
                minutes: found.minutes,
                free_minutes: found.free_minutes,
                cost: money::dollars(found.amount, decimals),
                projected_cost: money::dollars(found.projected_amount, 2),
                by_label: rows(found.by_label),
                by_repository: rows(found.by_repository),
                by_workflow: rows(found.by_workflow),
                daily: found
                    .daily
                    .into_iter()
                    .map(|d| DayBar {
                        day: d.day.day(),
                        label: d.label,
                        minutes: d.minutes,
                        amount: d.amount,
                        cost: money::dollars(d.amount, 2),
                    })
                    .collect(),
            })
        }
        .await,
    )
}

/// The Usage page.
#[component]
pub fn UsagePage() -> impl IntoView {
    let query = use_query_map();
    let month = move || query.read().get("month").unwrap_or_default();
    let data = Resource::new(month, usage_month);
    view! {
        <leptos_meta::Title text="Usage · Tenki"/>
        <h1 class="text-2xl font-semibold text-slate-900">"Usage"</h1>
        <Transition fallback=|| view! { <p class="mt-6 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(view) => view! { <UsageReport view/> }.into_any(),
                    Err(error) => view! {
                        <ErrorNotice error/>
                        <a href="/usage" class="mt-3 inline-block text-sm font-medium text-indigo-700 hover:underline">"Usage this month →"</a>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn UsageReport(view: UsageView) -> impl IntoView {
    let csv = format!("/usage/export.csv?month={}", view.month);
    let previous = format!("/usage?month={}", view.previous_month);
    let nav = "rounded-md border border-slate-300 bg-white px-3 py-1.5 text-sm text-slate-700 hover:bg-slate-100";
    let next = match view.next_month.clone() {
        Some(next) => view! { <a href=format!("/usage?month={next}") class=nav>"Next →"</a> }.into_any(),
        None => view! {
            <span aria-disabled="true" title="This month is not over yet" class="rounded-md border border-slate-200 px-3 py-1.5 text-sm text-slate-400" data-testid="usage-next-disabled">"Next →"</span>
        }
        .into_any(),
    };
    let totals = UsageRow {
        key: "Total".to_owned(),
        jobs: view.jobs,
        minutes: view.minutes,
        free_minutes: view.free_minutes,
        cost: view.cost.clone(),
    };
    let (cost_label, second) = if view.past {
        (
            "Total cost",
            view! { <Stat label="Jobs" value=thousands(u64::try_from(view.jobs).unwrap_or(0)) testid="usage-jobs"/> }.into_any(),
        )
    } else {
        (
            "Cost so far",
            view! { <Stat label="Projected month total" value=format!("${}", view.projected_cost) testid="usage-projected"/> }.into_any(),
        )
    };
    view! {
        <div class="mt-4 flex flex-wrap items-center justify-between gap-3">
            <div class="flex items-center gap-2">
                <a href=previous class=nav>"← Previous"</a>
                <span class="px-2 font-medium text-slate-900" data-testid="usage-month">{view.month_name.clone()}</span>
                {next}
            </div>
            <a href=csv download="" rel="external" class="rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-medium text-white hover:bg-indigo-700">"Export CSV"</a>
        </div>
        <div class="mt-6 grid gap-4 sm:grid-cols-2 lg:grid-cols-4">
            <Stat label=cost_label value=format!("${}", view.cost) testid="usage-cost"/>
            {second}
            <Stat label="Minutes" value=thousands(u64::try_from(view.minutes).unwrap_or(0)) testid="usage-minutes"/>
            <div class="rounded-xl border border-slate-200 bg-white p-4 shadow-sm">
                <p class="text-sm text-slate-500">"Free minutes used"</p>
                <p class="mt-1 text-2xl font-semibold text-slate-900" data-testid="usage-free-minutes">{thousands(u64::try_from(view.free_minutes).unwrap_or(0))}</p>
                <p class="mt-1 text-xs text-slate-500" data-testid="free-minutes-explained">"Counted in 2-vCPU minutes: 10 minutes on 4 vCPUs use 20."</p>
            </div>
        </div>
        <div class="mt-6 grid gap-6">
            <section class="min-w-0 rounded-xl border border-slate-200 bg-white p-4 shadow-sm">
                <h2 class="text-sm font-medium text-slate-500">"Minutes per day, by runner label"</h2>
                <DailyChart days=view.days_in_month bars=view.daily.clone() measure=Measure::Minutes month_name=view.month_name.clone()/>
            </section>
            <section class="min-w-0 rounded-xl border border-slate-200 bg-white p-4 shadow-sm">
                <h2 class="text-sm font-medium text-slate-500">"Cost per day, by runner label"</h2>
                <DailyChart days=view.days_in_month bars=view.daily.clone() measure=Measure::Cost month_name=view.month_name.clone()/>
            </section>
        </div>
        <DailyTable bars=view.daily.clone()/>
        <Breakdown title="By runner label" testid="usage-by-label" rows=view.by_label.clone() totals=totals.clone()/>
        <Breakdown title="By repository" testid="usage-by-repository" rows=view.by_repository.clone() totals=totals.clone()/>
        <Breakdown title="By workflow" testid="usage-by-workflow" rows=view.by_workflow.clone() totals/>
        <crate::billing::Storage storage=view.storage.clone()/>
    }
}

/// The charts' values as a table: the text alternative, and what a phone or keyboard reaches.
#[component]
fn DailyTable(bars: Vec<DayBar>) -> impl IntoView {
    (!bars.is_empty()).then(|| {
        view! {
            <details class="mt-4 rounded-xl border border-slate-200 bg-white shadow-sm" data-testid="usage-daily-table">
                <summary class="cursor-pointer px-4 py-3 text-sm font-medium text-slate-700">"Daily values as a table"</summary>
                <div class="overflow-x-auto">
                    <table class="w-full text-left text-sm">
                        <thead class="border-b border-slate-200 text-slate-500">
                            <tr>
                                <th class="px-4 py-2 font-medium">"Day"</th>
                                <th class="px-4 py-2 font-medium">"Runner label"</th>
                                <th class="px-4 py-2 text-right font-medium">"Minutes"</th>
                                <th class="px-4 py-2 text-right font-medium">"Cost"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {bars.into_iter().map(|bar| view! {
                                <tr class="border-b border-slate-100 last:border-0">
                                    <td class="px-4 py-1.5">{bar.day}</td>
                                    <td class="px-4 py-1.5 font-mono text-xs">{bar.label}</td>
                                    <td class="px-4 py-1.5 text-right">{thousands(u64::try_from(bar.minutes).unwrap_or(0))}</td>
                                    <td class="px-4 py-1.5 text-right">"$" {bar.cost}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
            </details>
        }
    })
}

#[component]
fn Stat(label: &'static str, value: String, testid: &'static str) -> impl IntoView {
    view! {
        <div class="rounded-xl border border-slate-200 bg-white p-4 shadow-sm">
            <p class="text-sm text-slate-500">{label}</p>
            <p class="mt-1 text-2xl font-semibold text-slate-900" data-testid=testid>{value}</p>
        </div>
    }
}

#[component]
fn Breakdown(
    title: &'static str,
    testid: &'static str,
    rows: Vec<UsageRow>,
    totals: UsageRow,
) -> impl IntoView {
    let empty = rows.is_empty();
    view! {
        <section class="mt-6 overflow-x-auto rounded-xl border border-slate-200 bg-white shadow-sm">
            <h2 class="px-4 pt-4 text-sm font-medium text-slate-500">{title}</h2>
            <table class="mt-2 w-full text-left text-sm" data-testid=testid>
                <thead class="border-b border-slate-200 text-slate-500">
                    <tr>
                        <th class="px-4 py-2 font-medium">"Name"</th>
                        <th class="px-4 py-2 text-right font-medium">"Jobs"</th>
                        <th class="px-4 py-2 text-right font-medium">"Minutes"</th>
                        <th class="px-4 py-2 text-right font-medium max-sm:hidden"><abbr title="Counted in 2-vCPU minutes" class="no-underline">"Free minutes"</abbr></th>
                        <th class="px-4 py-2 text-right font-medium">"Cost"</th>
                    </tr>
                </thead>
                <tbody>
                    {rows.into_iter().map(|row| view! {
                        <tr class="border-b border-slate-100 last:border-0">
                            <BreakdownCells row name_class="px-4 py-2 font-mono text-xs text-slate-800"/>
                        </tr>
                    }).collect_view()}
                </tbody>
                {(!empty).then(|| view! {
                    <tfoot class="border-t border-slate-300 font-medium text-slate-900">
                        <tr><BreakdownCells row=totals name_class="px-4 py-2"/></tr>
                    </tfoot>
                })}
            </table>
            {empty.then(|| view! { <p class="px-4 pb-4 text-sm text-slate-500">"No jobs this month."</p> })}
        </section>
    }
}

/// One row's cells of a breakdown table (a line or the total).
#[component]
fn BreakdownCells(row: UsageRow, name_class: &'static str) -> impl IntoView {
    let count = |value: i64| thousands(u64::try_from(value).unwrap_or(0));
    view! {
        <td class=name_class>{row.key}</td>
        <td class="px-4 py-2 text-right">{count(row.jobs)}</td>
        <td class="px-4 py-2 text-right">{count(row.minutes)}</td>
        <td class="px-4 py-2 text-right max-sm:hidden">{count(row.free_minutes)}</td>
        <td class="px-4 py-2 text-right">"$" {row.cost}</td>
    }
}

/// Colours of the labels in the chart, in label order.
const PALETTE: [&str; 8] = [
    "#6366f1", "#10b981", "#f59e0b", "#ef4444", "#0ea5e9", "#a855f7", "#ec4899", "#64748b",
];
/// What is drawn over each label's colour, in label order, so the series are told apart without
/// colour too: nothing, then stripes, dots, crossing lines, …
const TEXTURES: [&str; 5] = [
    "",
    r#"<path d="M0 6 L6 0" stroke="white" stroke-width="1.5"/>"#,
    r#"<circle cx="3" cy="3" r="1.2" fill="white"/>"#,
    r#"<path d="M0 3 H6" stroke="white" stroke-width="1.5"/>"#,
    r#"<path d="M0 6 L6 0 M0 0 L6 6" stroke="white" stroke-width="1"/>"#,
];
const CHART_WIDTH: f64 = 760.0;
const CHART_HEIGHT: f64 = 220.0;
const CHART_LEFT: f64 = 56.0;
const CHART_BOTTOM: f64 = 24.0;
/// Axis text, in the chart's units; the chart is never narrower than 640 px, so this stays
/// about 10 px on a phone.
const AXIS_TEXT: &str = "12";

/// What a chart stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    Minutes,
    /// Micro-cents, labelled in dollars.
    Cost,
}

impl Measure {
    fn of(self, bar: &DayBar) -> i64 {
        match self {
            Self::Minutes => bar.minutes,
            Self::Cost => bar.amount,
        }
    }

    /// The chart's top for a largest day of `largest`: a round number, at least 10 minutes or
    /// one cent.
    fn top(self, largest: i64) -> i64 {
        match self {
            Self::Minutes => nice_ceiling(largest),
            // $1 = 100,000,000 micro-cents; one cent is 1,000,000.
            Self::Cost => nice_ceiling(largest.max(1_000_000)),
        }
    }

    /// An axis label for `value` on a chart whose top is `top`: cents, or tenths of a cent when
    /// the whole chart is under ten cents, so the three labels never read the same.
    fn label(self, value: i64, top: i64) -> String {
        match self {
            Self::Minutes => thousands(u64::try_from(value).unwrap_or(0)),
            Self::Cost => {
                let decimals = if top < 10_000_000 { 3 } else { 2 };
                format!("${}", axis_dollars(value, decimals))
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Minutes => "Minutes",
            Self::Cost => "Cost",
        }
    }
}

/// Micro-cents in dollars with `decimals` (2 or 3), rounded half up.
fn axis_dollars(micro_cents: i64, decimals: u32) -> String {
    let per_unit = 10_i64.pow(8 - decimals);
    let scaled = (micro_cents + per_unit / 2) / per_unit;
    let base = 10_i64.pow(decimals);
    format!(
        "{}.{:0width$}",
        scaled / base,
        scaled % base,
        width = decimals as usize
    )
}

#[component]
fn DailyChart(days: u32, bars: Vec<DayBar>, measure: Measure, month_name: String) -> impl IntoView {
    let mut labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    labels.sort();
    labels.dedup();
    let index_of = |label: &str| labels.iter().position(|l| l == label).unwrap_or(0);
    let fill = |label: &str| {
        let index = index_of(label);
        if index % TEXTURES.len() == 0 && index < PALETTE.len() {
            PALETTE[index % PALETTE.len()].to_owned()
        } else {
            format!("url(#{}-{index})", measure.name().to_lowercase())
        }
    };
    let mut totals = vec![0_i64; days as usize + 1];
    for bar in &bars {
        if let Some(total) = totals.get_mut(bar.day as usize) {
            *total += measure.of(bar);
        }
    }
    let largest = totals.iter().copied().max().unwrap_or(0);
    if largest == 0 {
        let text = match (measure, bars.is_empty()) {
            (_, true) => format!("No jobs ran in {month_name}."),
            (Measure::Cost, false) => {
                format!("Nothing to pay in {month_name}: every minute was free.")
            }
            (Measure::Minutes, false) => format!("Every job in {month_name} ran under a minute."),
        };
        return view! {
            <p class="mt-3 rounded-md bg-slate-50 px-4 py-6 text-center text-sm text-slate-500" data-testid=format!("usage-chart-{}-empty", measure.name().to_lowercase())>{text}</p>
        }
        .into_any();
    }
    let top = measure.top(largest);
    let plot_height = CHART_HEIGHT - CHART_BOTTOM - 8.0;
    let slot = (CHART_WIDTH - CHART_LEFT) / f64::from(days.max(1));
    // Screen geometry only; the values themselves stay integers.
    let scale = |value: i64| plot_height * (value as f64) / (top as f64);
    let patterns = labels
        .iter()
        .enumerate()
        .map(|(index, _)| {
            let colour = PALETTE[index % PALETTE.len()];
            let texture = TEXTURES[index % TEXTURES.len()];
            view! {
                <pattern id=format!("{}-{index}", measure.name().to_lowercase()) width="6" height="6" patternUnits="userSpaceOnUse">
                    <rect width="6" height="6" fill=colour></rect>
                    <g inner_html=texture></g>
                </pattern>
            }
        })
        .collect_view();
    let mut stacked = vec![0_i64; days as usize + 1];
    let rects = bars
        .iter()
        .map(|bar| {
            let below = stacked.get(bar.day as usize).copied().unwrap_or(0);
            if let Some(s) = stacked.get_mut(bar.day as usize) {
                *s += measure.of(bar);
            }
            let x = CHART_LEFT + slot * f64::from(bar.day - 1) + slot * 0.15;
            let height = scale(measure.of(bar));
            let y = 8.0 + plot_height - scale(below) - height;
            let title = format!(
                "Day {}: {} · {} min · ${}",
                bar.day, bar.label, bar.minutes, bar.cost
            );
            let spoken = title.clone();
            view! {
                <rect x=format!("{x:.1}") y=format!("{y:.1}") width=format!("{:.1}", slot * 0.7) height=format!("{height:.1}") fill=fill(&bar.label) tabindex="0" aria-label=spoken class="focus:outline-none focus:stroke-slate-900 focus:stroke-2">
                    <title>{title}</title>
                </rect>
            }
        })
        .collect_view();
    // Gridlines at 0, half and the top.
    let grid = [0_i64, 1, 2]
        .into_iter()
        .map(|halves| {
            let value = top * halves / 2;
            let y = 8.0 + plot_height - scale(value);
            let text = measure.label(value, top);
            view! {
                <line x1=CHART_LEFT x2=CHART_WIDTH y1=format!("{y:.1}") y2=format!("{y:.1}") stroke="#e2e8f0"/>
                <text x=CHART_LEFT - 6.0 y=format!("{:.1}", y + 4.0) text-anchor="end" font-size=AXIS_TEXT fill="#475569">{text}</text>
            }
        })
        .collect_view();
    let day_labels = (1..=days)
        .filter(|day| *day == 1 || day % 5 == 0)
        .map(|day| {
            let x = CHART_LEFT + slot * (f64::from(day) - 0.5);
            view! { <text x=format!("{x:.1}") y=CHART_HEIGHT - 6.0 text-anchor="middle" font-size=AXIS_TEXT fill="#475569">{day}</text> }
        })
        .collect_view();
    let legend = labels
        .iter()
        .map(|label| {
            let swatch = fill(label);
            view! {
                <span class="inline-flex items-center gap-1 text-xs text-slate-600">
                    <svg viewBox="0 0 12 12" class="h-3 w-3" aria-hidden="true"><rect width="12" height="12" rx="2" fill=swatch></rect></svg>
                    {label.clone()}
                </span>
            }
        })
        .collect_view();
    view! {
        // On a phone the chart keeps a readable width and scrolls sideways; `row-reverse` makes
        // it open at the month's latest days, without JavaScript.
        <div class="flex flex-row-reverse overflow-x-auto">
            <svg
                viewBox=format!("0 0 {CHART_WIDTH} {CHART_HEIGHT}")
                class="mt-3 w-full min-w-[640px] shrink-0"
                role="img"
                aria-label=format!("{} per day by runner label in {month_name}; the values are in the table below", measure.name())
                data-testid=format!("usage-chart-{}", measure.name().to_lowercase())
            >
                <defs>{patterns}</defs>
                {grid}
                {rects}
                {day_labels}
            </svg>
        </div>
        <div class="mt-2 flex flex-wrap gap-3">{legend}</div>
    }
    .into_any()
}

/// A round number at or above `value` for the chart's top (at least 10).
fn nice_ceiling(value: i64) -> i64 {
    let value = value.max(10);
    let magnitude = 10_i64.pow(value.ilog10());
    for step in [1, 2, 5, 10] {
        if value <= step * magnitude {
            return step * magnitude;
        }
    }
    10 * magnitude
}

#[cfg(test)]
mod tests {
    use super::{Measure, nice_ceiling};

    #[test]
    fn a_cost_axis_under_ten_cents_never_reads_the_same_three_times() {
        // One day cost $0.003: the top is one cent, labelled in tenths of a cent.
        let top = Measure::Cost.top(300_000);
        let labels: Vec<String> = [0, top / 2, top]
            .into_iter()
            .map(|value| Measure::Cost.label(value, top))
            .collect();
        assert_eq!(labels, ["$0.000", "$0.005", "$0.010"]);
        let top = Measure::Cost.top(1_234_000_000);
        assert_eq!(Measure::Cost.label(top, top), "$20.00");
        assert_eq!(Measure::Minutes.label(12_000, 20_000), "12,000");
    }

    #[test]
    fn chart_tops_are_round() {
        assert_eq!(nice_ceiling(0), 10);
        assert_eq!(nice_ceiling(37), 50);
        assert_eq!(nice_ceiling(120), 200);
        assert_eq!(nice_ceiling(1_000), 1_000);
    }
}
