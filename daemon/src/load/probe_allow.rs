//! `probe_allow`: the hosts and ports HTTP probes may reach. A label must never point remedyd
//! at an arbitrary address, so a rendered probe URL is checked against this list before any
//! request (`adapters/action/probe.rs`).

/// One `probe_allow` entry: a host, any port; or a host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AllowEntry {
    host: String,
    port: Option<u16>,
}

/// The hosts and ports probes may reach (`probe_allow`). Empty: every probe is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeAllowList {
    entries: Vec<AllowEntry>,
}

impl ProbeAllowList {
    /// Parses `host`, `host:port` and `[v6]:port` entries; an error names the bad entry.
    pub fn parse(list: &[String]) -> Result<Self, String> {
        let mut entries = Vec::new();
        for raw in list {
            let e = raw.trim();
            if e.is_empty() {
                continue;
            }
            let bad =
                |why: &str| format!("probe_allow entry {raw:?}: {why}; valid: host or host:port");
            if e.contains('/') || e.contains('@') || e.contains("://") {
                return Err(bad("a host, not a URL"));
            }
            let (host, port) = if let Some(rest) = e.strip_prefix('[') {
                let (h, after) = rest.split_once(']').ok_or_else(|| bad("unclosed ["))?;
                match after.strip_prefix(':') {
                    Some(p) => (h.to_string(), Some(p)),
                    None if after.is_empty() => (h.to_string(), None),
                    None => return Err(bad("text after ]")),
                }
            } else {
                match e.rsplit_once(':') {
                    Some((h, _)) if h.contains(':') => {
                        return Err(bad("write an IPv6 address as [addr] or [addr]:port"));
                    }
                    Some((h, p)) => (h.to_string(), Some(p)),
                    None => (e.to_string(), None),
                }
            };
            if host.is_empty() {
                return Err(bad("no host"));
            }
            let port = port
                .map(|p| {
                    p.parse::<u16>()
                        .map_err(|_| bad("the port is not a number 0-65535"))
                })
                .transpose()?;
            entries.push(AllowEntry {
                host: host.to_ascii_lowercase(),
                port,
            });
        }
        Ok(Self { entries })
    }

    /// Whether `host` (lower case, IPv6 without brackets) and `port` are allowed.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.entries
            .iter()
            .any(|e| e.host == host && e.port.is_none_or(|p| p == port))
    }

    /// Whether no host is allowed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, as written back.
    pub fn describe(&self) -> String {
        self.entries
            .iter()
            .map(|e| {
                let h = if e.host.contains(':') {
                    format!("[{}]", e.host)
                } else {
                    e.host.clone()
                };
                match e.port {
                    Some(p) => format!("{h}:{p}"),
                    None => h,
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Result<ProbeAllowList, String> {
        ProbeAllowList::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn hosts_ports_and_ipv6() {
        let l = list(&["Health.Internal", "10.0.0.9:8001", "[::1]:9", " "]).unwrap();
        assert!(l.allows("health.internal", 1), "case-insensitive, any port");
        assert!(l.allows("10.0.0.9", 8001));
        assert!(!l.allows("10.0.0.9", 80));
        assert!(l.allows("::1", 9));
        assert!(!l.allows("::1", 10));
        assert_eq!(l.describe(), "health.internal, 10.0.0.9:8001, [::1]:9");
        assert!(list(&[]).unwrap().is_empty());
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in [
            "http://x", "x/health", "user@x", "x:http", "::1", ":80", "[::1",
        ] {
            let e = list(&[bad]).unwrap_err();
            assert!(
                e.contains(&format!("{bad:?}")) && e.contains("probe_allow"),
                "{e}"
            );
        }
    }
}
