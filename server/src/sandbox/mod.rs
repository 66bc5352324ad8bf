//! Doubles of the external services that cannot run here, served in-process in sandbox mode
//! and used by the tests. Business code never calls into them; it reaches them over HTTP, as it
//! reaches the real services.

pub mod github;
pub mod kratos;
pub mod kubernetes;
pub mod mail;
pub mod storage;
pub mod stripe;
