//! A build without the cargo feature `tls`: `tls://` addresses parse,
//! but loading TLS settings fails with a clear error, so no TLS stream
//! is ever made. The types stand in for `tls.rs`'s, and cannot exist.

use super::tls_options::{BrokerTls, ClientTls};
use crate::error::{Error, ErrorCode};
use mio::net::TcpStream;
use std::io;

/// A broker's loaded TLS settings (none in this build).
#[derive(Debug, Clone)]
pub(crate) struct TlsAcceptor {
    _none: (),
}

/// A client's loaded TLS settings (none in this build).
#[derive(Debug, Clone)]
pub(crate) struct TlsConnector {
    _none: (),
}

/// A TCP socket speaking TLS (none in this build).
#[derive(Debug)]
pub(crate) struct TlsStream {
    _none: (),
}

const NEVER: &str = "no TLS stream exists in a build without the feature 'tls'";

fn unsupported() -> Error {
    Error::new(
        ErrorCode::InvalidArgument,
        "this stagebus was built without TLS (the cargo feature 'tls'): tls:// addresses cannot be used",
    )
}

/// Fails: this build has no TLS.
pub(crate) fn load_acceptor(_: &BrokerTls) -> Result<TlsAcceptor, Error> {
    Err(unsupported())
}

/// Fails: this build has no TLS.
pub(crate) fn load_connector(_: &ClientTls) -> Result<TlsConnector, Error> {
    Err(unsupported())
}

impl TlsStream {
    pub fn client(
        _: TcpStream,
        _: &TlsConnector,
        _: &str,
    ) -> Result<TlsStream, (io::Error, TcpStream)> {
        unreachable!("{}", NEVER)
    }
    pub fn server(_: TcpStream, _: &TlsAcceptor) -> io::Result<TlsStream> {
        unreachable!("{}", NEVER)
    }
    pub fn tcp(&self) -> &TcpStream {
        unreachable!("{}", NEVER)
    }
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        unreachable!("{}", NEVER)
    }
    pub fn wants_write(&self) -> bool {
        unreachable!("{}", NEVER)
    }
    pub fn handshaking(&self) -> bool {
        unreachable!("{}", NEVER)
    }
    pub fn peer_subject(&self) -> Option<String> {
        unreachable!("{}", NEVER)
    }
    pub fn send_records(&mut self) -> io::Result<()> {
        unreachable!("{}", NEVER)
    }
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        unreachable!("{}", NEVER)
    }
}

impl io::Read for TlsStream {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        unreachable!("{}", NEVER)
    }
}

impl io::Write for TlsStream {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        unreachable!("{}", NEVER)
    }
    fn flush(&mut self) -> io::Result<()> {
        unreachable!("{}", NEVER)
    }
}
