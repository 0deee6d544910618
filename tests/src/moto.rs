//! A real `moto` server (PyPI `moto[server]`) on loopback, the Route 53 emulator; killed on drop.

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{free_port, workspace};

/// A running moto server.
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
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
        let ok = *READY.get_or_init(|| {
            moto_importable()
                || (Command::new("bash")
                    .arg(workspace().join("tests/setup.sh"))
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
                    && moto_importable())
        });
        assert!(
            ok,
            "moto[server] is required by this test and tests/setup.sh could not install it"
        );
        // A port found free may be taken by a concurrent test's server before ours binds it
        // (then ours exits and the other answers): check that our process still runs once
        // the port answers, else try another port. Bounded.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("python3")
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
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
                return Moto { child, port };
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
    }
}
