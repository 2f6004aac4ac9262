//! A build without the cargo feature `tls`: `tls://` addresses parse,
//! but loading TLS settings fails with a clear error, so no TLS stream
//! is ever made. The types stand in for `tls.rs`'s, and cannot exist.

use super::tls_options::{BrokerTls, ClientTls};
use crate::error::{Error, ErrorCode};
use mio::net::TcpStream;
use std::io;

/// A broker's loaded TLS settings (none in this build).
#[derive(Debug, Clone)]
pub(crate) enum TlsAcceptor {}

/// A client's loaded TLS settings (none in this build).
#[derive(Debug, Clone)]
pub(crate) enum TlsConnector {}

/// A TCP socket speaking TLS (none in this build).
#[derive(Debug)]
pub(crate) enum TlsStream {}

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
    pub fn client(_: TcpStream, connector: &TlsConnector, _: &str) -> io::Result<TlsStream> {
        match *connector {}
    }
    pub fn server(_: TcpStream, acceptor: &TlsAcceptor) -> io::Result<TlsStream> {
        match *acceptor {}
    }
    pub fn tcp(&self) -> &TcpStream {
        match *self {}
    }
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match *self {}
    }
    pub fn wants_write(&self) -> bool {
        match *self {}
    }
    pub fn handshaking(&self) -> bool {
        match *self {}
    }
    pub fn peer_subject(&self) -> Option<String> {
        match *self {}
    }
    pub fn send_records(&mut self) -> io::Result<()> {
        match *self {}
    }
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        match *self {}
    }
}

impl io::Read for TlsStream {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        match *self {}
    }
}

impl io::Write for TlsStream {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        match *self {}
    }
    fn flush(&mut self) -> io::Result<()> {
        match *self {}
    }
}
