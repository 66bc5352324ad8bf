//! Ory Kratos as the identity provider (production): the browser's cookies go to Kratos's
//! `/sessions/whoami`, and the person the session names is found, or created with their own
//! workspace on their first request, by (provider, subject).
//!
//! Kratos owns passwords, second factors, recovery and address verification; Tenki keeps a row
//! per Kratos identity so that memberships, roles and the free grant work as with the built-in
//! identity.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use ory_kratos_client::apis::configuration::Configuration;
use ory_kratos_client::apis::{Error as ClientError, frontend_api};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Email, SessionUser, grants};
use crate::ledger::{Ledger, LedgerError};

/// How long a whoami answer is reused for the same cookies: long enough to spare Kratos the
/// page's several server functions, short enough that a session revoked in Kratos stops working
/// within seconds.
pub const WHOAMI_CACHE_TTL: StdDuration = StdDuration::from_secs(10);

/// The longest Tenki waits for one Kratos request.
pub const KRATOS_TIMEOUT: StdDuration = StdDuration::from_secs(5);

/// The provider's name in `users.provider`.
const PROVIDER: &str = "kratos";

/// A Kratos public API Tenki asks who a browser is.
#[derive(Clone)]
pub struct Kratos {
    configuration: Configuration,
    /// Whoami answers by the SHA-256 of the cookies sent: never the cookies themselves.
    answers: moka::future::Cache<[u8; 32], Whoami>,
}

impl std::fmt::Debug for Kratos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kratos")
            .field("public_url", &self.configuration.base_path)
            .finish_non_exhaustive()
    }
}

/// Who a browser's cookies name, according to Kratos.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whoami {
    /// An active session.
    Active(Principal),
    /// No session, or an expired or revoked one (Kratos answered 401).
    SignedOut,
    /// A session that must be stepped up with a second factor first (Kratos answered 403).
    SecondFactorRequired,
}

/// The person behind an active Kratos session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The Kratos identity's id.
    pub subject: String,
    /// The Kratos session's id: what Tenki binds per-session secrets to.
    pub session_id: String,
    /// The identity's `email` trait.
    pub email: String,
    /// Kratos has verified that address (`verifiable_addresses`).
    pub email_verified: bool,
}

/// Why Kratos could not say who the browser is.
#[derive(Debug, thiserror::Error)]
pub enum KratosError {
    #[error("talking to Kratos: {0}")]
    Request(String),
    #[error("the Kratos identity {0} has no e-mail trait; the identity schema must have one")]
    NoEmail(String),
}

impl Kratos {
    /// A client of the Kratos public API at `public_url` (`TENKI_KRATOS_PUBLIC_URL`). Every
    /// request is cut off after [`KRATOS_TIMEOUT`]: a page waits on whoami, and a Kratos that
    /// hangs must fail the page, not hold it.
    pub fn new(public_url: &str) -> Result<Self, KratosError> {
        let client = reqwest::Client::builder()
            .connect_timeout(KRATOS_TIMEOUT)
            .timeout(KRATOS_TIMEOUT)
            .build()
            .map_err(|e| KratosError::Request(format!("building the HTTP client: {e}")))?;
        let configuration = Configuration {
            base_path: public_url.trim_end_matches('/').to_owned(),
            user_agent: Some(concat!("tenki/", env!("CARGO_PKG_VERSION")).to_owned()),
            client,
            ..Configuration::default()
        };
        Ok(Self {
            configuration,
            answers: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(WHOAMI_CACHE_TTL)
                .build(),
        })
    }

    /// The Kratos public API's address, also where the browser is sent for the self-service
    /// flows.
    pub fn public_url(&self) -> &str {
        &self.configuration.base_path
    }

    /// The client configuration, for the self-service flows the sign-in pages render.
    pub fn configuration(&self) -> &Configuration {
        &self.configuration
    }

    /// Who `cookie_header` (the browser's cookies, Tenki's own left out) names. Active and
    /// signed-out answers are reused for [`WHOAMI_CACHE_TTL`]; a step-up is asked again every
    /// time, so that the request right after the second factor sees it.
    pub async fn whoami(&self, cookie_header: &str) -> Result<Whoami, KratosError> {
        if cookie_header.is_empty() {
            return Ok(Whoami::SignedOut);
        }
        let key: [u8; 32] = Sha256::digest(cookie_header.as_bytes()).into();
        if let Some(answer) = self.answers.get(&key).await {
            return Ok(answer);
        }
        let answer = self.ask(cookie_header).await?;
        if answer != Whoami::SecondFactorRequired {
            self.answers.insert(key, answer.clone()).await;
        }
        Ok(answer)
    }

    /// Forgets the answer for these cookies: the person signed out.
    pub async fn forget(&self, cookie_header: &str) {
        let key: [u8; 32] = Sha256::digest(cookie_header.as_bytes()).into();
        self.answers.invalidate(&key).await;
    }

    async fn ask(&self, cookie_header: &str) -> Result<Whoami, KratosError> {
        match frontend_api::to_session(&self.configuration, None, Some(cookie_header), None).await {
            Ok(session) => {
                if session.active == Some(false) {
                    return Ok(Whoami::SignedOut);
                }
                let identity = session
                    .identity
                    .ok_or_else(|| KratosError::Request("the session names no identity".into()))?;
                let email = identity
                    .traits
                    .as_ref()
                    .and_then(|traits| traits.get("email"))
                    .and_then(|email| email.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| KratosError::NoEmail(identity.id.clone()))?;
                let email_verified = identity
                    .verifiable_addresses
                    .iter()
                    .flatten()
                    .any(|a| a.verified && a.value.trim().eq_ignore_ascii_case(email.trim()));
                Ok(Whoami::Active(Principal {
                    subject: identity.id,
                    session_id: session.id,
                    email,
                    email_verified,
                }))
            }
            Err(ClientError::ResponseError(response)) if response.status.as_u16() == 401 => {
                Ok(Whoami::SignedOut)
            }
            Err(ClientError::ResponseError(response)) if response.status.as_u16() == 403 => {
                Ok(Whoami::SecondFactorRequired)
            }
            Err(ClientError::ResponseError(response)) => Err(KratosError::Request(format!(
                "Kratos answered {}: {}",
                response.status,
                response.content.chars().take(200).collect::<String>()
            ))),
            Err(other) => Err(KratosError::Request(other.to_string())),
        }
    }
}

/// The browser's cookies as forwarded to Kratos: every cookie but Tenki's own (`tenki_*`), in
/// the order sent, so that whatever name Kratos's cookie has (`ory_kratos_session` by default)
/// reaches it and Tenki's session-independent cookies do not split its cache.
pub fn cookies_for_kratos<'a>(cookie_headers: impl IntoIterator<Item = &'a str>) -> String {
    cookie_headers
        .into_iter()
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !pair.starts_with("tenki_"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why the person of a Kratos session could not be found or created.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(
        "the e-mail address of this Kratos identity belongs to another Tenki account; verify it in Kratos to take that account over"
    )]
    EmailBelongsToAnotherAccount,
    #[error("the Kratos identity's e-mail is not an address: {0}")]
    InvalidEmail(String),
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("ledger")]
    Ledger(#[from] LedgerError),
    #[error("free grant")]
    Grant(#[from] grants::GrantError),
}

/// A Kratos person as stored.
#[derive(Debug, sqlx::FromRow)]
struct KnownPerson {
    id: Uuid,
    email: String,
    email_normalized: String,
    email_verified: bool,
    /// Verified, and owns a workspace whose free minutes were neither granted nor refused: a
    /// decision cut off (by a crash after the address was marked) is made on the next request.
    grant_undecided: bool,
}

/// The Tenki person of `principal`, created with a workspace they own on their first request.
///
/// Idempotent under concurrency: the unique (provider, subject) index lets one of several first
/// requests create the person, and the others find them once it committed. A built-in account
/// with the same address is taken over only when Kratos verified the address (moving an existing
/// customer to Kratos); otherwise nobody gets in through someone else's address.
///
/// When Kratos says the address is verified and Tenki did not know yet, the free minutes of the
/// person's workspaces are decided ([`grants`]).
pub async fn provision(
    db: &PgPool,
    ledger: &Ledger,
    principal: &Principal,
    now: DateTime<Utc>,
) -> Result<SessionUser, ProvisionError> {
    let email = Email::parse(&principal.email)
        .map_err(|_| ProvisionError::InvalidEmail(principal.email.clone()))?;
    let known = find(db, &principal.subject).await?;
    let (user_id, decide_grants) = match known {
        Some(person) => {
            let newly_verified = update_address(db, &person, &email, principal, now).await?;
            (person.id, newly_verified || person.grant_undecided)
        }
        None => match create(db, ledger, principal, &email, now).await? {
            Some(user_id) => (user_id, principal.email_verified),
            None => match find(db, &principal.subject).await? {
                // Another request created them in the meantime.
                Some(person) => (person.id, false),
                None => match take_over(db, principal, &email, now).await? {
                    Some(user_id) => (user_id, principal.email_verified),
                    // Another request took the account over in the meantime.
                    None => match find(db, &principal.subject).await? {
                        Some(person) => (person.id, false),
                        None => return Err(ProvisionError::EmailBelongsToAnotherAccount),
                    },
                },
            },
        },
    };
    if decide_grants {
        grants::decide_for_owner(db, ledger, user_id, now).await?;
    }
    Ok(SessionUser {
        user_id,
        email: email.as_str().to_owned(),
        email_verified: principal.email_verified,
    })
}

async fn find(db: &PgPool, subject: &str) -> Result<Option<KnownPerson>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.id, u.email, u.email_normalized,
                u.email_verified_at IS NOT NULL AS email_verified,
                u.email_verified_at IS NOT NULL AND EXISTS (
                    SELECT 1 FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id
                    WHERE m.user_id = u.id AND m.role = 'owner' AND w.free_grant_refusal IS NULL
                      AND NOT EXISTS (SELECT 1 FROM free_minute_grants g
                                      WHERE g.workspace_id = w.id)) AS grant_undecided
         FROM users u WHERE u.provider = $1 AND u.subject = $2",
    )
    .bind(PROVIDER)
    .bind(subject)
    .fetch_optional(db)
    .await
}

/// Follows a change of address or its verification in Kratos. Returns whether the address just
/// became verified.
async fn update_address(
    db: &PgPool,
    person: &KnownPerson,
    email: &Email,
    principal: &Principal,
    now: DateTime<Utc>,
) -> Result<bool, ProvisionError> {
    if person.email_normalized != email.normalized() {
        // A new address: a verification of the old one says nothing about it.
        let changed = sqlx::query(
            "UPDATE users SET email = $2, email_normalized = $3,
                    email_verified_at = CASE WHEN $4 THEN $5 END
             WHERE id = $1",
        )
        .bind(person.id)
        .bind(email.as_str())
        .bind(email.normalized())
        .bind(principal.email_verified)
        .bind(now)
        .execute(db)
        .await;
        return match changed {
            Ok(_) => Ok(principal.email_verified),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(ProvisionError::EmailBelongsToAnotherAccount)
            }
            Err(e) => Err(e.into()),
        };
    }
    if person.email != email.as_str() {
        sqlx::query("UPDATE users SET email = $2 WHERE id = $1")
            .bind(person.id)
            .bind(email.as_str())
            .execute(db)
            .await?;
    }
    if principal.email_verified && !person.email_verified {
        let marked = sqlx::query(
            "UPDATE users SET email_verified_at = $2 WHERE id = $1 AND email_verified_at IS NULL",
        )
        .bind(person.id)
        .bind(now)
        .execute(db)
        .await?
        .rows_affected();
        return Ok(marked == 1);
    }
    Ok(false)
}

/// Creates the person and their workspace, unless a row with their subject or address exists
/// (then `None`, and nothing is stored).
async fn create(
    db: &PgPool,
    ledger: &Ledger,
    principal: &Principal,
    email: &Email,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, ProvisionError> {
    let user_id = Uuid::new_v4();
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, email_normalized, password_hash, created_at, provider,
                            subject, email_verified_at)
         VALUES ($1, $2, $3, NULL, $4, $5, $6, CASE WHEN $7 THEN $4 END)
         ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(email.as_str())
    .bind(email.normalized())
    .bind(now)
    .bind(PROVIDER)
    .bind(&principal.subject)
    .bind(principal.email_verified)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    let name = default_workspace_name(email);
    let workspace_id = crate::workspaces::create_owned(&mut tx, user_id, &name, now).await?;
    // As at the built-in sign-up: the ledger accounts before the commit, so that a failure
    // leaves nothing behind but accounts of a workspace id nobody holds.
    ledger.open_workspace(workspace_id).await?;
    tx.commit().await?;
    tracing::info!(%user_id, %workspace_id, "first sign-in through Kratos: person and workspace created");
    Ok(Some(user_id))
}

/// Moves the built-in account with the same address to Kratos, when Kratos verified it. `None`
/// when there is no built-in account with that address (any more).
async fn take_over(
    db: &PgPool,
    principal: &Principal,
    email: &Email,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, ProvisionError> {
    if !principal.email_verified {
        return Err(ProvisionError::EmailBelongsToAnotherAccount);
    }
    let taken: Option<Uuid> = sqlx::query_scalar(
        "UPDATE users SET provider = $1, subject = $2, password_hash = NULL,
                email_verified_at = coalesce(email_verified_at, $4)
         WHERE email_normalized = $3 AND provider = 'built_in'
         RETURNING id",
    )
    .bind(PROVIDER)
    .bind(&principal.subject)
    .bind(email.normalized())
    .bind(now)
    .fetch_optional(db)
    .await?;
    if let Some(user_id) = taken {
        tracing::info!(%user_id, "built-in account moved to its Kratos identity");
    }
    Ok(taken)
}

/// "ada's workspace" for ada@example.com; renamed in Settings.
fn default_workspace_name(email: &Email) -> String {
    let local = email.as_str().split('@').next().unwrap_or("My");
    let name = format!("{local}'s workspace");
    name.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cookies_that_are_not_tenkis_go_to_kratos() {
        assert_eq!(
            cookies_for_kratos([
                "tenki_workspace=abc; ory_kratos_session=s1",
                "csrf_token_x=c"
            ]),
            "ory_kratos_session=s1; csrf_token_x=c"
        );
        assert_eq!(cookies_for_kratos(["tenki_session=t"]), "");
        assert_eq!(cookies_for_kratos(Vec::<&str>::new()), "");
    }

    #[test]
    fn a_new_persons_workspace_is_named_after_their_address() {
        let email = Email::parse("Ada@example.com").expect("valid");
        assert_eq!(default_workspace_name(&email), "Ada's workspace");
        let long = Email::parse(&format!("{}@example.com", "a".repeat(100))).expect("valid");
        assert_eq!(default_workspace_name(&long).chars().count(), 80);
    }
}
