//! `tenki`: the Tenki server binary. `tenki serve` (the default) runs the dashboard and the
//! background work; `tenki migrate` applies the database migrations and exits.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use server::settings::Settings;

#[derive(Parser)]
#[command(name = "tenki", about = "Managed GitHub Actions runners", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the dashboard and the webhooks (configured by TENKI_* variables).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Operations: reconcile, reverse usage, promotional credit, meter a job by hand.
    Admin {
        #[command(subcommand)]
        command: server::admin::AdminCommand,
    },
    /// Create the demo account (if missing) with 30 days of jobs, for the sandbox.
    Demo {
        #[arg(long, default_value = server::admin::DEMO_EMAIL)]
        email: String,
        #[arg(long, default_value = server::admin::DEMO_PASSWORD)]
        password: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::from_env().context("reading TENKI_* settings")?;
    server::telemetry::init_logging(&settings);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(settings).await,
        Command::Admin { command } => {
            let core = server::connect(&settings).await?;
            if server::admin::run(&core, command).await? {
                Ok(())
            } else {
                std::process::exit(1);
            }
        }
        Command::Demo { email, password } => {
            if settings.mode == server::settings::Mode::Production {
                anyhow::bail!(
                    "tenki demo creates a demo account with a published password: refused with TENKI_MODE=production"
                );
            }
            let core = server::connect(&settings).await?;
            server::admin::demo(&core, &email, &password).await
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let application = server::Application::build(&settings, &settings.public_url).await?;
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("listening on {} (TENKI_ADDR)", settings.addr))?;
    tracing::info!(
        mode = ?settings.mode,
        sandbox = settings.sandbox(),
        "Tenki is serving on http://{}",
        settings.addr
    );
    server::run_until_stopped(application, listener, server::shutdown_signal()).await
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let db = tenki_core::db::pool(settings.database_url.expose_secret(), 2)
        .context("configuring the PostgreSQL pool")?;
    tenki_core::db::migrate(&db)
        .await
        .context("applying database migrations")?;
    tracing::info!("migrations applied");
    Ok(())
}
