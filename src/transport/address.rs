//! Where a broker listens: `tcp://HOST:PORT`, `tls://HOST:PORT` or
//! `unix:PATH`.

use super::socket_file::{SocketFile, TakeError};
use super::tls::{TlsAcceptor, TlsConnector, TlsStream};
pub(crate) use super::unix_bind::UnixOptions;
use crate::error::{Error, ErrorCode};
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// A broker address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// TCP, written `tcp://127.0.0.1:5000` (port 0 picks a free port).
    Tcp(SocketAddr),
    /// A Unix stream socket, written `unix:/path/to/socket`.
    Unix(PathBuf),
    /// TLS on TCP, written `tls://localhost:5000`: `addr` is where to
    /// connect or listen, `host` the name as written (a DNS name or an
    /// IP address), which the broker's certificate must carry.
    Tls {
        /// The socket address the host resolved to.
        addr: SocketAddr,
        /// The host as written, without the port.
        host: String,
    },
}

impl FromStr for Address {
    type Err = Error;

    /// Parses `tcp://HOST:PORT` (HOST may be a name such as `localhost`),
    /// `unix:PATH` or `unix://PATH`.
    fn from_str(s: &str) -> Result<Address, Error> {
        let bad = |why: &str| {
            Error::new(
                ErrorCode::InvalidArgument,
                format!("bad address '{s}': {why} (expected tcp://HOST:PORT, tls://HOST:PORT or unix:PATH)"),
            )
        };
        if let Some(rest) = s.strip_prefix("tcp://") {
            if let Ok(addr) = rest.parse::<SocketAddr>() {
                return Ok(Address::Tcp(addr));
            }
            let mut addrs = rest.to_socket_addrs().map_err(|e| bad(&e.to_string()))?;
            return addrs
                .next()
                .map(Address::Tcp)
                .ok_or_else(|| bad("the host has no address"));
        }
        if let Some(rest) = s.strip_prefix("tls://") {
            let Some((host, _port)) = rest.rsplit_once(':') else {
                return Err(bad("no port"));
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(bad("no host"));
            }
            let addr = match rest.parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => rest
                    .to_socket_addrs()
                    .map_err(|e| bad(&e.to_string()))?
                    .next()
                    .ok_or_else(|| bad("the host has no address"))?,
            };
            return Ok(Address::Tls {
                addr,
                host: host.to_string(),
            });
        }
        if let Some(rest) = s.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(bad("empty path"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        Err(bad("unknown scheme"))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "tcp://{addr}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Tls { addr, host } => match host.parse::<std::net::IpAddr>() {
                Ok(_) => write!(f, "tls://{addr}"),
                Err(_) => write!(f, "tls://{host}:{}", addr.port()),
            },
        }
    }
}

/// A connected socket of either kind.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    /// Starts a non-blocking connect; completion shows as writability.
    /// A `tls://` address needs `tls`, the client's TLS settings.
    pub fn connect(address: &Address, tls: Option<&TlsConnector>) -> io::Result<Stream> {
        match address {
            Address::Tcp(addr) => {
                let s = TcpStream::connect(*addr)?;
                Ok(Stream::Tcp(s))
            }
            Address::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path)?)),
            Address::Tls { addr, host } => {
                let Some(connector) = tls else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "no TLS settings for a tls:// address",
                    ));
                };
                let s = TcpStream::connect(*addr)?;
                let tls = TlsStream::client(s, connector, host).map_err(|(e, _)| e)?;
                Ok(Stream::Tls(Box::new(tls)))
            }
        }
    }

    /// A TCP stream connected with a plain greeting (NATS's `INFO`)
    /// that goes on under TLS, checking that the server's certificate
    /// names `host`. On failure the stream comes back as it was, with
    /// the error; a stream that is not plain TCP is an error too.
    pub fn start_tls(
        self,
        connector: &TlsConnector,
        host: &str,
    ) -> Result<Stream, (io::Error, Stream)> {
        match self {
            Stream::Tcp(tcp) => match TlsStream::client(tcp, connector, host) {
                Ok(tls) => Ok(Stream::Tls(Box::new(tls))),
                Err((e, tcp)) => Err((e, Stream::Tcp(tcp))),
            },
            other => Err((
                io::Error::new(io::ErrorKind::InvalidInput, "TLS starts only on plain TCP"),
                other,
            )),
        }
    }

    /// A pending connect's error, if it failed.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
            Stream::Tls(s) => s.tcp().take_error(),
        }
    }

    /// Sends the end of the stream (a FIN; on TLS a `close_notify`
    /// first) after what was written; reading goes on.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Tls(s) => s.shutdown_write(),
        }
    }

    /// The peer's credentials, on a Unix socket (None on TCP, or if the
    /// system would not tell).
    pub fn peer_cred(&self) -> Option<super::PeerCred> {
        match self {
            Stream::Tcp(_) | Stream::Tls(_) => None,
            Stream::Unix(s) => super::peer_cred::peer_cred(std::os::fd::AsRawFd::as_raw_fd(s)).ok(),
        }
    }

    /// Turns off Nagle's algorithm: we batch per loop turn ourselves.
    pub fn set_nodelay(&self) {
        let tcp = match self {
            Stream::Tcp(s) => s,
            Stream::Tls(s) => s.tcp(),
            Stream::Unix(_) => return,
        };
        let _ = tcp.set_nodelay(true);
        set_keepalive(tcp.as_raw_fd());
    }

    /// Whether bytes the stream took wait below it to be sent (TLS
    /// records rustls holds): the loop must report writability until
    /// they are gone.
    pub fn wants_write(&self) -> bool {
        match self {
            Stream::Tls(s) => s.wants_write(),
            _ => false,
        }
    }

    /// Sends what waits below the stream (see [`Stream::wants_write`]),
    /// as far as the socket takes it.
    pub fn send_pending(&mut self) -> io::Result<()> {
        match self {
            Stream::Tls(s) => s.send_records(),
            _ => Ok(()),
        }
    }

    /// Whether a read shorter than asked means the socket is empty (true
    /// for a plain socket; not under TLS, which hands over one record's
    /// plaintext at a time).
    pub fn short_read_drains(&self) -> bool {
        !matches!(self, Stream::Tls(_))
    }

    /// Whether a TLS handshake is still going on (false for a plain
    /// stream).
    pub fn handshaking(&self) -> bool {
        match self {
            Stream::Tls(s) => s.handshaking(),
            _ => false,
        }
    }

    /// The subject of the certificate a TLS peer presented, once its
    /// handshake is done.
    pub fn peer_subject(&self) -> Option<String> {
        match self {
            Stream::Tls(s) => s.peer_subject(),
            _ => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The socket's fd: what a host that watches the loop's fds one by one
/// is given.
impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tls(s) => s.tcp().as_raw_fd(),
        }
    }
}

impl mio::event::Source for Stream {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(registry, token, interests),
            Stream::Unix(s) => s.register(registry, token, interests),
            Stream::Tls(s) => s.tcp_mut().register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(registry, token, interests),
            Stream::Unix(s) => s.reregister(registry, token, interests),
            Stream::Tls(s) => s.tcp_mut().reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
            Stream::Tls(s) => s.tcp_mut().deregister(registry),
        }
    }
}

/// A listening socket the process was handed rather than one it binds:
/// by systemd's socket activation (`LISTEN_FDS`), or by any parent that
/// passes it open. [`BrokerConfig::with_inherited`] serves it.
///
/// The broker takes its own duplicate of the socket when it starts, so
/// this value may be dropped (closing the original) or kept. An
/// inherited Unix socket's file belongs to whoever bound it: the broker
/// neither locks it nor removes it when it stops.
///
/// [`BrokerConfig::with_inherited`]: crate::BrokerConfig::with_inherited
#[derive(Debug, Clone)]
pub enum InheritedListener {
    /// A listening TCP socket.
    Tcp(Arc<std::net::TcpListener>),
    /// A listening Unix stream socket.
    Unix(Arc<std::os::unix::net::UnixListener>),
}

impl From<std::net::TcpListener> for InheritedListener {
    fn from(l: std::net::TcpListener) -> InheritedListener {
        InheritedListener::Tcp(Arc::new(l))
    }
}

impl From<std::os::unix::net::UnixListener> for InheritedListener {
    fn from(l: std::os::unix::net::UnixListener) -> InheritedListener {
        InheritedListener::Unix(Arc::new(l))
    }
}

/// A listening socket of either kind; a Unix one this process bound
/// holds its socket file (the lock, and the removal at close).
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, Option<SocketFile>),
    /// TLS on TCP: the host as written, and what handshakes start from.
    Tls(TcpListener, TlsListen),
}

/// What a TLS listener keeps: the host it was given (for its address)
/// and the broker's TLS settings.
#[derive(Debug)]
pub(crate) struct TlsListen {
    host: String,
    acceptor: TlsAcceptor,
}

impl Listener {
    /// Binds `address`. For a Unix path, see [`SocketFile`]: the path is
    /// locked (`PATH.lock`) for the listener's life, so a second broker on
    /// it fails; an existing socket is replaced only when nobody listens
    /// on it (the probe connect is refused).
    /// A Unix socket file is created with `unix`'s mode and group; a
    /// `tls://` address needs `tls`, the broker's TLS settings.
    pub fn bind_with(
        address: &Address,
        unix: &UnixOptions,
        tls: Option<&TlsAcceptor>,
    ) -> Result<Listener, Error> {
        let fail = |e: &io::Error| Error::io(format_args!("cannot listen on {address}"), e);
        match address {
            Address::Tls { addr, host } => {
                let Some(acceptor) = tls else {
                    return Err(Error::new(
                        ErrorCode::InvalidArgument,
                        format!(
                            "cannot listen on {address}: a tls:// listener needs a certificate and its key (--tls-cert, --tls-key)"
                        ),
                    ));
                };
                let l = TcpListener::bind(*addr).map_err(|e| fail(&e))?;
                Ok(Listener::Tls(
                    l,
                    TlsListen {
                        host: host.clone(),
                        acceptor: acceptor.clone(),
                    },
                ))
            }
            Address::Tcp(addr) => Ok(Listener::Tcp(
                TcpListener::bind(*addr).map_err(|e| fail(&e))?,
            )),
            Address::Unix(path) => {
                let mut file = SocketFile::take(path).map_err(|e| match e {
                    TakeError::Locked { lock } => Error::new(
                        ErrorCode::Io,
                        format!(
                            "cannot listen on {address}: another broker is listening there (it holds {})",
                            lock.display()
                        ),
                    ),
                    TakeError::InUse { why } => Error::new(
                        ErrorCode::Io,
                        format!("cannot listen on {address}: {why}"),
                    ),
                    TakeError::Os { what, err } => Error::io(
                        format_args!("cannot listen on {address}: {what}"),
                        &err,
                    ),
                })?;
                let l =
                    super::unix_bind::bind(path, unix, || file.bound()).map_err(|e| fail(&e))?;
                Ok(Listener::Unix(l, Some(file)))
            }
        }
    }

    /// Serves a socket the process was handed: a non-blocking duplicate
    /// of it (the original stays the caller's). Fails if it is not a
    /// listening socket of its kind.
    pub fn adopt(inherited: &InheritedListener) -> Result<Listener, Error> {
        let fail = |what: &str, e: &io::Error| Error::io(format_args!("cannot serve {what}"), e);
        match inherited {
            InheritedListener::Tcp(l) => {
                let what = match l.local_addr() {
                    Ok(a) => format!("the inherited socket tcp://{a}"),
                    Err(e) => return Err(fail("an inherited socket: it is no TCP socket", &e)),
                };
                let dup = l.try_clone().map_err(|e| fail(&what, &e))?;
                dup.set_nonblocking(true).map_err(|e| fail(&what, &e))?;
                Ok(Listener::Tcp(TcpListener::from_std(dup)))
            }
            InheritedListener::Unix(l) => {
                let what = match l.local_addr() {
                    Ok(a) => match a.as_pathname() {
                        Some(p) => format!("the inherited socket unix:{}", p.display()),
                        None => "an inherited unnamed Unix socket".to_string(),
                    },
                    Err(e) => return Err(fail("an inherited socket: it is no Unix socket", &e)),
                };
                let dup = l.try_clone().map_err(|e| fail(&what, &e))?;
                dup.set_nonblocking(true).map_err(|e| fail(&what, &e))?;
                Ok(Listener::Unix(UnixListener::from_std(dup), None))
            }
        }
    }

    /// The address actually bound (with the port the kernel chose).
    pub fn local_address(&self) -> Address {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(addr) => Address::Tcp(addr),
                Err(_) => Address::Tcp(SocketAddr::from(([0, 0, 0, 0], 0))),
            },
            Listener::Tls(l, tls) => Address::Tls {
                addr: l
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
                host: tls.host.clone(),
            },
            Listener::Unix(_, Some(file)) => Address::Unix(file.path().to_path_buf()),
            Listener::Unix(l, None) => Address::Unix(
                l.local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(PathBuf::from))
                    .unwrap_or_default(),
            ),
        }
    }

    /// Accepts one pending connection, with the peer's address as text
    /// for logs (`127.0.0.1:40312`; a Unix socket's peer is `unix:` and
    /// its path, usually empty).
    pub fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(l) => l
                .accept()
                .map(|(s, peer)| (Stream::Tcp(s), peer.to_string())),
            Listener::Tls(l, tls) => {
                let (s, peer) = l.accept()?;
                let stream = TlsStream::server(s, &tls.acceptor)?;
                Ok((Stream::Tls(Box::new(stream)), format!("tls:{peer}")))
            }
            Listener::Unix(l, _) => l.accept().map(|(s, peer)| {
                let path = peer.as_pathname().map(|p| p.display().to_string());
                (
                    Stream::Unix(s),
                    format!("unix:{}", path.unwrap_or_default()),
                )
            }),
        }
    }

    /// Removes the socket file of a Unix listener if it is still the one
    /// bound (a path replaced meanwhile stays), and releases its lock.
    pub fn unlink(&mut self) {
        if let Listener::Unix(_, Some(file)) = self {
            file.release();
        }
    }
}

/// The listening socket's fd (see `Stream`'s).
impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
            Listener::Tls(l, _) => l.as_raw_fd(),
        }
    }
}

impl mio::event::Source for Listener {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.register(registry, token, interests),
            Listener::Unix(l, _) => l.register(registry, token, interests),
            Listener::Tls(l, _) => l.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.reregister(registry, token, interests),
            Listener::Unix(l, _) => l.reregister(registry, token, interests),
            Listener::Tls(l, _) => l.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.deregister(registry),
            Listener::Unix(l, _) => l.deregister(registry),
            Listener::Tls(l, _) => l.deregister(registry),
        }
    }
}

/// TCP keepalive: the kernel probes a connection silent for 60 s every
/// 10 s and drops it after 3 unanswered probes, so a peer that vanished
/// (power loss, a partition) is found even by a program that sends no
/// pings of its own. Best effort: a refused option leaves the socket as
/// it was.
fn set_keepalive(fd: std::os::fd::RawFd) {
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: `fd` is an open socket owned by the caller; the option
        // value is a c_int read by the kernel for its stated size.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 60);
        set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 10);
        set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        let a: Address = "tcp://127.0.0.1:56789".parse().unwrap();
        assert_eq!(a.to_string(), "tcp://127.0.0.1:56789");
        let u: Address = "unix:/tmp/x.sock".parse().unwrap();
        assert_eq!(u, Address::Unix("/tmp/x.sock".into()));
        assert_eq!("unix:///tmp/x.sock".parse::<Address>().unwrap(), u);
        let t: Address = "tls://localhost:7400".parse().unwrap();
        assert_eq!(t.to_string(), "tls://localhost:7400");
        let t: Address = "tls://127.0.0.1:7400".parse().unwrap();
        assert!(matches!(&t, Address::Tls { host, .. } if host == "127.0.0.1"));
        assert_eq!(t.to_string(), "tls://127.0.0.1:7400");
        for bad in [
            "",
            "http://x",
            "tcp://nope",
            "unix:",
            "127.0.0.1:80",
            "tls://:80",
            "tls://x",
        ] {
            let e = bad.parse::<Address>().unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{bad}");
        }
    }
}
