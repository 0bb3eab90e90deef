#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use crate::tokens::time::rfc3339;

const NOW: u64 = 1_800_000_000_000;

fn reply(creds: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:ns:sa</SubjectFromWebIdentityToken>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/r/egress</Arn>
      <AssumedRoleId>AROA:egress</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>{creds}</Credentials>
    <Provider>oidc.example.com</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>c6104cbe</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#
    )
}

fn good_creds() -> String {
    format!(
        "<SessionToken>FQoGZXIvYXdzE+token/with=</SessionToken>\n<SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>\n<Expiration>{}</Expiration>\n<AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>",
        rfc3339(NOW + 3_600_000)
    )
}

#[test]
fn a_successful_reply_gives_the_credentials_and_debug_hides_them() {
    let c = parse_reply(200, reply(&good_creds()).as_bytes(), NOW).unwrap();
    assert_eq!(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
    assert_eq!(
        c.secret_access_key.expose(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
    );
    assert_eq!(c.session_token.expose(), "FQoGZXIvYXdzE+token/with=");
    assert_eq!(c.expires_at_ms, NOW + 3_600_000);
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("wJalr") && !dbg.contains("FQoG"), "{dbg}");
}

#[test]
fn entities_fractions_and_offsets_are_read() {
    let creds = good_creds()
        .replace("token/with=", "token&#x2F;with&#61;")
        .replace(
            &rfc3339(NOW + 3_600_000),
            "2027-01-15T08:00:00.123456+00:00",
        );
    let c = parse_reply(200, reply(&creds).as_bytes(), NOW).unwrap();
    assert_eq!(c.session_token.expose(), "FQoGZXIvYXdzE+token/with=");
    // 1_800_000_000 s is 2027-01-15T08:00:00Z.
    assert_eq!(c.expires_at_ms, NOW + 123);
}

#[test]
fn an_sts_error_document_becomes_a_clear_reason() {
    let body = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>
  <Message>Couldn&apos;t retrieve verification key from your identity provider</Message></Error>
  <RequestId>abc</RequestId></ErrorResponse>"#;
    let e = parse_reply(400, body.as_bytes(), NOW).unwrap_err();
    assert_eq!(
        e,
        StsError::Refused {
            status: 400,
            code: "InvalidIdentityToken".into(),
            message: "Couldn't retrieve verification key from your identity provider".into()
        }
    );
    assert_eq!(e.reason(), "sts_refused");
    // Any other failure without an STS document: the status only (the body may be anything).
    assert_eq!(
        parse_reply(500, b"<html>oops</html>", NOW),
        Err(StsError::Status(500))
    );
    assert!(parse_reply(503, b"", NOW).is_err());
}

#[test]
fn missing_or_doubled_fields_are_errors() {
    for (name, drop) in [
        (
            "AccessKeyId",
            "<AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>",
        ),
        (
            "SecretAccessKey",
            "<SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>",
        ),
        (
            "SessionToken",
            "<SessionToken>FQoGZXIvYXdzE+token/with=</SessionToken>",
        ),
    ] {
        let creds = good_creds().replace(drop, "");
        assert_eq!(
            parse_reply(200, reply(&creds).as_bytes(), NOW),
            Err(StsError::Missing(name)),
            "{name}"
        );
        let doubled = format!("{}{drop}", good_creds());
        assert!(matches!(
            parse_reply(200, reply(&doubled).as_bytes(), NOW),
            Err(StsError::Malformed(_))
        ));
    }
    let no_creds = reply("").replace("<Credentials></Credentials>", "");
    assert_eq!(
        parse_reply(200, no_creds.as_bytes(), NOW),
        Err(StsError::Missing("Credentials"))
    );
}

#[test]
fn hostile_replies_are_refused_without_panicking() {
    let huge = format!("{}{}", reply(&good_creds()), " ".repeat(MAX_STS_REPLY));
    assert_eq!(
        parse_reply(200, huge.as_bytes(), NOW),
        Err(StsError::TooLarge)
    );
    let header_break = good_creds().replace("token/with=", "tok\r\nx-evil: 1");
    assert_eq!(
        parse_reply(200, reply(&header_break).as_bytes(), NOW),
        Err(StsError::Invalid("SessionToken"))
    );
    let nested = good_creds().replace("ASIAIOSFODNN7EXAMPLE", "<b>ASIA</b>");
    assert!(parse_reply(200, reply(&nested).as_bytes(), NOW).is_err());
    let cdata = good_creds().replace("ASIAIOSFODNN7EXAMPLE", "<![CDATA[ASIA]]>");
    assert!(parse_reply(200, reply(&cdata).as_bytes(), NOW).is_err());
    let expired = good_creds().replace(&rfc3339(NOW + 3_600_000), &rfc3339(NOW - 1000));
    assert_eq!(
        parse_reply(200, reply(&expired).as_bytes(), NOW),
        Err(StsError::Expired)
    );
    let bad_date = good_creds().replace(&rfc3339(NOW + 3_600_000), "tomorrow");
    assert_eq!(
        parse_reply(200, reply(&bad_date).as_bytes(), NOW),
        Err(StsError::Invalid("Expiration"))
    );
    for junk in [
        &b""[..],
        b"\xff\xfe",
        b"<",
        b"<?xml",
        b"<!-- x",
        b"<AssumeRoleWithWebIdentityResponse>",
        b"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>",
        b"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>A&#xFFFFFFFFF;</AccessKeyId>",
        b"<OtherResponse/>",
        b"{\"json\":true}",
    ] {
        assert!(parse_reply(200, junk, NOW).is_err(), "{junk:?}");
    }
    // A lookalike element name is not the field.
    let lookalike = good_creds()
        .replace("<AccessKeyId>", "<AccessKeyIdX>")
        .replace("</AccessKeyId>", "</AccessKeyIdX>");
    assert_eq!(
        parse_reply(200, reply(&lookalike).as_bytes(), NOW),
        Err(StsError::Missing("AccessKeyId"))
    );
}

#[test]
fn the_request_form_names_every_parameter_and_encodes_the_token() {
    let f = assume_role_form(
        "arn:aws:iam::123456789012:role/r",
        "egress",
        "eyJ.a+b/c=\n",
        Some(900),
    )
    .unwrap();
    assert_eq!(
        f,
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fr&RoleSessionName=egress&WebIdentityToken=eyJ.a%2Bb%2Fc%3D&DurationSeconds=900"
    );
    assert_eq!(
        assume_role_form("a", "s", " \n", None),
        Err(StsError::EmptyToken)
    );
    assert!(matches!(
        assume_role_form("a", "s", &"x".repeat(MAX_WEB_IDENTITY_TOKEN + 1), None),
        Err(StsError::TokenTooLarge(_))
    ));
}

#[test]
fn rfc3339_parsing_matches_the_formatter_and_refuses_offsets() {
    for ms in [0, 951_782_400_000, 1_736_940_600_000, 4_102_444_800_000] {
        assert_eq!(parse_rfc3339_ms(&rfc3339(ms)), Some(ms));
    }
    for bad in [
        "2027-01-15T08:00:00+02:00",
        "2027-13-15T08:00:00Z",
        "2027-01-15 08:00:00",
        "27-01-15T08:00:00Z",
        "2027-01-15T08:00:00.Z",
        "",
    ] {
        assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
    }
}
