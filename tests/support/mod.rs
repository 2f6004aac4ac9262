//! What the tests that build the library and run programs against it
//! share (`tests/c_api.rs`, `tests/examples.rs`, `tests/perl.rs`, each
//! with `mod support;`):
//!
//! * [`build_library`]: `cargo build --lib` of this crate, in the test's
//!   own profile, into its own target dir under the test target dir, so
//!   that the library is fresh without waiting for the build lock of
//!   the outer `cargo test`.
//! * [`run_bounded`] / [`run_bounded_text`]: a command run to completion,
//!   killed (and the test failed) after a limit.
//! * [`Proc`]: a child process read line by line, with bounded waits,
//!   killed when dropped (so a failing test leaves nothing running).
//!
//! * [`certs::tls_dir`]: certificates for the TLS tests of C, C++ and
//!   Perl programs (`STAGEBUS_TEST_TLS`).
//!
//! Each test uses a part of it.
#![allow(dead_code)]

pub mod certs;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The longest a [`Proc`] may run, or one of its lines may take to
/// appear.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The longest the library build may take.
pub const BUILD_LIMIT: Duration = Duration::from_secs(900);

/// The target dir (under the test target dir) that `tests/c_api.rs`,
/// `tests/perl.rs`, `tests/examples.rs` and `tests/install.rs` build the
/// library and the binary into, so that the dependencies are compiled
/// once for all of them. `tests/c_api.rs` builds with the `testing`
/// feature, the others without: cargo keeps both builds of the library
/// side by side, and `libstagebus.so` in the dir is the last one built
/// (`tests/c_api.rs` copies its build away at once).
pub const SHARED_BUILD_DIR: &str = "lib-build";

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo profile the tests run in, `"debug"` or `"release"`.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

// ---------------------------------------------------------------------
// Building the library

/// Builds the library (`cargo build --lib`, the tests' profile, with
/// `features`) into `<target>/<dir>`, bounded by [`BUILD_LIMIT`]; the
/// path of the `libstagebus.so` it made.
pub fn build_library(dir: &str, features: &[&str]) -> Result<PathBuf, String> {
    let out = build(dir, features, &["--lib"])?;
    let lib = out.join("libstagebus.so");
    if lib.exists() {
        Ok(lib)
    } else {
        Err(format!("{} was not built", lib.display()))
    }
}

/// Runs `cargo build TARGETS…` (the tests' profile, with `features`)
/// into its own target dir `<target>/<dir>`, so that it never waits for
/// the build lock of the outer `cargo test`, bounded by [`BUILD_LIMIT`];
/// the directory its artifacts are in (`<target>/<dir>/<profile>`).
pub fn build(dir: &str, features: &[&str], targets: &[&str]) -> Result<PathBuf, String> {
    // CARGO_TARGET_TMPDIR is <target>/tmp, wherever the target dir is.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().unwrap_or(tmp).join(dir);
    let mut cmd = Command::new(env!("CARGO"));
    cmd.arg("build").args(targets);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    cmd.arg("--manifest-path")
        .arg(root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    if profile() == "release" {
        cmd.arg("--release");
    }
    let (status, _, stderr) = run_bounded_text(&mut cmd, BUILD_LIMIT);
    if !status.success() {
        return Err(format!("{cmd:?} failed:\n{stderr}"));
    }
    Ok(target.join(profile()))
}

// ---------------------------------------------------------------------
// Running commands with bounded waits

/// Runs a command to completion with its stdin closed and its output
/// collected (on threads, so a chatty program cannot block); it is
/// killed, and the test failed, after `limit`. Its output and how long
/// it ran.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < limit => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{cmd:?} ran longer than {limit:?} and was killed");
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("cannot wait for {cmd:?}: {e}");
            }
        }
    };
    let output = Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    (output, start.elapsed())
}

/// [`run_bounded`] with the output as text (invalid UTF-8 replaced): its
/// status, stdout and stderr.
pub fn run_bounded_text(cmd: &mut Command, limit: Duration) -> (ExitStatus, String, String) {
    let (out, _) = run_bounded(cmd, limit);
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------
// Child processes

/// A child process that is killed (and reaped) when dropped, with its
/// stdout read line by line and its stderr collected, on threads.
pub struct Proc {
    pub name: String,
    pub child: Child,
    lines: Receiver<String>,
    /// Every stdout line received so far.
    pub seen: Vec<String>,
    /// Everything it wrote to stderr so far.
    pub stderr: Arc<Mutex<String>>,
    /// Disconnects once stderr reached its end.
    stderr_done: Receiver<()>,
}

impl Proc {
    /// Starts `cmd` (stdin closed) as the child called `name`.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
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
        let (done, stderr_done) = mpsc::channel::<()>();
        thread::spawn(move || {
            let _done = done;
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
            stderr_done,
        }
    }

    /// What it printed so far, for failure messages.
    pub fn transcript(&self) -> String {
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
    pub fn wait_line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
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

    /// The next stdout line (kept in [`Proc::seen`] too), or `None` once
    /// stdout is closed; fails the test after [`RUN_LIMIT`].
    pub fn next_line(&mut self) -> Option<String> {
        match self.lines.recv_timeout(RUN_LIMIT) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{} printed nothing within {RUN_LIMIT:?}\n{}",
                self.name,
                self.transcript()
            ),
        }
    }

    /// The next stdout line if one arrived already (kept in
    /// [`Proc::seen`] too); never waits.
    pub fn try_line(&mut self) -> Option<String> {
        let line = self.lines.try_recv().ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Waits (bounded) until the process wrote `text` to stderr.
    pub fn wait_stderr(&self, text: &str) {
        let deadline = Instant::now() + RUN_LIMIT;
        while !self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(text)
        {
            assert!(
                Instant::now() < deadline,
                "{} wrote no {text:?} to stderr within {RUN_LIMIT:?}\n{}",
                self.name,
                self.transcript()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// [`Proc::wait_exit`], with everything it wrote to stderr.
    pub fn wait(&mut self) -> (ExitStatus, String) {
        let status = self.wait_exit();
        let stderr = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        (status, stderr.clone())
    }

    /// Waits (bounded) for the process to exit, then for the rest of its
    /// output.
    pub fn wait_exit(&mut self) -> ExitStatus {
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
        // The reader ends at EOF; a grandchild holding the pipe open
        // cannot make this hang past the deadline.
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
        // An exited process's stderr may still be in the pipe: callers
        // read it right after this returns.
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = self
            .stderr_done
            .recv_timeout(left.max(Duration::from_millis(100)));
        status
    }

    /// Sends the signal `sig`.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) on our own child, which is not reaped yet (it
        // is reaped only by wait_exit or Drop), so the pid is its own.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "cannot signal {}", self.name);
    }

    /// The process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Its stdout so far, one line per line.
    pub fn output(&self) -> String {
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
