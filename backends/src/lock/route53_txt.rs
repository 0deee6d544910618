//! The lock record of a Route 53 weighted record set: a TXT record beside it,
//! `_cutover-lock.<record name>`, whose value is the JSON lock record.
//!
//! Compare-and-swap uses Route 53's own atomicity: a change batch is applied whole or not at
//! all, a `CREATE` of a record that exists fails, and a `DELETE` must name the record's exact
//! value. So taking a free lock is one `CREATE`, and replacing a record read at value V is
//! `DELETE V` + `CREATE new` in one batch: if anyone changed it since, the batch fails.
//! Every swap is read back, so an emulator that is laxer than Route 53 (moto accepts a
//! second `CREATE` as a duplicate) is still caught: the first record listed is the lock.

use async_trait::async_trait;
use aws_sdk_route53::Client;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};

use crate::traffic::route53::{classify, returned_name};
use cutover_core::BackendError;
use cutover_core::lock::{LockRecord, ObjectLock, Versioned};

/// TTL of the lock record (it is read through the API, never resolved).
const LOCK_TTL: i64 = 60;

/// The TXT lock record beside one weighted record set.
pub struct Route53Lock {
    client: Client,
    zone: String,
    name: String,
    identity: String,
}

impl Route53Lock {
    /// The lock of the record set `record_name` in `zone`, described as `identity`.
    pub fn new(client: Client, zone: &str, record_name: &str, identity: &str) -> Route53Lock {
        Route53Lock {
            client,
            zone: zone.to_string(),
            name: format!("_cutover-lock.{record_name}"),
            identity: identity.to_string(),
        }
    }

    fn record(&self, value: &str) -> Result<ResourceRecordSet, BackendError> {
        let rr = ResourceRecord::builder()
            .value(value)
            .build()
            .map_err(|e| BackendError::Invalid(format!("cannot build the lock record: {e}")))?;
        ResourceRecordSet::builder()
            .name(&self.name)
            .r#type(RrType::Txt)
            .ttl(LOCK_TTL)
            .resource_records(rr)
            .build()
            .map_err(|e| BackendError::Invalid(format!("cannot build the lock record: {e}")))
    }

    /// The TXT values of the lock record sets, in the order Route 53 lists them.
    async fn values(&self) -> Result<Vec<String>, BackendError> {
        let out = retry(|| async {
            self.client
                .list_resource_record_sets()
                .hosted_zone_id(&self.zone)
                .start_record_name(&self.name)
                .start_record_type(RrType::Txt)
                .max_items(10)
                .send()
                .await
                .map_err(|e| classify("ListResourceRecordSets (lock)", &self.zone, &e))
        })
        .await?;
        Ok(out
            .resource_record_sets()
            .iter()
            .take_while(|r| returned_name(r.name()) == returned_name(&self.name))
            .filter(|r| *r.r#type() == RrType::Txt)
            .map(|r| {
                r.resource_records()
                    .iter()
                    .map(|v| v.value().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect())
    }
}

/// Runs `op` until it succeeds or fails for good: throttling and 5xx (the API allows
/// 5 requests/s per account) are retried up to 6 times with jittered backoff.
async fn retry<T, F, Fut>(mut op: F) -> Result<T, BackendError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match op().await {
            Err(e) if e.is_retryable() && attempt < 6 => {
                use rand::Rng;
                let cap = std::time::Duration::from_millis(200) * (1u32 << attempt.min(5));
                let wait = cap.mul_f64(rand::rng().random_range(0.5..1.0));
                tracing::warn!(target: "cutover::route53", attempt, error = %e, "route53 lock: retrying after {wait:?}");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

/// JSON as TXT: quoted strings of at most 250 characters *as written* (escapes included;
/// Route 53 allows 255), `"` and `\` escaped, an escape never split across two strings.
pub fn encode_txt(text: &str) -> String {
    let mut chunks: Vec<String> = vec![String::new()];
    for c in text.chars() {
        let piece = match c {
            '"' => "\\\"".to_string(),
            '\\' => "\\\\".to_string(),
            c => c.to_string(),
        };
        if chunks.last().is_some_and(|l| l.len() + piece.len() > 250) {
            chunks.push(String::new());
        }
        if let Some(l) = chunks.last_mut() {
            l.push_str(&piece);
        }
    }
    chunks
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text of a TXT value: its quoted strings joined; `\"`, `\\` and octal `\DDD` unescaped.
pub fn decode_txt(value: &str) -> String {
    let b = value.as_bytes();
    let (mut out, mut i, mut quoted) = (Vec::new(), 0, false);
    while i < b.len() {
        match b[i] {
            b'"' => quoted = !quoted,
            b'\\' if i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) => {
                // Route 53 writes special characters as three octal digits (`\052` is `*`).
                let n = (b[i + 1] - b'0') as u32 * 64
                    + (b[i + 2] - b'0') as u32 * 8
                    + (b[i + 3] - b'0') as u32;
                out.push(n.min(255) as u8);
                i += 3;
            }
            b'\\' if i + 1 < b.len() => {
                out.push(b[i + 1]);
                i += 1;
            }
            c if quoted => out.push(c),
            _ => {}
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[async_trait]
impl ObjectLock for Route53Lock {
    fn describe(&self) -> String {
        format!(
            "TXT record {} in zone {} (lock of {})",
            self.name, self.zone, self.identity
        )
    }

    async fn read(&self) -> Result<Option<Versioned>, BackendError> {
        let Some(version) = self.values().await?.into_iter().next() else {
            return Ok(None);
        };
        let text = decode_txt(&version);
        let record: LockRecord = serde_json::from_str(&text).map_err(|e| {
            BackendError::Invalid(format!(
                "{} is not a cutover lock record ({e}); if no run drives {}, delete it",
                self.name, self.identity
            ))
        })?;
        Ok(Some(Versioned { record, version }))
    }

    async fn swap(&self, expected: Option<&str>, new: &LockRecord) -> Result<(), BackendError> {
        // Every value written is unique (a nonce beside the record): a swap back to an
        // earlier value (a lock released twice) must not look like a replayed change, which
        // moto refuses as "already exists" even when the batch deletes the old record first.
        let mut json = serde_json::to_value(new).expect("lock record serializes");
        json["written"] = serde_json::json!(format!(
            "{}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            std::process::id()
        ));
        let value = encode_txt(&json.to_string());
        let change = |action: ChangeAction, r: ResourceRecordSet| {
            Change::builder()
                .action(action)
                .resource_record_set(r)
                .build()
                .map_err(|e| BackendError::Invalid(format!("cannot build the lock change: {e}")))
        };
        let mut batch =
            ChangeBatch::builder().comment(format!("cutover lock of {}", self.identity));
        if let Some(old) = expected {
            batch = batch.changes(change(ChangeAction::Delete, self.record(old)?)?);
        }
        let batch = batch
            .changes(change(ChangeAction::Create, self.record(&value)?)?)
            .build()
            .map_err(|e| BackendError::Invalid(format!("cannot build the lock change: {e}")))?;
        let sent = retry(|| async {
            self.client
                .change_resource_record_sets()
                .hosted_zone_id(&self.zone)
                .change_batch(batch.clone())
                .send()
                .await
                .map_err(|e| classify("ChangeResourceRecordSets (lock)", &self.zone, &e))
        })
        .await;
        if let Err(e) = sent {
            return Err(match e {
                // A CREATE of an existing record, or a DELETE of a value no longer there
                // (moto says InvalidInput): someone swapped first. Other validation errors
                // stay what they are.
                BackendError::Invalid(m)
                    if m.contains("already exists")
                        || m.contains("not found")
                        || m.contains("InvalidInput") =>
                {
                    BackendError::Conflict(m)
                }
                other => other,
            });
        }
        // Read back: the lock is ours only if the first record listed is what we wrote.
        match self.values().await?.first() {
            Some(v) if decode_txt(v) == decode_txt(&value) => Ok(()),
            _ => Err(BackendError::Conflict(format!(
                "another run wrote {} at the same moment",
                self.name
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_values_round_trip() {
        let text = format!(r#"{{"a":"x\"y\\z","long":"{}"}}"#, "q".repeat(600));
        let v = encode_txt(&text);
        // Strings of at most 250 characters as written, escapes included (Route 53: 255).
        for chunk in v.split("\" \"") {
            assert!(chunk.trim_matches('"').len() <= 250, "{chunk}");
        }
        let quotes = "\"".repeat(400);
        assert_eq!(decode_txt(&encode_txt(&quotes)), quotes);
        assert_eq!(decode_txt(&v), text);
        assert_eq!(decode_txt(r#""a\052b""#), "a*b");
    }
}
