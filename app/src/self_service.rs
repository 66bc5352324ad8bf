//! The sign-in, sign-up and address-verification pages when Ory Kratos signs people in: each
//! renders the Kratos self-service flow named by `?flow=` (its fields, anti-CSRF token and
//! messages) in the dashboard's style, posting straight to Kratos. Without a flow, the browser is
//! sent to Kratos to start one; with the built-in identity these pages show their own forms.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// A message Kratos shows with a flow or a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowMessage {
    pub id: i64,
    pub text: String,
    /// `info`, `error` or `success`.
    pub kind: String,
}

/// An input of a Kratos form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowField {
    pub name: String,
    pub input_type: String,
    pub value: String,
    pub label: String,
    pub autocomplete: Option<String>,
    pub required: bool,
    pub messages: Vec<FlowMessage>,
}

/// A Kratos flow's form, ready to render.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowForm {
    pub action: String,
    pub method: String,
    pub state: String,
    pub messages: Vec<FlowMessage>,
    pub fields: Vec<FlowField>,
    /// (address, label): "Continue" after a verification.
    pub links: Vec<(String, String)>,
}

/// What a sign-in, sign-up or verification page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentityPage {
    /// The built-in identity: the page's own form.
    BuiltIn,
    /// A Kratos flow's form.
    Kratos(FlowForm),
    /// The browser must go to Kratos to start a flow (sent there already when the page was
    /// rendered on the server).
    Start { url: String },
}

/// The flow a page shows: `kind` is Kratos's name (`login`, `registration`, `verification`),
/// `flow` the id Kratos sent the browser back with, `aal` `aal2` to ask for a second factor, and
/// `next` where to go once done (a path on this site).
#[server(prefix = "/api", endpoint = "identity-flow")]
pub async fn identity_flow(
    kind: String,
    flow: Option<String>,
    aal: Option<String>,
    next: Option<String>,
) -> Result<IdentityPage, AppError> {
    crate::server::respond(
        async move {
            use tenki_core::identity::kratos::cookies_for_kratos;
            use tenki_core::identity::self_service::{FlowKind, FlowLookup};

            let context = crate::server::context()?;
            let Some(kratos) = context.core.identity.kratos() else {
                return Ok(IdentityPage::BuiltIn);
            };
            let kind = FlowKind::from_path(&kind)
                .ok_or_else(|| AppError::refused("unknown_flow", "There is no such page."))?;
            let return_to = format!(
                "{}{}",
                context.public_url,
                crate::auth::return_path(next.as_deref())
            );
            let start = kratos.start_url(kind, &return_to, aal.as_deref() == Some("aal2"));
            let Some(id) = flow.filter(|id| !id.trim().is_empty()) else {
                return Ok(send_to(start).await);
            };
            let headers: http::HeaderMap = leptos_axum::extract().await.unwrap_or_default();
            let cookies = cookies_for_kratos(
                headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .filter_map(|value| value.to_str().ok()),
            );
            match kratos.flow(kind, id.trim(), &cookies).await {
                Ok(FlowLookup::Found(flow)) => {
                    if kind == FlowKind::Verification && flow.state == "passed_challenge" {
                        // The next page must see the address verified, not the cached answer.
                        kratos.forget(&cookies).await;
                    }
                    Ok(IdentityPage::Kratos(FlowForm::from(flow)))
                }
                Ok(FlowLookup::StartAgain) => Ok(send_to(start).await),
                Err(error) => Err(AppError::internal_error(&error)),
            }
        }
        .await,
    )
}

/// Sends the browser to `url`: a redirect when the page is being rendered on the server; in the
/// browser the page follows the answer itself (the router would treat a same-origin address,
/// as the sandbox's Kratos has, as one of its own pages).
#[cfg(feature = "ssr")]
async fn send_to(url: String) -> IdentityPage {
    if crate::server::rendering_a_page().await {
        leptos_axum::redirect(&url);
    }
    IdentityPage::Start { url }
}

#[cfg(feature = "ssr")]
impl From<tenki_core::identity::self_service::Flow> for FlowForm {
    fn from(flow: tenki_core::identity::self_service::Flow) -> Self {
        let message = |m: tenki_core::identity::self_service::FlowMessage| FlowMessage {
            id: m.id,
            text: m.text,
            kind: m.kind,
        };
        Self {
            action: flow.action,
            method: flow.method,
            state: flow.state,
            messages: flow.messages.into_iter().map(message).collect(),
            fields: flow
                .fields
                .into_iter()
                .map(|field| FlowField {
                    name: field.name,
                    input_type: field.input_type,
                    value: field.value,
                    label: field.label,
                    autocomplete: field.autocomplete,
                    required: field.required,
                    messages: field.messages.into_iter().map(message).collect(),
                })
                .collect(),
            links: flow
                .links
                .into_iter()
                .map(|link| (link.href, link.label))
                .collect(),
        }
    }
}

/// Goes to `url` with a full page load (Kratos is not one of the router's pages).
pub fn leave_for(url: &str) {
    #[cfg(feature = "hydrate")]
    {
        let _ = window().location().set_href(url);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = url;
}

/// The page's query: (`flow`, `aal`, `next`).
fn flow_query() -> (Option<String>, Option<String>, Option<String>) {
    leptos_router::hooks::use_query_map()
        .with_untracked(|q| (q.get("flow"), q.get("aal"), q.get("next")))
}

/// A page that shows the Kratos flow `kind`, or `built_in` with the built-in identity.
#[component]
pub fn IdentityFlowPage<B, V>(kind: &'static str, built_in: B) -> impl IntoView
where
    B: Fn() -> V + Send + Sync + Clone + 'static,
    V: IntoView + 'static,
{
    let (flow, aal, next) = flow_query();
    let page = Resource::new(
        || (),
        move |()| identity_flow(kind.to_owned(), flow.clone(), aal.clone(), next.clone()),
    );
    view! {
        <Suspense fallback=|| ()>
            {move || {
                let built_in = built_in.clone();
                Suspend::new(async move {
                    match page.await {
                        Ok(IdentityPage::BuiltIn) => built_in().into_any(),
                        Ok(IdentityPage::Kratos(form)) => view! { <KratosForm form/> }.into_any(),
                        Ok(IdentityPage::Start { url }) => view! { <Leaving url/> }.into_any(),
                        Err(error) => view! {
                            <p role="alert" class="rounded-md bg-red-50 px-3 py-2 text-sm text-red-700">{error.to_string()}</p>
                        }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
}

/// On the way to Kratos: followed at once in the browser, with a link in case.
#[component]
fn Leaving(url: String) -> impl IntoView {
    let target = url.clone();
    Effect::new(move |_| leave_for(&target));
    view! {
        <p class="text-sm text-slate-600">
            <a rel="external" href=url class="font-medium text-indigo-600 hover:underline">"Continue"</a>
        </p>
    }
}

/// A Kratos flow's form: its messages, its fields in order, its submit buttons; posted to Kratos
/// by the browser itself.
#[component]
pub fn KratosForm(form: FlowForm) -> impl IntoView {
    let messages = form.messages.clone();
    let (buttons, fields): (Vec<FlowField>, Vec<FlowField>) = form
        .fields
        .into_iter()
        .partition(|field| field.input_type == "submit" || field.input_type == "button");
    view! {
        <div class="space-y-4" data-testid="kratos-flow" data-state=form.state.clone()>
            <FlowMessages messages/>
            {(!fields.is_empty() || !buttons.is_empty()).then(|| view! {
                <form method=form.method.clone() action=form.action.clone() class="space-y-4">
                    {fields.into_iter().map(|field| view! { <KratosField field/> }).collect_view()}
                    {buttons.into_iter().map(|button| {
                        let primary = button.name == "method";
                        let class = if primary {
                            "w-full rounded-md bg-indigo-600 px-4 py-2 font-medium text-white hover:bg-indigo-700"
                        } else {
                            "w-full rounded-md border border-slate-300 px-4 py-2 text-sm text-slate-700 hover:bg-slate-100"
                        };
                        view! {
                            <button type="submit" name=button.name value=button.value class=class>{button.label}</button>
                        }
                    }).collect_view()}
                </form>
            })}
            {form.links.into_iter().map(|(href, label)| view! {
                <a rel="external" href=href class="block w-full rounded-md bg-indigo-600 px-4 py-2 text-center font-medium text-white hover:bg-indigo-700">{label}</a>
            }).collect_view()}
        </div>
    }
}

#[component]
fn KratosField(field: FlowField) -> impl IntoView {
    if field.input_type == "hidden" {
        return view! { <input type="hidden" name=field.name value=field.value/> }.into_any();
    }
    let autocomplete = field.autocomplete.unwrap_or_else(|| "off".to_owned());
    view! {
        <label class="block">
            <span class="block text-sm font-medium text-slate-700">{field.label}</span>
            <input
                type=field.input_type
                name=field.name
                value=field.value
                autocomplete=autocomplete
                required=field.required
                class="mt-1 block w-full rounded-md border border-slate-300 px-3 py-2 text-slate-900 focus:border-indigo-500 focus:outline-none"
            />
            <FlowMessages messages=field.messages/>
        </label>
    }
    .into_any()
}

#[component]
fn FlowMessages(messages: Vec<FlowMessage>) -> impl IntoView {
    messages
        .into_iter()
        .map(|message| {
            let class = match message.kind.as_str() {
                "error" => "mt-1 rounded-md bg-red-50 px-3 py-2 text-sm text-red-700",
                "success" => "mt-1 rounded-md bg-green-50 px-3 py-2 text-sm text-green-800",
                _ => "mt-1 rounded-md bg-slate-100 px-3 py-2 text-sm text-slate-700",
            };
            let role = if message.kind == "error" { "alert" } else { "status" };
            view! { <p role=role data-message-id=message.id.to_string() class=class>{message.text}</p> }
        })
        .collect_view()
}

/// `/verification`: Kratos's address verification (with the built-in identity, addresses are
/// confirmed by the link e-mailed at sign-up, and this page sends to the Overview).
#[component]
pub fn VerificationPage() -> impl IntoView {
    view! {
        <leptos_meta::Title text="Confirm your e-mail address · Tenki"/>
        <crate::auth::AuthCard title="Confirm your e-mail address">
            <IdentityFlowPage kind="verification" built_in=|| view! { <leptos_router::components::Redirect path="/"/> }/>
        </crate::auth::AuthCard>
    }
}
