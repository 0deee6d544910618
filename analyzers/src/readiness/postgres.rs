//! `postgres`: streaming replication between DR's writer and the primary-to-be, read from
//! the servers themselves (what lag means is documented on
//! [`cutover_core::readiness::PostgresCheck`]). Also the PostgreSQL-protocol connection that
//! `cockroach_pcr` uses: tokio-postgres, the simple query protocol only (every value read
//! as text), TLS through rustls when the connection string asks for it.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cutover_core::readiness::PostgresCheck;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{Finding, ReadinessCheck, read_secret, redact};

/// A `postgres` check.
pub struct Postgres<'a>(pub &'a PostgresCheck);

/// One row of a simple query, by column name, every value as text (`None`: NULL).
pub type Row = Vec<(String, Option<String>)>;

/// A connection opened from a connection-string file; its secrets, to redact from errors.
pub struct Connection {
    /// The client.
    pub client: Client,
    secrets: Vec<String>,
}

impl Connection {
    /// Opens a connection with the connection string in `file` (5 s to connect unless the
    /// string says `connect_timeout`), TLS by `sslmode` (`prefer` by default: TLS when the
    /// server offers it), certificates verified against `ca_file` or the system's roots.
    pub async fn open(file: &Path, ca_file: Option<&Path>) -> Result<Connection, String> {
        let text = read_secret(file)?;
        let mut secrets = vec![text.clone()];
        let mut config = tokio_postgres::Config::from_str(&text).map_err(|e| {
            format!(
                "{}: not a connection string ({})",
                file.display(),
                redact(&e.to_string(), &[&text])
            )
        })?;
        if let Some(p) = config.get_password() {
            secrets.push(String::from_utf8_lossy(p).into_owned());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let hide = |e: tokio_postgres::Error| {
            let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
            redact(&chain(&e), &refs)
        };
        let client = if config.get_ssl_mode() == SslMode::Disable {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.map_err(hide)?;
            tokio::spawn(conn);
            client
        } else {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(ca_file)?);
            let (client, conn) = config.connect(tls).await.map_err(hide)?;
            tokio::spawn(conn);
            client
        };
        Ok(Connection { client, secrets })
    }

    /// Runs `sql` (simple query protocol) and returns its rows.
    pub async fn rows(&self, sql: &str) -> Result<Vec<Row>, String> {
        let msgs = self.client.simple_query(sql).await.map_err(|e| {
            let refs: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
            redact(&chain(&e), &refs)
        })?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(
                    r.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.name().to_string(), r.get(i).map(str::to_string)))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }
}

/// An error and its causes, in one line: tokio-postgres says "error performing TLS
/// handshake" and keeps the why (e.g. an unknown issuer) in its source.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !s.contains(&c_text) {
            s.push_str(": ");
            s.push_str(&c_text);
        }
        cause = c.source();
    }
    s
}

/// The value of column `name` of a row.
pub fn col<'r>(row: &'r Row, name: &str) -> Option<&'r str> {
    row.iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref())
}

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(f) => {
            for c in CertificateDer::pem_file_iter(f)
                .map_err(|e| format!("cannot read the CA file {}: {e}", f.display()))?
            {
                let c = c.map_err(|e| format!("{}: {e}", f.display()))?;
                roots.add(c).map_err(|e| format!("{}: {e}", f.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// On the primary-to-be: in recovery or not, bytes received but not replayed, the age of
/// the last replayed transaction, the replay LSN and whether replay is paused.
const STANDBY_SQL: &str = "SELECT pg_is_in_recovery()::text AS in_recovery, \
     COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::text AS unreplayed, \
     EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))::text AS replay_age, \
     pg_last_wal_replay_lsn()::text AS replay_lsn, \
     (CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END)::text AS paused";

/// On DR's writer: each standby streaming from it.
const WRITER_SQL: &str = "SELECT application_name, state, replay_lsn::text AS replay_lsn, \
     pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::text AS behind, \
     EXTRACT(EPOCH FROM replay_lag)::text AS replay_lag \
     FROM pg_stat_replication";

/// What one side says: a lag in seconds, bytes behind, and in words.
struct Side {
    lag: f64,
    bytes: f64,
    words: String,
}

fn num(row: &Row, name: &str) -> Option<f64> {
    col(row, name).and_then(|v| v.parse().ok())
}

async fn standby(file: &Path, ca: Option<&Path>) -> Result<Side, String> {
    let c = Connection::open(file, ca).await?;
    let rows = c.rows(STANDBY_SQL).await?;
    let row = rows.first().ok_or("the server returned no row")?;
    if col(row, "in_recovery") != Some("true") {
        return Ok(Side {
            lag: 0.0,
            bytes: 0.0,
            words: "the primary-to-be is not in recovery: it is a writer, with nothing to replay"
                .into(),
        });
    }
    let unreplayed = num(row, "unreplayed").unwrap_or(0.0);
    let paused = col(row, "paused") == Some("true");
    let lag = if unreplayed <= 0.0 {
        0.0
    } else {
        num(row, "replay_age")
            .ok_or("it has WAL to replay but has replayed no transaction yet: its lag is unknown")?
    };
    Ok(Side {
        lag: lag.max(0.0),
        bytes: unreplayed,
        words: format!(
            "primary-to-be replayed to {}, {unreplayed:.0} bytes received and not replayed, replay lag {lag:.1}s{}",
            col(row, "replay_lsn").unwrap_or("?"),
            if paused { ", replay PAUSED" } else { "" }
        ),
    })
}

async fn writer(file: &Path, ca: Option<&Path>) -> Result<Side, String> {
    let c = Connection::open(file, ca).await?;
    let rows = c.rows(WRITER_SQL).await?;
    let streaming: Vec<&Row> = rows
        .iter()
        .filter(|r| col(r, "state") == Some("streaming"))
        .collect();
    // The standby most caught up is the one cutover waits for.
    let best = streaming.iter().min_by(|a, b| {
        let k = |r: &Row| num(r, "behind").unwrap_or(f64::INFINITY);
        k(a).total_cmp(&k(b))
    });
    let Some(best) = best else {
        let states: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    col(r, "application_name").unwrap_or("?"),
                    col(r, "state").unwrap_or("?")
                )
            })
            .collect();
        return Err(format!(
            "DR's writer has no streaming standby (pg_stat_replication: {})",
            if states.is_empty() {
                "empty".into()
            } else {
                states.join(", ")
            }
        ));
    };
    let bytes = num(best, "behind").unwrap_or(f64::INFINITY);
    let lag = num(best, "replay_lag").unwrap_or(0.0);
    Ok(Side {
        lag,
        bytes,
        words: format!(
            "DR's writer streams to {}: replay_lsn {}, {bytes:.0} bytes behind, replay_lag {lag:.1}s",
            col(best, "application_name").unwrap_or("?"),
            col(best, "replay_lsn").unwrap_or("?"),
        ),
    })
}

#[async_trait]
impl ReadinessCheck for Postgres<'_> {
    fn asked(&self) -> String {
        let mut asked = Vec::new();
        if let Some(f) = &self.0.primary_connection_file {
            asked.push(format!(
                "replay state of the primary-to-be ({})",
                f.display()
            ));
        }
        if let Some(f) = &self.0.dr_connection_file {
            asked.push(format!(
                "pg_stat_replication of DR's writer ({})",
                f.display()
            ));
        }
        asked.join("; ")
    }

    async fn check(&self, _now: SystemTime) -> Finding {
        let pg = self.0;
        let ca = pg.ca_file.as_deref();
        let mut sides = Vec::new();
        if let Some(f) = &pg.primary_connection_file {
            match standby(f, ca).await {
                Ok(s) => sides.push(s),
                Err(e) => return Finding::fail(format!("primary-to-be: {e}")),
            }
        }
        if let Some(f) = &pg.dr_connection_file {
            match writer(f, ca).await {
                Ok(s) => sides.push(s),
                Err(e) => return Finding::fail(format!("DR writer: {e}")),
            }
        }
        let lag = sides.iter().map(|s| s.lag).fold(0.0, f64::max);
        let bytes = sides.iter().map(|s| s.bytes).fold(0.0, f64::max);
        let words: Vec<&str> = sides.iter().map(|s| s.words.as_str()).collect();
        let mut breaches = Vec::new();
        if let Some(max) = pg.max_lag
            && lag > max.get().as_secs_f64()
        {
            breaches.push(format!("lag {lag:.1}s is above max_lag {max}"));
        }
        if let Some(max) = pg.max_lag_bytes
            && bytes > max as f64
        {
            breaches.push(format!(
                "{bytes:.0} bytes behind is above max_lag_bytes {max}"
            ));
        }
        let ok = breaches.is_empty();
        Finding {
            ok,
            value: Some(lag),
            covers: None,
            detail: if ok {
                format!("caught up: {}", words.join("; "))
            } else {
                format!("{}: {}", breaches.join(", "), words.join("; "))
            },
        }
    }
}
