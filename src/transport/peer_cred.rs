//! The credentials of the process at the other end of a Unix socket, as
//! the kernel recorded them when it connected (`SO_PEERCRED`).

use std::io;
use std::os::fd::RawFd;

/// A Unix-socket peer's user, group and process ids at connect time,
/// and its supplementary groups where the system tells them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    /// The supplementary groups it had when it connected
    /// (`SO_PEERGROUPS`, Linux 4.13 and later); empty where unknown.
    pub groups: Vec<u32>,
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
        groups: peer_groups(fd),
    })
}

/// The supplementary groups of the peer of the Unix socket `fd` as the
/// kernel recorded them at connect (`SO_PEERGROUPS`): no race with the
/// peer's process changing them or exiting. Empty if the kernel will
/// not tell (before Linux 4.13).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn peer_groups(fd: RawFd) -> Vec<u32> {
    const ID: usize = std::mem::size_of::<libc::gid_t>();
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    for _ in 0..4 {
        let mut len = (groups.len() * ID) as libc::socklen_t;
        // SAFETY: `fd` is an open socket owned by the caller; the kernel
        // writes at most `len` bytes into `groups`, which is that large,
        // and stores the size it wrote (or, with ERANGE, needs) in `len`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let len = len as usize / ID;
        if rc == 0 {
            groups.truncate(len);
            return groups;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) || len <= groups.len() {
            return Vec::new();
        }
        groups.resize(len, 0);
    }
    Vec::new()
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
    Ok(PeerCred {
        uid,
        gid,
        pid: 0,
        groups: Vec::new(),
    })
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
        {
            assert_eq!(cred.pid, std::process::id());
            // The supplementary groups, as getgroups tells them.
            // SAFETY: with size 0 getgroups only counts.
            let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
            let mut ours = vec![0; n.max(0) as usize];
            // SAFETY: `ours` has room for the `n` ids getgroups writes.
            let n = unsafe { libc::getgroups(n, ours.as_mut_ptr()) };
            ours.truncate(n.max(0) as usize);
            let mut theirs = cred.groups.clone();
            ours.sort_unstable();
            theirs.sort_unstable();
            assert_eq!(theirs, ours);
        }
    }
}
