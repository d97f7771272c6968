//! kci-lite: the KernelCI API as one Rust binary and one SQLite file.
//!
//! The binary (`main.rs`) is a thin command-line front end; everything else
//! lives here so that tests and benchmarks can use the internals.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod exchange;
pub mod http;
pub mod ids;
pub mod mail;
pub mod model;
pub mod pubsub;
pub mod query;
pub mod router;
pub mod server;
pub mod store;
pub mod streams;
pub mod timer;
pub mod timestamp;
