//! The cases: what each measures, and the driver that runs it once.
//!
//! A driver starts the processes of its case (the C peers, or the
//! `stagebus broker` binary plus publisher and caller roles of this
//! program), collects what the measuring process printed, and prints
//! `SAMPLES <ns per operation> …` and `INFO KEY VALUE` lines.

use crate::{fail, limit_secs, now_ns, payload, SLICE};
use stagebus::{EventLoop, Request, Stage};
use std::cell::Cell;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What a sample measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One round trip, one at a time.
    Latency,
    /// Time per operation while many are in flight (1/rate).
    Throughput,
}

/// One case of the table.
#[derive(Debug)]
pub struct CaseDef {
    pub name: &'static str,
    pub what: &'static str,
    pub kind: Kind,
    /// The floor case its ratio is taken against.
    pub floor: &'static str,
}

const fn def(name: &'static str, what: &'static str, kind: Kind, floor: &'static str) -> CaseDef {
    CaseDef {
        name,
        what,
        kind,
        floor,
    }
}

use Kind::{Latency, Throughput};

/// Every case, in the order they run and print.
pub const CASES: &[CaseDef] = &[
    def(
        "floor.unix",
        "raw relay caller->middle->callee, Unix, poll()",
        Latency,
        "floor.unix",
    ),
    def(
        "floor.tcp",
        "raw relay caller->middle->callee, TCP loopback, poll()",
        Latency,
        "floor.tcp",
    ),
    def(
        "floor.pipe64",
        "raw relay, Unix, 64 in flight (time per call)",
        Throughput,
        "floor.pipe64",
    ),
    def(
        "floor.8x8",
        "raw relay, Unix, 8 callers x 8 in flight (pipe.8x8's shape)",
        Throughput,
        "floor.pipe64",
    ),
    def(
        "rtt.unix",
        "stagebus brokered call, sequential, Unix",
        Latency,
        "floor.unix",
    ),
    def(
        "rtt.unix.noping",
        "rtt.unix with heartbeats off (broker and clients)",
        Latency,
        "floor.unix",
    ),
    def(
        "rtt.tcp",
        "stagebus brokered call, sequential, TCP",
        Latency,
        "floor.tcp",
    ),
    def(
        "rtt.tls",
        "rtt.tcp over tls:// (rustls, TLS 1.3, ring)",
        Latency,
        "floor.tcp",
    ),
    def(
        "rtt.request",
        "same through Request/RemoteStage/Stage, Unix",
        Latency,
        "floor.unix",
    ),
    def(
        "embedded",
        "rtt.unix with the caller on a host poll() loop",
        Latency,
        "floor.unix",
    ),
    def(
        "embedded.fds",
        "embedded, the host polling each of the loop's fds (watch_fds)",
        Latency,
        "floor.unix",
    ),
    def(
        "rtt.monitored",
        "rtt.unix with `stagebus monitor --payload` attached",
        Latency,
        "floor.unix",
    ),
    def(
        "scaled",
        "rtt.unix, broker holding 100k sessions + 100k pending",
        Latency,
        "floor.unix",
    ),
    def(
        "pipe.1",
        "brokered calls, 1 in flight, one caller (per call)",
        Throughput,
        "floor.unix",
    ),
    def(
        "pipe.16",
        "brokered calls, 16 in flight, one caller",
        Throughput,
        "floor.pipe64",
    ),
    def(
        "pipe.64",
        "brokered calls, 64 in flight, one caller",
        Throughput,
        "floor.pipe64",
    ),
    def(
        "pipe.64.tcp",
        "pipe.64 over TCP",
        Throughput,
        "floor.pipe64",
    ),
    def(
        "pipe.256",
        "brokered calls, 256 in flight, one caller",
        Throughput,
        "floor.pipe64",
    ),
    def(
        "pipe.8x8",
        "brokered calls, 8 callers x 8 in flight",
        Throughput,
        "floor.pipe64",
    ),
    def(
        "balance.pipe64",
        "pipe.64 to a balance name of 2 publishers (vs pipe.64: 1)",
        Throughput,
        "pipe.64",
    ),
    def(
        "signal.fanout",
        "1 emitter, 16 listeners: time per signal delivery",
        Throughput,
        "floor.pipe64",
    ),
    def(
        "stream",
        "100,000 emits to one request (per emit, slices of 10k)",
        Throughput,
        "floor.pipe64",
    ),
    def(
        "local",
        "in-process request+return, 1000 in flight (per pair)",
        Throughput,
        "local.baseline",
    ),
    def(
        "local.baseline",
        "boxed handler + boxed callback per pair, no stagebus",
        Throughput,
        "local.baseline",
    ),
    def(
        "dbus",
        "dbus-daemon method call, private bus, libdbus",
        Latency,
        "floor.unix",
    ),
    def(
        "zmq.ipc",
        "libzmq REQ->ROUTER/proxy/DEALER->REP, ipc",
        Latency,
        "floor.unix",
    ),
    def(
        "zmq.tcp",
        "libzmq REQ->ROUTER/proxy/DEALER->REP, TCP",
        Latency,
        "floor.tcp",
    ),
    def(
        "nats.rtt",
        "nats-server request/reply, libnats, TCP, sequential",
        Latency,
        "floor.tcp",
    ),
    def(
        "nats.pipe64",
        "nats-server request/reply, libnats, TCP, 64 in flight",
        Throughput,
        "floor.pipe64",
    ),
    def(
        "nats.rtt2",
        "nats.rtt across a 2-node cluster (fed.rtt's NATS part)",
        Latency,
        "floor.tcp",
    ),
    def(
        "reconnect",
        "broker killed -9 and restarted -> first call answered again",
        Latency,
        "floor.unix",
    ),
    def(
        "fed.rtt",
        "federated call: broker 1 -> NATS n1 -> n2 -> broker 2, TCP",
        Latency,
        "floor.tcp",
    ),
    def(
        "fed.pipe64",
        "fed.rtt's path, 64 in flight (time per call)",
        Throughput,
        "floor.pipe64",
    ),
    def(
        "fed.stream",
        "100,000 emits across fed.rtt's path (per emit, slices of 10k)",
        Throughput,
        "floor.pipe64",
    ),
    def(
        "fed.local",
        "rtt.tcp on a federated broker (caller and publisher local)",
        Latency,
        "floor.tcp",
    ),
];

/// Counts for one run: full or quick.
struct Counts {
    seq_warm: u64,
    seq_n: u64,
    pipe_warm: u64,
    pipe_n: u64,
    pipe1_n: u64,
    floor_pipe_n: u64,
    multi_n: u64,
    stream_n: u64,
    local_batches: u64,
    idle_conns: u64,
    /// Signals per `signal.fanout` run (each to all 16 listeners).
    fanout_n: u64,
}

const FULL: Counts = Counts {
    seq_warm: 1000,
    seq_n: 20_000,
    pipe_warm: 5000,
    pipe_n: 200_000,
    pipe1_n: 30_000,
    floor_pipe_n: 500_000,
    multi_n: 25_000,
    stream_n: 100_000,
    local_batches: 300,
    idle_conns: 2000,
    fanout_n: 100_000,
};

const QUICK: Counts = Counts {
    seq_warm: 300,
    seq_n: 3000,
    pipe_warm: 2000,
    pipe_n: 30_000,
    pipe1_n: 4000,
    floor_pipe_n: 100_000,
    multi_n: 4000,
    stream_n: 100_000,
    local_batches: 50,
    idle_conns: 1000,
    fanout_n: 20_000,
};

/// What the scaling case loads into the broker.
const SCALE_SESSIONS: u64 = 100_000;
const SCALE_PENDING: u64 = 100_000;

pub(crate) fn env_path(var: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| fail(format!("{var} is not set (bench/run sets it)")))
}

/// A command whose process dies with us and after the time limit.
pub(crate) fn bounded(prog: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(prog);
    let limit = limit_secs();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            libc::alarm(limit);
            Ok(())
        });
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// A child with its stdout as lines.
pub(crate) struct Proc {
    child: Child,
    out: BufReader<ChildStdout>,
    input: Option<ChildStdin>,
    what: String,
}

impl Proc {
    pub(crate) fn spawn(mut cmd: Command, what: &str, with_stdin: bool) -> Proc {
        if with_stdin {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| fail(format!("cannot start {what}: {e}")));
        let out = BufReader::new(child.stdout.take().unwrap());
        let input = child.stdin.take();
        Proc {
            child,
            out,
            input,
            what: what.to_string(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line, or fail at end of output.
    fn line(&mut self) -> String {
        let mut s = String::new();
        match self.out.read_line(&mut s) {
            Ok(n) if n > 0 => s.trim_end().to_string(),
            _ => fail(format!("{} ended without the expected output", self.what)),
        }
    }

    /// Waits for a line starting with `prefix`, skipping others.
    pub(crate) fn expect(&mut self, prefix: &str) -> String {
        loop {
            let l = self.line();
            if let Some(rest) = l.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        }
    }

    fn send(&mut self, line: &str) {
        let input = self.input.as_mut().expect("spawned with stdin");
        if writeln!(input, "{line}")
            .and_then(|_| input.flush())
            .is_err()
        {
            fail(format!("{} stopped reading", self.what));
        }
    }

    /// SIGTERM, then SIGKILL if it has not gone within 5 s.
    pub(crate) fn stop(mut self) {
        drop(self.input.take());
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.reap();
    }

    /// Waits up to 5 s for it to exit by itself, then kills it.
    pub(crate) fn reap(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
            }
        }
    }

    /// Waits for it to exit by itself; fails unless it succeeded.
    pub(crate) fn finish(mut self) {
        drop(self.input.take());
        match self.child.wait() {
            Ok(s) if s.success() => {}
            other => fail(format!("{} failed: {other:?}", self.what)),
        }
    }
}

/// A fresh directory for Unix sockets, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("sbbench-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap_or_else(|e| fail(format!("temp dir: {e}")));
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `stagebus broker`.
struct BrokerProc {
    proc: Proc,
    addr: String,
    _dir: TempDir,
}

/// `stagebus broker` on `tls://127.0.0.1:0` with certificates made now.
fn start_tls_broker() -> BrokerProc {
    let dir = TempDir::new();
    let (cert, key) = crate::tls::make_certs(&dir.0);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let (proc, addr) = broker_with(
        "tls://127.0.0.1:0",
        &["--tls-cert", cert.as_str(), "--tls-key", key.as_str()],
    );
    BrokerProc {
        proc,
        addr,
        _dir: dir,
    }
}

fn start_broker(tcp: bool) -> BrokerProc {
    let dir = TempDir::new();
    let listen = if tcp {
        "tcp://127.0.0.1:0".to_string()
    } else {
        format!("unix:{}", dir.0.join("broker.sock").display())
    };
    let (proc, addr) = broker_on(&listen);
    BrokerProc {
        proc,
        addr,
        _dir: dir,
    }
}

/// Adds `--federate URLS --broker-id ID` (in namespace `bench`).
pub(crate) fn broker_args_federated(cmd: &mut Command, urls: &str, id: &str) {
    cmd.args([
        "--federate",
        urls,
        "--broker-id",
        id,
        "--namespace",
        "bench",
    ]);
}

/// A federated `stagebus broker` on TCP: broker `k` of the NATS pair.
fn federated_broker(pair: &crate::federated::NatsPair, k: usize) -> (Proc, String) {
    let mut cmd = bounded(env_path("SBBENCH_STAGEBUS"));
    cmd.args(["broker", "--listen", "tcp://127.0.0.1:0"]);
    crate::federated::federate(&mut cmd, pair, k);
    let mut proc = Proc::spawn(cmd, "stagebus broker --federate", false);
    let addr = proc.expect("listening on");
    (proc, addr)
}

/// Waits until the broker at `addr` lists `name` (`stagebus list`).
fn wait_listed(addr: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(env_path("SBBENCH_STAGEBUS"))
            .args(["list", "--broker", addr])
            .stderr(Stdio::null())
            .output()
            .unwrap_or_else(|e| fail(format!("stagebus list: {e}")));
        if String::from_utf8_lossy(&out.stdout).contains(name) {
            return;
        }
        if Instant::now() > deadline {
            fail(format!("{name} was never listed at {addr}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `stagebus broker` listening on `listen` (without pings when
/// `SBBENCH_NOPING` is set), and the address it printed.
pub(crate) fn broker_on(listen: &str) -> (Proc, String) {
    broker_with(listen, &[])
}

/// [`broker_on`] with more flags.
fn broker_with(listen: &str, flags: &[&str]) -> (Proc, String) {
    let mut cmd = bounded(env_path("SBBENCH_STAGEBUS"));
    cmd.args(["broker", "--listen", listen]).args(flags);
    if std::env::var_os("SBBENCH_NOPING").is_some() {
        cmd.args(["--ping-interval", "0"]);
    }
    let mut proc = Proc::spawn(cmd, "stagebus broker", false);
    let addr = proc.expect("listening on");
    (proc, addr)
}

pub(crate) fn self_cmd() -> Command {
    bounded(std::env::current_exe().unwrap_or_else(|e| fail(e)))
}

fn start_publisher(addr: &str) -> Proc {
    let mut cmd = self_cmd();
    cmd.args(["publisher", addr]);
    let mut p = Proc::spawn(cmd, "publisher", false);
    p.expect("ready");
    p
}

fn caller_cmd(addr: &str, mode: &str, warm: u64, n: u64, k: u64) -> Command {
    let mut cmd = self_cmd();
    cmd.args([
        "caller",
        addr,
        mode,
        &warm.to_string(),
        &n.to_string(),
        &k.to_string(),
    ]);
    cmd
}

fn parse_list(line: &str) -> Vec<u64> {
    line.split_whitespace()
        .map(|x| {
            x.parse()
                .unwrap_or_else(|_| fail(format!("bad number '{x}'")))
        })
        .collect()
}

/// Runs a caller to the end and returns the numbers after `tag`.
fn run_caller(cmd: Command, tag: &str) -> Vec<u64> {
    let mut p = Proc::spawn(cmd, "caller", false);
    let v = parse_list(&p.expect(tag));
    p.finish();
    v
}

/// Time per operation over consecutive windows of `w` checkpoints, each
/// checkpoint standing for SLICE operations.
/// Time per operation of several processes running at once, from each
/// one's checkpoints (its start, then one every SLICE operations): only
/// while all of them run, from the last start to the first end, every
/// `lists.len()` merged checkpoints making one sample. Prints the rate
/// as `INFO <rate_key>`.
fn merge_checkpoints(lists: &[Vec<u64>], rate_key: &str) -> Vec<u64> {
    let start = lists.iter().map(|l| l[0]).max().unwrap();
    let end = lists.iter().map(|l| *l.last().unwrap()).min().unwrap();
    let mut merged: Vec<u64> = lists
        .iter()
        .flat_map(|l| l[1..].iter().copied())
        .filter(|&t| t >= start && t <= end)
        .collect();
    merged.sort_unstable();
    let ops = merged.len() as u64 * SLICE;
    let secs = (end - start) as f64 / 1e9;
    println!("INFO {rate_key} {:.0}", ops as f64 / secs);
    per_op(&merged, lists.len())
}

fn per_op(checkpoints: &[u64], w: usize) -> Vec<u64> {
    checkpoints
        .windows(w + 1)
        .step_by(w)
        .map(|c| (c[w] - c[0]) / (w as u64 * SLICE))
        .collect()
}

fn print_samples(v: &[u64]) {
    let mut s = String::from("SAMPLES");
    for x in v {
        s.push(' ');
        s.push_str(&x.to_string());
    }
    println!("{s}");
}

/// Resident set size of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| fail(format!("cannot read the broker's status: {e}")));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| fail("no VmRSS"))
}

/// `case NAME [--quick]`.
pub fn case(args: &[String]) -> ExitCode {
    let Some(name) = args.first() else {
        fail("case: which one? (sbbench list)");
    };
    let c = if args.iter().any(|a| a == "--quick") {
        &QUICK
    } else {
        &FULL
    };
    let peer = |prog: &str| bounded(env_path("SBBENCH_PEERS").join(prog));
    let samples = match name.as_str() {
        "floor.unix" | "floor.tcp" => {
            let mut cmd = peer("relay");
            let t = if name == "floor.tcp" { "tcp" } else { "unix" };
            cmd.args([t, "seq", &c.seq_warm.to_string(), &c.seq_n.to_string()]);
            run_caller(cmd, "SAMPLES")
        }
        "floor.pipe64" => {
            let mut cmd = peer("relay");
            cmd.args([
                "unix",
                "pipe",
                &c.pipe_warm.to_string(),
                &c.floor_pipe_n.to_string(),
                "64",
            ]);
            run_caller(cmd, "SAMPLES")
        }
        "floor.8x8" => {
            let mut cmd = peer("relay");
            cmd.args([
                "unix",
                "pipe",
                &(c.pipe_warm / 8).to_string(),
                &c.multi_n.to_string(),
                "8",
                "8",
            ]);
            let mut relay = Proc::spawn(cmd, "relay", false);
            let lists: Vec<Vec<u64>> = (0..8)
                .map(|_| parse_list(&relay.expect("CHECKPOINTS")))
                .collect();
            relay.finish();
            merge_checkpoints(&lists, "calls_per_s")
        }
        "dbus" => {
            let mut cmd = peer("dbus_rtt");
            cmd.args([c.seq_warm.to_string(), c.seq_n.to_string()]);
            run_caller(cmd, "SAMPLES")
        }
        "zmq.ipc" | "zmq.tcp" => {
            let mut cmd = peer("zmq_rtt");
            let t = if name == "zmq.tcp" { "tcp" } else { "ipc" };
            cmd.args([t, &c.seq_warm.to_string(), &c.seq_n.to_string()]);
            run_caller(cmd, "SAMPLES")
        }
        "rtt.unix" | "rtt.unix.noping" | "rtt.tcp" | "rtt.tls" | "rtt.request" | "embedded"
        | "embedded.fds" | "rtt.monitored" => {
            if name == "rtt.unix.noping" {
                // Inherited by the broker, publisher and caller started
                // below: each turns its pings off.
                std::env::set_var("SBBENCH_NOPING", "1");
            }
            let broker = if name == "rtt.tls" {
                start_tls_broker()
            } else {
                start_broker(name == "rtt.tcp")
            };
            let publisher = start_publisher(&broker.addr);
            // A monitor printing every frame with its args to nowhere.
            let monitor = (name == "rtt.monitored").then(|| {
                let mut cmd = bounded(env_path("SBBENCH_STAGEBUS"));
                cmd.args(["monitor", "--payload", "--broker", &broker.addr]);
                cmd.stdout(Stdio::null());
                let child = cmd
                    .spawn()
                    .unwrap_or_else(|e| fail(format!("cannot start stagebus monitor: {e}")));
                std::thread::sleep(std::time::Duration::from_millis(300));
                child
            });
            let mode = match name.as_str() {
                "rtt.request" => "request",
                "embedded" => "embedded",
                "embedded.fds" => "embedded.fds",
                _ => "seq",
            };
            let v = run_caller(
                caller_cmd(&broker.addr, mode, c.seq_warm, c.seq_n, 1),
                "SAMPLES",
            );
            if let Some(mut monitor) = monitor {
                let _ = monitor.kill();
                let _ = monitor.wait();
            }
            broker.proc.stop();
            publisher.finish();
            v
        }
        "pipe.1" | "pipe.16" | "pipe.64" | "pipe.256" | "pipe.64.tcp" => {
            let tcp = name.ends_with(".tcp");
            let k: u64 = name[5..].trim_end_matches(".tcp").parse().unwrap();
            let n = if k == 1 { c.pipe1_n } else { c.pipe_n };
            let broker = start_broker(tcp);
            let publisher = start_publisher(&broker.addr);
            let cps = run_caller(
                caller_cmd(&broker.addr, "pipe", c.pipe_warm, n, k),
                "CHECKPOINTS",
            );
            broker.proc.stop();
            publisher.finish();
            println!("INFO calls_per_s {}", rate(&cps));
            per_op(&cps[1..], 1)
        }
        "pipe.8x8" => {
            let broker = start_broker(false);
            let publisher = start_publisher(&broker.addr);
            let mut callers: Vec<Proc> = (0..8)
                .map(|_| {
                    let mut cmd = caller_cmd(&broker.addr, "pipe", c.pipe_warm / 8, c.multi_n, 8);
                    cmd.arg("--barrier");
                    Proc::spawn(cmd, "caller", true)
                })
                .collect();
            for p in &mut callers {
                p.expect("ready");
            }
            for p in &mut callers {
                p.send("go");
            }
            let lists: Vec<Vec<u64>> = callers
                .iter_mut()
                .map(|p| parse_list(&p.expect("CHECKPOINTS")))
                .collect();
            for p in callers {
                p.finish();
            }
            broker.proc.stop();
            publisher.finish();
            merge_checkpoints(&lists, "calls_per_s")
        }
        "stream" => {
            let broker = start_broker(false);
            let publisher = start_publisher(&broker.addr);
            let cps = run_caller(
                caller_cmd(&broker.addr, "stream", 10_000, c.stream_n, 1),
                "CHECKPOINTS",
            );
            broker.proc.stop();
            publisher.finish();
            println!("INFO emits_per_s {}", rate(&cps));
            // Emits arrive in bursts of a read's worth (up to 1 MiB), so
            // slices of 1000 swing between bursts and gaps: 10,000 per
            // sample.
            per_op(&cps[1..], 10)
        }
        "balance.pipe64" => {
            let broker = start_broker(false);
            let publishers: Vec<Proc> = (0..2)
                .map(|_| {
                    let mut cmd = self_cmd();
                    cmd.args(["balanced", &broker.addr]);
                    let mut p = Proc::spawn(cmd, "balanced publisher", false);
                    p.expect("ready");
                    p
                })
                .collect();
            let mut cmd = caller_cmd(&broker.addr, "pipe", c.pipe_warm, c.pipe_n, 64);
            cmd.args(["--session", "bench_bal"]);
            let cps = run_caller(cmd, "CHECKPOINTS");
            broker.proc.stop();
            for p in publishers {
                p.finish();
            }
            println!("INFO calls_per_s {}", rate(&cps));
            per_op(&cps[1..], 1)
        }
        "signal.fanout" => {
            const LISTENERS: usize = 16;
            let n = c.fanout_n;
            let broker = start_broker(false);
            let mut emitter = {
                let mut cmd = self_cmd();
                cmd.args(["emitter", &broker.addr, &n.to_string()]);
                Proc::spawn(cmd, "emitter", true)
            };
            emitter.expect("ready");
            let mut listeners: Vec<Proc> = (0..LISTENERS)
                .map(|_| {
                    let mut cmd = self_cmd();
                    cmd.args(["listener", &broker.addr, &n.to_string()]);
                    Proc::spawn(cmd, "listener", false)
                })
                .collect();
            for p in &mut listeners {
                p.expect("ready");
            }
            emitter.send("go");
            let lists: Vec<Vec<u64>> = listeners
                .iter_mut()
                .map(|p| parse_list(&p.expect("CHECKPOINTS")))
                .collect();
            for p in listeners {
                p.finish();
            }
            emitter.finish();
            broker.proc.stop();
            // Deliveries while all sixteen take them.
            merge_checkpoints(&lists, "deliveries_per_s")
        }
        "local" => local(c.local_batches),
        "local.baseline" => local_baseline(c.local_batches),
        "nats.rtt" | "nats.rtt2" | "nats.pipe64" => {
            let mut cmd = peer("nats_rtt");
            if name != "nats.pipe64" {
                let mode = if name == "nats.rtt" { "seq" } else { "seq2" };
                cmd.args([mode, &c.seq_warm.to_string(), &c.seq_n.to_string()]);
            } else {
                cmd.args([
                    "pipe",
                    &c.pipe_warm.to_string(),
                    &c.pipe_n.to_string(),
                    "64",
                ]);
            }
            run_caller(cmd, "SAMPLES")
        }
        "scaled" => scaled(c),
        "reconnect" => crate::restart::case(if c.seq_n > 5000 { 30 } else { 10 }),
        "fed.rtt" | "fed.pipe64" => {
            let pair = crate::federated::NatsPair::start();
            let (b1, a1) = federated_broker(&pair, 0);
            let (b2, a2) = federated_broker(&pair, 1);
            let publisher = start_publisher(&a2);
            // The directory's watch brings the names to broker 1.
            wait_listed(&a1, "bench_stage");
            let v = if name == "fed.rtt" {
                run_caller(caller_cmd(&a1, "seq", c.seq_warm, c.seq_n, 1), "SAMPLES")
            } else {
                let cps = run_caller(
                    caller_cmd(&a1, "pipe", c.pipe_warm, c.pipe_n / 4, 64),
                    "CHECKPOINTS",
                );
                println!("INFO calls_per_s {}", rate(&cps));
                per_op(&cps[1..], 1)
            };
            b1.stop();
            b2.stop();
            publisher.finish();
            drop(pair);
            v
        }
        "fed.stream" => {
            let pair = crate::federated::NatsPair::start();
            let (b1, a1) = federated_broker(&pair, 0);
            let (b2, a2) = federated_broker(&pair, 1);
            let publisher = start_publisher(&a2);
            wait_listed(&a1, "bench_stage");
            let cps = run_caller(
                caller_cmd(&a1, "stream", 10_000, c.stream_n, 1),
                "CHECKPOINTS",
            );
            b1.stop();
            b2.stop();
            publisher.finish();
            drop(pair);
            println!("INFO emits_per_s {}", rate(&cps));
            per_op(&cps[1..], 10)
        }
        "fed.local" => {
            // The same as rtt.tcp, on a broker that federates (another
            // broker in the federation, so heartbeats flow): the local
            // path must not pay for federation.
            let pair = crate::federated::NatsPair::start();
            let (b1, a1) = federated_broker(&pair, 0);
            let (b2, _a2) = federated_broker(&pair, 1);
            let publisher = start_publisher(&a1);
            let v = run_caller(caller_cmd(&a1, "seq", c.seq_warm, c.seq_n, 1), "SAMPLES");
            b1.stop();
            b2.stop();
            publisher.finish();
            drop(pair);
            v
        }
        other => fail(format!("unknown case '{other}' (sbbench list)")),
    };
    print_samples(&samples);
    ExitCode::SUCCESS
}

/// Operations per second over a checkpoint list whose first entry is the
/// start and whose others stand for SLICE operations each.
fn rate(cps: &[u64]) -> u64 {
    if cps.len() < 2 {
        return 0;
    }
    let ops = (cps.len() as u64 - 1) * SLICE;
    let ns = cps[cps.len() - 1] - cps[0];
    (ops as f64 * 1e9 / ns as f64) as u64
}

/// Local dispatch: batches of 1000 requests to a stage on the same loop,
/// each answered with a return; time per request+return pair.
fn local(batches: u64) -> Vec<u64> {
    const BATCH: u64 = 1000;
    let lp = EventLoop::new().unwrap();
    let stage = Stage::new(&lp, "local");
    stage.on("echo", |ctx| ctx.ret("return", ctx.args()));
    let args = payload();
    let done = Rc::new(Cell::new(0u64));
    let warm = 20;
    let mut out = Vec::with_capacity(batches as usize);
    let mut held: Vec<Request> = Vec::with_capacity(BATCH as usize);
    for b in 0..warm + batches {
        let t0 = now_ns();
        done.set(0);
        for _ in 0..BATCH {
            let d = done.clone();
            let r = Request::to(&stage, "echo")
                .args(args.clone())
                .on("return", move |_| {
                    d.set(d.get() + 1);
                    Ok(())
                })
                .send()
                .unwrap_or_else(|e| fail(format!("send: {e}")));
            held.push(r);
        }
        if !lp
            .run_until(Duration::from_secs(10), || done.get() == BATCH)
            .unwrap()
        {
            fail("local requests did not return");
        }
        held.clear();
        if b >= warm {
            out.push((now_ns() - t0) / BATCH);
        }
    }
    let rate = 1e9 / (out.iter().sum::<u64>() as f64 / out.len() as f64);
    println!("INFO pairs_per_s {rate:.0}");
    out
}

/// The baseline of `local`: the least an in-process request and its
/// answer can cost through boxed callbacks, with nothing of stagebus.
/// Per pair: a boxed response callback is queued with a copy of the
/// 64-byte payload (as `local` queues a request with its args), then a
/// turn takes each from the queue, calls the boxed handler, which makes
/// the answer (a copy of the payload), and calls the response callback
/// with it. Batches of 1000 as in `local`; time per pair.
fn local_baseline(batches: u64) -> Vec<u64> {
    use std::collections::VecDeque;
    const BATCH: u64 = 1000;
    type Respond = Box<dyn FnOnce(Vec<u8>)>;
    type Handler = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let handler: Handler = Box::new(|args| args.to_vec());
    let payload = vec![b'x'; 64];
    let done = Rc::new(Cell::new(0u64));
    let mut queue: VecDeque<(Vec<u8>, Respond)> = VecDeque::with_capacity(BATCH as usize);
    let warm = 20;
    let mut out = Vec::with_capacity(batches as usize);
    for b in 0..warm + batches {
        let t0 = now_ns();
        done.set(0);
        for _ in 0..BATCH {
            let d = done.clone();
            let respond: Respond = Box::new(move |answer| {
                std::hint::black_box(answer);
                d.set(d.get() + 1);
            });
            queue.push_back((std::hint::black_box(&payload).clone(), respond));
        }
        while let Some((args, respond)) = queue.pop_front() {
            respond(std::hint::black_box(&handler)(&args));
        }
        if done.get() != BATCH {
            fail("baseline pairs did not complete");
        }
        if b >= warm {
            out.push((now_ns() - t0) / BATCH);
        }
    }
    let rate = 1e9 / (out.iter().sum::<u64>() as f64 / out.len() as f64);
    println!("INFO pairs_per_s {rate:.0}");
    out
}

/// The scaling case: the sequential round trip while the broker holds
/// 100,000 sessions and 100,000 pending calls of other clients (and the
/// idle connections); the broker's RSS before and after each load gives
/// the memory per idle connection, per session and per pending call.
/// Idle connections are measured first, on the fresh broker: later, the
/// heap holds memory freed by the growth of the big tables, which small
/// allocations reuse without raising the RSS.
fn scaled(c: &Counts) -> Vec<u64> {
    let broker = start_broker(false);
    let pid = broker.proc.pid();
    let publisher = start_publisher(&broker.addr);
    let mut cmd = self_cmd();
    cmd.args(["loader", &broker.addr]);
    let mut loader = Proc::spawn(cmd, "loader", true);
    let settle = || std::thread::sleep(Duration::from_millis(50));
    settle();
    let rss_fresh = rss(pid);
    // Unauthenticated connections first, under the broker's cap.
    let raw = c.idle_conns.min(1000);
    loader.send(&format!("raw {raw}"));
    loader.expect("ok");
    settle();
    let rss_raw = rss(pid);
    loader.send("unraw");
    loader.expect("ok");
    settle();
    let rss0 = rss(pid);
    loader.send(&format!("conns {}", c.idle_conns));
    loader.expect("ok");
    settle();
    let rss1 = rss(pid);
    loader.send(&format!("sessions {SCALE_SESSIONS}"));
    loader.expect("ok");
    settle();
    let rss2 = rss(pid);
    loader.send(&format!("pending {SCALE_PENDING}"));
    loader.expect("ok");
    settle();
    let rss3 = rss(pid);
    let v = run_caller(
        caller_cmd(&broker.addr, "seq", c.seq_warm, c.seq_n, 1),
        "SAMPLES",
    );
    loader.send("quit");
    loader.finish();
    broker.proc.stop();
    publisher.finish();
    let per = |a: u64, b: u64, n: u64| b.saturating_sub(a) as f64 / n as f64;
    println!("INFO rss_empty_bytes {rss_fresh}");
    println!(
        "INFO bytes_per_unauthenticated_conn {:.0}",
        per(rss_fresh, rss_raw, raw)
    );
    println!("INFO rss_loaded_bytes {rss3}");
    println!(
        "INFO bytes_per_idle_conn {:.0}",
        per(rss0, rss1, c.idle_conns)
    );
    println!(
        "INFO bytes_per_session {:.0}",
        per(rss1, rss2, SCALE_SESSIONS)
    );
    println!(
        "INFO bytes_per_pending {:.0}",
        per(rss2, rss3, SCALE_PENDING)
    );
    v
}
