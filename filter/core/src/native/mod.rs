//! The engines `egressctl` renders for Envoy (`--engine`).
//!
//! - `wasm`: the filter routes, rewrites and injects every request (any proxy-wasm host).
//! - `auto`: Envoy routes each request itself and attaches static credentials natively; the
//!   filter runs only on routes that need what Envoy lacks (OAuth2 tokens, callers), in the
//!   routed role ([`crate::plan::Role::Routed`]).

use serde::{Deserialize, Serialize};

mod except;
mod kind;
mod paths;

#[cfg(test)]
mod kind_tests;
#[cfg(test)]
mod paths_tests;

pub use except::prefix_except_regexes;
pub use kind::{leaf_kind, LeafKind};
pub use paths::{
    escape_pattern, escape_substitution, log_safe_path_regex, plain_path_regex, route_leaves, Leaf,
    PathKey, Rewrite,
};

/// The engine chosen at compile time (kept in the state directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EngineChoice {
    /// Each route the fastest way Envoy can serve it with the same behaviour.
    #[default]
    Auto,
    /// The filter does everything.
    Wasm,
}

impl EngineChoice {
    pub const ALL: [EngineChoice; 2] = [EngineChoice::Auto, EngineChoice::Wasm];

    pub fn as_str(self) -> &'static str {
        match self {
            EngineChoice::Auto => "auto",
            EngineChoice::Wasm => "wasm",
        }
    }
}

impl std::fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown engine {0:?} (expected auto or wasm)")]
pub struct UnknownEngine(pub String);

impl std::str::FromStr for EngineChoice {
    type Err = UnknownEngine;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EngineChoice::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEngine(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::wire::{leaf_route_name, route_index_of};

    #[test]
    fn engine_names_round_trip() {
        for e in EngineChoice::ALL {
            assert_eq!(e.as_str().parse::<EngineChoice>(), Ok(e));
        }
        assert!("native".parse::<EngineChoice>().is_err());
    }

    #[test]
    fn leaf_route_names_give_back_their_route_index_and_nothing_else_does() {
        assert_eq!(route_index_of(&leaf_route_name(7, "post")), Some(7));
        assert_eq!(route_index_of(&leaf_route_name(0, "other")), Some(0));
        for bad in [
            "",
            "egress/",
            "egress//post",
            "egress/7",
            "egress/7/",
            "egress/x/post",
            "egress/-1/post",
            "egress/+1/post",
            "crm_post",
            "no_target",
            "egress/99999999999999999999999/post",
        ] {
            assert_eq!(route_index_of(bad), None, "{bad}");
        }
    }
}
