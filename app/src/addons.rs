//! The Add-ons page (SPEC §10): macOS runners, the priority boost and priority support, and extra
//! concurrency slots, each with its monthly price. Turning on takes effect within a minute; a
//! cancelled add-on stays on to the end of the month. Plain forms post to the server's
//! `/add-ons/…` routes, which redirect back here with the outcome.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::dashboard::ErrorNotice;
use crate::error::AppError;

/// An add-on as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonView {
    pub key: String,
    pub name: String,
    pub description: String,
    /// "$39.00 / month".
    pub price: String,
    /// `off`, `on`, or `ending` (cancelled, on to the end of the month).
    pub state: String,
    /// "On since November 29, 2026" or "On until December 1, 2026 (cancelled)".
    pub status: String,
}

/// A class's extra slots as the page shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotsView {
    /// `x64` or `macos`.
    pub class: String,
    /// "x64" or "macOS".
    pub name: String,
    /// "$7.00".
    pub price_per_slot: String,
    pub slots: i32,
    /// "$70.00 / month".
    pub monthly: String,
    /// Concurrent jobs with the included 40.
    pub concurrent: i64,
    /// "Lowered to 5 from December 1, 2026".
    pub next: Option<String>,
}

/// Everything the Add-ons page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonsView {
    pub addons: Vec<AddonView>,
    pub slots: Vec<SlotsView>,
    pub has_card: bool,
    pub can_change: bool,
}

/// The caller's workspace's add-ons and slots.
#[server(prefix = "/api", endpoint = "add-ons")]
pub async fn addons() -> Result<AddonsView, AppError> {
    crate::server::respond(
        async move {
            use tenki_core::admission::INCLUDED_SLOTS;
            use tenki_core::billing::addons::{self, Addon, ExtraSlots, SlotClass};
            use tenki_core::money;
            use tenki_core::workspaces::Role;

            let context = crate::server::context()?;
            let caller = crate::server::caller(&context).await?;
            let subscriptions = addons::subscriptions(&context.core.db, caller.member.workspace_id)
                .await
                .map_err(|e| AppError::internal_error(&e))?;
            let date = |at: chrono::DateTime<chrono::Utc>| at.format("%B %-d, %Y").to_string();
            let addon_views = Addon::ALL
                .into_iter()
                .map(|addon| {
                    let active = subscriptions.addons.iter().find(|a| a.addon == addon);
                    let (state, status) = match active {
                        None => ("off", "Off".to_owned()),
                        Some(a) => match a.ends_at {
                            None => ("on", format!("On since {}", date(a.active_since))),
                            Some(ends) => {
                                ("ending", format!("On until {} (cancelled)", date(ends)))
                            }
                        },
                    };
                    AddonView {
                        key: addon.key().to_owned(),
                        name: addon.name().to_owned(),
                        description: addon.description().to_owned(),
                        price: format!("${} / month", money::dollars(addon.monthly_price(), 2)),
                        state: state.to_owned(),
                        status,
                    }
                })
                .collect();
            let slots_view = |class: SlotClass, name: &str, extra: ExtraSlots| SlotsView {
                class: class.key().to_owned(),
                name: name.to_owned(),
                price_per_slot: format!("${}", money::dollars(class.monthly_price_per_slot(), 2)),
                slots: extra.slots,
                monthly: format!(
                    "${} / month",
                    money::dollars(i64::from(extra.slots) * class.monthly_price_per_slot(), 2)
                ),
                concurrent: INCLUDED_SLOTS + i64::from(extra.slots),
                next: extra
                    .next
                    .map(|(slots, from)| format!("Lowered to {slots} from {}", date(from))),
            };
            Ok(AddonsView {
                addons: addon_views,
                slots: vec![
                    slots_view(SlotClass::X64, "x64", subscriptions.x64),
                    slots_view(SlotClass::Macos, "macOS", subscriptions.macos),
                ],
                has_card: subscriptions.has_card,
                can_change: matches!(caller.member.role, Role::Owner | Role::Admin),
            })
        }
        .await,
    )
}

/// What the redirect's query says happened.
fn notice(done: Option<String>, error: Option<String>) -> Option<(bool, &'static str)> {
    if let Some(error) = error {
        return Some((
            false,
            match error.as_str() {
                "no_card" => {
                    "Add a card on the Billing page first: add-ons are billed monthly to it."
                }
                "not_allowed" => "Only the workspace's owners and admins can change its add-ons.",
                "bad_slots" => "Give a whole number of extra slots from 0 to 1,000.",
                "bad_inquiry" => "Give the company's name and an e-mail address sales can answer.",
                _ => "That change is not one Tenki knows.",
            },
        ));
    }
    Some((
        true,
        match done?.as_str() {
            "on" => "Turned on. It takes effect within a minute.",
            "cancel" => "Cancelled. It stays on, and billed, until the end of the month.",
            "slots" => {
                "Slots saved. More slots apply within a minute; fewer from the 1st of next month."
            }
            "inquiry" => "Thank you: sales will answer within one business day.",
            _ => return None,
        },
    ))
}

/// The Add-ons page.
#[component]
pub fn AddonsPage() -> impl IntoView {
    let data = Resource::new(|| (), |()| addons());
    let query = use_query_map();
    let notice = query
        .with_untracked(|q| notice(q.get("done"), q.get("error")))
        .map(|(good, message)| {
            let class = if good {
                "mt-6 rounded-md bg-emerald-50 px-4 py-3 text-sm text-emerald-800"
            } else {
                "mt-6 rounded-md bg-red-50 px-4 py-3 text-sm text-red-700"
            };
            view! { <p role="status" class=class data-testid="addons-notice">{message}</p> }
        });
    view! {
        <leptos_meta::Title text="Add-ons · Tenki"/>
        <h1 class="text-2xl font-semibold text-slate-900">"Add-ons"</h1>
        {notice}
        <Suspense fallback=|| view! { <p class="mt-6 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(view) => view! { <AddonsBody view/> }.into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn AddonsBody(view: AddonsView) -> impl IntoView {
    let can_change = view.can_change;
    let no_card = (!view.has_card).then(|| view! {
        <p class="mt-6 rounded-md bg-amber-50 px-4 py-3 text-sm text-amber-800" data-testid="addons-need-card">
            "Add-ons are billed monthly to your card. " <a href="/billing" class="font-medium underline">"Add a card"</a> " first."
        </p>
    });
    let button =
        "rounded-md bg-slate-900 px-3 py-1.5 text-sm font-medium text-white hover:bg-slate-700";
    let secondary =
        "rounded-md border border-slate-300 px-3 py-1.5 text-sm text-slate-700 hover:bg-slate-100";
    view! {
        {no_card}
        <section class="mt-6 grid gap-4 md:grid-cols-3">
            {view.addons.into_iter().map(|addon| {
                let (action, label, class) = match addon.state.as_str() {
                    "on" => ("cancel", "Cancel", secondary),
                    "ending" => ("on", "Keep it", button),
                    _ => ("on", "Turn on", button),
                };
                let form = can_change.then(|| view! {
                    <form method="post" action="/add-ons/addon" class="mt-4">
                        <input type="hidden" name="addon" value=addon.key.clone()/>
                        <input type="hidden" name="action" value=action/>
                        <button type="submit" class=class aria-label=format!("{label}: {}", addon.name)>{label}</button>
                    </form>
                });
                view! {
                    <article class="rounded-xl border border-slate-200 bg-white p-6 shadow-sm" data-testid="addon" data-addon=addon.key.clone() data-state=addon.state.clone()>
                        <h2 class="font-medium text-slate-900">{addon.name}</h2>
                        <p class="mt-1 text-sm text-slate-600">{addon.description}</p>
                        <p class="mt-3 text-lg font-semibold text-slate-900">{addon.price}</p>
                        <p class="mt-1 text-sm text-slate-600" data-testid="addon-status">{addon.status}</p>
                        {form}
                    </article>
                }
            }).collect_view()}
        </section>
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm">
            <h2 class="font-medium text-slate-900">"Extra concurrency slots"</h2>
            <p class="mt-1 text-sm text-slate-600">"Every workspace runs 40 x64 and 40 macOS jobs at once; buy slots for more."</p>
            <div class="mt-4 grid gap-4 md:grid-cols-2">
                {view.slots.into_iter().map(|slots| {
                    let input_id = format!("slots-{}", slots.class);
                    let label_for = input_id.clone();
                    let form = can_change.then(|| view! {
                        <form method="post" action="/add-ons/slots" class="mt-3 flex flex-wrap items-end gap-2">
                            <input type="hidden" name="class" value=slots.class.clone()/>
                            <label class="text-sm text-slate-700" for=label_for>{format!("Extra {} slots", slots.name)}
                                <input id=input_id type="number" min="0" max="1000" name="slots" value=slots.slots.to_string() class="ml-2 w-24 rounded-md border border-slate-300 px-2 py-1"/>
                            </label>
                            <button type="submit" class=secondary aria-label=format!("Save {} slots", slots.name)>"Save"</button>
                        </form>
                    });
                    view! {
                        <div class="rounded-lg border border-slate-200 px-4 py-3" data-testid="slots" data-class=slots.class.clone()>
                            <p class="font-medium text-slate-900">{format!("{} · {} per slot per month", slots.name, slots.price_per_slot)}</p>
                            <p class="mt-1 text-sm text-slate-700" data-testid="slots-summary">
                                {format!("{} extra: {} · {} concurrent {} jobs", slots.slots, slots.monthly, slots.concurrent, slots.name)}
                            </p>
                            {slots.next.map(|next| view! { <p class="mt-1 text-sm text-amber-700">{next}</p> })}
                            {form}
                        </div>
                    }
                }).collect_view()}
            </div>
        </section>
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm" data-testid="enterprise">
            <h2 class="font-medium text-slate-900">"Enterprise"</h2>
            <p class="mt-1 text-sm text-slate-600">"Volume discounts, custom prices, annual prepayment (boost $499 / year, macOS $399 / year): ask sales."</p>
            <form method="post" action="/enterprise/inquiry" class="mt-3 grid gap-2 md:max-w-lg">
                <label class="text-sm text-slate-700" for="inquiry-company">"Company"</label>
                <input id="inquiry-company" name="company" class="rounded-md border border-slate-300 px-2 py-1"/>
                <label class="text-sm text-slate-700" for="inquiry-email">"E-mail"</label>
                <input id="inquiry-email" name="email" type="email" class="rounded-md border border-slate-300 px-2 py-1"/>
                <label class="text-sm text-slate-700" for="inquiry-message">"What do you need?"</label>
                <textarea id="inquiry-message" name="message" rows="3" class="rounded-md border border-slate-300 px-2 py-1"></textarea>
                <button type="submit" class=secondary>"Ask sales"</button>
            </form>
        </section>
    }
}
