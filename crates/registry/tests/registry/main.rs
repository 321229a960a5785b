//! The registry's integration tests, over the in-memory store.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod audit;
mod batch;
mod identifiers;
mod prefixes;
mod support;
mod templates;
