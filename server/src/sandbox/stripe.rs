//! A double of Stripe for the sandbox and the tests: the REST endpoints Tenki calls (customers,
//! Checkout sessions in setup mode, the customer's payment methods, billing portal sessions,
//! invoices and their items, and what paying one creates: payment intent, charge, balance
//! transaction with Stripe's fee), Stripe's hosted Checkout page (a card form that takes Stripe's
//! test card numbers) and billing portal (remove a card), switches for what happens in Stripe's
//! dashboard or at the bank (a declined payment, a refund, a dispute), and signed webhook events
//! posted to Tenki's intake.
//!
//! Answers are Stripe's own example objects (`stripe-objects.json`, copied from Stripe's OpenAPI
//! fixtures) with the fields of this double's state filled in, so the production client
//! (`async-stripe`) parses what it would parse from Stripe. Idempotency keys are honoured as
//! Stripe honours them: the same key with the same body gets the first answer again, with
//! another body a 400. Its state is in memory: it stands in for Stripe, not for Tenki's storage.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Form, Path, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The secret key Tenki uses with the double. Public on purpose: it only opens the double.
pub const SECRET_KEY: &str = "sk_test_tenki_sandbox";

/// Stripe's test cards, as its documentation lists them (any other well-formed number, such as
/// 4242 4242 4242 4242, succeeds).
const CARD_DECLINED: &str = "4000000000000002";
/// Attaches to the customer, but every charge on it fails (`card_declined`).
const CARD_FAILS_WHEN_CHARGED: &str = "4000000000000341";

/// Stripe's example objects, by resource name.
fn templates() -> &'static Value {
    static TEMPLATES: OnceLock<Value> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        serde_json::from_str::<Value>(include_str!("stripe-objects.json"))
            .ok()
            .and_then(|file| file.get("resources").cloned())
            .unwrap_or(Value::Null)
    })
}

/// Stripe's example `resource` with `fields` set on top.
fn object(resource: &str, fields: Value) -> Value {
    let mut object = templates()
        .get(resource)
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let (Some(object), Value::Object(fields)) = (object.as_object_mut(), fields) {
        for (name, value) in fields {
            object.insert(name, value);
        }
    }
    object
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[derive(Debug, Default)]
struct DoubleState {
    next_id: u64,
    customers: BTreeMap<String, Value>,
    payment_methods: BTreeMap<String, Value>,
    /// Each customer's attached payment methods, oldest first (an index of `payment_methods`).
    cards: HashMap<String, Vec<String>>,
    /// Invoices finalized so far (their numbers count them).
    numbered: u64,
    setup_intents: BTreeMap<String, Value>,
    checkout_sessions: BTreeMap<String, Value>,
    portal_sessions: BTreeMap<String, Value>,
    invoices: BTreeMap<String, Value>,
    invoice_items: BTreeMap<String, Value>,
    /// What paying an invoice creates: its payment intent, charge and balance transaction.
    payment_intents: BTreeMap<String, Value>,
    charges: BTreeMap<String, Value>,
    balance_transactions: BTreeMap<String, Value>,
    disputes: BTreeMap<String, Value>,
    /// The next this many invoice payments fail as declined, whatever the card (a switch).
    fail_next_payments: u32,
    /// Idempotency key → (SHA-256 of method, path and body; status; answer).
    idempotency: HashMap<String, (String, StatusCode, Value)>,
    /// Cards saved with the test number that fails when charged.
    fail_when_charged: std::collections::HashSet<String>,
    /// Every event sent, in order.
    events: Vec<Value>,
    /// Stripe requests received, as "METHOD /path", for tests.
    requests: Vec<String>,
}

impl DoubleState {
    /// A new object id, unique across restarts of the double (like Stripe's), since Tenki's
    /// database outlives the double's memory.
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!("{prefix}_{}{:04}", &random[..16], self.next_id)
    }
}

/// Stripe's fee for a US card payment of `cents`: 2.9 % + 30 ¢, rounded half up.
fn card_fee_cents(cents: i64) -> i64 {
    (cents * 29 + 500) / 1_000 + 30
}

impl DoubleState {
    /// Marks an open invoice paid as a successful charge does: a payment intent, its charge and
    /// the charge's balance transaction (with Stripe's fee), linked from the invoice's `payments`.
    fn settle(&mut self, invoice_id: &str) -> Option<Value> {
        let invoice = self.invoices.get(invoice_id)?.clone();
        let amount = invoice["amount_due"].as_i64().unwrap_or(0);
        let customer = invoice["customer"].clone();
        let (intent_id, charge_id, txn_id) = (self.id("pi"), self.id("ch"), self.id("txn"));
        let fee = card_fee_cents(amount);
        self.balance_transactions.insert(
            txn_id.clone(),
            object(
                "balance_transaction",
                json!({"id": txn_id, "amount": amount, "fee": fee, "net": amount - fee,
                       "created": now(), "source": charge_id, "description": null,
                       "fee_details": [{"amount": fee, "currency": "usd", "description": "Stripe processing fees", "type": "stripe_fee", "application": null}]}),
            ),
        );
        self.charges.insert(
            charge_id.clone(),
            object(
                "charge",
                json!({"id": charge_id, "amount": amount, "amount_captured": amount,
                       "amount_refunded": 0, "refunded": false, "disputed": false,
                       "captured": true, "paid": true, "status": "succeeded", "created": now(),
                       "customer": customer, "payment_intent": intent_id,
                       "balance_transaction": txn_id, "description": null, "refunds": null}),
            ),
        );
        self.payment_intents.insert(
            intent_id.clone(),
            object(
                "payment_intent",
                json!({"id": intent_id, "amount": amount, "amount_received": amount,
                       "customer": customer, "latest_charge": charge_id, "status": "succeeded",
                       "created": now(), "canceled_at": null, "last_payment_error": null}),
            ),
        );
        let payment_id = self.id("inpay");
        let invoice = self.invoices.get_mut(invoice_id)?;
        invoice["status"] = json!("paid");
        invoice["amount_paid"] = json!(amount);
        invoice["amount_remaining"] = json!(0);
        invoice["payments"] = json!({
            "object": "list", "has_more": false, "url": "/v1/invoice_payments",
            "data": [object("invoice_payment", json!({
                "id": payment_id, "invoice": invoice_id, "amount_paid": amount,
                "amount_requested": amount, "currency": "usd", "is_default": true,
                "livemode": false, "status": "paid", "created": now(),
                "payment": {"type": "payment_intent", "payment_intent": intent_id},
                "status_transitions": {"canceled_at": null, "paid_at": now()},
            }))],
        });
        Some(invoice.clone())
    }

    /// Saves a payment method attached to `customer`.
    fn attach(&mut self, customer: &str, method_id: &str, method: Value) {
        self.payment_methods.insert(method_id.to_owned(), method);
        self.cards
            .entry(customer.to_owned())
            .or_default()
            .push(method_id.to_owned());
    }

    /// The payment methods attached to `customer`, oldest first.
    fn cards_of(&self, customer: &str) -> Vec<String> {
        self.cards.get(customer).cloned().unwrap_or_default()
    }

    /// The charge that paid `invoice_id`.
    fn charge_of(&self, invoice_id: &str) -> Option<String> {
        let intent =
            self.invoices.get(invoice_id)?["payments"]["data"][0]["payment"]["payment_intent"]
                .as_str()?
                .to_owned();
        self.payment_intents.get(&intent)?["latest_charge"]
            .as_str()
            .map(str::to_owned)
    }
}

/// The Stripe double. Cheap to clone; clones share their state.
#[derive(Clone)]
pub struct StripeDouble {
    state: Arc<Mutex<DoubleState>>,
    /// Where the double is served: the hosted pages' addresses start with it.
    own_url: String,
    /// Tenki's address: events are posted to its `/webhooks/stripe`.
    tenki_url: String,
    webhook_secret: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for StripeDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeDouble")
            .field("tenki_url", &self.tenki_url)
            .finish_non_exhaustive()
    }
}

/// Stripe's error body.
fn error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"type": kind, "code": code, "message": message}})),
    )
        .into_response()
}

fn not_found(what: &str, id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {what}: '{id}'"),
    )
}

/// A form body or query string as Stripe's clients encode it (`metadata[key]=value`).
fn params(raw: &[u8]) -> BTreeMap<String, String> {
    form_urlencoded::parse(raw).into_owned().collect()
}

impl StripeDouble {
    /// A double served at `own_url` that posts events to `tenki_url`, signed with `webhook_secret`.
    pub fn new(own_url: &str, tenki_url: &str, webhook_secret: SecretString) -> Self {
        Self {
            state: Arc::default(),
            own_url: own_url.trim_end_matches('/').to_owned(),
            tenki_url: tenki_url.trim_end_matches('/').to_owned(),
            webhook_secret,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, DoubleState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The Stripe API requests received so far ("POST /v1/customers"), for tests.
    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }

    /// Every event sent so far, oldest first, for tests.
    pub fn events(&self) -> Vec<Value> {
        self.state().events.clone()
    }

    /// The customers created so far.
    pub fn customers(&self) -> Vec<Value> {
        self.state().customers.values().cloned().collect()
    }

    /// Saves card `number` for the Checkout session `session_id` as its hosted page does:
    /// the session completes, the card is attached to the customer, and the events follow.
    /// Returns where the browser goes next, or the message the page shows.
    pub async fn complete_checkout(
        &self,
        session_id: &str,
        number: &str,
    ) -> Result<String, String> {
        let number: String = number.chars().filter(char::is_ascii_digit).collect();
        if number == CARD_DECLINED {
            return Err("Your card was declined.".to_owned());
        }
        if number.len() < 12 || number.len() > 19 {
            return Err("Your card number is incomplete.".to_owned());
        }
        let events = {
            let mut state = self.state();
            let Some(session) = state.checkout_sessions.get(session_id).cloned() else {
                return Err(format!("No such Checkout session: {session_id}"));
            };
            if session["status"] != "open" {
                return Err("This Checkout session is no longer open.".to_owned());
            }
            let customer = session["customer"].as_str().unwrap_or_default().to_owned();
            let method_id = state.id("pm");
            let brand = if number.starts_with('4') {
                "visa"
            } else if number.starts_with('5') {
                "mastercard"
            } else {
                "amex"
            };
            let last4 = &number[number.len() - 4..];
            let method = object(
                "payment_method",
                json!({
                    "id": method_id, "created": now(), "customer": customer, "livemode": false,
                    "metadata": {},
                    "card": {
                        "brand": brand, "display_brand": brand, "last4": last4,
                        "exp_month": 12, "exp_year": 2034, "country": "US", "funding": "credit",
                        "fingerprint": hex::encode(&Sha256::digest(number.as_bytes())[..8]),
                        "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass"},
                        "generated_from": null, "networks": {"available": [brand], "preferred": null},
                        "three_d_secure_usage": {"supported": true}, "wallet": null,
                        "regulated_status": null,
                    },
                }),
            );
            let intent_id = session["setup_intent"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let mut intent = state
                .setup_intents
                .get(&intent_id)
                .cloned()
                .unwrap_or_default();
            intent["status"] = json!("succeeded");
            intent["payment_method"] = json!(method_id);
            let mut session = session;
            session["status"] = json!("complete");
            if number == CARD_FAILS_WHEN_CHARGED {
                state.fail_when_charged.insert(method_id.clone());
            }
            state.attach(&customer, &method_id, method.clone());
            state.setup_intents.insert(intent_id, intent.clone());
            state
                .checkout_sessions
                .insert(session_id.to_owned(), session.clone());
            let success = session["success_url"]
                .as_str()
                .unwrap_or_default()
                .replace("{CHECKOUT_SESSION_ID}", session_id);
            (
                vec![
                    ("payment_method.attached", method, None),
                    ("setup_intent.succeeded", intent, None),
                    ("checkout.session.completed", session, None),
                ],
                success,
            )
        };
        let (events, success) = events;
        for (kind, object, previous) in events {
            self.send_event(kind, object, previous).await;
        }
        Ok(success)
    }

    /// Detaches a card as the billing portal's "Remove" does, and sends its event.
    pub async fn detach(&self, payment_method_id: &str) -> bool {
        let detached = {
            let mut state = self.state();
            let Some(method) = state.payment_methods.get_mut(payment_method_id) else {
                return false;
            };
            let customer = method["customer"].take();
            method["customer"] = Value::Null;
            let method = method.clone();
            if let Some(cards) = customer.as_str().and_then(|c| state.cards.get_mut(c)) {
                cards.retain(|card| card != payment_method_id);
            }
            (method, customer)
        };
        let (method, customer) = detached;
        self.send_event(
            "payment_method.detached",
            method,
            Some(json!({ "customer": customer })),
        )
        .await;
        true
    }

    /// Signs an event as Stripe does and posts it to Tenki; returns Tenki's status (502 when
    /// Tenki could not be reached).
    pub async fn send_event(&self, kind: &str, object: Value, previous: Option<Value>) -> u16 {
        let event = {
            let mut state = self.state();
            let id = state.id("evt");
            let mut data = json!({ "object": object });
            if let Some(previous) = previous {
                data["previous_attributes"] = previous;
            }
            let event = object_event(&id, kind, data);
            state.events.push(event.clone());
            event
        };
        self.post_event(&event).await
    }

    /// Posts `event` (again) to Tenki's intake, signed now.
    pub async fn post_event(&self, event: &Value) -> u16 {
        let raw = event.to_string();
        let signature = stripe_webhook::Webhook::generate_test_header(
            &raw,
            self.webhook_secret.expose_secret(),
            None,
        );
        match self
            .http
            .post(format!("{}/webhooks/stripe", self.tenki_url))
            .header("content-type", "application/json; charset=utf-8")
            .header("stripe-signature", signature)
            .body(raw)
            .send()
            .await
        {
            Ok(response) => response.status().as_u16(),
            Err(e) => {
                tracing::warn!("sandbox Stripe cannot reach Tenki's intake: {e}");
                502
            }
        }
    }

    /// Makes the next `count` invoice payments fail as declined (then they succeed again): a
    /// payment that fails and later succeeds.
    pub fn fail_next_payments(&self, count: u32) {
        self.state().fail_next_payments = count;
    }

    /// Every invoice created so far.
    pub fn invoices(&self) -> Vec<Value> {
        self.state().invoices.values().cloned().collect()
    }

    /// Pays an open invoice as its hosted page does (the customer paid by hand) and sends
    /// `invoice.paid`.
    pub async fn pay_by_hand(&self, invoice_id: &str) -> bool {
        let paid = {
            let mut state = self.state();
            match state.invoices.get(invoice_id) {
                Some(invoice) if invoice["status"] == "open" => state.settle(invoice_id),
                _ => None,
            }
        };
        match paid {
            Some(invoice) => {
                self.send_event("invoice.paid", invoice, None).await;
                true
            }
            None => false,
        }
    }

    /// A customer with a working card saved, made directly without Checkout and without events:
    /// for load scripts that need thousands of paying customers. Returns the customer's id.
    pub fn customer_with_card(&self, name: &str) -> String {
        let mut state = self.state();
        let (customer_id, method_id) = (state.id("cus"), state.id("pm"));
        let customer = object(
            "customer",
            json!({"id": customer_id, "created": now(), "name": name, "livemode": false,
                   "metadata": {}}),
        );
        state.customers.insert(customer_id.clone(), customer);
        let method = object(
            "payment_method",
            json!({"id": method_id, "created": now(), "customer": customer_id, "livemode": false,
                   "metadata": {}}),
        );
        state.attach(&customer_id, &method_id, method);
        customer_id
    }

    /// Refunds `cents` of the charge that paid `invoice_id`, as support does from Stripe's
    /// dashboard, and sends `charge.refunded`. False when the invoice was not paid here or the
    /// amount is more than what is left.
    pub async fn refund(&self, invoice_id: &str, cents: i64) -> bool {
        let charge = {
            let mut state = self.state();
            let Some(charge_id) = state.charge_of(invoice_id) else {
                return false;
            };
            let Some(charge) = state.charges.get_mut(&charge_id) else {
                return false;
            };
            let (amount, refunded) = (
                charge["amount"].as_i64().unwrap_or(0),
                charge["amount_refunded"].as_i64().unwrap_or(0),
            );
            if cents <= 0 || refunded + cents > amount {
                return false;
            }
            charge["amount_refunded"] = json!(refunded + cents);
            charge["refunded"] = json!(refunded + cents == amount);
            charge.clone()
        };
        self.send_event("charge.refunded", charge, None).await;
        true
    }

    /// Opens a dispute on the charge that paid `invoice_id` (the customer's bank took the
    /// money back) and sends `charge.dispute.created`.
    pub async fn dispute(&self, invoice_id: &str) -> bool {
        let dispute = {
            let mut state = self.state();
            let Some(charge_id) = state.charge_of(invoice_id) else {
                return false;
            };
            let id = state.id("dp");
            let Some(charge) = state.charges.get_mut(&charge_id) else {
                return false;
            };
            charge["disputed"] = json!(true);
            let dispute = object(
                "dispute",
                json!({"id": id, "amount": charge["amount"], "charge": charge_id,
                       "payment_intent": charge["payment_intent"], "created": now(),
                       "status": "needs_response", "reason": "fraudulent"}),
            );
            state.disputes.insert(id, dispute.clone());
            dispute
        };
        self.send_event("charge.dispute.created", dispute, None)
            .await;
        true
    }

    /// The double's routes, to be nested under [`crate::settings::SANDBOX_STRIPE_PATH`]: the API
    /// under `/v1`, the hosted pages at the root.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/customers", post(create_customer))
            .route("/customers/{id}", get(retrieve_customer))
            .route(
                "/customers/{id}/payment_methods",
                get(list_customer_payment_methods),
            )
            .route("/checkout/sessions", post(create_checkout_session))
            .route("/checkout/sessions/{id}", get(retrieve_checkout_session))
            .route("/setup_intents/{id}", get(retrieve_setup_intent))
            .route("/payment_methods/{id}", get(retrieve_payment_method))
            .route("/billing_portal/sessions", post(create_portal_session))
            .route("/invoices", post(create_invoice))
            .route("/invoices/{id}", get(retrieve_invoice))
            .route("/invoices/{id}/finalize", post(finalize_invoice))
            .route("/invoices/{id}/pay", post(pay_invoice))
            .route("/invoiceitems", post(create_invoice_item))
            .route("/payment_intents/{id}", get(retrieve_payment_intent))
            .route("/charges/{id}", get(retrieve_charge))
            .route("/disputes/{id}", get(retrieve_dispute))
            .layer(axum::middleware::from_fn_with_state(self.clone(), api_gate));
        Router::new()
            .nest("/v1", api)
            .route("/checkout/{id}", get(checkout_page).post(checkout_submit))
            .route("/portal/{id}", get(portal_page))
            .route("/portal/{id}/remove", post(portal_remove))
            .route("/invoice/{id}", get(invoice_page))
            .route("/switches/fail-next-payments", post(switch_fail_payments))
            .route("/switches/refund", post(switch_refund))
            .route("/switches/dispute", post(switch_dispute))
            .with_state(self.clone())
    }
}

fn object_event(id: &str, kind: &str, data: Value) -> Value {
    object(
        "event",
        json!({
            "id": id, "type": kind, "created": now(), "livemode": false, "pending_webhooks": 1,
            "api_version": stripe_shared::version::VERSION.as_str(),
            "request": {"id": null, "idempotency_key": null},
            "data": data,
        }),
    )
}

/// The API's gate: Stripe's authentication (the secret key as bearer token) and its idempotency
/// keys. A POST with a key seen before gets the first answer again (same method, path and body)
/// or a 400 (anything else), without running again.
async fn api_gate(
    State(double): State<StripeDouble>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == format!("Bearer {SECRET_KEY}"));
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "Invalid API Key provided.",
        );
    }
    let method = request.method().clone();
    // Nested under `/v1`, which the router strips.
    let path = format!("/v1{}", request.uri().path());
    double.state().requests.push(format!("{method} {path}"));
    let key = request
        .headers()
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let (true, Some(key)) = (method == Method::POST, key) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "The body could not be read.",
        );
    };
    // Stripe compares the parameters, not the bytes: their order does not matter.
    let parameters: Vec<String> = params(&body)
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let fingerprint = hex::encode(Sha256::digest(
        [method.as_str(), path.as_str(), &parameters.join("&")].concat(),
    ));
    let seen = double.state().idempotency.get(&key).cloned();
    if let Some((first, status, answer)) = seen {
        return if first == fingerprint {
            let mut response = (status, Json(answer)).into_response();
            response.headers_mut().insert(
                "idempotent-replayed",
                header::HeaderValue::from_static("true"),
            );
            response
        } else {
            error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                None,
                &format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                ),
            )
        };
    }
    let response = next
        .run(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(body),
        ))
        .await;
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if let Ok(answer) = serde_json::from_slice::<Value>(&bytes) {
        double
            .state()
            .idempotency
            .insert(key, (fingerprint, parts.status, answer));
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

async fn create_customer(State(double): State<StripeDouble>, body: Bytes) -> Response {
    let form = params(&body);
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((key.to_owned(), json!(value)))
        })
        .collect();
    let mut state = double.state();
    let id = state.id("cus");
    let customer = object(
        "customer",
        json!({
            "id": id, "created": now(), "email": form.get("email"), "name": form.get("name"),
            "metadata": metadata, "discount": null, "livemode": false,
            "invoice_settings": {"custom_fields": null, "default_payment_method": null, "footer": null,
                                 "rendering_options": null},
        }),
    );
    state.customers.insert(id, customer.clone());
    Json(customer).into_response()
}

async fn retrieve_customer(State(double): State<StripeDouble>, Path(id): Path<String>) -> Response {
    match double.state().customers.get(&id) {
        Some(customer) => Json(customer.clone()).into_response(),
        None => not_found("customer", &id),
    }
}

async fn list_customer_payment_methods(
    State(double): State<StripeDouble>,
    Path(id): Path<String>,
) -> Response {
    let state = double.state();
    if !state.customers.contains_key(&id) {
        return not_found("customer", &id);
    }
    let data: Vec<Value> = state
        .cards_of(&id)
        .iter()
        .rev()
        .filter_map(|card| state.payment_methods.get(card).cloned())
        .collect();
    Json(json!({
        "object": "list", "data": data, "has_more": false,
        "url": format!("/v1/customers/{id}/payment_methods"),
    }))
    .into_response()
}

async fn create_checkout_session(State(double): State<StripeDouble>, body: Bytes) -> Response {
    let form = params(&body);
    let field = |name: &str| form.get(name).cloned();
    if field("mode").as_deref() != Some("setup") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid_empty"),
            "The sandbox's Checkout takes mode=setup only.",
        );
    }
    let Some(customer) = field("customer") else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_missing"),
            "Missing required param: customer.",
        );
    };
    let Some(success_url) = field("success_url") else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_missing"),
            "Missing required param: success_url.",
        );
    };
    let mut state = double.state();
    if !state.customers.contains_key(&customer) {
        return not_found("customer", &customer);
    }
    let session_id = state.id("cs_test");
    let intent_id = state.id("seti");
    let intent = object(
        "setup_intent",
        json!({
            "id": intent_id, "created": now(), "customer": customer, "status": "requires_payment_method",
            "client_secret": format!("{intent_id}_secret_sandbox"), "last_setup_error": null,
            "next_action": null, "payment_method": null, "livemode": false,
            "payment_method_configuration_details": null,
        }),
    );
    let session = object(
        "checkout.session",
        json!({
            "id": session_id, "created": now(), "expires_at": now() + 24 * 3600,
            "mode": "setup", "status": "open", "customer": customer,
            "client_reference_id": field("client_reference_id"),
            "currency": field("currency"), "payment_intent": null, "payment_status": "no_payment_required",
            "setup_intent": intent_id, "success_url": success_url, "cancel_url": field("cancel_url"),
            "url": format!("{}/checkout/{session_id}", double.own_url),
            "amount_subtotal": null, "amount_total": null, "shipping_cost": null,
            "total_details": null, "currency_conversion": null, "livemode": false, "metadata": {},
            "invoice_creation": null, "shipping_address_collection": null,
        }),
    );
    state.setup_intents.insert(intent_id, intent);
    state.checkout_sessions.insert(session_id, session.clone());
    Json(session).into_response()
}

async fn retrieve_checkout_session(
    State(double): State<StripeDouble>,
    Path(id): Path<String>,
) -> Response {
    match double.state().checkout_sessions.get(&id) {
        Some(session) => Json(session.clone()).into_response(),
        None => not_found("checkout.session", &id),
    }
}

async fn retrieve_setup_intent(
    State(double): State<StripeDouble>,
    Path(id): Path<String>,
) -> Response {
    match double.state().setup_intents.get(&id) {
        Some(intent) => Json(intent.clone()).into_response(),
        None => not_found("setup_intent", &id),
    }
}

async fn retrieve_payment_method(
    State(double): State<StripeDouble>,
    Path(id): Path<String>,
) -> Response {
    match double.state().payment_methods.get(&id) {
        Some(method) => Json(method.clone()).into_response(),
        None => not_found("payment_method", &id),
    }
}

async fn create_portal_session(State(double): State<StripeDouble>, body: Bytes) -> Response {
    let form = params(&body);
    let Some(customer) = form.get("customer").cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_missing"),
            "Missing required param: customer.",
        );
    };
    let mut state = double.state();
    if !state.customers.contains_key(&customer) {
        return not_found("customer", &customer);
    }
    let id = state.id("bps");
    let session = object(
        "billing_portal.session",
        json!({
            "id": id, "created": now(), "customer": customer, "flow": null, "livemode": false,
            "configuration": "bpc_sandbox", "return_url": form.get("return_url"),
            "url": format!("{}/portal/{id}", double.own_url),
        }),
    );
    state.portal_sessions.insert(id, session.clone());
    Json(session).into_response()
}

const PAGE_STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f6f9fc;color:#1a1f36;margin:0}
.banner{background:#fff8c5;border-bottom:1px solid #d4a72c;padding:8px 16px;font-size:14px}
main{max-width:440px;margin:40px auto;background:#fff;border:1px solid #e3e8ee;border-radius:8px;padding:24px}
label{display:block;margin-top:12px;font-size:14px;font-weight:600} input{width:100%;padding:8px;margin-top:4px;box-sizing:border-box;font-size:16px}
button{margin-top:20px;padding:10px 16px;border-radius:6px;border:0;background:#635bff;color:#fff;font-weight:600;font-size:15px}
.error{color:#df1b41;font-size:14px;margin-top:12px} .hint{color:#697386;font-size:13px}
li{margin:8px 0} a{color:#635bff}";

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} (sandbox Stripe)</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{PAGE_STYLE}</style></head>
<body><div class="banner">Sandbox Stripe: a local stand-in for Stripe. No card is charged; use Stripe's test cards.</div>
<main>{body}</main></body></html>"#
    ))
}

fn checkout_form(session_id: &str, message: Option<&str>) -> Html<String> {
    let message = message
        .map(|text| format!(r#"<p class="error" role="alert">{}</p>"#, html_escape(text)))
        .unwrap_or_default();
    page(
        "Save a card",
        &format!(
            r#"<h1>Save a card for Tenki</h1>
<p class="hint">4242 4242 4242 4242 succeeds; 4000 0000 0000 0002 is declined; 4000 0000 0000 0341 is saved but fails when charged.</p>
<form method="post" action="{}">
<label for="card">Card number</label><input id="card" name="card" inputmode="numeric" autocomplete="cc-number" placeholder="1234 1234 1234 1234">
<label for="expiry">Expiry (MM / YY)</label><input id="expiry" name="expiry" placeholder="12 / 34">
<label for="cvc">CVC</label><input id="cvc" name="cvc" placeholder="123">
{message}<button type="submit">Save card</button></form>"#,
            html_escape(session_id)
        ),
    )
}

async fn checkout_page(State(double): State<StripeDouble>, Path(id): Path<String>) -> Response {
    match double.state().checkout_sessions.get(&id) {
        Some(session) if session["status"] == "open" => checkout_form(&id, None).into_response(),
        Some(_) => (
            StatusCode::GONE,
            page(
                "Checkout",
                "<p>This Checkout session is no longer open.</p>",
            ),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            page("Checkout", "<p>No such Checkout session.</p>"),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct CheckoutForm {
    card: String,
}

async fn checkout_submit(
    State(double): State<StripeDouble>,
    Path(id): Path<String>,
    Form(form): Form<CheckoutForm>,
) -> Response {
    match double.complete_checkout(&id, &form.card).await {
        Ok(success) => Redirect::to(&success).into_response(),
        // Stripe's page shows a decline inline, on a page that loaded fine.
        Err(message) => checkout_form(&id, Some(&message)).into_response(),
    }
}

async fn portal_page(State(double): State<StripeDouble>, Path(id): Path<String>) -> Response {
    let state = double.state();
    let Some(session) = state.portal_sessions.get(&id) else {
        return (
            StatusCode::NOT_FOUND,
            page("Billing", "<p>No such session.</p>"),
        )
            .into_response();
    };
    let customer = session["customer"].clone();
    let cards: String = state
        .payment_methods
        .values()
        .filter(|method| method["customer"] == customer)
        .map(|method| {
            format!(
                r#"<li>{} ending in {} <form method="post" action="{id}/remove" style="display:inline"><input type="hidden" name="payment_method" value="{}"><button type="submit" aria-label="Remove {} ending in {}">Remove</button></form></li>"#,
                html_escape(method["card"]["brand"].as_str().unwrap_or("card")),
                html_escape(method["card"]["last4"].as_str().unwrap_or("????")),
                html_escape(method["id"].as_str().unwrap_or_default()),
                html_escape(method["card"]["brand"].as_str().unwrap_or("card")),
                html_escape(method["card"]["last4"].as_str().unwrap_or("????")),
            )
        })
        .collect();
    let cards = if cards.is_empty() {
        "<p>No payment methods.</p>".to_owned()
    } else {
        format!("<ul>{cards}</ul>")
    };
    let back = html_escape(session["return_url"].as_str().unwrap_or("/"));
    page(
        "Billing",
        &format!(
            r#"<h1>Manage billing</h1><h2>Payment methods</h2>{cards}<p><a href="{back}">Return to Tenki</a></p>"#
        ),
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
struct RemoveForm {
    payment_method: String,
}

async fn portal_remove(
    State(double): State<StripeDouble>,
    Path(id): Path<String>,
    Form(form): Form<RemoveForm>,
) -> Response {
    let owned = {
        let state = double.state();
        let customer = state
            .portal_sessions
            .get(&id)
            .map(|s| s["customer"].clone());
        customer.is_some_and(|customer| {
            state
                .payment_methods
                .get(&form.payment_method)
                .is_some_and(|method| method["customer"] == customer)
        })
    };
    if !owned || !double.detach(&form.payment_method).await {
        return (
            StatusCode::NOT_FOUND,
            page("Billing", "<p>No such payment method.</p>"),
        )
            .into_response();
    }
    Redirect::to(&format!("{}/portal/{id}", double.own_url)).into_response()
}

fn missing(param: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("parameter_missing"),
        &format!("Missing required param: {param}."),
    )
}

async fn create_invoice(State(double): State<StripeDouble>, body: Bytes) -> Response {
    let form = params(&body);
    let Some(customer) = form.get("customer").cloned() else {
        return missing("customer");
    };
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((key.to_owned(), json!(value)))
        })
        .collect();
    let mut state = double.state();
    if !state.customers.contains_key(&customer) {
        return not_found("customer", &customer);
    }
    let id = state.id("in");
    let invoice = object(
        "invoice",
        json!({
            "id": id, "created": now(), "customer": customer, "status": "draft",
            "auto_advance": form.get("auto_advance").map(|v| v == "true"),
            "collection_method": form.get("collection_method").cloned().unwrap_or_else(|| "charge_automatically".to_owned()),
            "description": form.get("description"), "metadata": metadata, "livemode": false,
            "amount_due": 0, "amount_paid": 0, "amount_remaining": 0, "subtotal": 0, "total": 0,
            "currency": "usd", "hosted_invoice_url": null, "invoice_pdf": null, "number": null,
            "lines": {"object": "list", "data": [], "has_more": false, "url": format!("/v1/invoices/{id}/lines")},
        }),
    );
    state.invoices.insert(id, invoice.clone());
    Json(invoice).into_response()
}

async fn retrieve_invoice(State(double): State<StripeDouble>, Path(id): Path<String>) -> Response {
    match double.state().invoices.get(&id) {
        Some(invoice) => Json(invoice.clone()).into_response(),
        None => not_found("invoice", &id),
    }
}

async fn create_invoice_item(State(double): State<StripeDouble>, body: Bytes) -> Response {
    let form = params(&body);
    let (Some(customer), Some(invoice_id)) =
        (form.get("customer").cloned(), form.get("invoice").cloned())
    else {
        return missing("customer and invoice");
    };
    let Some(amount) = form.get("amount").and_then(|a| a.parse::<i64>().ok()) else {
        return missing("amount");
    };
    let mut state = double.state();
    let id = state.id("ii");
    let Some(invoice) = state.invoices.get_mut(&invoice_id) else {
        return not_found("invoice", &invoice_id);
    };
    if invoice["status"] != "draft" {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("invoice_not_editable"),
            "You can only add invoice items to draft invoices.",
        );
    }
    let item = object(
        "invoiceitem",
        json!({
            "id": id, "amount": amount, "currency": "usd", "customer": customer, "date": now(),
            "description": form.get("description"), "invoice": invoice_id, "livemode": false,
            "metadata": {}, "quantity": 1, "parent": null, "net_amount": amount,
        }),
    );
    let total = invoice["total"].as_i64().unwrap_or(0) + amount;
    for field in ["amount_due", "amount_remaining", "subtotal", "total"] {
        invoice[field] = json!(total);
    }
    if let Some(lines) = invoice["lines"]["data"].as_array_mut() {
        lines.push(object(
            "line_item",
            json!({
                "id": format!("il_{id}"), "amount": amount, "currency": "usd",
                "description": form.get("description"), "invoice": invoice_id, "livemode": false,
                "metadata": {}, "quantity": 1,
            }),
        ));
    }
    state.invoice_items.insert(id, item.clone());
    Json(item).into_response()
}

async fn finalize_invoice(State(double): State<StripeDouble>, Path(id): Path<String>) -> Response {
    let finalized = {
        let mut guard = double.state();
        let state = &mut *guard;
        let Some(invoice) = state.invoices.get_mut(&id) else {
            return not_found("invoice", &id);
        };
        if invoice["status"] != "draft" {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("invoice_not_editable"),
                "This invoice is already finalized.",
            );
        }
        state.numbered += 1;
        invoice["status"] = json!("open");
        invoice["number"] = json!(format!("TENKI-{:04}", state.numbered));
        invoice["hosted_invoice_url"] = json!(format!("{}/invoice/{id}", double.own_url));
        invoice["invoice_pdf"] = json!(format!("{}/invoice/{id}?pdf=1", double.own_url));
        invoice.clone()
    };
    double
        .send_event("invoice.finalized", finalized.clone(), None)
        .await;
    Json(finalized).into_response()
}

async fn pay_invoice(State(double): State<StripeDouble>, Path(id): Path<String>) -> Response {
    let outcome = {
        let mut state = double.state();
        let Some(invoice) = state.invoices.get(&id).cloned() else {
            return not_found("invoice", &id);
        };
        if invoice["status"] == "paid" {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("invoice_already_paid"),
                "Invoice is already paid.",
            );
        }
        if invoice["status"] != "open" {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("invoice_not_open"),
                "You can only pay open invoices.",
            );
        }
        let cards = state.cards_of(invoice["customer"].as_str().unwrap_or_default());
        let declined = cards.is_empty()
            || cards
                .iter()
                .all(|card| state.fail_when_charged.contains(card))
            || state.fail_next_payments > 0;
        if declined {
            state.fail_next_payments = state.fail_next_payments.saturating_sub(1);
            Err(invoice)
        } else {
            Ok(state.settle(&id).unwrap_or_default())
        }
    };
    match outcome {
        Ok(paid) => {
            double.send_event("invoice.paid", paid.clone(), None).await;
            Json(paid).into_response()
        }
        Err(open) => {
            double
                .send_event("invoice.payment_failed", open, None)
                .await;
            error(
                StatusCode::PAYMENT_REQUIRED,
                "card_error",
                Some("card_declined"),
                "Your card was declined.",
            )
        }
    }
}

async fn invoice_page(State(double): State<StripeDouble>, Path(id): Path<String>) -> Response {
    let Some(invoice) = double.state().invoices.get(&id).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            page("Invoice", "<p>No such invoice.</p>"),
        )
            .into_response();
    };
    let lines: String = invoice["lines"]["data"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|line| {
                    format!(
                        "<li>{}: ${:.2}</li>",
                        html_escape(line["description"].as_str().unwrap_or_default()),
                        line["amount"].as_f64().unwrap_or(0.0) / 100.0
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    page(
        "Invoice",
        &format!(
            "<h1>Invoice {}</h1><p>Status: {}</p><ul>{lines}</ul><p><strong>Total ${:.2}</strong></p>",
            html_escape(invoice["number"].as_str().unwrap_or("(draft)")),
            html_escape(invoice["status"].as_str().unwrap_or_default()),
            invoice["total"].as_f64().unwrap_or(0.0) / 100.0
        ),
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
struct SwitchQuery {
    count: u32,
}

async fn switch_fail_payments(
    State(double): State<StripeDouble>,
    axum::extract::Query(query): axum::extract::Query<SwitchQuery>,
) -> StatusCode {
    double.fail_next_payments(query.count);
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
struct RefundQuery {
    invoice: String,
    cents: i64,
}

async fn switch_refund(
    State(double): State<StripeDouble>,
    axum::extract::Query(query): axum::extract::Query<RefundQuery>,
) -> StatusCode {
    if double.refund(&query.invoice, query.cents).await {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::BAD_REQUEST
    }
}

#[derive(Debug, Deserialize)]
struct DisputeQuery {
    invoice: String,
}

async fn switch_dispute(
    State(double): State<StripeDouble>,
    axum::extract::Query(query): axum::extract::Query<DisputeQuery>,
) -> StatusCode {
    if double.dispute(&query.invoice).await {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// A payment intent; `expand[]=latest_charge.balance_transaction` embeds its charge and the
/// charge's balance transaction, as Stripe does.
async fn retrieve_payment_intent(
    State(double): State<StripeDouble>,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let expand: Vec<String> = params(query.unwrap_or_default().as_bytes())
        .into_iter()
        .filter(|(name, _)| name.starts_with("expand"))
        .map(|(_, value)| value)
        .collect();
    let state = double.state();
    let Some(mut intent) = state.payment_intents.get(&id).cloned() else {
        return not_found("payment_intent", &id);
    };
    if expand.iter().any(|e| e.starts_with("latest_charge")) {
        let charge_id = intent["latest_charge"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(mut charge) = state.charges.get(&charge_id).cloned() {
            if expand
                .iter()
                .any(|e| e == "latest_charge.balance_transaction")
            {
                let txn = charge["balance_transaction"].as_str().unwrap_or_default();
                if let Some(txn) = state.balance_transactions.get(txn) {
                    charge["balance_transaction"] = txn.clone();
                }
            }
            intent["latest_charge"] = charge;
        }
    }
    Json(intent).into_response()
}

async fn retrieve_charge(State(double): State<StripeDouble>, Path(id): Path<String>) -> Response {
    match double.state().charges.get(&id) {
        Some(charge) => Json(charge.clone()).into_response(),
        None => not_found("charge", &id),
    }
}

async fn retrieve_dispute(State(double): State<StripeDouble>, Path(id): Path<String>) -> Response {
    match double.state().disputes.get(&id) {
        Some(dispute) => Json(dispute.clone()).into_response(),
        None => not_found("dispute", &id),
    }
}

fn html_escape(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_clients_form_bodies_are_read_with_their_brackets() {
        let form = params(b"email=a%40b.c&metadata[workspace_id]=w1");
        assert_eq!(
            form.get("metadata[workspace_id]").map(String::as_str),
            Some("w1")
        );
        assert_eq!(form.get("email").map(String::as_str), Some("a@b.c"));
    }

    #[test]
    fn answers_are_stripes_example_objects_with_the_doubles_fields() {
        let customer = object("customer", json!({"id": "cus_1", "email": "a@b.c"}));
        assert_eq!(customer["id"], "cus_1");
        assert_eq!(customer["object"], "customer");
        assert_eq!(customer["invoice_prefix"], "7FE1103");
    }
}
