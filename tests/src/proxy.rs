//! A fault-injecting HTTP proxy between the AWS SDK and moto: answers `Throttling` to every
//! Nth request, and records every ChangeResourceRecordSets body so a test can assert that
//! no batch ever set both weights to 0.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

/// Faults to inject.
#[derive(Default, Debug, Clone, Copy)]
pub struct Faults {
    /// Answer `Throttling` to every Nth request (0: never).
    pub throttle_every: u64,
    /// Answer `PENDING` to this many GetChange calls before letting INSYNC through.
    pub pending_get_changes: u64,
    /// Refuse ChangeResourceRecordSets with `InvalidChangeBatch` (a validation error)...
    pub invalid_batches: bool,
    /// ...once this many weight changes have gone through (0: from the first).
    pub invalid_after: u64,
}

/// What the proxy saw.
#[derive(Default, Debug)]
pub struct Seen {
    /// GetChange calls.
    pub get_changes: u64,
    /// ChangeResourceRecordSets calls (forwarded or refused).
    pub change_calls: u64,
    /// Requests received.
    pub requests: u64,
    /// Requests answered with Throttling.
    pub throttled: u64,
    /// Bodies of ChangeResourceRecordSets requests forwarded (weights only).
    pub change_batches: Vec<String>,
    /// Bodies of ChangeResourceRecordSets requests of cutover's lock record.
    pub lock_batches: Vec<String>,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// Its URL.
    pub url: String,
    /// What it saw.
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

const INVALID: &str = "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>InvalidChangeBatch</Code><Message>injected validation error</Message></Error><RequestId>proxy-invalid</RequestId></ErrorResponse>";

const THROTTLING: &str = "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>proxy-throttle</RequestId></ErrorResponse>";

/// The `<Weight>` values of a ChangeBatch body.
pub fn weights_in(body: &str) -> Vec<i64> {
    body.split("<Weight>")
        .skip(1)
        .filter_map(|s| s.split("</Weight>").next()?.trim().parse().ok())
        .collect()
}

impl FaultProxy {
    /// Forwards to `upstream`, throttling every `every_nth` request (0: never).
    pub async fn start(upstream: String, every_nth: u64) -> FaultProxy {
        Self::with_faults(
            upstream,
            Faults {
                throttle_every: every_nth,
                ..Faults::default()
            },
        )
        .await
    }

    /// Forwards to `upstream`, injecting `faults`.
    pub async fn with_faults(upstream: String, faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let rec = seen.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (rec, http, upstream) = (rec.clone(), http.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, rec, http, upstream, faults).await;
                });
            }
        });
        FaultProxy { url, seen, task }
    }

    /// Every batch with both weights 0 that went through.
    pub fn both_zero_batches(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .change_batches
            .iter()
            .filter(|b| {
                let w = weights_in(b);
                w.len() >= 2 && w.iter().all(|x| *x == 0)
            })
            .cloned()
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut sock: tokio::net::TcpStream,
    rec: Arc<Mutex<Seen>>,
    http: reqwest::Client,
    upstream: String,
    faults: Faults,
) -> anyhow::Result<()> {
    let Some(req) = crate::http1::read_request(&mut sock).await? else {
        return Ok(());
    };
    let (method, path, headers, body) = (req.method, req.target, req.headers, req.body);
    let n = {
        let mut s = rec.lock().unwrap();
        s.requests += 1;
        s.requests
    };
    // cutover's lock record (a TXT record beside the weighted ones) is counted apart: the
    // faults below are about the weights.
    let is_lock = String::from_utf8_lossy(&body).contains("_cutover-lock");
    let is_change = method == "POST" && path.contains("/rrset") && !is_lock;
    if is_lock && method == "POST" {
        rec.lock()
            .unwrap()
            .lock_batches
            .push(String::from_utf8_lossy(&body).to_string());
    }
    let is_get_change = method == "GET" && path.contains("/change/");
    let change_no = if is_change {
        let mut s = rec.lock().unwrap();
        s.change_calls += 1;
        s.change_calls
    } else {
        0
    };
    let get_change_no = if is_get_change {
        let mut s = rec.lock().unwrap();
        s.get_changes += 1;
        s.get_changes
    } else {
        0
    };
    let (status, ctype, mut resp_body) =
        if faults.throttle_every > 0 && n % faults.throttle_every == 0 {
            rec.lock().unwrap().throttled += 1;
            (
                400u16,
                "text/xml".to_string(),
                THROTTLING.as_bytes().to_vec(),
            )
        } else if is_change && faults.invalid_batches && change_no > faults.invalid_after {
            (400u16, "text/xml".to_string(), INVALID.as_bytes().to_vec())
        } else {
            if is_change {
                rec.lock()
                    .unwrap()
                    .change_batches
                    .push(String::from_utf8_lossy(&body).to_string());
            }
            let m = reqwest::Method::from_bytes(method.as_bytes())?;
            let mut req = http.request(m, format!("{upstream}{path}")).body(body);
            for (k, v) in &headers {
                let lk = k.to_ascii_lowercase();
                if lk == "host" || lk == "connection" || lk == "content-length" {
                    continue;
                }
                req = req.header(k.as_str(), v.as_str());
            }
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let ctype = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("text/xml")
                .to_string();
            (status, ctype, resp.bytes().await?.to_vec())
        };
    if is_get_change && get_change_no <= faults.pending_get_changes {
        resp_body = String::from_utf8_lossy(&resp_body)
            .replace("<Status>INSYNC</Status>", "<Status>PENDING</Status>")
            .into_bytes();
    }
    crate::http1::write_response(&mut sock, status, &ctype, &resp_body).await
}
