//! The DNS service against the in-memory store, answers read back with
//! hickory-proto. One test binary for the crate.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

mod answers;
mod cached;
mod delegation;
mod hostile;
mod special;
mod support;
mod transfer;
mod zone;
