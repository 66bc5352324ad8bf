//! `tenki-core`: the business of Tenki, shared by the server functions, the webhook handlers and
//! the background workers. No HTTP framework types cross its public API.

pub mod adjustments;
pub mod catalog;
pub mod db;
pub mod demo;
pub mod github_api;
pub mod github_events;
pub mod github_onboarding;
pub mod github_safety_nets;
pub mod github_webhooks;
pub mod identity;
pub mod jobs;
pub mod ledger;
pub mod metering;
pub mod queue;
pub mod reconcile;
pub mod usage;
pub mod workspaces;

pub use sqlx::PgPool;

/// The handles every capability needs: the database, the ledger and the GitHub App. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Core {
    pub db: PgPool,
    pub ledger: ledger::Ledger,
    pub github: github_api::GitHubApp,
}
