//! Types and pure rules: validation, users, nodes. No I/O here.

pub mod event;
pub mod node;
pub mod node_data;
pub mod telemetry;
pub mod user;
pub mod validate;
