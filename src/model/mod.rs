//! Types and pure rules: validation, users, nodes. No I/O here.

pub mod node;
pub mod user;
pub mod validate;
