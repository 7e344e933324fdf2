//! Alertmanager's silences API v2, for the silences tied to the ladder: create (one per alert,
//! equality matchers on exactly its labels), renew, expire; a human's silences on an incident's
//! alerts; and the silences remedyd created and forgot (a crash). Several URLs are one HA
//! cluster: silences gossip between peers, so a silence is created on the first that answers and
//! renewed or expired on the one that has it, falling back to the others.

use std::time::Duration;

use serde_json::{Value, json};

use crate::domain::incident::{HumanSilence, Incident, SilenceRef};
use crate::domain::notification::truncate;
use crate::domain::time::Timestamp;

/// `createdBy` of every silence remedyd makes; how its own are told from a human's.
pub const CREATED_BY: &str = "remedyd";
/// What starts the comment of remedyd's silences, followed by the incident id and a colon.
const COMMENT_PREFIX: &str = "remedyd incident ";
/// One request to one Alertmanager: it answers in milliseconds; a peer that does not answer in
/// this time is treated as down and the next one is asked (the engine waits for these calls).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// A peer that is down usually refuses at once; a blackholed one must not cost the whole timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Characters of an error answer's body kept in the message (what a person reads in the
/// timeline; Alertmanager's own errors are one short sentence).
const ANSWER_CHARS: usize = 200;

/// The Alertmanagers of `alertmanager_url` (one cluster).
#[derive(Debug)]
pub struct Alertmanagers {
    urls: Vec<String>,
    http: reqwest::Client,
    /// `external_url`, for the link to the incident's page in the comment.
    external_url: Option<String>,
}

/// One of the incident's alerts as Alertmanager holds it.
struct AmAlert {
    fingerprint: String,
    labels: serde_json::Map<String, Value>,
    silenced_by: Vec<String>,
}

impl Alertmanagers {
    /// A client for these URLs (`http://host:9093`, no trailing slash needed).
    pub fn new(urls: &[String], external_url: Option<String>) -> Result<Self, String> {
        // reqwest without a default provider panics when none is installed: this client must
        // not depend on another one having been built first (as the other clients do).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("remedyd/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            urls: urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            http,
            external_url,
        })
    }

    /// The URLs, `first` (the peer that has a silence) first.
    fn order<'a>(&'a self, first: Option<&'a str>) -> Vec<&'a str> {
        let mut v: Vec<&str> = first.into_iter().collect();
        v.extend(
            self.urls
                .iter()
                .map(String::as_str)
                .filter(|u| Some(*u) != first),
        );
        v
    }

    /// Sends one request; a non-2xx answer is an error carrying its body.
    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value, String> {
        let r = req.send().await.map_err(|e| format!("{what}: {e}"))?;
        let status = r.status();
        let text = r.text().await.map_err(|e| format!("{what}: {e}"))?;
        if !status.is_success() {
            // The body is the peer's (or a proxy's): one short line of it, never a page of HTML.
            let said = text.split_whitespace().collect::<Vec<_>>().join(" ");
            return Err(format!(
                "{what}: {status}: {}",
                truncate(&said, ANSWER_CHARS)
            ));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| format!("{what}: unreadable answer: {e}"))
    }

    /// GET `path` from the first peer that answers; with every error when none does.
    async fn get_any(&self, path: &str) -> Result<(String, Value), String> {
        let mut errors = Vec::new();
        for url in &self.urls {
            match self
                .send(
                    self.http.get(format!("{url}{path}")),
                    &format!("GET {url}{path}"),
                )
                .await
            {
                Ok(v) => return Ok((url.clone(), v)),
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    /// The incident's alerts that Alertmanager holds.
    async fn alerts_of(&self, inc: &Incident) -> Result<Vec<AmAlert>, String> {
        let (_, v) = self.get_any("/api/v2/alerts").await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let fingerprint = a.get("fingerprint")?.as_str()?.to_string();
                inc.active.contains_key(&fingerprint).then(|| AmAlert {
                    fingerprint,
                    labels: a
                        .get("labels")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                    silenced_by: a
                        .pointer("/status/silencedBy")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .filter(|id| is_id(id))
                        .map(str::to_string)
                        .collect(),
                })
            })
            .collect())
    }

    /// The comment of the incident's silences: names it (and links its page).
    fn comment(&self, inc: &Incident) -> String {
        let mut c = format!(
            "{COMMENT_PREFIX}{}: remedyd is remediating {} (rule {}); this silence ends when the incident escalates or resolves",
            inc.id,
            inc.target.key(),
            inc.rule
        );
        if let Some(base) = &self.external_url {
            c.push_str(&format!(" - {base}/incidents/{}", inc.id));
        }
        c
    }

    /// Silences each of the incident's alerts until `ends_at`: one silence per alert, equality
    /// matchers on exactly its labels. An error when Alertmanager holds none of them.
    pub async fn create(
        &self,
        inc: &Incident,
        ends_at: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<SilenceRef>, String> {
        let alerts = self.alerts_of(inc).await?;
        if alerts.is_empty() {
            return Err("Alertmanager holds none of the incident's alerts".into());
        }
        let mut refs = Vec::new();
        for a in alerts.iter().filter(|a| !a.labels.is_empty()) {
            let matchers: Vec<Value> = a
                .labels
                .iter()
                .map(|(k, v)| json!({"name": k, "value": v, "isRegex": false, "isEqual": true}))
                .collect();
            let body = json!({
                "matchers": matchers, "startsAt": now, "endsAt": ends_at,
                "createdBy": CREATED_BY, "comment": self.comment(inc),
            });
            let (url, id) = self.post_silence(&body, None).await?;
            refs.push(SilenceRef {
                fingerprint: a.fingerprint.clone(),
                id,
                url,
            });
        }
        Ok(refs)
    }

    /// POSTs a silence to the first peer that takes it (`first` first); its id and that peer.
    async fn post_silence(
        &self,
        body: &Value,
        first: Option<&str>,
    ) -> Result<(String, String), String> {
        let mut errors = Vec::new();
        for url in self.order(first) {
            let what = format!("POST {url}/api/v2/silences");
            match self
                .send(
                    self.http.post(format!("{url}/api/v2/silences")).json(body),
                    &what,
                )
                .await
            {
                Ok(v) => match v.get("silenceID").and_then(Value::as_str) {
                    Some(id) if is_id(id) => return Ok((url.to_string(), id.to_string())),
                    Some(id) => errors.push(format!(
                        "{what}: silenceID {:?} in the answer is not a silence id",
                        truncate(id, 80)
                    )),
                    None => errors.push(format!("{what}: no silenceID in the answer")),
                },
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    /// Moves each silence's `endsAt` (Alertmanager keeps the id when it can, or answers a new one).
    pub async fn renew(
        &self,
        refs: &[SilenceRef],
        ends_at: Timestamp,
    ) -> Result<Vec<SilenceRef>, String> {
        let mut out = Vec::new();
        for r in refs {
            let mut errors = Vec::new();
            let mut found = None;
            for url in self.order(Some(&r.url)) {
                let what = format!("GET {url}/api/v2/silence/{}", r.id);
                match self
                    .send(
                        self.http.get(format!("{url}/api/v2/silence/{}", r.id)),
                        &what,
                    )
                    .await
                {
                    Ok(s) => {
                        found = Some((url.to_string(), s));
                        break;
                    }
                    Err(e) => errors.push(e),
                }
            }
            let Some((url, s)) = found else {
                return Err(errors.join("; "));
            };
            let body = json!({
                "id": r.id, "matchers": s.get("matchers"), "startsAt": s.get("startsAt"),
                "endsAt": ends_at, "createdBy": CREATED_BY, "comment": s.get("comment"),
            });
            let (url, id) = self.post_silence(&body, Some(&url)).await?;
            out.push(SilenceRef {
                fingerprint: r.fingerprint.clone(),
                id,
                url,
            });
        }
        Ok(out)
    }

    /// Expires one silence on the peer that has it, else on the others.
    pub async fn expire_one(&self, id: &str, first: Option<&str>) -> Result<(), String> {
        let mut errors = Vec::new();
        for url in self.order(first) {
            let what = format!("DELETE {url}/api/v2/silence/{id}");
            match self
                .send(
                    self.http.delete(format!("{url}/api/v2/silence/{id}")),
                    &what,
                )
                .await
            {
                Ok(_) => return Ok(()),
                // Already over (it reached its end meanwhile): nothing left to expire.
                Err(e) if e.contains("already expired") => return Ok(()),
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    /// Expires the incident's silences; the ones expired, or the first error.
    pub async fn expire(&self, refs: &[SilenceRef]) -> Result<Vec<SilenceRef>, String> {
        for r in refs {
            self.expire_one(&r.id, Some(&r.url)).await?;
        }
        Ok(refs.to_vec())
    }

    /// Humans' active silences on the incident's alerts (not remedyd's: `createdBy`).
    pub async fn human_silences(&self, inc: &Incident) -> Result<Vec<HumanSilence>, String> {
        let own = inc.own_silences();
        let mut ids: Vec<String> = self
            .alerts_of(inc)
            .await?
            .into_iter()
            .flat_map(|a| a.silenced_by)
            .filter(|id| !own.contains(id))
            .collect();
        ids.sort();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            let (_, s) = self.get_any(&format!("/api/v2/silence/{id}")).await?;
            let field = |k: &str| {
                s.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let active = s.pointer("/status/state").and_then(Value::as_str) == Some("active");
            if active && field("createdBy") != CREATED_BY {
                out.push(HumanSilence {
                    id,
                    created_by: field("createdBy"),
                    ends_at: field("endsAt"),
                    comment: field("comment"),
                });
            }
        }
        Ok(out)
    }

    /// remedyd's active silences with the incident each names: (silence id, incident id).
    pub async fn ours(&self) -> Result<Vec<(String, String)>, String> {
        let (_, v) = self.get_any("/api/v2/silences").await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter(|s| s.get("createdBy").and_then(Value::as_str) == Some(CREATED_BY))
            .filter(|s| s.pointer("/status/state").and_then(Value::as_str) == Some("active"))
            .filter_map(|s| {
                let id = s.get("id")?.as_str().filter(|id| is_id(id))?.to_string();
                let incident = incident_of(s.get("comment")?.as_str()?)?;
                Some((id, incident))
            })
            .collect())
    }
}

/// A silence id as Alertmanager makes them (a UUID): letters, digits and `-`. An id goes into
/// the path of later requests (renew, expire), so one from a broken answer (empty, or with `/`,
/// `?`, spaces) is refused instead of being sent to some other path.
fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The incident a remedyd silence's comment names.
fn incident_of(comment: &str) -> Option<String> {
    let rest = comment.strip_prefix(COMMENT_PREFIX)?;
    let id = rest.split(':').next()?.trim();
    (!id.is_empty()).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comment_names_the_incident_and_reads_back() {
        assert_eq!(
            incident_of("remedyd incident INC-2026-0042: remedyd is remediating x").as_deref(),
            Some("INC-2026-0042")
        );
        assert_eq!(incident_of("silenced by alice: INC-2026-0042"), None);
    }
}
