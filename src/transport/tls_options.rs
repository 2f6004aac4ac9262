//! The TLS settings a broker and a client are given: file names only,
//! read when the broker starts or the client connects. They exist in
//! every build; without the cargo feature `tls` using them fails with a
//! clear error.

use std::path::PathBuf;

/// The TLS settings of a broker's `tls://` listeners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerTls {
    /// The broker's certificate chain (PEM, the broker's own certificate
    /// first).
    pub cert: PathBuf,
    /// The private key of that certificate (PEM: PKCS #8, PKCS #1 or
    /// SEC1).
    pub key: PathBuf,
    /// With a file of CA certificates (PEM), the broker asks every TLS
    /// client for a certificate and accepts only one issued by one of
    /// them (mutual TLS); the certificate's subject becomes the client's
    /// identity (the name a policy's `subject=` matches and a publisher
    /// sees). Without, clients present none.
    pub client_ca: Option<PathBuf>,
}

impl BrokerTls {
    /// Settings with a certificate chain and its key, and no client
    /// certificates asked for.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> BrokerTls {
        BrokerTls {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
        }
    }

    /// These settings asking for client certificates issued by the CAs
    /// of `client_ca` (mutual TLS).
    pub fn with_client_ca(mut self, client_ca: impl Into<PathBuf>) -> BrokerTls {
        self.client_ca = Some(client_ca.into());
        self
    }
}

/// The TLS settings of a client connecting to a `tls://` address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA certificates (PEM) the broker's certificate must be issued
    /// by; `None` trusts the system's certificate store.
    pub ca: Option<PathBuf>,
    /// A client certificate chain (PEM) to present, for a broker that
    /// asks for one (mutual TLS); needs [`ClientTls::key`].
    pub cert: Option<PathBuf>,
    /// The private key of [`ClientTls::cert`] (PEM).
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// Whether anything is set (a CA file or a client certificate).
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}
