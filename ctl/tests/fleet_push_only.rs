//! `egressctl render k8s` with push-only targets whose credential needs a file on the host
//! (`egress_core::build::push_only` -> `HostFile`): the refresher Deployment runs without
//! redis too, one container per such target, with each file mounted at the config's path (a
//! service-account key from a referenced Secret, token files as projected service-account
//! tokens of the refresher's own ServiceAccount). Needs `bash tests/support/install-fleet-deps.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fleet::*;
use serde_json::Value;
use std::path::Path;

const SA_MARKER: &str = "sa-private-key-never-rendered-4242";
const XCHG_SECRET: &str = "xchg-client-secret-never-in-config-9191";

/// The four host-file kinds; the two token files of `xchg` and `s3` share a directory.
fn targets(sa_path: &str, s3_token: &str) -> String {
    format!(
        "    gcs:\n      url: \"https://storage.googleapis.com\"\n      auth:\n        type: oauth2_jwt_bearer\n        service_account_file: \"{sa_path}\"\n        scopes: [\"https://www.googleapis.com/auth/devstorage.read_only\"]\n\
         \x20   xchg:\n      url: \"https://crm.example.com\"\n      auth:\n        type: oauth2_token_exchange\n        token_url: \"https://sts.example.com/token\"\n        subject_token_file: /var/run/secrets/tokens/xchg\n        audience: crm-api\n        client_id: exchanger\n        client_secret: \"${{FLEET_XCHG_SECRET}}\"\n\
         \x20   azure:\n      url: \"https://graph.example.com\"\n      auth:\n        type: oauth2_client_credentials\n        token_url: \"https://login.example.com/tenant/oauth2/v2.0/token\"\n        client_id: app-1\n        client_auth: federated_token_file\n        federated_token_file: /var/run/secrets/azure/tokens/azure-identity-token\n        scopes: [api]\n\
         \x20   s3:\n      url: \"https://my-bucket.s3.eu-west-1.amazonaws.com\"\n      auth:\n        type: aws_sigv4\n        region: eu-west-1\n        service: s3\n        web_identity:\n          role_arn: arn:aws:iam::123456789012:role/egress\n          token_file: {s3_token}\n"
    )
}

fn sa_file(d: &Path) -> String {
    let dir = d.join("google");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("key.json");
    std::fs::write(
        &p,
        format!("{{\"type\":\"service_account\",\"client_email\":\"e@p.iam.gserviceaccount.com\",\"private_key\":\"{SA_MARKER}\",\"private_key_id\":\"k1\",\"token_uri\":\"https://oauth2.googleapis.com/token\"}}"),
    )
    .unwrap();
    p.display().to_string()
}

fn render_env(d: &Path, what: &str, extra: &[&str]) -> std::process::Output {
    render_to(d, what, "out", extra)
}

fn render_to(d: &Path, what: &str, out: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "render",
        what,
        "config.yaml",
        "--out",
        out,
        "--module-image",
        "registry.example.com/egress/filter",
        "--wasm",
        "m.wasm",
    ];
    args.extend_from_slice(extra);
    std::process::Command::new(env!("CARGO_BIN_EXE_egressctl"))
        .current_dir(d)
        .args(&args)
        .env("FLEET_XCHG_SECRET", XCHG_SECRET)
        .output()
        .unwrap()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

/// The projected-volume source that puts a file at `path` in the container, found through
/// the container's mounts.
fn file_source<'a>(pod: &'a Value, container: &Value, path: &str) -> &'a Value {
    let p = Path::new(path);
    let dir = p.parent().unwrap().to_str().unwrap();
    let file = p.file_name().unwrap().to_str().unwrap();
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("{} mounts nothing at {dir}", container["name"]));
    assert_eq!(mount["readOnly"], true);
    let vol = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    vol["projected"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["serviceAccountToken"]["path"] == file
                || s["secret"]["items"]
                    .as_array()
                    .is_some_and(|i| i.iter().any(|i| i["path"] == file))
        })
        .unwrap_or_else(|| panic!("volume {} has no {file}", mount["name"]))
}

#[test]
fn render_k8s_runs_a_refresher_for_every_host_file_target_with_the_file_at_the_configs_path() {
    let d = setup(""); // an mTLS target and an open one beside them
    let sa = sa_file(d.path());
    let s3_token = "/var/run/secrets/tokens/s3";
    let config = std::fs::read_to_string(d.path().join("config.yaml"))
        .unwrap()
        .replace(
            "endpoints:",
            &format!("{}endpoints:", targets(&sa, s3_token)),
        );
    std::fs::write(d.path().join("config.yaml"), config).unwrap();
    let out = render_env(d.path(), "k8s", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    // The service-account key's Secret is named, for the user to create.
    assert!(
        said.contains(&format!("target gcs: auth.service_account_file ({sa}) is mounted from Secret egress-sa-gcs (key key.json)")),
        "{said}"
    );
    let files = yaml_files(&d.path().join("out"));
    let v = kubernetes_validate(&files);
    assert!(v.status.success(), "{}", text(&v));
    let objs: Vec<Value> = files.iter().map(|f| load(f)).collect();
    // No secret in any rendered file but the refresher's env Secret; the key file nowhere.
    for f in &files {
        let body = std::fs::read_to_string(f).unwrap();
        assert!(!body.contains(SA_MARKER), "{}", f.display());
        assert_eq!(
            body.contains(XCHG_SECRET),
            load(f)["metadata"]["name"] == "egress-refresher-env",
            "{}",
            f.display()
        );
    }
    assert!(
        !objs
            .iter()
            .any(|o| o["kind"] == "Secret" && o["metadata"]["name"] == "egress-sa-gcs"),
        "the service-account key Secret is referenced, never rendered"
    );
    // Envoy takes pushes on the pod's address, from the refresher pods only.
    let envoy = find(&objs, "Deployment", "egress");
    assert!(envoy["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "push" && p["containerPort"] == 9902));
    let np = find(&objs, "NetworkPolicy", "egress");
    assert!(np["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .any(
            |r| r["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                == "token-refresher"
                && r["ports"][0]["port"] == 9902
        ));
    let push = find(&objs, "Service", "egress-push");
    assert_eq!(push["spec"]["clusterIP"], "None");
    // The refresher: memory store, one replica, one container per host-file target.
    let refresher = find(&objs, "Deployment", "egress-token-refresher");
    assert_eq!(refresher["spec"]["replicas"], 1);
    let pod = &refresher["spec"]["template"];
    assert_eq!(pod["spec"]["serviceAccountName"], "egress-token-refresher");
    let sa_obj = find(&objs, "ServiceAccount", "egress-token-refresher");
    assert_eq!(sa_obj["automountServiceAccountToken"], false);
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 4);
    let want = [
        ("gcs", sa.as_str(), None),
        ("xchg", "/var/run/secrets/tokens/xchg", Some("crm-api")),
        (
            "azure",
            "/var/run/secrets/azure/tokens/azure-identity-token",
            Some("api://AzureADTokenExchange"),
        ),
        ("s3", s3_token, Some("sts.amazonaws.com")),
    ];
    for (target, path, audience) in want {
        let c = containers
            .iter()
            .find(|c| {
                let a = strs(&c["args"]);
                a.windows(2).any(|w| w == ["--target", target])
            })
            .unwrap_or_else(|| panic!("no container refreshes {target}"));
        let args = strs(&c["args"]);
        assert_eq!(
            &args[..4],
            [
                "token",
                "refresh",
                "/etc/egress/config/config.yaml",
                "--watch"
            ]
        );
        assert!(
            args.windows(2)
                .any(|w| w == ["--proxy-dns", "egress-push.egress.svc:9902"]),
            "{args:?}"
        );
        let src = file_source(pod, c, path);
        match audience {
            Some(aud) => {
                assert_eq!(src["serviceAccountToken"]["audience"], aud, "{target}");
                assert!(src["serviceAccountToken"]["expirationSeconds"].is_u64());
            }
            None => {
                assert_eq!(src["secret"]["name"], "egress-sa-gcs");
                assert_eq!(src["secret"]["items"][0]["key"], "key.json");
            }
        }
    }
    // The refresher reads the config from the ConfigMap, which now carries it.
    let cm_name = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .unwrap()["configMap"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let cm = find(&objs, "ConfigMap", &cm_name);
    assert!(cm["data"]["config.yaml"]
        .as_str()
        .unwrap()
        .contains("${FLEET_XCHG_SECRET}"));
}

#[test]
fn render_k8s_token_audience_overrides_the_default_and_bad_paths_are_refused_by_target_and_field() {
    let d = setup("");
    let sa = sa_file(d.path());
    let base = std::fs::read_to_string(d.path().join("config.yaml")).unwrap();
    let write = |s3_token: &str| {
        std::fs::write(
            d.path().join("config.yaml"),
            base.replace(
                "endpoints:",
                &format!("{}endpoints:", targets(&sa, s3_token)),
            ),
        )
        .unwrap();
    };
    write("/var/run/secrets/tokens/s3");
    let out = render_env(d.path(), "k8s", &["--token-audience", "s3=my-sts"]);
    assert!(out.status.success(), "{}", text(&out));
    let files = yaml_files(&d.path().join("out"));
    let objs: Vec<Value> = files.iter().map(|f| load(f)).collect();
    let pod = &find(&objs, "Deployment", "egress-token-refresher")["spec"]["template"];
    let c = pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| strs(&c["args"]).contains(&"s3"))
        .unwrap();
    let src = file_source(pod, c, "/var/run/secrets/tokens/s3");
    assert_eq!(src["serviceAccountToken"]["audience"], "my-sts");

    // A service-account key has no audience; a relative path cannot be mounted in a pod.
    let out = render_env(d.path(), "k8s", &["--token-audience", "gcs=x"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("--token-audience gcs"),
        "{}",
        text(&out)
    );
    write("tokens/s3");
    let d2 = d.path().join("out2");
    let out = render_to(d.path(), "k8s", "out2", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("target s3: auth.web_identity.token_file (tokens/s3) cannot be mounted in the refresher pod: the path must be absolute"),
        "{}",
        text(&out)
    );
    assert!(!d2.exists());

    // Istio's gateway has no refresher: refused, naming target and field, writing nothing.
    write("/var/run/secrets/tokens/s3");
    let out = render_to(d.path(), "istio", "out2", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for (t, field) in [
        ("gcs", "auth.service_account_file"),
        ("xchg", "auth.subject_token_file"),
        ("azure", "auth.federated_token_file"),
        ("s3", "auth.web_identity.token_file"),
    ] {
        assert!(
            text(&out).contains(&format!("target {t}: ")) && text(&out).contains(field),
            "{t}: {}",
            text(&out)
        );
    }
    assert!(!text(&out).contains(SA_MARKER));
}

#[test]
fn render_k8s_with_redis_mounts_host_files_in_its_one_refresher_and_refuses_files_it_cannot_mount()
{
    let d = setup("");
    let base = std::fs::read_to_string(d.path().join("config.yaml"))
        .unwrap()
        .replace(
            "egress:\n",
            "egress:\n  token_store:\n    type: redis\n    redis:\n      address: \"redis.egress:6379\"\n",
        );
    let s3 = "    s3:\n      url: \"https://my-bucket.s3.eu-west-1.amazonaws.com\"\n      auth:\n        type: aws_sigv4\n        region: eu-west-1\n        service: s3\n        web_identity:\n          role_arn: arn:aws:iam::123456789012:role/egress\n          token_file: /var/run/secrets/eks.amazonaws.com/serviceaccount/token\n";
    // Redis alone: the refresher as before, no ServiceAccount of its own.
    std::fs::write(d.path().join("config.yaml"), &base).unwrap();
    let out = render_to(d.path(), "k8s", "plain", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let objs: Vec<Value> = yaml_files(&d.path().join("plain"))
        .iter()
        .map(|f| load(f))
        .collect();
    let pod = &find(&objs, "Deployment", "egress-token-refresher")["spec"]["template"];
    assert!(pod["spec"].get("serviceAccountName").is_none());
    assert!(!objs.iter().any(|o| o["kind"] == "ServiceAccount"));

    // Redis and a web identity: the same two replicas refreshing everything, with the token.
    std::fs::write(
        d.path().join("config.yaml"),
        base.replace("endpoints:", &format!("{s3}endpoints:")),
    )
    .unwrap();
    let out = render_env(d.path(), "k8s", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let files = yaml_files(&d.path().join("out"));
    let v = kubernetes_validate(&files);
    assert!(v.status.success(), "{}", text(&v));
    let objs: Vec<Value> = files.iter().map(|f| load(f)).collect();
    let refresher = find(&objs, "Deployment", "egress-token-refresher");
    assert_eq!(refresher["spec"]["replicas"], 2);
    let pod = &refresher["spec"]["template"];
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    assert!(!strs(&containers[0]["args"]).contains(&"--target"));
    let src = file_source(
        pod,
        &containers[0],
        "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
    );
    assert_eq!(src["serviceAccountToken"]["audience"], "sts.amazonaws.com");
    assert_eq!(pod["spec"]["serviceAccountName"], "egress-token-refresher");

    // A token endpoint CA at a relative path, which the refresher cannot have: refused.
    let xchg = "    xchg:\n      url: \"https://crm.example.com\"\n      tls: {ca_cert: c.crt}\n      auth:\n        type: oauth2_token_exchange\n        token_url: \"https://sts.example.com/token\"\n        subject_token_file: /var/run/secrets/tokens/xchg\n";
    std::fs::write(
        d.path().join("config.yaml"),
        base.replace("endpoints:", &format!("{xchg}endpoints:")),
    )
    .unwrap();
    let out = render_to(d.path(), "k8s", "out3", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "target xchg: the refresher would also read tls.ca_cert (c.crt), a relative path"
        ),
        "{}",
        text(&out)
    );
    assert!(!d.path().join("out3").exists());
}
