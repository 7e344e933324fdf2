//! The bearer token that guards the webhook and the API's writes, and the signature that proves
//! a Slack interaction (an Approve/Deny click) comes from Slack.

use std::time::Duration;

use crate::domain::time::Timestamp;

/// How far a Slack request's timestamp may be from now, either way: Slack's own rule (5 minutes)
/// against replays of a captured request.
pub const SLACK_MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Why a Slack request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlackAuthError {
    /// A header is missing or not text.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// `X-Slack-Request-Timestamp` is not a number of seconds.
    #[error("X-Slack-Request-Timestamp {0:?} is not a Unix time in seconds")]
    BadTimestamp(String),
    /// The timestamp is more than [`SLACK_MAX_SKEW`] from now.
    #[error(
        "request timestamp {at} is {skew}s from now ({now}); requests older or newer than 5 minutes are refused"
    )]
    Stale {
        /// The request's time.
        at: Timestamp,
        /// Now.
        now: Timestamp,
        /// Seconds between them.
        skew: i64,
    },
    /// The signature does not match the body under the signing secret.
    #[error(
        "X-Slack-Signature does not match the request (v0 HMAC-SHA256 with the signing secret)"
    )]
    BadSignature,
}

/// Verifies a Slack request: `signature` must be `v0=` + hex(HMAC-SHA256(secret,
/// `v0:{timestamp}:{body}`)) (compared in constant time), and `timestamp` (Unix seconds) within
/// [`SLACK_MAX_SKEW`] of `now`.
pub fn verify_slack(
    secret: &str,
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: Timestamp,
) -> Result<(), SlackAuthError> {
    let secs: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SlackAuthError::BadTimestamp(timestamp.to_string()))?;
    let at = Timestamp(secs.saturating_mul(1000));
    // In milliseconds: whole seconds would let a request 300.9 s ahead pass as 300.
    let skew_ms = now.0.saturating_sub(at.0);
    if skew_ms.unsigned_abs() > SLACK_MAX_SKEW.as_millis() as u64 {
        let skew = skew_ms / 1000;
        return Err(SlackAuthError::Stale { at, now, skew });
    }
    let mac = signature
        .strip_prefix("v0=")
        .and_then(unhex)
        .ok_or(SlackAuthError::BadSignature)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut msg = format!("v0:{}:", timestamp.trim()).into_bytes();
    msg.extend_from_slice(body);
    ring::hmac::verify(&key, &msg, &mac).map_err(|_| SlackAuthError::BadSignature)
}

/// Lower- or upper-case hex to bytes.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Compares a presented `Authorization` header with the token in constant time.
pub fn authorized(header: Option<&[u8]>, token: &str) -> bool {
    let Some(h) = header else { return false };
    let Some(presented) = h.strip_prefix(b"Bearer ") else {
        return false;
    };
    let want = token.as_bytes();
    // Length is not secret (it is fixed by configuration); the contents are compared fully.
    if presented.len() != want.len() {
        return false;
    }
    presented
        .iter()
        .zip(want)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `v0=` + hex HMAC, as Slack signs (computed here independently of `verify_slack`).
    fn sign(secret: &str, ts: &str, body: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, format!("v0:{ts}:{body}").as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("v0={hex}")
    }

    #[test]
    fn slacks_documented_example_verifies() {
        // The example of Slack's "Verifying requests from Slack" guide.
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let ts = "1531420618";
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        let now = Timestamp(1_531_420_618_000 + 60_000);
        assert_eq!(verify_slack(secret, ts, body.as_bytes(), sig, now), Ok(()));
        assert_eq!(sign(secret, ts, body), sig);
    }

    #[test]
    fn forged_stale_and_future_slack_requests_are_refused() {
        let now = Timestamp(1_800_000_000_000);
        let ts = "1800000000";
        let good = sign("s", ts, "payload=x");
        assert_eq!(verify_slack("s", ts, b"payload=x", &good, now), Ok(()));
        assert_eq!(
            verify_slack("s", ts, b"payload=y", &good, now),
            Err(SlackAuthError::BadSignature)
        );
        assert_eq!(
            verify_slack("other", ts, b"payload=x", &good, now),
            Err(SlackAuthError::BadSignature)
        );
        assert_eq!(
            verify_slack("s", ts, b"payload=x", "v0=zz", now),
            Err(SlackAuthError::BadSignature)
        );
        for ts in ["1799999699", "1800000301"] {
            let sig = sign("s", ts, "payload=x");
            let e = verify_slack("s", ts, b"payload=x", &sig, now).unwrap_err();
            assert!(matches!(e, SlackAuthError::Stale { .. }), "{e}");
        }
        // 300.5 s ahead is beyond 5 minutes, even though it rounds to 300 whole seconds.
        let sig = sign("s", "1800000300", "payload=x");
        let e = verify_slack(
            "s",
            "1800000300",
            b"payload=x",
            &sig,
            now.minus(Duration::from_millis(500)),
        );
        assert!(matches!(e, Err(SlackAuthError::Stale { .. })), "{e:?}");
        let edge = sign("s", "1799999700", "payload=x");
        assert_eq!(
            verify_slack("s", "1799999700", b"payload=x", &edge, now),
            Ok(()),
            "exactly 5 minutes is still in time"
        );
        assert!(matches!(
            verify_slack("s", "soon", b"", &good, now),
            Err(SlackAuthError::BadTimestamp(_))
        ));
    }

    #[test]
    fn token_must_match_exactly() {
        assert!(authorized(Some(b"Bearer s3cr3t"), "s3cr3t"));
        assert!(!authorized(Some(b"Bearer s3cr3u"), "s3cr3t"));
        assert!(!authorized(Some(b"Bearer s3cr3"), "s3cr3t"));
        assert!(!authorized(Some(b"s3cr3t"), "s3cr3t"));
        assert!(!authorized(None, "s3cr3t"));
    }
}
