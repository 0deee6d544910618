//! A real PostgreSQL pair from Debian's packages, on loopback: a writer and a streaming
//! standby made with `pg_basebackup -R`, in a temporary folder, run as the `postgres` user
//! (the tests run as root, and PostgreSQL refuses to). Password authentication over TCP,
//! so a test can check the password never shows. Both servers stop when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{TempDir, free_port, setup};

/// The password of the `postgres` role in every test cluster.
pub const PASSWORD: &str = "Pg-s3cret-never-logged";

/// A writer and its streaming standby.
pub struct PgPair {
    dir: TempDir,
    bin: PathBuf,
    /// The writer's port (DR's writer, in cutover's words).
    pub writer_port: u16,
    /// The standby's port (the primary-to-be).
    pub standby_port: u16,
}

/// Debian's PostgreSQL programs, installing them with `tests/setup.sh` if missing; panics
/// (fails the test) if they are still missing.
fn bin_dir() -> PathBuf {
    let find = || {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").is_file())
            .collect();
        dirs.sort();
        dirs.pop()
    };
    if let Some(d) = find() {
        return d;
    }
    let (_, output) = setup();
    find().unwrap_or_else(|| {
        panic!("PostgreSQL (/usr/lib/postgresql/*/bin/initdb) is required and tests/setup.sh could not install it\n{output}")
    })
}

/// Runs a PostgreSQL program as the `postgres` user; panics with its output on failure.
fn as_postgres(bin: &Path, program: &str, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(program))
        .args(args)
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| panic!("runuser {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chown_postgres(p: &Path) {
    let st = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(p)
        .status()
        .expect("chown");
    assert!(st.success(), "chown {}", p.display());
}

impl PgPair {
    /// Starts a writer, takes a base backup into a standby and starts it; returns once the
    /// standby streams (bounded waits: `pg_ctl -w -t 30`, 30 s for streaming).
    pub async fn start(name: &str) -> PgPair {
        let bin = bin_dir();
        let dir = TempDir::new(&format!("pg-{name}"));
        chown_postgres(dir.path());
        let writer_port = free_port();
        let standby_port = free_port();
        let w = dir.path().join("writer");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        chown_postgres(&pwfile);
        as_postgres(
            &bin,
            "initdb",
            &[
                "-D",
                w.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--no-sync",
            ],
        );
        let sock = dir.path().to_str().unwrap().to_string();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {writer_port}\nunix_socket_directories = '{sock}'\n\
             wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n\
             wal_sender_timeout = 5s\nwal_receiver_status_interval = 1s\n"
        );
        append(&w.join("postgresql.conf"), &conf);
        // Replication over loopback without a password (the base backup); queries with one.
        let hba = std::fs::read_to_string(w.join("pg_hba.conf")).unwrap();
        std::fs::write(
            w.join("pg_hba.conf"),
            format!("host replication all 127.0.0.1/32 trust\n{hba}"),
        )
        .unwrap();
        let log = |n: &str| dir.path().join(format!("{n}.log"));
        as_postgres(
            &bin,
            "pg_ctl",
            &[
                "-D",
                w.to_str().unwrap(),
                "-l",
                log("writer").to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        let s = dir.path().join("standby");
        as_postgres(
            &bin,
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &writer_port.to_string(),
                "-U",
                "postgres",
                "-D",
                s.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        append(
            &s.join("postgresql.conf"),
            &format!("\nport = {standby_port}\n"),
        );
        as_postgres(
            &bin,
            "pg_ctl",
            &[
                "-D",
                s.to_str().unwrap(),
                "-l",
                log("standby").to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        let pair = PgPair {
            dir,
            bin,
            writer_port,
            standby_port,
        };
        pair.writer()
            .await
            .batch_execute(
                "CREATE TABLE orders (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())",
            )
            .await
            .expect("create table");
        for _ in 0..300 {
            let rows = pair
                .writer()
                .await
                .simple_query("SELECT state FROM pg_stat_replication WHERE state = 'streaming'")
                .await
                .unwrap();
            if rows
                .iter()
                .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            {
                return pair;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the standby never streamed:\n{}", pair.logs());
    }

    /// A libpq connection string of a server, with the password.
    pub fn url(&self, port: u16) -> String {
        format!(
            "host=127.0.0.1 port={port} user=postgres password={PASSWORD} dbname=postgres sslmode=disable"
        )
    }

    /// Writes the connection string of `port` to a file (as a mounted Secret would hold it).
    pub fn secret_file(&self, name: &str, port: u16) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, self.url(port)).unwrap();
        p
    }

    async fn connect(&self, port: u16) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::connect(&self.url(port), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}\n{}", self.logs()));
        tokio::spawn(conn);
        c
    }

    /// A client of the writer.
    pub async fn writer(&self) -> tokio_postgres::Client {
        self.connect(self.writer_port).await
    }

    /// A client of the standby.
    pub async fn standby(&self) -> tokio_postgres::Client {
        self.connect(self.standby_port).await
    }

    /// Pauses (or resumes) WAL replay on the standby.
    pub async fn pause_replay(&self, paused: bool) {
        let f = if paused {
            "pg_wal_replay_pause"
        } else {
            "pg_wal_replay_resume"
        };
        self.standby()
            .await
            .batch_execute(&format!("SELECT {f}()"))
            .await
            .unwrap_or_else(|e| panic!("{f}: {e}"));
    }

    /// Writes on the writer every 100 ms until the handle is aborted (or dropped with the
    /// runtime).
    pub async fn keep_writing(&self) -> tokio::task::JoinHandle<()> {
        let c = self.writer().await;
        tokio::spawn(async move {
            loop {
                let _ = c.batch_execute("INSERT INTO orders DEFAULT VALUES").await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    /// Makes the standby accept only TLS connections over TCP, with a certificate for
    /// 127.0.0.1 signed by a fresh CA (made with `openssl`); returns the CA's PEM file.
    /// The pair's own clients (`standby()`) then no longer connect to it.
    pub fn require_tls_on_standby(&self) -> PathBuf {
        let openssl = crate::require_program("openssl");
        let d = self.dir.path();
        let run = |args: &[&str]| {
            let out = Command::new(&openssl)
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=cutover test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            d.join("san.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        for f in ["server.key", "server.crt"] {
            chown_postgres(&d.join(f));
        }
        let _ = Command::new("chmod")
            .arg("600")
            .arg(d.join("server.key"))
            .status();
        let s = d.join("standby");
        append(
            &s.join("postgresql.conf"),
            &format!(
                "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                d.join("server.crt").display(),
                d.join("server.key").display()
            ),
        );
        let hba = std::fs::read_to_string(s.join("pg_hba.conf")).unwrap();
        std::fs::write(
            s.join("pg_hba.conf"),
            format!("hostnossl all all 127.0.0.1/32 reject\n{hba}"),
        )
        .unwrap();
        as_postgres(&self.bin, "pg_ctl", &["-D", s.to_str().unwrap(), "reload"]);
        d.join("ca.crt")
    }

    /// The servers' logs, for a failing test.
    pub fn logs(&self) -> String {
        ["writer", "standby"]
            .iter()
            .map(|n| {
                let p = self.dir.path().join(format!("{n}.log"));
                format!(
                    "--- {n}.log\n{}",
                    std::fs::read_to_string(&p).unwrap_or_default()
                )
            })
            .collect()
    }
}

fn append(p: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

impl Drop for PgPair {
    fn drop(&mut self) {
        for n in ["standby", "writer"] {
            let d = self.dir.path().join(n);
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .args([
                    "-D",
                    d.to_str().unwrap_or_default(),
                    "-m",
                    "immediate",
                    "-t",
                    "20",
                    "stop",
                ])
                .current_dir("/")
                .output();
        }
    }
}
