//! Payments (SPEC §9–§12): the Stripe client, the workspace's cards, the Stripe webhook events,
//! and the add-ons and slots bought from the dashboard. Invoices, the monthly cycle and storage
//! come next (issue 10 lists them).

pub mod addons;
pub mod cards;
pub mod events;
pub mod stripe;
