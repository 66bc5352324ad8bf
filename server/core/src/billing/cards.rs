//! The workspace's cards (SPEC §9): "Add a card" through Stripe Checkout in setup mode, "Manage
//! billing" through Stripe's billing portal, and the cards Tenki records, as Stripe describes them
//! (brand, last 4 digits, expiry; never the number).
//!
//! Tenki never trusts an event's copy of a card: after any card event, and on the return from
//! Checkout, it asks Stripe for the customer's cards and records exactly those ([`sync_cards`]).
//! Events that arrive twice or out of order therefore end in the same rows.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use stripe::StripeRequest as _;
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_checkout::checkout_session::{CreateCheckoutSession, RetrieveCheckoutSession};
use stripe_core::customer::{
    CreateCustomer, ListPaymentMethodsCustomer, ListPaymentMethodsCustomerType,
};
use stripe_shared::{CheckoutSessionMode, CheckoutSessionStatus};
use uuid::Uuid;

use super::stripe::{Stripe, StripeCallError, idempotent};
use crate::workspaces::{Caller, Role};

/// A card on file, as the Billing page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub brand: String,
    pub last4: String,
    pub exp_month: i16,
    pub exp_year: i16,
    pub added_at: DateTime<Utc>,
}

/// Where Stripe sends the browser back to, on this server.
#[derive(Debug, Clone)]
pub struct ReturnUrls {
    /// After a card was saved; `{CHECKOUT_SESSION_ID}` is replaced by Stripe.
    pub card_added: String,
    /// After Checkout was abandoned, and from the billing portal.
    pub billing_page: String,
}

/// Why a card action was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("only the workspace's owners and admins can change its billing")]
    NotAllowed,
    #[error("this Checkout session belongs to another workspace")]
    OtherWorkspace,
    #[error("Stripe did not give a Checkout address")]
    NoCheckoutUrl,
    #[error("Stripe described card {0} with an expiry Tenki cannot store")]
    OddExpiry(String),
    #[error(transparent)]
    Stripe(#[from] StripeCallError),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// How the return from Checkout ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutOutcome {
    /// The card is saved; the workspace has this many cards now.
    CardAdded { cards: usize },
    /// Stripe has not finished the session yet (the webhook records the card when it does).
    NotFinished,
}

/// What a card sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// The workspace of the customer has this many cards now.
    Cards { workspace_id: Uuid, cards: usize },
    /// No workspace has this Stripe customer (another system's customer, or a deleted workspace).
    UnknownCustomer,
}

fn may_change_billing(caller: &Caller) -> Result<(), CardError> {
    match caller.member.role {
        Role::Owner | Role::Admin => Ok(()),
        Role::Member => Err(CardError::NotAllowed),
    }
}

/// The cards of a workspace, newest first.
pub async fn cards_of(db: &PgPool, workspace_id: Uuid) -> Result<Vec<Card>, sqlx::Error> {
    sqlx::query_as!(
        Card,
        "SELECT brand, last4, exp_month, exp_year, added_at FROM cards
         WHERE workspace_id = $1 AND removed_at IS NULL ORDER BY added_at DESC",
        workspace_id,
    )
    .fetch_all(db)
    .await
}

/// The workspace's Stripe customer, created on first need. The idempotency key is the
/// workspace, so two first clicks at once create one customer. `gone` is a stored customer Stripe
/// no longer has (deleted in Stripe's dashboard, or the sandbox's double restarted): it is
/// forgotten and a new one created, under a key of its own.
async fn customer_of(
    db: &PgPool,
    stripe: &Stripe,
    caller: &Caller,
    gone: Option<&str>,
) -> Result<String, CardError> {
    let workspace_id = caller.member.workspace_id;
    if let Some(gone) = gone {
        sqlx::query!(
            "UPDATE workspaces SET stripe_customer_id = NULL
             WHERE id = $1 AND stripe_customer_id = $2",
            workspace_id,
            gone,
        )
        .execute(db)
        .await?;
    }
    let existing = sqlx::query_scalar!(
        "SELECT stripe_customer_id FROM workspaces WHERE id = $1",
        workspace_id,
    )
    .fetch_one(db)
    .await?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let key = match gone {
        None => format!("customer:{workspace_id}"),
        Some(gone) => format!("customer:{workspace_id}:after:{gone}"),
    };
    let customer = CreateCustomer::new()
        .email(caller.user.email.clone())
        .name(caller.member.workspace_name.clone())
        .metadata([("workspace_id".to_owned(), workspace_id.to_string())])
        .customize()
        .request_strategy(idempotent(&key)?)
        .send(stripe.client())
        .await
        .map_err(|e| StripeCallError::of("creating the customer", e))?;
    let stored = sqlx::query_scalar!(
        "UPDATE workspaces SET stripe_customer_id = coalesce(stripe_customer_id, $2)
         WHERE id = $1 RETURNING stripe_customer_id",
        workspace_id,
        customer.id.as_str(),
    )
    .fetch_one(db)
    .await?;
    Ok(stored.unwrap_or_else(|| customer.id.to_string()))
}

/// Runs `call` with the workspace's Stripe customer; when Stripe no longer has that customer,
/// once more with a new one.
async fn with_customer<T, Fut>(
    db: &PgPool,
    stripe: &Stripe,
    caller: &Caller,
    call: impl Fn(String) -> Fut,
) -> Result<T, CardError>
where
    Fut: Future<Output = Result<T, StripeCallError>>,
{
    let customer = customer_of(db, stripe, caller, None).await?;
    match call(customer.clone()).await {
        Err(e) if customer_missing(&e) => {
            Ok(call(customer_of(db, stripe, caller, Some(&customer)).await?).await?)
        }
        other => Ok(other?),
    }
}

/// True when Stripe answered that the customer named in the request does not exist.
fn customer_missing(error: &StripeCallError) -> bool {
    matches!(error, StripeCallError::Refused { status: 404, .. })
}

/// "Add a card": a Checkout session in setup mode for the caller's workspace; the browser goes
/// to the returned address.
pub async fn start_checkout(
    db: &PgPool,
    stripe: &Stripe,
    caller: &Caller,
    urls: &ReturnUrls,
) -> Result<String, CardError> {
    may_change_billing(caller)?;
    // One session per click: the click is the business key.
    let click = Uuid::new_v4();
    // The key names the customer too: a retry with a new customer is another request.
    let session = |customer: String| async move {
        CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Setup)
            .customer(customer.clone())
            .currency(stripe_types::Currency::USD)
            .client_reference_id(caller.member.workspace_id.to_string())
            .success_url(urls.card_added.clone())
            .cancel_url(urls.billing_page.clone())
            .customize()
            .request_strategy(idempotent(&format!(
                "checkout-session:{}:{click}:{customer}",
                caller.member.workspace_id
            ))?)
            .send(stripe.client())
            .await
            .map_err(|e| StripeCallError::of("creating the Checkout session", e))
    };
    let session = with_customer(db, stripe, caller, session).await?;
    session.url.ok_or(CardError::NoCheckoutUrl)
}

/// The return from Checkout (`?session_id=`): records the card at once, before the webhook that
/// would record it too, whichever comes first.
pub async fn complete_checkout(
    db: &PgPool,
    stripe: &Stripe,
    caller: &Caller,
    session_id: &str,
    now: DateTime<Utc>,
) -> Result<CheckoutOutcome, CardError> {
    let session = RetrieveCheckoutSession::new(session_id)
        .send(stripe.client())
        .await
        .map_err(|e| StripeCallError::of("reading the Checkout session", e))?;
    let customer = session.customer.as_ref().map(|c| c.id().to_string());
    let ours = sqlx::query_scalar!(
        "SELECT stripe_customer_id FROM workspaces WHERE id = $1",
        caller.member.workspace_id,
    )
    .fetch_one(db)
    .await?;
    let Some(customer) = customer.filter(|c| ours.as_deref() == Some(c.as_str())) else {
        return Err(CardError::OtherWorkspace);
    };
    if session.status != Some(CheckoutSessionStatus::Complete) {
        return Ok(CheckoutOutcome::NotFinished);
    }
    match sync_cards(db, stripe, &customer, now).await? {
        Synced::Cards { cards, .. } => {
            let mut conn = db.acquire().await?;
            crate::workspaces::audit::record(
                &mut conn,
                caller,
                "card.added",
                &format!("added a card in Checkout ({cards} on file)"),
                now,
            )
            .await?;
            Ok(CheckoutOutcome::CardAdded { cards })
        }
        Synced::UnknownCustomer => Err(CardError::OtherWorkspace),
    }
}

/// "Manage billing": a billing portal session that comes back to the Billing page.
pub async fn portal_url(
    db: &PgPool,
    stripe: &Stripe,
    caller: &Caller,
    urls: &ReturnUrls,
) -> Result<String, CardError> {
    may_change_billing(caller)?;
    let click = Uuid::new_v4();
    let session = |customer: String| async move {
        CreateBillingPortalSession::new()
            .customer(customer.clone())
            .return_url(urls.billing_page.clone())
            .customize()
            .request_strategy(idempotent(&format!(
                "portal-session:{}:{click}:{customer}",
                caller.member.workspace_id
            ))?)
            .send(stripe.client())
            .await
            .map_err(|e| StripeCallError::of("creating the billing portal session", e))
    };
    let session = with_customer(db, stripe, caller, session).await?;
    Ok(session.url)
}

/// Records exactly the cards Stripe has for `customer`: new ones added, missing ones marked
/// removed, and the workspace's payment method flag that admission reads set from them in the
/// same transaction. A workspace that gains its first card gets an admission pass at once, so
/// jobs blocked for free minutes start.
pub async fn sync_cards(
    db: &PgPool,
    stripe: &Stripe,
    customer: &str,
    now: DateTime<Utc>,
) -> Result<Synced, CardError> {
    let Some(workspace_id) = sqlx::query_scalar!(
        "SELECT id FROM workspaces WHERE stripe_customer_id = $1",
        customer,
    )
    .fetch_optional(db)
    .await?
    else {
        return Ok(Synced::UnknownCustomer);
    };
    let listed = ListPaymentMethodsCustomer::new(customer)
        .type_(ListPaymentMethodsCustomerType::Card)
        .limit(100)
        .send(stripe.client())
        .await
        .map_err(|e| StripeCallError::of("listing the customer's cards", e))?;
    let cards: Vec<_> = listed
        .data
        .iter()
        .filter_map(|method| Some((method.id.as_str(), method.card.as_ref()?)))
        .collect();
    let mut tx = db.begin().await?;
    // One sync per workspace at a time: the flag below is computed from what this one wrote.
    let before = sqlx::query_scalar!(
        "SELECT payment_method FROM workspaces WHERE id = $1 FOR UPDATE",
        workspace_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    let ids: Vec<String> = cards.iter().map(|(id, _)| (*id).to_owned()).collect();
    for (id, card) in &cards {
        sqlx::query!(
            "INSERT INTO cards (stripe_payment_method_id, workspace_id, brand, last4, exp_month,
                 exp_year, added_at, fingerprint)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (stripe_payment_method_id) DO UPDATE
                 SET brand = EXCLUDED.brand, exp_month = EXCLUDED.exp_month,
                     exp_year = EXCLUDED.exp_year, removed_at = NULL,
                     fingerprint = coalesce(EXCLUDED.fingerprint, cards.fingerprint)
             WHERE cards.workspace_id = EXCLUDED.workspace_id",
            id,
            workspace_id,
            card.brand,
            card.last4,
            expiry_part(card.exp_month, id)?,
            expiry_part(card.exp_year, id)?,
            now,
            card.fingerprint.as_deref(),
        )
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query!(
        "UPDATE cards SET removed_at = $3
         WHERE workspace_id = $1 AND removed_at IS NULL AND NOT (stripe_payment_method_id = ANY($2))",
        workspace_id,
        &ids,
        now,
    )
    .execute(&mut *tx)
    .await?;
    let after = if cards.is_empty() { "none" } else { "valid" };
    if before != after {
        sqlx::query!(
            "UPDATE workspaces SET payment_method = $2 WHERE id = $1",
            workspace_id,
            after,
        )
        .execute(&mut *tx)
        .await?;
        crate::admission::request_pass(&mut tx).await?;
    }
    tx.commit().await?;
    tracing::info!(%workspace_id, cards = cards.len(), "cards synced from Stripe");
    Ok(Synced::Cards {
        workspace_id,
        cards: cards.len(),
    })
}

fn expiry_part(value: i64, card: &str) -> Result<i16, CardError> {
    i16::try_from(value).map_err(|_| CardError::OddExpiry(card.to_owned()))
}

/// The Stripe customer a removed card belonged to, from Tenki's own records (a detached card's
/// event no longer names its customer).
pub async fn customer_of_card(
    db: &PgPool,
    payment_method_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let customer = sqlx::query_scalar!(
        "SELECT w.stripe_customer_id FROM cards c JOIN workspaces w ON w.id = c.workspace_id
         WHERE c.stripe_payment_method_id = $1",
        payment_method_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(customer.flatten())
}
