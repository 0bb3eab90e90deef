//! A string that must never be printed: its `Debug` and `Display` are redacted.
//!
//! In the filter config a secret is either its value (tests, hosts without environment
//! variables) or a reference ([`SecretRef`]): the name of an environment variable of the VM
//! that holds it, optionally with a sealed value that takes precedence (see
//! [`crate::secret_ref`]). `egressctl` writes references only, so no credential value is
//! in Envoy's configuration (and so none on its admin interface).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A credential value (API key, token, password, client secret), or a reference to one.
///
/// Formatting it prints `<redacted>`; the value is reachable only through [`Secret::expose`],
/// so a secret reaching a log or an error message takes a deliberate call.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Value(String),
    Ref(SecretRef),
}

/// Where a credential value comes from when it is not in the config itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The environment variable holding the value (`EGRESS_SECRET_<TARGET>__<FIELD>`).
    pub env: String,
    /// The variable holds the value base64-encoded (values with line breaks: PEM keys).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub base64: bool,
    /// The value sealed by `egressctl apply` (a rotation the process environment cannot carry);
    /// opened with the key in [`crate::secret_ref::SEAL_KEY_ENV`]. Takes precedence over `env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

impl Default for Secret {
    fn default() -> Self {
        Self(Repr::Value(String::new()))
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Repr::Value(value.into()))
    }

    /// A reference still to be resolved (see [`crate::secret_ref::resolve`]).
    pub fn reference(r: SecretRef) -> Self {
        Self(Repr::Ref(r))
    }

    /// The reference, when this is one that was not resolved yet.
    pub fn as_reference(&self) -> Option<&SecretRef> {
        match &self.0 {
            Repr::Ref(r) => Some(r),
            Repr::Value(_) => None,
        }
    }

    /// The secret value itself. Only credential injection and the compiled filter config use it.
    /// An unresolved reference has no value: empty (the filter resolves every reference when it
    /// loads its config, and refuses the config if one is missing).
    pub fn expose(&self) -> &str {
        match &self.0 {
            Repr::Value(v) => v,
            Repr::Ref(_) => "",
        }
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Repr::Value(_) => f.write_str("<redacted>"),
            Repr::Ref(r) => write!(f, "<redacted: ${}>", r.env),
        }
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Value(v) => s.serialize_str(v),
            Repr::Ref(r) => r.serialize(s),
        }
    }
}

/// Plain secrets (token records, pushes) are strings only: a reference is accepted only where
/// the filter config allows one ([`value_or_ref`]).
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ValueOrRef {
    Value(String),
    Ref(SecretRef),
}

impl From<ValueOrRef> for Secret {
    fn from(v: ValueOrRef) -> Self {
        match v {
            ValueOrRef::Value(v) => Secret::new(v),
            ValueOrRef::Ref(r) => Secret::reference(r),
        }
    }
}

/// A filter config credential field: a string value or a [`SecretRef`] object.
pub fn value_or_ref<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    ValueOrRef::deserialize(d).map(Secret::from)
}

/// [`value_or_ref`] for an optional field.
pub fn opt_value_or_ref<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Option::<ValueOrRef>::deserialize(d).map(|o| o.map(Secret::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_a_secret_never_shows_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_plain_secret_field_refuses_a_reference_object() {
        let r: Result<Secret, _> = serde_json::from_str(r#"{"env":"HOME"}"#);
        assert!(r.is_err());
        let s: Secret = serde_json::from_str(r#""v""#).unwrap();
        assert_eq!(s.expose(), "v");
    }

    #[test]
    fn a_reference_serializes_as_an_object_and_has_no_value() {
        let s = Secret::reference(SecretRef {
            env: "EGRESS_SECRET_A__KEY".into(),
            base64: false,
            sealed: None,
        });
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"env":"EGRESS_SECRET_A__KEY"}"#
        );
        assert_eq!(s.expose(), "");
    }
}
