//! Helpers shared by the federation tests (`federation.rs`,
//! `federation_features.rs`): brokers federated over a
//! [`nats_support`](crate::nats_support) cluster, in this process or as
//! `stagebus broker --federate` processes, and clients of them.
#![allow(dead_code)]

use crate::common::*;
use crate::nats_support::{Node, Spec};
use stagebus::*;
use std::time::{Duration, Instant};

/// With FED_DEBUG set, the library's logs go to stderr.
pub fn debug_logs() {
    if std::env::var("FED_DEBUG").is_ok() {
        let _ = set_log_handler(
            Some(std::sync::Arc::new(|e: &LogEntry| {
                if !e.target.starts_with("mio") {
                    eprintln!("{:?} {} {} {:?}", e.level, e.target, e.message, e.fields)
                }
            })),
            if std::env::var("FED_DEBUG").as_deref() == Ok("trace") {
                LogLevel::Trace
            } else {
                LogLevel::Debug
            },
        );
    }
}

pub fn js() -> Spec {
    Spec {
        jetstream: true,
        ..Spec::default()
    }
}

/// The server list for broker `k`: its own node first, then the others.
pub fn urls_for(nodes: &[Node], k: usize) -> String {
    let mut urls = vec![nodes[k].url()];
    urls.extend(
        nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != k)
            .map(|(_, n)| n.url()),
    );
    urls.join(",")
}

pub fn federated(lp: &EventLoop, urls: &str, id: &str, ns: &str) -> Broker {
    federated_with(lp, urls, id, ns, |c| c)
}

/// [`federated`], with the broker's config changed by `adjust` (tokens,
/// a policy).
pub fn federated_with(
    lp: &EventLoop,
    urls: &str,
    id: &str,
    ns: &str,
    adjust: impl FnOnce(BrokerConfig) -> BrokerConfig,
) -> Broker {
    let mut f = FederationConfig::new(urls, id)
        .unwrap()
        .with_namespace(ns)
        .unwrap();
    f.hb_interval = Duration::from_millis(200);
    // Generous on a loaded 2-core machine: a false death would fail calls.
    f.hb_timeout = Duration::from_millis(3000);
    let config = adjust(BrokerConfig::listening([tcp_any()]).with_federation(f));
    Broker::new(lp, config).unwrap()
}

pub fn connect(lp: &EventLoop, b: &Broker) -> Client {
    let c = Client::connect(lp, &b.local_addresses()[0], ClientConfig::default());
    let done = Slot::new();
    c.on_connect(done.setter());
    wait(lp, &done).expect("connect");
    c
}

/// Publishes, retrying while the directory is not ready yet (`timeout`).
#[track_caller]
pub fn publish_when_ready(
    c: &Client,
    session: &str,
    methods: &[&str],
    serve: impl FnMut(&Delivery, Inbound) + Clone + 'static,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match publish(c, session, methods, serve.clone()) {
            Ok(()) => return,
            Err(e) if e.code == ErrorCode::Timeout && Instant::now() < deadline => {
                c.event_loop()
                    .run_until(Duration::from_millis(100), || false)
                    .unwrap();
            }
            Err(e) => panic!("publish {session}: {e}"),
        }
    }
}

/// Checks `cond` every 50 ms until it holds (a listing asked again and
/// again: nothing on the loop wakes it when a remote broker changes).
#[track_caller]
pub fn eventually(lp: &EventLoop, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        lp.run_until(Duration::from_millis(50), || false).unwrap();
    }
}

/// A `stagebus broker --federate …` process, killed when dropped.
pub struct BrokerProcess {
    pub child: std::process::Child,
    pub addr: Address,
}

impl BrokerProcess {
    pub fn start(urls: &str, id: &str, ns: &str) -> BrokerProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stagebus"))
            .args([
                "broker",
                "--listen",
                "tcp://127.0.0.1:0",
                "--federate",
                urls,
            ])
            .args(["--broker-id", id, "--namespace", ns])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start stagebus broker");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("broker {id} said {line:?}"))
            .parse::<Address>()
            .unwrap();
        BrokerProcess { child, addr }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn connect_to(lp: &EventLoop, addr: &Address) -> Client {
    let c = Client::connect(lp, addr, ClientConfig::default());
    let done = Slot::new();
    c.on_connect(done.setter());
    wait(lp, &done).expect("connect");
    c
}

/// Like [`echo`], and clonable (for [`publish_when_ready`]): a call
/// returns its args.
pub fn echo_clone() -> impl FnMut(&Delivery, Inbound) + Clone + 'static {
    |d: &Delivery, inbound: Inbound| {
        if let Inbound::Call { args, .. } = inbound {
            let _ = d.respond("return", &args);
        }
    }
}
