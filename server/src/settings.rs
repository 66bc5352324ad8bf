//! The server's typed settings, read once from `TENKI_*` environment variables
//! (every one is listed in `.env.example`).

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use secrecy::{ExposeSecret as _, SecretString};

/// Whether this server may use the sandbox's doubles and built-in keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The local default (`make run`, `make test`): the GitHub and Stripe doubles, the demo.
    Sandbox,
    /// Real customers: every real setting required, no sandbox value accepted, no double
    /// mounted, no demo. Fails closed: a missing setting stops the server at start.
    Production,
}

/// Everything the server reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `sandbox` or `production` (`TENKI_MODE`).
    pub mode: Mode,
    /// Proxies whose `X-Forwarded-For` names the client (`TENKI_TRUSTED_PROXIES`, CIDRs).
    pub trusted_proxies: Vec<IpNet>,
    /// The bearer token `/metrics` requires (`TENKI_METRICS_TOKEN`); unset in the sandbox: open.
    pub metrics_token: Option<SecretString>,
    /// Sign-ups one client address may make per hour (`TENKI_SIGN_UPS_PER_ADDRESS`).
    pub sign_ups_per_address: i64,
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
    /// Stripe's secret key (`TENKI_STRIPE_SECRET_KEY`); unset means the Stripe sandbox.
    pub stripe_secret_key: Option<SecretString>,
    /// Verifies Stripe's webhook events (`TENKI_STRIPE_WEBHOOK_SECRET`, the endpoint's `whsec_…`);
    /// required with a real key.
    pub stripe_webhook_secret: SecretString,
    /// Stripe's API address (`TENKI_STRIPE_API_URL`); unset: Stripe's own.
    pub stripe_api_url: Option<String>,
    /// The bearer token of `/internal/*` (`TENKI_INTERNAL_TOKEN`); unset: the sandbox's in
    /// sandbox mode, and in production those endpoints answer nobody.
    pub internal_token: Option<SecretString>,
    /// The SMTP server the owners' notifications are e-mailed through (`TENKI_SMTP_URL`, e.g.
    /// `smtps://user:password@smtp.example.com:465`); unset: the sandbox logs each e-mail, and
    /// production keeps notifications on the dashboard only.
    pub smtp_url: Option<SecretString>,
    /// The sender of those e-mails (`TENKI_MAIL_FROM`).
    pub mail_from: String,
    /// The GitHub App's webhook secret (`TENKI_GITHUB_WEBHOOK_SECRET`); required with a real App.
    pub github_webhook_secret: SecretString,
    /// Background tasks run at once by this replica (`TENKI_WORKER_CONCURRENCY`).
    pub worker_concurrency: usize,
    /// GitHub deliveries this replica processes at once (`TENKI_DELIVERY_CONCURRENCY`). A
    /// completion waits for its metering batch without holding a connection, and the more wait
    /// at once, the larger the batches a burst is metered in.
    pub delivery_concurrency: usize,
    /// The real GitHub App (`TENKI_GITHUB_APP_ID` and friends); `None` means the GitHub sandbox.
    pub github_app: Option<RealGitHubApp>,
    /// Signs the onboarding `state` (`TENKI_SECRET_KEY`); required with a real GitHub App.
    pub secret_key: SecretString,
    /// The cluster of the runners (`TENKI_KUBECONFIG`); unset: in-cluster in production, the
    /// Kubernetes double in the sandbox.
    pub kubeconfig: Option<PathBuf>,
    /// The runner image (`TENKI_RUNNER_IMAGE`).
    pub runner_image: String,
    /// The platform's vCPUs per runner class (`TENKI_CAPACITY_X64_VCPUS`,
    /// `TENKI_CAPACITY_MACOS_VCPUS`); unset: unlimited.
    pub capacity: tenki_core::admission::Capacity,
    /// Ory Kratos's public API (`TENKI_KRATOS_PUBLIC_URL`): set, Kratos signs people in instead
    /// of the built-in identity. `sandbox` (sandbox mode only) means the Kratos double this
    /// server serves under [`SANDBOX_KRATOS_PATH`].
    pub kratos_public_url: Option<String>,
}

/// The settings of a real GitHub App (`TENKI_GITHUB_*`).
#[derive(Debug, Clone)]
pub struct RealGitHubApp {
    /// `TENKI_GITHUB_APP_ID`.
    pub app_id: u64,
    /// `TENKI_GITHUB_APP_SLUG`: the App's URL name.
    pub slug: String,
    /// `TENKI_GITHUB_PRIVATE_KEY_FILE`: the App's private key, a PEM file.
    pub private_key_file: PathBuf,
    /// `TENKI_GITHUB_CLIENT_ID` and `TENKI_GITHUB_CLIENT_SECRET`: the App's OAuth client.
    pub client_id: String,
    pub client_secret: SecretString,
    /// `TENKI_GITHUB_API_URL` (default `https://api.github.com`).
    pub api_url: String,
    /// `TENKI_GITHUB_WEB_URL` (default `https://github.com`).
    pub web_url: String,
}

/// The secret signing onboarding `state` in the sandbox; refused with a real GitHub App.
pub const SANDBOX_SECRET_KEY: &str = "tenki-sandbox-secret-key";

/// Where the GitHub double answers, under the server's own address, in the sandbox.
pub const SANDBOX_GITHUB_PATH: &str = "/sandbox/github";

/// Where the sandbox serves its Kubernetes double.
pub const SANDBOX_KUBERNETES_PATH: &str = "/sandbox/kubernetes";

/// Where the sandbox's Stripe double is served.
pub const SANDBOX_STRIPE_PATH: &str = "/sandbox/stripe";
/// Where the storage service double takes its switch (send the samples now), in the sandbox.
pub const SANDBOX_STORAGE_PATH: &str = "/sandbox/storage";
/// Where the sandbox's Kratos double answers, with `TENKI_KRATOS_PUBLIC_URL=sandbox`.
pub const SANDBOX_KRATOS_PATH: &str = "/sandbox/kratos";
/// Where the sandbox's mailbox is served (sandbox without SMTP only).
pub const SANDBOX_MAIL_PATH: &str = "/sandbox/mail";

/// The Stripe webhook secret of the sandbox (the double signs its events with it). Public on
/// purpose, and refused in production.
pub const SANDBOX_STRIPE_WEBHOOK_SECRET: &str = "whsec_tenki_sandbox";

/// The internal token of the sandbox. Public on purpose, and refused in production.
pub const SANDBOX_INTERNAL_TOKEN: &str = "tenki-sandbox-internal-token";

/// The runner image when `TENKI_RUNNER_IMAGE` is unset (actions-runner-controller's).
pub const DEFAULT_RUNNER_IMAGE: &str = "ghcr.io/actions/actions-runner:2.329.0";

/// The value of `TENKI_KRATOS_PUBLIC_URL` that selects the Kratos double (sandbox mode only).
pub const KRATOS_SANDBOX: &str = "sandbox";

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
        let mode = match get("TENKI_MODE", "sandbox").trim() {
            "sandbox" => Mode::Sandbox,
            "production" => Mode::Production,
            other => {
                return Err(SettingsError {
                    name: "TENKI_MODE",
                    problem: format!("{other:?} is neither \"sandbox\" nor \"production\""),
                });
            }
        };
        let trusted_proxies = optional("TENKI_TRUSTED_PROXIES")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|cidr| !cidr.is_empty())
                    .map(|cidr| {
                        cidr.parse::<IpNet>()
                            .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
                            .map_err(|e| SettingsError {
                                name: "TENKI_TRUSTED_PROXIES",
                                problem: format!("cannot use {cidr:?}: {e}"),
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        if mode == Mode::Production {
            check_production(&optional)?;
        }
        let github_app_id = optional("TENKI_GITHUB_APP_ID");
        let github_webhook_secret = optional("TENKI_GITHUB_WEBHOOK_SECRET");
        let stripe_secret_key = optional("TENKI_STRIPE_SECRET_KEY").map(SecretString::from);
        let stripe_webhook_secret = optional("TENKI_STRIPE_WEBHOOK_SECRET");
        if stripe_secret_key.is_some() && stripe_webhook_secret.is_none() {
            return Err(SettingsError {
                name: "TENKI_STRIPE_WEBHOOK_SECRET",
                problem: "required with TENKI_STRIPE_SECRET_KEY: the webhook endpoint's signing secret (whsec_…)".to_owned(),
            });
        }
        let required = |name: &'static str, what: &str| {
            optional(name).ok_or_else(|| SettingsError {
                name,
                problem: format!("required with TENKI_GITHUB_APP_ID: {what}"),
            })
        };
        let github_app = match &github_app_id {
            None => None,
            Some(id) => {
                required("TENKI_GITHUB_WEBHOOK_SECRET", "the App's webhook secret")?;
                required(
                    "TENKI_SECRET_KEY",
                    "a long random secret that signs onboarding links",
                )?;
                Some(RealGitHubApp {
                    app_id: id.trim().parse().map_err(|e| SettingsError {
                        name: "TENKI_GITHUB_APP_ID",
                        problem: format!("cannot use {id:?}: {e}"),
                    })?,
                    slug: required("TENKI_GITHUB_APP_SLUG", "the App's URL name")?,
                    private_key_file: PathBuf::from(required(
                        "TENKI_GITHUB_PRIVATE_KEY_FILE",
                        "the path of the App's private key (PEM)",
                    )?),
                    client_id: required("TENKI_GITHUB_CLIENT_ID", "the App's client id")?,
                    client_secret: SecretString::from(required(
                        "TENKI_GITHUB_CLIENT_SECRET",
                        "the App's client secret",
                    )?),
                    api_url: get("TENKI_GITHUB_API_URL", "https://api.github.com"),
                    web_url: get("TENKI_GITHUB_WEB_URL", "https://github.com"),
                })
            }
        };
        Ok(Self {
            mode,
            trusted_proxies,
            metrics_token: optional("TENKI_METRICS_TOKEN").map(SecretString::from),
            sign_ups_per_address: parse_setting(
                &get,
                "TENKI_SIGN_UPS_PER_ADDRESS",
                &tenki_core::identity::MAX_SIGN_UPS_PER_ADDRESS.to_string(),
            )?,
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
            github_webhook_secret: SecretString::from(
                github_webhook_secret.unwrap_or_else(|| SANDBOX_WEBHOOK_SECRET.to_owned()),
            ),
            worker_concurrency: parse_setting(&get, "TENKI_WORKER_CONCURRENCY", "4")?,
            delivery_concurrency: parse_setting(&get, "TENKI_DELIVERY_CONCURRENCY", "16")?,
            stripe_secret_key,
            stripe_webhook_secret: SecretString::from(
                stripe_webhook_secret.unwrap_or_else(|| SANDBOX_STRIPE_WEBHOOK_SECRET.to_owned()),
            ),
            stripe_api_url: optional("TENKI_STRIPE_API_URL"),
            internal_token: optional("TENKI_INTERNAL_TOKEN")
                .or_else(|| (mode == Mode::Sandbox).then(|| SANDBOX_INTERNAL_TOKEN.to_owned()))
                .map(SecretString::from),
            smtp_url: optional("TENKI_SMTP_URL").map(SecretString::from),
            mail_from: get("TENKI_MAIL_FROM", "Tenki <billing@tenki.localhost>"),
            github_app,
            secret_key: SecretString::from(get("TENKI_SECRET_KEY", SANDBOX_SECRET_KEY)),
            kubeconfig: optional("TENKI_KUBECONFIG").map(|path| PathBuf::from(path.trim())),
            runner_image: get("TENKI_RUNNER_IMAGE", DEFAULT_RUNNER_IMAGE),
            capacity: tenki_core::admission::Capacity {
                x64_vcpus: optional_number(&optional, "TENKI_CAPACITY_X64_VCPUS")?,
                macos_vcpus: optional_number(&optional, "TENKI_CAPACITY_MACOS_VCPUS")?,
            },
            kratos_public_url: optional("TENKI_KRATOS_PUBLIC_URL")
                .map(|url| url.trim().trim_end_matches('/').to_owned()),
        })
    }

    /// The GitHub App Tenki talks to: the real one, or in the sandbox the double served under
    /// [`SANDBOX_GITHUB_PATH`] with its built-in key.
    pub fn github_app_config(&self) -> anyhow::Result<tenki_core::github::client::GitHubAppConfig> {
        use anyhow::Context as _;
        use tenki_core::github::client::GitHubAppConfig;
        Ok(match &self.github_app {
            Some(app) => GitHubAppConfig {
                app_id: app.app_id,
                slug: app.slug.clone(),
                private_key_pem: SecretString::from(
                    std::fs::read_to_string(&app.private_key_file).with_context(|| {
                        format!(
                            "reading the GitHub App private key (TENKI_GITHUB_PRIVATE_KEY_FILE={})",
                            app.private_key_file.display()
                        )
                    })?,
                ),
                client_id: SecretString::from(app.client_id.clone()),
                client_secret: app.client_secret.clone(),
                api_url: app.api_url.clone(),
                web_url: app.web_url.clone(),
            },
            None => {
                let web_url = format!(
                    "{}{SANDBOX_GITHUB_PATH}",
                    self.public_url.trim_end_matches('/')
                );
                GitHubAppConfig {
                    app_id: crate::sandbox::github::APP_ID,
                    slug: crate::sandbox::github::APP_SLUG.to_owned(),
                    private_key_pem: SecretString::from(crate::sandbox::github::APP_PRIVATE_KEY),
                    client_id: SecretString::from(crate::sandbox::github::CLIENT_ID),
                    client_secret: SecretString::from(crate::sandbox::github::CLIENT_SECRET),
                    api_url: format!("{web_url}/api"),
                    web_url,
                }
            }
        })
    }

    /// Where the runners' cluster is: `TENKI_KUBECONFIG`, else in production the cluster Tenki
    /// runs in, else (the sandbox) the Kubernetes double this server serves.
    pub fn cluster_access(&self) -> tenki_core::runners::kubernetes::ClusterAccess {
        use tenki_core::runners::kubernetes::ClusterAccess;
        match (&self.kubeconfig, self.mode) {
            (Some(path), _) => ClusterAccess::Kubeconfig(path.clone()),
            (None, Mode::Production) => ClusterAccess::InCluster,
            (None, Mode::Sandbox) => ClusterAccess::Sandbox(format!(
                "{}{SANDBOX_KUBERNETES_PATH}",
                self.public_url.trim_end_matches('/')
            )),
        }
    }

    /// The Stripe Tenki talks to: the real API with `TENKI_STRIPE_SECRET_KEY`, or in the sandbox
    /// the double served under [`SANDBOX_STRIPE_PATH`].
    pub fn stripe_config(&self) -> tenki_core::billing::stripe::StripeConfig {
        use tenki_core::billing::stripe::StripeConfig;
        match &self.stripe_secret_key {
            Some(key) => StripeConfig {
                secret_key: key.clone(),
                api_base: self.stripe_api_url.clone(),
            },
            None => StripeConfig {
                secret_key: SecretString::from(crate::sandbox::stripe::SECRET_KEY),
                api_base: Some(self.sandbox_stripe_url()),
            },
        }
    }

    /// Where the owners' notifications are e-mailed: `TENKI_SMTP_URL`, else the log in the
    /// sandbox, else nowhere (production without SMTP keeps them on the dashboard).
    pub fn mailer(
        &self,
    ) -> Result<tenki_core::billing::mail::Mailer, tenki_core::billing::mail::MailError> {
        use tenki_core::billing::mail::Mailer;
        match (&self.smtp_url, self.mode) {
            (Some(url), _) => Mailer::smtp(url.expose_secret(), &self.mail_from, &self.public_url),
            (None, Mode::Sandbox) => Ok(Mailer::Log {
                dashboard_url: self.public_url.trim_end_matches('/').to_owned(),
            }),
            (None, Mode::Production) => {
                tracing::warn!("TENKI_SMTP_URL is unset: notifications are not e-mailed");
                Ok(Mailer::Off)
            }
        }
    }

    /// Who signs people in: Ory Kratos with `TENKI_KRATOS_PUBLIC_URL` (the double under
    /// [`SANDBOX_KRATOS_PATH`] for `sandbox`), else the built-in identity.
    pub fn identity_provider(
        &self,
    ) -> Result<tenki_core::identity::IdentityProvider, tenki_core::identity::kratos::KratosError>
    {
        use tenki_core::identity::{IdentityProvider, kratos::Kratos};
        let url = match self.kratos_public_url.as_deref() {
            None => return Ok(IdentityProvider::BuiltIn),
            Some(KRATOS_SANDBOX) => self.sandbox_kratos_url(),
            Some(url) => url.to_owned(),
        };
        Ok(IdentityProvider::Kratos(std::sync::Arc::new(Kratos::new(
            &url,
        )?)))
    }

    /// True while the Kratos double signs people in (`TENKI_KRATOS_PUBLIC_URL=sandbox`). Never
    /// in production, which refuses that value.
    pub fn kratos_sandbox(&self) -> bool {
        self.mode == Mode::Sandbox && self.kratos_public_url.as_deref() == Some(KRATOS_SANDBOX)
    }

    /// Where the Kratos double answers on this server.
    pub fn sandbox_kratos_url(&self) -> String {
        format!(
            "{}{SANDBOX_KRATOS_PATH}",
            self.public_url.trim_end_matches('/')
        )
    }

    /// Where the Stripe double answers on this server.
    pub fn sandbox_stripe_url(&self) -> String {
        format!(
            "{}{SANDBOX_STRIPE_PATH}",
            self.public_url.trim_end_matches('/')
        )
    }

    /// True while no Stripe key is configured, in sandbox mode: the Stripe double answers
    /// instead. Never in production (which requires the key).
    pub fn stripe_sandbox(&self) -> bool {
        self.mode == Mode::Sandbox && self.stripe_secret_key.is_none()
    }

    /// True while the Kubernetes double stands in for a cluster. Never in production.
    pub fn kubernetes_sandbox(&self) -> bool {
        self.mode == Mode::Sandbox && self.kubeconfig.is_none()
    }

    /// True while GitHub or Stripe is not configured: the dashboard shows a "Sandbox" badge.
    pub fn sandbox(&self) -> bool {
        self.github_sandbox() || self.stripe_secret_key.is_none()
    }

    /// True while no real GitHub App is configured, in sandbox mode: the GitHub double answers
    /// instead. Never in production.
    pub fn github_sandbox(&self) -> bool {
        self.mode == Mode::Sandbox && self.github_app.is_none()
    }

    /// Cookies carry `Secure` when customers reach Tenki over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// Every setting production needs, and none with a sandbox value: the sandbox's committed keys
/// can never sign or verify anything for real customers.
fn check_production(
    optional: &impl Fn(&'static str) -> Option<String>,
) -> Result<(), SettingsError> {
    const REQUIRED: [(&str, &str); 11] = [
        ("TENKI_GITHUB_APP_ID", "the GitHub App's id"),
        ("TENKI_GITHUB_APP_SLUG", "the GitHub App's URL name"),
        (
            "TENKI_GITHUB_PRIVATE_KEY_FILE",
            "the GitHub App's private key (PEM)",
        ),
        ("TENKI_GITHUB_CLIENT_ID", "the GitHub App's client id"),
        (
            "TENKI_GITHUB_CLIENT_SECRET",
            "the GitHub App's client secret",
        ),
        (
            "TENKI_GITHUB_WEBHOOK_SECRET",
            "the GitHub App's webhook secret",
        ),
        ("TENKI_STRIPE_SECRET_KEY", "Stripe's secret key"),
        (
            "TENKI_STRIPE_WEBHOOK_SECRET",
            "the Stripe webhook endpoint's signing secret",
        ),
        (
            "TENKI_SECRET_KEY",
            "a long random secret that signs onboarding links",
        ),
        ("TENKI_METRICS_TOKEN", "the bearer token /metrics requires"),
        ("TENKI_PUBLIC_URL", "the https address customers use"),
    ];
    for (name, what) in REQUIRED {
        if optional(name).is_none() {
            return Err(SettingsError {
                name,
                problem: format!("required with TENKI_MODE=production: {what}"),
            });
        }
    }
    let sandbox_values = [
        ("TENKI_SECRET_KEY", SANDBOX_SECRET_KEY),
        ("TENKI_STRIPE_WEBHOOK_SECRET", SANDBOX_STRIPE_WEBHOOK_SECRET),
        (
            "TENKI_STRIPE_SECRET_KEY",
            crate::sandbox::stripe::SECRET_KEY,
        ),
        ("TENKI_INTERNAL_TOKEN", SANDBOX_INTERNAL_TOKEN),
        ("TENKI_GITHUB_WEBHOOK_SECRET", SANDBOX_WEBHOOK_SECRET),
        (
            "TENKI_GITHUB_CLIENT_SECRET",
            crate::sandbox::github::CLIENT_SECRET,
        ),
        ("TENKI_GITHUB_CLIENT_ID", crate::sandbox::github::CLIENT_ID),
        ("TENKI_KRATOS_PUBLIC_URL", KRATOS_SANDBOX),
    ];
    for (name, sandbox_value) in sandbox_values {
        if optional(name).is_some_and(|value| value.trim() == sandbox_value) {
            return Err(SettingsError {
                name,
                problem: "is the sandbox's published value; production needs its own secret"
                    .to_owned(),
            });
        }
    }
    if let Some(path) = optional("TENKI_GITHUB_PRIVATE_KEY_FILE")
        && std::fs::read_to_string(path.trim())
            .is_ok_and(|pem| pem.trim() == crate::sandbox::github::APP_PRIVATE_KEY.trim())
    {
        return Err(SettingsError {
            name: "TENKI_GITHUB_PRIVATE_KEY_FILE",
            problem: "holds the sandbox's published key; production needs the App's own".to_owned(),
        });
    }
    if optional("TENKI_PUBLIC_URL").is_some_and(|url| !url.trim().starts_with("https://")) {
        return Err(SettingsError {
            name: "TENKI_PUBLIC_URL",
            problem: "production is served over https".to_owned(),
        });
    }
    Ok(())
}

/// True when `given` is the metrics token (compared through SHA-256 digests, so the comparison
/// takes the same time whatever the prefix in common).
pub fn metrics_token_matches(expected: &SecretString, given: &str) -> bool {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(expected.expose_secret().as_bytes()) == Sha256::digest(given.as_bytes())
}

fn optional_number(
    optional: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
) -> Result<Option<i64>, SettingsError> {
    optional(name)
        .map(|raw| {
            raw.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| SettingsError {
                    name,
                    problem: format!("cannot use {raw:?}: a positive number of vCPUs"),
                })
        })
        .transpose()
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
            ("TENKI_SECRET_KEY", "long random"),
            ("TENKI_GITHUB_APP_SLUG", "tenki"),
            (
                "TENKI_GITHUB_PRIVATE_KEY_FILE",
                "/run/secrets/github-app.pem",
            ),
            ("TENKI_GITHUB_CLIENT_ID", "Iv1.abc"),
            ("TENKI_GITHUB_CLIENT_SECRET", "client secret"),
        ]);
        assert!(ok.is_ok(), "{:?}", ok.err());
    }

    #[test]
    fn a_real_github_app_needs_its_key_client_and_secret_key() {
        let err = settings(&[
            ("TENKI_GITHUB_APP_ID", "12345"),
            ("TENKI_GITHUB_WEBHOOK_SECRET", "s3cret"),
            ("TENKI_SECRET_KEY", "long random"),
            ("TENKI_GITHUB_APP_SLUG", "tenki"),
        ])
        .expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("TENKI_GITHUB_PRIVATE_KEY_FILE:"),
            "{err}"
        );
    }

    fn production(
        missing: &str,
        overrides: &[(&'static str, String)],
    ) -> Vec<(&'static str, String)> {
        let key = std::env::temp_dir().join(format!("tenki-test-key-{}.pem", std::process::id()));
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nnot the sandbox's\n-----END PRIVATE KEY-----\n",
        )
        .expect("write key");
        let mut pairs: Vec<(&'static str, String)> = vec![
            ("TENKI_MODE", "production".to_owned()),
            ("TENKI_GITHUB_APP_ID", "12345".to_owned()),
            ("TENKI_GITHUB_APP_SLUG", "tenki".to_owned()),
            ("TENKI_GITHUB_PRIVATE_KEY_FILE", key.display().to_string()),
            ("TENKI_GITHUB_CLIENT_ID", "Iv1.real".to_owned()),
            (
                "TENKI_GITHUB_CLIENT_SECRET",
                "real client secret".to_owned(),
            ),
            (
                "TENKI_GITHUB_WEBHOOK_SECRET",
                "real webhook secret".to_owned(),
            ),
            ("TENKI_STRIPE_SECRET_KEY", "sk_live_real".to_owned()),
            ("TENKI_STRIPE_WEBHOOK_SECRET", "whsec_real".to_owned()),
            (
                "TENKI_SECRET_KEY",
                "a long random production secret".to_owned(),
            ),
            ("TENKI_METRICS_TOKEN", "metrics token".to_owned()),
            ("TENKI_PUBLIC_URL", "https://app.tenki.cloud".to_owned()),
        ];
        pairs.retain(|(name, _)| *name != missing);
        for (name, value) in overrides {
            pairs.retain(|(n, _)| n != name);
            pairs.push((name, value.clone()));
        }
        pairs
    }

    fn settings_of(pairs: &[(&'static str, String)]) -> Result<Settings, SettingsError> {
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        settings(&borrowed)
    }

    #[test]
    fn production_starts_with_every_real_setting_and_no_sandbox() {
        let settings = settings_of(&production("", &[])).expect("complete");
        assert_eq!(settings.mode, Mode::Production);
        assert!(!settings.github_sandbox());
        assert!(!settings.sandbox());
    }

    #[test]
    fn production_refuses_to_start_naming_each_missing_setting() {
        for missing in [
            "TENKI_GITHUB_APP_ID",
            "TENKI_GITHUB_WEBHOOK_SECRET",
            "TENKI_STRIPE_SECRET_KEY",
            "TENKI_STRIPE_WEBHOOK_SECRET",
            "TENKI_SECRET_KEY",
            "TENKI_METRICS_TOKEN",
            "TENKI_PUBLIC_URL",
        ] {
            let err = settings_of(&production(missing, &[])).expect_err(missing);
            assert!(err.to_string().starts_with(&format!("{missing}:")), "{err}");
        }
    }

    #[test]
    fn production_refuses_the_sandboxs_published_secrets() {
        for (name, value) in [
            ("TENKI_SECRET_KEY", SANDBOX_SECRET_KEY),
            ("TENKI_STRIPE_WEBHOOK_SECRET", SANDBOX_STRIPE_WEBHOOK_SECRET),
            (
                "TENKI_STRIPE_SECRET_KEY",
                crate::sandbox::stripe::SECRET_KEY,
            ),
            ("TENKI_INTERNAL_TOKEN", SANDBOX_INTERNAL_TOKEN),
            ("TENKI_GITHUB_WEBHOOK_SECRET", SANDBOX_WEBHOOK_SECRET),
            (
                "TENKI_GITHUB_CLIENT_SECRET",
                crate::sandbox::github::CLIENT_SECRET,
            ),
            ("TENKI_KRATOS_PUBLIC_URL", KRATOS_SANDBOX),
        ] {
            let err = settings_of(&production("", &[(name, value.to_owned())])).expect_err(name);
            assert!(err.to_string().starts_with(&format!("{name}:")), "{err}");
        }
        let key =
            std::env::temp_dir().join(format!("tenki-sandbox-key-{}.pem", std::process::id()));
        std::fs::write(&key, crate::sandbox::github::APP_PRIVATE_KEY).expect("write key");
        let err = settings_of(&production(
            "",
            &[("TENKI_GITHUB_PRIVATE_KEY_FILE", key.display().to_string())],
        ))
        .expect_err("sandbox key");
        assert!(
            err.to_string()
                .starts_with("TENKI_GITHUB_PRIVATE_KEY_FILE:"),
            "{err}"
        );
    }

    #[test]
    fn trusted_proxies_are_cidrs_or_addresses() {
        let valid = settings(&[("TENKI_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")]).expect("valid");
        assert_eq!(valid.trusted_proxies.len(), 2);
        let err = settings(&[("TENKI_TRUSTED_PROXIES", "ten.0.0.0/8")]).expect_err("refused");
        assert!(
            err.to_string().starts_with("TENKI_TRUSTED_PROXIES:"),
            "{err}"
        );
    }

    #[test]
    fn the_metrics_token_is_compared_whole() {
        let token = SecretString::from("s3cret-token");
        assert!(metrics_token_matches(&token, "s3cret-token"));
        assert!(!metrics_token_matches(&token, "s3cret"));
        assert!(!metrics_token_matches(&token, ""));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = settings(&[("TENKI_ADDR", "not an address")]).expect_err("refused");
        assert!(err.to_string().starts_with("TENKI_ADDR:"), "{err}");
        let err = settings(&[("TENKI_LOG_FORMAT", "xml")]).expect_err("refused");
        assert!(err.to_string().starts_with("TENKI_LOG_FORMAT:"), "{err}");
    }
}
