//! Payments (SPEC §9–§12): the Stripe client, the workspace's cards, the Stripe webhook events,
//! the add-ons and slots bought from the dashboard, storage, the invoices of the monthly cycle,
//! the spending limit and enterprise terms.

pub mod addons;
pub mod cards;
pub mod enterprise;
pub mod events;
pub mod invoices;
pub mod mail;
pub mod reversals;
pub mod spending;
pub mod storage;
pub mod stripe;
