//! The one seam between Tenki and who signs people in: the built-in identity (the local default)
//! or Ory Kratos (production, `TENKI_KRATOS_PUBLIC_URL`). Everything after it (workspaces,
//! roles, the free grant) works on the same person rows, whichever provider signed them in.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::SessionUser;
use super::kratos::{self, Kratos, KratosError, ProvisionError, Whoami};
use crate::ledger::Ledger;

/// Who signs people in.
#[derive(Debug, Clone)]
pub enum IdentityProvider {
    /// E-mail and password, sessions in PostgreSQL ([`super::sign_in`]).
    BuiltIn,
    /// Ory Kratos's sessions, checked with its whoami endpoint ([`kratos`]).
    Kratos(Arc<Kratos>),
}

/// What a request's cookies say about who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionLookup {
    /// A signed-in person. `session_key` identifies their session (the built-in token, or the
    /// Kratos session id) for what is bound to one session (GitHub onboarding's `state`).
    SignedIn {
        user: SessionUser,
        session_key: String,
    },
    /// No valid session.
    SignedOut,
    /// Kratos wants a second factor before this session may be used.
    SecondFactorRequired,
}

/// Why a request's session could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Kratos(#[from] KratosError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
}

impl IdentityProvider {
    /// The Kratos client, when Kratos signs people in.
    pub fn kratos(&self) -> Option<&Kratos> {
        match self {
            Self::BuiltIn => None,
            Self::Kratos(kratos) => Some(kratos),
        }
    }

    /// Who `cookie_headers` (the request's `Cookie` header values) name. With Kratos, the first
    /// request of a new person creates them and their workspace ([`kratos::provision`]).
    pub async fn session<'a>(
        &self,
        db: &PgPool,
        ledger: &Ledger,
        cookie_headers: impl IntoIterator<Item = &'a str>,
        now: DateTime<Utc>,
    ) -> Result<SessionLookup, LookupError> {
        match self {
            Self::BuiltIn => {
                let Some(token) = super::session_token_from_cookies(cookie_headers) else {
                    return Ok(SessionLookup::SignedOut);
                };
                Ok(match super::session_user(db, &token, now).await? {
                    Some(user) => SessionLookup::SignedIn {
                        user,
                        session_key: token,
                    },
                    None => SessionLookup::SignedOut,
                })
            }
            Self::Kratos(kratos) => {
                let cookies = kratos::cookies_for_kratos(cookie_headers);
                match kratos.whoami(&cookies).await? {
                    Whoami::Active(principal) => {
                        let user = kratos::provision(db, ledger, &principal, now).await?;
                        Ok(SessionLookup::SignedIn {
                            user,
                            session_key: principal.session_id,
                        })
                    }
                    Whoami::SignedOut => Ok(SessionLookup::SignedOut),
                    Whoami::SecondFactorRequired => Ok(SessionLookup::SecondFactorRequired),
                }
            }
        }
    }
}
