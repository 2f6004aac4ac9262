//! Who is at the other end of a call, as the broker knows it.

use serde::{Deserialize, Serialize};

/// The identity of a caller, stamped by the broker on every call it
/// forwards to a publisher (see [`super::Frame::DeliverFrom`]).
///
/// What is known depends on how the caller connected: on a Unix socket
/// the broker reads the peer's credentials from the kernel
/// (`SO_PEERCRED`: uid, gid and pid at connect time); on TCP it knows the
/// name of the token the caller presented. The client name is whatever
/// the caller chose to call itself, and proves nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CallerInfo {
    /// The broker's number for the caller's connection (unique on that
    /// broker for its life).
    pub connection: u64,
    /// The caller's user id, on a Unix socket.
    pub uid: Option<u32>,
    /// The caller's group id, on a Unix socket.
    pub gid: Option<u32>,
    /// The caller's process id (when it connected), on a Unix socket.
    pub pid: Option<u32>,
    /// The name the broker knows the caller by: the subject of the TLS
    /// client certificate it presented (`CN=alice,O=Example`, see
    /// `BrokerTls::with_client_ca`), else the name of the token it
    /// presented (see `BrokerConfig::with_named_token`), if any.
    pub identity: Option<String>,
    /// The name the caller gave itself at connect (see
    /// `ClientConfig::with_name`), if any. Not verified.
    pub client_name: Option<String>,
}
