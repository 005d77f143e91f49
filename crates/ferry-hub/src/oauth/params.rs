//! Request parameters: bounded, each at most once, and the percent-encoding
//! of what goes back into URLs; PKCE value shapes.

use super::{PageError, shown};
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query};
use axum::http::StatusCode;

/// Longest value of any parameter; the longest legitimate ones (PKCE
/// verifiers, loopback redirect URIs) are far below it.
pub(super) const MAX_PARAM: usize = 2048;
const MAX_PARAMS: usize = 32;

/// The authorize parameters a login or consent form carries through its POST.
const CARRIED: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "scope",
    "state",
    // OpenID Connect: echoed in the ID token.
    "nonce",
];

/// Request parameters, bounded in number and length, each at most once
/// (RFC 6749 §3.1); an empty value counts as absent.
#[derive(Debug)]
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn new(pairs: Vec<(String, String)>) -> Result<Self, String> {
        if pairs.len() > MAX_PARAMS {
            return Err(format!("too many parameters (at most {MAX_PARAMS})"));
        }
        for (i, (name, value)) in pairs.iter().enumerate() {
            if name.len() > MAX_PARAM || value.len() > MAX_PARAM {
                return Err(format!(
                    "parameter {:?} is too long (at most {MAX_PARAM} bytes)",
                    truncate(name)
                ));
            }
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(format!(
                    "parameter {:?} appears more than once",
                    truncate(name)
                ));
            }
        }
        Ok(Self(pairs))
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

pub(super) fn truncate(text: &str) -> &str {
    let mut end = text.len().min(40);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(super) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn encode_pairs(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `application/x-www-form-urlencoded` decoding of one component.
pub(super) fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `uri` with `pairs` added to its query.
pub(super) fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{}", encode_pairs(pairs))
}

/// Unpadded URL-safe base64 of 32 bytes: 43 characters.
pub(super) fn is_base64_of_32_bytes(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 7636 §4.2: BASE64URL(SHA-256) is exactly 43 unreserved characters.
pub(super) fn is_s256_challenge(challenge: &str) -> bool {
    is_base64_of_32_bytes(challenge)
}

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
pub(super) fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The authorize parameters among `params`, to take through a login.
pub(super) fn carried(params: &Params) -> Vec<(String, String)> {
    CARRIED
        .iter()
        .filter_map(|name| params.get(name).map(|v| (name.to_string(), v.to_string())))
        .collect()
}

pub(super) fn query_params(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Params, PageError> {
    let Query(pairs) =
        query.map_err(|e| shown(StatusCode::BAD_REQUEST, "Bad request", e.body_text()))?;
    Params::new(pairs).map_err(|e| shown(StatusCode::BAD_REQUEST, "Bad request", e))
}

pub(super) fn form_params(
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Params, PageError> {
    let Form(pairs) =
        form.map_err(|e| shown(StatusCode::BAD_REQUEST, "Bad request", e.body_text()))?;
    Params::new(pairs).map_err(|e| shown(StatusCode::BAD_REQUEST, "Bad request", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        let text = "a b&c=d/é+%";
        assert_eq!(form_decode(&encode(text)).unwrap(), text);
        assert_eq!(form_decode("a+b%2B").unwrap(), "a b+");
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
        assert_eq!(
            with_query("http://127.0.0.1:1/cb?x=1", &[("code", "a b")]),
            "http://127.0.0.1:1/cb?x=1&code=a%20b"
        );
    }
}
