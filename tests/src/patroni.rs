//! A stand-in for Patroni's REST API: `GET /cluster` answers a recorded response in the
//! format of Patroni's documentation (`docs/rest_api.rst`, "Cluster status endpoints"),
//! whose members the test can change; anything else is 404. Stops when dropped.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::http1::{read_request, write_response};

/// The `/cluster` response of Patroni's documentation: a leader and a streaming replica,
/// both on timeline 5, the replica with no lag.
pub fn documented_cluster() -> Value {
    json!({
      "members": [
        {
          "name": "patroni1",
          "role": "leader",
          "state": "running",
          "api_url": "http://10.89.0.4:8008/patroni",
          "host": "10.89.0.4",
          "port": 5432,
          "timeline": 5,
          "tags": { "clonefrom": true }
        },
        {
          "name": "patroni2",
          "role": "replica",
          "state": "streaming",
          "api_url": "http://10.89.0.6:8008/patroni",
          "host": "10.89.0.6",
          "port": 5433,
          "timeline": 5,
          "tags": { "clonefrom": true },
          "receive_lag": 0,
          "receive_lsn": "0/4000060",
          "replay_lag": 0,
          "replay_lsn": "0/4000060",
          "lag": 0,
          "lsn": "0/4000060"
        }
      ],
      "scope": "demo",
      "scheduled_switchover": {
        "at": "2023-09-24T10:36:00+02:00",
        "from": "patroni1",
        "to": "patroni3"
      }
    })
}

/// A running stand-in.
pub struct PatroniApi {
    cluster: Arc<Mutex<Value>>,
    /// Its base URL.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl PatroniApi {
    /// Serves `cluster` at `GET /cluster`.
    pub async fn start(cluster: Value) -> PatroniApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let cluster = Arc::new(Mutex::new(cluster));
        let c = cluster.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    continue;
                };
                let c = c.clone();
                tokio::spawn(async move {
                    let Ok(Some(req)) = read_request(&mut sock).await else {
                        return;
                    };
                    let (code, body) = if req.method == "GET" && req.path() == "/cluster" {
                        (200, c.lock().unwrap().to_string())
                    } else {
                        (404, "{}".to_string())
                    };
                    let _ =
                        write_response(&mut sock, code, "application/json", body.as_bytes()).await;
                });
            }
        });
        PatroniApi { cluster, url, task }
    }

    /// Sets a field of member `i` (e.g. its `lag` or `state`).
    pub fn set_member(&self, i: usize, field: &str, value: Value) {
        self.cluster.lock().unwrap()["members"][i][field] = value;
    }
}

impl Drop for PatroniApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}
