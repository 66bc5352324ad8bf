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

/// An invoice as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceView {
    /// "October 2026".
    pub month: String,
    /// "Paid", "Payment failed: tried again on December 4", "Carried to next month"…
    pub status: String,
    /// "$12.34".
    pub total: String,
    pub hosted_invoice_url: Option<String>,
    pub invoice_pdf: Option<String>,
    /// (description, "$1.23").
    pub lines: Vec<(String, String)>,
}

/// Everything the Billing page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingView {
    pub cards: Vec<CardView>,
    /// The caller is an owner or admin: the buttons are theirs.
    pub can_change: bool,
    pub invoices: Vec<InvoiceView>,
    /// The running month so far: "November 2026", its lines and total.
    pub preview: InvoiceView,
    /// Storage now, in words: "20.00 GB of artifacts and data", "cache 4.00 GB of 10 GB included",
    /// "projected this month $2.00".
    pub storage: Vec<String>,
    /// What the owner was told (payment failed, suspended), newest first.
    pub notifications: Vec<String>,
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
            let invoices = tenki_core::billing::invoices::invoices_of(
                &context.core.db,
                caller.member.workspace_id,
            )
            .await
            .map_err(|e| AppError::internal_error(&e))?;
            // The spending alerts are due the moment usage crossed them; the minute's check
            // may not have run yet.
            tenki_core::billing::spending::check(
                &context.core.db,
                caller.member.workspace_id,
                chrono::Utc::now(),
            )
            .await
            .map_err(|e| AppError::internal_error(&e))?;
            let notifications = tenki_core::billing::invoices::notifications_of(
                &context.core.db,
                caller.member.workspace_id,
            )
            .await
            .map_err(|e| AppError::internal_error(&e))?;
            let dollars = |cents: i64| {
                format!(
                    "${}",
                    tenki_core::money::dollars(cents * tenki_core::money::MICRO_CENTS_PER_CENT, 2)
                )
            };
            let now = chrono::Utc::now();
            let (preview_lines, preview_total) = tenki_core::billing::invoices::preview(
                &context.core.db,
                caller.member.workspace_id,
                now,
            )
            .await
            .map_err(|e| AppError::internal_error(&e))?;
            let preview = InvoiceView {
                month: now.format("%B %Y").to_string(),
                status: "So far this month; invoiced on the 1st".to_owned(),
                total: dollars(preview_total),
                hosted_invoice_url: None,
                invoice_pdf: None,
                lines: preview_lines
                    .into_iter()
                    .map(|line| {
                        let cents =
                            tenki_core::billing::invoices::to_cents(line.amount_micro_cents);
                        (line.description, dollars(cents))
                    })
                    .collect(),
            };
            let storage = storage_lines(
                &context.core,
                caller.member.workspace_id,
                tenki_core::usage::Month::containing(now),
                now,
            )
            .await?;
            Ok(BillingView {
                storage,
                preview,
                invoices: invoices
                    .into_iter()
                    .map(|invoice| InvoiceView {
                        month: invoice.month.format("%B %Y").to_string(),
                        status: match invoice.state.as_str() {
                            "paid" => "Paid".to_owned(),
                            "nothing_due" => "Nothing due".to_owned(),
                            "carried" => {
                                "Under the $0.50 minimum: carried to next month".to_owned()
                            }
                            "payment_failed" => match invoice.next_attempt_at {
                                Some(at) => format!(
                                    "Payment failed: tried again on {}",
                                    at.format("%B %-d")
                                ),
                                None => "Payment failed".to_owned(),
                            },
                            "uncollectible" => "Unpaid: pay it from the invoice page".to_owned(),
                            "reversed" => {
                                "Payment reversed: owed again, contact support".to_owned()
                            }
                            _ => "Being issued".to_owned(),
                        },
                        total: dollars(invoice.total_cents.unwrap_or(0)),
                        hosted_invoice_url: invoice.hosted_invoice_url,
                        invoice_pdf: invoice.invoice_pdf,
                        lines: invoice
                            .lines
                            .into_iter()
                            .map(|(description, cents)| (description, dollars(cents)))
                            .collect(),
                    })
                    .collect(),
                notifications: notifications
                    .into_iter()
                    .map(|(at, message)| format!("{}: {message}", at.format("%B %-d, %Y")))
                    .collect(),
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
        <leptos_meta::Title text="Billing · Tenki"/>
        <h1 class="text-2xl font-semibold text-slate-900">"Billing"</h1>
        {notice}
        <Suspense fallback=|| view! { <p class="mt-6 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(view) => view! {
                        <Notifications notifications=view.notifications.clone()/>
                        <PaymentMethod view=view.clone()/>
                        <Preview preview=view.preview.clone()/>
                        <Storage storage=view.storage.clone()/>
                        <Invoices invoices=view.invoices/>
                    }.into_any(),
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

#[component]
fn Notifications(notifications: Vec<String>) -> impl IntoView {
    (!notifications.is_empty()).then(|| view! {
        <section class="mt-6 rounded-xl border border-amber-300 bg-amber-50 p-6" data-testid="notifications">
            <h2 class="text-sm font-medium text-amber-900">"Notifications"</h2>
            <ul class="mt-2 space-y-1 text-sm text-amber-900">
                {notifications.into_iter().map(|n| view! { <li>{n}</li> }).collect_view()}
            </ul>
        </section>
    })
}

#[component]
fn Invoices(invoices: Vec<InvoiceView>) -> impl IntoView {
    let body = if invoices.is_empty() {
        view! { <p class="mt-2 text-sm text-slate-600">"No invoices yet. Each month is invoiced on the 1st (UTC)."</p> }.into_any()
    } else {
        view! {
            <ul class="mt-3 space-y-3">
                {invoices.into_iter().map(|invoice| view! {
                    <li class="rounded-lg border border-slate-200 px-4 py-3" data-testid="invoice">
                        <details>
                            <summary class="flex cursor-pointer flex-wrap items-baseline gap-x-3">
                                <span class="font-medium text-slate-900">{invoice.month}</span>
                                <span class="font-semibold text-slate-900" data-testid="invoice-total">{invoice.total}</span>
                                <span class="text-sm text-slate-600" data-testid="invoice-status">{invoice.status}</span>
                            </summary>
                            <table class="mt-3 w-full text-left text-sm">
                                <tbody>
                                    {invoice.lines.into_iter().map(|(description, amount)| view! {
                                        <tr class="border-t border-slate-100">
                                            <td class="py-1 pr-4 text-slate-700">{description}</td>
                                            <td class="py-1 text-right text-slate-900">{amount}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                            <p class="mt-2 flex gap-4 text-sm">
                                {invoice.hosted_invoice_url.map(|url| view! { <a href=url rel="external" class="font-medium text-indigo-600 hover:text-indigo-800">"View invoice"</a> })}
                                {invoice.invoice_pdf.map(|url| view! { <a href=url rel="external" class="font-medium text-indigo-600 hover:text-indigo-800">"PDF"</a> })}
                            </p>
                        </details>
                    </li>
                }).collect_view()}
            </ul>
        }.into_any()
    };
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm" data-testid="invoices">
            <h2 class="text-sm font-medium text-slate-500">"Invoices"</h2>
            {body}
        </section>
    }
}

#[component]
fn Preview(preview: InvoiceView) -> impl IntoView {
    let empty = preview.lines.is_empty();
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm" data-testid="preview">
            <div class="flex flex-wrap items-baseline justify-between gap-3">
                <h2 class="text-sm font-medium text-slate-500">{format!("{} so far", preview.month)}</h2>
                <p class="text-2xl font-bold text-slate-900" data-testid="preview-total">{preview.total}</p>
            </div>
            {if empty {
                view! { <p class="mt-2 text-sm text-slate-600">"Nothing to bill yet this month."</p> }.into_any()
            } else {
                view! {
                    <table class="mt-3 w-full text-left text-sm">
                        <tbody>
                            {preview.lines.into_iter().map(|(description, amount)| view! {
                                <tr class="border-t border-slate-100">
                                    <td class="py-1 pr-4 text-slate-700">{description}</td>
                                    <td class="py-1 text-right text-slate-900">{amount}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
            <p class="mt-2 text-xs text-slate-500">{preview.status}</p>
        </section>
    }
}

/// What the workspace stores in `month`, in words: for the running month the storage now and
/// the month's projected cost; for a past month its average and what it cost.
#[cfg(feature = "ssr")]
pub(crate) async fn storage_lines(
    core: &tenki_core::Core,
    workspace_id: uuid::Uuid,
    month: tenki_core::usage::Month,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<String>, AppError> {
    use tenki_core::billing::invoices::to_cents;
    use tenki_core::billing::storage::{self, INCLUDED_CACHE_BYTES, gigabytes};
    let dollars = |cents: i64| {
        format!(
            "${}",
            tenki_core::money::dollars(cents * tenki_core::money::MICRO_CENTS_PER_CENT, 2)
        )
    };
    let mut connection = core
        .db
        .acquire()
        .await
        .map_err(|e| AppError::internal_error(&e))?;
    let running = month == tenki_core::usage::Month::containing(now);
    let as_of = if running { now } else { month.next().start() };
    let used = storage::month_usage(&mut connection, workspace_id, month.first_day(), as_of)
        .await
        .map_err(|e| AppError::internal_error(&e))?;
    let mut words = if running {
        vec![
            format!(
                "{} of artifacts and data",
                gigabytes(used.latest_artifact_bytes)
            ),
            format!(
                "dependency cache {} of {} included (never billed)",
                gigabytes(used.latest_cache_bytes),
                gigabytes(INCLUDED_CACHE_BYTES)
            ),
        ]
    } else {
        vec![format!(
            "{} of artifacts and data on average",
            gigabytes(used.average_bytes)
        )]
    };
    if used.cache_evicted_bytes > 0 {
        words.push(format!(
            "the cache evicted {} of least recently used entries {}",
            gigabytes(used.cache_evicted_bytes),
            if running { "this month" } else { "that month" }
        ));
    }
    words.push(if running {
        format!(
            "storage projected for this month: {}",
            dollars(to_cents(used.projected_amount))
        )
    } else {
        format!("storage that month: {}", dollars(to_cents(used.amount)))
    });
    Ok(words)
}

#[component]
pub(crate) fn Storage(storage: Vec<String>) -> impl IntoView {
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm" data-testid="storage">
            <h2 class="text-sm font-medium text-slate-500">"Storage ($0.20 per GB-month of the daily average)"</h2>
            <ul class="mt-2 space-y-1 text-sm text-slate-700">
                {storage.into_iter().map(|line| view! { <li>{line}</li> }).collect_view()}
            </ul>
        </section>
    }
}
