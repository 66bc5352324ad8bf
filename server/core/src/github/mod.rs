//! The GitHub App (SPEC §2, §4): the API client, the webhook intake, processing the stored
//! deliveries, onboarding, and the safety nets that catch what webhooks missed.

pub mod client;
pub mod events;
pub mod intake;
pub mod onboarding;
pub mod safety_nets;
