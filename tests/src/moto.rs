//! A real `moto` server (PyPI `moto[server]`) on loopback, the Route 53 emulator; killed on
//! drop, its log shown then if the test is failing.

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{TempDir, free_port};

/// A running moto server.
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: TempDir,
}

fn moto_importable() -> bool {
    Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Moto {
    /// Starts moto (installing it with `tests/setup.sh` if missing; failing if that fails).
    pub async fn start() -> Moto {
        static READY: OnceLock<bool> = OnceLock::new();
        let ok =
            *READY.get_or_init(|| moto_importable() || (crate::setup().0 && moto_importable()));
        assert!(
            ok,
            "moto[server] is required by this test and tests/setup.sh could not install it\n{}",
            crate::setup().1
        );
        let dir = TempDir::new("moto");
        let log = dir.path().join("moto.log");
        // A port found free may be taken by a concurrent test's server before ours binds it
        // (then ours exits and the other answers): check that our process still runs once
        // the port answers, else try another port. Bounded.
        for _ in 0..5 {
            let port = free_port();
            let out = std::fs::File::create(&log).expect("moto's log file");
            let err = out.try_clone().expect("moto's log file");
            let mut child = Command::new("python3")
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("moto starts");
            let deadline = Instant::now() + Duration::from_secs(30);
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
                && matches!(child.try_wait(), Ok(None))
            {
                assert!(Instant::now() < deadline, "moto did not listen within 30 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            if matches!(child.try_wait(), Ok(None)) {
                return Moto { child, port, dir };
            }
            let _ = child.wait();
        }
        panic!("could not start moto on a port of its own in 5 attempts");
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An SDK client pointed at it (test credentials, us-east-1).
    pub async fn client(&self) -> aws_sdk_route53::Client {
        client_for(&self.url()).await
    }
}

/// An SDK client for an emulator at `url`.
pub async fn client_for(url: &str) -> aws_sdk_route53::Client {
    let creds = aws_sdk_route53::config::Credentials::new("test", "test", None, None, "tests");
    let conf = aws_sdk_route53::config::Builder::new()
        .behavior_version(aws_sdk_route53::config::BehaviorVersion::latest())
        .region(aws_sdk_route53::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(url)
        .build();
    aws_sdk_route53::Client::from_conf(conf)
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            crate::logs::print_tail("moto", &self.dir.path().join("moto.log"));
        }
    }
}
