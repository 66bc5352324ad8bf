//! Members of a workspace on the Settings page (who belongs, with which role; invite, change a
//! role, remove, leave) and the page an invitation link opens (`/join?token=…`). The forms post
//! to plain routes (`/settings/members/*`, `/join`), so they work without JavaScript.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::dashboard::ErrorNotice;
use crate::error::AppError;

/// One member as the list shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub user_id: String,
    pub email: String,
    /// owner, admin or member.
    pub role: String,
    /// "Nov 30, 2026".
    pub joined: String,
    /// The caller themself.
    pub is_you: bool,
}

/// The Members section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersView {
    pub members: Vec<MemberView>,
    /// The caller is an owner or admin: they invite, change roles and remove.
    pub can_manage: bool,
    /// The caller is an owner: they may also make or change owners.
    pub is_owner: bool,
    /// Where invitation links start (`https://tenki.example`).
    pub link_base: String,
}

/// The members of the caller's workspace.
#[server(prefix = "/api", endpoint = "members")]
pub async fn members() -> Result<MembersView, AppError> {
    crate::server::respond(
        async move {
            use tenki_core::workspaces::{Role, members};

            let context = crate::server::context()?;
            let caller = crate::server::caller(&context).await?;
            let list = members::list(&context.core.db, caller.member.workspace_id)
                .await
                .map_err(|e| AppError::internal_error(&e))?;
            Ok(MembersView {
                members: list
                    .into_iter()
                    .map(|m| MemberView {
                        is_you: m.user_id == caller.user.user_id,
                        user_id: m.user_id.to_string(),
                        email: m.email,
                        role: m.role.as_str().to_owned(),
                        joined: m.joined_at.format("%b %-d, %Y").to_string(),
                    })
                    .collect(),
                can_manage: caller.member.role.may_manage(),
                is_owner: caller.member.role == Role::Owner,
                link_base: context.public_url.clone(),
            })
        }
        .await,
    )
}

/// What a refusal code in the address means, in words (the codes come from the routes).
fn refusal(code: &str) -> &'static str {
    match code {
        "not_allowed" => "Only the workspace's owners and admins change its members.",
        "owners_only" => "Only an owner makes someone an owner or changes an owner.",
        "last_owner" => "A workspace keeps at least one owner: make someone else an owner first.",
        "not_a_member" => "That person is not a member of this workspace.",
        "invalid_email" => "Enter an e-mail address like name@example.com.",
        "already_member" => "That person is a member already.",
        "bad_role" => "Choose owner, admin or member.",
        "unknown_invitation" => "This invitation link is not valid. Ask for a new one.",
        "expired_invitation" => "This invitation has expired. Ask for a new one.",
        "used_invitation" => "This invitation was used already.",
        "someone_elses_invitation" => {
            "This invitation is for another e-mail address. Sign in with that one to accept it."
        }
        _ => "That did not work. Try again.",
    }
}

/// An invitation token as the routes make them: 64 hex digits, nothing else shown.
fn plain_token(token: &str) -> Option<String> {
    (token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit())).then(|| token.to_owned())
}

/// The Members section of Settings.
#[component]
pub fn Members() -> impl IntoView {
    let data = Resource::new(|| (), |()| members());
    let query = use_query_map();
    let (notice, invited) = query.with_untracked(|q| {
        let notice = match (q.get("members").as_deref(), q.get("members_error")) {
            (_, Some(code)) => Some((false, refusal(&code).to_owned())),
            (Some("saved"), None) => Some((true, "Role changed.".to_owned())),
            (Some("removed"), None) => Some((true, "Removed from the workspace.".to_owned())),
            _ => None,
        };
        let invited = q
            .get("invitation")
            .as_deref()
            .and_then(plain_token)
            .map(|token| (token, q.get("invited").unwrap_or_default()));
        (notice, invited)
    });
    view! {
        <section id="members" class="mt-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm" data-testid="members">
            <h2 class="font-medium text-slate-900">"Members"</h2>
            <p class="mt-1 text-sm text-slate-600">"Members see usage, jobs and invoices. Owners and admins also change billing, add-ons, runner settings, GitHub connections and members."</p>
            {notice.map(|(good, message)| {
                let class = if good { "mt-3 rounded-md bg-emerald-50 px-3 py-2 text-sm text-emerald-800" } else { "mt-3 rounded-md bg-red-50 px-3 py-2 text-sm text-red-700" };
                view! { <p role="status" class=class data-testid="members-notice">{message}</p> }
            })}
            <Suspense fallback=|| view! { <p class="mt-3 text-sm text-slate-500">"Loading…"</p> }>
                {move || {
                    let invited = invited.clone();
                    Suspend::new(async move {
                        match data.await {
                            Ok(view) => view! { <MembersBody view invited/> }.into_any(),
                            Err(error) => view! { <ErrorNotice error/> }.into_any(),
                        }
                    })
                }}
            </Suspense>
        </section>
        // The audit log is for those who change the workspace: members do not even ask for it.
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(view) if view.can_manage => view! { <crate::audit::AuditLog/> }.into_any(),
                    _ => ().into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn MembersBody(view: MembersView, invited: Option<(String, String)>) -> impl IntoView {
    let roles: &[&str] = if view.is_owner {
        &["member", "admin", "owner"]
    } else {
        &["member", "admin"]
    };
    let can_manage = view.can_manage;
    let is_owner = view.is_owner;
    let link = invited.map(|(token, email)| {
        let url = format!("{}/join?token={token}", view.link_base);
        view! {
            <div class="mt-3 rounded-md bg-emerald-50 px-3 py-2 text-sm text-emerald-900" data-testid="invitation">
                <p>{format!("Invitation e-mailed to {email}. The link works once, for 7 days, for that e-mail address; you can also send it yourself:")}</p>
                <code class="mt-1 block select-all break-all font-mono text-xs" data-testid="invitation-link">{url}</code>
            </div>
        }
    });
    view! {
        {link}
        <table class="mt-4 w-full text-left text-sm" data-testid="member-list">
            <thead class="border-b border-slate-200 text-slate-500">
                <tr>
                    <th class="py-2 font-medium">"Person"</th>
                    <th class="py-2 font-medium">"Role"</th>
                    <th class="py-2 font-medium max-sm:hidden">"Joined"</th>
                    <th class="py-2"><span class="sr-only">"Actions"</span></th>
                </tr>
            </thead>
            <tbody>
                {view.members.into_iter().map(|member| {
                    // An owner's row is changed only by owners; one's own row only to leave.
                    let may_change = can_manage && !member.is_you && (is_owner || member.role != "owner");
                    let role_cell = if may_change {
                        let current = member.role.clone();
                        view! {
                            <form method="post" action="/settings/members/role" class="flex items-center gap-2">
                                <input type="hidden" name="user_id" value=member.user_id.clone()/>
                                <select name="role" aria-label=format!("Role of {}", member.email) class="rounded border border-slate-300 bg-white px-1 py-0.5 text-sm">
                                    {roles.iter().map(|role| view! { <option value=*role selected=*role == current>{*role}</option> }).collect_view()}
                                </select>
                                <button type="submit" class="rounded border border-slate-300 px-2 py-0.5 text-xs text-slate-700 hover:bg-slate-100">"Change"</button>
                            </form>
                        }.into_any()
                    } else {
                        view! { <span data-testid="member-role">{member.role.clone()}</span> }.into_any()
                    };
                    let action = if member.is_you {
                        Some(view! {
                            <form method="post" action="/settings/members/remove">
                                <input type="hidden" name="user_id" value=member.user_id.clone()/>
                                <button type="submit" class="text-sm text-red-700 hover:underline">"Leave workspace"</button>
                            </form>
                        }.into_any())
                    } else if may_change {
                        Some(view! {
                            <form method="post" action="/settings/members/remove">
                                <input type="hidden" name="user_id" value=member.user_id.clone()/>
                                <button type="submit" class="text-sm text-red-700 hover:underline" aria-label=format!("Remove {}", member.email)>"Remove"</button>
                            </form>
                        }.into_any())
                    } else {
                        None
                    };
                    let who = if member.is_you { format!("{} (you)", member.email) } else { member.email.clone() };
                    view! {
                        <tr class="border-b border-slate-100 last:border-0" data-testid="member">
                            <td class="py-2 break-all">{who}</td>
                            <td class="py-2">{role_cell}</td>
                            <td class="py-2 text-slate-500 max-sm:hidden">{member.joined}</td>
                            <td class="py-2 text-right">{action}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        {can_manage.then(|| view! {
            <form method="post" action="/settings/members/invite" class="mt-4 flex flex-wrap items-end gap-3" data-testid="invite">
                <label class="text-sm text-slate-700">"Invite by e-mail"
                    <input name="email" inputmode="email" autocomplete="off" placeholder="name@example.com" class="mt-1 block w-64 rounded-md border border-slate-300 px-2 py-1"/>
                </label>
                <label class="text-sm text-slate-700">"as"
                    <select name="role" class="mt-1 block rounded-md border border-slate-300 bg-white px-2 py-1">
                        {roles.iter().map(|role| view! { <option value=*role>{*role}</option> }).collect_view()}
                    </select>
                </label>
                <button type="submit" class="rounded-md bg-slate-900 px-3 py-1.5 text-sm font-medium text-white hover:bg-slate-700">"Invite"</button>
            </form>
        })}
    }
}

/// The page an invitation link opens: accept it (as the person signed in) with one button.
#[component]
pub fn JoinPage() -> impl IntoView {
    let query = use_query_map();
    let (token, error) =
        query.with_untracked(|q| (q.get("token").unwrap_or_default(), q.get("error")));
    view! {
        <leptos_meta::Title text="Join a workspace · Tenki"/>
        <h1 class="text-2xl font-semibold text-slate-900">"Join a workspace"</h1>
        {error.map(|code| view! {
            <p role="alert" class="mt-6 rounded-md bg-red-50 px-4 py-3 text-sm text-red-700" data-testid="join-refused">{refusal(&code)}</p>
        })}
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-6 shadow-sm">
            <p class="text-sm text-slate-700">"You were invited to a Tenki workspace. Accept to join it with the role you were invited with; you can switch between your workspaces at the top of every page."</p>
            <form method="post" action="/join" class="mt-4">
                <input type="hidden" name="token" value=token/>
                <button type="submit" class="rounded-md bg-indigo-600 px-4 py-2 text-sm font-medium text-white hover:bg-indigo-700">"Accept the invitation"</button>
            </form>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_token_the_routes_make_is_shown() {
        let token = "a".repeat(64);
        assert_eq!(plain_token(&token), Some(token.clone()));
        assert_eq!(plain_token("https://evil.example/"), None);
        assert_eq!(plain_token(&"g".repeat(64)), None);
        assert_eq!(plain_token(&"a".repeat(63)), None);
    }
}
