//! The Audit log on Settings: who changed what in the workspace, and when (owners and admins).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dashboard::ErrorNotice;
use crate::error::AppError;

/// One event as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    /// When, in UTC (`2026-11-30 14:05`).
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

/// The newest events of the caller's workspace; members are refused.
#[server(prefix = "/api", endpoint = "audit-log")]
pub async fn audit_log() -> Result<Vec<AuditRow>, AppError> {
    crate::server::respond(
        async move {
            use tenki_core::workspaces::audit::{self, AuditError};

            let context = crate::server::context()?;
            let caller = crate::server::caller(&context).await?;
            match audit::newest(&context.core.db, &caller).await {
                Ok(events) => Ok(events
                    .into_iter()
                    .map(|event| AuditRow {
                        at: event.at.format("%Y-%m-%d %H:%M UTC").to_string(),
                        actor: event.actor,
                        action: event.action,
                        detail: event.detail,
                    })
                    .collect()),
                Err(AuditError::NotAllowed) => Err(AppError::refused(
                    "forbidden",
                    "Only the workspace's owners and admins read its audit log.",
                )),
                Err(AuditError::Database(error)) => Err(AppError::internal_error(&error)),
            }
        }
        .await,
    )
}

/// The Audit log section (Settings shows it to owners and admins; the server refuses members).
#[component]
pub fn AuditLog() -> impl IntoView {
    let data = Resource::new(|| (), |()| audit_log());
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(rows) => view! { <AuditTable rows/> }.into_any(),
                    Err(error) if error.code() == "forbidden" => ().into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn AuditTable(rows: Vec<AuditRow>) -> impl IntoView {
    view! {
        <section id="audit-log" class="mt-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm" data-testid="audit-log">
            <h2 class="font-medium text-slate-900">"Audit log"</h2>
            <p class="mt-1 text-sm text-slate-600">"Every change to the name, members, GitHub connections, cards, add-ons, slots and the spending limit, and every change Tenki's support made, newest first (the last 100)."</p>
            {if rows.is_empty() {
                view! { <p class="mt-3 text-sm text-slate-600">"Nothing changed yet."</p> }.into_any()
            } else {
                view! {
                    <div class="mt-4 overflow-x-auto">
                        <table class="w-full text-left text-sm">
                            <thead class="border-b border-slate-200 text-slate-500">
                                <tr>
                                    <th class="py-2 pr-4 font-medium">"When"</th>
                                    <th class="py-2 pr-4 font-medium">"Who"</th>
                                    <th class="py-2 font-medium">"What"</th>
                                </tr>
                            </thead>
                            <tbody class="divide-y divide-slate-100">
                                {rows.into_iter().map(|row| view! {
                                    <tr data-testid="audit-event" data-action=row.action.clone()>
                                        <td class="whitespace-nowrap py-2 pr-4 text-slate-600">{row.at}</td>
                                        <td class="py-2 pr-4 text-slate-900 break-all">{row.actor}</td>
                                        <td class="py-2 text-slate-900">{row.detail}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            }}
        </section>
    }
}
