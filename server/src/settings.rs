//! The server's typed settings, read once from `TENKI_*` environment variables
//! (every one is listed in `.env.example`).

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;

/// Everything the server reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen (`TENKI_ADDR`).
    pub addr: SocketAddr,
    /// The address customers use (`TENKI_PUBLIC_URL`); `https://` turns on Secure cookies.
    pub public_url: String,
    /// PostgreSQL (`TENKI_DATABASE_URL`).
    pub database_url: SecretString,
    /// Pool size (`TENKI_DATABASE_MAX_CONNECTIONS`).
    pub database_max_connections: u32,
    /// Every TigerBeetle replica, comma-separated (`TENKI_TIGERBEETLE_ADDRESSES`).
    pub tigerbeetle_addresses: String,
    /// The TigerBeetle cluster id (`TENKI_TIGERBEETLE_CLUSTER_ID`).
    pub tigerbeetle_cluster_id: u128,
    /// The built WASM, JS and static files (`TENKI_SITE_ROOT`).
    pub site_root: PathBuf,
    /// `pretty` or `json` (`TENKI_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// A `tracing` filter (`TENKI_LOG`).
    pub log_filter: String,
    /// Largest request body accepted, in bytes (`TENKI_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// The GitHub App's id (`TENKI_GITHUB_APP_ID`); unset means the GitHub sandbox.
    pub github_app_id: Option<String>,
    /// Stripe's secret key (`TENKI_STRIPE_SECRET_KEY`); unset means the Stripe sandbox.
    pub stripe_secret_key: Option<SecretString>,
    /// The GitHub App's webhook secret (`TENKI_GITHUB_WEBHOOK_SECRET`); required with a real App.
    pub github_webhook_secret: SecretString,
    /// Background tasks run at once by this replica (`TENKI_WORKER_CONCURRENCY`).
    pub worker_concurrency: usize,
}

/// The webhook secret of the GitHub sandbox; refused when a real GitHub App is configured.
pub const SANDBOX_WEBHOOK_SECRET: &str = "tenki-sandbox-webhook-secret";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line, for production log collectors.
    Json,
}

/// A setting with a value the server cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct SettingsError {
    name: &'static str,
    problem: String,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &'static str, default: &str| {
            lookup(name)
                .filter(|value| !value.trim().is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        let optional = |name: &'static str| lookup(name).filter(|value| !value.trim().is_empty());
        let log_format = match get("TENKI_LOG_FORMAT", "pretty").as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                return Err(SettingsError {
                    name: "TENKI_LOG_FORMAT",
                    problem: format!("{other:?} is neither \"pretty\" nor \"json\""),
                });
            }
        };
        let github_app_id = optional("TENKI_GITHUB_APP_ID");
        let github_webhook_secret = optional("TENKI_GITHUB_WEBHOOK_SECRET");
        if github_app_id.is_some() && github_webhook_secret.is_none() {
            return Err(SettingsError {
                name: "TENKI_GITHUB_WEBHOOK_SECRET",
                problem: "required with TENKI_GITHUB_APP_ID: the App's webhook secret".to_owned(),
            });
        }
        Ok(Self {
            addr: parse_setting(&get, "TENKI_ADDR", "127.0.0.1:3000")?,
            public_url: get("TENKI_PUBLIC_URL", "http://127.0.0.1:3000"),
            database_url: SecretString::from(get(
                "TENKI_DATABASE_URL",
                "postgres://postgres@127.0.0.1:5433/tenki",
            )),
            database_max_connections: parse_setting(&get, "TENKI_DATABASE_MAX_CONNECTIONS", "10")?,
            tigerbeetle_addresses: get("TENKI_TIGERBEETLE_ADDRESSES", "127.0.0.1:3001"),
            tigerbeetle_cluster_id: parse_setting(&get, "TENKI_TIGERBEETLE_CLUSTER_ID", "0")?,
            site_root: PathBuf::from(get("TENKI_SITE_ROOT", "site")),
            log_format,
            log_filter: get("TENKI_LOG", "info,tower_http=info"),
            max_body_bytes: parse_setting(&get, "TENKI_MAX_BODY_BYTES", "1048576")?,
            github_app_id,
            github_webhook_secret: SecretString::from(
                github_webhook_secret.unwrap_or_else(|| SANDBOX_WEBHOOK_SECRET.to_owned()),
            ),
            worker_concurrency: parse_setting(&get, "TENKI_WORKER_CONCURRENCY", "4")?,
            stripe_secret_key: optional("TENKI_STRIPE_SECRET_KEY").map(SecretString::from),
        })
    }

    /// True while GitHub or Stripe is not configured: the dashboard shows a "Sandbox" badge.
    pub fn sandbox(&self) -> bool {
        self.github_app_id.is_none() || self.stripe_secret_key.is_none()
    }

    /// Cookies carry `Secure` when customers reach Tenki over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

fn parse_setting<T>(
    get: &impl Fn(&'static str, &str) -> String,
    name: &'static str,
    default: &str,
) -> Result<T, SettingsError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let raw = get(name, default);
    raw.parse().map_err(|e| SettingsError {
        name,
        problem: format!("cannot use {raw:?}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_serve_the_local_sandbox() {
        let settings = settings(&[]).expect("defaults are valid");
        assert_eq!(settings.addr.to_string(), "127.0.0.1:3000");
        assert!(settings.sandbox());
        assert!(!settings.secure_cookies());
    }

    #[test]
    fn https_public_url_turns_on_secure_cookies() {
        let settings = settings(&[("TENKI_PUBLIC_URL", "https://app.tenki.cloud")]).expect("valid");
        assert!(settings.secure_cookies());
    }

    #[test]
    fn a_real_github_app_needs_its_own_webhook_secret() {
        let err = settings(&[("TENKI_GITHUB_APP_ID", "12345")]).expect_err("refused");
        assert!(
            err.to_string().starts_with("TENKI_GITHUB_WEBHOOK_SECRET:"),
            "{err}"
        );
        let ok = settings(&[
            ("TENKI_GITHUB_APP_ID", "12345"),
            ("TENKI_GITHUB_WEBHOOK_SECRET", "s3cret"),
        ]);
        assert!(ok.is_ok());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = settings(&[("TENKI_ADDR", "not an address")]).expect_err("refused");
        assert!(err.to_string().starts_with("TENKI_ADDR:"), "{err}");
        let err = settings(&[("TENKI_LOG_FORMAT", "xml")]).expect_err("refused");
        assert!(err.to_string().starts_with("TENKI_LOG_FORMAT:"), "{err}");
    }
}
