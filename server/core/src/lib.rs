//! `tenki-core`: the business of Tenki, shared by the server functions, the webhook handlers and
//! the background workers. No HTTP framework types cross its public API.
//!
//! One module per capability:

/// Which queued jobs get a runner now, and why the others wait.
pub mod admission;
/// Group commit: items callers wait on, handled in batches that grow under load.
pub mod batching;
/// Payments: the Stripe client, cards, Stripe's webhook events.
pub mod billing;
/// Runner SKUs and their versioned prices.
pub mod catalog;
/// The PostgreSQL pool and migrations.
pub mod db;
/// The demo workspace of the sandbox.
pub mod demo;
/// The GitHub App: API client, webhook intake, event processing, onboarding, safety nets.
pub mod github;
/// People, sessions, sign-in limits, e-mail confirmation, the free-grant registry.
pub mod identity;
/// The jobs a workspace ran, as the Jobs and Runners pages list them.
pub mod jobs;
/// TigerBeetle: accounts, the only place transfers are built, adjustments, reconciliation.
pub mod ledger;
/// A finished job → its price → the ledger chain and the usage record.
pub mod metering;
/// Micro-cents: checked arithmetic, dollars, parsing, display.
pub mod money;
/// The durable background queue: enqueue, tasks, crons.
pub mod queue;
/// Data retention: what is deleted when.
pub mod retention;
/// Runners: the provisioner (Kubernetes), their life from GitHub's deliveries, the reaper.
pub mod runners;
/// Read models of usage: the Usage page, the CSV, projections.
pub mod usage;
/// Workspaces, members and roles, the audit log, the Overview figures.
pub mod workspaces;

pub use sqlx::PgPool;

/// The handles every capability needs: the database, the ledger, the GitHub App, Stripe and the
/// Kubernetes cluster of the runners, with the platform's capacity. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Core {
    pub db: PgPool,
    pub ledger: ledger::Ledger,
    pub github: github::client::GitHubApp,
    pub stripe: billing::stripe::Stripe,
    /// Where the owners' notifications are e-mailed.
    pub mailer: billing::mail::Mailer,
    pub kubernetes: runners::kubernetes::Kubernetes,
    pub capacity: admission::Capacity,
    /// Stores this server's webhook deliveries, concurrent ones together.
    pub deliveries: github::writer::DeliveryWriter,
    /// Wakes this server's delivery drain when the intake stored a delivery.
    pub delivery_wakeup: github::drain::Wakeup,
    /// Asks this server's admission pass loop for a pass.
    pub admission_passes: admission::PassRequests,
    /// Asks this server's removal loop to remove runners.
    pub runner_removals: runners::removals::RemovalRequests,
    /// This server's metering batcher: finished jobs are metered through it, in batches.
    pub meter: metering::Meter,
    /// Who signs people in: the built-in identity or Ory Kratos.
    pub identity: identity::IdentityProvider,
}

/// An error and every cause under it, on one line ("metering: database: connection refused"):
/// error enums here do not repeat their source in their own message, so logs print the chain.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
