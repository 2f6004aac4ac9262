//! Transport: addresses, sockets and framed, buffered connections.
//!
//! Shared by the broker and the client. A [`Connection`] reads frames
//! until the socket would block and queues output that the loop writes
//! once per turn, so many frames produced in one turn leave in one
//! `write`.

mod address;
mod connection;
mod linger;
mod peer_cred;
mod socket_file;
mod unix_bind;

pub use address::{Address, InheritedListener};
pub(crate) use address::{Listener, Stream, UnixOptions};
pub(crate) use connection::{Connection, ReadOutcome};
pub(crate) use linger::{linger, CloseFn};
pub(crate) use peer_cred::PeerCred;
pub(crate) use unix_bind::resolve_group;
