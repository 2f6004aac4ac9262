//! The `stagebus` binary, run as a user runs it: a broker in a child
//! process, `list` against it, signals, exit statuses and messages.
//!
//! Every wait is bounded by [`LIMIT`], readiness is awaited by reading the
//! broker's `listening on …` line (never by sleeping), and every child is
//! killed when its guard drops, so a failing test leaves no process behind.

mod support;

use stagebus::{Client, ClientConfig, EventLoop};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};
use support::Proc;

/// The longest any single step may take before the test fails.
const LIMIT: Duration = Duration::from_secs(20);

fn stagebus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stagebus"))
}

/// `stagebus args…` as a child, read line by line.
fn spawn(args: &[&str]) -> Proc {
    Proc::spawn(
        &format!("stagebus {}", args.join(" ")),
        stagebus().args(args),
    )
}

/// What a short-lived command printed.
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `stagebus args…` to completion (bounded).
#[track_caller]
fn run(args: &[&str]) -> Output {
    let mut p = spawn(args);
    let mut stdout = String::new();
    while let Some(line) = p.next_line() {
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let (status, stderr) = p.wait();
    Output {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Starts a broker with `args` and returns it with the addresses it
/// printed (as many as it was given `--listen`s).
#[track_caller]
fn broker(args: &[&str]) -> (Proc, Vec<String>) {
    let mut all = vec!["broker"];
    all.extend_from_slice(args);
    let mut p = spawn(&all);
    let count = args.iter().filter(|a| **a == "--listen").count();
    let addresses = (0..count)
        .map(|_| {
            let line = p.next_line().expect("the broker prints its addresses");
            line.strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("unexpected line {line:?}"))
                .to_string()
        })
        .collect();
    (p, addresses)
}

fn tcp_broker(extra: &[&str]) -> (Proc, String) {
    let mut args = vec!["--listen", "tcp://127.0.0.1:0"];
    args.extend_from_slice(extra);
    let (p, mut addresses) = broker(&args);
    (p, addresses.remove(0))
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("stagebus-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Connects to `address` on `lp` and publishes every `(name, methods)`,
/// driving the test thread's loop until the broker has accepted them.
#[track_caller]
fn publish(lp: &EventLoop, address: &str, sessions: &[(&str, &[&str])]) -> Client {
    let client = Client::connect(lp, &address.parse().unwrap(), ClientConfig::default());
    let outcomes = Rc::new(RefCell::new(Vec::new()));
    for (name, methods) in sessions {
        let outcomes = outcomes.clone();
        client.publish(
            name,
            methods,
            |_, _| {},
            move |r| outcomes.borrow_mut().push(r),
        );
    }
    let all_done = lp
        .run_until(LIMIT, || outcomes.borrow().len() == sessions.len())
        .unwrap();
    assert!(all_done, "the broker did not answer the publishes");
    for outcome in outcomes.borrow().iter() {
        outcome.as_ref().expect("publish succeeds");
    }
    client
}

#[test]
fn broker_prints_its_real_port_and_exits_0_on_sigint() {
    let (mut p, address) = tcp_broker(&[]);
    let port: u16 = address
        .strip_prefix("tcp://127.0.0.1:")
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("not a tcp address: {address}"));
    assert_ne!(port, 0);
    p.signal(libc::SIGINT);
    let (status, stderr) = p.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn list_prints_published_sessions_as_text_and_json() {
    let (_broker, address) = tcp_broker(&[]);

    let empty = run(&["list", "--broker", &address]);
    assert_eq!(empty.code, Some(0), "stderr: {}", empty.stderr);
    assert_eq!(empty.stdout, "");
    let empty = run(&["list", "--broker", &address, "--json"]);
    assert_eq!(empty.code, Some(0), "stderr: {}", empty.stderr);
    assert_eq!(empty.stdout, "[]\n");

    let lp = EventLoop::new().unwrap();
    let _publisher = publish(
        &lp,
        &address,
        &[("Foo", &["m1", "m2"]), ("we\"ird\\name", &["x"])],
    );

    let text = run(&["list", "--broker", &address]);
    assert_eq!(text.code, Some(0), "stderr: {}", text.stderr);
    assert_eq!(text.stdout, "Foo m1 m2\nwe\"ird\\name x\n");

    let json = run(&["list", "--json", "--broker", &address]);
    assert_eq!(json.code, Some(0), "stderr: {}", json.stderr);
    assert_eq!(
        json.stdout,
        r#"[{"name":"Foo","methods":["m1","m2"]},{"name":"we\"ird\\name","methods":["x"]}]"#
            .to_string()
            + "\n"
    );
}

#[test]
fn unix_broker_serves_and_removes_its_socket_on_sigterm() {
    let dir = TempDir::new("unix");
    let socket = dir.path().join("broker.sock");
    let wanted = format!("unix:{}", socket.display());
    let (mut p, addresses) = broker(&["--listen", &wanted, "--listen", "tcp://127.0.0.1:0"]);
    assert_eq!(addresses[0], wanted);
    assert!(
        addresses[1].starts_with("tcp://127.0.0.1:"),
        "{addresses:?}"
    );
    assert!(socket.exists(), "the socket file exists while it runs");

    let lp = EventLoop::new().unwrap();
    let _publisher = publish(&lp, &wanted, &[("Bar", &["go"])]);
    // Both addresses reach the same broker.
    for address in &addresses {
        let out = run(&["list", "--broker", address]);
        assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
        assert_eq!(out.stdout, "Bar go\n");
    }

    // SIGTERM is read by the loop itself: no thread waits for it (a
    // second thread would cost every system call of the broker).
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
    let threads = status.lines().find(|l| l.starts_with("Threads:"));
    assert_eq!(
        threads
            .map(str::split_whitespace)
            .and_then(|mut w| w.nth(1)),
        Some("1")
    );

    p.signal(libc::SIGTERM);
    let (status, stderr) = p.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(!socket.exists(), "the socket file is removed on exit");
}

#[test]
fn bad_command_lines_exit_2_with_usage_on_stderr() {
    let cases: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["broker"],
        &["broker", "--listen"],
        &["broker", "--listen", "bogus://x"],
        &["broker", "--listen", "tcp://127.0.0.1:0", "--nope"],
        &["list"],
        &["list", "--broker", "tcp://127.0.0.1:1", "--nope"],
        &["list", "--broker", "tcp://127.0.0.1:1", "extra"],
        &["list", "--broker", "tcp://127.0.0.1:1", "--timeout", "soon"],
        // Federation: an id needs servers and servers an id; both checked.
        &[
            "broker",
            "--listen",
            "tcp://127.0.0.1:0",
            "--federate",
            "nats://127.0.0.1:1",
        ],
        &[
            "broker",
            "--listen",
            "tcp://127.0.0.1:0",
            "--broker-id",
            "b1",
        ],
        &[
            "broker",
            "--listen",
            "tcp://127.0.0.1:0",
            "--federate",
            "nats://127.0.0.1:1",
            "--broker-id",
            "b 1",
        ],
        &[
            "broker",
            "--listen",
            "tcp://127.0.0.1:0",
            "--federate",
            "wss://127.0.0.1:1",
            "--broker-id",
            "b1",
        ],
        &[
            "broker",
            "--listen",
            "tcp://127.0.0.1:0",
            "--federate",
            "tls://127.0.0.1:1",
            "--broker-id",
            "b1",
            "--nats-tls-key",
            "fed.key",
        ],
        &[
            "broker",
            "--listen",
            "tcp://127.0.0.1:0",
            "--federate",
            "nats://h:1",
            "--broker-id",
            "b1",
            "--nats-user",
            "u",
        ],
    ];
    for args in cases {
        let out = run(args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("stagebus: "),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("usage: stagebus"), "{args:?}");
        assert_eq!(out.stdout, "", "{args:?}");
    }
    let out = run(&["broker", "--listen", "bogus://x"]);
    assert!(
        out.stderr.contains("bad address 'bogus://x'"),
        "{}",
        out.stderr
    );
}

#[test]
fn help_and_version_go_to_stdout() {
    for args in [&["--help"][..], &["help"], &["-h"]] {
        let out = run(args);
        assert_eq!(out.code, Some(0), "{args:?}");
        assert!(out.stdout.contains("usage: stagebus"), "{args:?}");
        assert!(out.stdout.contains("stagebus list --broker ADDR"));
    }
    let out = run(&["list", "--help"]);
    assert_eq!(out.code, Some(0));
    assert!(out.stdout.starts_with("stagebus list --broker ADDR"));
    let out = run(&["--version"]);
    assert_eq!(out.code, Some(0));
    assert_eq!(
        out.stdout,
        format!("stagebus {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn list_against_a_closed_port_or_absent_socket_exits_1() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = TempDir::new("absent");
    let absent = format!("unix:{}", dir.path().join("nobody.sock").display());
    for address in [format!("tcp://127.0.0.1:{port}"), absent] {
        let out = run(&["list", "--broker", &address]);
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        // The connect error itself, not a generic "connection closed".
        assert!(
            out.stderr
                .starts_with(&format!("stagebus: io: cannot connect to {address}")),
            "{}",
            out.stderr
        );
        assert_eq!(out.stdout, "");
    }
}

#[test]
fn list_gives_up_on_a_silent_peer_after_its_timeout() {
    // The kernel accepts the connection into the backlog; nobody answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    let out = run(&["list", "--broker", &address, "--timeout", "0.2"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.starts_with("stagebus: timeout"),
        "{}",
        out.stderr
    );
    assert!(started.elapsed() < LIMIT);
}

#[test]
fn second_broker_on_a_taken_port_exits_1() {
    let (_first, address) = tcp_broker(&[]);
    let out = run(&["broker", "--listen", &address]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.starts_with("stagebus: io: cannot listen on"),
        "{}",
        out.stderr
    );
}

#[test]
fn broker_with_a_token_refuses_list_without_it() {
    let (_broker, address) = tcp_broker(&["--token", "s3cret"]);

    for wrong in [&[][..], &["--token", "guess"]] {
        let mut args = vec!["list", "--broker", &address];
        args.extend_from_slice(wrong);
        let out = run(&args);
        assert_eq!(out.code, Some(1), "{wrong:?}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("stagebus: refused"),
            "{}",
            out.stderr
        );
        assert_eq!(out.stdout, "");
    }

    let out = run(&["list", "--broker", &address, "--token", "s3cret"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "");
}

/// `stagebus serve` against a broker, answered by `stagebus call`.
#[test]
fn call_against_serve_prints_one_json_line_per_response() {
    let (_broker, address) = tcp_broker(&[]);
    let mut service = spawn(&["serve", "--broker", &address, "--name", "Demo"]);
    let ready = service.next_line().expect("serve says it is serving");
    assert!(ready.starts_with("serving Demo on "), "{ready}");

    let out = run(&[
        "call", "--broker", &address, "Demo", "echo", "text=hi", "n=2",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "{\"type\":\"return\",\"args\":{\"n\":2,\"text\":\"hi\"}}\n"
    );

    let out = run(&["call", "--broker", &address, "Demo", "count", "n=2"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "{\"type\":\"tick\",\"args\":{\"i\":1}}\n\
         {\"type\":\"tick\",\"args\":{\"i\":2}}\n\
         {\"type\":\"return\",\"args\":{\"count\":2}}\n"
    );

    let out = run(&[
        "call",
        "--broker",
        &address,
        "--recall",
        "answer name=Rocco",
        "Demo",
        "ask",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "{\"type\":\"question\",\"args\":{\"text\":\"What is your name?\"}}\n\
         {\"type\":\"return\",\"args\":{\"greeting\":\"Hello, Rocco!\"}}\n"
    );

    // A slow call past its timeout is cancelled; the service says so.
    let out = run(&[
        "call",
        "--broker",
        &address,
        "--timeout",
        "0.2",
        "Demo",
        "slow",
    ]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.starts_with("stagebus: timeout:"),
        "{}",
        out.stderr
    );
    assert_eq!(
        service.next_line().as_deref(),
        Some("slow: cancelled by the caller, timer stopped")
    );

    let out = run(&["call", "--broker", &address, "Demo", "nope"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("no_such_method"), "{}", out.stderr);
    let out = run(&["call", "--broker", &address, "Nobody", "echo"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("no_such_session: Session 'Nobody' doesn't exist"),
        "{}",
        out.stderr
    );

    service.signal(libc::SIGTERM);
    let (status, stderr) = service.wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

/// `stagebus call --wait` started before `stagebus serve`: the broker
/// holds its subscribe until the service publishes, then the call runs.
/// A wait that expires is an error naming the session.
#[test]
fn call_with_wait_started_before_serve_succeeds() {
    let (_broker, address) = tcp_broker(&[]);
    let out = run(&[
        "call", "--broker", &address, "--wait", "0.2", "Demo", "echo",
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("Session 'Demo' was not published within 200 ms"),
        "{}",
        out.stderr
    );

    let mut caller = spawn(&[
        "call", "--broker", &address, "--wait", "5", "Demo", "echo", "text=hi",
    ]);
    let mut service = spawn(&["serve", "--broker", &address, "--name", "Demo"]);
    let ready = service.next_line().expect("serve says it is serving");
    assert!(ready.starts_with("serving Demo on "), "{ready}");
    assert_eq!(
        caller.next_line().as_deref(),
        Some("{\"type\":\"return\",\"args\":{\"text\":\"hi\"}}")
    );
    let (status, stderr) = caller.wait();
    assert_eq!(status.code(), Some(0), "{stderr}");

    let out = run(&[
        "call", "--broker", &address, "--wait", "soon", "Demo", "echo",
    ]);
    assert_eq!(out.code, Some(2));
    assert!(out
        .stderr
        .contains("--wait wants a positive number of seconds"));
}

#[test]
fn call_rejects_bad_arguments_with_usage() {
    for args in [
        &["call", "--broker", "tcp://127.0.0.1:1", "Demo"][..],
        &[
            "call",
            "--broker",
            "tcp://127.0.0.1:1",
            "Demo",
            "echo",
            "novalue",
        ][..],
        &[
            "call",
            "--broker",
            "tcp://127.0.0.1:1",
            "Demo",
            "echo",
            "=x",
        ][..],
        &["serve", "--broker", "tcp://127.0.0.1:1"][..],
        &[
            "serve",
            "--broker",
            "tcp://127.0.0.1:1",
            "--name",
            "D",
            "--reconnect-max-delay",
            "0",
        ][..],
        &[
            "serve",
            "--broker",
            "tcp://127.0.0.1:1",
            "--name",
            "D",
            "--no-reconnect",
            "--reconnect-max-delay",
            "2",
        ][..],
        &["demo", "extra"][..],
    ] {
        let out = run(args);
        assert_eq!(out.code, Some(2), "{args:?}");
        assert!(out.stderr.contains("usage:"), "{args:?}: {}", out.stderr);
    }
}

/// `serve` reconnects by default (tests/reconnect.rs); `--no-reconnect`
/// makes it exit when the broker goes.
#[test]
fn serve_no_reconnect_exits_1_when_its_broker_goes_away() {
    let (mut broker, address) = tcp_broker(&[]);
    let mut service = spawn(&[
        "serve",
        "--broker",
        &address,
        "--name",
        "Demo",
        "--no-reconnect",
    ]);
    assert!(service.next_line().unwrap().starts_with("serving Demo"));
    broker.signal(libc::SIGTERM);
    let _ = broker.wait();
    let (status, stderr) = service.wait();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lost the broker"), "{stderr}");
}

#[test]
fn demo_prints_a_transcript_and_exits_0() {
    let out = run(&["demo"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for expected in [
        "caller: <- question {\"text\":\"What is your name?\"}",
        "caller: recall answer {\"name\":\"POE\"}",
        "caller: <- return {\"greeting\":\"Hello, POE!\"}",
        "service: slow: cancelled by the caller, timer stopped",
        "caller: <- error no_such_method",
        "done",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            out.stdout
        );
    }
}

/// `--json-args` sends what words cannot (lists, maps, bytes), words add
/// to it, and what `echo` answers prints back in the same JSON form.
#[test]
fn call_sends_lists_maps_and_bytes_as_json_args() {
    let (_broker, address) = tcp_broker(&[]);
    let mut service = spawn(&["serve", "--broker", &address, "--name", "Demo"]);
    assert!(service.next_line().unwrap().starts_with("serving Demo"));

    let json = r#"{"xs":[1,2.5,"three",null,[true]],"m":{"k":"v","n":{"deep":-7}},"b":{"$bytes":"00ff7F"}}"#;
    let out = run(&[
        "call",
        "--broker",
        &address,
        "--json-args",
        json,
        "Demo",
        "echo",
        "w=word",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "{\"type\":\"return\",\"args\":{\"b\":{\"$bytes\":\"00ff7f\"},\
         \"m\":{\"k\":\"v\",\"n\":{\"deep\":-7}},\"w\":\"word\",\
         \"xs\":[1,2.5,\"three\",null,[true]]}}\n"
    );

    // Bad JSON, a non-object, bad bytes, a name given twice: usage errors.
    for (json, why) in [
        ("{\"a\":", "bad JSON"),
        ("[1]", "must be a JSON object"),
        ("{\"b\":{\"$bytes\":\"f\"}}", "hex digits"),
        ("{\"w\":1}", "'w' is given twice"),
    ] {
        let out = run(&[
            "call",
            "--broker",
            &address,
            "--json-args",
            json,
            "Demo",
            "echo",
            "w=2",
        ]);
        assert_eq!(out.code, Some(2), "{json}: {}", out.stderr);
        assert!(out.stderr.contains(why), "{json}: {}", out.stderr);
        assert!(out.stderr.contains("usage: stagebus"), "{}", out.stderr);
    }
}

#[test]
fn stats_prints_the_brokers_report_as_text_json_and_prometheus() {
    let (_broker, address) = tcp_broker(&[]);
    let mut service = spawn(&["serve", "--broker", &address, "--name", "Demo"]);
    let ready = service.next_line().expect("serve says it is serving");
    assert!(ready.starts_with("serving Demo on "), "{ready}");
    for _ in 0..2 {
        let out = run(&["call", "--broker", &address, "Demo", "echo", "text=hi"]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    }
    let out = run(&["call", "--broker", &address, "Demo", "nope"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);

    let json = run(&["stats", "--broker", &address, "--json"]);
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("one JSON object");
    assert_eq!(report["totals"]["calls"], 2, "{report}");
    assert_eq!(report["errors"]["no_such_method"], 1, "{report}");
    assert_eq!(report["sessions"][0]["name"], "Demo", "{report}");
    assert_eq!(report["sessions"][0]["calls"], 2, "{report}");
    // serve and this stats client.
    assert_eq!(report["totals"]["connections"], 2, "{report}");

    let prom = run(&["stats", "--broker", &address, "--prometheus"]);
    assert_eq!(prom.code, Some(0), "{}", prom.stderr);
    assert!(
        prom.stdout.contains("\nstagebus_calls_total 2\n"),
        "{}",
        prom.stdout
    );
    assert!(
        prom.stdout
            .contains("stagebus_errors_total{code=\"no_such_method\"} 1\n"),
        "{}",
        prom.stdout
    );

    let text = run(&["stats", "--broker", &address]);
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    assert!(
        text.stdout.contains("calls 2 (0 in flight)"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("session Demo"), "{}", text.stdout);

    let both = run(&["stats", "--broker", &address, "--json", "--prometheus"]);
    assert_eq!(both.code, Some(2), "{}", both.stderr);
}

#[test]
fn broker_logs_refusals_as_text_or_json_at_the_level_asked() {
    use std::io::Write as _;
    for (format, level) in [("json", "debug"), ("text", "warn")] {
        let (mut p, address) = tcp_broker(&["--log-format", format, "--log-level", level]);
        let port = address.rsplit(':').next().unwrap();
        let mut junk = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        junk.write_all(&[12, 0, 0, 0]).unwrap();
        junk.write_all(b"not a hello!").unwrap();
        // The broker answers with a refusal and closes: read to the end.
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut junk, &mut rest);
        p.signal(libc::SIGTERM);
        let (status, stderr) = p.wait();
        assert_eq!(status.code(), Some(0), "stderr: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        if format == "json" {
            let records: Vec<serde_json::Value> = lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
                .collect();
            let refused = records
                .iter()
                .find(|r| r["fields"]["reason"] == "protocol")
                .unwrap_or_else(|| panic!("no protocol refusal in {stderr}"));
            assert_eq!(refused["level"], "warn");
            assert_eq!(refused["target"], "stagebus::broker");
            assert!(
                records.iter().any(|r| r["fields"]["peer"].is_string()),
                "debug shows the accept with the peer: {stderr}"
            );
        } else {
            let refused = lines
                .iter()
                .find(|l| l.contains("reason=protocol"))
                .unwrap_or_else(|| panic!("no protocol refusal in {stderr}"));
            assert!(refused.contains(" WARN stagebus::broker "), "{refused}");
            assert!(!stderr.contains("peer="), "warn hides the accept: {stderr}");
        }
    }
    let out = run(&[
        "broker",
        "--listen",
        "tcp://127.0.0.1:0",
        "--log-level",
        "loud",
    ]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--log-level"), "{}", out.stderr);
}

#[test]
fn monitor_prints_a_calls_frames_as_json_lines_until_sigint() {
    let (_broker, address) = tcp_broker(&[]);
    let mut service = spawn(&["serve", "--broker", &address, "--name", "Demo"]);
    let ready = service.next_line().expect("serve says it is serving");
    assert!(ready.starts_with("serving Demo on "), "{ready}");
    let mut monitor = spawn(&[
        "monitor",
        "--broker",
        &address,
        "--json",
        "--payload",
        "--session",
        "Demo",
    ]);
    let start: serde_json::Value =
        serde_json::from_str(&monitor.next_line().expect("the start line")).unwrap();
    assert_eq!(start["kind"], "monitoring", "{start}");
    assert_eq!(start["session"], "Demo", "{start}");
    let out = run(&["call", "--broker", &address, "Demo", "echo", "text=hi"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // `call` subscribes first, which is traffic of the session too.
    let mut lines = Vec::new();
    let mut events: Vec<serde_json::Value> = Vec::new();
    while events.len() < 2 {
        let line = monitor.next_line().expect("a line per frame");
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        lines.push(line);
        if matches!(event["kind"].as_str(), Some("deliver" | "result")) {
            events.push(event);
        }
    }
    assert_eq!(events.len(), 2, "{lines:?}");
    assert_eq!(events[0]["kind"], "deliver", "{lines:?}");
    assert_eq!(events[0]["session"], "Demo");
    assert_eq!(events[0]["name"], "echo");
    assert_eq!(events[0]["args"]["text"], "hi");
    assert_eq!(events[1]["kind"], "result", "{lines:?}");
    assert_eq!(events[1]["from"], events[0]["to"]);
    monitor.signal(libc::SIGINT);
    let (status, stderr) = monitor.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn broker_reads_a_config_file_that_flags_override_and_rejects_a_misspelt_key() {
    let dir = TempDir::new("config");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = [\"tcp://127.0.0.1:0\"]\n\
         token = \"from-file\"\n\
         [limits]\n\
         max-connections = 3\n\
         [log]\n\
         level = \"debug\"\n\
         format = \"json\"\n",
    )
    .unwrap();
    let checked = run(&["broker", "--check-config", good.to_str().unwrap()]);
    assert_eq!(checked.code, Some(0), "{}", checked.stderr);
    assert_eq!(checked.stdout, format!("{}: ok\n", good.display()));

    // The file's token and limit apply; its JSON logging at debug too.
    let (mut p, addresses) = broker(&[
        "--config",
        good.to_str().unwrap(),
        "--listen",
        "tcp://127.0.0.1:0",
    ]);
    let address = &addresses[0];
    let refused = run(&["list", "--broker", address]);
    assert_eq!(
        refused.code,
        Some(1),
        "the file's token is required: {}",
        refused.stdout
    );
    let listed = run(&["list", "--broker", address, "--token", "from-file"]);
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    p.signal(libc::SIGTERM);
    let (status, stderr) = p.wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let first = stderr.lines().next().expect("debug logging from the file");
    let record: serde_json::Value = serde_json::from_str(first).expect("JSON from the file");
    assert_eq!(record["target"], "stagebus::broker", "{first}");

    // A flag beats the file: text logging at warn shows no accepts.
    let (mut p, addresses) = broker(&[
        "--config",
        good.to_str().unwrap(),
        "--listen",
        "tcp://127.0.0.1:0",
        "--log-format",
        "text",
        "--log-level",
        "warn",
        "--token",
        "from-flag",
    ]);
    let listed = run(&["list", "--broker", &addresses[0], "--token", "from-flag"]);
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    p.signal(libc::SIGTERM);
    let (_, stderr) = p.wait();
    assert!(!stderr.contains("peer="), "{stderr}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "listen = [\"tcp://127.0.0.1:0\"]\n[limits]\nmax-conections = 3\n",
    )
    .unwrap();
    for args in [
        vec!["broker", "--check-config", bad.to_str().unwrap()],
        vec!["broker", "--config", bad.to_str().unwrap()],
    ] {
        let out = run(&args);
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.stdout);
        assert!(out.stderr.contains("line 3"), "{}", out.stderr);
        assert!(out.stderr.contains("max-conections"), "{}", out.stderr);
    }
    let missing = run(&["broker", "--config", "/nonexistent/stagebus.toml"]);
    assert_eq!(missing.code, Some(1), "{}", missing.stderr);
    let nothing = run(&["broker"]);
    assert_eq!(nothing.code, Some(2), "{}", nothing.stderr);
}

/// `--hb-interval` / `--hb-timeout` and the config file's `hb-interval`
/// / `hb-timeout` take durations (`0.5`, `500ms`, `2s`); a zero, a
/// negative, a unit it does not know or a timeout not longer than the
/// interval is an error naming the flag (exit 2) or the key and its line
/// (exit 1); the flags need federation.
#[test]
fn heartbeat_flags_and_keys_are_checked_naming_the_flag_or_key() {
    let fed = [
        "broker",
        "--listen",
        "tcp://127.0.0.1:0",
        "--federate",
        "nats://127.0.0.1:1",
        "--broker-id",
        "b1",
    ];
    for (more, says) in [
        (&["--hb-interval", "0"][..], "--hb-interval '0'"),
        (&["--hb-timeout", "-2s"], "--hb-timeout '-2s'"),
        (&["--hb-interval", "1h"], "unit 'h'"),
        (
            &["--hb-interval", "2s", "--hb-timeout", "1500ms"],
            "--hb-timeout (1.5s) must be longer than --hb-interval (2s)",
        ),
        (&["--hb-interval", "3"], "--hb-timeout (2s) must be longer"),
    ] {
        let args: Vec<&str> = fed.iter().chain(more).copied().collect();
        let out = run(&args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    for flag in [&["--hb-timeout", "5s"][..], &["--nats-sys-events"]] {
        let args: Vec<&str> = ["broker", "--listen", "tcp://127.0.0.1:0"]
            .iter()
            .chain(flag)
            .copied()
            .collect();
        let out = run(&args);
        assert_eq!(out.code, Some(2), "{}", out.stderr);
        assert!(out.stderr.contains("need"), "{}", out.stderr);
        assert!(out.stderr.contains("--federate"), "{}", out.stderr);
    }

    let dir = TempDir::new("hbconfig");
    let table = "[federation]\nservers = [\"nats://127.0.0.1:1\"]\nbroker-id = \"b1\"\n";
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!("{table}hb-interval = \"100ms\"\nhb-timeout = 30\nnats-sys-events = true\n"),
    )
    .unwrap();
    let checked = run(&["broker", "--check-config", good.to_str().unwrap()]);
    assert_eq!(checked.code, Some(0), "{}", checked.stderr);
    for (keys, says) in [
        ("hb-interval = 0\n", "hb-interval '0'"),
        ("hb-timeout = \"soon\"\n", "hb-timeout 'soon'"),
        (
            "hb-timeout = \"100ms\"\n",
            "hb-timeout (100ms) must be longer than hb-interval (500ms)",
        ),
        ("hb-beat = 1\n", "hb-beat"),
    ] {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, format!("{table}{keys}")).unwrap();
        let out = run(&["broker", "--check-config", bad.to_str().unwrap()]);
        assert_eq!(out.code, Some(1), "{keys}: {}", out.stdout);
        assert!(
            out.stderr.contains(says) && out.stderr.contains("line"),
            "{keys}: {}",
            out.stderr
        );
    }
}
