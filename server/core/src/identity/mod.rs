//! The built-in identity: sign-up, sign-in, sessions and sign-out (SPEC §1).
//!
//! Passwords are hashed with argon2id; a session is a random token whose SHA-256 is stored, so
//! the database never holds a usable session. Sign-in attempts are counted in PostgreSQL, which
//! makes the rate limit hold across every server replica.

use std::net::IpAddr;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Duration, Utc};
use ipnet::IpNet;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ledger::{Ledger, LedgerError};

pub mod grants;
pub mod kratos;
pub mod provider;
pub mod self_service;
pub mod verification;

pub use provider::{IdentityProvider, SessionLookup};

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "tenki_session";

/// The value of cookie `name` among the `Cookie` header values of a request, if any and not
/// empty.
pub fn cookie_value<'a>(
    cookie_headers: impl IntoIterator<Item = &'a str>,
    name: &str,
) -> Option<String> {
    cookie_headers
        .into_iter()
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie, _)| *cookie == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

/// The session token among the `Cookie` header values of a request, if any.
pub fn session_token_from_cookies<'a>(
    cookie_headers: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    cookie_value(cookie_headers, SESSION_COOKIE)
}

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted: hashing is deliberately slow, so bound the work one request asks.
pub const MAX_PASSWORD_CHARS: usize = 256;
/// How long a session lasts after sign-in.
pub const SESSION_LIFETIME: Duration = Duration::days(14);
/// The window over which failed sign-ins are counted.
pub const SIGN_IN_WINDOW: Duration = Duration::minutes(15);
/// Failed sign-ins allowed per e-mail from one client address within [`SIGN_IN_WINDOW`]. Counted
/// per address too, so that failures from elsewhere never lock the owner out of their account.
pub const MAX_FAILED_SIGN_INS_PER_EMAIL_AND_ADDRESS: i64 = 5;
/// Failed sign-ins allowed per client address (any e-mail) within [`SIGN_IN_WINDOW`].
pub const MAX_FAILED_SIGN_INS_PER_ADDRESS: i64 = 20;
/// The window over which sign-ups are counted.
pub const SIGN_UP_WINDOW: Duration = Duration::hours(1);
/// Sign-ups allowed per client address within [`SIGN_UP_WINDOW`] by default: each costs an
/// argon2 hash.
pub const MAX_SIGN_UPS_PER_ADDRESS: i64 = 10;

/// Where a sign-up comes from, and how many sign-ups that address may make per
/// [`SIGN_UP_WINDOW`].
#[derive(Debug, Clone, Copy)]
pub struct SignUpClient<'a> {
    pub address: &'a str,
    pub max_per_window: i64,
}

impl SignUpClient<'static> {
    /// Operations staff and the demo, on the server itself.
    pub const LOCAL: Self = Self {
        address: "local",
        max_per_window: i64::MAX,
    };
}

/// The client's address: the peer, or, when the peer is one of `trusted_proxies`, the last
/// address in `X-Forwarded-For` that is not a trusted proxy (each proxy appends the address it
/// received the request from, so anything left of that may be forged by the client).
pub fn client_address(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted_proxies: &[IpNet],
) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted(&ip) {
                    break;
                }
            }
            // A malformed hop: nothing left of it can be trusted.
            Err(_) => break,
        }
    }
    client
}

/// A syntactically valid e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    as_typed: String,
    normalized: String,
}

impl Email {
    /// Accepts `local@domain.tld`, trimmed; compared case-insensitively.
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(FieldError::new("email", "Enter your e-mail address."));
        }
        let valid = trimmed.len() <= 254
            && !trimmed.chars().any(char::is_whitespace)
            && match trimmed.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !domain.contains('@')
                }
                None => false,
            };
        if !valid {
            return Err(FieldError::new(
                "email",
                "That does not look like an e-mail address (name@example.com).",
            ));
        }
        Ok(Self {
            as_typed: trimmed.to_owned(),
            normalized: trimmed.to_lowercase(),
        })
    }

    /// The address as the person typed it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.as_typed
    }

    /// The address lower-cased: what identifies an account.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

/// A password long enough to accept for a new account.
#[derive(Clone)]
pub struct NewPassword(String);

impl NewPassword {
    /// At least [`MIN_PASSWORD_CHARS`] characters, at most [`MAX_PASSWORD_CHARS`].
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let chars = input.chars().count();
        if chars == 0 {
            return Err(FieldError::new("password", "Choose a password."));
        }
        if chars < MIN_PASSWORD_CHARS {
            return Err(FieldError::new(
                "password",
                format!("Use at least {MIN_PASSWORD_CHARS} characters for your password."),
            ));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(FieldError::new(
                "password",
                format!("Use at most {MAX_PASSWORD_CHARS} characters for your password."),
            ));
        }
        Ok(Self(input.to_owned()))
    }
}

/// A workspace name: 1 to 80 characters after trimming.
#[derive(Debug, Clone)]
pub struct WorkspaceName(String);

impl WorkspaceName {
    /// Trimmed, not empty, at most 80 characters.
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(FieldError::new("workspace", "Name your workspace."));
        }
        if trimmed.chars().count() > 80 {
            return Err(FieldError::new(
                "workspace",
                "Keep the workspace name to 80 characters.",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A form field with a value we cannot accept, and what to tell the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The form field's name.
    pub field: &'static str,
    /// A sentence the person can act on.
    pub message: String,
}

impl FieldError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Why a sign-up did not create an account. Nothing is stored in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum SignUpError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("an account with this e-mail exists already")]
    EmailTaken,
    #[error("too many sign-ups from this address; try again in {} minutes", SIGN_UP_WINDOW.num_minutes())]
    TooManySignUps,
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("ledger")]
    Ledger(#[from] LedgerError),
    #[error("password hashing: {0}")]
    Hashing(String),
    #[error("verification e-mail: {0}")]
    Verification(String),
}

/// Why a sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("no account uses this e-mail")]
    UnknownEmail,
    #[error("wrong password")]
    WrongPassword,
    #[error("too many failed sign-ins; try again in {} minutes", SIGN_IN_WINDOW.num_minutes())]
    TooManyAttempts,
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("password hashing: {0}")]
    Hashing(String),
}

/// A freshly issued session: the token goes into the cookie and nowhere else.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The secret the browser presents (hex of 32 random bytes).
    pub token: String,
    /// Who signed in.
    pub user_id: Uuid,
    /// When the session stops working.
    pub expires_at: DateTime<Utc>,
}

/// A signed-in person, as found from a session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub user_id: Uuid,
    pub email: String,
    /// They opened the confirmation link of their current address.
    pub email_verified: bool,
}

/// What sign-up created.
#[derive(Debug, Clone)]
pub struct SignedUp {
    pub session: NewSession,
    pub workspace_id: Uuid,
    /// The token of the verification link e-mailed to the new account's address.
    pub email_verification: String,
}

/// Creates the account, its workspace (owned by the new person) and the workspace's ledger
/// accounts, e-mails a verification link (the 1,000 free minutes wait for it, [`grants`]), and
/// signs the person in.
///
/// All or nothing: the database rows are committed only after the ledger accepted the accounts,
/// whose ids are derived from the new workspace's id.
#[tracing::instrument(skip(db, ledger, email, password, client, now), fields(address = %client.address))]
pub async fn sign_up(
    db: &PgPool,
    ledger: &Ledger,
    email: &str,
    password: &str,
    workspace_name: &str,
    client: &SignUpClient<'_>,
    now: DateTime<Utc>,
) -> Result<SignedUp, SignUpError> {
    let workspace_name = WorkspaceName::parse(workspace_name)?;
    let email = Email::parse(email)?;
    let password = NewPassword::parse(password)?;
    // Counted before the expensive hash, and recorded whatever the outcome: the limit is on the
    // work an address asks for.
    let recent = sqlx::query_scalar!(
        r#"WITH recorded AS (
               INSERT INTO sign_up_attempts (ip, attempted_at) VALUES ($1, $2))
           SELECT count(*) AS "count!" FROM sign_up_attempts WHERE ip = $1 AND attempted_at > $3"#,
        client.address,
        now,
        now - SIGN_UP_WINDOW,
    )
    .fetch_one(db)
    .await?;
    if recent >= client.max_per_window {
        return Err(SignUpError::TooManySignUps);
    }
    let password_hash = hash_password(password).await?;

    let user_id = Uuid::new_v4();
    let mut tx = db.begin().await?;
    let inserted = sqlx::query!(
        "INSERT INTO users (id, email, email_normalized, password_hash, created_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (email_normalized) DO NOTHING",
        user_id,
        email.as_str(),
        email.normalized(),
        password_hash,
        now,
    )
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(SignUpError::EmailTaken);
    }
    let workspace_id =
        crate::workspaces::create_owned(&mut tx, user_id, workspace_name.as_str(), now).await?;
    let email_verification = verification::send_link(&mut tx, user_id, now)
        .await
        .map_err(|e| match e {
            verification::VerificationError::Database(e) => SignUpError::Database(e),
            other => SignUpError::Verification(other.to_string()),
        })?;
    let session = insert_session(&mut tx, user_id, now).await?;
    // The ledger goes last: if it fails, the transaction rolls back and nothing exists. If the
    // commit fails after it, the orphaned ledger accounts belong to a workspace id nobody holds.
    // The free minutes come once the e-mail is verified (`verification::verify`).
    ledger.open_workspace(workspace_id).await?;
    tx.commit().await?;
    tracing::info!(%user_id, %workspace_id, "signed up");
    Ok(SignedUp {
        session,
        workspace_id,
        email_verification,
    })
}

/// Checks the e-mail and password and opens a session. Refuses once an e-mail from this client
/// address, or the address itself, has had too many failed attempts within [`SIGN_IN_WINDOW`]:
/// failures from other addresses never stop the right password from the owner's own.
#[tracing::instrument(skip(db, email, password, now))]
pub async fn sign_in(
    db: &PgPool,
    email: &str,
    password: &str,
    ip: &str,
    now: DateTime<Utc>,
) -> Result<NewSession, SignInError> {
    let email = Email::parse(email)?;
    if password.is_empty() {
        return Err(FieldError::new("password", "Enter your password.").into());
    }
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(SignInError::WrongPassword);
    }
    let since = now - SIGN_IN_WINDOW;
    let failures = sqlx::query!(
        r#"SELECT
             count(*) FILTER (WHERE email_normalized = $1) AS "by_email_and_address!",
             count(*) AS "by_address!"
           FROM sign_in_attempts
           WHERE NOT succeeded AND attempted_at > $3 AND ip = $2"#,
        email.normalized(),
        ip,
        since,
    )
    .fetch_one(db)
    .await?;
    if failures.by_email_and_address >= MAX_FAILED_SIGN_INS_PER_EMAIL_AND_ADDRESS
        || failures.by_address >= MAX_FAILED_SIGN_INS_PER_ADDRESS
    {
        return Err(SignInError::TooManyAttempts);
    }

    let user = sqlx::query!(
        "SELECT id, password_hash FROM users WHERE email_normalized = $1",
        email.normalized(),
    )
    .fetch_optional(db)
    .await?;
    // A person Kratos signs in has no password here: like an unknown e-mail, the same work.
    let verdict = match user.as_ref().and_then(|user| user.password_hash.as_deref()) {
        Some(hash) => verify_password(password, hash).await?,
        None => {
            // Same work as a real check, so response time does not tell which e-mails exist.
            verify_password(password, DUMMY_HASH).await?;
            false
        }
    };
    sqlx::query!(
        "INSERT INTO sign_in_attempts (email_normalized, ip, succeeded, attempted_at)
         VALUES ($1, $2, $3, $4)",
        email.normalized(),
        ip,
        verdict,
        now,
    )
    .execute(db)
    .await?;
    match (user, verdict) {
        (None, _) => Err(SignInError::UnknownEmail),
        (Some(_), false) => Err(SignInError::WrongPassword),
        (Some(user), true) => {
            let mut tx = db.begin().await?;
            let session = insert_session(&mut tx, user.id, now).await?;
            tx.commit().await?;
            Ok(session)
        }
    }
}

/// The person a session token belongs to, if the session exists and has not expired.
pub async fn session_user(
    db: &PgPool,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<SessionUser>, sqlx::Error> {
    let hash = token_hash(token);
    let found = sqlx::query_as!(
        SessionUser,
        r#"SELECT u.id AS user_id, u.email, u.email_verified_at IS NOT NULL AS "email_verified!"
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = $1 AND s.expires_at > $2"#,
        hash.as_slice(),
        now,
    )
    .fetch_optional(db)
    .await?;
    Ok(found)
}

/// Ends a session. Signing out twice is not an error.
pub async fn sign_out(db: &PgPool, token: &str) -> Result<(), sqlx::Error> {
    let hash = token_hash(token);
    sqlx::query!(
        "DELETE FROM sessions WHERE token_hash = $1",
        hash.as_slice()
    )
    .execute(db)
    .await?;
    Ok(())
}

async fn insert_session(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<NewSession, sqlx::Error> {
    let token = new_secret_token();
    let expires_at = now + SESSION_LIFETIME;
    let hash = token_hash(&token);
    sqlx::query!(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4)",
        hash.as_slice(),
        user_id,
        now,
        expires_at,
    )
    .execute(&mut **tx)
    .await?;
    Ok(NewSession {
        token,
        user_id,
        expires_at,
    })
}

/// The SHA-256 of a secret token (session, confirmation link, invitation): all the database
/// keeps of it.
pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new secret token: 32 random bytes, hex-encoded. Store only its [`token_hash`].
pub(crate) fn new_secret_token() -> String {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    hex::encode(secret)
}

/// An argon2id hash of a random password, verified against when the e-mail is unknown.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0m3vA+o1Ej7u+yUTtu0zhyD8S1xb9Sa0fIZYmg4Vkgw";

async fn hash_password(password: NewPassword) -> Result<String, SignUpError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.0.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| SignUpError::Hashing(e.to_string()))
    })
    .await
    .map_err(|e| SignUpError::Hashing(e.to_string()))?
}

async fn verify_password(password: &str, hash: &str) -> Result<bool, SignInError> {
    let password = password.to_owned();
    let hash = hash.to_owned();
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).map_err(|e| SignInError::Hashing(e.to_string()))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| SignInError::Hashing(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let proxy: IpAddr = "10.1.2.3".parse().expect("ip");
        let stranger: IpAddr = "203.0.113.9".parse().expect("ip");
        let client: IpAddr = "198.51.100.7".parse().expect("ip");
        // A stranger's own header is ignored: it could name anyone.
        assert_eq!(
            client_address(stranger, Some("198.51.100.7"), &proxies),
            stranger
        );
        // Behind the proxy: the address the proxy saw.
        assert_eq!(
            client_address(proxy, Some("198.51.100.7"), &proxies),
            client
        );
        // A forged first hop is left of the one the proxy appended.
        assert_eq!(
            client_address(proxy, Some("1.1.1.1, 198.51.100.7"), &proxies),
            client
        );
        // Two proxies in a row.
        assert_eq!(
            client_address(proxy, Some("198.51.100.7, 10.9.9.9"), &proxies),
            client
        );
        assert_eq!(client_address(proxy, None, &proxies), proxy);
        assert_eq!(client_address(proxy, Some("garbage"), &proxies), proxy);
        assert_eq!(client_address(proxy, Some("198.51.100.7"), &[]), proxy);
    }

    #[test]
    fn emails_are_trimmed_and_compared_without_case() {
        let email = Email::parse("  Alice@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "Alice@Example.COM");
        assert_eq!(email.normalized(), "alice@example.com");
    }

    #[test]
    fn malformed_emails_are_refused_with_a_message() {
        for bad in [
            "",
            "   ",
            "alice",
            "alice@",
            "@example.com",
            "a@b",
            "a b@c.de",
            "a@.com",
        ] {
            let err = Email::parse(bad).expect_err(bad);
            assert_eq!(err.field, "email");
        }
    }

    #[test]
    fn passwords_shorter_than_ten_characters_are_refused() {
        assert!(NewPassword::parse("123456789").is_err());
        assert!(NewPassword::parse("1234567890").is_ok());
        let err = NewPassword::parse("").err().expect("empty refused");
        assert_eq!(err.message, "Choose a password.");
    }

    #[test]
    fn the_dummy_hash_is_a_valid_argon2id_hash() {
        let parsed = PasswordHash::new(DUMMY_HASH).expect("parses");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }
}
