//! `stagebus broker` under systemd, with the service manager played by
//! the test: readiness sent to `NOTIFY_SOCKET` (a Unix datagram socket
//! the test binds, by path and by abstract name) as `READY=1` once it
//! listens and `STOPPING=1` when it stops; socket activation, where the
//! broker serves the listening sockets passed as descriptors 3… with
//! `LISTEN_FDS` and `LISTEN_PID` (set by a `sh` that then execs the
//! broker, so the pid is the broker's), TCP and Unix alike; descriptors
//! meant for another pid are ignored and a descriptor that is no
//! listening socket is an error.

mod support;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::{run_bounded_text, Proc};

/// How long a datagram may take to come.
const LIMIT: Duration = Duration::from_secs(20);

fn stagebus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stagebus"))
}

/// A fresh directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("stagebus-sd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The next datagram on `socket`, as text.
#[track_caller]
fn datagram(socket: &UnixDatagram) -> String {
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the limit");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The broker's addresses from its `listening on …` lines.
fn addresses(broker: &mut Proc, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            let line = broker.wait_line("an address", |l| l.starts_with("listening on "));
            broker.seen.retain(|l| *l != line);
            line["listening on ".len()..].to_string()
        })
        .collect()
}

/// `stagebus broker ARGS…` run as systemd would run a socket-activated
/// service: `fds` become descriptors 3, 4, …, and `LISTEN_FDS` /
/// `LISTEN_PID` name them (`pid` none: the broker's own pid).
fn activated(fds: &[RawFd], pid: Option<u32>, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    let pid = pid.map_or_else(|| "$$".to_string(), |p| p.to_string());
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID={pid} LISTEN_FDS={} exec \"$0\" broker \"$@\"",
            fds.len()
        ))
        .arg(env!("CARGO_BIN_EXE_stagebus"))
        .args(args);
    let fds = fds.to_vec();
    // SAFETY: only async-signal-safe calls (fcntl, dup2, close) between
    // fork and exec, on descriptors this process owns.
    unsafe {
        cmd.pre_exec(move || {
            // First out of the way of 3…, then into place (dup2 clears
            // close-on-exec on the new descriptor).
            let mut high = Vec::new();
            for &fd in &fds {
                let h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(h);
            }
            for (i, &h) in high.iter().enumerate() {
                if libc::dup2(h, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(h);
            }
            Ok(())
        });
    }
    cmd
}

#[test]
fn readiness_reaches_a_notify_socket_by_path() {
    let dir = Dir::new("notify");
    let path = dir.0.join("notify.sock");
    let manager = UnixDatagram::bind(&path).unwrap();
    let mut broker = Proc::spawn(
        "broker",
        stagebus()
            .args(["broker", "--listen", "tcp://127.0.0.1:0"])
            .env("NOTIFY_SOCKET", &path),
    );
    let address = addresses(&mut broker, 1).remove(0);
    let ready = datagram(&manager);
    let lines: Vec<&str> = ready.lines().collect();
    assert!(lines.contains(&"READY=1"), "{ready:?}");
    assert!(
        lines.contains(&format!("STATUS=listening on {address}").as_str()),
        "{ready:?}"
    );
    assert!(
        lines.contains(&format!("MAINPID={}", broker.child.id()).as_str()),
        "{ready:?}"
    );
    broker.terminate();
    assert_eq!(datagram(&manager), "STOPPING=1");
    assert!(broker.wait_exit().success(), "{}", broker.transcript());
}

#[test]
fn readiness_reaches_an_abstract_notify_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("stagebus-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let manager = UnixDatagram::bind_addr(&addr).unwrap();
    let mut broker = Proc::spawn(
        "broker",
        stagebus()
            .args(["broker", "--listen", "tcp://127.0.0.1:0"])
            .env("NOTIFY_SOCKET", format!("@{name}")),
    );
    addresses(&mut broker, 1);
    assert!(datagram(&manager).lines().any(|l| l == "READY=1"));
    broker.terminate();
    assert!(broker.wait_exit().success(), "{}", broker.transcript());
}

#[test]
fn a_bad_notify_socket_is_reported_and_the_broker_runs_on() {
    let mut broker = Proc::spawn(
        "broker",
        stagebus()
            .args(["broker", "--listen", "tcp://127.0.0.1:0"])
            .env("NOTIFY_SOCKET", "relative/path"),
    );
    let address = addresses(&mut broker, 1).remove(0);
    let (status, stdout, stderr) =
        run_bounded_text(stagebus().args(["list", "--broker", &address]), LIMIT);
    assert!(status.success(), "{stdout}{stderr}");
    broker.terminate();
    assert!(broker.wait_exit().success(), "{}", broker.transcript());
    let stderr = broker.stderr.lock().unwrap().clone();
    assert!(
        stderr.contains("systemd notification failed: NOTIFY_SOCKET must be an absolute path"),
        "{stderr}"
    );
}

#[test]
fn socket_activation_serves_the_inherited_tcp_and_unix_sockets() {
    let dir = Dir::new("activation");
    let unix_path = dir.0.join("broker.sock");
    let unix = UnixListener::bind(&unix_path).unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_address = format!("tcp://{}", tcp.local_addr().unwrap());
    let unix_address = format!("unix:{}", unix_path.display());
    let notify_path = dir.0.join("notify.sock");
    let manager = UnixDatagram::bind(&notify_path).unwrap();

    let mut broker = Proc::spawn(
        "activated broker",
        activated(&[tcp.as_raw_fd(), unix.as_raw_fd()], None, &[])
            .env("NOTIFY_SOCKET", &notify_path),
    );
    assert_eq!(
        addresses(&mut broker, 2),
        [tcp_address.clone(), unix_address.clone()]
    );
    assert!(datagram(&manager).lines().any(|l| l == "READY=1"));
    // The test's own copies closed: only the broker holds the sockets.
    drop((tcp, unix));
    for address in [&tcp_address, &unix_address] {
        let (status, stdout, stderr) =
            run_bounded_text(stagebus().args(["list", "--broker", address]), LIMIT);
        assert!(status.success(), "list via {address}: {stdout}{stderr}");
    }
    broker.terminate();
    assert!(broker.wait_exit().success(), "{}", broker.transcript());
    // The socket file is the manager's: the broker leaves it.
    assert!(
        unix_path.exists(),
        "the inherited socket's file was removed"
    );
}

#[test]
fn descriptors_for_another_pid_are_not_taken() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut broker = Proc::spawn("broker", &mut activated(&[tcp.as_raw_fd()], Some(1), &[]));
    let status = broker.wait_exit();
    assert_eq!(status.code(), Some(2), "{}", broker.transcript());
    let stderr = broker.stderr.lock().unwrap().clone();
    assert!(stderr.contains("nothing to listen on"), "{stderr}");
}

#[test]
fn a_descriptor_that_is_no_listening_socket_is_an_error() {
    let (a, _b) = UnixDatagram::pair().unwrap();
    let mut broker = Proc::spawn(
        "broker",
        &mut activated(&[a.as_raw_fd()], None, &["--listen", "tcp://127.0.0.1:0"]),
    );
    let status = broker.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", broker.transcript());
    let stderr = broker.stderr.lock().unwrap().clone();
    assert!(
        stderr.contains("descriptor 3 is not a listening stream socket"),
        "{stderr}"
    );
}
