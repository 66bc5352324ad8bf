//! The Add-ons page's forms: turn an add-on on or cancel it, set the extra slots, ask sales about
//! enterprise terms. Plain routes, so they work without JavaScript: each redirects back to the
//! page with the outcome.

use axum::extract::{Form, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tenki_core::billing::addons::{self, Addon, AddonError, SlotClass};

use crate::AppState;
use crate::extract::SignedIn;

fn back(query: &str) -> Response {
    Redirect::to(&format!("/add-ons?{query}")).into_response()
}

fn refused(error: AddonError) -> Response {
    match error {
        AddonError::NotAllowed => back("error=not_allowed"),
        AddonError::NoCard => back("error=no_card"),
        AddonError::BadSlotCount => back("error=bad_slots"),
        AddonError::Database(_) => app::error::AppError::internal_error(&error).into_response(),
    }
}

/// The add-on form.
#[derive(Debug, Deserialize)]
pub struct AddonForm {
    addon: String,
    /// `on` or `cancel`.
    action: String,
}

/// `POST /add-ons/addon`.
pub async fn change_addon(
    State(state): State<AppState>,
    signed_in: Option<SignedIn>,
    Form(form): Form<AddonForm>,
) -> Response {
    let Some(SignedIn { caller, .. }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    let Some(addon) = Addon::from_key(&form.addon) else {
        return back("error=unknown_addon");
    };
    let now = chrono::Utc::now();
    let result = match form.action.as_str() {
        "on" => addons::turn_on(&state.core.db, &caller, addon, now).await,
        "cancel" => addons::cancel(&state.core.db, &caller, addon, now).await,
        _ => return back("error=unknown_action"),
    };
    match result {
        Ok(()) => back(&format!("done={}&addon={}", form.action, addon.key())),
        Err(error) => refused(error),
    }
}

/// The slots form.
#[derive(Debug, Deserialize)]
pub struct SlotsForm {
    class: String,
    slots: String,
}

/// `POST /add-ons/slots`.
pub async fn change_slots(
    State(state): State<AppState>,
    signed_in: Option<SignedIn>,
    Form(form): Form<SlotsForm>,
) -> Response {
    let Some(SignedIn { caller, .. }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    let Some(class) = SlotClass::from_key(&form.class) else {
        return back("error=unknown_class");
    };
    let Ok(slots) = form.slots.trim().parse::<i32>() else {
        return back("error=bad_slots");
    };
    match addons::set_extra_slots(&state.core.db, &caller, class, slots, chrono::Utc::now()).await {
        Ok(()) => back(&format!("done=slots&class={}", class.key())),
        Err(error) => refused(error),
    }
}

/// The enterprise inquiry form.
#[derive(Debug, Deserialize)]
pub struct InquiryForm {
    company: String,
    email: String,
    #[serde(default)]
    message: String,
}

/// `POST /enterprise/inquiry`: stored for sales (`tenki admin inquiries`).
pub async fn enterprise_inquiry(
    State(state): State<AppState>,
    signed_in: Option<SignedIn>,
    Form(form): Form<InquiryForm>,
) -> Response {
    use tenki_core::billing::enterprise::{self, EnterpriseError};
    let Some(SignedIn { caller, .. }) = signed_in else {
        return Redirect::to("/sign-in").into_response();
    };
    match enterprise::record_inquiry(
        &state.core.db,
        Some(caller.member.workspace_id),
        &form.company,
        &form.email,
        &form.message,
        chrono::Utc::now(),
    )
    .await
    {
        Ok(()) => back("done=inquiry"),
        Err(EnterpriseError::Invalid(_)) => back("error=bad_inquiry"),
        Err(error) => app::error::AppError::internal_error(&error).into_response(),
    }
}
