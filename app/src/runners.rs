//! The Runners page: "Connect GitHub", the installations linked to the workspace with their
//! repositories, the label catalog with prices, and the `runs-on:` line to paste into a
//! workflow. In the sandbox it also runs a sample workflow through the GitHub double.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dashboard::ErrorNotice;
use crate::error::AppError;

/// An installation as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationView {
    pub installation_id: i64,
    pub account: String,
    pub state: String,
    pub repositories: Vec<String>,
}

/// A catalog entry with its prices in dollars per minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogRow {
    pub label: String,
    pub class: String,
    pub vcpus: i32,
    pub memory_gb: i32,
    pub price_per_minute: String,
    /// `None`: no premium variant.
    pub premium_price_per_minute: Option<String>,
}

/// A webhook delivery of one of the workspace's installations whose processing failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedDeliveryView {
    pub delivery_id: String,
    /// `workflow_job.completed`.
    pub event: String,
    /// `2026-11-28 14:03 UTC`.
    pub received_at: String,
    pub error: String,
}

/// A runner Tenki started for the workspace and has not deleted yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveRunnerView {
    pub name: String,
    pub label: String,
    /// starting, running, finished, failed…
    pub state: String,
    /// "2m 05s".
    pub age: String,
    /// `acme/web · CI`, or "—".
    pub job: String,
    /// Why it failed, if it did.
    pub failure: Option<String>,
}

/// Everything the Runners page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnersView {
    pub installations: Vec<InstallationView>,
    /// Installations asked for that wait for an organization owner's approval.
    pub pending_requests: Vec<PendingRequestView>,
    /// The caller is an owner or admin: they may connect GitHub.
    pub can_connect: bool,

    pub catalog: Vec<CatalogRow>,
    /// GitHub is the sandbox double: offer "Run a sample workflow".
    pub sandbox_github: bool,
    /// The newest deliveries whose processing failed (the queue keeps retrying them).
    pub failed_deliveries: Vec<FailedDeliveryView>,
}

/// An installation request waiting for an owner's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRequestView {
    /// Who asked, on GitHub.
    pub github_login: String,
    /// "Nov 29, 2026".
    pub requested_on: String,
}

/// The caller's installations and the catalog in force now.
#[server(prefix = "/api", endpoint = "runners")]
pub async fn runner_setup() -> Result<RunnersView, AppError> {
    crate::server::respond(
        async move {
            use tenki_core::github::intake;
            use tenki_core::{catalog, jobs, money};

            let context = crate::server::context()?;
            let caller = crate::server::caller(&context).await?;
            let installations = jobs::installations(&context.core.db, caller.member.workspace_id)
                .await
                .map_err(|e| AppError::internal_error(&e))?;
            let pending = tenki_core::github::onboarding::pending_requests(
                &context.core.db,
                caller.member.workspace_id,
                chrono::Utc::now(),
            )
            .await
            .map_err(|e| AppError::internal_error(&e))?;
            let entries = catalog::catalog(&context.core.db, chrono::Utc::now())
                .await
                .map_err(|e| AppError::internal_error(&e))?;
            let failed =
                intake::failed_deliveries(&context.core.db, Some(caller.member.workspace_id), 20)
                    .await
                    .map_err(|e| AppError::internal_error(&e))?;
            Ok(RunnersView {
                installations: installations
                    .into_iter()
                    .map(|i| InstallationView {
                        installation_id: i.installation_id,
                        account: if i.account_login.is_empty() {
                            format!("installation {}", i.installation_id)
                        } else {
                            i.account_login
                        },
                        state: i.state,
                        repositories: i.repositories,
                    })
                    .collect(),
                can_connect: caller.member.role.may_manage(),
                pending_requests: pending
                    .into_iter()
                    .map(|p| PendingRequestView {
                        github_login: p.github_login,
                        requested_on: p.requested_at.format("%b %-d, %Y").to_string(),
                    })
                    .collect(),
                catalog: entries
                    .into_iter()
                    .map(|e| CatalogRow {
                        label: e.sku.label,
                        class: e.sku.class,
                        vcpus: e.sku.vcpus,
                        memory_gb: e.sku.memory_gb,
                        price_per_minute: money::dollars(e.price.per_minute, 4),
                        premium_price_per_minute: e
                            .price
                            .premium_surcharge_per_minute
                            .map(|s| money::dollars(e.price.per_minute + s, 4)),
                    })
                    .collect(),
                sandbox_github: context.sandbox_github,
                failed_deliveries: failed
                    .into_iter()
                    .map(|d| FailedDeliveryView {
                        delivery_id: d.delivery_id,
                        event: match d.action {
                            Some(action) => format!("{}.{action}", d.event),
                            None => d.event,
                        },
                        received_at: d.received_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                        // The stored error is for support (`tenki admin failed-deliveries`):
                        // it may hold database or ledger text, which customers never see.
                        error: "Tenki could not process this delivery yet and keeps retrying; \
                                support can look it up by its id."
                            .to_owned(),
                    })
                    .collect(),
            })
        }
        .await,
    )
}

/// The caller's workspace's runners not deleted yet, newest first.
#[server(prefix = "/api", endpoint = "live-runners")]
pub async fn live_runners() -> Result<Vec<LiveRunnerView>, AppError> {
    crate::server::respond(
        async move {
            let context = crate::server::context()?;
            let caller = crate::server::caller(&context).await?;
            let live = tenki_core::runners::live_runners(
                &context.core.db,
                Some(caller.member.workspace_id),
            )
            .await
            .map_err(|e| AppError::internal_error(&e))?;
            let now = chrono::Utc::now();
            Ok(live
                .into_iter()
                .map(|r| LiveRunnerView {
                    name: r.name,
                    label: r.label,
                    state: match r.state.as_str() {
                        "requested" | "starting" => "starting".to_owned(),
                        other => other.to_owned(),
                    },
                    age: crate::jobs::duration((now - r.created_at).num_seconds()),
                    job: match (r.repository, r.workflow) {
                        (Some(repository), Some(workflow)) => format!("{repository} · {workflow}"),
                        _ => "—".to_owned(),
                    },
                    failure: r.failure,
                })
                .collect())
        }
        .await,
    )
}

/// Puts the `runs-on:` line on the clipboard and says "Copied" once the browser took it. A
/// handler of the hydrated page: an inline one would need the Content-Security-Policy to allow
/// inline scripts. Where the browser refuses, the button keeps saying "Copy" and the line stays
/// selectable by hand.
fn copy_snippet(copied: RwSignal<bool>) {
    #[cfg(feature = "hydrate")]
    if let Some(window) = web_sys::window() {
        let promise = window.navigator().clipboard().write_text(SNIPPET);
        leptos::task::spawn_local(async move {
            let written = wasm_bindgen_futures::JsFuture::from(promise).await.is_ok();
            copied.set(written);
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = copied;
}

/// The line customers paste into their workflow.
const SNIPPET: &str = "runs-on: tenki-standard-4c";

/// The Runners page.
#[component]
pub fn RunnersPage() -> impl IntoView {
    let data = Resource::new(|| (), |()| runner_setup());
    let copied = RwSignal::new(false);
    view! {
        <leptos_meta::Title text="Runners · Tenki"/>
        <h1 class="text-2xl font-semibold text-slate-900">"Runners"</h1>
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm">
            <h2 class="text-sm font-medium text-slate-500">"Use a Tenki runner"</h2>
            <p class="mt-2 text-sm text-slate-600">"Change " <code>"runs-on:"</code> " in a workflow job to a Tenki label:"</p>
            <div class="mt-3 flex flex-wrap items-center gap-3">
                <code class="select-all whitespace-nowrap rounded-md bg-slate-900 px-4 py-2 font-mono text-sm text-emerald-300" data-testid="runs-on-snippet">{SNIPPET}</code>
                <button
                    type="button"
                    on:click=move |_| copy_snippet(copied)
                    class="rounded-md border border-slate-300 px-3 py-1.5 text-sm text-slate-700 hover:bg-slate-100"
                >
                    {move || if copied.get() { "Copied" } else { "Copy" }}
                </button>
            </div>
        </section>
        <Suspense fallback=|| view! { <p class="mt-6 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(view) => view! { <RunnersBody view/> }.into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
        <LiveRunners/>
    }
}

#[component]
fn RunnersBody(view: RunnersView) -> impl IntoView {
    let no_installations = view.installations.is_empty();
    let labels: Vec<String> = view.catalog.iter().map(|row| row.label.clone()).collect();
    let sandbox_github = view.sandbox_github;
    let failed_deliveries = (!view.failed_deliveries.is_empty()).then(|| {
        view! { <FailedDeliveries deliveries=view.failed_deliveries.clone()/> }.into_any()
    });
    view! {
        {failed_deliveries}
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm" data-testid="installations">
            <div class="flex flex-wrap items-center justify-between gap-3">
                <h2 class="text-sm font-medium text-slate-500">"GitHub installations"</h2>
                // The first step of a new workspace; once one account is linked, a secondary one.
                // Members read: connecting is for owners and admins.
                {if view.can_connect {
                    view! {
                        <a
                            href="/github/connect"
                            rel="external"
                            class=if no_installations {
                                "rounded-md bg-slate-900 px-3 py-1.5 text-sm font-medium text-white hover:bg-slate-700"
                            } else {
                                "rounded-md border border-slate-300 bg-white px-3 py-1.5 text-sm text-slate-700 hover:bg-slate-100"
                            }
                            data-testid="connect-github"
                        >
                            {if no_installations { "Connect GitHub" } else { "Connect another account" }}
                        </a>
                    }.into_any()
                } else {
                    view! {
                        <p class="text-sm text-slate-500" data-testid="connect-github-not-allowed">"Owners and admins connect GitHub accounts."</p>
                    }.into_any()
                }}
            </div>
            {(no_installations && view.pending_requests.is_empty()).then(|| view! {
                <p class="mt-2 text-sm text-slate-600">
                    "No GitHub installation is linked to this workspace yet. Connect GitHub to install the Tenki App on your organization or account."
                </p>
            })}
            <ul class="mt-3 space-y-3">
                {view.pending_requests.into_iter().map(|request| view! {
                    <li class="rounded-lg border border-amber-200 bg-amber-50 px-4 py-3" data-testid="pending-installation">
                        <p class="font-medium text-slate-900">
                            {format!("Installation requested by @{}", request.github_login)} " "
                            <span class="ml-2 rounded-full bg-amber-100 px-2 py-0.5 text-xs font-semibold text-amber-800">"waiting for approval"</span>
                        </p>
                        <p class="mt-1 text-sm text-slate-700">
                            "Asked on " {request.requested_on} ". An owner of the organization must approve the Tenki App on GitHub; "
                            "it then appears here by itself, linked to this workspace."
                        </p>
                    </li>
                }).collect_view()}
            </ul>
            <ul class="mt-3 space-y-3">
                {view.installations.into_iter().map(|installation| {
                    let can_run_sample = sandbox_github
                        && installation.state == "active"
                        && !installation.repositories.is_empty();
                    let sample = can_run_sample.then(|| view! {
                        <SampleWorkflowForm
                            installation_id=installation.installation_id
                            repositories=installation.repositories.clone()
                            labels=labels.clone()
                        />
                    }.into_any());
                    let repositories = if installation.repositories.is_empty() {
                        "no repositories yet".to_owned()
                    } else {
                        installation.repositories.join(", ")
                    };
                    view! {
                        <li class="rounded-lg border border-slate-200 px-4 py-3" data-testid="installation">
                            <p class="font-medium text-slate-900">
                                {installation.account} " "
                                <span class="ml-2 rounded-full bg-slate-100 px-2 py-0.5 text-xs text-slate-700">{installation.state}</span>
                            </p>
                            <p class="mt-1 text-sm text-slate-600" data-testid="repositories">{repositories}</p>
                            {sample}
                        </li>
                    }
                    .into_any()
                }).collect_view()}
            </ul>
        </section>
        <section class="mt-6 overflow-x-auto rounded-xl border border-slate-200 bg-white shadow-sm">
            <h2 class="px-4 pt-4 text-sm font-medium text-slate-500">"Runner labels and prices"</h2>
            <table class="mt-2 w-full text-left text-sm" data-testid="catalog">
                <thead class="border-b border-slate-200 text-slate-500">
                    <tr>
                        <th class="px-4 py-2 font-medium max-sm:px-2">"In your workflow"</th>
                        <th class="px-4 py-2 font-medium max-sm:hidden">"Platform"</th>
                        <th class="px-4 py-2 text-right font-medium max-sm:hidden">"vCPU"</th>
                        <th class="px-4 py-2 text-right font-medium max-sm:hidden">"Memory"</th>
                        <th class="px-4 py-2 text-right font-medium max-sm:px-2">"Per minute"</th>
                        <th class="px-4 py-2 text-right font-medium max-sm:px-2">"Premium" <span class="max-sm:hidden">" (-premium)"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {view.catalog.into_iter().map(|row| view! {
                        <tr class="border-b border-slate-100 last:border-0">
                            // One click selects the whole line, ready to paste; a label never breaks at
                            // its hyphens.
                            // (On a phone the label alone: the line would push the prices off screen.)
                            <td class="px-4 py-2 max-sm:px-2"><code class="select-all whitespace-nowrap font-mono text-xs text-slate-800" data-testid="catalog-runs-on"><span class="max-sm:hidden">"runs-on: "</span>{row.label}</code></td>
                            <td class="px-4 py-2 max-sm:hidden">{if row.class == "macos" { "macOS (M4)" } else { "Linux x64" }}</td>
                            <td class="px-4 py-2 text-right max-sm:hidden">{row.vcpus}</td>
                            <td class="px-4 py-2 text-right max-sm:hidden">{row.memory_gb} " GB"</td>
                            <td class="px-4 py-2 text-right max-sm:px-2">"$" {row.price_per_minute}</td>
                            <td class="px-4 py-2 text-right max-sm:px-2">{row.premium_price_per_minute.map_or_else(|| "—".to_owned(), |p| format!("${p}"))}</td>
                        </tr>
                    }.into_any()).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

/// The workspace's runners: each starts for a job, runs one and is deleted. Refreshes while the
/// page is open (on its own, so the forms above keep what is typed in them).
#[component]
fn LiveRunners() -> impl IntoView {
    let data = Resource::new(|| (), |()| live_runners());
    Effect::new(move |_| {
        if let Ok(handle) =
            set_interval_with_handle(move || data.refetch(), crate::dashboard::LIVE_REFRESH)
        {
            on_cleanup(move || handle.clear());
        }
    });
    view! {
        <Transition fallback=|| view! { <p class="mt-6 text-slate-500">"Loading runners…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(runners) => view! { <LiveRunnersTable runners/> }.into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn LiveRunnersTable(runners: Vec<LiveRunnerView>) -> impl IntoView {
    let empty = runners.is_empty();
    view! {
        <section class="mt-6 overflow-x-auto rounded-xl border border-slate-200 bg-white shadow-sm">
            <h2 class="px-4 pt-4 text-sm font-medium text-slate-500">"Live runners"</h2>
            <table class="mt-2 w-full text-left text-sm" data-testid="live-runners">
                <thead class="border-b border-slate-200 text-slate-500">
                    <tr>
                        <th class="px-4 py-2 font-medium">"Runner"</th>
                        <th class="px-4 py-2 font-medium">"Label"</th>
                        <th class="px-4 py-2 font-medium">"State"</th>
                        <th class="px-4 py-2 text-right font-medium">"Age"</th>
                        <th class="px-4 py-2 font-medium">"Job"</th>
                    </tr>
                </thead>
                <tbody>
                    {runners.into_iter().map(|r| {
                        let name = r.name.clone();
                        view! {
                        <tr class="border-b border-slate-100 last:border-0" data-runner=name>
                            <td class="px-4 py-2 font-mono text-xs text-slate-800">{r.name}</td>
                            <td class="px-4 py-2 font-mono text-xs">{r.label}</td>
                            <td class="px-4 py-2" data-testid="runner-state">
                                {r.state}
                                {r.failure.map(|f| view! { <span class="block text-xs text-red-700">{f}</span> })}
                            </td>
                            <td class="px-4 py-2 text-right">{r.age}</td>
                            <td class="px-4 py-2">{r.job}</td>
                        </tr>
                    }.into_any()}).collect_view()}
                </tbody>
            </table>
            {empty.then(|| view! {
                <p class="px-4 pb-4 text-sm text-slate-500">"No runners right now: Tenki starts one for each queued job and deletes it afterwards."</p>
            })}
        </section>
    }
}

/// Sandbox only: asks the GitHub double to queue the jobs of a sample workflow, whose deliveries
/// then go through the real intake; Tenki's runners take them. A plain form, so it works before
/// hydration.
#[component]
fn SampleWorkflowForm(
    installation_id: i64,
    repositories: Vec<String>,
    labels: Vec<String>,
) -> impl IntoView {
    view! {
        <form method="post" action="/sandbox/github/sample-workflow" class="mt-3 flex flex-wrap items-end gap-2 text-sm">
            <input type="hidden" name="installation_id" value=installation_id.to_string()/>
            <label class="flex flex-col text-xs text-slate-500">
                "Repository"
                <select name="repository" class="mt-1 rounded-md border border-slate-300 px-2 py-1 text-sm text-slate-800">
                    {repositories.into_iter().map(|r| view! { <option value=r.clone()>{r.clone()}</option> }).collect_view()}
                </select>
            </label>
            <label class="flex flex-col text-xs text-slate-500">
                "Label"
                <select name="label" class="mt-1 rounded-md border border-slate-300 px-2 py-1 font-mono text-xs text-slate-800">
                    {labels.into_iter().map(|l| {
                        let selected = l == "tenki-standard-4c";
                        view! { <option value=l.clone() selected=selected>{l.clone()}</option> }
                    }).collect_view()}
                </select>
            </label>
            <label class="flex flex-col text-xs text-slate-500">
                "Jobs"
                <input type="number" name="jobs" value="1" min="1" max="100" required class="mt-1 w-20 rounded-md border border-slate-300 px-2 py-1 text-sm text-slate-800"/>
            </label>
            <label class="flex flex-col text-xs text-slate-500">
                "Seconds each"
                <input type="number" name="seconds" value="10" min="1" max="3600" required class="mt-1 w-24 rounded-md border border-slate-300 px-2 py-1 text-sm text-slate-800"/>
            </label>
            <button type="submit" class="rounded-md border border-amber-300 bg-amber-50 px-3 py-1.5 font-medium text-amber-900 hover:bg-amber-100" data-testid="run-sample-workflow">
                "Run a sample workflow"
            </button>
            <span class="text-xs text-amber-700">"Sandbox: the GitHub double queues the jobs; Tenki starts a runner for each on the Kubernetes double."</span>
        </form>
    }
}

/// Deliveries GitHub made that Tenki could not process yet: shown so nothing fails silently.
#[component]
fn FailedDeliveries(deliveries: Vec<FailedDeliveryView>) -> impl IntoView {
    view! {
        <section class="mt-6 rounded-xl border border-red-200 bg-red-50 p-6" data-testid="failed-deliveries">
            <h2 class="text-sm font-medium text-red-800">"GitHub events Tenki could not process"</h2>
            <p class="mt-1 text-sm text-red-700">
                "Tenki retries these with back-off and support is alerted; quote the delivery id when you contact us."
            </p>
            <ul class="mt-3 space-y-2 text-sm">
                {deliveries.into_iter().map(|d| view! {
                    <li class="rounded-md bg-white px-3 py-2">
                        <span class="font-mono text-xs text-slate-800">{d.event}</span>
                        " · " {d.received_at} " · "
                        <span class="font-mono text-xs text-slate-500">{d.delivery_id}</span>
                        <p class="mt-1 text-red-700">{d.error}</p>
                    </li>
                }.into_any()).collect_view()}
            </ul>
        </section>
    }
}
