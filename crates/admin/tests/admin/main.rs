//! The admin service's integration tests: a real server on 127.0.0.1:0
//! over the in-memory store, called with the generated clients.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod batch;
mod calls;
mod security;
mod support;
mod tls;
mod tokens;
