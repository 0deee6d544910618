//! Jobs and Pods as the API server keeps them, and lists:
//! * a created object gets a `metadata.uid`, a `creationTimestamp` and `generation: 1`;
//!   `status` is the status subresource's: cleared on create (a Pod starts `Pending`), kept
//!   as it is by writes of the object, and set by controllers ([`KubeApi::set_status`]);
//! * a created Job gets what the Job API's defaulting adds: `spec.selector` on its
//!   `batch.kubernetes.io/controller-uid`, and the `controller-uid`/`job-name` labels on its
//!   pod template (its pods carry them);
//! * `GET` of a collection is a `<Kind>List` of the namespace's objects matching the
//!   `labelSelector` query (equality-based: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-joined).

use serde_json::{Value, json};

use super::{KubeApi, State};

/// RFC 3339 (UTC, seconds) of a Unix time, as the API server writes timestamps.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What the API server adds to an object it creates (`n`: a fresh number for its uid).
pub(super) fn on_create(obj: &mut Value, plural: &str, n: u64) {
    let uid = format!("00000000-0000-4000-8000-{n:012x}");
    obj["metadata"]["uid"] = json!(uid);
    obj["metadata"]["creationTimestamp"] = json!(rfc3339(std::time::SystemTime::now()));
    obj["metadata"]["generation"] = json!(1);
    match plural {
        "jobs" => {
            obj["status"] = json!({});
            let name = obj["metadata"]["name"].clone();
            obj["spec"]["selector"] =
                json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
            let labels = &mut obj["spec"]["template"]["metadata"]["labels"];
            for (k, v) in [
                ("batch.kubernetes.io/controller-uid", json!(uid)),
                ("controller-uid", json!(uid)),
                ("batch.kubernetes.io/job-name", name.clone()),
                ("job-name", name),
            ] {
                labels[k] = v;
            }
        }
        "pods" => obj["status"] = json!({"phase": "Pending"}),
        _ => {}
    }
}

/// `%XX` and `+` decoded.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `labels` match an equality-based selector.
fn matches(labels: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            let value = |k: &str| labels[k.trim()].as_str().map(str::to_string);
            if let Some((k, v)) = term.split_once("!=") {
                value(k).as_deref() != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                value(k).as_deref() == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                value(k).is_none()
            } else {
                value(term).is_some()
            }
        })
}

impl State {
    /// The objects of `collection` matching the query's `labelSelector`, as a list.
    pub(super) fn list(&self, collection: &str, kind: &str, query: &str) -> Value {
        let selector = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "labelSelector")
            .map(|(_, v)| decode(v))
            .unwrap_or_default();
        let prefix = format!("{collection}/");
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
            .map(|(_, o)| o.clone())
            .filter(|o| matches(&o["metadata"]["labels"], &selector))
            .collect();
        json!({"kind": format!("{kind}List"), "apiVersion": "v1",
               "metadata": {"resourceVersion": self.rv.to_string()}, "items": items})
    }
}

impl KubeApi {
    /// Every stored object whose API path starts with `prefix`, with its path (e.g. every
    /// Job: `/apis/batch/v1/namespaces/`, then filter on `/jobs/`).
    pub fn objects_under(&self, prefix: &str) -> Vec<(String, Value)> {
        self.state
            .lock()
            .unwrap()
            .objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A controller writes the status of the object at `path` (its status subresource),
    /// bumping its resourceVersion. `false` if there is no such object.
    pub fn set_status(&self, path: &str, status: Value) -> bool {
        let mut s = self.state.lock().unwrap();
        let rv = s.bump();
        match s.objects.get_mut(path) {
            Some(o) => {
                o["status"] = status;
                o["metadata"]["resourceVersion"] = json!(rv);
                true
            }
            None => false,
        }
    }

    /// Creates an object as a controller does (the Job controller its pods): what a `POST`
    /// stores, without a request in the log. `false` if the name is taken.
    pub fn create(&self, mut obj: Value) -> bool {
        let mut s = self.state.lock().unwrap();
        let (ns, name) = (
            obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        let plural = if obj["kind"] == "Pod" { "pods" } else { "jobs" };
        let path = if plural == "pods" {
            format!("/api/v1/namespaces/{ns}/pods/{name}")
        } else {
            format!("/apis/batch/v1/namespaces/{ns}/jobs/{name}")
        };
        if s.objects.contains_key(&path) {
            return false;
        }
        let rv = s.bump();
        obj["metadata"]["resourceVersion"] = json!(rv);
        on_create(&mut obj, plural, s.rv);
        s.objects.insert(path, obj);
        true
    }

    /// The API paths of the Jobs created through the API (`POST` answered 201), in order,
    /// and how many creates were refused as `AlreadyExists`.
    pub fn job_creates(&self) -> (usize, usize) {
        let log = self.log();
        let creates = |code: u16| {
            log.iter()
                .filter(|l| l.verb == "POST" && l.path.ends_with("/jobs") && l.code == code)
                .count()
        };
        (creates(201), creates(409))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_dates_and_decoding() {
        let l = json!({"job-name": "a", "x": "y"});
        assert!(matches(&l, "job-name=a"));
        assert!(matches(&l, "job-name==a,x"));
        assert!(!matches(&l, "job-name=b"));
        assert!(matches(&l, "job-name!=b,!z"));
        assert_eq!(decode("job-name%3Dcutover-a+b"), "job-name=cutover-a b");
        assert_eq!(
            rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000)),
            "2026-11-18T11:06:40Z"
        );
    }
}
