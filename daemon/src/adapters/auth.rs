//! The bearer token that guards the webhook and the API's writes.

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

    #[test]
    fn token_must_match_exactly() {
        assert!(authorized(Some(b"Bearer s3cr3t"), "s3cr3t"));
        assert!(!authorized(Some(b"Bearer s3cr3u"), "s3cr3t"));
        assert!(!authorized(Some(b"Bearer s3cr3"), "s3cr3t"));
        assert!(!authorized(Some(b"s3cr3t"), "s3cr3t"));
        assert!(!authorized(None, "s3cr3t"));
    }
}
