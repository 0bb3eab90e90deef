//! [`RawConfig`] to [`Config`]: parse every string, resolve every reference, report every
//! problem with its field path (locations are added by the loader).

use super::error::{ConfigErrors, FieldPath};
use super::model::*;
use super::raw::*;
use crate::duration::parse_duration;
use crate::plan::{LogLevel, Method};
use crate::routing::path::{is_boundary_prefix, validate_prefix};
use crate::secret::Secret;
use crate::target_url::{Scheme, TargetUrl};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(250);
const DEFAULT_REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(60);
const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// Validates a raw config, returning every problem found.
pub fn validate(raw: &RawConfig) -> Result<Config, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let root = FieldPath::root();
    let config = build(raw, &root, &mut errs);
    if errs.is_empty() {
        Ok(config)
    } else {
        Err(errs)
    }
}

fn build(raw: &RawConfig, root: &FieldPath, errs: &mut ConfigErrors) -> Config {
    let http_path = root.key("http");
    let listen = match ListenAddr::parse(&raw.http.addr) {
        Ok(a) => a,
        Err(e) => {
            errs.push(http_path.key("addr").as_str(), e);
            ListenAddr::parse(":8080").unwrap_or(ListenAddr {
                ip: [0, 0, 0, 0].into(),
                port: 8080,
            })
        }
    };
    let http = HttpSettings {
        listen,
        read_timeout: opt_duration(&raw.http.read_timeout, &http_path.key("read_timeout"), errs),
        write_timeout: opt_duration(
            &raw.http.write_timeout,
            &http_path.key("write_timeout"),
            errs,
        ),
    };

    let egress = &raw.egress;
    let egress_path = root.key("egress");
    let token_store = token_store(
        egress.token_store.as_ref(),
        &egress_path.key("token_store"),
        errs,
    );
    let defaults = defaults(egress.defaults.as_ref(), &egress_path.key("defaults"), errs);

    let targets: Vec<Target> = egress
        .targets
        .iter()
        .map(|(name, t)| {
            target(
                name,
                t,
                &defaults,
                &egress_path.key("targets").key(name),
                errs,
            )
        })
        .collect();

    let endpoints = endpoints(raw.endpoints.as_ref(), &root.key("endpoints"), errs);
    let routes = routes(
        &egress.routes,
        &targets,
        &endpoints,
        &egress_path.key("routes"),
        errs,
    );
    let logger = logger(raw.logger.as_ref(), &root.key("logger"), errs);
    let callers = super::callers::callers(egress, &egress_path, errs);

    Config {
        http,
        enabled: egress.enabled,
        token_store,
        defaults,
        targets,
        routes,
        endpoints,
        logger,
        callers,
    }
}

fn opt_duration(v: &Option<String>, path: &FieldPath, errs: &mut ConfigErrors) -> Option<Duration> {
    let text = v.as_ref()?;
    match parse_duration(text) {
        Ok(d) if d.is_zero() => {
            errs.push(path.as_str(), "must be greater than zero");
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(path.as_str(), e.to_string());
            None
        }
    }
}

fn token_store(
    raw: Option<&RawTokenStore>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> TokenStore {
    let Some(raw) = raw else {
        return TokenStore::Memory;
    };
    match raw.kind.as_str() {
        "memory" => {
            if raw.redis.is_some() {
                errs.push(path.key("redis").as_str(), "only applies to type: redis");
            }
            TokenStore::Memory
        }
        "redis" => match &raw.redis {
            Some(r) => {
                let rp = path.key("redis");
                if r.address.trim().is_empty() || !r.address.contains(':') {
                    errs.push(rp.key("address").as_str(), "must be host:port");
                }
                TokenStore::Redis(RedisStore {
                    address: r.address.clone(),
                    password: r
                        .password
                        .clone()
                        .filter(|p| !p.is_empty())
                        .map(Secret::new),
                    db: r.db,
                    key_prefix: r
                        .key_prefix
                        .clone()
                        .unwrap_or_else(|| "egress:tokens:".into()),
                })
            }
            None => {
                errs.push(path.key("redis").as_str(), "is required when type is redis");
                TokenStore::Memory
            }
        },
        other => {
            errs.push(
                path.key("type").as_str(),
                format!("unknown token store {other:?}; expected memory or redis"),
            );
            TokenStore::Memory
        }
    }
}

fn defaults(raw: Option<&RawDefaults>, path: &FieldPath, errs: &mut ConfigErrors) -> Defaults {
    let Some(raw) = raw else {
        return Defaults {
            timeout: DEFAULT_TIMEOUT,
            retry_count: 0,
            retry_delay: DEFAULT_RETRY_DELAY,
        };
    };
    let retry_count = raw.retry_count.unwrap_or(0);
    if retry_count > 10 {
        errs.push(path.key("retry_count").as_str(), "must be at most 10");
    }
    Defaults {
        timeout: opt_duration(&raw.timeout, &path.key("timeout"), errs).unwrap_or(DEFAULT_TIMEOUT),
        retry_count,
        retry_delay: opt_duration(&raw.retry_delay, &path.key("retry_delay"), errs)
            .unwrap_or(DEFAULT_RETRY_DELAY),
    }
}

fn valid_target_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn target(
    name: &str,
    raw: &RawTarget,
    defaults: &Defaults,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Target {
    if !valid_target_name(name) {
        errs.push(
            path.as_str(),
            "target names may use letters, digits, '-', '_' and '.' (at most 64)",
        );
    }
    let url = match TargetUrl::parse(&raw.url) {
        Ok(u) => Some(u),
        Err(e) => {
            errs.push(path.key("url").as_str(), e.to_string());
            None
        }
    };
    let tls = tls(raw.tls.as_ref(), url.as_ref(), &path.key("tls"), errs);
    let auth = auth(raw.auth.as_ref(), tls.as_ref(), &path.key("auth"), errs);
    Target {
        name: name.to_string(),
        url: url.unwrap_or(TargetUrl {
            scheme: Scheme::Http,
            host: "invalid".into(),
            port: 80,
            explicit_port: false,
            base_path: String::new(),
        }),
        timeout: opt_duration(&raw.timeout, &path.key("timeout"), errs).unwrap_or(defaults.timeout),
        auth,
        tls,
        allow: super::callers::allow(raw.allow.as_ref(), &path.key("allow"), errs),
    }
}

fn tls(
    raw: Option<&RawTls>,
    url: Option<&TargetUrl>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<TlsSettings> {
    let https = url.is_some_and(|u| u.scheme == Scheme::Https);
    let enabled = match raw.and_then(|t| t.enabled) {
        Some(false) if https => {
            errs.push(
                path.key("enabled").as_str(),
                "an https URL always uses TLS; remove `enabled: false` or use http://",
            );
            true
        }
        Some(e) => e,
        None => https || raw.is_some_and(|t| t.client_cert.is_some() || t.ca_cert.is_some()),
    };
    if !enabled {
        if let Some(t) = raw {
            for (field, set) in [
                ("client_cert", t.client_cert.is_some()),
                ("client_key", t.client_key.is_some()),
                ("ca_cert", t.ca_cert.is_some()),
                ("insecure_skip_verify", t.insecure_skip_verify == Some(true)),
            ] {
                if set {
                    errs.push(
                        path.key(field).as_str(),
                        "has no effect while TLS is disabled",
                    );
                }
            }
        }
        return None;
    }
    let t = raw.cloned().unwrap_or_default();
    let insecure = t.insecure_skip_verify.unwrap_or(false);
    if insecure && t.ca_cert.is_some() {
        errs.push(
            path.key("insecure_skip_verify").as_str(),
            "cannot be combined with ca_cert: either verify against ca_cert or skip verification",
        );
    }
    let client_cert = match (&t.client_cert, &t.client_key) {
        (Some(c), Some(k)) => Some(ClientCert {
            cert: c.clone(),
            key: k.clone(),
        }),
        (Some(_), None) => {
            errs.push(
                path.key("client_key").as_str(),
                "is required with client_cert",
            );
            None
        }
        (None, Some(_)) => {
            errs.push(
                path.key("client_cert").as_str(),
                "is required with client_key",
            );
            None
        }
        (None, None) => None,
    };
    for (field, v) in [
        ("client_cert", &t.client_cert),
        ("client_key", &t.client_key),
        ("ca_cert", &t.ca_cert),
    ] {
        if v.as_ref().is_some_and(|p| p.trim().is_empty()) {
            errs.push(path.key(field).as_str(), "must be a file path");
        }
    }
    Some(TlsSettings {
        insecure_skip_verify: insecure,
        ca_cert: t.ca_cert.clone(),
        client_cert,
        server_name: t
            .server_name
            .clone()
            .or_else(|| url.map(|u| u.host.clone()))
            .unwrap_or_default(),
    })
}

/// Which auth fields each type takes.
fn fields_for(kind: &str) -> &'static [&'static str] {
    match kind {
        "api_key" => &["header", "key"],
        "bearer" => &["token"],
        "basic" => &["username", "password"],
        "mtls" => &[],
        "oauth2_client_credentials" => &[
            "token_url",
            "client_id",
            "client_secret",
            "scopes",
            "refresh_before_expiry",
            "params",
            "client_auth",
            "private_key",
            "signing_alg",
            "key_id",
            "token_timeout",
            "default_lifetime",
        ],
        _ => &[],
    }
}

fn set_fields(a: &RawAuth) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut add = |name: &'static str, set: bool| {
        if set {
            v.push(name);
        }
    };
    add("header", a.header.is_some());
    add("key", a.key.is_some());
    add("token", a.token.is_some());
    add("username", a.username.is_some());
    add("password", a.password.is_some());
    add("token_url", a.token_url.is_some());
    add("client_id", a.client_id.is_some());
    add("client_secret", a.client_secret.is_some());
    add("scopes", a.scopes.is_some());
    add("refresh_before_expiry", a.refresh_before_expiry.is_some());
    add("params", a.params.is_some());
    add("client_auth", a.client_auth.is_some());
    add("private_key", a.private_key.is_some());
    add("signing_alg", a.signing_alg.is_some());
    add("key_id", a.key_id.is_some());
    add("token_timeout", a.token_timeout.is_some());
    add("default_lifetime", a.default_lifetime.is_some());
    v
}

fn required<'a>(
    v: &'a Option<String>,
    field: &str,
    kind: &str,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<&'a str> {
    match v.as_deref() {
        Some(s) if !s.is_empty() => Some(s),
        Some(_) => {
            errs.push(path.key(field).as_str(), "must not be empty");
            None
        }
        None => {
            errs.push(
                path.key(field).as_str(),
                format!("is required for auth type {kind}"),
            );
            None
        }
    }
}

fn auth(
    raw: Option<&RawAuth>,
    tls: Option<&TlsSettings>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Auth {
    let Some(a) = raw else {
        return Auth::None;
    };
    let kind = a.kind.as_str();
    const KINDS: [&str; 5] = [
        "api_key",
        "bearer",
        "basic",
        "mtls",
        "oauth2_client_credentials",
    ];
    if !KINDS.contains(&kind) {
        errs.push(
            path.key("type").as_str(),
            format!(
                "unknown auth type {kind:?}; expected one of {}",
                KINDS.join(", ")
            ),
        );
        return Auth::None;
    }
    let allowed = fields_for(kind);
    for f in set_fields(a) {
        if !allowed.contains(&f) {
            errs.push(
                path.key(f).as_str(),
                format!("does not apply to auth type {kind}"),
            );
        }
    }
    match kind {
        "api_key" => {
            let header = required(&a.header, "header", kind, path, errs);
            if let Some(h) = header {
                if let Err(e) = check_credential_header(h) {
                    errs.push(path.key("header").as_str(), e);
                }
            }
            let key = required(&a.key, "key", kind, path, errs);
            match (header, key) {
                (Some(h), Some(k)) => Auth::ApiKey {
                    header: h.to_ascii_lowercase(),
                    key: Secret::new(k),
                },
                _ => Auth::None,
            }
        }
        "bearer" => match required(&a.token, "token", kind, path, errs) {
            Some(t) => Auth::Bearer {
                token: Secret::new(t),
            },
            None => Auth::None,
        },
        "basic" => {
            let user = required(&a.username, "username", kind, path, errs);
            if user.is_some_and(|u| u.contains(':')) {
                errs.push(path.key("username").as_str(), "must not contain ':'");
            }
            let pass = required(&a.password, "password", kind, path, errs);
            match (user, pass) {
                (Some(u), Some(p)) => Auth::Basic {
                    username: u.to_string(),
                    password: Secret::new(p),
                },
                _ => Auth::None,
            }
        }
        "mtls" => {
            if tls.and_then(|t| t.client_cert.as_ref()).is_none() {
                errs.push(
                    path.key("type").as_str(),
                    "mtls needs tls.client_cert and tls.client_key on the target (and an https URL or tls.enabled)",
                );
            }
            Auth::Mtls
        }
        _ => oauth2(a, tls, path, errs)
            .map(Auth::OAuth2)
            .unwrap_or(Auth::None),
    }
}

fn check_credential_header(h: &str) -> Result<(), String> {
    let token = !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(format!("{h:?} is not a valid header name"));
    }
    let lower = h.to_ascii_lowercase();
    const FORBIDDEN: [&str; 8] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "keep-alive",
        "proxy-connection",
    ];
    if FORBIDDEN.contains(&lower.as_str())
        || lower.starts_with(crate::plan::wire::INTERNAL_HEADER_PREFIX)
    {
        return Err(format!("{h:?} cannot carry a credential"));
    }
    Ok(())
}

fn oauth2(
    a: &RawAuth,
    tls: Option<&TlsSettings>,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Option<OAuth2Settings> {
    let kind = "oauth2_client_credentials";
    let token_url = required(&a.token_url, "token_url", kind, path, errs).and_then(|u| {
        TargetUrl::parse(u)
            .map_err(|e| errs.push(path.key("token_url").as_str(), e.to_string()))
            .ok()
    });
    let client_id = required(&a.client_id, "client_id", kind, path, errs);
    let client_auth = match a.client_auth.as_deref() {
        None | Some("client_secret_basic") => ClientAuth::ClientSecretBasic,
        Some("client_secret_post") => ClientAuth::ClientSecretPost,
        Some("private_key_jwt") => ClientAuth::PrivateKeyJwt,
        Some(other) => {
            errs.push(
                path.key("client_auth").as_str(),
                format!("unknown client_auth {other:?}; expected client_secret_basic, client_secret_post or private_key_jwt"),
            );
            ClientAuth::ClientSecretBasic
        }
    };
    let client_secret = if client_auth == ClientAuth::PrivateKeyJwt {
        if a.client_secret.is_some() {
            errs.push(
                path.key("client_secret").as_str(),
                "is not used with client_auth: private_key_jwt",
            );
        }
        if a.private_key.as_deref().is_none_or(str::is_empty) {
            errs.push(
                path.key("private_key").as_str(),
                "is required with client_auth: private_key_jwt",
            );
        }
        None
    } else {
        for f in ["private_key", "signing_alg", "key_id"] {
            let set = match f {
                "private_key" => a.private_key.is_some(),
                "signing_alg" => a.signing_alg.is_some(),
                _ => a.key_id.is_some(),
            };
            if set {
                errs.push(
                    path.key(f).as_str(),
                    "only applies to client_auth: private_key_jwt",
                );
            }
        }
        required(&a.client_secret, "client_secret", kind, path, errs).map(Secret::new)
    };
    let signing_alg = match a.signing_alg.as_deref() {
        None | Some("RS256") => SigningAlg::RS256,
        Some("ES256") => SigningAlg::ES256,
        Some(other) => {
            errs.push(
                path.key("signing_alg").as_str(),
                format!("unknown signing_alg {other:?}; expected RS256 or ES256"),
            );
            SigningAlg::RS256
        }
    };
    let scopes = a.scopes.clone().unwrap_or_default();
    for (i, s) in scopes.iter().enumerate() {
        if s.is_empty() || s.contains(char::is_whitespace) {
            errs.push(
                path.key("scopes").index(i).as_str(),
                "a scope must be one non-empty word",
            );
        }
    }
    let params: BTreeMap<String, String> = a.params.clone().unwrap_or_default();
    for k in params.keys() {
        const RESERVED: [&str; 6] = [
            "grant_type",
            "client_id",
            "client_secret",
            "scope",
            "client_assertion",
            "client_assertion_type",
        ];
        if RESERVED.contains(&k.as_str()) {
            errs.push(
                path.key("params").key(k).as_str(),
                "is set by the client-credentials flow itself",
            );
        }
    }
    let refresh_before_expiry = opt_duration(
        &a.refresh_before_expiry,
        &path.key("refresh_before_expiry"),
        errs,
    )
    .unwrap_or(DEFAULT_REFRESH_BEFORE_EXPIRY);
    let token_timeout = opt_duration(&a.token_timeout, &path.key("token_timeout"), errs)
        .unwrap_or(DEFAULT_TOKEN_TIMEOUT);
    let default_lifetime = opt_duration(&a.default_lifetime, &path.key("default_lifetime"), errs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    let token_url = token_url?;
    let token_tls = (token_url.scheme == Scheme::Https).then(|| TlsSettings {
        insecure_skip_verify: false,
        ca_cert: tls.and_then(|t| t.ca_cert.clone()),
        client_cert: None,
        server_name: token_url.host.clone(),
    });
    Some(OAuth2Settings {
        token_url,
        client_id: client_id?.to_string(),
        client_secret,
        scopes,
        params,
        client_auth,
        private_key: a.private_key.clone(),
        signing_alg,
        key_id: a.key_id.clone(),
        refresh_before_expiry,
        token_timeout,
        default_lifetime,
        tls: token_tls,
    })
}

fn endpoint_path(v: &Option<String>, path: &FieldPath, errs: &mut ConfigErrors) -> Option<String> {
    let p = v.as_ref()?;
    match validate_prefix(p) {
        Ok(n) => Some(n),
        Err(e) => {
            errs.push(path.as_str(), e);
            None
        }
    }
}

fn endpoints(raw: Option<&RawEndpoints>, path: &FieldPath, errs: &mut ConfigErrors) -> Endpoints {
    let raw = raw.cloned().unwrap_or_default();
    let egress =
        endpoint_path(&raw.egress, &path.key("egress"), errs).unwrap_or_else(|| "/egress".into());
    let e = Endpoints {
        health: endpoint_path(&raw.health, &path.key("health"), errs),
        ready: endpoint_path(&raw.ready, &path.key("ready"), errs),
        metrics: endpoint_path(&raw.metrics, &path.key("metrics"), errs),
        egress,
    };
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (name, p) in [
        ("health", &e.health),
        ("ready", &e.ready),
        ("metrics", &e.metrics),
    ] {
        let Some(p) = p else { continue };
        if is_boundary_prefix(&e.egress, p) {
            errs.push(
                path.key(name).as_str(),
                format!("{p:?} lies under the egress prefix {:?}", e.egress),
            );
        }
        if let Some(other) = seen.insert(p.as_str(), name) {
            errs.push(
                path.key(name).as_str(),
                format!("{p:?} is already used by endpoints.{other}"),
            );
        }
    }
    e
}

fn routes(
    raw: &[RawRoute],
    targets: &[Target],
    endpoints: &Endpoints,
    path: &FieldPath,
    errs: &mut ConfigErrors,
) -> Vec<Route> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let rp = path.index(i);
        let prefix = match validate_prefix(&r.path_prefix) {
            Ok(p) => p,
            Err(e) => {
                errs.push(rp.key("path_prefix").as_str(), e);
                continue;
            }
        };
        if !is_boundary_prefix(&endpoints.egress, &prefix) {
            errs.push(
                rp.key("path_prefix").as_str(),
                format!(
                    "{prefix:?} is not under endpoints.egress {:?}",
                    endpoints.egress
                ),
            );
        }
        if let Some(first) = seen.insert(prefix.clone(), i) {
            errs.push(
                rp.key("path_prefix").as_str(),
                format!("duplicate prefix {prefix:?}: egress.routes[{first}] has it already"),
            );
        }
        if !targets.iter().any(|t| t.name == r.target) {
            let known: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
            errs.push(
                rp.key("target").as_str(),
                format!(
                    "unknown target {:?}; known targets: {}",
                    r.target,
                    known.join(", ")
                ),
            );
        }
        let strip_prefix = match &r.strip_prefix {
            None => None,
            Some(s) => {
                match validate_prefix(s) {
                    Ok(s) if is_boundary_prefix(&s, &prefix) => Some(s),
                    Ok(s) => {
                        errs.push(
                        rp.key("strip_prefix").as_str(),
                        format!("{s:?} is not a prefix of path_prefix {prefix:?} at a segment boundary"),
                    );
                        None
                    }
                    Err(e) => {
                        errs.push(rp.key("strip_prefix").as_str(), e);
                        None
                    }
                }
            }
        };
        let rewrite_prefix = match &r.rewrite_prefix {
            None => None,
            Some(s) => match validate_prefix(s) {
                Ok(s) => Some(s),
                Err(e) => {
                    errs.push(rp.key("rewrite_prefix").as_str(), e);
                    None
                }
            },
        };
        let methods = r.methods.as_ref().map(|ms| {
            if ms.is_empty() {
                errs.push(
                    rp.key("methods").as_str(),
                    "must list at least one method (omit it to allow all)",
                );
            }
            let mut parsed: Vec<Method> = Vec::new();
            for (j, m) in ms.iter().enumerate() {
                match Method::parse(m) {
                    Some(pm) if parsed.contains(&pm) => {
                        errs.push(
                            rp.key("methods").index(j).as_str(),
                            format!("{m} is listed twice"),
                        );
                    }
                    Some(pm) => parsed.push(pm),
                    None => {
                        let names: Vec<&str> = Method::ALL.iter().map(|m| m.as_str()).collect();
                        errs.push(
                            rp.key("methods").index(j).as_str(),
                            format!("invalid method {m:?}; expected one of {}", names.join(", ")),
                        );
                    }
                }
            }
            parsed
        });
        out.push(Route {
            path_prefix: prefix,
            target: r.target.clone(),
            strip_prefix,
            rewrite_prefix,
            methods,
            allow: super::callers::allow(r.allow.as_ref(), &rp.key("allow"), errs),
        });
    }
    out
}

fn logger(raw: Option<&RawLogger>, path: &FieldPath, errs: &mut ConfigErrors) -> Logger {
    let raw = raw.cloned().unwrap_or_default();
    let level = match raw.level.as_deref() {
        None => LogLevel::Info,
        Some(l) => LogLevel::parse(l).unwrap_or_else(|| {
            errs.push(
                path.key("level").as_str(),
                format!("unknown level {l:?}; expected trace, debug, info, warn or error"),
            );
            LogLevel::Info
        }),
    };
    let format = match raw.format.as_deref() {
        None | Some("json") => LogFormat::Json,
        Some(f) => {
            errs.push(
                path.key("format").as_str(),
                format!("unknown format {f:?}; only json is supported"),
            );
            LogFormat::Json
        }
    };
    let output = match raw.output.as_deref() {
        None | Some("stdout") => LogOutput::Stdout,
        Some("stderr") => LogOutput::Stderr,
        Some("") => {
            errs.push(
                path.key("output").as_str(),
                "must be stdout, stderr or a file path",
            );
            LogOutput::Stdout
        }
        Some(p) => LogOutput::File(p.to_string()),
    };
    Logger {
        level,
        format,
        output,
    }
}
