//! Binding a Unix listener whose socket file has the mode and group
//! asked for from the start: the file is created by `bind`, given its
//! group and mode, and only then does the socket `listen`. A connect
//! before `listen` is refused, so no peer ever connects through wider
//! permissions than asked for, whatever the process's umask.

use mio::net::UnixListener;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// How a Unix socket file is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnixOptions {
    /// Its permission bits.
    pub mode: u32,
    /// Its group id, or None for the creating process's.
    pub gid: Option<u32>,
}

impl Default for UnixOptions {
    fn default() -> Self {
        UnixOptions {
            mode: crate::broker::DEFAULT_SOCKET_MODE,
            gid: None,
        }
    }
}

/// Turns a group name or number into a group id.
pub(crate) fn resolve_group(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let name = CString::new(group).map_err(|_| format!("bad group name {group:?}"))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: all-zero bytes are a valid `group` (null pointers, zero
    // ids) that getgrnam_r fills in.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: the name is a
    // NUL-terminated string, `grp` and `found` are ours, and `buf` is
    // writable for the length given.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot look up the group '{group}': {}",
            io::Error::from_raw_os_error(rc)
        ));
    }
    if found.is_null() {
        return Err(format!("no group named '{group}'"));
    }
    Ok(grp.gr_gid)
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Binds a non-blocking Unix listener at `path`, sets the file's group
/// and mode, calls `bound` (to record the file as ours), and listens.
pub(crate) fn bind(
    path: &Path,
    options: &UnixOptions,
    bound: impl FnOnce() -> io::Result<()>,
) -> io::Result<UnixListener> {
    // SAFETY: all-zero bytes are a valid sockaddr_un.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a socket path must be shorter than {} bytes and hold no NUL",
                addr.sun_path.len()
            ),
        ));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: socket() takes no pointers; a returned descriptor is ours.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is a valid sockaddr_un and `len` does not exceed
    // its size (checked above).
    check(unsafe {
        libc::bind(
            owned.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    })?;
    bound()?;
    let cpath = CString::new(bytes).map_err(io::Error::other)?;
    if let Some(gid) = options.gid {
        // SAFETY: a NUL-terminated path; uid -1 leaves the owner alone.
        check(unsafe { libc::chown(cpath.as_ptr(), u32::MAX as libc::uid_t, gid) })?;
    }
    // SAFETY: a NUL-terminated path.
    check(unsafe { libc::chmod(cpath.as_ptr(), (options.mode & 0o7777) as libc::mode_t) })?;
    // SAFETY: a socket we own, bound above.
    check(unsafe { libc::listen(owned.as_raw_fd(), 1024) })?;
    let std_listener = std::os::unix::net::UnixListener::from(owned);
    Ok(UnixListener::from_std(std_listener))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn the_socket_file_has_the_mode_and_group_asked_for() {
        let dir = std::env::temp_dir().join(format!("sb-unixbind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for mode in [0o600, 0o660, 0o666] {
            let path = dir.join(format!("s{mode:o}"));
            let _ = std::fs::remove_file(&path);
            // SAFETY: getgid only reads the process's group.
            let gid = unsafe { libc::getgid() };
            let options = UnixOptions {
                mode,
                gid: Some(gid),
            };
            let l = bind(&path, &options, || Ok(())).unwrap();
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, mode);
            assert_eq!(meta.gid(), gid);
            std::os::unix::net::UnixStream::connect(&path).unwrap();
            drop(l);
            let _ = std::fs::remove_file(&path);
        }
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn groups_resolve_by_name_and_number() {
        assert_eq!(resolve_group("0"), Ok(0));
        assert_eq!(resolve_group("root"), Ok(0));
        let e = resolve_group("no-such-group-here").unwrap_err();
        assert!(e.contains("no group named"), "{e}");
    }
}
