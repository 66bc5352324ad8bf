//! The one error type every server function returns: stable codes the pages can show, and no
//! internals (an internal failure is logged once and shown as "something went wrong (id …)").

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// The refusal's code when Kratos wants a second factor before the session may be used.
pub const SECOND_FACTOR_REQUIRED: &str = "second_factor_required";

/// The refusal's code of the built-in identity's forms while Kratos signs people in.
pub const BUILT_IN_IDENTITY_OFF: &str = "built_in_identity_off";

/// What went wrong, in words a customer can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// No valid session: the page sends the person to sign in.
    #[error("Sign in to continue.")]
    SignInRequired,
    /// A form field with a value we cannot accept.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// The request was understood and refused (wrong password, e-mail taken, rate limited).
    #[error("{message}")]
    Refused { code: String, message: String },
    /// Our fault; the id finds the log line.
    #[error("Something went wrong (id {id}). Try again in a moment.")]
    Internal { id: String },
    /// The request did not reach Tenki or its answer could not be read.
    #[error("Tenki could not be reached: {0}")]
    Transport(String),
}

impl AppError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            Self::SignInRequired => "sign_in_required",
            Self::Invalid { .. } => "invalid",
            Self::Refused { code, .. } => code,
            Self::Internal { .. } => "internal",
            Self::Transport(_) => "transport",
        }
    }

    /// The HTTP status the server function answers with: refusals are the caller's to fix (4xx),
    /// so they neither page anyone nor count as server errors in the metrics.
    pub fn status(&self) -> u16 {
        match self {
            Self::SignInRequired => 401,
            Self::Invalid { .. } => 422,
            Self::Refused { code, .. } => match code.as_str() {
                "too_many_attempts" => 429,
                "email_taken" | "already_verified" => 409,
                "forbidden" | SECOND_FACTOR_REQUIRED => 403,
                BUILT_IN_IDENTITY_OFF => 404,
                _ => 401,
            },
            Self::Internal { .. } => 500,
            Self::Transport(_) => 502,
        }
    }

    /// A refusal with a stable code and a message.
    pub fn refused(code: &str, message: impl Into<String>) -> Self {
        Self::Refused {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// Logs `error` once with a fresh id and returns the id-only error shown to the customer.
    #[cfg(feature = "ssr")]
    pub fn internal(error: impl std::fmt::Display) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        tracing::error!(error_id = %id, "{error}");
        Self::Internal { id }
    }

    /// [`AppError::internal`] for an error with causes: the log line holds the whole chain
    /// ("metering: database: …"), the customer sees only the id.
    #[cfg(feature = "ssr")]
    pub fn internal_error(error: &dyn std::error::Error) -> Self {
        Self::internal(tenki_core::error_chain(error))
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        Self::Transport(value.to_string())
    }
}

/// Plain axum routes (the CSV export, the webhooks, "Connect GitHub") answer with the same error
/// as server functions: its status, and its customer-facing message as text.
#[cfg(feature = "ssr")]
impl axum::response::IntoResponse for AppError {
    fn into_response(self) -> axum::response::Response {
        let status = http::StatusCode::from_u16(self.status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        (status, self.to_string()).into_response()
    }
}
