//! systemd integration without libsystemd, for `stagebus broker`:
//!
//! * socket activation ([`listen_fds`], sd_listen_fds(3)): when
//!   `LISTEN_PID` is this process, the `LISTEN_FDS` descriptors from 3 on
//!   are listening sockets (TCP or Unix) handed over by the service
//!   manager; the broker serves them;
//! * readiness ([`notify`], sd_notify(3)): when `NOTIFY_SOCKET` is set
//!   (an absolute path, or `@name` for an abstract socket), a datagram
//!   such as `READY=1` is sent there; `Type=notify` units wait for it.

use crate::Failure;
use stagebus::InheritedListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;

/// The first descriptor the service manager passes (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: RawFd = 3;

/// The listening sockets passed by socket activation, claimed once: the
/// variables are removed (so a child would not take them for its own)
/// and each descriptor is made close-on-exec. None when `LISTEN_PID` is
/// unset or names another process. A descriptor that is not a
/// listening stream socket of a known family is an error.
pub(crate) fn listen_fds() -> Result<Vec<InheritedListener>, Failure> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // Single-threaded here: no thread reads the environment.
        std::env::remove_var(name);
    }
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(Vec::new());
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(Vec::new());
    }
    let count: RawFd = count
        .trim()
        .parse()
        .ok()
        .filter(|n| (0..=4096).contains(n))
        .ok_or_else(|| Failure::Failed(format!("LISTEN_FDS is no count of sockets: '{count}'")))?;
    (LISTEN_FDS_START..LISTEN_FDS_START + count)
        .map(claim)
        .collect()
}

/// Takes descriptor `fd` as a listening socket.
fn claim(fd: RawFd) -> Result<InheritedListener, Failure> {
    let bad = |why: String| Failure::Failed(format!("socket activation: descriptor {fd} {why}"));
    // SAFETY: fcntl on an integer descriptor has no memory effects; it
    // fails with EBADF when the descriptor is not open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(bad(format!(
            "is not open: {}",
            std::io::Error::last_os_error()
        )));
    }
    let int_option = |option: libc::c_int| -> std::io::Result<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for writes of the sizes
        // given; the kernel writes at most `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            Ok(value)
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let listening =
        int_option(libc::SO_ACCEPTCONN).map_err(|e| bad(format!("is not a socket: {e}")))?;
    let kind = int_option(libc::SO_TYPE).map_err(|e| bad(format!("is not a socket: {e}")))?;
    if listening == 0 || kind != libc::SOCK_STREAM {
        return Err(bad("is not a listening stream socket".into()));
    }
    let family = int_option(libc::SO_DOMAIN).map_err(|e| bad(format!("has no family: {e}")))?;
    // SAFETY: LISTEN_PID named this process, so the service manager
    // handed it descriptors LISTEN_FDS_START.. for its own use; each is
    // open (checked above) and claimed once, here.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    match family {
        libc::AF_INET | libc::AF_INET6 => Ok(std::net::TcpListener::from(owned).into()),
        libc::AF_UNIX => Ok(std::os::unix::net::UnixListener::from(owned).into()),
        other => Err(bad(format!(
            "is of address family {other}, not TCP or Unix"
        ))),
    }
}

/// Sends `state` (`READY=1`, `STOPPING=1`, `STATUS=…`, one per line) to
/// the service manager; `Ok(false)` when `NOTIFY_SOCKET` is unset.
pub(crate) fn notify(state: &str) -> Result<bool, String> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let target = target.to_string_lossy().into_owned();
    let socket = UnixDatagram::unbound().map_err(|e| format!("cannot make a socket: {e}"))?;
    let sent = if let Some(name) = target.strip_prefix('@') {
        send_abstract(&socket, name, state.as_bytes())
    } else if target.starts_with('/') {
        socket.send_to(state.as_bytes(), &target)
    } else {
        return Err(format!(
            "NOTIFY_SOCKET must be an absolute path or @name, not '{target}'"
        ));
    };
    match sent {
        Ok(n) if n == state.len() => Ok(true),
        Ok(n) => Err(format!("sent {n} of {} bytes to {target}", state.len())),
        Err(e) => Err(format!("cannot notify {target}: {e}")),
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &str, bytes: &[u8]) -> std::io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    socket.send_to_addr(bytes, &addr)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &str, _: &[u8]) -> std::io::Result<usize> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}

/// [`notify`], with a failure reported on stderr: the broker runs on
/// whether or not the manager heard it.
pub(crate) fn notify_or_warn(state: &str) {
    if let Err(e) = notify(state) {
        eprintln!("stagebus: systemd notification failed: {e}");
    }
}
