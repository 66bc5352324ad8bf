//! The signed-in dashboard: the layout with its navigation, the Overview page, and the page for
//! an address that matches none.

use leptos::prelude::*;
use leptos_router::components::{A, Outlet, Redirect};
use serde::{Deserialize, Serialize};

use crate::auth::SignOut;
use crate::error::AppError;

/// Who is signed in, shown in the layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub email: String,
    pub workspace_name: String,
    /// GitHub or Stripe is not configured: everything talks to local doubles.
    pub sandbox: bool,
    /// The person's other workspaces (id, name), to switch to.
    pub other_workspaces: Vec<(String, String)>,
}

/// The Overview figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverviewData {
    pub workspace_name: String,
    pub free_minutes_left: u64,
    pub free_minutes_granted: u64,
    /// Why there are no free minutes yet, while there are none: a refused grant, or the e-mail
    /// address still to confirm.
    pub free_minutes_waiting: Option<String>,
    /// The caller has not confirmed their e-mail address: the Overview offers a new link.
    pub email_unverified: bool,
    /// Kratos confirms addresses (with a code it e-mails): the Overview links to that page
    /// rather than sending a link of Tenki's own.
    pub verified_by_kratos: bool,
    /// Charged this month so far, formatted in dollars.
    pub month_to_date_cost: String,
    /// Unfinished jobs by what they are doing ("running", "waiting for a slot"), with counts.
    pub jobs_now: Vec<(String, i64)>,
    /// Getting started: GitHub connected, a job sent to Tenki, a job ran.
    pub steps_done: [bool; 3],
}

/// The signed-in person and their workspace.
#[server(prefix = "/api", endpoint = "me")]
pub async fn who_am_i() -> Result<Me, AppError> {
    crate::server::respond(
        async move {
            let context = crate::server::context()?;
            let caller = crate::server::caller(&context).await?;
            let others = tenki_core::workspaces::memberships(&context.core.db, caller.user.user_id)
                .await
                .map_err(|e| AppError::internal_error(&e))?
                .into_iter()
                .filter(|m| m.workspace_id != caller.member.workspace_id)
                .map(|m| (m.workspace_id.to_string(), m.workspace_name))
                .collect();
            Ok(Me {
                email: caller.user.email,
                workspace_name: caller.member.workspace_name,
                sandbox: context.sandbox,
                other_workspaces: others,
            })
        }
        .await,
    )
}

/// The caller's workspace's Overview: free minutes from the ledger.
#[server(prefix = "/api", endpoint = "overview")]
pub async fn overview() -> Result<OverviewData, AppError> {
    crate::server::respond(
        async move {
            let context = crate::server::context()?;
            let caller = crate::server::caller(&context).await?;
            let overview = tenki_core::workspaces::overview(
                &context.core.db,
                &context.core.ledger,
                &caller.member,
                chrono::Utc::now(),
            )
            .await
            .map_err(|e| AppError::internal_error(&e))?;
            let verified = caller.user.email_verified;
            // A refusal first: a grant taken back leaves the part used before as granted.
            let free_minutes_waiting = match (overview.free_minutes_granted, overview.free_grant_refusal) {
                (_, Some(refusal)) => Some(refusal),
                (granted, _) if granted > 0 => None,
                _ if !verified && context.core.identity.kratos().is_some() => Some(format!(
                    "Confirm your e-mail address to receive your 1,000 free minutes: we sent a code to {}.",
                    caller.user.email
                )),
                _ if !verified => Some(format!(
                    "Confirm your e-mail address to receive your 1,000 free minutes: we sent a link to {}.",
                    caller.user.email
                )),
                _ => Some(
                    "Your 1,000 free minutes arrive once an owner of this workspace confirms their e-mail address."
                        .to_owned(),
                ),
            };
            Ok(OverviewData {
                workspace_name: overview.workspace_name,
                free_minutes_left: overview.free_minutes_left,
                free_minutes_granted: overview.free_minutes_granted,
                free_minutes_waiting,
                email_unverified: !verified,
                verified_by_kratos: context.core.identity.kratos().is_some(),
                month_to_date_cost: tenki_core::money::dollars(overview.month_to_date_amount, 2),
                jobs_now: overview.jobs_now,
                steps_done: [
                    overview.getting_started.github_connected,
                    overview.getting_started.first_job_sent,
                    overview.getting_started.first_job_ran,
                ],
            })
        }
        .await,
    )
}

const NAVIGATION: [(&str, &str); 7] = [
    ("/", "Overview"),
    ("/runners", "Runners"),
    ("/jobs", "Jobs"),
    ("/usage", "Usage"),
    ("/add-ons", "Add-ons"),
    ("/billing", "Billing"),
    ("/settings", "Settings"),
];

/// The frame of every signed-in page; sends anyone without a session to the sign-in page.
///
/// Only the parts that show who is signed in wait for `who_am_i`; the page itself (the
/// `Outlet`) is outside any `Suspense` here. A page rendered inside this layout's `Suspend`
/// was rendered twice on the server, and its HTML and its hydration data could then come from
/// two different reads: the hydration failed whenever a job changed in between.
#[component]
pub fn DashboardLayout() -> impl IntoView {
    let me = Resource::new(|| (), |()| who_am_i());
    let sign_out = ServerAction::<SignOut>::new();
    // With Kratos, signing out ends on Kratos's own address: a full page load.
    Effect::new(move |_| {
        if let Some(Ok(Some(url))) = sign_out.value().get() {
            crate::self_service::leave_for(&url);
        }
    });
    let location = leptos_router::hooks::use_location();
    let sign_in = move || {
        sign_in_returning_to(
            &location.pathname.get_untracked(),
            &location.search.get_untracked(),
        )
    };
    view! {
        <div class="min-h-screen bg-slate-50 md:flex">
            <aside class="border-b border-slate-200 bg-white md:min-h-screen md:w-60 md:border-b-0 md:border-r">
                <div class="flex items-center justify-between px-5 py-4">
                    <span class="text-xl font-bold text-indigo-600">"Tenki"</span>
                    <Suspense fallback=|| ()>
                        {move || Suspend::new(async move {
                            me.await.ok().filter(|me| me.sandbox).map(|_| view! {
                                <span
                                    data-testid="sandbox-badge"
                                    title="GitHub and Stripe are local doubles: nothing here is real."
                                    class="rounded-full bg-amber-100 px-2 py-0.5 text-xs font-semibold text-amber-800"
                                >
                                    "Sandbox"
                                </span>
                            })
                        })}
                    </Suspense>
                </div>
                <Navigation/>
            </aside>
            <div class="flex-1">
                <header class="flex items-center justify-between gap-4 border-b border-slate-200 bg-white px-6 py-3">
                    <Suspense fallback=|| view! { <div class="min-w-0"></div> }>
                        {move || Suspend::new(async move {
                            match me.await {
                                Ok(me) => view! {
                                    <div class="min-w-0">
                                        <p class="truncate text-sm font-semibold text-slate-900" data-testid="workspace-name">{me.workspace_name}</p>
                                        <p class="truncate text-xs text-slate-500">{me.email}</p>
                                        <WorkspaceSwitcher others=me.other_workspaces/>
                                    </div>
                                }.into_any(),
                                Err(AppError::SignInRequired) => view! { <Redirect path=sign_in()/> }.into_any(),
                                Err(error) if error.code() == crate::error::SECOND_FACTOR_REQUIRED => {
                                    view! { <Redirect path=second_factor(sign_in())/> }.into_any()
                                }
                                Err(error) => view! { <ErrorNotice error/> }.into_any(),
                            }
                        })}
                    </Suspense>
                    <ActionForm action=sign_out>
                        <button type="submit" class="rounded-md border border-slate-300 px-3 py-1.5 text-sm text-slate-700 hover:bg-slate-100">
                            "Sign out"
                        </button>
                    </ActionForm>
                </header>
                <main class="mx-auto max-w-6xl px-6 py-8">
                    <Outlet/>
                </main>
            </div>
        </div>
    }
}

/// Overview: the workspace and its free minutes.
#[component]
pub fn OverviewPage() -> impl IntoView {
    let data = Resource::new(|| (), |()| overview());
    // Live: the figures refresh every few seconds, so a metered job shows within 5 s.
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(move || data.refetch(), LIVE_REFRESH) {
            on_cleanup(move || handle.clear());
        }
    });
    let query = leptos_router::hooks::use_query_map();
    let link_outcome = move || {
        let (tone, text) = match query.read().get("email").as_deref() {
            Some("verified") => (
                "border-emerald-300 bg-emerald-50 text-emerald-900",
                "Your e-mail address is confirmed.",
            ),
            Some("expired_link") => (
                "border-amber-300 bg-amber-50 text-amber-900",
                "That link has expired. Send yourself a new one from this page.",
            ),
            Some("unknown_link") => (
                "border-amber-300 bg-amber-50 text-amber-900",
                "That link is not valid. Use the newest link we sent, or send a new one from this page.",
            ),
            Some("address_changed") => (
                "border-amber-300 bg-amber-50 text-amber-900",
                "That link was sent to an address your account no longer uses.",
            ),
            _ => return None,
        };
        Some(view! {
            <p role="status" data-testid="email-link-outcome" class=format!("mt-4 rounded-lg border px-4 py-3 text-sm {tone}")>{text}</p>
        })
    };
    view! {
        <leptos_meta::Title text="Overview · Tenki"/>
        <h1 class="text-2xl font-semibold text-slate-900">"Overview"</h1>
        {link_outcome}
        <Transition fallback=|| view! { <p class="mt-6 text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(data) => view! { <OverviewCards data/> }.into_any(),
                    Err(error) => view! { <ErrorNotice error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// How often live figures refresh in the browser.
pub const LIVE_REFRESH: std::time::Duration = std::time::Duration::from_secs(3);

#[component]
fn OverviewCards(data: OverviewData) -> impl IntoView {
    let exhausted = data.free_minutes_left == 0 && data.free_minutes_granted > 0;
    let waiting = data.free_minutes_waiting.clone();
    let email_unverified = data.email_unverified;
    let by_kratos = data.verified_by_kratos;
    let cost = data.month_to_date_cost.clone();
    let jobs_now = data.jobs_now.clone();
    let steps_done = data.steps_done;
    view! {
        {waiting.map(|why| view! { <FreeMinutesWaiting why offer_link=email_unverified by_kratos/> })}
        {steps_done.contains(&false).then(|| view! { <GettingStarted done=steps_done/> })}
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm" data-testid="jobs-now">
            <h2 class="text-sm font-medium text-slate-500">"Jobs now"</h2>
            {if jobs_now.is_empty() {
                view! { <p class="mt-2 text-sm text-slate-600">"No job is running or waiting."</p> }.into_any()
            } else {
                view! {
                    <ul class="mt-2 flex flex-wrap gap-2 text-sm">
                        {jobs_now.into_iter().map(|(what, count)| {
                            let tone = if what == "running" || what == "starting" {
                                "rounded-full bg-emerald-50 px-3 py-1 text-emerald-800"
                            } else {
                                "rounded-full bg-amber-50 px-3 py-1 text-amber-900"
                            };
                            view! { <li class=tone data-testid="jobs-now-item"><a href="/jobs" class="hover:underline">{count} " " {what}</a></li> }
                        }).collect_view()}
                    </ul>
                }.into_any()
            }}
        </section>
        {exhausted.then(|| view! {
            <p role="status" data-testid="free-minutes-exhausted" class="mt-6 rounded-lg border border-amber-300 bg-amber-50 px-4 py-3 text-sm text-amber-900">
                "Your free minutes are used up. "
                <a href="/billing" class="font-medium underline">"Add a card"</a>
                " to keep running jobs."
            </p>
        })}
        <div class="mt-6 grid gap-6 md:grid-cols-3">
            <div class="md:col-span-2"><FreeMinutesCard data/></div>
            <section class="rounded-xl border border-slate-200 bg-white p-6 shadow-sm">
                <h2 class="text-sm font-medium text-slate-500">"Cost this month"</h2>
                <p class="mt-2 text-4xl font-bold text-slate-900" data-testid="month-to-date-cost">"$" {cost}</p>
                <p class="mt-3 text-sm text-slate-600">"Pay-as-you-go usage after free minutes, so far this month (UTC)."</p>
            </section>
        </div>
    }
}

/// Why the workspace has no free minutes yet; with a button for a new verification link while
/// the caller's address is unconfirmed.
#[component]
fn FreeMinutesWaiting(why: String, offer_link: bool, by_kratos: bool) -> impl IntoView {
    let resend = ServerAction::<crate::auth::ResendVerification>::new();
    let answer = move || {
        match resend.value().get() {
        Some(Ok(())) => Some(view! { <span class="font-medium text-emerald-800" data-testid="verification-sent">" A new link is on its way."</span> }.into_any()),
        Some(Err(error)) => Some(view! { <span class="font-medium text-red-700" role="alert">" " {error.to_string()}</span> }.into_any()),
        None => None,
    }
    };
    view! {
        <div role="status" data-testid="free-minutes-waiting" class="mt-6 rounded-lg border border-indigo-200 bg-indigo-50 px-4 py-3 text-sm text-indigo-950">
            <p>{why}</p>
            {(offer_link && by_kratos).then(|| view! {
                <a href="/verification" class="mt-2 inline-block font-medium text-indigo-700 underline hover:text-indigo-900">"Enter the code"</a>
            })}
            {(offer_link && !by_kratos).then(|| view! {
                <ActionForm action=resend attr:class="mt-2">
                    <button type="submit" class="font-medium text-indigo-700 underline hover:text-indigo-900">"Send the link again"</button>
                    {answer}
                </ActionForm>
            })}
        </div>
    }
}

/// The steps to a first job on Tenki, each ticked when done and with its action until then.
/// Gone once all are done.
#[component]
fn GettingStarted(done: [bool; 3]) -> impl IntoView {
    let steps: [(&str, AnyView); 3] = [
        (
            "Connect GitHub",
            view! {
                "Install the Tenki App on your organization or account. "
                <a href="/runners" class="font-medium text-indigo-700 hover:underline">"Connect GitHub →"</a>
            }
            .into_any(),
        ),
        (
            "Point a workflow at Tenki",
            view! {
                "In a job of a workflow, replace its " <code class="rounded bg-slate-100 px-1">"runs-on:"</code> " with "
                <code class="whitespace-nowrap rounded bg-slate-100 px-1 font-semibold" data-testid="runs-on-line">"runs-on: tenki-standard-2c"</code>
                ". " <a href="/runners" class="font-medium text-indigo-700 hover:underline">"All runner labels →"</a>
            }
            .into_any(),
        ),
        (
            "Your first job runs on Tenki",
            view! {
                "Push or re-run the workflow; the job shows here within seconds. "
                <a href="/jobs" class="font-medium text-indigo-700 hover:underline">"Open the job log →"</a>
            }
            .into_any(),
        ),
    ];
    let finished = done.iter().filter(|done| **done).count();
    view! {
        <section class="mt-6 rounded-xl border border-indigo-200 bg-white p-6 shadow-sm" data-testid="getting-started">
            <h2 class="font-medium text-slate-900">"Get your first job onto Tenki"</h2>
            <p class="mt-1 text-sm text-slate-500">{format!("{finished} of 3 done")}</p>
            <ol class="mt-4 space-y-4">
                {steps.into_iter().zip(done).enumerate().map(|(n, ((title, how), done))| view! {
                    <li class="flex gap-3" data-testid="getting-started-step" data-done=done.to_string()>
                        {if done {
                            view! { <span class="flex h-6 w-6 shrink-0 items-center justify-center rounded-full bg-emerald-500 text-sm text-white" aria-label="done">"✓"</span> }.into_any()
                        } else {
                            view! { <span class="flex h-6 w-6 shrink-0 items-center justify-center rounded-full border border-slate-300 text-sm text-slate-600" aria-label="to do">{n + 1}</span> }.into_any()
                        }}
                        <div>
                            <p class=if done { "font-medium text-slate-500 line-through" } else { "font-medium text-slate-900" }>{title}</p>
                            {(!done).then(|| view! { <p class="mt-1 text-sm text-slate-600">{how}</p> })}
                        </div>
                    </li>
                }).collect_view()}
            </ol>
        </section>
    }
}

#[component]
fn FreeMinutesCard(data: OverviewData) -> impl IntoView {
    let percent_left = percent(data.free_minutes_left, data.free_minutes_granted);
    view! {
        <section class="rounded-xl border border-slate-200 bg-white p-6 shadow-sm" data-testid="free-minutes">
            <h2 class="text-sm font-medium text-slate-500">"Free minutes left"</h2>
            <p class="mt-2 text-4xl font-bold text-slate-900">
                <span data-testid="free-minutes-left">{thousands(data.free_minutes_left)}</span>
                <span class="text-base font-normal text-slate-500">
                    {if data.free_minutes_granted > 0 {
                        format!(" of {}", thousands(data.free_minutes_granted))
                    } else {
                        " — none granted yet".to_owned()
                    }}
                </span>
            </p>
            <div
                role="progressbar"
                aria-label="Free minutes left"
                aria-valuemin="0"
                aria-valuemax=data.free_minutes_granted.to_string()
                aria-valuenow=data.free_minutes_left.to_string()
                class="mt-4 h-3 w-full overflow-hidden rounded-full bg-slate-200"
            >
                <div class="h-3 rounded-full bg-emerald-500" style=format!("width: {percent_left}%")></div>
            </div>
            <p class="mt-3 text-sm text-slate-600">
                "Free minutes count on 2 vCPUs: a minute on a 4-vCPU runner uses 2 of them. "
                "They cover every runner type; after them, runners are billed per minute."
            </p>
        </section>
    }
}

/// The sign-in page asking for the second factor, for the sign-in address `sign_in`.
fn second_factor(sign_in: String) -> String {
    if sign_in.contains('?') {
        format!("{sign_in}&aal=aal2")
    } else {
        format!("{sign_in}?aal=aal2")
    }
}

/// The sign-in page, told to come back to `path` (and its `search` query) once signed in.
fn sign_in_returning_to(path: &str, search: &str) -> String {
    let search = search.trim_start_matches('?');
    let asked = if search.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{search}")
    };
    if asked == "/" || asked.is_empty() {
        return "/sign-in".to_owned();
    }
    format!("/sign-in?next={}", query_value(&asked))
}

/// `value` percent-encoded for a query string (`/` kept, as it is safe there and reads better).
pub(crate) fn query_value(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// For a person in several workspaces: a plain form that switches to another one (it works
/// without JavaScript; `/workspaces/switch` remembers the choice in a cookie).
#[component]
fn WorkspaceSwitcher(others: Vec<(String, String)>) -> impl IntoView {
    (!others.is_empty()).then(|| {
        view! {
            <form method="post" action="/workspaces/switch" class="mt-1 flex items-center gap-2" data-testid="workspace-switcher">
                <label class="text-xs text-slate-500">"Switch to"
                    <select name="workspace" class="ml-1 rounded border border-slate-300 bg-white px-1 py-0.5 text-xs">
                        {others.into_iter().map(|(id, name)| view! { <option value=id>{name}</option> }).collect_view()}
                    </select>
                </label>
                <button type="submit" class="rounded border border-slate-300 px-2 py-0.5 text-xs text-slate-700 hover:bg-slate-100">"Switch"</button>
            </form>
        }
    })
}

/// The dashboard's pages, as the layout lists them.
#[component]
fn Navigation() -> impl IntoView {
    view! {
        <nav class="flex gap-1 overflow-x-auto px-3 pb-3 md:flex-col md:pb-0">
            {NAVIGATION
                .iter()
                .map(|(href, label)| view! {
                    <A href=*href attr:class="whitespace-nowrap rounded-md px-3 py-2 text-sm font-medium text-slate-700 hover:bg-slate-100 aria-[current=page]:bg-indigo-50 aria-[current=page]:text-indigo-700">
                        {*label}
                    </A>
                })
                .collect_view()}
        </nav>
    }
}

/// An address that matches no page: says so with a 404 and keeps the navigation, so the way on
/// is one click away.
#[component]
pub fn NotFoundPage() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <leptos_meta::Title text="Page not found · Tenki"/>
        <div class="min-h-screen bg-slate-50 md:flex">
            <aside class="border-b border-slate-200 bg-white md:min-h-screen md:w-60 md:border-b-0 md:border-r">
                <div class="px-5 py-4">
                    <a href="/" class="text-xl font-bold text-indigo-600">"Tenki"</a>
                </div>
                <Navigation/>
            </aside>
            <main class="flex-1 p-6 md:p-10">
                <h1 class="text-2xl font-semibold text-slate-900">"Page not found"</h1>
                <p class="mt-4 text-slate-600" data-testid="not-found">
                    "There is no page at this address. The link may be mistyped or out of date."
                </p>
                <a href="/" class="mt-6 inline-block rounded-md bg-indigo-600 px-4 py-2 text-sm font-medium text-white hover:bg-indigo-700">"Go to the Overview"</a>
            </main>
        </div>
    }
}

/// An error in words the customer can act on.
#[component]
pub fn ErrorNotice(error: AppError) -> impl IntoView {
    view! {
        <p role="alert" class="mt-6 rounded-md bg-red-50 px-4 py-3 text-sm text-red-700">{error.to_string()}</p>
    }
}

/// 1234567 → "1,234,567".
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `part` as a whole percentage of `whole` (0 when `whole` is 0), at most 100.
fn percent(part: u64, whole: u64) -> u64 {
    (part.min(whole) * 100).checked_div(whole).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_signed_out_visit_is_sent_to_sign_in_with_the_page_it_asked_for() {
        use super::sign_in_returning_to;
        assert_eq!(sign_in_returning_to("/", ""), "/sign-in");
        assert_eq!(
            sign_in_returning_to("/usage", "month=2026-10"),
            "/sign-in?next=/usage%3Fmonth%3D2026-10"
        );
        assert_eq!(
            sign_in_returning_to("/jobs", "?status=failed&repo=a b"),
            "/sign-in?next=/jobs%3Fstatus%3Dfailed%26repo%3Da%20b"
        );
    }

    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn percent_is_bounded() {
        assert_eq!(percent(1_000, 1_000), 100);
        assert_eq!(percent(250, 1_000), 25);
        assert_eq!(percent(5, 0), 0);
        assert_eq!(percent(2_000, 1_000), 100);
    }
}
