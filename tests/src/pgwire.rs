//! A PostgreSQL-protocol server answering as CockroachDB does to
//! `SHOW VIRTUAL CLUSTER <name> WITH REPLICATION STATUS` (real PostgreSQL cannot run it):
//! protocol 3.0, trust authentication, the simple query protocol only, and the column set
//! of CockroachDB's documentation (v24.1, "Show a virtual cluster"): `id`, `name`,
//! `data_state`, `service_mode`, `source_tenant_name`, `source_cluster_uri`,
//! `replication_job_id`, `replicated_time`, `retained_time`, `cutover_time`. An `SSLRequest`
//! is refused (`N`); any other query is an `ErrorResponse`. Stops when dropped.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the virtual cluster reports.
#[derive(Debug, Clone)]
pub struct VirtualCluster {
    /// Its name.
    pub name: String,
    /// `data_state`: `replicating`, `replication paused`, ...
    pub data_state: String,
    /// `replicated_time` as CockroachDB prints a `TIMESTAMPTZ`.
    pub replicated_time: String,
}

/// A running responder.
pub struct PgWire {
    cluster: Arc<Mutex<VirtualCluster>>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

/// `t` seconds before now as CockroachDB prints a `TIMESTAMPTZ` (UTC).
pub fn timestamptz_ago(secs: u64) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - secs;
    let (days, rem) = ((t / 86_400) as i64, t % 86_400);
    // Civil date from days (Howard Hinnant's algorithm).
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
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.279780+00",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

impl PgWire {
    /// Serves `cluster`.
    pub async fn start(cluster: VirtualCluster) -> PgWire {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cluster = Arc::new(Mutex::new(cluster));
        let c = cluster.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let c = c.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, c).await;
                });
            }
        });
        PgWire {
            cluster,
            port,
            task,
        }
    }

    /// Changes what the virtual cluster reports.
    pub fn set(&self, f: impl FnOnce(&mut VirtualCluster)) {
        f(&mut self.cluster.lock().unwrap());
    }
}

impl Drop for PgWire {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

async fn serve(mut sock: TcpStream, c: Arc<Mutex<VirtualCluster>>) -> std::io::Result<()> {
    // Startup: SSLRequest (refused) or StartupMessage, both length-prefixed with no tag.
    loop {
        let len = sock.read_i32().await? as usize;
        let mut body = vec![0; len.saturating_sub(4)];
        sock.read_exact(&mut body).await?;
        let code = i32::from_be_bytes(body[..4].try_into().unwrap_or_default());
        if code == 80_877_103 {
            sock.write_all(b"N").await?;
            continue;
        }
        break;
    }
    let mut out = msg(b'R', &0i32.to_be_bytes());
    for (k, v) in [("server_version", "13.0.0"), ("client_encoding", "UTF8")] {
        let mut b = Vec::new();
        cstr(&mut b, k);
        cstr(&mut b, v);
        out.extend(msg(b'S', &b));
    }
    out.extend(msg(b'K', &[0, 0, 0, 1, 0, 0, 0, 2]));
    out.extend(msg(b'Z', b"I"));
    sock.write_all(&out).await?;
    loop {
        let tag = sock.read_u8().await?;
        let len = sock.read_i32().await? as usize;
        let mut body = vec![0; len.saturating_sub(4)];
        sock.read_exact(&mut body).await?;
        match tag {
            b'X' => return Ok(()),
            b'Q' => {
                let sql = String::from_utf8_lossy(&body)
                    .trim_end_matches('\0')
                    .to_string();
                let vc = c.lock().unwrap().clone();
                let mut out = answer(&sql, &vc);
                out.extend(msg(b'Z', b"I"));
                sock.write_all(&out).await?;
            }
            _ => {
                let mut out = error("0A000", "only the simple query protocol is served here");
                out.extend(msg(b'Z', b"I"));
                sock.write_all(&out).await?;
            }
        }
    }
}

fn error(code: &str, message: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (f, v) in [
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', code),
        (b'M', message),
    ] {
        b.push(f);
        cstr(&mut b, v);
    }
    b.push(0);
    msg(b'E', &b)
}

fn answer(sql: &str, vc: &VirtualCluster) -> Vec<u8> {
    let upper = sql.to_uppercase();
    let Some(rest) = upper.strip_prefix("SHOW VIRTUAL CLUSTER ") else {
        return error("42601", &format!("at or near \"{sql}\": syntax error"));
    };
    let name = rest
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_matches('"')
        .to_lowercase();
    if !rest.contains("WITH REPLICATION STATUS") {
        return error(
            "42601",
            "this responder answers WITH REPLICATION STATUS only",
        );
    }
    if name != vc.name {
        return error(
            "42704",
            &format!("virtual cluster \"{name}\" does not exist"),
        );
    }
    // (name, type oid): INT8 20, STRING 25, TIMESTAMPTZ 1184, DECIMAL 1700.
    let cols: [(&str, i32, Option<String>); 10] = [
        ("id", 20, Some("5".into())),
        ("name", 25, Some(vc.name.clone())),
        ("data_state", 25, Some(vc.data_state.clone())),
        ("service_mode", 25, Some("none".into())),
        ("source_tenant_name", 25, Some(vc.name.clone())),
        (
            "source_cluster_uri",
            25,
            Some("postgresql://user:redacted@host/?options=-ccluster%3Dsystem&sslmode=verify-full&sslrootcert=redacted".into()),
        ),
        ("replication_job_id", 20, Some("911803003607220225".into())),
        ("replicated_time", 1184, Some(vc.replicated_time.clone())),
        ("retained_time", 1184, Some(timestamptz_ago(3 * 3600))),
        ("cutover_time", 1700, None),
    ];
    let mut desc = (cols.len() as i16).to_be_bytes().to_vec();
    let mut row = (cols.len() as i16).to_be_bytes().to_vec();
    for (name, oid, value) in &cols {
        cstr(&mut desc, name);
        desc.extend_from_slice(&0i32.to_be_bytes());
        desc.extend_from_slice(&0i16.to_be_bytes());
        desc.extend_from_slice(&oid.to_be_bytes());
        desc.extend_from_slice(&(-1i16).to_be_bytes());
        desc.extend_from_slice(&(-1i32).to_be_bytes());
        desc.extend_from_slice(&0i16.to_be_bytes());
        match value {
            Some(v) => {
                row.extend_from_slice(&(v.len() as i32).to_be_bytes());
                row.extend_from_slice(v.as_bytes());
            }
            None => row.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    let mut out = msg(b'T', &desc);
    out.extend(msg(b'D', &row));
    let mut done = Vec::new();
    cstr(&mut done, "SHOW 1");
    out.extend(msg(b'C', &done));
    out
}
