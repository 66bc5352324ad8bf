//! The page that says how "Connect GitHub" ended (`/github/connected`): linked, waiting for an
//! owner's approval, or refused with the reason and what to do. The server's `/github/setup`
//! did the work and redirected here; this page reads its query, and says "linked" only for an
//! installation this workspace really has (the query is only a hint anyone can type).

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::dashboard::ErrorNotice;
use crate::error::AppError;

/// Whether an installation on the GitHub account `account` is linked to the caller's workspace.
#[server(prefix = "/api", endpoint = "linked_account")]
pub async fn linked_account(account: String) -> Result<bool, AppError> {
    crate::server::respond(
        async move {
            let context = crate::server::context()?;
            let caller = crate::server::caller(&context).await?;
            let installations =
                tenki_core::jobs::installations(&context.core.db, caller.member.workspace_id)
                    .await
                    .map_err(|e| AppError::internal_error(&e))?;
            // GitHub logins are unique without regard to case.
            Ok(installations.iter().any(|installation| {
                installation.state != "deleted"
                    && installation
                        .account_login
                        .eq_ignore_ascii_case(account.trim())
            }))
        }
        .await,
    )
}

/// What to tell the customer about a refused setup, by the code `/github/setup` sends, and the
/// HTTP status of the page.
fn refusal(code: &str, installation: &str) -> (u16, String) {
    let again = "Start again from the Runners page.";
    match code {
        "expired" => (400, format!("This GitHub connection link expired. {again}")),
        "invalid_state" => (
            400,
            format!(
                "This GitHub connection link is not valid: it was changed, or it was started in another browser session. {again}"
            ),
        ),
        "missing_installation" => (
            400,
            format!("GitHub did not say which installation to link. {again}"),
        ),
        "missing_code" | "bad_code" => (
            400,
            format!(
                "GitHub did not send a usable authorization code, so Tenki cannot confirm who you are. {again}"
            ),
        ),
        "not_yours" => (
            403,
            format!(
                "Your GitHub account cannot access installation {installation}, so it was not linked."
            ),
        ),
        "not_allowed" => (
            403,
            "Only the workspace's owners and admins can connect GitHub. Ask one of them to connect it.".to_owned(),
        ),
        "linked_elsewhere" => (
            409,
            format!(
                "Installation {installation} is already linked to another Tenki workspace; remove it there first."
            ),
        ),
        "github_not_found" => (
            404,
            format!(
                "GitHub cannot find installation {installation}, or the Tenki App has no access to it. {again}"
            ),
        ),
        "github_runners_disabled" | "github_actions_disabled" => (
            409,
            "GitHub Actions or self-hosted runners are disabled for this organization: allow them in its Actions settings, then connect again.".to_owned(),
        ),
        "github_refused" => (
            403,
            format!("GitHub refused to confirm the installation. {again}"),
        ),
        "github_credentials" | "internal" => (
            500,
            "Tenki could not finish connecting GitHub; nothing was linked. Try again in a few minutes.".to_owned(),
        ),
        "github_rate_limited" => (
            503,
            "GitHub's API rate limit is used up for now. Try again in a few minutes.".to_owned(),
        ),
        "github_unreachable" => (
            502,
            format!("Tenki could not reach GitHub. {again}"),
        ),
        "github_suspended" => (
            403,
            "The Tenki App installation is suspended: unsuspend it in your GitHub settings, then connect again.".to_owned(),
        ),
        "github_permission" => (
            403,
            "The Tenki App lacks a permission it needs: accept the App's requested permissions in your GitHub settings, then connect again.".to_owned(),
        ),
        "github_ip_allow_list" => (
            403,
            "Your organization's IP allow list blocks Tenki: allow the GitHub App's IP addresses, then connect again.".to_owned(),
        ),
        // Only `/github/setup` sends these codes; any other came from a typed or changed address.
        _ => (
            400,
            format!("This page does not know how that connection ended. {again}"),
        ),
    }
}

/// `/github/connected`.
#[component]
pub fn GitHubConnectedPage() -> impl IntoView {
    let query = use_query_map();
    let (account, awaiting, refused, installation) = query.with_untracked(|q| {
        (
            q.get("account"),
            q.get("awaiting").is_some(),
            q.get("refused"),
            q.get("installation").unwrap_or_default(),
        )
    });
    let outcome = match (refused, account) {
        (Some(code), _) => {
            let (status, message) = refusal(&code, &installation);
            #[cfg(feature = "ssr")]
            if let (Some(response), Ok(status)) = (
                use_context::<leptos_axum::ResponseOptions>(),
                http::StatusCode::from_u16(status),
            ) {
                response.set_status(status);
            }
            #[cfg(not(feature = "ssr"))]
            let _ = status;
            view! {
                <p role="alert" data-testid="github-setup-refused" class="mt-6 rounded-md bg-red-50 px-4 py-3 text-sm text-red-700">{message}</p>
            }
            .into_any()
        }
        (None, Some(account)) => {
            let linked = Resource::new(move || account.clone(), linked_account);
            view! {
                <Suspense fallback=|| view! { <p class="mt-6 text-slate-500">"Checking…"</p> }>
                    {move || Suspend::new(async move {
                        let account = query.with_untracked(|q| q.get("account")).unwrap_or_default();
                        match linked.await {
                            Ok(true) => view! {
                                <section class="mt-6 rounded-xl border border-emerald-200 bg-emerald-50 p-6" data-testid="github-connected">
                                    <h2 class="font-medium text-emerald-900">"GitHub is connected"</h2>
                                    <p class="mt-2 text-sm text-emerald-800">
                                        "The Tenki App on " <strong>{account}</strong> " is linked to this workspace. Jobs with a Tenki label in its repositories now run on Tenki."
                                    </p>
                                </section>
                            }
                            .into_any(),
                            Ok(false) => {
                                #[cfg(feature = "ssr")]
                                if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                                    response.set_status(http::StatusCode::NOT_FOUND);
                                }
                                view! {
                                    <p role="alert" data-testid="github-not-linked" class="mt-6 rounded-md bg-amber-50 px-4 py-3 text-sm text-amber-800">
                                        "No GitHub installation on " <strong>{account}</strong> " is linked to this workspace. Connect GitHub from the Runners page."
                                    </p>
                                }
                                .into_any()
                            }
                            Err(error) => view! { <ErrorNotice error/> }.into_any(),
                        }
                    })}
                </Suspense>
            }
            .into_any()
        }
        (None, None) if awaiting => view! {
            <section class="mt-6 rounded-xl border border-amber-200 bg-amber-50 p-6" data-testid="github-awaiting-approval">
                <h2 class="font-medium text-amber-900">"Waiting for an organization owner to approve"</h2>
                <p class="mt-2 text-sm text-amber-800">
                    "GitHub asked an owner of the organization to approve the Tenki App. When they approve it, Tenki links it to this workspace and it appears on the Runners page."
                </p>
            </section>
        }
        .into_any(),
        (None, None) => view! {
            <p class="mt-6 text-sm text-slate-600">"Connect GitHub from the Runners page."</p>
        }
        .into_any(),
    };
    view! {
        <leptos_meta::Title text="Connect GitHub · Tenki"/>
        <h1 class="text-2xl font-semibold text-slate-900">"Connect GitHub"</h1>
        {outcome}
        <a href="/runners" class="mt-6 inline-block text-sm font-medium text-indigo-600 hover:text-indigo-800">"Back to Runners"</a>
    }
}
