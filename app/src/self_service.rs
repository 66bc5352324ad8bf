//! The sign-in, sign-up, address-verification, password-recovery and account pages when Ory
//! Kratos signs people in: each renders the Kratos self-service flow named by `?flow=` (its
//! fields, anti-CSRF token and messages) in the dashboard's style, posting straight to Kratos.
//! Without a flow, the browser is sent to Kratos to start one; with the built-in identity these
//! pages show their own forms or say what the built-in identity offers.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// What one of these pages shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentityPage {
    /// The built-in identity: the page's own form.
    BuiltIn,
    /// A Kratos flow's form, as HTML made on the server ([`flow_html`]): it needs no script,
    /// so the WASM bundle carries neither its types nor its views.
    Kratos { html: String },
    /// The browser must go to Kratos to start a flow (sent there already when the page was
    /// rendered on the server).
    Start { url: String },
}

/// The flow a page shows: `kind` is Kratos's name (`login`, `registration`, `verification`,
/// `recovery`, `settings`),
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
            use tenki_core::identity::self_service::{self, FlowKind, FlowLookup};

            let context = crate::server::context()?;
            let Some(kratos) = context.core.identity.kratos() else {
                return Ok(IdentityPage::BuiltIn);
            };
            let kind = FlowKind::from_path(&kind)
                .ok_or_else(|| AppError::refused("unknown_flow", "There is no such page."))?;
            let headers: http::HeaderMap = leptos_axum::extract().await.unwrap_or_default();
            let cookie_values = crate::server::cookie_values(&headers);
            // Where to go once done: the page's `next`, else where the visitor was going when a
            // flow before this one started (sign-in, then "Create an account").
            let asked = next.filter(|path| crate::auth::return_path(Some(path)) != "/");
            let going = asked
                .clone()
                .or_else(|| self_service::remembered_return(cookie_values.iter().copied()));
            let return_to = format!(
                "{}{}",
                context.public_url,
                crate::auth::return_path(going.as_deref())
            );
            let start = kratos.start_url(kind, &return_to, aal.as_deref() == Some("aal2"));
            let Some(id) = flow.filter(|id| !id.trim().is_empty()) else {
                if let Some(path) = &asked {
                    crate::server::append_cookie(&context, &self_service::return_cookie(path));
                }
                return Ok(send_to(start).await);
            };
            let cookies = cookies_for_kratos(cookie_values.iter().copied());
            match kratos.flow(kind, id.trim(), &cookies).await {
                Ok(FlowLookup::Found(flow)) => {
                    if kind == FlowKind::Verification && flow.state == "passed_challenge" {
                        // The next page must see the address verified, not the cached answer.
                        kratos.forget(&cookies).await;
                    }
                    Ok(IdentityPage::Kratos {
                        html: flow_html(&flow, kind),
                    })
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

/// A Kratos flow's form in the dashboard's style: its messages, its fields in order (the
/// anti-CSRF token among them), its submit buttons, posted by the browser straight to Kratos;
/// and its links ("Continue" after a verification); under a sign-in form, the way to a forgotten
/// password, and after saved settings, the way back. Every value is escaped.
#[cfg(feature = "ssr")]
pub fn flow_html(
    flow: &tenki_core::identity::self_service::Flow,
    kind: tenki_core::identity::self_service::FlowKind,
) -> String {
    use std::fmt::Write as _;
    use tenki_core::identity::self_service::{FlowKind, FlowMessage};

    fn messages(html: &mut String, messages: &[FlowMessage]) {
        for message in messages {
            let (role, class) = match message.kind.as_str() {
                "error" => (
                    "alert",
                    "mt-1 rounded-md bg-red-50 px-3 py-2 text-sm text-red-700",
                ),
                "success" => (
                    "status",
                    "mt-1 rounded-md bg-green-50 px-3 py-2 text-sm text-green-800",
                ),
                _ => (
                    "status",
                    "mt-1 rounded-md bg-slate-100 px-3 py-2 text-sm text-slate-700",
                ),
            };
            let _ = write!(
                html,
                r#"<p role="{role}" data-message-id="{}" class="{class}">{}</p>"#,
                message.id,
                escape(&message.text)
            );
        }
    }

    let mut html = format!(
        r#"<div class="space-y-4" data-testid="kratos-flow" data-state="{}">"#,
        escape(&flow.state)
    );
    messages(&mut html, &flow.messages);
    if !flow.fields.is_empty() {
        let _ = write!(
            html,
            r#"<form method="{}" action="{}" class="space-y-4">"#,
            escape(&flow.method),
            escape(&flow.action)
        );
        let is_button = |kind: &str| kind == "submit" || kind == "button";
        for field in flow.fields.iter().filter(|f| !is_button(&f.input_type)) {
            if field.input_type == "hidden" {
                let _ = write!(
                    html,
                    r#"<input type="hidden" name="{}" value="{}"/>"#,
                    escape(&field.name),
                    escape(&field.value)
                );
                continue;
            }
            let _ = write!(
                html,
                r#"<label class="block"><span class="block text-sm font-medium text-slate-700">{}</span><input type="{}" name="{}" value="{}" autocomplete="{}"{} class="mt-1 block w-full rounded-md border border-slate-300 px-3 py-2 text-slate-900 focus:border-indigo-500 focus:outline-none"/>"#,
                escape(&field.label),
                escape(&field.input_type),
                escape(&field.name),
                escape(&field.value),
                escape(field.autocomplete.as_deref().unwrap_or("off")),
                if field.required { " required" } else { "" },
            );
            messages(&mut html, &field.messages);
            html.push_str("</label>");
        }
        for button in flow.fields.iter().filter(|f| is_button(&f.input_type)) {
            let class = if button.name == "method" {
                "w-full rounded-md bg-indigo-600 px-4 py-2 font-medium text-white hover:bg-indigo-700"
            } else {
                "w-full rounded-md border border-slate-300 px-4 py-2 text-sm text-slate-700 hover:bg-slate-100"
            };
            let _ = write!(
                html,
                r#"<button type="submit" name="{}" value="{}" class="{class}">{}</button>"#,
                escape(&button.name),
                escape(&button.value),
                escape(&button.label)
            );
        }
        html.push_str("</form>");
    }
    for link in &flow.links {
        let _ = write!(
            html,
            r#"<a rel="external" href="{}" class="block w-full rounded-md bg-indigo-600 px-4 py-2 text-center font-medium text-white hover:bg-indigo-700">{}</a>"#,
            escape(&link.href),
            escape(&link.label)
        );
    }
    match (kind, flow.state.as_str()) {
        (FlowKind::Login, _) => html.push_str(
            r#"<p class="text-sm"><a href="/recovery" class="font-medium text-indigo-600 hover:underline">Forgot your password?</a></p>"#,
        ),
        (FlowKind::Settings, "success") => html.push_str(
            r#"<a href="/" class="block w-full rounded-md bg-indigo-600 px-4 py-2 text-center font-medium text-white hover:bg-indigo-700">Back to the Overview</a>"#,
        ),
        _ => {}
    }
    html.push_str("</div>");
    html
}

/// `text` safe inside HTML text and double-quoted attributes.
#[cfg(feature = "ssr")]
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
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

/// A page that shows the Kratos flow `kind`, or `built_in` with the built-in identity. Not
/// generic over `built_in`: one copy in the WASM bundle serves the three pages.
#[component]
pub fn IdentityFlowPage(kind: &'static str, #[prop(into)] built_in: ViewFn) -> impl IntoView {
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
                        Ok(IdentityPage::BuiltIn) => built_in.run(),
                        Ok(IdentityPage::Kratos { html }) => view! { <div inner_html=html></div> }.into_any(),
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

/// `/recovery`: a forgotten password, through Kratos's recovery flow (a code by e-mail, then a
/// new password on `/account`).
#[component]
pub fn RecoveryPage() -> impl IntoView {
    view! {
        <leptos_meta::Title text="Reset your password · Tenki"/>
        <crate::auth::AuthCard title="Reset your password">
            <IdentityFlowPage kind="recovery" built_in=|| view! {
                <p class="text-sm text-slate-700">"The built-in sign-in has no reset by e-mail: ask Tenki's support to reset your password."</p>
            }/>
        </crate::auth::AuthCard>
    }
}

/// `/account`: the signed-in person's password, through Kratos's settings flow.
#[component]
pub fn AccountPage() -> impl IntoView {
    view! {
        <leptos_meta::Title text="Your account · Tenki"/>
        <crate::auth::AuthCard title="Your account">
            <IdentityFlowPage kind="settings" built_in=|| view! {
                <p class="text-sm text-slate-700">"The built-in sign-in keeps your password; changing it is not offered yet."</p>
            }/>
        </crate::auth::AuthCard>
    }
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

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use tenki_core::identity::self_service::{Flow, FlowField, FlowMessage};

    #[test]
    fn a_kratos_form_is_escaped_and_keeps_its_token_fields_and_messages() {
        let flow = Flow {
            id: "f1".to_owned(),
            action: "https://auth.example.com/self-service/login?flow=f1&x=\"y\"".to_owned(),
            method: "POST".to_owned(),
            state: "choose_method".to_owned(),
            messages: vec![FlowMessage {
                id: 4_000_006,
                text: "<script>alert(1)</script>".to_owned(),
                kind: "error".to_owned(),
            }],
            fields: vec![
                FlowField {
                    name: "csrf_token".to_owned(),
                    input_type: "hidden".to_owned(),
                    value: "tok\"en".to_owned(),
                    label: String::new(),
                    autocomplete: None,
                    required: true,
                    messages: Vec::new(),
                },
                FlowField {
                    name: "method".to_owned(),
                    input_type: "submit".to_owned(),
                    value: "password".to_owned(),
                    label: "Sign in".to_owned(),
                    autocomplete: None,
                    required: false,
                    messages: Vec::new(),
                },
            ],
            links: Vec::new(),
        };
        let html = super::flow_html(&flow, tenki_core::identity::self_service::FlowKind::Login);
        assert!(html.contains(r#"action="https://auth.example.com/self-service/login?flow=f1&amp;x=&quot;y&quot;""#), "{html}");
        assert!(
            html.contains(r#"<input type="hidden" name="csrf_token" value="tok&quot;en"/>"#),
            "{html}"
        );
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains(r#"<button type="submit" name="method" value="password""#),
            "{html}"
        );
    }
}
