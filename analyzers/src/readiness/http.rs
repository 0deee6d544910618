//! `http`: a smoke request (a runbook's `verify_services`): the status expected and, if
//! given, a body matching a regular expression, within a timeout.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cutover_core::readiness::HttpCheck;

use super::{Finding, ReadinessCheck, redact, shown_url};

/// An `http` check.
pub struct Http<'a>(pub &'a HttpCheck);

#[async_trait]
impl ReadinessCheck for Http<'_> {
    fn asked(&self) -> String {
        format!(
            "{} {}",
            self.0.method.as_deref().unwrap_or("GET"),
            shown_url(&self.0.url).0
        )
    }

    async fn check(&self, _now: SystemTime) -> Finding {
        let h = self.0;
        let timeout = h.timeout.map_or(Duration::from_secs(5), |t| t.get());
        let want = h.status.unwrap_or(200);
        let method = reqwest::Method::from_bytes(h.method.as_deref().unwrap_or("GET").as_bytes())
            .unwrap_or(reqwest::Method::GET);
        let client = match reqwest::Client::builder().timeout(timeout).build() {
            Ok(c) => c,
            Err(e) => return Finding::fail(e.to_string()),
        };
        let resp = match client.request(method, &h.url).send().await {
            Ok(r) => r,
            Err(e) => {
                let secret = shown_url(&h.url).1.unwrap_or_default();
                return Finding::fail(redact(&format!("unreachable: {e}"), &[&secret]));
            }
        };
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let value = Some(f64::from(status));
        if status != want {
            return Finding {
                value,
                ..Finding::fail(format!("status {status}, expected {want}"))
            };
        }
        if let Some(re) = &h.body {
            let ok = regex::Regex::new(re).is_ok_and(|r| r.is_match(&body));
            if !ok {
                return Finding {
                    value,
                    ..Finding::fail(format!(
                        "status {status}, but the body does not match /{re}/"
                    ))
                };
            }
        }
        Finding {
            ok: true,
            value,
            covers: None,
            detail: format!(
                "status {status}{}",
                if h.body.is_some() {
                    ", body matches"
                } else {
                    ""
                }
            ),
        }
    }
}
