//! The federated cases: caller → broker 1 → NATS node 1 → NATS node 2 →
//! broker 2 → publisher. Two `nats-server` nodes in one cluster (from
//! generated configs, on free loopback ports, JetStream on for the
//! directory) and two `stagebus broker --federate` processes.

use crate::cases::{bounded, broker_args_federated, TempDir};
use crate::fail;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A two-node NATS cluster, stopped when dropped.
pub(crate) struct NatsPair {
    children: Vec<Child>,
    pub(crate) ports: [u16; 2],
    _dir: TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| fail(format!("no free port: {e}")))
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

impl NatsPair {
    pub(crate) fn start() -> NatsPair {
        let dir = TempDir::new();
        let ports = [free_port(), free_port()];
        let monitor = [free_port(), free_port()];
        let routes = [free_port(), free_port()];
        let mut children = Vec::new();
        for k in 0..2 {
            let conf = dir.0.join(format!("n{k}.conf"));
            let text = format!(
                "server_name: n{k}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\n\
                 jetstream {{ store_dir: \"{}\" }}\n\
                 cluster {{ name: bench, listen: 127.0.0.1:{}, routes: [nats-route://127.0.0.1:{}] }}\n",
                ports[k],
                monitor[k],
                dir.0.join(format!("js{k}")).display(),
                routes[k],
                routes[1 - k]
            );
            std::fs::write(&conf, text).unwrap_or_else(|e| fail(e));
            let server = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
            let mut cmd = bounded(server);
            cmd.arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            children.push(cmd.spawn().unwrap_or_else(|e| {
                fail(format!(
                    "cannot start nats-server (apt-get install nats-server): {e}"
                ))
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for m in monitor {
            // Routed to each other, and JetStream ready (a meta leader).
            while !http_get(m, "/routez").is_some_and(|t| t.contains("\"num_routes\": 1"))
                || !http_get(m, "/healthz").is_some_and(|t| t.contains("\"ok\""))
            {
                if Instant::now() > deadline {
                    fail("the NATS cluster did not form");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        NatsPair {
            children,
            ports,
            _dir: dir,
        }
    }

    /// The server list for broker `k`: its node first.
    pub(crate) fn urls(&self, k: usize) -> String {
        format!(
            "nats://127.0.0.1:{},nats://127.0.0.1:{}",
            self.ports[k],
            self.ports[1 - k]
        )
    }
}

impl Drop for NatsPair {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `stagebus broker --federate` arguments for broker `id` of `pair`.
pub(crate) fn federate(cmd: &mut Command, pair: &NatsPair, k: usize) {
    broker_args_federated(cmd, &pair.urls(k), &format!("bench{k}"));
}
