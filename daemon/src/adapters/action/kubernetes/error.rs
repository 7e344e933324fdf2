//! How a Kubernetes action fails: the API's answer (`ApiError`, as kubectl prints it) and why an
//! action stopped (`Failure`: the API refused, or a check of ours did).

/// An API error, or a transport one (`code` 0).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status; 0 when no answer came.
    pub code: u16,
    /// `Status.reason` (`Conflict`, `Forbidden`, `TooManyRequests`…).
    pub reason: String,
    /// `Status.message`.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.code == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{} {}: {}", self.code, self.reason, self.message)
        }
    }
}

impl ApiError {
    pub(super) fn from_kube(e: ::kube::Error) -> Self {
        Self::from_kube_ref(&e)
    }
    pub(super) fn from_kube_ref(e: &::kube::Error) -> Self {
        match e {
            ::kube::Error::Api(s) => Self {
                code: s.code,
                reason: one_line(&s.reason),
                message: one_line(&s.message),
            },
            other => Self {
                code: 0,
                reason: String::new(),
                message: one_line(&other.to_string()),
            },
        }
    }
    /// An answer outside 2xx: its status, and the reason and message of its `Status` body, or
    /// its text when the body is not one (a proxy's page, not UTF-8), as kube reads them.
    pub(super) fn from_answer(code: u16, body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        match serde_json::from_str::<::kube::core::Status>(&text) {
            Ok(s) => Self {
                code,
                reason: one_line(&s.reason),
                message: one_line(&s.message),
            },
            Err(_) => Self {
                code,
                reason: "Failed to parse error data".into(),
                message: one_line(text.trim()),
            },
        }
    }
    /// Worth another try later: no answer, 429 or 5xx.
    pub fn transient(&self) -> bool {
        self.code == 0 || self.code == 429 || (500..600).contains(&self.code)
    }
}

/// Characters of an API answer kept in an error: kube quotes an unreadable error body whole
/// (a proxy's HTML page, a megabyte of anything), and the message goes to the timeline and the
/// pages. Kubernetes' own `Status` messages are a sentence.
const MESSAGE_CHARS: usize = 300;

/// The answer's text on one line, control characters as spaces, cut to [`MESSAGE_CHARS`].
fn one_line(text: &str) -> String {
    let text = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    crate::domain::notification::truncate(&text, MESSAGE_CHARS)
}

/// Why an action stopped.
#[derive(Debug)]
pub enum Failure {
    /// The API refused or failed.
    Api(String, ApiError),
    /// A check of ours (bounds, paused, PDB past the timeout…).
    Refused(String),
    /// Someone else's change is in progress on the target (a rollout remedyd did not start),
    /// found before the first write: the step is held and tried again later.
    Held(String),
    /// A GitOps reconciler put back what the step changed: trying again would only flap, so
    /// the action's breaker on this target opens at once (as for RBAC).
    Reverted(String),
}

impl Failure {
    pub(super) fn api(what: impl Into<String>) -> impl FnOnce(ApiError) -> Failure {
        let what = what.into();
        move |e| Failure::Api(what, e)
    }
}

/// A refusal (a precondition that does not hold).
pub(super) fn refuse<T>(why: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Refused(why.into()))
}

/// Parameters that do not render or parse: a refusal.
pub(super) fn bad(e: String) -> Failure {
    Failure::Refused(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_unreadable_error_body_becomes_one_short_line() {
        // Found by tests/it/fuzz_responses.rs: a 404 with a megabyte body became a megabyte
        // step summary.
        let body = format!("<html>\n{}</html>", "x".repeat(1 << 20));
        let status = ::kube::core::Status::failure(&body, "NotFound").with_code(404);
        let e = ApiError::from_kube(::kube::Error::Api(status.boxed()));
        assert!(e.message.chars().count() <= MESSAGE_CHARS && !e.message.contains('\n'));
        assert!(e.message.starts_with("<html> xxx"), "{}", e.message);
    }

    #[test]
    fn an_answer_is_read_by_its_status_and_its_message_on_one_clean_line() {
        // Found by tests/it/fuzz_responses/kube_evict.rs: a 409 whose Status said 404 was a pod
        // gone; a message's control characters reached the step's summary.
        let body = br#"{"kind":"Status","code":404,"reason":"Conflict","message":"a\u0000b\u001b[31m\nc"}"#;
        let e = ApiError::from_answer(409, body);
        assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
        assert_eq!(e.message, "a b [31m c");
        let e = ApiError::from_answer(404, b"\xff\xfe not found");
        assert_eq!(
            (e.code, e.message.as_str()),
            (404, "\u{fffd}\u{fffd} not found")
        );
        assert!(!ApiError::from_answer(999, b"").transient());
    }
}
