#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use egress_core::secret::Secret;

#[test]
fn credentials_are_refreshed_ahead_of_expiry_and_never_printed() {
    let h = Held {
        access_key_id: "ASIAEXAMPLE".into(),
        secret_access_key: Secret::new("SECRETVALUE"),
        session_token: Secret::new("SESSIONTOKEN"),
        expires_at_ms: 3_600_000,
        obtained_at_ms: 0,
    };
    assert_eq!(h.refresh_at_ms(), 3_600_000 - REFRESH_BEFORE_MS);
    let short = Held {
        expires_at_ms: 60_000,
        ..h.clone()
    };
    assert_eq!(
        short.refresh_at_ms(),
        30_000,
        "at most half the lifetime ahead"
    );
    let text = format!(
        "{h:?} {:?} {}",
        h.push_body("s3"),
        obtained_line("s3", &h, Origin::Fetched)
    );
    assert!(
        !text.contains("SECRETVALUE") && !text.contains("SESSIONTOKEN"),
        "{text}"
    );
    assert!(text.contains("ASIAEXAMPLE"));
}

/// A stub STS: answers each request with the next canned reply and reports the request body.
async fn stub_sts(replies: Vec<(u16, String)>) -> (String, tokio::sync::mpsc::Receiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        for (status, reply) in replies {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        let _ = tx.send(body.to_string()).await;
                        break;
                    }
                }
            }
            let _ = s
                .write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                        reply.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
    (url, rx)
}

fn fetcher_for(dir: &std::path::Path, sts_url: &str) -> AwsFetcher {
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!("http:\n  addr: \":8080\"\negress:\n  targets:\n    s3:\n      url: http://127.0.0.1:1\n      auth:\n        type: aws_sigv4\n        region: us-east-1\n        service: s3\n        web_identity:\n          role_arn: arn:aws:iam::123456789012:role/r\n          token_file: token\n          sts_url: {sts_url}\n  routes:\n    - path_prefix: /egress/s3\n      target: s3\n"),
    )
    .unwrap();
    let source = crate::source::load(&config).unwrap_or_else(|e| panic!("{e:?}"));
    fetchers(&source, None).unwrap().pop().unwrap()
}

#[tokio::test]
async fn the_token_file_is_read_again_on_every_call_and_sts_errors_are_reported_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let expires = rfc3339(now_ms() + 3_600_000);
    let ok = format!("<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIASTUB</AccessKeyId><SecretAccessKey>stubSECRET</SecretAccessKey><SessionToken>stubSESSION=</SessionToken><Expiration>{expires}</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>");
    let err = "<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredTokenException</Code><Message>Token expired: current date/time is after exp</Message></Error></ErrorResponse>".to_string();
    let (url, mut seen) = stub_sts(vec![(200, ok), (400, err)]).await;
    let f = fetcher_for(dir.path(), &url);
    std::fs::write(dir.path().join("token"), "first.jwt.token\n").unwrap();
    let h = f.fetch().await.unwrap();
    assert_eq!(h.access_key_id, "ASIASTUB");
    assert_eq!(h.session_token.expose(), "stubSESSION=");
    let body = seen.recv().await.unwrap();
    assert!(
        body.contains("Action=AssumeRoleWithWebIdentity")
            && body.contains("Version=2011-06-15")
            && body.contains("RoleSessionName=egress")
            && body.contains("WebIdentityToken=first.jwt.token"),
        "{body}"
    );
    // The file rotated: the next call sends the new token; STS refuses it with a reason.
    std::fs::write(dir.path().join("token"), "second.jwt.token").unwrap();
    let e = f.fetch().await.unwrap_err();
    assert!(seen
        .recv()
        .await
        .unwrap()
        .contains("WebIdentityToken=second.jwt.token"));
    assert_eq!(e.reason, "sts_refused");
    assert!(
        e.message
            .contains("HTTP 400 ExpiredTokenException: Token expired"),
        "{}",
        e.message
    );
    // A missing token file is named.
    std::fs::remove_file(dir.path().join("token")).unwrap();
    let e = f.fetch().await.unwrap_err();
    assert_eq!(e.reason, "token_file");
    assert!(
        e.message.contains("web_identity.token_file"),
        "{}",
        e.message
    );
}

/// `token refresh` prints these after the target name: kept as they were.
#[test]
fn obtain_errors_keep_their_texts() {
    let sts = AwsObtainError::Sts(FetchFailure {
        reason: "transport",
        message: "STS http://127.0.0.1:1/: connection refused".into(),
    });
    assert_eq!(
        sts.to_string(),
        "STS call failed: STS http://127.0.0.1:1/: connection refused (transport)"
    );
    let redis = AwsObtainError::Redis(anyhow::anyhow!("connection reset"));
    assert_eq!(redis.to_string(), "redis: connection reset");
    assert_eq!(
        AwsObtainError::LockHeld.to_string(),
        "redis: another refresher holds the lock and stored no credentials"
    );
}
