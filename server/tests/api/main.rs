//! End-to-end tests of the server over HTTP and of `tenki-core` against real PostgreSQL and
//! TigerBeetle. One test binary: they share the harness and link once.

mod addons;
mod batched_metering;
mod billing;
mod crons;
mod drain;
mod enterprise;
mod github;
mod grants;
mod harness;
mod health;
mod identity;
mod invoices;
mod kratos;
mod mail;
mod metering;
mod reversals;
mod roles;
mod runners;
mod security;
mod spending;
mod storage;
mod usage_rollups;
mod webhooks;
