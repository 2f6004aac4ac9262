//! TLS on TCP with rustls, driven by the loop without a thread: a
//! [`TlsStream`] is a non-blocking TCP socket and a rustls connection,
//! read and written as a plain stream is (`Read`/`Write`), so the
//! framed [`Connection`](super::Connection) above it, and the broker
//! and client cores above that, know nothing of TLS.
//!
//! Reading takes records from the socket (`read_tls`), decrypts them
//! (`process_new_packets`) and hands over plaintext (`reader`); writing
//! encrypts into rustls' buffer (`writer`) and sends what the socket
//! takes (`write_tls`). Records rustls still holds (a write the socket
//! did not take, a handshake answer) show as
//! [`TlsStream::wants_write`], for which the connection keeps asking
//! the loop for writability. rustls buffers at most 64 KiB of either
//! kind; beyond that a write is `WouldBlock`, as a full socket's is.

use super::tls_options::{BrokerTls, ClientTls};
use crate::error::{Error, ErrorCode};
use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

/// A broker's loaded TLS settings: what every accepted TLS connection
/// starts from.
#[derive(Clone)]
pub(crate) struct TlsAcceptor(Arc<ServerConfig>);

/// A client's loaded TLS settings: what every connect (and reconnect)
/// starts from.
#[derive(Clone)]
pub(crate) struct TlsConnector(Arc<ClientConfig>);

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsAcceptor")
    }
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConnector")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(message: String) -> Error {
    Error::new(ErrorCode::InvalidArgument, message)
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        Error::io(
            format_args!("cannot read the {what} {}", path.display()),
            &e,
        )
    })
}

/// Every certificate of the PEM file `path`; at least one.
fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            invalid(format!(
                "the {what} {} is no valid PEM: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "the {what} {} holds no certificate (expected a PEM block 'BEGIN CERTIFICATE')",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key of the PEM file `path`.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let pem = read_file(path, "key file")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => invalid(format!(
            "the key file {} holds no private key (expected a PEM block 'BEGIN PRIVATE KEY', 'BEGIN RSA PRIVATE KEY' or 'BEGIN EC PRIVATE KEY')",
            path.display()
        )),
        e => invalid(format!("the key file {} is no valid PEM: {e}", path.display())),
    })
}

/// The CA certificates of the PEM file `path` as trust anchors.
fn load_roots(path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, "CA file")? {
        roots.add(cert).map_err(|e| {
            invalid(format!(
                "the CA file {} holds a certificate that cannot be a trust anchor: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// The trust anchors of the system's certificate store.
fn system_roots() -> Result<RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(|| "it is empty".to_string(), ToString::to_string);
        return Err(invalid(format!(
            "no CA file given (--tls-ca) and the system's certificate store cannot be used: {why}"
        )));
    }
    Ok(roots)
}

/// Reads the files of `options` into what a broker's TLS listeners
/// accept with. Each missing, unreadable or invalid file is an error
/// naming it.
pub(crate) fn load_acceptor(options: &BrokerTls) -> Result<TlsAcceptor, Error> {
    let certs = load_certs(&options.cert, "certificate file")?;
    let key = load_key(&options.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?;
    let builder = match &options.client_ca {
        Some(path) => {
            let roots = load_roots(path)?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| {
                invalid(format!(
                    "the client CA file {} cannot verify clients: {e}",
                    path.display()
                ))
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        invalid(format!(
            "the certificate {} and the key {} cannot be used together: {e}",
            options.cert.display(),
            options.key.display()
        ))
    })?;
    Ok(TlsAcceptor(Arc::new(config)))
}

/// Reads the files of `options` into what a client connects to `tls://`
/// addresses with: the CA file's roots (else the system's), and a client
/// certificate if one is given (with its key).
pub(crate) fn load_connector(options: &ClientTls) -> Result<TlsConnector, Error> {
    let roots = match &options.ca {
        Some(path) => load_roots(path)?,
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            let certs = load_certs(cert, "client certificate file")?;
            let key_der = load_key(key)?;
            builder.with_client_auth_cert(certs, key_der).map_err(|e| {
                invalid(format!(
                    "the client certificate {} and the key {} cannot be used together: {e}",
                    cert.display(),
                    key.display()
                ))
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(invalid(
                "a client certificate needs its key (--tls-key)".to_string(),
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                "a client key needs its certificate (--tls-cert)".to_string(),
            ))
        }
    };
    Ok(TlsConnector(Arc::new(config)))
}

/// A TCP socket speaking TLS.
pub(crate) struct TlsStream {
    tcp: TcpStream,
    tls: rustls::Connection,
    /// The socket reached its end.
    eof: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .field("handshaking", &self.tls.is_handshaking())
            .finish()
    }
}

impl TlsStream {
    /// The client end over `tcp` (connected or connecting) to a server
    /// whose certificate must name `host` (a DNS name or an IP address).
    /// On failure `tcp` comes back, still open (a socket upgraded after
    /// a plain greeting must still be deregistered).
    pub fn client(
        tcp: TcpStream,
        connector: &TlsConnector,
        host: &str,
    ) -> Result<TlsStream, (io::Error, TcpStream)> {
        let name = match ServerName::try_from(host.to_string()) {
            Ok(name) => name,
            Err(e) => {
                let why = format!("'{host}' is no name a certificate can be checked against: {e}");
                return Err((io::Error::new(io::ErrorKind::InvalidInput, why), tcp));
            }
        };
        match rustls::ClientConnection::new(connector.0.clone(), name) {
            Ok(conn) => Ok(TlsStream {
                tcp,
                tls: conn.into(),
                eof: false,
            }),
            Err(e) => Err((io::Error::other(format!("TLS: {e}")), tcp)),
        }
    }

    /// The broker end over the accepted `tcp`.
    pub fn server(tcp: TcpStream, acceptor: &TlsAcceptor) -> io::Result<TlsStream> {
        let conn = rustls::ServerConnection::new(acceptor.0.clone())
            .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
        Ok(TlsStream {
            tcp,
            tls: conn.into(),
            eof: false,
        })
    }

    /// The TCP socket under it.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The TCP socket under it, to register.
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// Whether records wait to be sent.
    pub fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    /// Whether the handshake is still going on.
    pub fn handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// The subject of the certificate the peer presented (RFC 4514
    /// text), once the handshake is done; None without one.
    pub fn peer_subject(&self) -> Option<String> {
        if self.tls.is_handshaking() {
            return None;
        }
        let first = self.tls.peer_certificates()?.first()?;
        super::x509_name::subject_of(first)
    }

    /// Sends the records waiting, until none are left or the socket
    /// would block.
    pub fn send_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Says the end of the stream (`close_notify`), then ends the TCP
    /// output if the alert left whole.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.tls.send_close_notify();
        self.send_records()?;
        if !self.tls.wants_write() {
            self.tcp.shutdown(std::net::Shutdown::Write)?;
        }
        Ok(())
    }

    /// What a rustls error means to whoever reads it.
    fn failure(&self, e: &rustls::Error) -> io::Error {
        use rustls::{AlertDescription as A, Error as E};
        let server = matches!(self.tls, rustls::Connection::Server(_));
        let hint = match e {
            E::InvalidMessage(_) | E::InappropriateMessage { .. } if self.handshaking() => {
                if server {
                    " (the client does not speak TLS: it should use tls://)"
                } else {
                    " (the broker does not speak TLS here: is it a tcp:// listener?)"
                }
            }
            E::AlertReceived(A::CertificateRequired) => {
                " (the broker asks for a client certificate: give --tls-cert and --tls-key)"
            }
            E::AlertReceived(A::BadCertificate | A::UnknownCA | A::CertificateUnknown)
                if !server =>
            {
                " (the broker refused this client's certificate)"
            }
            E::NoCertificatesPresented => " (the client presented no certificate)",
            _ => "",
        };
        let what = if self.handshaking() || matches!(e, E::AlertReceived(_)) {
            "TLS handshake failed"
        } else {
            "TLS failed"
        };
        io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}{hint}"))
    }
}

impl Read for TlsStream {
    /// Plaintext the peer sent; `WouldBlock` once the socket has no more.
    /// A short read does not mean the socket is empty: read on to
    /// `WouldBlock`. Handshake records rustls answers with are sent on
    /// the way.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without a close_notify: an end all
                // the same (a cut frame shows as one to the decoder).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(0);
            }
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.send_records()?;
                    return Err(e);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.tls.process_new_packets() {
                // The alert that tells the peer why.
                let _ = self.send_records();
                return Err(self.failure(&e));
            }
            self.send_records()?;
        }
    }
}

impl Write for TlsStream {
    /// Encrypts what rustls' buffer takes of `buf` and sends what the
    /// socket takes; `WouldBlock` when the buffer is full.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send_records()?;
        let n = self.tls.writer().write(buf)?;
        self.send_records()?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
