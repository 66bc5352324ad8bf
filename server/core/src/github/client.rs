//! Calls to the GitHub API through octocrab: the App's JWT, installation tokens cached until
//! shortly before they expire, user tokens from the onboarding code, rate limits respected until
//! their reset, and GitHub's refusals turned into messages a customer can act on.
//!
//! The same code talks to api.github.com and to the sandbox double; only the base URLs differ.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone as _, Utc};
use http::{Method, StatusCode};
use octocrab::Octocrab;
use octocrab::auth::ExchangeWebFlowCodeBuilder;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Installation tokens live an hour; a cached one is replaced this long before it expires, so
/// a call never starts with a token about to lapse.
const TOKEN_REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// How the server reaches its GitHub App.
#[derive(Debug, Clone)]
pub struct GitHubAppConfig {
    /// The App's numeric id.
    pub app_id: u64,
    /// The App's URL name: its install page is `{web_url}/apps/{slug}/installations/new`.
    pub slug: String,
    /// The App's private key (PEM), which signs the JWT.
    pub private_key_pem: SecretString,
    /// The App's OAuth client id and secret, for the onboarding code exchange.
    pub client_id: SecretString,
    pub client_secret: SecretString,
    /// `https://api.github.com`, or the sandbox double's API.
    pub api_url: String,
    /// `https://github.com`, or the sandbox double's pages.
    pub web_url: String,
}

/// A GitHub call that did not give an answer Tenki can use.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// GitHub's rate limit is spent; nothing is sent to GitHub before `until`.
    #[error("GitHub's API rate limit is used up until {until}; Tenki waits and tries again then")]
    RateLimited { until: DateTime<Utc> },
    /// GitHub answered with an error status.
    #[error("{}", customer_message(*.status, .message))]
    Refused { status: StatusCode, message: String },
    /// The onboarding code was refused (used already, or expired).
    #[error(
        "GitHub did not accept the authorization code (it is used or expired): connect GitHub again"
    )]
    BadCode,
    /// No answer, or one that is not what GitHub documents.
    #[error("cannot reach GitHub: {0}")]
    Transport(String),
}

/// What kind of refusal GitHub's answer is: a stable code (the dashboard words it for the
/// customer) and what the customer can do about it (SPEC §2).
fn refusal_kind(status: StatusCode, message: &str) -> (&'static str, &'static str) {
    let lower = message.to_lowercase();
    if lower.contains("resource not accessible by integration") {
        (
            "github_permission",
            "the Tenki App lacks a permission it needs: accept the App's requested permissions in your GitHub settings",
        )
    } else if lower.contains("ip allow list") {
        (
            "github_ip_allow_list",
            "your organization's IP allow list blocks Tenki: allow the GitHub App's IP addresses",
        )
    } else if lower.contains("self-hosted runners") {
        (
            "github_runners_disabled",
            "self-hosted runners are disabled for this repository or organization: allow them in the Actions settings",
        )
    } else if lower.contains("actions") && lower.contains("disabled") {
        (
            "github_actions_disabled",
            "GitHub Actions is disabled for this repository: enable it in the repository's settings",
        )
    } else if lower.contains("suspended") {
        (
            "github_suspended",
            "the Tenki App installation is suspended: unsuspend it in your GitHub settings",
        )
    } else if status == StatusCode::NOT_FOUND {
        (
            "github_not_found",
            "GitHub cannot find it, or the Tenki App has no access to it",
        )
    } else if status == StatusCode::UNAUTHORIZED {
        (
            "github_credentials",
            "GitHub did not accept Tenki's credentials",
        )
    } else {
        ("github_refused", "GitHub refused the request")
    }
}

fn customer_message(status: StatusCode, message: &str) -> String {
    let (_, advice) = refusal_kind(status, message);
    format!("{advice} (GitHub said {}: {message})", status.as_u16())
}

impl GitHubError {
    /// A stable code for the kind of failure, for pages and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "github_rate_limited",
            Self::Refused { status, message } => refusal_kind(*status, message).0,
            Self::BadCode => "bad_code",
            Self::Transport(_) => "github_unreachable",
        }
    }
}

/// The GitHub App client, shared by every request and task of this process.
#[derive(Clone)]
pub struct GitHubApp {
    config: GitHubAppConfig,
    /// Authenticated as the App (JWT).
    app: Octocrab,
    /// One client per installation; each keeps its installation token until shortly before
    /// it expires. Shared, not cloned: a cloned octocrab client copies its token cache, and
    /// tokens fetched through the copy would be lost.
    installations: Arc<Mutex<HashMap<u64, Arc<Octocrab>>>>,
    /// Nothing is sent to GitHub before this instant (its rate limit reset).
    paused_until: Arc<Mutex<Option<DateTime<Utc>>>>,
}

impl std::fmt::Debug for GitHubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubApp")
            .field("app_id", &self.config.app_id)
            .field("api_url", &self.config.api_url)
            .finish_non_exhaustive()
    }
}

/// A page of a list and the cursor or page of the next one, from GitHub's `Link` header.
#[derive(Debug)]
pub struct Page<T> {
    pub items: T,
    pub next: Option<String>,
}

impl GitHubApp {
    /// A client for the App described by `config`.
    pub fn new(config: GitHubAppConfig) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let key =
            octocrab::EncodingKey::from_rsa_pem(config.private_key_pem.expose_secret().as_bytes())
                .context("the GitHub App private key is not an RSA key in PEM format")?;
        let app = Octocrab::builder()
            .base_uri(config.api_url.as_str())
            .context("the GitHub API URL is not a valid URL")?
            .app(config.app_id.into(), key)
            .build()
            .context("building the GitHub App client")?;
        Ok(Self {
            config,
            app,
            installations: Arc::default(),
            paused_until: Arc::default(),
        })
    }

    /// The App's settings.
    pub fn config(&self) -> &GitHubAppConfig {
        &self.config
    }

    /// The App's install page, carrying Tenki's `state`.
    pub fn install_url(&self, state: &str) -> String {
        format!(
            "{}/apps/{}/installations/new?state={state}",
            self.config.web_url.trim_end_matches('/'),
            self.config.slug
        )
    }

    /// Until when Tenki holds back from GitHub after its rate limit ran out, if it does.
    pub fn paused_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let paused = *self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        paused.filter(|until| *until > now)
    }

    /// Calls GitHub as the App (JWT).
    pub async fn as_app<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<Page<T>, GitHubError> {
        self.call(&self.app.clone(), method, path, body).await
    }

    /// Calls GitHub as installation `installation_id`, with its cached token.
    pub async fn as_installation<T: DeserializeOwned>(
        &self,
        installation_id: i64,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<Page<T>, GitHubError> {
        let client = self.installation_client(installation_id).await?;
        self.call(&client, method, path, body).await
    }

    /// Calls GitHub as a user, with the token from [`GitHubApp::exchange_code`].
    pub async fn as_user<T: DeserializeOwned>(
        &self,
        user_token: &SecretString,
        method: Method,
        path: &str,
    ) -> Result<Page<T>, GitHubError> {
        let client = self
            .app
            .user_access_token(user_token.clone())
            .map_err(|e| GitHubError::Transport(e.to_string()))?;
        self.call(&client, method, path, None::<&()>).await
    }

    /// Exchanges the onboarding `code` for a user access token.
    pub async fn exchange_code(&self, code: &str) -> Result<SecretString, GitHubError> {
        self.hold_back_if_paused()?;
        let web = Octocrab::builder()
            .base_uri(self.config.web_url.as_str())
            .map_err(|e| GitHubError::Transport(e.to_string()))?
            .add_header(http::header::ACCEPT, "application/json".to_owned())
            // A code can be exchanged once: a retry after a lost answer would spend it twice.
            .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
            .build()
            .map_err(|e| GitHubError::Transport(e.to_string()))?;
        match ExchangeWebFlowCodeBuilder::new(
            &web,
            &self.config.client_id,
            &self.config.client_secret,
            code,
        )
        .send()
        .await
        {
            Ok(oauth) => Ok(oauth.access_token),
            // GitHub answers a bad code with 200 and `{"error": "bad_verification_code"}`,
            // which is not an access token.
            Err(octocrab::Error::Serde { .. } | octocrab::Error::Json { .. }) => {
                Err(GitHubError::BadCode)
            }
            Err(e) => Err(GitHubError::Transport(e.to_string())),
        }
    }

    async fn installation_client(
        &self,
        installation_id: i64,
    ) -> Result<Arc<Octocrab>, GitHubError> {
        let id = u64::try_from(installation_id).map_err(|_| {
            GitHubError::Transport(format!("bad installation id {installation_id}"))
        })?;
        let existing = self
            .installations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned();
        let client = match existing {
            Some(client) => client,
            None => {
                let client = Arc::new(
                    self.app
                        .installation(id.into())
                        .map_err(|e| GitHubError::Transport(e.to_string()))?,
                );
                self.installations
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(id, Arc::clone(&client));
                client
            }
        };
        self.hold_back_if_paused()?;
        // Fetches a token only when the cached one is missing or within the margin of expiring;
        // octocrab keeps it in `client` for the calls that follow.
        match client
            .installation_token_with_buffer(TOKEN_REFRESH_MARGIN)
            .await
        {
            Ok(_) => Ok(client),
            Err(octocrab::Error::GitHub { source, .. }) => {
                let reset = source
                    .headers
                    .as_ref()
                    .and_then(|headers| rate_limit_reset(source.status_code, headers, Utc::now()));
                match reset {
                    Some(until) => Err(self.pause(until)),
                    None => Err(GitHubError::Refused {
                        status: source.status_code,
                        message: source.message,
                    }),
                }
            }
            Err(e) => Err(GitHubError::Transport(e.to_string())),
        }
    }

    fn pause(&self, until: DateTime<Utc>) -> GitHubError {
        *self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(until);
        tracing::warn!(%until, "GitHub rate limit reached; holding back until its reset");
        GitHubError::RateLimited { until }
    }

    fn hold_back_if_paused(&self) -> Result<(), GitHubError> {
        match self.paused_until(Utc::now()) {
            Some(until) => Err(GitHubError::RateLimited { until }),
            None => Ok(()),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        client: &Octocrab,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<Page<T>, GitHubError> {
        self.hold_back_if_paused()?;
        let transport = |e: octocrab::Error| GitHubError::Transport(e.to_string());
        let response = match method {
            Method::GET => client._get(path).await,
            Method::POST => client._post(path, body).await,
            Method::DELETE => client._delete(path, body).await,
            other => {
                return Err(GitHubError::Transport(format!(
                    "unsupported method {other}"
                )));
            }
        }
        .map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = client.body_to_string(response).await.map_err(transport)?;
        if let Some(until) = rate_limit_reset(status, &headers, Utc::now()) {
            return Err(self.pause(until));
        }
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or(text);
            return Err(GitHubError::Refused { status, message });
        }
        // 202/204 answers have no body.
        let text = if text.trim().is_empty() {
            "null"
        } else {
            text.as_str()
        };
        let items = serde_json::from_str(text)
            .map_err(|e| GitHubError::Transport(format!("unexpected answer from {path}: {e}")))?;
        Ok(Page {
            items,
            next: next_link(&headers),
        })
    }
}

/// When a response says the rate limit is spent, the instant it resets: GitHub answers 403 or
/// 429 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset` (epoch seconds), or with
/// `retry-after` (seconds) for secondary limits.
fn rate_limit_reset(
    status: StatusCode,
    headers: &http::HeaderMap,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(seconds) = header("retry-after").and_then(|v| v.trim().parse::<i64>().ok()) {
        return Some(now + chrono::Duration::seconds(seconds.max(1)));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        let reset = header("x-ratelimit-reset")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .and_then(|epoch| Utc.timestamp_opt(epoch, 0).single())
            .unwrap_or(now + chrono::Duration::seconds(60));
        return Some(reset.max(now + chrono::Duration::seconds(1)));
    }
    None
}

/// The `rel="next"` URL of GitHub's `Link` header, as a path with its query.
fn next_link(headers: &http::HeaderMap) -> Option<String> {
    let link = headers.get(http::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, rel) = part.split_once(';')?;
        if !rel.contains("rel=\"next\"") {
            return None;
        }
        let url = url.trim().trim_start_matches('<').trim_end_matches('>');
        let uri: http::Uri = url.parse().ok()?;
        Some(uri.path_and_query()?.as_str().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_rate_limit_pauses_until_its_reset() {
        let now = Utc.timestamp_opt(1_800_000_000, 0).single().expect("valid");
        let mut headers = http::HeaderMap::new();
        headers.insert("x-ratelimit-remaining", "0".parse().expect("header"));
        headers.insert("x-ratelimit-reset", "1800000600".parse().expect("header"));
        assert_eq!(
            rate_limit_reset(StatusCode::FORBIDDEN, &headers, now),
            Some(now + chrono::Duration::seconds(600))
        );
        // A 403 with budget left is a permission problem, not a rate limit.
        headers.insert("x-ratelimit-remaining", "12".parse().expect("header"));
        assert_eq!(rate_limit_reset(StatusCode::FORBIDDEN, &headers, now), None);
        let mut secondary = http::HeaderMap::new();
        secondary.insert("retry-after", "30".parse().expect("header"));
        assert_eq!(
            rate_limit_reset(StatusCode::TOO_MANY_REQUESTS, &secondary, now),
            Some(now + chrono::Duration::seconds(30))
        );
    }

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::LINK,
            "<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12>; rel=\"next\""
                .parse()
                .expect("header"),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("/app/hook/deliveries?per_page=100&cursor=v1_12")
        );
    }

    #[test]
    fn refusals_say_what_the_customer_can_do() {
        let message = customer_message(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        );
        assert!(message.contains("lacks a permission"), "{message}");
        let message = customer_message(
            StatusCode::FORBIDDEN,
            "This installation has been suspended",
        );
        assert!(message.contains("unsuspend"), "{message}");
    }
}
