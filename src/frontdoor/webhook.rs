//! The signed webhook's signature (contract section 10): `X-Hr-Signature:
//! t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. Pure: the caller passes
//! the keys and the clock.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::password::Secret;

/// How far a signature's `t` may be from now, either way: a captured request
/// cannot be replayed later, and a sender's clock cannot sign for the future.
pub const WINDOW_SECONDS: i64 = 5 * 60;

/// Why a signature is refused; the `code` goes into the 401 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Hr-Signature header is missing")]
    Missing,
    #[error("X-Hr-Signature is not `t=<unix seconds>,v1=<hex>`")]
    Malformed,
    #[error("signature timestamp is more than 5 minutes old")]
    Expired,
    #[error("signature timestamp is more than 5 minutes in the future")]
    Future,
    #[error("no v1 signature matches the body under a current key")]
    Mismatch,
    #[error("no webhook key is configured")]
    NoKey,
}

impl SignatureError {
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing => "signature-missing",
            SignatureError::Malformed => "signature-malformed",
            SignatureError::Expired => "signature-expired",
            SignatureError::Future => "signature-in-future",
            SignatureError::Mismatch => "signature-mismatch",
            SignatureError::NoKey => "signature-no-key",
        }
    }
}

/// The hex HMAC-SHA256 of `"<t>.<body>"`: what a sender puts after `v1=`.
pub fn sign(key: &[u8], t: i64, body: &[u8]) -> String {
    to_hex(&mac(key, t, body))
}

fn mac(key: &[u8], t: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; this cannot fail.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Checks the header against every key (two during a rotation) and returns `t`.
///
/// Several `v1=` entries are allowed (a sender signing with old and new key
/// during its own rotation); any one matching any key passes. Each comparison is
/// constant-time, and every pair is compared, so timing tells nothing about which
/// key or entry came close.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    keys: &[Secret],
    now: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t: Option<i64> = None;
    let mut sigs: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match k {
            "t" if t.is_none() => {
                // Digits only: `+5`, ` 5` or `1e9` are not what a signer writes.
                if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SignatureError::Malformed);
                }
                t = Some(v.parse().map_err(|_| SignatureError::Malformed)?);
            }
            "t" => return Err(SignatureError::Malformed),
            "v1" => sigs.push(from_hex(v).ok_or(SignatureError::Malformed)?),
            // Other schemes (a future v2) are ignored, as Stripe-style headers do.
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if t < now - WINDOW_SECONDS {
        return Err(SignatureError::Expired);
    }
    if t > now + WINDOW_SECONDS {
        return Err(SignatureError::Future);
    }
    if keys.is_empty() {
        return Err(SignatureError::NoKey);
    }
    let mut ok = subtle::Choice::from(0u8);
    for key in keys {
        let expected = mac(key.expose().as_bytes(), t, body);
        for sig in &sigs {
            // ct_eq on slices of different length is false (and not secret: the
            // length of SHA-256 is public).
            ok |= expected.as_slice().ct_eq(sig.as_slice());
        }
    }
    if bool::from(ok) {
        Ok(t)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Compares a presented token with every valid one in constant time (the SCIM
/// bearer token; two valid during a rotation).
pub fn token_matches(presented: &str, keys: &[Secret]) -> bool {
    let mut ok = subtle::Choice::from(0u8);
    for key in keys {
        // Hash both sides first: ct_eq returns early on a length difference, and a
        // token's length is part of the secret.
        let a = sha256(presented.as_bytes());
        let b = sha256(key.expose().as_bytes());
        ok |= a.as_slice().ct_eq(b.as_slice());
    }
    bool::from(ok)
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    Sha256::digest(data).to_vec()
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000;
    const BODY: &[u8] = br#"{"event_id":"e1"}"#;

    fn keys(v: &[&str]) -> Vec<Secret> {
        v.iter().map(|k| Secret::new((*k).to_owned())).collect()
    }

    fn header(key: &str, t: i64, body: &[u8]) -> String {
        format!("t={t},v1={}", sign(key.as_bytes(), t, body))
    }

    #[test]
    fn known_answer_matches_an_independent_hmac() {
        // RFC 4231 test case 2 checks the primitive; then the framing "<t>.<body>".
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            to_hex(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // And the framing: t, a dot, the body.
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(b"k").unwrap();
        m.update(b"1796000000.{\"event_id\":\"e1\"}");
        assert_eq!(to_hex(&m.finalize().into_bytes()), sign(b"k", NOW, BODY));
    }

    #[test]
    fn good_signature_passes_and_returns_t() {
        let h = header("k1", NOW - 10, BODY);
        assert_eq!(verify(Some(&h), BODY, &keys(&["k1"]), NOW), Ok(NOW - 10));
    }

    #[test]
    fn bad_signature_or_other_body_fails() {
        let h = header("k1", NOW, BODY);
        assert_eq!(
            verify(Some(&h), b"{\"event_id\":\"e2\"}", &keys(&["k1"]), NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&h), BODY, &keys(&["other"]), NOW),
            Err(SignatureError::Mismatch)
        );
        let truncated = &h[..h.len() - 2];
        assert_eq!(
            verify(Some(truncated), BODY, &keys(&["k1"]), NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_and_future_timestamps_fail_at_the_window_edges() {
        let k = keys(&["k1"]);
        let at = |t: i64| verify(Some(&header("k1", t, BODY)), BODY, &k, NOW);
        assert_eq!(at(NOW - WINDOW_SECONDS), Ok(NOW - WINDOW_SECONDS));
        assert_eq!(at(NOW - WINDOW_SECONDS - 1), Err(SignatureError::Expired));
        assert_eq!(at(NOW + WINDOW_SECONDS), Ok(NOW + WINDOW_SECONDS));
        assert_eq!(at(NOW + WINDOW_SECONDS + 1), Err(SignatureError::Future));
    }

    #[test]
    fn missing_and_malformed_headers_fail() {
        let k = keys(&["k1"]);
        assert_eq!(verify(None, BODY, &k, NOW), Err(SignatureError::Missing));
        let sig = sign(b"k1", NOW, BODY);
        for bad in [
            "".to_owned(),
            format!("v1={sig}"),
            format!("t={NOW}"),
            format!("t=+{NOW},v1={sig}"),
            format!("t={NOW},t={NOW},v1={sig}"),
            format!("t={NOW},v1=zz{}", &sig[2..]),
            format!("t={NOW},v1={sig}0"),
            "garbage".to_owned(),
        ] {
            assert_eq!(
                verify(Some(&bad), BODY, &k, NOW),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn either_key_passes_during_a_rotation() {
        let both = keys(&["new", "old"]);
        for k in ["new", "old"] {
            assert_eq!(
                verify(Some(&header(k, NOW, BODY)), BODY, &both, NOW),
                Ok(NOW)
            );
        }
        // After the rotation only the new key is kept: the old one fails.
        assert_eq!(
            verify(Some(&header("old", NOW, BODY)), BODY, &keys(&["new"]), NOW),
            Err(SignatureError::Mismatch)
        );
        // A sender signing with both (two v1 entries) passes on either side.
        let two = format!(
            "t={NOW},v1={},v1={}",
            sign(b"old", NOW, BODY),
            sign(b"new", NOW, BODY)
        );
        assert_eq!(verify(Some(&two), BODY, &keys(&["new"]), NOW), Ok(NOW));
        assert_eq!(
            verify(Some(&header("k", NOW, BODY)), BODY, &[], NOW),
            Err(SignatureError::NoKey)
        );
    }

    #[test]
    fn bearer_tokens_compare_against_every_valid_token() {
        let k = keys(&["tok-new", "tok-old"]);
        assert!(token_matches("tok-new", &k));
        assert!(token_matches("tok-old", &k));
        assert!(!token_matches("tok-ol", &k));
        assert!(!token_matches("", &k));
        assert!(!token_matches("tok-new", &[]));
    }
}
