//! The page GitHub returns to after the App's install page (`/github/setup`): it finishes
//! "Connect GitHub" and says how it ended: linked, waiting for an owner's approval, or refused
//! with the reason.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::dashboard::ErrorNotice;
use crate::error::AppError;

/// How connecting GitHub ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectOutcome {
    /// The installation on `account` is linked to the workspace.
    Linked { account: String },
    /// An organization owner must approve the installation.
    AwaitingApproval,
}

/// Finishes connecting GitHub with what GitHub put in the setup URL. The `installation_id` is
/// not trusted: the state must be this session's, and the user's own GitHub token must see it.
#[server(prefix = "/api", endpoint = "github-setup")]
pub async fn finish_github_setup(
    installation_id: Option<String>,
    setup_action: Option<String>,
    code: Option<String>,
    state: Option<String>,
) -> Result<ConnectOutcome, AppError> {
    crate::server::respond(
        async move {
            use secrecy::ExposeSecret as _;
            use tenki_core::github_onboarding::{self, SetupError, SetupOutcome, SetupReturn};

            let context = crate::server::context()?;
            let caller = crate::server::caller(&context).await?;
            let session = crate::server::session_token()
                .await
                .ok_or(AppError::SignInRequired)?;
            let installation_id = match installation_id.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
                    AppError::refused(
                        "bad_setup",
                        "GitHub sent an installation id that is not a number. Start again from the Runners page.",
                    )
                })?),
            };
            let setup = SetupReturn {
                installation_id,
                setup_action,
                code,
                state,
            };
            let outcome = github_onboarding::complete_setup(
                &context.core.db,
                &context.core.github,
                context.state_key.expose_secret().as_bytes(),
                &session,
                caller.member.workspace_id,
                &setup,
                chrono::Utc::now(),
            )
            .await;
            match outcome {
                Ok(SetupOutcome::Linked { account, .. }) => Ok(ConnectOutcome::Linked { account }),
                Ok(SetupOutcome::AwaitingApproval) => Ok(ConnectOutcome::AwaitingApproval),
                Err(error @ (SetupError::State(_) | SetupError::MissingInstallation | SetupError::MissingCode)) => {
                    Err(AppError::refused("bad_setup", error.to_string()))
                }
                Err(error @ SetupError::NotYourInstallation(_)) => {
                    Err(AppError::refused("forbidden", error.to_string()))
                }
                Err(error @ SetupError::LinkedElsewhere(_)) => {
                    Err(AppError::refused("linked_elsewhere", error.to_string()))
                }
                Err(SetupError::GitHub(error)) => {
                    Err(AppError::refused("github_refused", error.to_string()))
                }
                Err(SetupError::Database(error)) => Err(AppError::internal(error)),
            }
        }
        .await,
    )
}

/// `/github/setup`: where GitHub sends the browser back.
#[component]
pub fn GitHubSetupPage() -> impl IntoView {
    let query = use_query_map();
    let outcome = Resource::new(
        move || {
            query.with(|q| {
                (
                    q.get("installation_id"),
                    q.get("setup_action"),
                    q.get("code"),
                    q.get("state"),
                )
            })
        },
        |(installation_id, setup_action, code, state)| {
            finish_github_setup(installation_id, setup_action, code, state)
        },
    );
    view! {
        <h1 class="text-2xl font-semibold text-slate-900">"Connect GitHub"</h1>
        <Suspense fallback=|| view! { <p class="mt-6 text-slate-500">"Checking with GitHub…"</p> }>
            {move || Suspend::new(async move {
                match outcome.await {
                    Ok(ConnectOutcome::Linked { account }) => view! {
                        <section class="mt-6 rounded-xl border border-emerald-200 bg-emerald-50 p-6" data-testid="github-connected">
                            <h2 class="font-medium text-emerald-900">"GitHub is connected"</h2>
                            <p class="mt-2 text-sm text-emerald-800">
                                "The Tenki App on " <strong>{account}</strong> " is linked to this workspace. Jobs with a Tenki label in its repositories now run on Tenki."
                            </p>
                        </section>
                    }.into_any(),
                    Ok(ConnectOutcome::AwaitingApproval) => view! {
                        <section class="mt-6 rounded-xl border border-amber-200 bg-amber-50 p-6" data-testid="github-awaiting-approval">
                            <h2 class="font-medium text-amber-900">"Waiting for an organization owner to approve"</h2>
                            <p class="mt-2 text-sm text-amber-800">
                                "GitHub asked an owner of the organization to approve the Tenki App. When they approve it, Tenki links it to this workspace and it appears on the Runners page."
                            </p>
                        </section>
                    }.into_any(),
                    Err(error) => view! {
                        <div data-testid="github-setup-refused"><ErrorNotice error/></div>
                    }.into_any(),
                }
            })}
        </Suspense>
        <a href="/runners" class="mt-6 inline-block text-sm font-medium text-indigo-600 hover:text-indigo-800">"Back to Runners"</a>
    }
}
