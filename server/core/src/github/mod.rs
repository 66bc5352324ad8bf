//! The GitHub App (SPEC §2, §4): the API client, the webhook intake and its writer, the drain that processes the
//! stored deliveries and what processing does with them, onboarding, and the safety nets that catch what webhooks missed.

pub mod client;
pub mod drain;
pub mod events;
pub mod intake;
pub mod onboarding;
pub mod safety_nets;
pub mod writer;
