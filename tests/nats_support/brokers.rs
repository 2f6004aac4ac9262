//! Federated brokers for the federation tests (`tests/federation.rs`,
//! `tests/federation_faults.rs`): in-process brokers on the test's loop,
//! `stagebus broker --federate` processes (killed, stopped and continued
//! by PID), clients, and waits that poll what nothing on the loop wakes.
//! Included with `#[path]` by the test files that also have `common`.
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

/// Nodes with JetStream on.
pub fn js() -> Spec {
    Spec {
        jetstream: true,
        ..Spec::default()
    }
}

/// The server list for broker `k`: its own node first, then the others.
pub fn urls_for(nodes: &[Node], k: usize) -> String {
    let mut urls = vec![nodes[k % nodes.len()].url()];
    urls.extend(
        nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != k % nodes.len())
            .map(|(_, n)| n.url()),
    );
    urls.join(",")
}

/// An in-process federated broker on `lp`, heartbeats every 200 ms and a
/// generous `hb_timeout` (3 s: a false death on a loaded machine would
/// fail calls).
pub fn federated(lp: &EventLoop, urls: &str, id: &str, ns: &str) -> Broker {
    federated_with(lp, urls, id, ns, |c| c)
}

/// [`federated`], with the broker's config changed by `adjust` (limits,
/// tokens, a policy).
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

/// A client of an in-process broker, connected.
pub fn connect(lp: &EventLoop, b: &Broker) -> Client {
    connect_to(lp, &b.local_addresses()[0])
}

/// A client of the broker at `addr`, connected.
pub fn connect_to(lp: &EventLoop, addr: &Address) -> Client {
    let c = Client::connect(lp, addr, ClientConfig::default());
    let done = Slot::new();
    c.on_connect(done.setter());
    wait(lp, &done).expect("connect");
    c
}

/// Publishes, retrying while the directory is not ready yet (`timeout`,
/// `unavailable`).
#[track_caller]
pub fn publish_when_ready(
    c: &Client,
    session: &str,
    methods: &[&str],
    serve: impl FnMut(&Delivery, Inbound) + Clone + 'static,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
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
pub fn eventually(lp: &EventLoop, what: &str, cond: impl FnMut() -> bool) {
    eventually_within(lp, what, Duration::from_secs(20), cond);
}

/// [`eventually`] within `limit`.
#[track_caller]
pub fn eventually_within(
    lp: &EventLoop,
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out ({limit:?}) waiting for {what}"
        );
        lp.run_until(Duration::from_millis(50), || false).unwrap();
    }
}

/// Runs `lp` for `d`.
pub fn run_for(lp: &EventLoop, d: Duration) {
    lp.run_until(d, || false).unwrap();
}

/// A `stagebus broker --federate …` process, killed when dropped.
pub struct BrokerProcess {
    pub child: std::process::Child,
    pub addr: Address,
}

impl BrokerProcess {
    /// Starts it and waits for its `listening on` line.
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

    /// Sends `signal` (SIGSTOP, SIGCONT, …) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill with the pid of our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// kill -9 and reap.
    pub fn kill(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every event of many calls, per call: the tests count each call's
/// final events.
pub type Finals = std::rc::Rc<std::cell::RefCell<Vec<Vec<CallEvent>>>>;

/// Starts a call of `session.method` from `c` whose events (emits left
/// out) go to a new entry of `finals`; returns its index.
pub fn counted_call(c: &Client, session: &str, method: &str, finals: &Finals) -> usize {
    let index = {
        let mut f = finals.borrow_mut();
        f.push(Vec::new());
        f.len() - 1
    };
    let f2 = finals.clone();
    c.call(session, method, &arg("i", index as i64), move |_, ev| {
        if !matches!(ev, CallEvent::Emit { .. }) {
            f2.borrow_mut()[index].push(ev);
        }
    })
    .unwrap();
    index
}

/// Asserts that each call of `finals` ended exactly once, and with one
/// of `codes` when it failed; returns how many failed.
#[track_caller]
pub fn each_ended_once(finals: &Finals, codes: &[ErrorCode]) -> usize {
    let mut failed = 0;
    for (i, f) in finals.borrow().iter().enumerate() {
        assert_eq!(f.len(), 1, "call {i} ended exactly once: {f:?}");
        if let CallEvent::Error(e) = &f[0] {
            assert!(codes.contains(&e.code), "call {i}: {e}");
            failed += 1;
        }
    }
    failed
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
