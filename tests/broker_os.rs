//! The broker against its operating system: descriptors running out, and
//! the Unix socket path it owns (issue 10, items 11 and 12).
//!
//! Brokers that need a process of their own (a low open-file limit, or
//! another user) are the `stagebus` binary run as a child; the others run
//! in the test. Every wait is bounded; nothing asserts a duration.

mod common;

use common::{frame_bytes, hello, Raw, TempDir};
use stagebus::wire::{Frame, FrameDecoder, DEFAULT_MAX_FRAME};
use stagebus::{Address, Broker, BrokerConfig, EventLoop};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// The longest a step may take before the test fails.
const LIMIT: Duration = Duration::from_secs(30);

/// A `stagebus` child, killed and reaped on drop.
struct BrokerProc {
    child: Child,
    lines: Receiver<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl BrokerProc {
    /// Starts `stagebus ARGS` with its open-file limit set to `files`
    /// (soft and hard) if given, as user and group `uid` if given.
    fn spawn(args: &[&str], files: Option<(u64, u64)>, uid: Option<u32>) -> BrokerProc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagebus"));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(id) = uid {
            cmd.uid(id).gid(id);
        }
        if let Some((soft, hard)) = files {
            // SAFETY: the hook runs in the child between fork and exec and
            // calls only setrlimit, which is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: soft as libc::rlim_t,
                        rlim_max: hard as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("the stagebus binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        BrokerProc {
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// Waits for the broker's `listening on` line.
    fn wait_listening(&mut self) {
        match self.lines.recv_timeout(LIMIT) {
            Ok(line) if line.starts_with("listening on ") => {}
            other => panic!(
                "the broker did not start: {other:?}, stderr: {}",
                self.stderr_text()
            ),
        }
    }

    /// Waits for the child to exit; its status code and stderr, or `None`
    /// if it still runs after [`LIMIT`] (it is then killed).
    fn wait_exit(&mut self) -> Option<(Option<i32>, String)> {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some((status.code(), self.stderr_text()));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr_text(&mut self) -> String {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// The child's limit on open files as the kernel reports it (Linux).
    fn open_file_limits(&self) -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id())).ok()?;
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        let mut numbers = line
            .split_whitespace()
            .filter_map(|w| w.parse::<u64>().ok());
        Some((numbers.next()?, numbers.next()?))
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to `path` and says hello (the connection waits in the
/// broker's backlog until it is accepted). A broker over its connection
/// limit may have closed the connection before the hello is written:
/// that shows as a close when the first frame is read.
fn connect_and_hello(path: &Path) -> UnixStream {
    let mut s = UnixStream::connect(path).expect("connect to the broker's backlog");
    if let Err(e) = s.write_all(&frame_bytes(&hello(None))) {
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "the hello could not be written: {e}"
        );
    }
    s
}

/// What arrives on `s` within `within`: a frame, `Err("closed")` on end
/// of file, `Err("nothing")` when nothing came.
fn first_frame(s: &mut UnixStream, within: Duration) -> Result<Frame, &'static str> {
    let deadline = Instant::now() + within;
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("nothing");
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Err("closed"),
            Ok(n) => {
                decoder.push(&buf[..n]);
                if let Some(frame) = decoder.next_frame().expect("a well-formed frame") {
                    return Ok(frame);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("nothing")
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err("closed"),
        }
    }
}

/// Opens connections, each greeted in turn, until one is not within
/// `wait` (the broker is out of descriptors, or over its connection
/// limit); the greeted ones and the last one with what it got instead.
/// A greeted connection is greeted at once, so only the last one may use
/// all of `wait`.
fn fill(path: &Path, most: usize, wait: Duration) -> (Vec<UnixStream>, UnixStream, &'static str) {
    let mut idle = Vec::new();
    for _ in 0..most {
        let mut s = connect_and_hello(path);
        match first_frame(&mut s, wait) {
            Ok(Frame::Welcome { .. }) => idle.push(s),
            Ok(other) => panic!("expected welcome, got {other:?}"),
            Err(what) => return (idle, s, what),
        }
    }
    panic!("{most} connections were all greeted: the limit did not bite");
}

/// Item 11: on EMFILE the broker stopped accepting and, its listener being
/// edge-triggered, never looked at its backlog again; a waiting client
/// waited forever. Now accepting resumes when a descriptor comes free.
#[test]
fn accepting_resumes_after_descriptors_run_out() {
    let dir = TempDir::new("emfile");
    let path = dir.path().join("b.sock");
    let listen = format!("unix:{}", path.display());
    // Over the descriptors on purpose: this is about running out of them.
    let mut broker = BrokerProc::spawn(
        &["broker", "--listen", &listen, "--max-connections", "100000"],
        Some((40, 40)),
        None,
    );
    broker.wait_listening();
    // The first connection left waiting is told apart by a wait without
    // a welcome; were the broker merely slow, the test would still pass.
    let (mut idle, mut waiting, what) = fill(&path, 40, Duration::from_secs(3));
    assert_eq!(what, "nothing", "the broker closed instead of waiting");
    assert!(!idle.is_empty());
    // One idle client leaves: its descriptor comes free in the broker.
    drop(idle.remove(0));
    match first_frame(&mut waiting, LIMIT) {
        Ok(Frame::Welcome { .. }) => {}
        other => panic!("the waiting client got {other:?} instead of its welcome"),
    }
    // And the broker goes on serving the others.
    drop(idle.remove(0));
    let mut next = connect_and_hello(&path);
    assert!(matches!(
        first_frame(&mut next, LIMIT),
        Ok(Frame::Welcome { .. })
    ));
}

/// Item 11: the CLI broker raises its soft open-file limit to the hard one.
#[test]
fn cli_broker_raises_its_soft_open_file_limit() {
    let dir = TempDir::new("rlimit");
    let listen = format!("unix:{}", dir.path().join("b.sock").display());
    let mut broker = BrokerProc::spawn(&["broker", "--listen", &listen], Some((64, 200)), None);
    broker.wait_listening();
    let Some(limits) = broker.open_file_limits() else {
        eprintln!("no /proc/PID/limits here: skipped");
        return;
    };
    assert_eq!(limits, (200, 200));
}

/// Item 11: the CLI broker's default connection limit comes from its
/// open-file limit, so it closes the excess connection instead of running
/// out of descriptors and leaving it waiting.
#[test]
fn cli_broker_limits_connections_by_its_open_file_limit() {
    let dir = TempDir::new("maxconn");
    let path = dir.path().join("b.sock");
    let listen = format!("unix:{}", path.display());
    let mut broker = BrokerProc::spawn(&["broker", "--listen", &listen], Some((60, 60)), None);
    broker.wait_listening();
    // The excess connection is closed at once: a long wait costs nothing.
    let (idle, last, what) = fill(&path, 60, LIMIT);
    assert_eq!(what, "closed", "the excess connection was left waiting");
    // 60 files less 32 and 2 for the one address.
    assert_eq!(idle.len(), 26);
    drop((idle, last));
}

fn unix(path: &Path) -> Address {
    Address::Unix(path.to_path_buf())
}

fn broker_on(lp: &EventLoop, path: &Path) -> Result<Broker, stagebus::Error> {
    Broker::new(lp, BrokerConfig::listening([unix(path)]))
}

/// Item 12: a second broker on a live broker's path fails with an error
/// naming the path, and the first stays reachable; once the first stops,
/// the path is free again.
#[test]
fn second_broker_on_a_live_unix_path_fails_and_the_first_stays_reachable() {
    let dir = TempDir::new("takeover");
    let path = dir.path().join("b.sock");
    let lp = EventLoop::new().unwrap();
    let first = broker_on(&lp, &path).unwrap();
    let inode = std::fs::metadata(&path).unwrap().ino();
    let e = broker_on(&lp, &path).expect_err("a second broker on a live path");
    assert!(
        e.message.contains(&path.display().to_string()) && e.message.contains("another broker"),
        "{e}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
    Raw::handshaken(&lp, &unix(&path));
    first.close();
    assert!(!path.exists(), "the socket file stays after close");
    let lock = dir.path().join("b.sock.lock");
    assert!(!lock.exists(), "the lock file stays after close");
    let second = broker_on(&lp, &path).expect("the path is free after the first stopped");
    Raw::handshaken(&lp, &unix(&path));
    second.close();
}

/// Item 12: a socket whose probe fails with something other than
/// ECONNREFUSED (here EACCES: the prober may not connect) may be live;
/// the broker refuses the path instead of removing the socket. Root
/// ignores permission bits, so the broker then runs as `nobody`.
#[test]
fn unix_socket_whose_probe_is_denied_is_not_replaced() {
    let dir = TempDir::new("eacces");
    // Others may create (and unlink) files here, as in a shared run dir.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join("b.sock");
    let live = UnixListener::bind(&path).unwrap();
    // Nobody but root may connect: no write permission on the socket.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    let as_root = std::fs::metadata(dir.path()).unwrap().uid() == 0;
    let listen = format!("unix:{}", path.display());
    let mut broker = BrokerProc::spawn(
        &["broker", "--listen", &listen],
        None,
        as_root.then_some(65534),
    );
    match broker.wait_exit() {
        Some((Some(1), stderr)) => {
            assert!(stderr.contains(&path.display().to_string()), "{stderr}");
            assert!(stderr.contains("may be in use"), "{stderr}");
        }
        Some(other) => panic!("unexpected exit: {other:?}"),
        None => panic!("the broker took the live socket over and ran"),
    }
    let now = std::fs::metadata(&path).expect("the live socket is still there");
    assert_eq!((now.dev(), now.ino()), (meta.dev(), meta.ino()));
    // Still the live listener's socket: it accepts a connection (root).
    if as_root {
        let _c = UnixStream::connect(&path).unwrap();
        live.accept().unwrap();
    }
}

/// Item 12: at shutdown a broker removes its socket path only if it is
/// still its socket; a file put there meanwhile stays.
#[test]
fn replaced_unix_path_is_not_unlinked_at_shutdown() {
    let dir = TempDir::new("replaced");
    let path = dir.path().join("b.sock");
    let lp = EventLoop::new().unwrap();
    let broker = broker_on(&lp, &path).unwrap();
    let other = dir.path().join("other");
    std::fs::write(&other, "not the broker's").unwrap();
    std::fs::rename(&other, &path).unwrap();
    broker.close();
    assert_eq!(
        std::fs::read_to_string(&path).expect("the replacement stays"),
        "not the broker's"
    );
}

/// Item 12: a stale socket (nobody listens: the probe is refused) and a
/// lock file left by a broker that died are still taken over.
#[test]
fn stale_unix_socket_is_replaced() {
    let dir = TempDir::new("stale");
    let path = dir.path().join("b.sock");
    drop(UnixListener::bind(&path).unwrap());
    std::fs::write(dir.path().join("b.sock.lock"), "").unwrap();
    assert!(path.exists());
    let lp = EventLoop::new().unwrap();
    let broker = broker_on(&lp, &path).expect("a stale socket is replaced");
    Raw::handshaken(&lp, &unix(&path));
    broker.close();
    assert!(!path.exists());
}
