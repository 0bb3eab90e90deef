//! From a validated [`Config`] to the filter's [`FilterConfig`]: the one builder, and the one
//! list of credential variables (`secrets.env`, Kubernetes Secrets) taken from the same config.
//!
//! This is the only module that knows both the user-facing config and the filter config, so
//! [`crate::config`] and [`crate::plan`] do not import each other.

use crate::config::{Auth, Config, Grant, JwtBearerKey, Target, TokenStore};
use crate::plan::{
    wire, Credential, FilterConfig, FilterEndpoints, FilterRoute, FilterTarget, OAuth2Credential,
    Role, FILTER_CONFIG_VERSION,
};
use crate::secret::Secret;
use crate::secret_ref::{env_name, env_value, to_references, SealKey, SecretField};
use crate::tokens::grant::GrantPlan;
use std::collections::BTreeMap;

/// How credential values appear in the built config.
#[derive(Debug, Clone, Default)]
pub enum SecretMode {
    /// The values themselves (tests; hosts without environment variables).
    #[default]
    Inline,
    /// References to the variables [`secret_env`] lists (what `egressctl compile` writes).
    Env,
    /// References whose values are also sealed with this key (what `egressctl apply` writes,
    /// so a changed credential reaches a running Envoy).
    Sealed(SealKey),
}

/// What the builder needs besides the config.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub role: Role,
    /// The push listener's Ed25519 public key (PEM); push role only.
    pub push_public_key: Option<String>,
    /// `private_key_jwt` keys by target name (PEM), read by the caller: the core has no file
    /// system.
    pub private_keys: BTreeMap<String, Secret>,
    pub secrets: SecretMode,
    /// Google service-account keys by target (`auth.service_account_file`), read by
    /// `egressctl token refresh` on its host; used only with `for_fetcher`.
    pub service_accounts: BTreeMap<String, crate::tokens::service_account::ServiceAccountKey>,
    /// Build the credentials as a token fetcher needs them, whatever [`push_only`] says (the
    /// client secret even with `token_store: redis`): `egressctl token refresh`.
    pub for_fetcher: bool,
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Why a target's credential reaches the proxy only by push: the proxy never fetches it and
/// holds none of its secrets; `egressctl token refresh` fetches it and pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOnly {
    /// `token_store: redis`: tokens are shared through redis by the refreshers.
    TokenStore,
    /// The credential needs a file on the proxy's host, which the filter cannot read.
    HostFile { field: &'static str, path: String },
}

impl std::fmt::Display for PushOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushOnly::TokenStore => f.write_str("token_store is redis"),
            PushOnly::HostFile { field, path } => write!(
                f,
                "{field} ({path}) is a file the proxy's filter cannot read"
            ),
        }
    }
}

/// The one rule for "fetched only by `egressctl token refresh`", per target: the builder,
/// `compile`'s message, `explain` and the refresher all ask it. `None`: the filter obtains
/// the credential itself (or it needs no fetching).
pub fn push_only(config: &Config, target: &Target) -> Option<PushOnly> {
    if let Some((field, path)) = target.auth.host_file() {
        return Some(PushOnly::HostFile {
            field,
            path: path.to_string(),
        });
    }
    match (&target.auth, &config.token_store) {
        (Auth::OAuth2(_), TokenStore::Redis(_)) => Some(PushOnly::TokenStore),
        _ => None,
    }
}

/// The complete filter config for one listener.
pub fn filter_config(config: &Config, opts: &BuildOptions) -> FilterConfig {
    let targets = config
        .targets
        .iter()
        .map(|t| {
            let push_only = push_only(config, t).is_some() && !opts.for_fetcher;
            FilterTarget {
                name: t.name.clone(),
                url: t.url.clone(),
                credential: match &t.auth {
                    Auth::None => Credential::None,
                    Auth::ApiKey { header, key } => Credential::ApiKey {
                        header: header.clone(),
                        key: key.clone(),
                    },
                    Auth::Bearer { token } => Credential::Bearer {
                        token: token.clone(),
                    },
                    Auth::Basic { username, password } => Credential::Basic {
                        username: username.clone(),
                        password: password.clone(),
                    },
                    Auth::Mtls => Credential::Mtls,
                    Auth::OAuth2(o) => Credential::Oauth2(oauth2(t, o, push_only, opts)),
                    Auth::AwsSigv4(a) => Credential::AwsSigv4(crate::sigv4::AwsSigv4Credential {
                        region: a.region.clone(),
                        service: a.service.clone(),
                        payload: a.payload,
                        // Temporary credentials reach the filter only by push.
                        keys: match &a.source {
                            crate::config::AwsCredentialSource::Static(k) => Some(k.clone()),
                            crate::config::AwsCredentialSource::WebIdentity(_) => None,
                        },
                    }),
                },
                allow: t.allow.clone(),
            }
        })
        .collect();
    let routes = config
        .routes
        .iter()
        .map(|r| FilterRoute {
            path_prefix: r.path_prefix.clone(),
            target: r.target.clone(),
            strip_prefix: r.strip_prefix.clone(),
            rewrite_prefix: r.rewrite_prefix.clone(),
            methods: r.methods.clone(),
            allow: r.allow.clone(),
        })
        .collect();
    let mut fc = FilterConfig {
        version: FILTER_CONFIG_VERSION,
        enabled: config.enabled,
        path_mode: config.path_mode,
        log_level: config.logger.level,
        role: opts.role,
        push_public_key: opts.push_public_key.clone(),
        endpoints: FilterEndpoints {
            health: config.endpoints.health.clone(),
            ready: config.endpoints.ready.clone(),
            passthrough: config.endpoints.metrics.iter().cloned().collect(),
        },
        targets,
        routes,
        callers: config.callers.as_ref().map(|c| c.plan()),
    };
    match &opts.secrets {
        SecretMode::Inline => {}
        SecretMode::Env => to_references(&mut fc, None),
        SecretMode::Sealed(key) => to_references(&mut fc, Some(key)),
    }
    fc
}

/// An OAuth2 target's credential; `push_only`: without secrets, never fetched by the filter.
fn oauth2(
    t: &Target,
    o: &crate::config::OAuth2Settings,
    push_only: bool,
    opts: &BuildOptions,
) -> OAuth2Credential {
    let mut private_key_pem = if push_only {
        None
    } else {
        opts.private_keys.get(&t.name).cloned()
    };
    let mut token_url = o.token_url.clone();
    let mut key_id = o.key_id.clone();
    let grant = match &o.grant {
        Grant::ClientCredentials => GrantPlan::ClientCredentials,
        Grant::JwtBearer(j) => {
            let (issuer, subject) = match &j.key {
                JwtBearerKey::Inline { issuer, subject } => (issuer.clone(), Some(subject.clone())),
                JwtBearerKey::ServiceAccountFile { subject, .. } => {
                    // Only the refresher has the key file.
                    match opts.service_accounts.get(&t.name).filter(|_| !push_only) {
                        Some(key) => {
                            private_key_pem = Some(key.private_key.clone());
                            key_id = Some(key.private_key_id.clone());
                            token_url = token_url.or_else(|| Some(key.token_uri.clone()));
                            (key.client_email.clone(), subject.clone())
                        }
                        None => (String::new(), subject.clone()),
                    }
                }
            };
            GrantPlan::JwtBearer {
                issuer,
                subject,
                audience: j.audience.clone(),
            }
        }
        Grant::TokenExchange(x) => GrantPlan::TokenExchange {
            subject_token_type: x.subject_token_type.clone(),
            audience: x.audience.clone(),
            resource: x.resource.clone(),
        },
    };
    OAuth2Credential {
        token_cluster: wire::token_cluster(&t.name),
        fetch: !push_only,
        grant,
        token_url,
        client_id: o.client_id.clone(),
        client_secret: if push_only {
            None
        } else {
            o.client_secret.clone()
        },
        scopes: o.scopes.clone(),
        params: o.params.clone(),
        client_auth: o.client_auth,
        signing_alg: o.signing_alg,
        key_id,
        private_key_pem,
        refresh_before_expiry_ms: millis(o.refresh_before_expiry),
        token_timeout_ms: millis(o.token_timeout),
        default_lifetime_ms: millis(o.default_lifetime),
    }
}

impl FilterConfig {
    /// The egress listener's config with credential values inline (tests, and hosts without
    /// environment variables). `egressctl` uses [`filter_config`] with references.
    pub fn from_config(config: &Config) -> Self {
        filter_config(config, &BuildOptions::default())
    }
}

/// One credential variable: its name and the value it must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVar {
    pub name: String,
    pub value: Secret,
    /// The target and config field it comes from (messages only).
    pub target: String,
    pub field: SecretField,
}

/// Every credential variable the filter config built from `config` refers to, in config
/// order: what `secrets.env` holds and what a Kubernetes Secret must provide. Built from the
/// same filter config, so it cannot miss one.
pub fn secret_env(config: &Config, private_keys: &BTreeMap<String, Secret>) -> Vec<SecretVar> {
    let fc = filter_config(
        config,
        &BuildOptions {
            private_keys: private_keys.clone(),
            ..BuildOptions::default()
        },
    );
    let mut out = Vec::new();
    for t in &fc.targets {
        let mut push = |field: SecretField, value: &Secret| {
            out.push(SecretVar {
                name: env_name(&t.name, field),
                value: env_value(field, value),
                target: t.name.clone(),
                field,
            })
        };
        match &t.credential {
            Credential::ApiKey { key, .. } => push(SecretField::ApiKey, key),
            Credential::Bearer { token } => push(SecretField::Token, token),
            Credential::Basic { password, .. } => push(SecretField::Password, password),
            Credential::Oauth2(o) => {
                if let Some(s) = &o.client_secret {
                    push(SecretField::ClientSecret, s);
                }
                if let Some(s) = &o.private_key_pem {
                    push(SecretField::PrivateKey, s);
                }
            }
            Credential::AwsSigv4(a) => {
                if let Some(k) = &a.keys {
                    push(SecretField::AwsSecretAccessKey, &k.secret_access_key);
                    if let Some(s) = &k.session_token {
                        push(SecretField::AwsSessionToken, s);
                    }
                }
            }
            Credential::None | Credential::Mtls => {}
        }
    }
    for (i, issuer) in fc.callers.iter().flat_map(|c| c.jwt.iter()).enumerate() {
        if let crate::callers::KeySource::Secret { secret } = &issuer.keys {
            let owner = crate::secret_ref::caller_secret_owner(i);
            out.push(SecretVar {
                name: env_name(&owner, SecretField::CallerJwtSecret),
                value: env_value(SecretField::CallerJwtSecret, secret),
                target: owner,
                field: SecretField::CallerJwtSecret,
            });
        }
    }
    out
}

/// The names a listener's `vm_config.environment_variables.host_env_keys` must list: every
/// credential variable, and the seal key when values are sealed.
pub fn host_env_keys(vars: &[SecretVar], sealed: bool) -> Vec<String> {
    let mut keys: Vec<String> = vars.iter().map(|v| v.name.clone()).collect();
    if sealed {
        keys.push(crate::secret_ref::SEAL_KEY_ENV.to_string());
    }
    keys
}
