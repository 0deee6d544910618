//! The `route53` backend: two weighted records of one name, changed together.
//!
//! * Both weights go in **one** `ChangeBatch` (Route 53 applies a batch atomically), as
//!   UPSERTs of the records exactly as read, with only `Weight` changed: TTL, health check,
//!   alias target and every other field stay as they are.
//! * Percent maps to Route 53 weight one to one (0–100 of 0–255); a batch with both weights 0
//!   is never sent (Route 53 would then split evenly). Read back, weights written by others
//!   (e.g. 1 and 255) round to percent, but a non-zero weight never reads as 0 % or 100 %.
//! * Missing credentials fail at connect, with how to provide them, rather than being
//!   retried as transient.
//! * `wait_applied` polls `GetChange` until `INSYNC`, with a timeout.
//! * Throttling, `PriorRequestNotComplete`, 5xx and network errors are retried with jittered
//!   exponential backoff (the API allows 5 requests/s per account); validation errors never.
//!   The SDK's own retry is turned off so that each retry is logged here: an operator
//!   reading the log sees that throttling happened and how long it cost.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_route53::Client;
use aws_sdk_route53::config::retry::RetryConfig;
use aws_sdk_route53::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecordSet, RrType,
};
use cutover_core::policy::backend::Route53Config;
use rand::Rng;

use cutover_core::{Applied, BackendError, TrafficBackend, Weights};

/// Weighted Route 53 records.
pub struct Route53Backend {
    client: Client,
    zone: String,
    name: String,
    rtype: RrType,
    primary_id: String,
    dr_id: String,
    insync_timeout: Duration,
    poll: Duration,
    max_attempts: u32,
    ttl: Mutex<Option<i64>>,
}

/// Normalises a DNS name: lowercase, one trailing dot.
pub fn normalise_name(n: &str) -> String {
    format!("{}.", n.trim().trim_end_matches('.').to_ascii_lowercase())
}

/// Route 53 escapes `*` as `\052` in names it returns.
pub(crate) fn returned_name(n: &str) -> String {
    normalise_name(&n.replace("\\052", "*"))
}

impl Route53Backend {
    /// Connects with `aws-config`'s standard credential chain (environment, profile, web
    /// identity for IRSA in a Job). `endpoint` overrides the endpoint (emulators).
    pub async fn connect(
        cfg: &Route53Config,
        endpoint: Option<&str>,
    ) -> Result<Route53Backend, BackendError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            // Route 53 is global; its API lives in us-east-1.
            loader = loader.region(aws_config::Region::new("us-east-1"));
        }
        let shared = loader.load().await;
        check_credentials(&shared).await?;
        let mut b =
            aws_sdk_route53::config::Builder::from(&shared).retry_config(RetryConfig::disabled());
        if let Some(e) = endpoint.or(cfg.endpoint_url.as_deref()) {
            b = b.endpoint_url(e);
        }
        Ok(Route53Backend::from_client(
            Client::from_conf(b.build()),
            cfg,
        ))
    }

    /// A backend on an existing SDK client (its retry settings are the caller's).
    pub fn from_client(client: Client, cfg: &Route53Config) -> Route53Backend {
        let rtype = RrType::from(cfg.record_type.to_ascii_uppercase().as_str());
        Route53Backend {
            client,
            zone: cfg
                .hosted_zone_id
                .trim_start_matches("/hostedzone/")
                .to_string(),
            name: normalise_name(&cfg.record_name),
            rtype,
            primary_id: cfg.primary_set_identifier.clone(),
            dr_id: cfg.dr_set_identifier.clone(),
            insync_timeout: cfg.insync_timeout,
            poll: Duration::from_secs(2),
            max_attempts: cfg.max_attempts.max(1),
            ttl: Mutex::new(None),
        }
    }

    /// Polls `GetChange` this often (default 2 s).
    pub fn with_poll_interval(mut self, d: Duration) -> Self {
        self.poll = d;
        self
    }

    /// Runs `op` until it succeeds, retrying retryable failures with jittered backoff.
    async fn retry<T, E, F, Fut>(&self, what: &str, mut op: F) -> Result<T, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<
                Output = Result<T, SdkError<E, aws_sdk_route53::config::http::HttpResponse>>,
            >,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let err = classify(what, &self.zone, &e);
                    if !err.is_retryable() || attempt >= self.max_attempts {
                        return Err(err);
                    }
                    let cap = Duration::from_millis(200) * (1u32 << (attempt - 1).min(6));
                    let wait = cap.mul_f64(rand::rng().random_range(0.5..1.0));
                    tracing::warn!(target: "cutover::route53", attempt, max = self.max_attempts, wait_ms = wait.as_millis() as u64, error = %err, "route53 {what}: retrying after {wait:?}");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Reads the two weighted records.
    async fn records(&self) -> Result<(ResourceRecordSet, ResourceRecordSet), BackendError> {
        let mut found: Vec<ResourceRecordSet> = Vec::new();
        let (mut next_name, mut next_type, mut next_id) = (
            Some(self.name.clone()),
            Some(self.rtype.clone()),
            None::<String>,
        );
        // Bounded: at most 50 pages of records of this name.
        for _ in 0..50 {
            let (n, t, i) = (next_name.clone(), next_type.clone(), next_id.clone());
            let out = self
                .retry("ListResourceRecordSets", || {
                    self.client
                        .list_resource_record_sets()
                        .hosted_zone_id(&self.zone)
                        .set_start_record_name(n.clone())
                        .set_start_record_type(t.clone())
                        .set_start_record_identifier(i.clone())
                        .send()
                })
                .await?;
            let mut past = false;
            for r in out.resource_record_sets() {
                if returned_name(r.name()) != self.name || *r.r#type() != self.rtype {
                    past = true;
                    break;
                }
                found.push(r.clone());
            }
            if past || !out.is_truncated() {
                break;
            }
            next_name = out.next_record_name().map(str::to_string);
            next_type = out.next_record_type().cloned();
            next_id = out.next_record_identifier().map(str::to_string);
        }
        let pick = |id: &str| {
            found
                .iter()
                .find(|r| r.set_identifier() == Some(id))
                .cloned()
        };
        let listing = || {
            if found.is_empty() {
                format!(
                    "no {} record named {} exists in zone {}",
                    self.rtype.as_str(),
                    self.name,
                    self.zone
                )
            } else {
                format!(
                    "the {} records named {} have SetIdentifiers: {}",
                    self.rtype.as_str(),
                    self.name,
                    found
                        .iter()
                        .map(|r| r.set_identifier().unwrap_or("(none: not weighted)"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        };
        let (Some(p), Some(d)) = (pick(&self.primary_id), pick(&self.dr_id)) else {
            let missing = if pick(&self.primary_id).is_none() {
                &self.primary_id
            } else {
                &self.dr_id
            };
            return Err(BackendError::NotFound {
                what: format!(
                    "weighted record {} {} with SetIdentifier `{missing}`",
                    self.name,
                    self.rtype.as_str()
                ),
                hint: format!("{}; fix backend.route53 in the policy", listing()),
            });
        };
        for r in [&p, &d] {
            if r.weight.is_none() {
                return Err(BackendError::Invalid(format!(
                    "record {} `{}` is not a weighted record (it has no Weight); cutover only shifts weighted records",
                    self.name,
                    r.set_identifier().unwrap_or_default()
                )));
            }
        }
        if p.ttl != d.ttl || p.alias_target.is_some() != d.alias_target.is_some() {
            return Err(BackendError::Invalid(format!(
                "records `{}` and `{}` of {} differ in TTL or kind (TTL {:?} vs {:?}, alias {} vs {}); make them alike first",
                self.primary_id,
                self.dr_id,
                self.name,
                p.ttl,
                d.ttl,
                p.alias_target.is_some(),
                d.alias_target.is_some()
            )));
        }
        *self.ttl.lock().unwrap_or_else(|e| e.into_inner()) = p.ttl;
        Ok((p, d))
    }
}

/// Turns an SDK error into a [`BackendError`] saying whether a retry may help.
pub(crate) fn classify<E>(
    what: &str,
    zone: &str,
    e: &SdkError<E, aws_sdk_route53::config::http::HttpResponse>,
) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().unwrap_or_default().to_string();
    let message = e.message().unwrap_or_default().to_string();
    let status = e.raw_response().map(|r| r.status().as_u16());
    let text = format!(
        "{what} on zone {zone}: {} {code} {message}",
        status.map(|s| s.to_string()).unwrap_or_default()
    );
    match e {
        // No credentials: resolving them fails before anything is sent; retrying cannot help.
        SdkError::DispatchFailure(_) if aws_smithy_error_chain(e).contains("credential") => {
            return BackendError::Forbidden(format!(
                "{what}: {}; {CREDENTIALS_FIX}",
                aws_smithy_error_chain(e)
            ));
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            return BackendError::Transient(format!("{what}: {}", aws_smithy_error_chain(e)));
        }
        _ => {}
    }
    match code.as_str() {
        "Throttling"
        | "ThrottlingException"
        | "PriorRequestNotComplete"
        | "RequestLimitExceeded" => BackendError::Transient(text),
        "AccessDenied"
        | "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch" => BackendError::Forbidden(format!(
            "{text}; the credentials need route53:ListResourceRecordSets, route53:ChangeResourceRecordSets and route53:GetChange on this zone"
        )),
        "NoSuchHostedZone" | "NoSuchChange" => BackendError::NotFound {
            what: format!("hosted zone {zone}"),
            hint: text,
        },
        _ if status.is_some_and(|s| s >= 500) => BackendError::Transient(text),
        _ => BackendError::Invalid(text),
    }
}

/// How to give the controller AWS credentials.
const CREDENTIALS_FIX: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile in ~/.aws, or (in a Kubernetes Job) IRSA: a ServiceAccount annotated with eks.amazonaws.com/role-arn";

/// Resolves credentials once, so that missing ones fail at once with the fix rather than
/// as a "transient" error retried on every call.
async fn check_credentials(shared: &aws_config::SdkConfig) -> Result<(), BackendError> {
    use aws_sdk_route53::config::ProvideCredentials as _;
    let Some(provider) = shared.credentials_provider() else {
        return Err(BackendError::Forbidden(format!(
            "no AWS credentials provider is configured; {CREDENTIALS_FIX}"
        )));
    };
    provider
        .provide_credentials()
        .await
        .map(|_| ())
        .map_err(|e| {
            BackendError::Forbidden(format!(
                "no AWS credentials for Route 53 ({}); {CREDENTIALS_FIX}",
                aws_smithy_error_chain(&e)
            ))
        })
}

fn aws_smithy_error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}

fn percent(p: i64, d: i64) -> Result<Weights, BackendError> {
    if p < 0 || d < 0 || p + d == 0 {
        return Err(BackendError::Invalid(format!(
            "Route 53 weights primary={p} dr={d}: with both at 0 Route 53 splits traffic evenly; fix the records first"
        )));
    }
    // All-DR means a primary weight of exactly 0 (and all-primary a DR weight of 0): a
    // non-zero weight never reads as 0 %, so 1/255 is 1 %, not "all DR".
    let primary = match (p, d) {
        (0, _) => 0,
        (_, 0) => 100,
        _ => ((p as f64) * 100.0 / ((p + d) as f64))
            .round()
            .clamp(1.0, 99.0) as u8,
    };
    Weights::from_primary(primary)
}

#[async_trait]
impl TrafficBackend for Route53Backend {
    fn describe(&self) -> String {
        format!(
            "route53 {} {} in zone {}",
            self.name,
            self.rtype.as_str(),
            self.zone
        )
    }

    async fn get_weights(&self) -> Result<Weights, BackendError> {
        let (p, d) = self.records().await?;
        percent(p.weight.unwrap_or(0), d.weight.unwrap_or(0))
    }

    async fn set_weights(&self, w: Weights, note: &str) -> Result<Applied, BackendError> {
        let (mut p, mut d) = self.records().await?;
        p.weight = Some(i64::from(w.primary()));
        d.weight = Some(i64::from(w.dr()));
        if p.weight == Some(0) && d.weight == Some(0) {
            return Err(BackendError::Invalid(
                "refusing to write both weights 0".into(),
            ));
        }
        let comment = format!(
            "cutover: {w}{}",
            if note.is_empty() {
                String::new()
            } else {
                format!(" ({note})")
            }
        );
        let change = |r: ResourceRecordSet| {
            Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(r)
                .build()
                .map_err(|e| BackendError::Invalid(format!("cannot build the change: {e}")))
        };
        let batch = ChangeBatch::builder()
            .comment(comment)
            .changes(change(p)?)
            .changes(change(d)?)
            .build()
            .map_err(|e| BackendError::Invalid(format!("cannot build the change batch: {e}")))?;
        let out = self
            .retry("ChangeResourceRecordSets", || {
                self.client
                    .change_resource_record_sets()
                    .hosted_zone_id(&self.zone)
                    .change_batch(batch.clone())
                    .send()
            })
            .await?;
        let id = out.change_info().map(|c| c.id().to_string());
        Ok(Applied {
            weights: w,
            change: id,
        })
    }

    async fn wait_applied(&self, applied: &Applied) -> Result<(), BackendError> {
        let Some(id) = applied.change.as_deref() else {
            return Ok(());
        };
        let id = id.trim_start_matches("/change/").to_string();
        let deadline = tokio::time::Instant::now() + self.insync_timeout;
        loop {
            let out = self
                .retry("GetChange", || self.client.get_change().id(&id).send())
                .await?;
            if out.change_info().map(|c| c.status()) == Some(&ChangeStatus::Insync) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BackendError::Transient(format!(
                    "change {id} was not INSYNC within {}",
                    humantime::format_duration(self.insync_timeout)
                )));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    fn propagation_delay(&self) -> Duration {
        let ttl = *self.ttl.lock().unwrap_or_else(|e| e.into_inner());
        Duration::from_secs(ttl.unwrap_or(60).max(0) as u64)
    }

    fn object_lock(&self) -> Option<std::sync::Arc<dyn cutover_core::lock::ObjectLock>> {
        Some(std::sync::Arc::new(
            crate::lock::route53_txt::Route53Lock::new(
                self.client.clone(),
                &self.zone,
                &self.name,
                &format!(
                    "route53 {} {} in zone {} (set identifiers {} and {})",
                    self.name,
                    self.rtype.as_str(),
                    self.zone,
                    self.primary_id,
                    self.dr_id
                ),
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_weights() {
        assert_eq!(normalise_name("API.example.com"), "api.example.com.");
        assert_eq!(normalise_name("api.example.com."), "api.example.com.");
        assert_eq!(returned_name("\\052.example.com."), "*.example.com.");
        assert_eq!(percent(10, 90).unwrap(), Weights::new(10, 90).unwrap());
        assert_eq!(percent(1, 3).unwrap(), Weights::new(25, 75).unwrap());
        assert!(percent(0, 0).unwrap_err().to_string().contains("evenly"));
        // Route 53 weights are 0-255: a non-zero weight is never 0 % or 100 %.
        assert_eq!(percent(1, 255).unwrap().primary(), 1);
        assert_eq!(percent(255, 1).unwrap().primary(), 99);
        assert_eq!(percent(0, 255).unwrap().primary(), 0);
        assert_eq!(percent(255, 0).unwrap().primary(), 100);
    }

    #[tokio::test]
    async fn missing_credentials_fail_at_once_with_the_fix() {
        let t = std::time::Instant::now();
        let e = check_credentials(&aws_config::SdkConfig::builder().build())
            .await
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert!(!e.is_retryable(), "{e}");
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
        assert!(e.to_string().contains("IRSA"), "{e}");
    }
}
