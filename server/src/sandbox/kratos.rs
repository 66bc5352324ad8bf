//! A double of Ory Kratos's public API, for `TENKI_KRATOS_PUBLIC_URL=sandbox` and the tests: the
//! browser flows Tenki renders (login, registration, verification, recovery by code, and the
//! settings flow's new password), logout, `/sessions/whoami`,
//! and of the admin API the courier's message list (where the tests read the e-mailed codes) and
//! the identity import. It speaks Kratos's JSON, so Tenki's Kratos adapter talks to it unchanged.
//!
//! Kept in memory, as Kratos keeps its own store: a restart forgets passwords and sessions. An
//! identity's id derives from its address, so registering the same address again after a restart
//! finds the same Tenki person.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tenki_core::identity::self_service::FlowKind;
use uuid::Uuid;

/// Kratos's session cookie (its default name).
pub const SESSION_COOKIE: &str = "ory_kratos_session";
/// The double's anti-CSRF cookie; the flows' `csrf_token` field must match it.
const CSRF_COOKIE: &str = "csrf_token_sandbox";
/// Kratos's default minimum password length.
const MIN_PASSWORD_CHARS: usize = 8;
/// How long a flow may be used (Kratos's default `lifespan`: one hour).
const FLOW_LIFESPAN: Duration = Duration::hours(1);
/// How long a session lasts (Kratos's default: 24 hours).
const SESSION_LIFESPAN: Duration = Duration::hours(24);
/// The one-time code every second-factor prompt of the double accepts.
pub const SECOND_FACTOR_CODE: &str = "424242";

/// The Kratos double; clones share one store.
#[derive(Clone)]
pub struct KratosDouble {
    state: Arc<Mutex<Store>>,
    /// Where the double answers (`…/sandbox/kratos`): the flows' actions point there.
    public_url: String,
    /// Where Tenki's pages are: flows are shown at `{ui_url}/sign-in?flow=…` and so on.
    ui_url: String,
}

impl std::fmt::Debug for KratosDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KratosDouble")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Store {
    identities: HashMap<String, Identity>,
    sessions: HashMap<String, Session>,
    flows: HashMap<String, Flow>,
    messages: Vec<Value>,
}

#[derive(Debug, Clone)]
struct Identity {
    id: String,
    email: String,
    password: String,
    verified_at: Option<DateTime<Utc>>,
    /// Has a second factor (TOTP): sessions need `aal2`.
    second_factor: bool,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Session {
    id: String,
    identity_id: String,
    aal2: bool,
    authenticated_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

/// Tenki's page that renders a flow of `kind`: where Kratos sends the browser with `?flow=`.
fn ui_path(kind: FlowKind) -> &'static str {
    match kind {
        FlowKind::Login => "/sign-in",
        FlowKind::Registration => "/sign-up",
        FlowKind::Verification => "/verification",
        FlowKind::Recovery => "/recovery",
        FlowKind::Settings => "/account",
    }
}

#[derive(Debug, Clone)]
struct Flow {
    id: String,
    kind: FlowKind,
    csrf: String,
    return_to: Option<String>,
    request_url: String,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    aal2: bool,
    /// What the person typed in the identifying field, shown again after a refusal.
    typed_email: String,
    messages: Vec<Value>,
    /// Per field: its messages.
    field_messages: HashMap<&'static str, Vec<Value>>,
    /// Verification and recovery: `choose_method`, `sent_email` or `passed_challenge`;
    /// settings: `show_form` or `success`.
    state: &'static str,
    /// Verification and recovery: the code sent.
    code: Option<String>,
    /// Settings: whose settings.
    identity_id: Option<String>,
}

impl KratosDouble {
    /// A double answering at `public_url` whose flows are shown by Tenki at `ui_url`. It knows
    /// the sandbox's demo account (verified), so `make run`'s demo signs in through it too: Tenki
    /// takes the built-in demo account over on its first sign-in.
    pub fn new(public_url: &str, ui_url: &str) -> Self {
        let double = Self {
            state: Arc::default(),
            public_url: public_url.trim_end_matches('/').to_owned(),
            ui_url: ui_url.trim_end_matches('/').to_owned(),
        };
        double.add_identity(crate::admin::DEMO_EMAIL, crate::admin::DEMO_PASSWORD, true);
        double
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The double's routes, to be nested under [`crate::settings::SANDBOX_KRATOS_PATH`].
    pub fn router(&self) -> Router {
        Router::new()
            .route("/sessions/whoami", get(whoami))
            .route("/self-service/login/browser", get(start_login))
            .route("/self-service/login/flows", get(get_flow))
            .route("/self-service/login", axum::routing::post(submit_login))
            .route(
                "/self-service/registration/browser",
                get(start_registration),
            )
            .route("/self-service/registration/flows", get(get_flow))
            .route(
                "/self-service/registration",
                axum::routing::post(submit_registration),
            )
            .route(
                "/self-service/verification/browser",
                get(start_verification),
            )
            .route("/self-service/verification/flows", get(get_flow))
            .route(
                "/self-service/verification",
                get(verify_by_link).post(submit_verification),
            )
            .route("/self-service/recovery/browser", get(start_recovery))
            .route("/self-service/recovery/flows", get(get_flow))
            .route(
                "/self-service/recovery",
                axum::routing::post(submit_recovery),
            )
            .route("/self-service/settings/browser", get(start_settings))
            .route("/self-service/settings/flows", get(get_flow))
            .route(
                "/self-service/settings",
                axum::routing::post(submit_settings),
            )
            .route("/self-service/logout/browser", get(create_logout))
            .route("/self-service/logout", get(logout))
            .route("/admin/courier/messages", get(courier_messages))
            .route("/admin/identities", axum::routing::post(import_identity))
            .with_state(self.clone())
    }

    /// Tests: creates an identity with a password, its address verified or not.
    pub fn add_identity(&self, email: &str, password: &str, verified: bool) -> String {
        let now = Utc::now();
        let identity = Identity {
            id: identity_id(email),
            email: email.trim().to_owned(),
            password: password.to_owned(),
            verified_at: verified.then_some(now),
            second_factor: false,
            created_at: now,
        };
        let id = identity.id.clone();
        self.store().identities.insert(id.clone(), identity);
        id
    }

    /// Tests: a session cookie value for the identity of `email`, as a password sign-in
    /// (`aal1`) gives it, lasting `lifespan`.
    pub fn sign_in(&self, email: &str, lifespan: Duration) -> String {
        let now = Utc::now();
        let session = Session {
            id: Uuid::new_v4().to_string(),
            identity_id: identity_id(email),
            aal2: false,
            authenticated_at: now,
            expires_at: now + lifespan,
        };
        let token = random_token();
        self.store().sessions.insert(token.clone(), session);
        token
    }

    /// Tests: the identity of `email` gets a second factor, so its `aal1` sessions must step up.
    pub fn require_second_factor(&self, email: &str) {
        if let Some(identity) = self.store().identities.get_mut(&identity_id(email)) {
            identity.second_factor = true;
        }
    }

    /// A new flow; its anti-CSRF token is the browser's (one per browser, as Kratos's cookie).
    fn new_flow(
        &self,
        kind: FlowKind,
        return_to: Option<String>,
        aal2: bool,
        query: &str,
        csrf_from_browser: Option<String>,
    ) -> Flow {
        let now = Utc::now();
        let flow = Flow {
            id: Uuid::new_v4().to_string(),
            kind,
            csrf: csrf_from_browser.unwrap_or_else(random_token),
            return_to,
            request_url: format!(
                "{}/self-service/{}/browser{query}",
                self.public_url,
                kind.path()
            ),
            issued_at: now,
            expires_at: now + FLOW_LIFESPAN,
            aal2,
            typed_email: String::new(),
            messages: Vec::new(),
            field_messages: HashMap::new(),
            state: "choose_method",
            code: None,
            identity_id: None,
        };
        self.store().flows.insert(flow.id.clone(), flow.clone());
        flow
    }

    /// Sends the browser to start a new flow of `kind`.
    fn start_again(&self, kind: FlowKind) -> Response {
        see_other(&format!(
            "{}/self-service/{}/browser",
            self.public_url,
            kind.path()
        ))
    }

    /// The browser's answer to a new flow: its anti-CSRF cookie, and on to Tenki's page.
    fn show(&self, flow: &Flow, csrf_from_browser: Option<String>) -> Response {
        let location = format!("{}{}?flow={}", self.ui_url, ui_path(flow.kind), flow.id);
        let mut response = see_other(&location);
        if csrf_from_browser.as_deref() != Some(flow.csrf.as_str()) {
            set_cookie(
                &mut response,
                &format!(
                    "{CSRF_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
                    flow.csrf
                ),
            );
        }
        response
    }

    /// Where a finished flow sends the browser: its `return_to` when on Tenki, else Tenki's
    /// Overview.
    fn return_to(&self, flow: &Flow) -> String {
        flow.return_to
            .clone()
            .filter(|to| to.starts_with(&self.ui_url))
            .unwrap_or_else(|| format!("{}/", self.ui_url))
    }

    fn flow_json(&self, flow: &Flow) -> Value {
        let csrf = input("csrf_token", "hidden", &flow.csrf, None, "default");
        let messages_of =
            |name: &'static str| flow.field_messages.get(name).cloned().unwrap_or_default();
        let with_messages = |mut node: Value, name: &'static str| {
            node["messages"] = Value::Array(messages_of(name));
            node
        };
        let nodes = match (flow.kind, flow.state) {
            (FlowKind::Login, _) if flow.aal2 => vec![
                csrf,
                with_messages(
                    input(
                        "totp_code",
                        "text",
                        "",
                        Some(text(1_070_006, "Verify code", "info")),
                        "totp",
                    ),
                    "totp_code",
                ),
                input(
                    "method",
                    "submit",
                    "totp",
                    Some(text(1_010_009, "Use Authenticator", "info")),
                    "totp",
                ),
            ],
            (FlowKind::Login, _) => vec![
                csrf,
                with_messages(
                    input(
                        "identifier",
                        "text",
                        &flow.typed_email,
                        Some(text(1_070_004, "E-Mail", "info")),
                        "default",
                    ),
                    "identifier",
                ),
                with_messages(
                    input(
                        "password",
                        "password",
                        "",
                        Some(text(1_070_001, "Password", "info")),
                        "password",
                    ),
                    "password",
                ),
                input(
                    "method",
                    "submit",
                    "password",
                    Some(text(1_010_001, "Sign in", "info")),
                    "password",
                ),
            ],
            (FlowKind::Registration, _) => vec![
                csrf,
                with_messages(
                    input(
                        "traits.email",
                        "email",
                        &flow.typed_email,
                        Some(text(1_070_002, "E-Mail", "info")),
                        "default",
                    ),
                    "traits.email",
                ),
                with_messages(new_password(), "password"),
                input(
                    "method",
                    "submit",
                    "password",
                    Some(text(1_040_001, "Sign up", "info")),
                    "password",
                ),
            ],
            (FlowKind::Verification, "sent_email") => vec![
                csrf,
                with_messages(
                    input(
                        "code",
                        "text",
                        "",
                        Some(text(1_070_011, "Verification code", "info")),
                        "code",
                    ),
                    "code",
                ),
                input("method", "hidden", "code", None, "code"),
                input(
                    "method",
                    "submit",
                    "code",
                    Some(text(1_070_005, "Submit", "info")),
                    "code",
                ),
                input(
                    "email",
                    "submit",
                    &flow.typed_email,
                    Some(text(1_070_008, "Resend code", "info")),
                    "code",
                ),
            ],
            (FlowKind::Verification, "passed_challenge") => vec![json!({
                "type": "a",
                "group": "code",
                "attributes": {
                    "href": self.return_to(flow),
                    "title": text(1_070_009, "Continue", "info"),
                    "id": "continue",
                    "node_type": "a",
                },
                "messages": [],
                "meta": {"label": text(1_070_009, "Continue", "info")},
            })],
            (FlowKind::Recovery, "sent_email") => vec![
                csrf,
                with_messages(
                    input(
                        "code",
                        "text",
                        "",
                        Some(text(1_070_011, "Recovery code", "info")),
                        "code",
                    ),
                    "code",
                ),
                input("method", "hidden", "code", None, "code"),
                input(
                    "method",
                    "submit",
                    "code",
                    Some(text(1_070_009, "Continue", "info")),
                    "code",
                ),
            ],
            (FlowKind::Settings, _) => vec![
                csrf,
                with_messages(new_password(), "password"),
                input(
                    "method",
                    "submit",
                    "password",
                    Some(text(1_050_003, "Save", "info")),
                    "password",
                ),
            ],
            (FlowKind::Verification | FlowKind::Recovery, _) => vec![
                csrf,
                with_messages(
                    input(
                        "email",
                        "email",
                        &flow.typed_email,
                        Some(text(1_070_007, "Email", "info")),
                        "code",
                    ),
                    "email",
                ),
                input(
                    "method",
                    "submit",
                    "code",
                    Some(text(1_070_005, "Submit", "info")),
                    "code",
                ),
            ],
        };
        let mut body = json!({
            "id": flow.id,
            "type": "browser",
            "expires_at": flow.expires_at,
            "issued_at": flow.issued_at,
            "request_url": flow.request_url,
            "return_to": flow.return_to,
            "state": flow.state,
            "ui": {
                "action": format!("{}/self-service/{}?flow={}", self.public_url, flow.kind.path(), flow.id),
                "method": "POST",
                "nodes": nodes,
                "messages": flow.messages,
            },
        });
        if flow.kind == FlowKind::Login {
            body["requested_aal"] = json!(if flow.aal2 { "aal2" } else { "aal1" });
            body["refresh"] = json!(false);
        }
        body
    }

    fn session_json(&self, session: &Session, identity: &Identity) -> Value {
        let identity = self.identity_json(identity);
        let aal = if session.aal2 { "aal2" } else { "aal1" };
        let mut methods = vec![
            json!({"method": "password", "aal": "aal1", "completed_at": session.authenticated_at}),
        ];
        if session.aal2 {
            methods.push(
                json!({"method": "totp", "aal": "aal2", "completed_at": session.authenticated_at}),
            );
        }
        json!({
            "id": session.id,
            "active": true,
            "expires_at": session.expires_at,
            "authenticated_at": session.authenticated_at,
            "issued_at": session.authenticated_at,
            "authenticator_assurance_level": aal,
            "authentication_methods": methods,
            "identity": identity,
            "devices": [],
        })
    }

    fn identity_json(&self, identity: &Identity) -> Value {
        let address_id = Uuid::new_v5(&Uuid::NAMESPACE_OID, identity.id.as_bytes());
        json!({
            "id": identity.id,
            "schema_id": "default",
            "schema_url": format!("{}/schemas/ZGVmYXVsdA", self.public_url),
            "state": "active",
            "traits": {"email": identity.email},
            "verifiable_addresses": [{
                "id": address_id,
                "value": identity.email.to_lowercase(),
                "verified": identity.verified_at.is_some(),
                "verified_at": identity.verified_at,
                "via": "email",
                "status": if identity.verified_at.is_some() { "completed" } else { "sent" },
                "created_at": identity.created_at,
                "updated_at": identity.verified_at.unwrap_or(identity.created_at),
            }],
            "recovery_addresses": [{
                "id": address_id,
                "value": identity.email.to_lowercase(),
                "via": "email",
                "created_at": identity.created_at,
                "updated_at": identity.created_at,
            }],
            "metadata_public": null,
            "created_at": identity.created_at,
            "updated_at": identity.created_at,
        })
    }

    /// Sends the verification code of `flow` to `email` through the courier.
    fn send_code(&self, store: &mut Store, flow_id: &str, email: &str) -> String {
        let code = format!("{:06}", rand::random::<u32>() % 1_000_000);
        let link = format!(
            "{}/self-service/verification?code={code}&flow={flow_id}",
            self.public_url
        );
        send_mail(
            store,
            email,
            "verification_code_valid",
            "Please verify your email address",
            &format!(
                "Hi, please verify your account by entering the following code:\n\n{code}\n\nor clicking the following link:\n\n{link}\n"
            ),
        );
        code
    }

    /// Sends a recovery code to `email` through the courier.
    fn send_recovery_code(&self, store: &mut Store, email: &str) -> String {
        let code = format!("{:06}", rand::random::<u32>() % 1_000_000);
        send_mail(
            store,
            email,
            "recovery_code_valid",
            "Recover access to your account",
            &format!(
                "Hi,\n\nplease recover access to your account by entering the following code:\n\n{code}\n"
            ),
        );
        code
    }
}

/// Adds a message to the courier's list, as Kratos's courier records what it sent.
fn send_mail(store: &mut Store, email: &str, template: &str, subject: &str, body: &str) {
    let now = Utc::now();
    store.messages.push(json!({
        "id": Uuid::new_v4(),
        "type": "email",
        "status": "sent",
        "template_type": template,
        "recipient": email,
        "subject": subject,
        "body": body,
        "send_count": 1,
        "created_at": now,
        "updated_at": now,
        "dispatches": [],
    }));
}

/// An identity's id: derived from its address (see the module's note on restarts).
fn identity_id(email: &str) -> String {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, email.trim().to_lowercase().as_bytes()).to_string()
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn text(id: i64, text: &str, kind: &str) -> Value {
    json!({"id": id, "text": text, "type": kind})
}

fn input(name: &str, kind: &str, value: &str, label: Option<Value>, group: &str) -> Value {
    let mut attributes = json!({
        "name": name,
        "type": kind,
        "required": kind != "submit" && kind != "hidden",
        "disabled": false,
        "node_type": "input",
    });
    if !value.is_empty() || kind == "hidden" || kind == "submit" {
        attributes["value"] = json!(value);
    }
    match (name, kind) {
        ("password", _) => attributes["autocomplete"] = json!("current-password"),
        ("identifier" | "traits.email" | "email", "text" | "email") => {
            attributes["autocomplete"] = json!("email");
        }
        ("code" | "totp_code", _) => attributes["autocomplete"] = json!("one-time-code"),
        _ => {}
    }
    let meta = match label {
        Some(label) => json!({"label": label}),
        None => json!({}),
    };
    json!({"type": "input", "group": group, "attributes": attributes, "messages": [], "meta": meta})
}

/// Kratos's message for a new password under its minimum length, if it is.
fn too_short(password: &str) -> Option<Value> {
    let chars = password.chars().count();
    (chars < MIN_PASSWORD_CHARS).then(|| {
        text(
            4_000_003,
            &format!("length must be >= {MIN_PASSWORD_CHARS}, but got {chars}"),
            "error",
        )
    })
}

/// The password field of a registration or a settings flow.
fn new_password() -> Value {
    let mut node = input(
        "password",
        "password",
        "",
        Some(text(1_070_001, "Password", "info")),
        "password",
    );
    node["attributes"]["autocomplete"] = json!("new-password");
    node
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    tenki_core::identity::cookie_value(
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        name,
    )
}

/// Kratos's error body.
fn error(status: StatusCode, id: &str, reason: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {
            "id": id,
            "code": status.as_u16(),
            "status": status.canonical_reason().unwrap_or_default(),
            "reason": reason,
            "message": message,
        }})),
    )
        .into_response()
}

/// Kratos's 401 for a request without an active session.
fn no_session() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "session_inactive",
        "No active session was found in this request.",
        "request does not have a valid authentication session",
    )
}

/// The active session of the browser's cookie, with its identity.
fn active_session(store: &Store, headers: &HeaderMap) -> Option<(Session, Identity)> {
    let token = cookie(headers, SESSION_COOKIE)?;
    let session = store.sessions.get(&token)?;
    if session.expires_at <= Utc::now() {
        return None;
    }
    let identity = store.identities.get(&session.identity_id)?;
    Some((session.clone(), identity.clone()))
}

async fn whoami(State(double): State<KratosDouble>, headers: HeaderMap) -> Response {
    let store = double.store();
    match active_session(&store, &headers) {
        None => no_session(),
        Some((session, identity)) if identity.second_factor && !session.aal2 => {
            let mut response = error(
                StatusCode::FORBIDDEN,
                "session_aal2_required",
                "An active session was found but it does not fulfill the Authenticator Assurance Level, implying that the session must first be upgraded to AAL2.",
                "Session does not fulfill the Authenticator Assurance Level",
            );
            *response.body_mut() = axum::body::Body::from(
                json!({
                    "error": {"id": "session_aal2_required", "code": 403, "status": "Forbidden",
                              "message": "Session does not fulfill the Authenticator Assurance Level"},
                    "redirect_browser_to": format!("{}/self-service/login/browser?aal=aal2", double.public_url),
                })
                .to_string(),
            );
            response
        }
        Some((session, identity)) => Json(double.session_json(&session, &identity)).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct StartQuery {
    return_to: Option<String>,
    aal: Option<String>,
}

async fn start_login(
    State(double): State<KratosDouble>,
    headers: HeaderMap,
    Query(query): Query<StartQuery>,
) -> Response {
    let aal2 = query.aal.as_deref() == Some("aal2");
    let signed_in = active_session(&double.store(), &headers);
    if let Some((session, identity)) = &signed_in
        && (!aal2 || session.aal2 || !identity.second_factor)
    {
        // Kratos sends a signed-in browser straight on.
        let to = query
            .return_to
            .clone()
            .filter(|to| to.starts_with(&double.ui_url))
            .unwrap_or_else(|| format!("{}/", double.ui_url));
        return see_other(&to);
    }
    if aal2 && signed_in.is_none() {
        return error(
            StatusCode::UNAUTHORIZED,
            "session_inactive",
            "A second factor needs a signed-in session first.",
            "No active session was found in this request.",
        );
    }
    let suffix = if aal2 { "?aal=aal2" } else { "" };
    let flow = double.new_flow(
        FlowKind::Login,
        query.return_to,
        aal2,
        suffix,
        cookie(&headers, CSRF_COOKIE),
    );
    double.show(&flow, cookie(&headers, CSRF_COOKIE))
}

async fn start_registration(
    State(double): State<KratosDouble>,
    headers: HeaderMap,
    Query(query): Query<StartQuery>,
) -> Response {
    if active_session(&double.store(), &headers).is_some() {
        return see_other(&format!("{}/", double.ui_url));
    }
    let flow = double.new_flow(
        FlowKind::Registration,
        query.return_to,
        false,
        "",
        cookie(&headers, CSRF_COOKIE),
    );
    double.show(&flow, cookie(&headers, CSRF_COOKIE))
}

async fn start_verification(
    State(double): State<KratosDouble>,
    headers: HeaderMap,
    Query(query): Query<StartQuery>,
) -> Response {
    let mut flow = double.new_flow(
        FlowKind::Verification,
        query.return_to,
        false,
        "",
        cookie(&headers, CSRF_COOKIE),
    );
    // Kratos fills in the signed-in person's address.
    let signed_in = active_session(&double.store(), &headers);
    if let Some((_, identity)) = signed_in {
        flow.typed_email = identity.email;
        double.store().flows.insert(flow.id.clone(), flow.clone());
    }
    double.show(&flow, cookie(&headers, CSRF_COOKIE))
}

#[derive(Debug, Deserialize)]
struct FlowQuery {
    id: Option<String>,
    flow: Option<String>,
    code: Option<String>,
}

/// `GET /self-service/{kind}/flows?id=`: the flow, to the browser that started it only.
async fn get_flow(
    State(double): State<KratosDouble>,
    headers: HeaderMap,
    Query(query): Query<FlowQuery>,
) -> Response {
    let store = double.store();
    let Some(flow) = query.id.as_deref().and_then(|id| store.flows.get(id)) else {
        return error(
            StatusCode::NOT_FOUND,
            "",
            "The requested resource could not be found",
            "Unable to locate the resource",
        );
    };
    if flow.expires_at <= Utc::now() {
        return error(
            StatusCode::GONE,
            "self_service_flow_expired",
            "The self-service flow expired, please start a new one.",
            "self-service flow expired",
        );
    }
    if cookie(&headers, CSRF_COOKIE).as_deref() != Some(flow.csrf.as_str()) {
        return error(
            StatusCode::FORBIDDEN,
            "security_csrf_violation",
            "Please retry the flow and optionally clear your cookies. The request was rejected to protect you from Cross-Site-Request-Forgery (CSRF) which could cause account takeover, leaking personal information, and other serious security issues.",
            "the request was rejected to protect you from Cross-Site-Request-Forgery",
        );
    }
    Json(double.flow_json(flow)).into_response()
}

/// The flow a form posts to, checked as Kratos does: known, not expired, the form's anti-CSRF
/// token matching the browser's cookie. `Err` is the answer to give instead.
fn posted_flow(
    double: &KratosDouble,
    headers: &HeaderMap,
    query: &FlowQuery,
    csrf_token: Option<&str>,
    kind: FlowKind,
) -> Result<Flow, Box<Response>> {
    let store = double.store();
    let flow = query
        .flow
        .as_deref()
        .and_then(|id| store.flows.get(id))
        .filter(|flow| flow.kind == kind && flow.expires_at > Utc::now())
        .cloned();
    // Unknown or expired: Kratos answers a browser with a new flow.
    let Some(mut flow) = flow else {
        return Err(Box::new(double.start_again(kind)));
    };
    let cookie_csrf = cookie(headers, CSRF_COOKIE);
    if csrf_token != Some(flow.csrf.as_str()) || cookie_csrf.as_deref() != Some(flow.csrf.as_str())
    {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "security_csrf_violation",
            "The anti-CSRF token of the form does not match the browser's cookie.",
            "the request was rejected to protect you from Cross-Site-Request-Forgery",
        )));
    }
    // Shown again, the form carries only this attempt's messages.
    flow.messages.clear();
    flow.field_messages.clear();
    Ok(flow)
}

/// Shows the flow again with its messages.
fn again(double: &KratosDouble, flow: Flow) -> Response {
    let location = format!("{}{}?flow={}", double.ui_url, ui_path(flow.kind), flow.id);
    double.store().flows.insert(flow.id.clone(), flow);
    see_other(&location)
}

/// Signs the browser in: a new session cookie, and on to where the flow returns.
fn signed_in(store: &mut Store, identity_id: &str, aal2: bool, to: &str) -> Response {
    let now = Utc::now();
    let token = random_token();
    store.sessions.insert(
        token.clone(),
        Session {
            id: Uuid::new_v4().to_string(),
            identity_id: identity_id.to_owned(),
            aal2,
            authenticated_at: now,
            expires_at: now + SESSION_LIFESPAN,
        },
    );
    let mut response = see_other(to);
    set_cookie(
        &mut response,
        &format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
            SESSION_LIFESPAN.num_seconds()
        ),
    );
    response
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    csrf_token: Option<String>,
    identifier: Option<String>,
    password: Option<String>,
    totp_code: Option<String>,
}

async fn submit_login(
    State(double): State<KratosDouble>,
    headers: HeaderMap,
    Query(query): Query<FlowQuery>,
    Form(form): Form<LoginForm>,
) -> Response {
    let mut flow = match posted_flow(
        &double,
        &headers,
        &query,
        form.csrf_token.as_deref(),
        FlowKind::Login,
    ) {
        Ok(flow) => flow,
        Err(answer) => return *answer,
    };
    let to = double.return_to(&flow);
    if flow.aal2 {
        let mut store = double.store();
        if active_session(&store, &headers).is_none() {
            drop(store);
            return double.start_again(FlowKind::Login);
        }
        if form.totp_code.as_deref().map(str::trim) == Some(SECOND_FACTOR_CODE) {
            if let Some(token) = cookie(&headers, SESSION_COOKIE)
                && let Some(stored) = store.sessions.get_mut(&token)
            {
                stored.aal2 = true;
            }
            return see_other(&to);
        }
        drop(store);
        flow.field_messages.insert(
            "totp_code",
            vec![text(
                4_000_008,
                "The provided authentication code is invalid, please try again.",
                "error",
            )],
        );
        return again(&double, flow);
    }
    let email = form.identifier.unwrap_or_default();
    flow.typed_email = email.trim().to_owned();
    let mut store = double.store();
    let matches = store
        .identities
        .get(&identity_id(&email))
        .filter(|identity| Some(identity.password.as_str()) == form.password.as_deref())
        .cloned();
    match matches {
        Some(identity) => signed_in(&mut store, &identity.id, false, &to),
        None => {
            drop(store);
            flow.messages.push(text(
                4_000_006,
                "The provided credentials are invalid, check for spelling mistakes in your password or username, email address, or phone number.",
                "error",
            ));
            again(&double, flow)
        }
    }
}

#[derive(Debug, Deserialize)]
struct RegistrationForm {
    csrf_token: Option<String>,
    #[serde(rename = "traits.email")]
    email: Option<String>,
    password: Option<String>,
}

async fn submit_registration(
    State(double): State<KratosDouble>,
    headers: HeaderMap,
    Query(query): Query<FlowQuery>,
    Form(form): Form<RegistrationForm>,
) -> Response {
    let mut flow = match posted_flow(
        &double,
        &headers,
        &query,
        form.csrf_token.as_deref(),
        FlowKind::Registration,
    ) {
        Ok(flow) => flow,
        Err(answer) => return *answer,
    };
    let email = form.email.unwrap_or_default().trim().to_owned();
    let password = form.password.unwrap_or_default();
    flow.typed_email = email.clone();
    let well_formed = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !well_formed {
        flow.field_messages.insert(
            "traits.email",
            vec![text(
                4_000_001,
                &format!("\"{email}\" is not valid \"email\""),
                "error",
            )],
        );
    }
    if let Some(refusal) = too_short(&password) {
        flow.field_messages.insert("password", vec![refusal]);
    }
    let id = identity_id(&email);
    let mut store = double.store();
    if well_formed && store.identities.contains_key(&id) {
        flow.messages.push(text(
            4_000_007,
            "An account with the same identifier (email, phone, username, ...) exists already.",
            "error",
        ));
    }
    if !flow.messages.is_empty() || !flow.field_messages.is_empty() {
        drop(store);
        return again(&double, flow);
    }
    let now = Utc::now();
    store.identities.insert(
        id.clone(),
        Identity {
            id: id.clone(),
            email: email.clone(),
            password,
            verified_at: None,
            second_factor: false,
            created_at: now,
        },
    );
    // Kratos's verification hook: a verification flow and its code, e-mailed at once.
    let to = double.return_to(&flow);
    drop(store);
    let mut verification = double.new_flow(
        FlowKind::Verification,
        Some(to.clone()),
        false,
        "",
        Some(flow.csrf.clone()),
    );
    verification.typed_email = email.clone();
    verification.state = "sent_email";
    let mut store = double.store();
    let code = double.send_code(&mut store, &verification.id, &email);
    verification.code = Some(code);
    store.flows.insert(verification.id.clone(), verification);
    signed_in(&mut store, &id, false, &to)
}

#[derive(Debug, Deserialize)]
struct VerificationForm {
    csrf_token: Option<String>,
    email: Option<String>,
    code: Option<String>,
}

async fn submit_verification(
    State(double): State<KratosDouble>,
    headers: HeaderMap,
    Query(query): Query<FlowQuery>,
    Form(form): Form<VerificationForm>,
) -> Response {
    let mut flow = match posted_flow(
        &double,
        &headers,
        &query,
        form.csrf_token.as_deref(),
        FlowKind::Verification,
    ) {
        Ok(flow) => flow,
        Err(answer) => return *answer,
    };
    match form.code.filter(|code| !code.trim().is_empty()) {
        Some(code) => {
            verify_code(&double, &mut flow, &code);
            again(&double, flow)
        }
        None => {
            let flow_id = flow.id.clone();
            email_step(&double, &mut flow, form.email, |store, email| {
                double.send_code(store, &flow_id, email)
            });
            flow.messages.push(text(
                1_080_003,
                "An email containing a verification code has been sent to the email address you provided. If you have not received an email, check the spelling of the address and make sure to use the address you registered with.",
                "info",
            ));
            again(&double, flow)
        }
    }
}

/// The e-mail step of verification and recovery: keeps the address typed and, when Kratos knows
/// it, the code `send` e-mailed to it. Kratos says the same either way.
fn email_step(
    double: &KratosDouble,
    flow: &mut Flow,
    email: Option<String>,
    send: impl FnOnce(&mut Store, &str) -> String,
) {
    let email = email.unwrap_or_default().trim().to_owned();
    flow.state = "sent_email";
    let mut store = double.store();
    if store.identities.contains_key(&identity_id(&email)) {
        flow.code = Some(send(&mut store, &email));
    }
    flow.typed_email = email;
}

/// Whether `code` is the one the flow e-mailed; if not, the code field shows Kratos's message
/// `id` with `refusal`.
fn code_accepted(flow: &mut Flow, code: &str, id: i64, refusal: &str) -> bool {
    if flow.code.as_deref() == Some(code.trim()) {
        return true;
    }
    flow.field_messages
        .insert("code", vec![text(id, refusal, "error")]);
    false
}

/// Checks `code` against the flow's and verifies the address it was sent to.
fn verify_code(double: &KratosDouble, flow: &mut Flow, code: &str) {
    if !code_accepted(
        flow,
        code,
        4_070_006,
        "The verification code is invalid or has already been used. Please try again.",
    ) {
        return;
    }
    let mut store = double.store();
    if let Some(identity) = store.identities.get_mut(&identity_id(&flow.typed_email)) {
        identity.verified_at.get_or_insert_with(Utc::now);
    }
    flow.code = None;
    flow.state = "passed_challenge";
    flow.messages = vec![text(
        1_080_002,
        "You successfully verified your email address.",
        "success",
    )];
}

/// The link in the verification e-mail: verifies, and shows the flow's outcome on Tenki's page.
async fn verify_by_link(
    State(double): State<KratosDouble>,
    Query(query): Query<FlowQuery>,
) -> Response {
    let flow = query
        .flow
        .as_deref()
        .and_then(|id| double.store().flows.get(id).cloned())
        .filter(|flow| flow.kind == FlowKind::Verification);
    let Some(mut flow) = flow else {
        return see_other(&format!(
            "{}/self-service/verification/browser",
            double.public_url
        ));
    };
    flow.messages.clear();
    flow.field_messages.clear();
    if flow.expires_at <= Utc::now() {
        flow.messages.push(text(
            4_070_005,
            "The verification flow expired, please request a new code.",
            "error",
        ));
    } else {
        verify_code(
            &double,
            &mut flow,
            query.code.as_deref().unwrap_or_default(),
        );
    }
    // The link may be opened in another browser: Kratos shows the outcome with a fresh cookie.
    let csrf = flow.csrf.clone();
    let mut response = again(&double, flow);
    set_cookie(
        &mut response,
        &format!("{CSRF_COOKIE}={csrf}; Path=/; HttpOnly; SameSite=Lax"),
    );
    response
}

async fn start_recovery(
    State(double): State<KratosDouble>,
    headers: HeaderMap,
    Query(query): Query<StartQuery>,
) -> Response {
    let flow = double.new_flow(
        FlowKind::Recovery,
        query.return_to,
        false,
        "",
        cookie(&headers, CSRF_COOKIE),
    );
    double.show(&flow, cookie(&headers, CSRF_COOKIE))
}

#[derive(Debug, Deserialize)]
struct RecoveryForm {
    csrf_token: Option<String>,
    email: Option<String>,
    code: Option<String>,
}

/// Recovery by code: the address gets a code; the right code signs the browser in with a fresh
/// session and sends it to the settings flow, where the person chooses a new password.
async fn submit_recovery(
    State(double): State<KratosDouble>,
    headers: HeaderMap,
    Query(query): Query<FlowQuery>,
    Form(form): Form<RecoveryForm>,
) -> Response {
    let mut flow = match posted_flow(
        &double,
        &headers,
        &query,
        form.csrf_token.as_deref(),
        FlowKind::Recovery,
    ) {
        Ok(flow) => flow,
        Err(answer) => return *answer,
    };
    if let Some(code) = form.code.filter(|code| !code.trim().is_empty()) {
        if !code_accepted(
            &mut flow,
            &code,
            4_060_006,
            "The recovery code is invalid or has already been used. Please try again.",
        ) {
            return again(&double, flow);
        }
        let id = identity_id(&flow.typed_email);
        flow.code = None;
        flow.state = "passed_challenge";
        let mut settings = double.new_flow(
            FlowKind::Settings,
            flow.return_to.clone(),
            false,
            "",
            Some(flow.csrf.clone()),
        );
        settings.identity_id = Some(id.clone());
        settings.state = "show_form";
        settings.messages.push(text(
            1_060_001,
            "You successfully recovered your account. Please change your password or set up an alternative login method (e.g. social sign in) within the next 15.00 minutes.",
            "success",
        ));
        let location = format!(
            "{}{}?flow={}",
            double.ui_url,
            ui_path(FlowKind::Settings),
            settings.id
        );
        let mut store = double.store();
        store.flows.insert(flow.id.clone(), flow);
        store.flows.insert(settings.id.clone(), settings);
        return signed_in(&mut store, &id, false, &location);
    }
    email_step(&double, &mut flow, form.email, |store, email| {
        double.send_recovery_code(store, email)
    });
    flow.messages.push(text(
        1_060_003,
        "An email containing a recovery code has been sent to the email address you provided. If you have not received an email, check the spelling of the address and make sure to use the address you registered with.",
        "info",
    ));
    again(&double, flow)
}

async fn start_settings(
    State(double): State<KratosDouble>,
    headers: HeaderMap,
    Query(query): Query<StartQuery>,
) -> Response {
    let signed_in = active_session(&double.store(), &headers);
    let Some((_, identity)) = signed_in else {
        // Kratos sends a signed-out browser to sign in first.
        return double.start_again(FlowKind::Login);
    };
    let mut flow = double.new_flow(
        FlowKind::Settings,
        query.return_to,
        false,
        "",
        cookie(&headers, CSRF_COOKIE),
    );
    flow.identity_id = Some(identity.id);
    flow.state = "show_form";
    double.store().flows.insert(flow.id.clone(), flow.clone());
    double.show(&flow, cookie(&headers, CSRF_COOKIE))
}

#[derive(Debug, Deserialize)]
struct SettingsForm {
    csrf_token: Option<String>,
    password: Option<String>,
}

/// A new password, for the signed-in person the settings flow belongs to.
async fn submit_settings(
    State(double): State<KratosDouble>,
    headers: HeaderMap,
    Query(query): Query<FlowQuery>,
    Form(form): Form<SettingsForm>,
) -> Response {
    let mut flow = match posted_flow(
        &double,
        &headers,
        &query,
        form.csrf_token.as_deref(),
        FlowKind::Settings,
    ) {
        Ok(flow) => flow,
        Err(answer) => return *answer,
    };
    let mut store = double.store();
    let owner = active_session(&store, &headers).map(|(_, identity)| identity.id);
    if owner.is_none() || owner != flow.identity_id {
        drop(store);
        return no_session();
    }
    let password = form.password.unwrap_or_default();
    if let Some(refusal) = too_short(&password) {
        drop(store);
        flow.field_messages.insert("password", vec![refusal]);
        return again(&double, flow);
    }
    if let Some(identity) = owner.and_then(|id| store.identities.get_mut(&id)) {
        identity.password = password;
    }
    drop(store);
    flow.state = "success";
    flow.messages
        .push(text(1_050_001, "Your changes have been saved!", "success"));
    again(&double, flow)
}

async fn create_logout(State(double): State<KratosDouble>, headers: HeaderMap) -> Response {
    let Some(token) = cookie(&headers, SESSION_COOKIE) else {
        return no_session();
    };
    if !double.store().sessions.contains_key(&token) {
        return no_session();
    }
    // The logout token is the session's own: the double needs nothing else to find it.
    Json(json!({
        "logout_token": token,
        "logout_url": format!("{}/self-service/logout?token={token}", double.public_url),
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct LogoutQuery {
    token: Option<String>,
    return_to: Option<String>,
}

async fn logout(State(double): State<KratosDouble>, Query(query): Query<LogoutQuery>) -> Response {
    if let Some(token) = &query.token {
        double.store().sessions.remove(token);
    }
    let to = query
        .return_to
        .filter(|to| to.starts_with(&double.ui_url))
        .unwrap_or_else(|| format!("{}/sign-in", double.ui_url));
    let mut response = see_other(&to);
    set_cookie(
        &mut response,
        &format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    response
}

/// The admin API's identity import, as far as Tenki's sandbox uses it: the `email` trait, a
/// password, and whether the address is verified.
#[derive(Debug, Deserialize)]
struct ImportedIdentity {
    traits: ImportedTraits,
    credentials: Option<ImportedCredentials>,
    #[serde(default)]
    verifiable_addresses: Vec<ImportedAddress>,
}

#[derive(Debug, Deserialize)]
struct ImportedTraits {
    email: String,
}

#[derive(Debug, Deserialize)]
struct ImportedCredentials {
    password: Option<ImportedPassword>,
}

#[derive(Debug, Deserialize)]
struct ImportedPassword {
    config: ImportedPasswordConfig,
}

#[derive(Debug, Deserialize)]
struct ImportedPasswordConfig {
    password: String,
}

#[derive(Debug, Deserialize)]
struct ImportedAddress {
    value: String,
    verified: bool,
}

/// `POST /admin/identities`: creates an identity (201), or 409 when its address has one.
async fn import_identity(
    State(double): State<KratosDouble>,
    Json(imported): Json<ImportedIdentity>,
) -> Response {
    let email = imported.traits.email.trim().to_owned();
    if double.store().identities.contains_key(&identity_id(&email)) {
        return error(
            StatusCode::CONFLICT,
            "",
            "This identity conflicts with another identity that already exists.",
            "an identity with the same identifier already exists",
        );
    }
    let password = imported
        .credentials
        .and_then(|c| c.password)
        .map(|p| p.config.password)
        .unwrap_or_default();
    let verified = imported
        .verifiable_addresses
        .iter()
        .any(|a| a.verified && a.value.trim().eq_ignore_ascii_case(&email));
    let id = double.add_identity(&email, &password, verified);
    let identity = double.store().identities.get(&id).cloned();
    match identity {
        Some(identity) => {
            (StatusCode::CREATED, Json(double.identity_json(&identity))).into_response()
        }
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct CourierQuery {
    recipient: Option<String>,
}

/// The admin API's message list, newest first, optionally for one recipient.
async fn courier_messages(
    State(double): State<KratosDouble>,
    Query(query): Query<CourierQuery>,
) -> Json<Vec<Value>> {
    let store = double.store();
    let wanted = query.recipient.map(|r| r.trim().to_lowercase());
    Json(
        store
            .messages
            .iter()
            .rev()
            .filter(|m| {
                wanted.as_deref().is_none_or(|r| {
                    m["recipient"]
                        .as_str()
                        .is_some_and(|to| to.to_lowercase() == r)
                })
            })
            .cloned()
            .collect(),
    )
}
