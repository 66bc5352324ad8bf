//! The Tenki server process: settings, the HTTP router (dashboard, server functions, health,
//! metrics) and graceful shutdown. The business lives in `tenki-core`; the pages in `app`.

pub mod admin;
pub mod exports;
pub mod github_connect;
pub mod health;
pub mod sandbox;
pub mod settings;
pub mod telemetry;
pub mod webhooks;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use app::ServerContext;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{HeaderName, header};
use axum::routing::{get, post};
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::ExposeSecret;
use tenki_core::Core;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::settings::Settings;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub core: Core,
    pub context: ServerContext,
    pub metrics: PrometheusHandle,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// The name the hydration script and the WASM bundle are served under (`/pkg/tenki.*`).
pub const BUNDLE_NAME: &str = "tenki";

/// The dashboard's CSS, generated at build time from the classes used in `app/src`.
const STYLESHEET: &str = include_str!(concat!(env!("OUT_DIR"), "/tenki.css"));

/// Connects to PostgreSQL and TigerBeetle, applies the migrations and creates the fixed ledger
/// accounts (both idempotent, so every start may do it).
pub async fn connect(settings: &Settings) -> anyhow::Result<Core> {
    let db = tenki_core::db::pool(
        settings.database_url.expose_secret(),
        settings.database_max_connections,
    )
    .context("configuring the PostgreSQL pool (TENKI_DATABASE_URL)")?;
    tenki_core::db::migrate(&db)
        .await
        .context("applying database migrations (is PostgreSQL up at TENKI_DATABASE_URL?)")?;
    let ledger = open_ledger(settings).await?;
    let github = tenki_core::github_api::GitHubApp::new(settings.github_app_config()?)
        .context("configuring the GitHub App client")?;
    Ok(Core { db, ledger, github })
}

/// A TigerBeetle client with the fixed ledger accounts in place. TigerBeetle takes a few seconds
/// to start, so this waits up to a minute for it before giving up.
pub async fn open_ledger(settings: &Settings) -> anyhow::Result<tenki_core::ledger::Ledger> {
    let ledger = tenki_core::ledger::Ledger::connect(
        settings.tigerbeetle_cluster_id,
        &settings.tigerbeetle_addresses,
    )
    .context("creating the TigerBeetle client (TENKI_TIGERBEETLE_ADDRESSES)")?;
    let mut attempt = 1;
    loop {
        match ledger.ensure_fixed_accounts().await {
            Ok(()) => return Ok(ledger),
            Err(e) if attempt < 12 => {
                tracing::warn!(attempt, "TigerBeetle not ready yet: {e}");
                attempt += 1;
            }
            Err(e) => {
                return Err(e).context(format!(
                    "creating the fixed ledger accounts: is TigerBeetle up at {}?",
                    settings.tigerbeetle_addresses
                ));
            }
        }
    }
}

/// The GitHub double for a sandbox server (no real GitHub App configured), else `None`.
pub fn sandbox_github(settings: &Settings) -> Option<sandbox::github::GitHubDouble> {
    settings.github_sandbox().then(|| {
        sandbox::github::GitHubDouble::new(
            &settings.public_url,
            settings.github_webhook_secret.clone(),
        )
    })
}

/// The whole HTTP surface of Tenki; with `sandbox_github`, the GitHub double too, under
/// [`settings::SANDBOX_GITHUB_PATH`].
pub fn router(
    settings: &Settings,
    core: Core,
    sandbox_github: Option<sandbox::github::GitHubDouble>,
) -> Router {
    let leptos_options = LeptosOptions::builder()
        .output_name(BUNDLE_NAME)
        .site_root(settings.site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(settings.addr)
        .build();
    let context = ServerContext {
        core: core.clone(),
        sandbox: settings.sandbox(),
        secure_cookies: settings.secure_cookies(),
        github_webhook_secret: settings.github_webhook_secret.clone(),
        state_key: settings.secret_key.clone(),
        sandbox_github: sandbox_github.is_some(),
    };
    let state = AppState {
        leptos_options: leptos_options.clone(),
        core,
        context: context.clone(),
        metrics: telemetry::metrics_handle(),
    };
    let routes = generate_route_list(app::App);
    let provide = {
        let context = context.clone();
        move || provide_context(context.clone())
    };
    let request_id = HeaderName::from_static("x-request-id");
    // Webhooks carry up to 25 MB; everything else is held to TENKI_MAX_BODY_BYTES.
    let webhooks = Router::new()
        .route("/webhooks/github", post(webhooks::github))
        .layer(DefaultBodyLimit::max(webhooks::MAX_DELIVERY_BYTES));
    let pages = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/pkg/tenki.css", get(stylesheet))
        .route("/usage/export.csv", get(exports::usage_csv))
        .route("/github/connect", get(github_connect::connect))
        .route("/github/setup", get(github_connect::setup))
        .leptos_routes_with_context(&state, routes, provide.clone(), {
            let leptos_options = leptos_options.clone();
            move || app::shell(leptos_options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(provide, app::shell))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(settings.max_body_bytes));
    let pages = match sandbox_github {
        Some(double) => pages.nest_service(settings::SANDBOX_GITHUB_PATH, double.router()),
        None => pages,
    };
    webhooks
        .merge(pages)
        .layer(axum::middleware::from_fn(telemetry::track_requests))
        .layer(CompressionLayer::new())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                let id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

async fn stylesheet() -> impl axum::response::IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLESHEET,
    )
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
    // Long-lived connections must not hold the process forever.
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(20)).await;
        tracing::warn!("requests still open after 20 s; exiting");
        std::process::exit(0);
    });
}
