//! Kratos's self-service flows (sign-in, sign-up, address verification, password recovery and
//! the person's settings) as Tenki's pages show
//! them: where a browser starts one, and a started flow's form (its fields, including the
//! anti-CSRF token, its messages and where it posts) read with the browser's cookies.
//!
//! Flows are read into Tenki's own types rather than the generated `ory-kratos-client` models:
//! the generated `UiNodeAttributes` is tagged by `node_type` and also requires that field inside
//! each variant, so serde cannot read any flow Kratos sends (ory/kratos-client-rust#3; the test
//! below proves it still holds for the version we use).

use serde::Deserialize;
use serde_json::Value;

use super::kratos::{Kratos, KratosError};

/// A self-service flow Tenki renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    Login,
    Registration,
    Verification,
    /// A forgotten password: a code by e-mail, then the settings flow.
    Recovery,
    /// The signed-in person's own settings (a new password).
    Settings,
}

impl FlowKind {
    /// Kratos's name of the flow in its paths.
    pub fn path(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Registration => "registration",
            Self::Verification => "verification",
            Self::Recovery => "recovery",
            Self::Settings => "settings",
        }
    }

    /// The flow of Kratos's name, if Tenki renders it.
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "login" => Some(Self::Login),
            "registration" => Some(Self::Registration),
            "verification" => Some(Self::Verification),
            "recovery" => Some(Self::Recovery),
            "settings" => Some(Self::Settings),
            _ => None,
        }
    }
}

/// The cookie that keeps where a visitor was going (an invitation link) while Kratos's flows
/// take them from sign-in on to sign-up: Kratos keeps `return_to` per flow, and a new flow
/// starts without it. One hour; Tenki's own (`tenki_*`), so never sent on to Kratos.
pub const RETURN_COOKIE: &str = "tenki_return_to";

/// The [`RETURN_COOKIE`] for `path`: the path, encoded for a cookie, for an hour.
pub fn return_cookie(path: &str) -> String {
    let value: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
    format!("{RETURN_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600")
}

/// The path [`RETURN_COOKIE`] keeps, among a request's `Cookie` header values.
pub fn remembered_return<'a>(cookie_headers: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let value = super::cookie_value(cookie_headers, RETURN_COOKIE)?;
    form_urlencoded::parse(format!("p={value}").as_bytes())
        .next()
        .map(|(_, path)| path.into_owned())
}

/// A message Kratos shows with a flow or one of its fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FlowMessage {
    pub id: i64,
    pub text: String,
    /// `info`, `error` or `success`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// An input of a flow's form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowField {
    pub name: String,
    /// The input's type: `text`, `email`, `password`, `hidden`, `submit`…
    pub input_type: String,
    pub value: String,
    pub label: String,
    pub autocomplete: Option<String>,
    pub required: bool,
    pub messages: Vec<FlowMessage>,
}

/// A link a flow shows (after a verification: "Continue").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowLink {
    pub href: String,
    pub label: String,
}

/// A started flow, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub id: String,
    /// Where the form posts (Kratos).
    pub action: String,
    pub method: String,
    /// Verification: `choose_method`, `sent_email` or `passed_challenge`.
    pub state: String,
    pub messages: Vec<FlowMessage>,
    pub fields: Vec<FlowField>,
    pub links: Vec<FlowLink>,
}

/// What reading a flow found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowLookup {
    Found(Flow),
    /// Unknown, expired, or started in another browser: start a new one.
    StartAgain,
}

#[derive(Deserialize)]
struct RawFlow {
    id: String,
    #[serde(default)]
    state: Option<Value>,
    ui: RawUi,
}

#[derive(Deserialize)]
struct RawUi {
    action: String,
    method: String,
    #[serde(default)]
    messages: Option<Vec<FlowMessage>>,
    nodes: Vec<RawNode>,
}

#[derive(Deserialize)]
struct RawNode {
    #[serde(rename = "type")]
    kind: String,
    attributes: Value,
    #[serde(default)]
    messages: Vec<FlowMessage>,
    #[serde(default)]
    meta: Option<Value>,
}

impl Kratos {
    /// Where a browser starts a flow: Kratos sets its anti-CSRF cookie there and sends the
    /// browser back to Tenki's page with `?flow=`. `return_to` is where a finished flow goes;
    /// `aal2` asks a signed-in person for their second factor.
    pub fn start_url(&self, kind: FlowKind, return_to: &str, aal2: bool) -> String {
        let mut url = format!(
            "{}/self-service/{}/browser?return_to={}",
            self.public_url(),
            kind.path(),
            form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()
        );
        if aal2 {
            url.push_str("&aal=aal2");
        }
        url
    }

    /// The flow `id`, read with the browser's cookies (Kratos checks its anti-CSRF cookie).
    pub async fn flow(
        &self,
        kind: FlowKind,
        id: &str,
        cookie_header: &str,
    ) -> Result<FlowLookup, KratosError> {
        let configuration = self.configuration();
        let response = configuration
            .client
            .get(format!(
                "{}/self-service/{}/flows",
                configuration.base_path,
                kind.path()
            ))
            .query(&[("id", id)])
            .header(reqwest::header::COOKIE, cookie_header)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| KratosError::Request(format!("reading a {} flow: {e}", kind.path())))?;
        let status = response.status().as_u16();
        // 404: unknown; 410: expired; 403: another browser's flow (its CSRF cookie is missing).
        if matches!(status, 403 | 404 | 410) {
            return Ok(FlowLookup::StartAgain);
        }
        let body = response
            .text()
            .await
            .map_err(|e| KratosError::Request(format!("reading a {} flow: {e}", kind.path())))?;
        if status != 200 {
            return Err(KratosError::Request(format!(
                "Kratos answered {status} for a {} flow: {}",
                kind.path(),
                body.chars().take(200).collect::<String>()
            )));
        }
        let raw: RawFlow = serde_json::from_str(&body).map_err(|e| {
            KratosError::Request(format!("a {} flow Tenki cannot read: {e}", kind.path()))
        })?;
        Ok(FlowLookup::Found(render(raw)))
    }

    /// The address that signs this browser out of Kratos (and then returns to `return_to`), or
    /// `None` when it has no Kratos session.
    pub async fn logout_url(
        &self,
        cookie_header: &str,
        return_to: &str,
    ) -> Result<Option<String>, KratosError> {
        use ory_kratos_client::apis::{Error as ClientError, frontend_api};
        if cookie_header.is_empty() {
            return Ok(None);
        }
        match frontend_api::create_browser_logout_flow(
            self.configuration(),
            Some(cookie_header),
            Some(return_to),
        )
        .await
        {
            Ok(flow) => Ok(Some(flow.logout_url)),
            Err(ClientError::ResponseError(response)) if response.status.as_u16() == 401 => {
                Ok(None)
            }
            Err(other) => Err(KratosError::Request(format!("signing out: {other}"))),
        }
    }
}

fn text_of(value: Option<&Value>) -> String {
    value
        .and_then(|label| label.get("text"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn render(raw: RawFlow) -> Flow {
    let mut fields = Vec::new();
    let mut links = Vec::new();
    for node in raw.ui.nodes {
        let attributes = &node.attributes;
        let string = |name: &str| {
            attributes
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let label = text_of(node.meta.as_ref().and_then(|meta| meta.get("label")));
        match node.kind.as_str() {
            "input" => fields.push(FlowField {
                name: string("name").unwrap_or_default(),
                input_type: string("type").unwrap_or_else(|| "text".to_owned()),
                value: match attributes.get("value") {
                    Some(Value::String(value)) => value.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                },
                label,
                autocomplete: string("autocomplete"),
                required: attributes
                    .get("required")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                messages: node.messages,
            }),
            "a" => links.push(FlowLink {
                href: string("href").unwrap_or_default(),
                label: if label.is_empty() {
                    text_of(attributes.get("title"))
                } else {
                    label
                },
            }),
            // Images, scripts and text (WebAuthn, TOTP set-up) belong to flows Tenki does not
            // render.
            _ => {}
        }
    }
    Flow {
        id: raw.id,
        action: raw.ui.action,
        method: raw.ui.method,
        state: raw
            .state
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        messages: raw.ui.messages.unwrap_or_default(),
        fields,
        links,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A login flow as Kratos v1 sends it (trimmed to one field of each kind).
    const LOGIN_FLOW: &str = r#"{
      "id": "3f6ea1e5-5d7e-4f37-a8a6-9a4c3f8f0a11", "type": "browser",
      "expires_at": "2026-11-30T10:00:00Z", "issued_at": "2026-11-30T09:00:00Z",
      "request_url": "https://auth.example.com/self-service/login/browser",
      "state": "choose_method",
      "ui": {
        "action": "https://auth.example.com/self-service/login?flow=3f6ea1e5-5d7e-4f37-a8a6-9a4c3f8f0a11",
        "method": "POST",
        "nodes": [
          {"type": "input", "group": "default", "attributes": {"name": "csrf_token", "type": "hidden", "value": "tok", "required": true, "disabled": false, "node_type": "input"}, "messages": [], "meta": {}},
          {"type": "input", "group": "default", "attributes": {"name": "identifier", "type": "text", "value": "ada@example.com", "required": true, "disabled": false, "node_type": "input"}, "messages": [], "meta": {"label": {"id": 1070004, "text": "E-Mail", "type": "info"}}},
          {"type": "input", "group": "password", "attributes": {"name": "method", "type": "submit", "value": "password", "disabled": false, "node_type": "input"}, "messages": [], "meta": {"label": {"id": 1010001, "text": "Sign in", "type": "info"}}}
        ],
        "messages": [{"id": 4000006, "text": "The provided credentials are invalid, check for spelling mistakes in your password or username, email address, or phone number.", "type": "error"}]
      }
    }"#;

    #[test]
    fn a_kratos_login_flow_becomes_a_form_with_its_token_fields_and_message() {
        let raw: RawFlow = serde_json::from_str(LOGIN_FLOW).expect("Kratos's JSON");
        let flow = render(raw);
        assert_eq!(flow.method, "POST");
        assert!(
            flow.action
                .ends_with("/self-service/login?flow=3f6ea1e5-5d7e-4f37-a8a6-9a4c3f8f0a11")
        );
        let names: Vec<_> = flow
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.input_type.as_str(), f.value.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("csrf_token", "hidden", "tok"),
                ("identifier", "text", "ada@example.com"),
                ("method", "submit", "password"),
            ]
        );
        assert_eq!(flow.fields[1].label, "E-Mail");
        assert_eq!(flow.messages[0].id, 4_000_006);
        assert_eq!(flow.state, "choose_method");
    }

    #[test]
    fn the_way_to_an_invitation_survives_the_cookie() {
        let path = "/join?token=ab cd&x=1";
        let cookie = return_cookie(path);
        let value = cookie.split(';').next().expect("name=value");
        assert_eq!(remembered_return([value]).as_deref(), Some(path));
        assert_eq!(remembered_return(["other=1"]), None);
    }

    #[test]
    fn the_generated_flow_model_still_cannot_read_kratos_flows() {
        // When this fails, ory-kratos-client reads flows again: use its `get_*_flow` instead.
        let generated: Result<ory_kratos_client::models::LoginFlow, _> =
            serde_json::from_str(LOGIN_FLOW);
        assert!(generated.is_err());
    }
}
