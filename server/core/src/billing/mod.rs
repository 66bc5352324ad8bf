//! Payments (SPEC §9–§12): the Stripe client, the workspace's cards, and the Stripe webhook
//! events. Invoices, the monthly cycle, add-ons sold from the dashboard and storage come next
//! (issue 10 lists them).

pub mod cards;
pub mod events;
pub mod stripe;
