//! The Perl binding (`bindings/perl`), tested from Perl and run from here.
//!
//! * `prove -I bindings/perl/lib bindings/perl/t`: every `.t` file, with
//!   the library this test built (`STAGEBUS_LIB`).
//! * `bindings/perl/t/03-all-call-types-anyevent.t` once more with
//!   AnyEvent's pure-Perl backend (`PERL_ANYEVENT_MODEL=Perl`), whatever
//!   backend AnyEvent would pick by itself.
//! * `examples/perl/`: `broker.pl` runs as a child on
//!   `tcp://127.0.0.1:0` (its printed address is read back), `service.pl`
//!   (under POE) publishes against it (its "ready" is awaited),
//!   `caller.pl` (under AnyEvent) runs its transcript (exit 0 and the key
//!   lines are checked), then the service and the broker are stopped with
//!   SIGTERM and must exit 0. A caller started before the service must
//!   fail.
//!
//! Set-up: `cargo build --lib` (the test's profile) into its own target
//! dir, `<target>/perl-lib`, so that the library is fresh without waiting
//! for the build lock of the outer `cargo test`; the binding loads it by
//! absolute path from `STAGEBUS_LIB` (`libstagebus.so`, whatever SONAME
//! it records).
//!
//! Perl modules (Debian): `libffi-platypus-perl`, `libpoe-perl`,
//! `libanyevent-perl` (and `perl` for `prove`). Without them every test
//! here is skipped with a message naming the packages; `scripts/test.sh`
//! installs them.
//!
//! Every wait is bounded and every child is killed when its test fails
//! (a guard).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The longest `prove` may run (the 100k-request leak check included).
const PROVE_LIMIT: Duration = Duration::from_secs(600);
/// The longest an example may run, or a line may take to appear.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// The longest the library build may take.
const BUILD_LIMIT: Duration = Duration::from_secs(900);

/// The Perl modules the binding and its tests need, and their packages.
const MODULES: [(&str, &str); 3] = [
    ("FFI::Platypus", "libffi-platypus-perl"),
    ("POE", "libpoe-perl"),
    ("AnyEvent", "libanyevent-perl"),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------
// Running commands with bounded waits

/// Runs a command to completion (bounded by `limit`, killed after it);
/// its status, stdout and stderr.
fn run_bounded(cmd: &mut Command, limit: Duration) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < limit => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{cmd:?} ran longer than {limit:?} and was killed");
            }
        }
    };
    (
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// A child process that is killed (and reaped) when dropped, with its
/// stdout read line by line and its stderr collected, on threads.
struct Proc {
    name: String,
    child: Child,
    lines: Receiver<String>,
    /// Every stdout line received so far.
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&text);
            }
        });
        Proc {
            name: name.to_string(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// What it printed so far, for failure messages.
    fn transcript(&self) -> String {
        let stderr = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        format!(
            "--- {} stdout\n{}\n--- {} stderr\n{}",
            self.name,
            self.seen.join("\n"),
            self.name,
            stderr
        )
    }

    /// Waits (bounded) for a stdout line that `wanted` accepts; returns it.
    fn wait_line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + RUN_LIMIT;
        if let Some(line) = self.seen.iter().find(|l| wanted(l)) {
            return line.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} printed no {what} within {RUN_LIMIT:?}\n{}",
                    self.name,
                    self.transcript()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{} closed its output before printing {what} ({:?})\n{}",
                    self.name,
                    self.child.try_wait(),
                    self.transcript()
                ),
            }
        }
    }

    /// Waits (bounded) for the process to exit, then for the rest of its
    /// output.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + RUN_LIMIT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => panic!(
                    "{} ran longer than {RUN_LIMIT:?}\n{}",
                    self.name,
                    self.transcript()
                ),
                Err(e) => panic!("cannot wait for {}: {e}", self.name),
            }
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.max(Duration::from_millis(100)))
            {
                Ok(line) => self.seen.push(line),
                Err(_) => break,
            }
        }
        status
    }

    /// Sends SIGTERM.
    fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) on our own child, which is not reaped yet (it
        // is reaped only by wait_exit or Drop), so the pid is its own.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "cannot signal {}", self.name);
    }

    fn output(&self) -> String {
        self.seen.join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------
// Set-up: Perl and its modules, the library

/// Why the Perl tests cannot run here (a missing module), if they cannot.
fn missing_perl() -> Option<String> {
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    MISSING
        .get_or_init(|| {
            let mut missing = Vec::new();
            for (module, package) in MODULES {
                let ok = Command::new("perl")
                    .arg(format!("-M{module}"))
                    .args(["-e", "1"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    missing.push(format!("{module} ({package})"));
                }
            }
            let prove = Command::new("prove")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !prove {
                missing.push("prove (perl)".to_string());
            }
            (!missing.is_empty()).then(|| missing.join(", "))
        })
        .clone()
}

/// Skips the calling test (with a message) when Perl modules are missing.
macro_rules! require_perl {
    () => {
        if let Some(missing) = missing_perl() {
            eprintln!(
                "SKIPPED: the Perl binding tests need {missing}; \
                 install them (scripts/test.sh does) to run them"
            );
            return;
        }
    };
}

/// Builds the library once per test binary; its absolute path.
fn library() -> &'static Path {
    static LIB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match LIB.get_or_init(build_library) {
        Ok(p) => p,
        Err(e) => panic!("cannot build the library: {e}"),
    }
}

fn build_library() -> Result<PathBuf, String> {
    let release = !cfg!(debug_assertions);
    let profile = if release { "release" } else { "debug" };
    // CARGO_TARGET_TMPDIR is <target>/tmp, wherever the target dir is.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().unwrap_or(tmp).join("perl-lib");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--lib", "--manifest-path"])
        .arg(root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    if release {
        cmd.arg("--release");
    }
    let (status, _, stderr) = run_bounded(&mut cmd, BUILD_LIMIT);
    if !status.success() {
        return Err(format!("cargo build --lib failed:\n{stderr}"));
    }
    // The link-time name: whatever SONAME the library records, loading it
    // by this absolute path works.
    let lib = target.join(profile).join("libstagebus.so");
    let lib = lib
        .canonicalize()
        .map_err(|e| format!("{} was not built: {e}", lib.display()))?;
    Ok(lib)
}

/// `perl` with the binding on @INC and the library chosen, run from the
/// repository root.
fn perl(args: &[&str]) -> Command {
    let mut cmd = Command::new("perl");
    cmd.current_dir(root())
        .env("STAGEBUS_LIB", library())
        .arg("-I")
        .arg(root().join("bindings/perl/lib"))
        .args(args);
    cmd
}

fn prove(args: &[&str], env: &[(&str, &str)]) {
    let mut cmd = Command::new("prove");
    cmd.current_dir(root())
        .env("STAGEBUS_LIB", library())
        .args(["-I", "bindings/perl/lib"])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (status, stdout, stderr) = run_bounded(&mut cmd, PROVE_LIMIT);
    assert!(
        status.success(),
        "prove {args:?} failed ({status})\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout.contains("Result: PASS"),
        "prove {args:?} did not pass\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

// ---------------------------------------------------------------------
// The tests

#[test]
fn prove_bindings_perl_t() {
    require_perl!();
    prove(&["bindings/perl/t"], &[]);
}

#[test]
fn anyevent_pure_perl_backend() {
    require_perl!();
    prove(
        &["bindings/perl/t/03-all-call-types-anyevent.t"],
        &[("PERL_ANYEVENT_MODEL", "Perl")],
    );
}

/// Starts `examples/perl/broker.pl` on a free TCP port; its address.
fn start_broker() -> (Proc, String) {
    let mut broker = Proc::spawn(
        "broker.pl",
        &mut perl(&["examples/perl/broker.pl", "tcp://127.0.0.1:0"]),
    );
    let line = broker.wait_line("its address", |l| l.starts_with("listening on "));
    let address = line["listening on ".len()..].to_string();
    assert!(
        address.starts_with("tcp://127.0.0.1:") && !address.ends_with(":0"),
        "broker.pl printed {address}"
    );
    (broker, address)
}

#[test]
fn examples_broker_service_caller() {
    require_perl!();
    let (mut broker, address) = start_broker();

    let mut service = Proc::spawn(
        "service.pl",
        &mut perl(&["examples/perl/service.pl", &address]),
    );
    service.wait_line("ready", |l| l == "ready");

    let mut caller = Proc::spawn(
        "caller.pl",
        &mut perl(&["examples/perl/caller.pl", &address]),
    );
    let status = caller.wait_exit();
    assert!(
        status.success(),
        "caller.pl failed ({status})\n{}",
        caller.transcript()
    );
    let out = caller.output();
    for line in [
        "subscribed to Greeter",
        "hello -> Hello, Perl!",
        "count emit i=1",
        "count emit i=3",
        "count -> total 3 after 3 emits",
        "ask emit question: What is your name?",
        "ask -> Nice to meet you, Ann.",
        "slow cancelled after 50 ms",
        "nope -> error no_such_method",
        "count -1 -> error invalid_argument: n must be between 0 and 1000",
        "done",
    ] {
        assert!(
            out.contains(line),
            "caller.pl did not print {line:?}\n{}",
            caller.transcript()
        );
    }

    // The service saw the cancel of `slow`.
    service.wait_line("the cancel of slow", |l| {
        l.starts_with("slow: on_cancel ran")
    });
    service.terminate();
    let status = service.wait_exit();
    assert!(
        status.success(),
        "service.pl did not stop cleanly on SIGTERM ({status})\n{}",
        service.transcript()
    );
    assert!(
        service.output().contains("stopping on signal TERM"),
        "{}",
        service.transcript()
    );

    broker.terminate();
    let status = broker.wait_exit();
    assert!(
        status.success(),
        "broker.pl did not stop cleanly on SIGTERM ({status})\n{}",
        broker.transcript()
    );
    assert!(
        broker.output().contains("stopping on signal TERM"),
        "{}",
        broker.transcript()
    );
}

#[test]
fn example_caller_without_service_fails() {
    require_perl!();
    let (mut broker, address) = start_broker();
    let mut caller = Proc::spawn(
        "caller.pl",
        &mut perl(&["examples/perl/caller.pl", &address]),
    );
    let status = caller.wait_exit();
    assert_eq!(
        status.code(),
        Some(1),
        "caller.pl without a service must exit 1\n{}",
        caller.transcript()
    );
    let stderr = caller.stderr.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        stderr.contains("cannot subscribe to Greeter") && stderr.contains("no_such_session"),
        "{}",
        caller.transcript()
    );
    broker.terminate();
    assert!(broker.wait_exit().success(), "{}", broker.transcript());
}
