//! The Stripe API client (`async-stripe`): the real API with a secret key, or the sandbox's
//! Stripe double at a local base URL. Every POST carries an idempotency key derived from its
//! business key, so a retried step never creates a second customer or session.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// How long one Stripe request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Where Tenki reaches Stripe.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// The secret key (`sk_live_…`, `sk_test_…`, or the sandbox's).
    pub secret_key: SecretString,
    /// The API's base URL: `None` for Stripe itself, the double's address in the sandbox.
    pub api_base: Option<String>,
}

/// A Stripe API client. Cheap to clone.
#[derive(Clone)]
pub struct Stripe {
    client: ::stripe::Client,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stripe")
    }
}

/// A Stripe call that failed: Stripe's own refusal (with its status) or no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum StripeCallError {
    #[error("Stripe refused {call} ({status}): {message}")]
    Refused {
        call: &'static str,
        status: u16,
        message: String,
    },
    #[error("Stripe could not be reached for {call}: {message}")]
    Unreachable { call: &'static str, message: String },
}

impl StripeCallError {
    /// Wraps the client's error for the call `call`.
    pub fn of(call: &'static str, error: ::stripe::StripeError) -> Self {
        match error {
            ::stripe::StripeError::Stripe(errors, status) => Self::Refused {
                call,
                status,
                message: errors
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("{:?}", errors.type_)),
            },
            other => Self::Unreachable {
                call,
                message: other.to_string(),
            },
        }
    }
}

impl Stripe {
    /// A client for `config`.
    pub fn new(config: &StripeConfig) -> Result<Self, ::stripe::StripeError> {
        let mut builder = ::stripe::ClientBuilder::new(config.secret_key.expose_secret())
            .timeout(REQUEST_TIMEOUT)
            .app_info("tenki", Some(env!("CARGO_PKG_VERSION").to_owned()), None);
        if let Some(base) = &config.api_base {
            // The client appends `v1/customers` to the base as written: it must end in a slash.
            builder = builder.url(format!("{}/", base.trim_end_matches('/')));
        }
        Ok(Self {
            client: builder.build()?,
        })
    }

    /// The client, for the request builders of the `stripe_*` crates.
    pub fn client(&self) -> &::stripe::Client {
        &self.client
    }
}

/// The request strategy of a POST whose business key is `key`: sent once, with the key
/// (Stripe answers a repeat with the first answer). A key Stripe would not take (over 255
/// characters) is replaced by its SHA-256, which is as unique.
pub fn idempotent(key: &str) -> Result<::stripe::RequestStrategy, StripeCallError> {
    use sha2::{Digest, Sha256};
    ::stripe::IdempotencyKey::new(key)
        .or_else(|_| ::stripe::IdempotencyKey::new(hex::encode(Sha256::digest(key.as_bytes()))))
        .map(::stripe::RequestStrategy::Idempotent)
        .map_err(|e| StripeCallError::Unreachable {
            call: "an idempotency key",
            message: format!("{key:?}: {e}"),
        })
}
