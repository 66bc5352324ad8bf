//! The Members part of Settings and switching workspaces: invite, change a role, remove or leave,
//! accept an invitation (`POST /join`), switch the workspace acted in. Plain routes, so they work
//! without JavaScript; each redirects back with the outcome. The rules live in
//! `tenki_core::workspaces::members`.

use axum::extract::{Form, State};
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tenki_core::workspaces::members::{self, MemberError};
use tenki_core::workspaces::{self, Role, WORKSPACE_COOKIE};
use uuid::Uuid;

use crate::AppState;
use crate::extract::SignedIn;

fn to_settings(query: &str) -> Response {
    Redirect::to(&format!("/settings?{query}#members")).into_response()
}

fn refused(error: &MemberError) -> Response {
    match error {
        MemberError::Database(_) => app::error::AppError::internal_error(error).into_response(),
        _ => to_settings(&format!("members_error={}", error.code())),
    }
}

/// Redirects to `path` remembering `workspace_id` as the workspace acted in (or forgetting it).
fn acting_in(state: &AppState, workspace_id: Option<Uuid>, path: &str) -> Response {
    let secure = if state.context.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = match workspace_id {
        Some(id) => format!(
            "{WORKSPACE_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000{secure}"
        ),
        None => format!("{WORKSPACE_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    ([(SET_COOKIE, cookie)], Redirect::to(path)).into_response()
}

/// The invitation form.
#[derive(Debug, Deserialize)]
pub struct InviteForm {
    email: String,
    role: String,
}

/// `POST /settings/members/invite`: back to Settings with the link to send.
pub async fn invite(
    State(state): State<AppState>,
    signed_in: Option<SignedIn>,
    Form(form): Form<InviteForm>,
) -> Response {
    let Some(SignedIn { caller, .. }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    let Some(role) = Role::parse(&form.role) else {
        return to_settings("members_error=bad_role");
    };
    match members::invite(
        &state.core.db,
        &caller,
        &form.email,
        role,
        chrono::Utc::now(),
    )
    .await
    {
        Ok(invitation) => to_settings(&format!(
            "invitation={}&invited={}",
            invitation.token,
            form_urlencoded::byte_serialize(invitation.email.as_bytes()).collect::<String>()
        )),
        Err(error) => refused(&error),
    }
}

/// The role form of one member.
#[derive(Debug, Deserialize)]
pub struct RoleForm {
    user_id: Uuid,
    role: String,
}

/// `POST /settings/members/role`.
pub async fn change_role(
    State(state): State<AppState>,
    signed_in: Option<SignedIn>,
    Form(form): Form<RoleForm>,
) -> Response {
    let Some(SignedIn { caller, .. }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    let Some(role) = Role::parse(&form.role) else {
        return to_settings("members_error=bad_role");
    };
    match members::change_role(
        &state.core.db,
        &caller,
        form.user_id,
        role,
        chrono::Utc::now(),
    )
    .await
    {
        Ok(()) => to_settings("members=saved"),
        Err(error) => refused(&error),
    }
}

/// The remove (or leave) form.
#[derive(Debug, Deserialize)]
pub struct RemoveForm {
    user_id: Uuid,
}

/// `POST /settings/members/remove`: removing oneself is leaving the workspace, after which the
/// person acts in their next one.
pub async fn remove(
    State(state): State<AppState>,
    signed_in: Option<SignedIn>,
    Form(form): Form<RemoveForm>,
) -> Response {
    let Some(SignedIn { caller, .. }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    match members::remove(&state.core.db, &caller, form.user_id, chrono::Utc::now()).await {
        Ok(()) if form.user_id == caller.user.user_id => acting_in(&state, None, "/"),
        Ok(()) => to_settings("members=removed"),
        Err(error) => refused(&error),
    }
}

/// The accept form of an invitation page.
#[derive(Debug, Deserialize)]
pub struct JoinForm {
    token: String,
}

/// `POST /join`: accepts the invitation and opens the workspace joined.
pub async fn join(
    State(state): State<AppState>,
    signed_in: Option<SignedIn>,
    Form(form): Form<JoinForm>,
) -> Response {
    let Some(SignedIn { caller, .. }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    match members::accept(
        &state.core.db,
        &caller.user,
        &form.token,
        chrono::Utc::now(),
    )
    .await
    {
        Ok(member) => acting_in(&state, Some(member.workspace_id), "/"),
        Err(MemberError::Database(error)) => {
            app::error::AppError::internal_error(&error).into_response()
        }
        Err(error) => Redirect::to(&format!(
            "/join?token={}&error={}",
            form_urlencoded::byte_serialize(form.token.as_bytes()).collect::<String>(),
            error.code()
        ))
        .into_response(),
    }
}

/// The switcher's form.
#[derive(Debug, Deserialize)]
pub struct SwitchForm {
    workspace: Uuid,
}

/// `POST /workspaces/switch`: acts in another of the person's workspaces from now on.
pub async fn switch(
    State(state): State<AppState>,
    signed_in: Option<SignedIn>,
    Form(form): Form<SwitchForm>,
) -> Response {
    let Some(SignedIn { caller, .. }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    match workspaces::membership(&state.core.db, caller.user.user_id, form.workspace).await {
        Ok(Some(member)) => acting_in(&state, Some(member.workspace_id), "/"),
        // Not theirs: nothing changes.
        Ok(None) => Redirect::to("/").into_response(),
        Err(error) => app::error::AppError::internal_error(&error).into_response(),
    }
}
