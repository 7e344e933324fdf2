//! A history: the generated rules and policies (one set per reload variant) and the events,
//! with a readable text form that is also the regression file format:
//!
//! ```text
//! mode enforce
//! === variant 0 rules/model.yaml
//! rules: ...
//! === variant 0 policies/model.yaml
//! ...
//! === events
//! alerts fire HighErrorRate a warning @-30
//! wait 45s            # t=45s
//! next restart fail
//! ```

use std::fmt::{self, Write as _};

/// The services alerts are about: (name, namespace). `sandbox` is outside `limits.namespaces`.
pub const SERVICES: [(&str, &str); 5] = [
    ("a", "python-services"),
    ("b", "python-services"),
    ("c", "python-services"),
    ("d", "payments"),
    ("e", "sandbox"),
];

/// The action kinds the recording executors register; `evidence` gathers evidence.
pub const ACTIONS: [&str; 4] = ["evidence", "restart", "scale", "rollback"];

/// The human routes of the generated policies.
pub const ROUTES: [&str; 3] = ["oncall", "owner", "platform"];

/// Which alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertName {
    /// Rule `errors` (level from severity).
    Errors,
    /// Rule `latency`.
    Latency,
    /// Rule `platform-down` (level 3, one platform target).
    Platform,
    /// Rule `saturation` (only in the variant that adds it).
    Saturation,
}

impl AlertName {
    /// All, for generation and parsing.
    pub const ALL: [AlertName; 4] = [
        Self::Errors,
        Self::Latency,
        Self::Platform,
        Self::Saturation,
    ];
    /// The `alertname` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Errors => "HighErrorRate",
            Self::Latency => "HighLatency",
            Self::Platform => "PlatformDown",
            Self::Saturation => "HighSaturation",
        }
    }
}

/// The `severity` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Level 1 for `errors`.
    Warning,
    /// Level 2 for `errors`.
    Critical,
}

impl Severity {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// One alert of an Alertmanager payload.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertSpec {
    /// Firing or resolved.
    pub firing: bool,
    /// Alert name.
    pub name: AlertName,
    /// Index into [`SERVICES`].
    pub svc: usize,
    /// Severity.
    pub sev: Severity,
    /// `startsAt`, in seconds from the start of the history (may be before it or in the future).
    pub starts: i64,
}

/// What a recording executor answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// Success.
    Ok,
    /// A failure that will not fix itself.
    Fail,
    /// A retryable failure (5xx, connection error).
    Retry,
    /// The action timed out (a retryable failure).
    Timeout,
    /// Permission denied: `trip_breaker`.
    Denied,
    /// The future stays pending until a `release` event.
    Hang,
    /// A precondition refusal (`Outcome::refused`: nothing to roll back, scale blocked by max).
    NoChange,
}

impl OutcomeKind {
    /// All, for generation and parsing.
    pub const ALL: [OutcomeKind; 7] = [
        Self::Ok,
        Self::Fail,
        Self::Retry,
        Self::Timeout,
        Self::Denied,
        Self::Hang,
        Self::NoChange,
    ];
    /// Spelling in histories.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Fail => "fail",
            Self::Retry => "retry",
            Self::Timeout => "timeout",
            Self::Denied => "denied",
            Self::Hang => "hang",
            Self::NoChange => "nochange",
        }
    }
}

/// One step of a history.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The clock moves on by this many seconds.
    Wait(u64),
    /// One Alertmanager payload, ingested as the webhook does.
    Alerts(Vec<AlertSpec>),
    /// The polled error ratio of a service (`None`: the series is absent).
    Poll(usize, Option<f64>),
    /// The health value PromQL verifications read for a service (`None`: no data).
    Health(usize, Option<f64>),
    /// The next call of an action kind answers this.
    Next(&'static str, OutcomeKind),
    /// The oldest hung call returns this.
    Release(OutcomeKind),
    /// A pause (`global`, `rule:NAME`, `namespace:NAME`).
    Pause(String),
    /// A pause lifted.
    Resume(String),
    /// A route's deliveries fail (`false`) or succeed again.
    Route(&'static str, bool),
    /// The rules of this variant replace the current ones.
    Reload(usize),
    /// The engine is dropped and built again on the same store.
    Restart,
    /// A person resolves incident `INC-YYYY-NNNN` number N by hand (API, form or CLI).
    ResolveByHand(u32),
}

/// Global mode of a history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalMode {
    /// `mode = "dry-run"`.
    DryRun,
    /// `mode = "enforce"`.
    Enforce,
}

/// A whole history.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    /// Global mode.
    pub mode: GlobalMode,
    /// `stale_after` in seconds (`None`: the engine's default).
    pub stale_after: Option<u64>,
    /// Per variant, its files: (path under the variant's directory, text).
    pub variants: Vec<Vec<(String, String)>>,
    /// The events.
    pub events: Vec<Event>,
}

fn fmt_secs(s: u64) -> String {
    if s.is_multiple_of(3600) && s > 0 {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) && s > 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn fmt_value(v: Option<f64>) -> String {
    v.map_or("none".to_string(), |v| v.to_string())
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Wait(s) => write!(f, "wait {}", fmt_secs(*s)),
            Event::Alerts(alerts) => {
                f.write_str("alerts")?;
                for (i, a) in alerts.iter().enumerate() {
                    write!(
                        f,
                        "{} {} {} {} {} @{}",
                        if i == 0 { "" } else { "," },
                        if a.firing { "fire" } else { "resolve" },
                        a.name.as_str(),
                        SERVICES[a.svc].0,
                        a.sev.as_str(),
                        a.starts
                    )?;
                }
                Ok(())
            }
            Event::Poll(svc, v) => write!(f, "poll {} {}", SERVICES[*svc].0, fmt_value(*v)),
            Event::Health(svc, v) => write!(f, "health {} {}", SERVICES[*svc].0, fmt_value(*v)),
            Event::Next(action, o) => write!(f, "next {action} {}", o.as_str()),
            Event::Release(o) => write!(f, "release {}", o.as_str()),
            Event::Pause(s) => write!(f, "pause {s}"),
            Event::Resume(s) => write!(f, "resume {s}"),
            Event::Route(r, up) => write!(f, "route {r} {}", if *up { "up" } else { "down" }),
            Event::Reload(v) => write!(f, "reload {v}"),
            Event::Restart => f.write_str("restart"),
            Event::ResolveByHand(n) => write!(f, "resolve-by-hand {n}"),
        }
    }
}

impl History {
    /// The text form (see the module header); `note` lines are written first as comments.
    pub fn to_text(&self, note: &str) -> String {
        let mut out = String::new();
        for line in note.lines() {
            let _ = writeln!(out, "# {line}");
        }
        let _ = writeln!(
            out,
            "mode {}",
            match self.mode {
                GlobalMode::DryRun => "dry-run",
                GlobalMode::Enforce => "enforce",
            }
        );
        if let Some(s) = self.stale_after {
            let _ = writeln!(out, "stale_after {}", fmt_secs(s));
        }
        let used: Vec<usize> = (0..self.variants.len())
            .filter(|v| *v == 0 || self.events.contains(&Event::Reload(*v)))
            .collect();
        for v in used {
            for (path, text) in &self.variants[v] {
                let _ = writeln!(out, "=== variant {v} {path}");
                out.push_str(text);
                if !text.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
        let _ = writeln!(out, "=== events");
        let mut t = 0u64;
        for e in &self.events {
            if let Event::Wait(s) = e {
                t += s;
                let _ = writeln!(out, "{:<60}# t={}", e.to_string(), fmt_secs(t));
            } else {
                let _ = writeln!(out, "{e}");
            }
        }
        out
    }

    /// Parses the text form; the error names the line.
    pub fn parse(text: &str) -> Result<History, String> {
        let mut mode = None;
        let mut stale_after = None;
        let mut variants: Vec<Vec<(String, String)>> = Vec::new();
        let mut events = Vec::new();
        let mut section: Option<(usize, String)> = None;
        let mut in_events = false;
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            if let Some(head) = raw.strip_prefix("=== ") {
                if head.trim() == "events" {
                    in_events = true;
                    section = None;
                    continue;
                }
                let mut parts = head.split_whitespace();
                let (Some("variant"), Some(v), Some(path)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(format!(
                        "line {line_no}: expected `=== variant N PATH` or `=== events`"
                    ));
                };
                let v: usize = v
                    .parse()
                    .map_err(|_| format!("line {line_no}: variant {v:?} is not a number"))?;
                while variants.len() <= v {
                    variants.push(Vec::new());
                }
                variants[v].push((path.to_string(), String::new()));
                section = Some((v, path.to_string()));
                continue;
            }
            if let Some((v, _)) = &section
                && let Some(file) = variants[*v].last_mut()
            {
                file.1.push_str(raw);
                file.1.push('\n');
                continue;
            }
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            if !in_events {
                match line.split_once(' ') {
                    Some(("mode", "enforce")) => mode = Some(GlobalMode::Enforce),
                    Some(("mode", "dry-run")) => mode = Some(GlobalMode::DryRun),
                    Some(("stale_after", d)) => {
                        stale_after =
                            Some(parse_secs(d).map_err(|e| format!("line {line_no}: {e}"))?)
                    }
                    _ => {
                        return Err(format!(
                            "line {line_no}: expected `mode enforce|dry-run` or `stale_after DURATION`, got {line:?}"
                        ));
                    }
                }
                continue;
            }
            events.push(parse_event(line).map_err(|e| format!("line {line_no}: {e}"))?);
        }
        Ok(History {
            mode: mode.ok_or("no `mode` line")?,
            stale_after,
            variants,
            events,
        })
    }
}

fn parse_secs(s: &str) -> Result<u64, String> {
    let (num, mul) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mul)
        .map_err(|_| format!("{s:?} is not a duration like 30s, 5m, 1h"))
}

fn parse_svc(s: &str) -> Result<usize, String> {
    SERVICES
        .iter()
        .position(|(n, _)| *n == s)
        .ok_or_else(|| format!("unknown service {s:?}"))
}

fn parse_value(s: &str) -> Result<Option<f64>, String> {
    if s == "none" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| format!("{s:?} is not a number or none"))
}

fn parse_outcome(s: &str) -> Result<OutcomeKind, String> {
    OutcomeKind::ALL
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| format!("unknown outcome {s:?}"))
}

fn static_str(options: &[&'static str], s: &str, what: &str) -> Result<&'static str, String> {
    options
        .iter()
        .find(|o| **o == s)
        .copied()
        .ok_or_else(|| format!("unknown {what} {s:?}; known: {}", options.join(", ")))
}

fn parse_alert(s: &str) -> Result<AlertSpec, String> {
    let w: Vec<&str> = s.split_whitespace().collect();
    let [status, name, svc, sev, starts] = w.as_slice() else {
        return Err(format!(
            "alert {s:?}: expected `fire|resolve NAME SERVICE SEVERITY @STARTS`"
        ));
    };
    Ok(AlertSpec {
        firing: match *status {
            "fire" => true,
            "resolve" => false,
            o => return Err(format!("alert status {o:?}: fire or resolve")),
        },
        name: AlertName::ALL
            .into_iter()
            .find(|n| n.as_str() == *name)
            .ok_or_else(|| format!("unknown alert {name:?}"))?,
        svc: parse_svc(svc)?,
        sev: match *sev {
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            o => return Err(format!("severity {o:?}: warning or critical")),
        },
        starts: starts
            .strip_prefix('@')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("startsAt {starts:?}: expected @SECONDS"))?,
    })
}

fn parse_event(line: &str) -> Result<Event, String> {
    let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
    let args: Vec<&str> = rest.split_whitespace().collect();
    let arg = |i: usize| {
        args.get(i)
            .copied()
            .ok_or_else(|| format!("{head}: missing argument {}", i + 1))
    };
    Ok(match head {
        "wait" => Event::Wait(parse_secs(arg(0)?)?),
        "alerts" => Event::Alerts(
            rest.split(',')
                .map(|a| parse_alert(a.trim()))
                .collect::<Result<_, _>>()?,
        ),
        "poll" => Event::Poll(parse_svc(arg(0)?)?, parse_value(arg(1)?)?),
        "health" => Event::Health(parse_svc(arg(0)?)?, parse_value(arg(1)?)?),
        "next" => Event::Next(
            static_str(&ACTIONS, arg(0)?, "action")?,
            parse_outcome(arg(1)?)?,
        ),
        "release" => Event::Release(parse_outcome(arg(0)?)?),
        "pause" => Event::Pause(arg(0)?.to_string()),
        "resume" => Event::Resume(arg(0)?.to_string()),
        "route" => Event::Route(
            static_str(&ROUTES, arg(0)?, "route")?,
            match arg(1)? {
                "up" => true,
                "down" => false,
                o => return Err(format!("route state {o:?}: up or down")),
            },
        ),
        "reload" => Event::Reload(
            arg(0)?
                .parse()
                .map_err(|_| "reload: expected a variant number".to_string())?,
        ),
        "restart" => Event::Restart,
        "resolve-by-hand" => Event::ResolveByHand(
            arg(0)?
                .parse()
                .map_err(|_| "resolve-by-hand: expected an incident number".to_string())?,
        ),
        other => return Err(format!("unknown event {other:?}")),
    })
}
