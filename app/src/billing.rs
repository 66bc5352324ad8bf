//! The Billing page: the card on file (brand, last 4 digits, expiry), "Add a card" (Stripe
//! Checkout) and "Manage billing" (Stripe's billing portal). Both buttons are plain forms posting
//! to the server's `/billing/…` routes, which redirect to Stripe; Stripe sends the browser back
//! here with the outcome in `?card=`.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::dashboard::ErrorNotice;
use crate::error::AppError;

/// A card as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardView {
    /// "Visa".
    pub brand: String,
    pub last4: String,
    /// "12/2034".
    pub expires: String,
}

/// Everything the Billing page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingView {
    pub cards: Vec<CardView>,
    /// The caller is an owner or admin: the buttons are theirs.
    pub can_change: bool,
}

/// The caller's workspace's cards.
#[server(prefix = "/api", endpoint = "billing")]
pub async fn billing() -> Result<BillingView, AppError> {
    crate::server::respond(
        async move {
            use tenki_core::workspaces::Role;

            let context = crate::server::context()?;
            let caller = crate::server::caller(&context).await?;
            let cards =
                tenki_core::billing::cards::cards_of(&context.core.db, caller.member.workspace_id)
                    .await
                    .map_err(|e| AppError::internal_error(&e))?;
            Ok(BillingView {
                cards: cards
                    .into_iter()
                    .map(|card| CardView {
                        brand: brand_name(&card.brand),
                        last4: card.last4,
                        expires: format!("{:02}/{}", card.exp_month, card.exp_year),
                    })
                    .collect(),
                can_change: matches!(caller.member.role, Role::Owner | Role::Admin),
            })
        }
        .await,
    )
}

/// Stripe's brand codes as people write them.
#[cfg(feature = "ssr")]
fn brand_name(code: &str) -> String {
    match code {
        "visa" => "Visa".to_owned(),
        "mastercard" => "Mastercard".to_owned(),
        "amex" => "American Express".to_owned(),
        "discover" => "Discover".to_owned(),
        "diners" => "Diners Club".to_owned(),
        "jcb" => "JCB".to_owned(),
        "unionpay" => "UnionPay".to_owned(),
        other => other.to_owned(),
    }
}

/// What the return from Stripe (`?card=`) means, and whether it is good news.
fn card_notice(outcome: &str) -> Option<(bool, &'static str)> {
    Some(match outcome {
        "added" => (
            true,
            "Card saved. Jobs that were waiting for a card start within a minute.",
        ),
        "pending" => (
            true,
            "Stripe is still saving your card; it appears here in a moment.",
        ),
        "not_allowed" => (
            false,
            "Only the workspace's owners and admins can change its billing.",
        ),
        "other_workspace" => (
            false,
            "That Stripe Checkout session belongs to another workspace; nothing was saved.",
        ),
        "missing_session" => (
            false,
            "Stripe did not say which Checkout session ended; add the card again.",
        ),
        "stripe_unavailable" => (
            false,
            "Tenki could not reach Stripe. Nothing was charged; try again in a minute.",
        ),
        _ => return None,
    })
}

/// The Billing page.
#[component]
pub fn BillingPage() -> impl IntoView {
    let data = Resource::new(|| (), |()| billing());
    let query = use_query_map();
    let notice = query
        .with_untracked(|q| q.get("card"))
        .and_then(|outcome| card_notice(&outcome))
        .map(|(good, message)| {
            let class = if good {
                "mt-6 rounded-md bg-emerald-50 px-4 py-3 text-sm text-emerald-800"
            } else {
                "mt-6 rounded-md bg-red-50 px-4 py-3 text-sm text-red-700"
            };
            view! { <p role="status" class=class data-testid="billing-notice">{message}</p> }
        });
    view! {
        <h1 class="text-2xl font-semibold text-slate-900">"Billing"</h1>
        {notice}
        <Suspense fallback=|| view! { <p class="mt-6 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(view) => view! { <PaymentMethod view/> }.into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn PaymentMethod(view: BillingView) -> impl IntoView {
    let cards = if view.cards.is_empty() {
        view! {
            <p class="mt-2 text-sm text-slate-600" data-testid="no-card">
                "No card on file. Without one, jobs wait once the free minutes are used up."
            </p>
        }
        .into_any()
    } else {
        view! {
            <ul class="mt-3 space-y-2">
                {view.cards.into_iter().map(|card| view! {
                    <li class="flex flex-wrap items-baseline gap-x-3 rounded-lg border border-slate-200 px-4 py-3" data-testid="card">
                        <span class="font-medium text-slate-900">{card.brand} " ending in " {card.last4}</span>
                        <span class="text-sm text-slate-600">"expires " {card.expires}</span>
                    </li>
                }).collect_view()}
            </ul>
        }
        .into_any()
    };
    let actions = if view.can_change {
        view! {
            <div class="mt-4 flex flex-wrap gap-3">
                <form method="post" action="/billing/add-card">
                    <button type="submit" class="rounded-md bg-slate-900 px-3 py-1.5 text-sm font-medium text-white hover:bg-slate-700" data-testid="add-card">
                        "Add a card"
                    </button>
                </form>
                <form method="post" action="/billing/manage">
                    <button type="submit" class="rounded-md border border-slate-300 px-3 py-1.5 text-sm text-slate-700 hover:bg-slate-100" data-testid="manage-billing">
                        "Manage billing"
                    </button>
                </form>
            </div>
        }
        .into_any()
    } else {
        view! {
            <p class="mt-4 text-sm text-slate-600">"Only the workspace's owners and admins can change its billing."</p>
        }
        .into_any()
    };
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm" data-testid="payment-method">
            <h2 class="text-sm font-medium text-slate-500">"Payment method"</h2>
            {cards}
            {actions}
            <p class="mt-4 text-xs text-slate-500">"Cards are kept by Stripe; Tenki never sees the number."</p>
        </section>
    }
}
