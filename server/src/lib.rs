//! The Tenki server process: settings, the HTTP router (dashboard, server functions, health,
//! metrics) and graceful shutdown. The business lives in `tenki-core`; the pages in `app`.

pub mod addons;
pub mod admin;
pub mod billing;
pub mod exports;
pub mod extract;
pub mod github_connect;
pub mod health;
pub mod internal;
pub mod members;
pub mod sandbox;
pub mod security;
pub mod settings;
pub mod spending;
pub mod telemetry;
pub mod verification;
pub mod webhooks;
pub mod workspace;

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
    /// `/metrics` answers only with this bearer token; `None` (the sandbox): open.
    pub metrics_token: Option<secrecy::SecretString>,
    /// Verifies Stripe's webhook events.
    pub stripe_webhook_secret: secrecy::SecretString,
    /// Where customers reach this server (`TENKI_PUBLIC_URL`): Stripe sends browsers back there.
    pub public_url: String,
    /// The bearer token of `/internal/*` (`TENKI_INTERNAL_TOKEN`); `None`: they answer nobody.
    pub internal_token: Option<secrecy::SecretString>,
}

/// The doubles a sandbox server serves, each `None` when the real service is configured (and
/// all of them in production).
#[derive(Debug, Clone, Default)]
pub struct Doubles {
    pub github: Option<sandbox::github::GitHubDouble>,
    pub kubernetes: Option<sandbox::kubernetes::KubernetesDouble>,
    pub stripe: Option<sandbox::stripe::StripeDouble>,
    pub storage: Option<sandbox::storage::StorageDouble>,
    pub kratos: Option<sandbox::kratos::KratosDouble>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// The name the hydration script and the WASM bundle are served under (`/pkg/tenki.*`) when
/// the site was built without a content hash.
pub const BUNDLE_NAME: &str = "tenki";

/// The bundle's name as `scripts/build.sh` wrote it in `pkg/BUNDLE`: `tenki-<content hash>`, so
/// a new build is a new address and browsers may keep each one for good. [`BUNDLE_NAME`] when
/// the site has no such file.
pub fn bundle_name(site_root: &std::path::Path) -> String {
    std::fs::read_to_string(site_root.join("pkg").join("BUNDLE"))
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| {
            name.starts_with(BUNDLE_NAME)
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .unwrap_or_else(|| BUNDLE_NAME.to_owned())
}

/// Whether `path` is a content-hashed bundle file (`/pkg/tenki-<16 hex digits>.wasm`), which
/// never changes once built.
fn is_hashed_bundle(path: &str) -> bool {
    let Some(file) = path.strip_prefix("/pkg/") else {
        return false;
    };
    let Some(rest) = file
        .strip_prefix(BUNDLE_NAME)
        .and_then(|r| r.strip_prefix('-'))
    else {
        return false;
    };
    let hash = rest.split('.').next().unwrap_or_default();
    hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) && !rest.contains('/')
}

/// Caching of the site's files under `/pkg/`: a hashed bundle file for a year (`immutable`: the browser does
/// not even ask again), anything else revalidated on every use.
async fn cache_site_files(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    let (site_file, hashed) = (path.starts_with("/pkg/"), is_hashed_bundle(path));
    let mut response = next.run(request).await;
    if site_file && response.status().is_success() {
        let policy = if hashed {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static(policy),
        );
    }
    response
}

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
    connect_on(db, settings).await
}

/// [`connect`] with a pool already made (the tests' database).
pub async fn connect_on(db: tenki_core::PgPool, settings: &Settings) -> anyhow::Result<Core> {
    tenki_core::db::migrate(&db)
        .await
        .context("applying database migrations (is PostgreSQL up at TENKI_DATABASE_URL?)")?;
    let ledger = open_ledger(settings).await?;
    let github = tenki_core::github::client::GitHubApp::new(settings.github_app_config()?)
        .context("configuring the GitHub App client")?;
    let stripe = tenki_core::billing::stripe::Stripe::new(&settings.stripe_config())
        .context("configuring the Stripe client (TENKI_STRIPE_SECRET_KEY, TENKI_STRIPE_API_URL)")?;
    let kubernetes = tenki_core::runners::kubernetes::Kubernetes::connect(
        &settings.cluster_access(),
        &settings.runner_image,
    )
    .await
    .context("configuring the runners' Kubernetes cluster (TENKI_KUBECONFIG)")?;
    let mailer = settings
        .mailer()
        .context("configuring e-mail (TENKI_SMTP_URL, TENKI_MAIL_FROM)")?;
    let identity = settings
        .identity_provider()
        .context("configuring Ory Kratos (TENKI_KRATOS_PUBLIC_URL)")?;
    let meter = tenki_core::metering::Meter::start(db.clone(), ledger.clone());
    let deliveries = tenki_core::github::writer::DeliveryWriter::start(db.clone());
    Ok(Core {
        db,
        ledger,
        github,
        stripe,
        mailer,
        kubernetes,
        capacity: settings.capacity,
        deliveries,
        delivery_wakeup: tenki_core::github::drain::Wakeup::default(),
        admission_passes: tenki_core::admission::PassRequests::default(),
        runner_removals: tenki_core::runners::removals::RemovalRequests::default(),
        meter,
        identity,
    })
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

/// The GitHub double for a sandbox server (no real GitHub App configured), else `None`. Never
/// in production: [`Settings::github_sandbox`] is false there.
pub fn sandbox_github(settings: &Settings) -> Option<sandbox::github::GitHubDouble> {
    settings.github_sandbox().then(|| {
        sandbox::github::GitHubDouble::new(
            &settings.public_url,
            settings.github_webhook_secret.clone(),
        )
    })
}

/// A Tenki server ready to serve: its core, its router and its background worker. `main` and
/// the tests build it through [`Application::build`], so tests run what production runs.
pub struct Application {
    pub core: Core,
    pub router: Router,
    pub worker: tenki_core::queue::Worker,
    /// The GitHub double, in the sandbox.
    pub github_double: Option<sandbox::github::GitHubDouble>,
    /// The Kubernetes double, in the sandbox.
    pub kubernetes_double: Option<sandbox::kubernetes::KubernetesDouble>,
    /// The Stripe double, in the sandbox.
    pub stripe_double: Option<sandbox::stripe::StripeDouble>,
    /// The storage service double, in the sandbox: it sends samples every hour while serving.
    pub storage_double: Option<sandbox::storage::StorageDouble>,
    /// The Kratos double, with `TENKI_KRATOS_PUBLIC_URL=sandbox`.
    pub kratos_double: Option<sandbox::kratos::KratosDouble>,
    /// Tells the worker to stop (it finishes the tasks it is running).
    stop_worker: tokio::sync::watch::Sender<bool>,
    /// Tasks the worker runs at once, for a worker started again after a failure.
    worker_concurrency: usize,
    /// Deliveries the drain processes at once.
    delivery_concurrency: usize,
}

impl Application {
    /// Connects to PostgreSQL and TigerBeetle, starts the worker's schema and builds the router.
    /// `reachable_at` is where this server answers (the sandbox's GitHub double sends browsers
    /// and deliveries there); it is `TENKI_PUBLIC_URL` unless a test binds another address.
    pub async fn build(settings: &Settings, reachable_at: &str) -> anyhow::Result<Self> {
        let db = tenki_core::db::pool(
            settings.database_url.expose_secret(),
            settings.database_max_connections,
        )
        .context("configuring the PostgreSQL pool (TENKI_DATABASE_URL)")?;
        Self::build_on(db, settings, reachable_at).await
    }

    /// [`Application::build`] on a pool already made (each test has its own database).
    pub async fn build_on(
        db: tenki_core::PgPool,
        settings: &Settings,
        reachable_at: &str,
    ) -> anyhow::Result<Self> {
        let mut reachable = settings.clone();
        reachable.public_url = reachable_at.to_owned();
        let core = connect_on(db, &reachable).await?;
        let (stop_worker, _) = tokio::sync::watch::channel(false);
        let worker = tenki_core::queue::worker(
            core.clone(),
            settings.worker_concurrency,
            stopped(&stop_worker),
        )
        .await
        .context("starting the background worker")?;
        let github_double = sandbox_github(&reachable);
        if let Some(double) = &github_double {
            let restored = double
                .restore_installations(&core.db)
                .await
                .context("restoring the sandbox GitHub's installations from the database")?;
            tracing::debug!(restored, "sandbox GitHub installations restored");
        }
        let kubernetes_double = reachable
            .kubernetes_sandbox()
            .then(|| sandbox::kubernetes::KubernetesDouble::new(github_double.clone()));
        let stripe_double = reachable.stripe_sandbox().then(|| {
            sandbox::stripe::StripeDouble::new(
                &reachable.sandbox_stripe_url(),
                reachable_at,
                reachable.stripe_webhook_secret.clone(),
            )
        });
        let storage_double = match (reachable.mode, &reachable.internal_token) {
            (settings::Mode::Sandbox, Some(token)) => Some(sandbox::storage::StorageDouble::new(
                core.db.clone(),
                reachable_at,
                token.expose_secret(),
            )),
            _ => None,
        };
        let kratos_double = reachable.kratos_sandbox().then(|| {
            sandbox::kratos::KratosDouble::new(&reachable.sandbox_kratos_url(), reachable_at)
        });
        let router = router(
            settings,
            reachable_at,
            core.clone(),
            Doubles {
                github: github_double.clone(),
                kubernetes: kubernetes_double.clone(),
                stripe: stripe_double.clone(),
                storage: storage_double.clone(),
                kratos: kratos_double.clone(),
            },
        );
        Ok(Self {
            core,
            router,
            worker,
            github_double,
            kubernetes_double,
            stripe_double,
            storage_double,
            kratos_double,
            stop_worker,
            worker_concurrency: settings.worker_concurrency,
            delivery_concurrency: settings.delivery_concurrency,
        })
    }
}

/// The whole HTTP surface of Tenki, with the `doubles` given under [`settings::SANDBOX_GITHUB_PATH`],
/// [`settings::SANDBOX_KUBERNETES_PATH`] and [`settings::SANDBOX_STRIPE_PATH`].
///
/// `reachable_at` is where browsers reach this server (`TENKI_PUBLIC_URL`, or the address a test
/// bound): Stripe sends them back there.
pub fn router(settings: &Settings, reachable_at: &str, core: Core, doubles: Doubles) -> Router {
    let leptos_options = LeptosOptions::builder()
        .output_name(bundle_name(&settings.site_root))
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
        sandbox_github: doubles.github.is_some(),
        trusted_proxies: settings.trusted_proxies.clone(),
        sign_ups_per_address: settings.sign_ups_per_address,
        public_url: reachable_at.trim_end_matches('/').to_owned(),
    };
    let state = AppState {
        leptos_options: leptos_options.clone(),
        core,
        context: context.clone(),
        metrics: telemetry::metrics_handle(),
        metrics_token: settings.metrics_token.clone(),
        stripe_webhook_secret: settings.stripe_webhook_secret.clone(),
        public_url: reachable_at.trim_end_matches('/').to_owned(),
        internal_token: settings.internal_token.clone(),
    };
    let routes = generate_route_list(app::App);
    let provide = {
        let context = context.clone();
        move || {
            provide_context(context.clone());
            // The nonce the security middleware put in this response's CSP: the page's inline
            // hydration scripts carry it.
            let nonce = use_context::<axum::http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<security::CspNonce>().cloned());
            if let Some(security::CspNonce(nonce)) = nonce {
                provide_context(leptos::nonce::Nonce::from_value(nonce));
            }
        }
    };
    let request_id = HeaderName::from_static("x-request-id");
    // Webhooks carry up to 25 MB; everything else is held to TENKI_MAX_BODY_BYTES.
    let webhooks = Router::new()
        .route("/webhooks/github", post(webhooks::github))
        .route("/webhooks/stripe", post(webhooks::stripe))
        .route("/internal/storage-samples", post(internal::storage_samples))
        .layer(DefaultBodyLimit::max(webhooks::MAX_DELIVERY_BYTES));
    let pages = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/pkg/tenki.css", get(stylesheet))
        // The bundle as built, brotli or gzip as compressed at build time (not on every request).
        .route_service(
            "/pkg/{*file}",
            tower_http::services::ServeDir::new(&settings.site_root)
                .precompressed_br()
                .precompressed_gzip(),
        )
        .route("/usage/export.csv", get(exports::usage_csv))
        .route("/github/connect", get(github_connect::connect))
        .route("/github/setup", get(github_connect::setup))
        .route("/billing/add-card", post(billing::add_card))
        .route("/billing/card-added", get(billing::card_added))
        .route("/billing/manage", post(billing::manage))
        .route("/add-ons/addon", post(addons::change_addon))
        .route("/add-ons/slots", post(addons::change_slots))
        .route("/enterprise/inquiry", post(addons::enterprise_inquiry))
        .route("/settings/spending-limit", post(spending::set_limit))
        .route("/settings/workspace-name", post(workspace::rename))
        .route("/settings/members/invite", post(members::invite))
        .route("/settings/members/role", post(members::change_role))
        .route("/settings/members/remove", post(members::remove))
        .route("/join", post(members::join))
        .route("/verify-email", get(verification::verify_email))
        .route("/workspaces/switch", post(members::switch))
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
    let pages = match doubles.github {
        Some(double) => pages.nest_service(settings::SANDBOX_GITHUB_PATH, double.router()),
        None => pages,
    };
    let pages = match doubles.kubernetes {
        Some(double) => pages.nest_service(settings::SANDBOX_KUBERNETES_PATH, double.router()),
        None => pages,
    };
    let pages = match doubles.stripe {
        Some(double) => pages.nest_service(settings::SANDBOX_STRIPE_PATH, double.router()),
        None => pages,
    };
    let pages = match doubles.storage {
        Some(double) => pages.nest_service(settings::SANDBOX_STORAGE_PATH, double.router()),
        None => pages,
    };
    let pages = match doubles.kratos {
        Some(double) => pages.nest_service(settings::SANDBOX_KRATOS_PATH, double.router()),
        None => pages,
    };
    // The sandbox without SMTP writes e-mail to the log; its mailbox lets people open their links.
    let pages = if settings.mode == settings::Mode::Sandbox && settings.smtp_url.is_none() {
        pages.nest_service(
            settings::SANDBOX_MAIL_PATH,
            sandbox::mail::router(state.core.db.clone(), reachable_at),
        )
    } else {
        pages
    };
    let header_policy = security::HeaderPolicy {
        https: settings.secure_cookies(),
        // The sandbox's Kratos is this server: 'self' covers it.
        identity_origin: settings
            .kratos_public_url
            .as_deref()
            .filter(|_| !settings.kratos_sandbox())
            .and_then(security::origin_of),
    };
    // The pages' own layers: their security headers (a fresh script nonce per response), the
    // refusal of cross-site changes, cached site files, compression. A webhook's answer is a few
    // bytes of text to GitHub or Stripe and needs none of them; they cost the intake about a tenth
    // of its deliveries per second (docs/benchmarks.md, "The intake's layers").
    let pages = pages
        .layer(axum::middleware::from_fn(security::refuse_cross_site))
        .layer(axum::middleware::from_fn_with_state(
            header_policy,
            security::headers,
        ))
        .layer(axum::middleware::from_fn(cache_site_files))
        .layer(CompressionLayer::new());
    // Every route's: its metrics, a request id and a span.
    webhooks
        .merge(pages)
        .layer(axum::middleware::from_fn(telemetry::track_requests))
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

/// How long requests and background tasks in flight may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Serves `application` on `listener` until `shutdown` resolves, then stops accepting, lets the
/// requests and background tasks in flight finish for up to [`SHUTDOWN_GRACE`], and returns an
/// error if it had to cut them (the process then exits non-zero).
pub async fn run_until_stopped(
    application: Application,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_until_stopped_within(application, listener, shutdown, SHUTDOWN_GRACE).await
}

/// [`run_until_stopped`] with another grace period (tests).
pub async fn run_until_stopped_within(
    application: Application,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()> {
    let (stopping, mut stop_requested) = tokio::sync::watch::channel(false);
    let http = tokio::spawn(serve(listener, application.router, async move {
        drop(stop_requested.wait_for(|stop| *stop).await);
    }));
    let storage_double = application
        .storage_double
        .clone()
        .map(|double| tokio::spawn(double.run()));
    let drain = tokio::spawn(tenki_core::github::drain::run(
        application.core.clone(),
        tenki_core::github::drain::DrainOptions::with_concurrency(application.delivery_concurrency),
        stopped(&application.stop_worker),
    ));
    let admission_passes = tokio::spawn(tenki_core::admission::passes::run(
        application.core.clone(),
        stopped(&application.stop_worker),
    ));
    // Stopped after the drain, whose last deliveries may still ask for removals.
    let (drain_ended, removals_stop) = tokio::sync::oneshot::channel::<()>();
    let runner_removals = tokio::spawn(tenki_core::runners::removals::run(
        application.core.clone(),
        async move {
            drop(removals_stop.await);
        },
    ));
    let worker = tokio::spawn(supervise_worker(
        application.worker,
        application.core.clone(),
        application.worker_concurrency,
        application.stop_worker.clone(),
    ));
    shutdown.await;
    tracing::info!("shutting down: finishing requests and tasks in flight");
    stopping.send_replace(true);
    application.stop_worker.send_replace(true);
    if let Some(double) = storage_double {
        double.abort();
    }
    let finished = tokio::time::timeout(grace, async {
        let http = http.await;
        let worker = worker.await;
        if let Err(e) = drain.await {
            tracing::error!("the GitHub delivery drain panicked: {e}");
        }
        let _ = drain_ended.send(());
        if let Err(e) = admission_passes.await {
            tracing::error!("the admission pass loop panicked: {e}");
        }
        if let Err(e) = runner_removals.await {
            tracing::error!("the runner removal loop panicked: {e}");
        }
        (http, worker)
    })
    .await;
    match finished {
        Ok((Ok(Ok(())), Ok(Ok(())))) => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
        Ok((http, worker)) => Err(anyhow::anyhow!(
            "stopped with errors: HTTP {http:?}, background worker {worker:?}"
        )),
        Err(_) => Err(anyhow::anyhow!(
            "requests or background tasks were still running {} s after the shutdown signal and were cut",
            grace.as_secs()
        )),
    }
}

/// Resolves once `stop` says so (or its sender is gone).
fn stopped(stop: &tokio::sync::watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut stop = stop.subscribe();
    async move {
        drop(stop.wait_for(|stop| *stop).await);
    }
}

/// How often the supervisor checks that the worker takes the jobs that are due.
const STALL_CHECK: Duration = Duration::from_secs(15);

/// Runs the background worker until shutdown, and starts it again whenever it stops on an error
/// or stops taking due jobs.
///
/// graphile_worker stops the whole worker when one job slot fails to fetch or release a job (a
/// database error under load, a connection cut), and under a burst its job loop was seen to stop
/// taking jobs without failing: left alone, the server would keep answering webhooks while no
/// job, cron tick or invoice ran again. The jobs are in PostgreSQL, so a fresh worker picks them
/// up; a job whose release failed is retried once its lock expires.
async fn supervise_worker(
    mut worker: tenki_core::queue::Worker,
    core: Core,
    concurrency: usize,
    stop: tokio::sync::watch::Sender<bool>,
) -> anyhow::Result<()> {
    loop {
        let failure = tokio::select! {
            result = worker.run() => match result {
                Ok(()) if *stop.borrow() => return Ok(()),
                Ok(()) => anyhow::anyhow!("it returned before shutdown"),
                Err(e) => anyhow::anyhow!("{e}"),
            },
            // Nothing runs when it stalls, so dropping its loop loses no job in flight.
            due = tenki_core::queue::stalled(&core.db, STALL_CHECK) => {
                anyhow::anyhow!("it stopped taking jobs: {due} due, none running")
            }
        };
        metrics::counter!("worker_restarts_total").increment(1);
        tracing::error!("the background worker stopped ({failure:#}); starting it again");
        worker = loop {
            if *stop.borrow() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            match tenki_core::queue::worker(core.clone(), concurrency, stopped(&stop)).await {
                Ok(worker) => break worker,
                Err(e) => tracing::error!("starting the background worker again failed: {e:#}"),
            }
        };
    }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_hashed_bundle_files_are_cached_for_good() {
        assert!(is_hashed_bundle("/pkg/tenki-0123456789abcdef.wasm"));
        assert!(is_hashed_bundle("/pkg/tenki-0123456789abcdef.js"));
        assert!(is_hashed_bundle("/pkg/tenki-0123456789abcdef.wasm.br"));
        for path in [
            "/pkg/tenki.wasm",
            "/pkg/tenki.css",
            "/pkg/tenki-0123456789abcde.js",
            "/pkg/tenki-0123456789abcdeg.js",
            "/pkg/snippets/x/tenki-0123456789abcdef.js",
            "/tenki-0123456789abcdef.js",
        ] {
            assert!(!is_hashed_bundle(path), "{path}");
        }
    }

    #[test]
    fn the_bundle_is_named_as_the_build_wrote_it_or_plainly() {
        let site = std::env::temp_dir().join(format!("tenki-site-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(site.join("pkg")).expect("site");
        assert_eq!(bundle_name(&site), "tenki");
        std::fs::write(site.join("pkg/BUNDLE"), "tenki-0123456789abcdef\n").expect("BUNDLE");
        assert_eq!(bundle_name(&site), "tenki-0123456789abcdef");
        std::fs::write(site.join("pkg/BUNDLE"), "tenki-x\"><script>").expect("BUNDLE");
        assert_eq!(bundle_name(&site), "tenki", "only a plain name is used");
        std::fs::remove_dir_all(&site).expect("clean up");
    }
}
