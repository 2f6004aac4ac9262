//! The files a Unix-socket listener owns: the socket path and its lock.
//!
//! Two brokers must never share a path, and a broker must never remove a
//! path that is not its own:
//!
//! * While a broker listens on `PATH` it holds an exclusive `flock` on
//!   `PATH.lock`; a second broker on the same path fails at once, with an
//!   error naming the path, before it touches the socket file.
//! * An existing socket file is replaced only when a probe connect is
//!   refused (`ECONNREFUSED`: a socket nobody listens on, left by a broker
//!   that died). Any other outcome (connected, `EACCES`, a full backlog,
//!   …) means someone may be listening, and the file is left alone. The
//!   probe covers listeners that do not take the lock (other programs,
//!   older versions).
//! * On shutdown the socket file is removed only if it is still the one
//!   this broker bound (same device and inode), so a path that was
//!   replaced meanwhile stays; the lock file is removed the same way,
//!   while still locked, so a broker waiting for it checks that the file
//!   it locked is still the one at `PATH.lock` (and retries if not).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Why a Unix path could not be taken.
#[derive(Debug)]
pub(crate) enum TakeError {
    /// Another broker holds `lock`.
    Locked { lock: PathBuf },
    /// Something exists at the path and may be in use; `why` says what
    /// the probe found.
    InUse { why: String },
    /// An operating-system error while doing `what`.
    Os { what: String, err: io::Error },
}

/// A file's identity: device and inode.
type FileId = (u64, u64);

fn file_id(meta: &fs::Metadata) -> FileId {
    (meta.dev(), meta.ino())
}

/// The exclusive lock on `PATH.lock`, held while it lives.
#[derive(Debug)]
struct LockFile {
    path: PathBuf,
    id: FileId,
    /// Closing it releases the lock.
    _file: File,
}

impl LockFile {
    fn acquire(path: PathBuf) -> Result<LockFile, TakeError> {
        let os = |what: &str, err| TakeError::Os {
            what: format!("{what} {}", path.display()),
            err,
        };
        // A holder removes the file while still holding the lock, so what
        // we locked may already be unlinked; a few retries settle the race.
        for _ in 0..8 {
            // Read-only is enough for flock, and lets brokers of other
            // users share the lock file; O_CREAT by hand because the
            // standard library creates only files opened for writing.
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CREAT)
                .mode(0o644)
                .open(&path)
                .map_err(|e| os("cannot open the lock file", e))?;
            // SAFETY: flock on a descriptor we own; it only changes the
            // lock state of that open file.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::WouldBlock {
                    return Err(TakeError::Locked { lock: path });
                }
                return Err(os("cannot lock", err));
            }
            let ours = file_id(&file.metadata().map_err(|e| os("cannot stat", e))?);
            match fs::symlink_metadata(&path) {
                Ok(meta) if file_id(&meta) == ours => {
                    return Ok(LockFile {
                        path,
                        id: ours,
                        _file: file,
                    })
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(os("cannot stat", e)),
            }
        }
        Err(os(
            "cannot lock",
            io::Error::other("it keeps being replaced"),
        ))
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        remove_if_same(&self.path, self.id);
    }
}

/// Removes `path` if it is still the file `id`.
fn remove_if_same(path: &Path, id: FileId) {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if file_id(&meta) == id {
            let _ = fs::remove_file(path);
        }
    }
}

/// The path a Unix listener is bound to, with its lock.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    /// The socket file we bound; `None` until bound.
    id: Option<FileId>,
    lock: Option<LockFile>,
}

impl SocketFile {
    /// Locks `path` for this process and clears the way for `bind`: a
    /// stale socket (the probe is refused) is removed; anything else that
    /// exists there is an error.
    pub fn take(path: &Path) -> Result<SocketFile, TakeError> {
        let mut lock_path = OsString::from(path.as_os_str());
        lock_path.push(".lock");
        let lock = LockFile::acquire(PathBuf::from(lock_path))?;
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(TakeError::Os {
                    what: "cannot stat".into(),
                    err: e,
                })
            }
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(TakeError::InUse {
                    why: "the path exists and is not a socket".into(),
                })
            }
            Ok(meta) => {
                probe_stale(path)?;
                // Remove the very socket we probed, not a newcomer.
                remove_if_same(path, file_id(&meta));
            }
        }
        Ok(SocketFile {
            path: path.to_path_buf(),
            id: None,
            lock: Some(lock),
        })
    }

    /// Records the socket file just bound at the path as ours.
    pub fn bound(&mut self) -> io::Result<()> {
        self.id = Some(file_id(&fs::symlink_metadata(&self.path)?));
        Ok(())
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file if it is still ours, then the lock.
    /// Idempotent.
    pub fn release(&mut self) {
        if let Some(id) = self.id.take() {
            remove_if_same(&self.path, id);
        }
        self.lock = None;
    }
}

/// Ok if a connect to the socket at `path` is refused (nobody listens);
/// otherwise why the socket must be left alone.
fn probe_stale(path: &Path) -> Result<(), TakeError> {
    // Non-blocking, so a live listener with a full backlog answers EAGAIN
    // instead of blocking the probe.
    match mio::net::UnixStream::connect(path) {
        Ok(_) => Err(TakeError::InUse {
            why: "a program is listening there".into(),
        }),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Ok(()),
        // Gone between the stat and the probe: nothing to remove.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TakeError::InUse {
            why: format!("a socket exists there and probing it failed ({e}), so it may be in use"),
        }),
    }
}
