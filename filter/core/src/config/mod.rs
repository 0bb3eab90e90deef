//! The user-facing config (`config.yaml`).
//!
//! [`raw`] is the file's schema, [`validate`] turns it into a [`Config`] and reports every
//! problem with its field path. With the `yaml` feature, [`load`] reads YAML text, expands
//! `${VAR}` from the environment, and adds line and column to each error.

pub mod env;
pub mod error;
#[cfg(feature = "yaml")]
pub mod files;
#[cfg(feature = "yaml")]
pub mod load;
mod model;
#[cfg(feature = "yaml")]
mod positions;
pub mod raw;
mod raw_callers;
pub mod text;
pub mod validate;

pub use error::{ConfigError, ConfigErrors, FieldPath};
pub use model::*;
