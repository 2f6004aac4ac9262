//! The credentials of the process at the other end of a Unix socket, as
//! the kernel recorded them when it connected (`SO_PEERCRED`).

use std::io;
use std::os::fd::RawFd;

/// A Unix-socket peer's user, group and process ids at connect time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// Reads the peer credentials of the connected Unix socket `fd`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn peer_cred(fd: RawFd) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket owned by the caller; the kernel
    // writes at most `len` bytes into `cred`, which is that large, and
    // stores the size it wrote in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCred {
        uid: cred.uid,
        gid: cred.gid,
        pid: cred.pid as u32,
    })
}

/// Reads the peer credentials of the connected Unix socket `fd` (uid and
/// gid from `getpeereid`; no pid on this system).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn peer_cred(fd: RawFd) -> io::Result<PeerCred> {
    let (mut uid, mut gid) = (0, 0);
    // SAFETY: `fd` is an open socket owned by the caller; getpeereid
    // writes the two ids it is given pointers to.
    let rc = unsafe { libc::getpeereid(fd, &mut uid, &mut gid) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCred { uid, gid, pid: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_socket_pair_shows_our_own_credentials() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let cred = peer_cred(a.as_raw_fd()).unwrap();
        // SAFETY: getuid/getgid only read the process's ids.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        assert_eq!((cred.uid, cred.gid), (uid, gid));
        #[cfg(target_os = "linux")]
        assert_eq!(cred.pid, std::process::id());
    }
}
