//! Transport: addresses, sockets and framed, buffered connections.
//!
//! Shared by the broker and the client. A [`Connection`] reads frames
//! until the socket would block and queues output that the loop writes
//! once per turn, so many frames produced in one turn leave in one
//! `write`. A `tls://` connection is a TCP socket under rustls
//! (`tls.rs`), behind the same [`Stream`]: nothing above this module
//! knows TLS.

mod address;
mod connection;
mod linger;
mod peer_cred;
mod socket_file;
#[cfg(feature = "tls")]
mod tls;
#[cfg(not(feature = "tls"))]
#[path = "tls_off.rs"]
mod tls;
mod tls_options;
mod unix_bind;
#[cfg(feature = "tls")]
mod x509_name;

pub use address::{Address, InheritedListener};
pub(crate) use address::{Listener, Stream, UnixOptions};
pub(crate) use connection::{Connection, ReadOutcome};
pub(crate) use linger::{linger, CloseFn};
pub(crate) use peer_cred::PeerCred;
pub(crate) use tls::{load_acceptor, load_connector, TlsConnector};
pub use tls_options::{BrokerTls, ClientTls};
pub(crate) use unix_bind::resolve_group;
