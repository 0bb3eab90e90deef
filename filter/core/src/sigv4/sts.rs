//! STS `AssumeRoleWithWebIdentity`: the request `egressctl token refresh` sends, and a strict
//! reading of the XML reply into temporary credentials.
//!
//! The reply is read by a small purpose-built scanner, not a general XML parser: the root
//! element must be `AssumeRoleWithWebIdentityResponse` (or `ErrorResponse`), each credential
//! field must appear exactly once inside `Credentials`, as text only (no child element, no
//! CDATA), with the five predefined entities and numeric references decoded. Anything else is
//! an error; nothing here can panic or loop on hostile input.

#![deny(clippy::indexing_slicing)]

use crate::secret::Secret;
use crate::tokens::request::form_encode;

/// The STS API version every request names.
pub const STS_VERSION: &str = "2011-06-15";
/// Largest reply read (a real one is about 2 KiB).
pub const MAX_STS_REPLY: usize = 64 * 1024;
/// Largest session token accepted (AWS documents no bound; real ones are 1-3 KiB).
pub const MAX_SESSION_TOKEN: usize = 8 * 1024;
/// Largest web identity token sent (the token file's content).
pub const MAX_WEB_IDENTITY_TOKEN: usize = 20 * 1024;

/// Temporary credentials from STS. `Debug` shows the key id and expiry only.
#[derive(Clone, PartialEq, Eq)]
pub struct TemporaryCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    /// Unix milliseconds.
    pub expires_at_ms: u64,
}

impl std::fmt::Debug for TemporaryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporaryCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// Why STS gave no credentials. Never carries a credential or the web identity token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StsError {
    #[error("the web identity token file is empty")]
    EmptyToken,
    #[error("the web identity token is too large ({0} bytes)")]
    TokenTooLarge(usize),
    #[error("STS refused: HTTP {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("STS answered HTTP {0} without an STS error document")]
    Status(u16),
    #[error("the STS reply is larger than {MAX_STS_REPLY} bytes")]
    TooLarge,
    #[error("the STS reply is not valid: {0}")]
    Malformed(&'static str),
    #[error("the STS reply has no {0}")]
    Missing(&'static str),
    #[error("the STS reply's {0} is not valid")]
    Invalid(&'static str),
    #[error("the STS credentials have already expired")]
    Expired,
}

impl StsError {
    /// A short reason code (logs, metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            StsError::EmptyToken | StsError::TokenTooLarge(_) => "token_file",
            StsError::Refused { .. } | StsError::Status(_) => "sts_refused",
            StsError::Expired => "expired",
            _ => "bad_reply",
        }
    }
}

/// The form body of `AssumeRoleWithWebIdentity` (POST, `application/x-www-form-urlencoded`).
/// `token` is the token file's content; surrounding whitespace (a trailing newline) is dropped.
pub fn assume_role_form(
    role_arn: &str,
    session_name: &str,
    token: &str,
    duration_secs: Option<u32>,
) -> Result<String, StsError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(StsError::EmptyToken);
    }
    if token.len() > MAX_WEB_IDENTITY_TOKEN {
        return Err(StsError::TokenTooLarge(token.len()));
    }
    let mut form = format!(
        "Action=AssumeRoleWithWebIdentity&Version={STS_VERSION}&RoleArn={}&RoleSessionName={}&WebIdentityToken={}",
        form_encode(role_arn),
        form_encode(session_name),
        form_encode(token)
    );
    if let Some(d) = duration_secs {
        form.push_str(&format!("&DurationSeconds={d}"));
    }
    Ok(form)
}

/// Reads STS's reply (`status`, body) at `now_ms`.
pub fn parse_reply(
    status: u16,
    body: &[u8],
    now_ms: u64,
) -> Result<TemporaryCredentials, StsError> {
    if body.len() > MAX_STS_REPLY {
        return Err(StsError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| StsError::Malformed("not UTF-8"))?;
    let root = root_name(text)?;
    if root == "ErrorResponse" || !(200..300).contains(&status) {
        if root != "ErrorResponse" {
            return Err(StsError::Status(status));
        }
        let error = element(text, "Error")?.ok_or(StsError::Missing("Error"))?;
        let code = text_of(error, "Code")?.unwrap_or_default();
        let message = text_of(error, "Message")?.unwrap_or_default();
        return Err(StsError::Refused {
            status,
            code: printable(&code, 64),
            message: printable(&message, 300),
        });
    }
    if root != "AssumeRoleWithWebIdentityResponse" {
        return Err(StsError::Malformed(
            "not an AssumeRoleWithWebIdentity reply",
        ));
    }
    let result = element(text, "AssumeRoleWithWebIdentityResult")?
        .ok_or(StsError::Missing("AssumeRoleWithWebIdentityResult"))?;
    let creds = element(result, "Credentials")?.ok_or(StsError::Missing("Credentials"))?;
    let field = |name: &'static str| -> Result<String, StsError> {
        text_of(creds, name)?.ok_or(StsError::Missing(name))
    };
    let access_key_id = field("AccessKeyId")?;
    if access_key_id.is_empty()
        || access_key_id.len() > 128
        || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(StsError::Invalid("AccessKeyId"));
    }
    let secret = field("SecretAccessKey")?;
    if secret.is_empty() || secret.len() > 256 || !secret.bytes().all(is_key_byte) {
        return Err(StsError::Invalid("SecretAccessKey"));
    }
    let token = field("SessionToken")?;
    if token.is_empty() || token.len() > MAX_SESSION_TOKEN || !token.bytes().all(is_key_byte) {
        return Err(StsError::Invalid("SessionToken"));
    }
    let expires_at_ms =
        parse_rfc3339_ms(&field("Expiration")?).ok_or(StsError::Invalid("Expiration"))?;
    if expires_at_ms <= now_ms {
        return Err(StsError::Expired);
    }
    Ok(TemporaryCredentials {
        access_key_id,
        secret_access_key: Secret::new(secret),
        session_token: Secret::new(token),
        expires_at_ms,
    })
}

/// Bytes of a secret key or session token: base64 and a few separators, nothing that could
/// break a header.
fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+/=-_.~".contains(&b)
}

/// A server-chosen text, cut and stripped of control characters, safe to print.
fn printable(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

/// The name of the root element (after an optional XML declaration, comments, whitespace).
fn root_name(text: &str) -> Result<&str, StsError> {
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("<?") {
            let end = r
                .find("?>")
                .ok_or(StsError::Malformed("unterminated declaration"))?;
            rest = r.get(end + 2..).unwrap_or("").trim_start();
        } else if let Some(r) = rest.strip_prefix("<!--") {
            let end = r
                .find("-->")
                .ok_or(StsError::Malformed("unterminated comment"))?;
            rest = r.get(end + 3..).unwrap_or("").trim_start();
        } else {
            break;
        }
    }
    let r = rest
        .strip_prefix('<')
        .ok_or(StsError::Malformed("no root element"))?;
    let end = r
        .find(|c: char| c == '>' || c == '/' || c.is_ascii_whitespace())
        .ok_or(StsError::Malformed("no root element"))?;
    Ok(r.get(..end).unwrap_or(""))
}

/// The content of the one element `name` in `text` (`None`: absent; two: an error). Matches
/// `<name>` and `<name attr...>`, not `<nameSuffix>`.
fn element<'a>(text: &'a str, name: &'static str) -> Result<Option<&'a str>, StsError> {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut found: Option<&str> = None;
    let mut from = 0usize;
    while let Some(pos) = text.get(from..).and_then(|t| t.find(&open)) {
        let start = from + pos;
        let after = text.get(start + open.len()..).unwrap_or("");
        let next = after.chars().next();
        if !matches!(
            next,
            Some('>') | Some(' ') | Some('\t') | Some('\r') | Some('\n')
        ) {
            from = start + open.len();
            continue;
        }
        let gt = after
            .find('>')
            .ok_or(StsError::Malformed("unterminated tag"))?;
        let body_start = start + open.len() + gt + 1;
        let body_end = text
            .get(body_start..)
            .and_then(|t| t.find(&close))
            .map(|p| body_start + p)
            .ok_or(StsError::Malformed("unclosed element"))?;
        if found.is_some() {
            return Err(StsError::Malformed("an element appears twice"));
        }
        found = text.get(body_start..body_end);
        from = body_end + close.len();
    }
    Ok(found)
}

/// The text of the one element `name` in `text`, entities decoded. An element holding another
/// element or CDATA is an error.
fn text_of(text: &str, name: &'static str) -> Result<Option<String>, StsError> {
    let Some(raw) = element(text, name)? else {
        return Ok(None);
    };
    if raw.contains('<') {
        return Err(StsError::Invalid(name));
    }
    unescape(raw)
        .map(|s| Some(s.trim().to_string()))
        .ok_or(StsError::Invalid(name))
}

/// Decodes `&amp; &lt; &gt; &quot; &apos;` and `&#N;`/`&#xN;`; `None` on anything else.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp)?);
        let after = rest.get(amp + 1..)?;
        let semi = after.find(';').filter(|&s| s <= 10)?;
        let entity = after.get(..semi)?;
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let n = if let Some(h) = entity.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()?
                } else {
                    entity.strip_prefix('#')?.parse::<u32>().ok()?
                };
                char::from_u32(n)?
            }
        };
        out.push(c);
        rest = after.get(semi + 1..)?;
    }
    out.push_str(rest);
    Some(out)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)` to unix milliseconds (UTC offsets only:
/// STS answers in UTC). `None` on anything else.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let (main, offset_ok) = if let Some(m) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        (m, true)
    } else if let Some(m) = s.strip_suffix("+00:00") {
        (m, true)
    } else {
        (s, false)
    };
    if !offset_ok {
        return None;
    }
    let (date, time) = main.split_once(['T', 't'])?;
    let num = |t: &str, len: usize| -> Option<u64> {
        (t.len() == len && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let mut d = date.split('-');
    let (y, mo, day) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&day) || y < 1970 {
        return None;
    }
    let (hms, frac) = match time.split_once('.') {
        Some((hms, f)) => (hms, Some(f)),
        None => (time, None),
    };
    let mut t = hms.split(':');
    let (h, mi, sec) = (num(t.next()?, 2)?, num(t.next()?, 2)?, num(t.next()?, 2)?);
    if t.next().is_some() || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let millis = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let padded = format!("{f:0<3}");
            padded.get(..3)?.parse::<u64>().ok()?
        }
        Some(_) => return None,
    };
    let days = days_from_civil(y, mo, day);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + millis)
}

/// Days since 1970-01-01 of a Gregorian date (Howard Hinnant's days-from-civil), y >= 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

#[cfg(test)]
#[path = "sts_tests.rs"]
mod tests;
