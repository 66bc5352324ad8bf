//! The Settings page: the workspace's name; the monthly spending limit, with alerts at 50, 80 and
//! 100 % and an optional hard cap that stops new jobs at 100 %. Plain forms post to
//! `/settings/workspace-name` and `/settings/spending-limit`, which redirect back with the
//! outcome; below them, the workspace's members (`members.rs`).

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::dashboard::ErrorNotice;
use crate::error::AppError;

/// The spending limit as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendingView {
    /// "250.00", or empty for none.
    pub limit: String,
    pub hard_cap: bool,
    /// "$12.34 so far in November (5 % of the limit)".
    pub spent: String,
    pub can_change: bool,
    /// The workspace's name, which owners and admins change here too.
    pub workspace_name: String,
}

/// The caller's workspace's spending limit and the month so far.
#[server(prefix = "/api", endpoint = "spending")]
pub async fn spending() -> Result<SpendingView, AppError> {
    crate::server::respond(
        async move {
            use tenki_core::billing::spending;
            use tenki_core::money;
            use tenki_core::workspaces::Role;

            let context = crate::server::context()?;
            let caller = crate::server::caller(&context).await?;
            let now = chrono::Utc::now();
            let current = spending::spending_of(&context.core.db, caller.member.workspace_id, now)
                .await
                .map_err(|e| AppError::internal_error(&e))?;
            let share = current
                .percent()
                .map(|p| format!(" ({p} % of the limit)"))
                .unwrap_or_default();
            Ok(SpendingView {
                limit: current
                    .limit
                    .map(|l| money::dollars(l, 2))
                    .unwrap_or_default(),
                hard_cap: current.hard_cap,
                spent: format!(
                    "${} so far in {}{share}",
                    money::dollars(current.spent, 2),
                    now.format("%B")
                ),
                can_change: matches!(caller.member.role, Role::Owner | Role::Admin),
                workspace_name: caller.member.workspace_name.clone(),
            })
        }
        .await,
    )
}

/// The Settings page.
#[component]
pub fn SettingsPage() -> impl IntoView {
    let data = Resource::new(|| (), |()| spending());
    let query = use_query_map();
    let notice = query.with_untracked(|q| {
        match (q.get("saved").is_some(), q.get("error").as_deref()) {
            (_, Some("bad_limit")) => Some((false, "Give the limit in dollars, more than $0 (e.g. 250.00), or leave it empty for none.")),
            (_, Some("not_allowed")) => Some((false, "Only the workspace's owners and admins can change its spending limit.")),
            (_, Some("bad_name")) => Some((false, "Name your workspace with 1 to 80 characters.")),
            (_, Some("rename_not_allowed")) => Some((false, "Only the workspace's owners and admins can rename it.")),
            (_, None) if q.get("renamed").is_some() => Some((true, "Renamed.")),
            (true, None) => Some((true, "Saved.")),
            _ => None,
        }
    });
    let notice = notice.map(|(good, message)| {
        let class = if good {
            "mt-6 rounded-md bg-emerald-50 px-4 py-3 text-sm text-emerald-800"
        } else {
            "mt-6 rounded-md bg-red-50 px-4 py-3 text-sm text-red-700"
        };
        view! { <p role="status" class=class data-testid="settings-notice">{message}</p> }
    });
    view! {
        <leptos_meta::Title text="Settings · Tenki"/>
        <h1 class="text-2xl font-semibold text-slate-900">"Settings"</h1>
        {notice}
        <Suspense fallback=|| view! { <p class="mt-6 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(view) => view! { <WorkspaceName view=view.clone()/> <SpendingLimit view/> }.into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
        <crate::members::Members/>
    }
}

/// The workspace's name, with a form to change it for owners and admins.
#[component]
fn WorkspaceName(view: SpendingView) -> impl IntoView {
    let form = view.can_change.then(|| view! {
        <form method="post" action="/settings/workspace-name" class="mt-4 flex flex-wrap items-end gap-2">
            <label class="block text-sm text-slate-700" for="workspace-name">"Name"
                <input id="workspace-name" name="name" value=view.workspace_name.clone() maxlength="80" class="ml-2 w-64 rounded-md border border-slate-300 px-2 py-1"/>
            </label>
            <button type="submit" class="rounded-md bg-slate-900 px-3 py-1.5 text-sm font-medium text-white hover:bg-slate-700">"Rename"</button>
        </form>
    });
    let shown = (!view.can_change).then(
        || view! { <p class="mt-3 text-sm text-slate-900">{view.workspace_name.clone()}</p> },
    );
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm" data-testid="workspace-settings">
            <h2 class="font-medium text-slate-900">"Workspace"</h2>
            {shown}
            {form}
        </section>
    }
}

#[component]
fn SpendingLimit(view: SpendingView) -> impl IntoView {
    let form = view.can_change.then(|| view! {
        <form method="post" action="/settings/spending-limit" class="mt-4 space-y-3">
            <label class="block text-sm text-slate-700" for="spending-limit">"Monthly limit in dollars (empty: none)"
                <input id="spending-limit" name="limit" inputmode="decimal" value=view.limit.clone() placeholder="250.00" class="ml-2 w-32 rounded-md border border-slate-300 px-2 py-1"/>
            </label>
            <label class="flex items-center gap-2 text-sm text-slate-700">
                <input type="checkbox" name="hard_cap" value="on" checked=view.hard_cap/>
                "Hard cap: start no new jobs once the limit is reached"
            </label>
            <button type="submit" class="rounded-md bg-slate-900 px-3 py-1.5 text-sm font-medium text-white hover:bg-slate-700">"Save"</button>
        </form>
    });
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm" data-testid="spending-limit">
            <h2 class="font-medium text-slate-900">"Spending limit"</h2>
            <p class="mt-1 text-sm text-slate-600">"You are told at 50 %, 80 % and 100 % of it (on the Billing page). The limit counts the month's usage."</p>
            <p class="mt-3 text-sm text-slate-900" data-testid="spent">{view.spent}</p>
            {form}
        </section>
    }
}
