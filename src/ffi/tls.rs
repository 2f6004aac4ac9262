//! TLS from C: the certificate files of a broker's `tls://` listeners
//! (`sb_broker_options_set_tls_*`), a client's CA and certificate files
//! (`sb_client_options_set_tls_*`), and the count of failed handshakes.
//! The files are only named here: the broker reads them when it starts
//! (`sb_broker_new_with` fails naming a bad one), a client at its first
//! connect to a `tls://` address (the connect fails naming it).

use super::boundary::{fail, status, value_or};
use super::broker::sb_broker;
use super::convert::opt_text;
use super::handles::{arg, arg_mut};
use super::security::{sb_broker_options, sb_client_options};
use super::status::sb_status;
use crate::transport::BrokerTls;
use std::ffi::c_char;
use std::path::PathBuf;

/// Sets the certificate chain and private key files (PEM) of the
/// broker's `tls://` listeners; both NULL removes TLS (a `tls://`
/// address then fails `sb_broker_new_with`). One NULL and not the other
/// is `SB_INVALID_ARGUMENT`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_set_tls_cert(
    options: *mut sb_broker_options,
    cert_file: *const c_char,
    key_file: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (o, cert, key) = unsafe {
            (
                arg_mut(options, "options")?,
                opt_text(cert_file, "cert_file")?,
                opt_text(key_file, "key_file")?,
            )
        };
        match (cert, key) {
            (Some(cert), Some(key)) => {
                let client_ca = o.tls.take().and_then(|t| t.client_ca);
                o.tls = Some(BrokerTls {
                    client_ca,
                    ..BrokerTls::new(cert, key)
                });
                Ok(())
            }
            (None, None) => {
                o.tls = None;
                Ok(())
            }
            _ => Err(fail(
                sb_status::SB_INVALID_ARGUMENT,
                "a TLS certificate needs its key, and a key its certificate (one is NULL)",
            )),
        }
    })
}

/// Asks TLS clients for a certificate issued by a CA of `ca_file`
/// (PEM), refusing those without (mutual TLS); NULL asks for none. The
/// certificate's subject becomes the client's identity
/// (`sb_served_caller_identity`, a policy's `subject=`). Needs
/// `sb_broker_options_set_tls_cert` first (else `SB_INVALID_ARGUMENT`).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_set_tls_client_ca(
    options: *mut sb_broker_options,
    ca_file: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (o, ca) = unsafe { (arg_mut(options, "options")?, opt_text(ca_file, "ca_file")?) };
        match o.tls.as_mut() {
            Some(tls) => {
                tls.client_ca = ca.map(PathBuf::from);
                Ok(())
            }
            None => Err(fail(
                sb_status::SB_INVALID_ARGUMENT,
                "set the broker's TLS certificate and key (sb_broker_options_set_tls_cert) before its client CA",
            )),
        }
    })
}

/// The number of TLS connections the broker closed before their
/// handshake was done (a refused certificate, a client that speaks no
/// TLS). 0 for NULL.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_tls_handshake_failures(broker: *const sb_broker) -> u64 {
    value_or(0, || {
        // SAFETY: NULL or a live sb_broker.
        Ok(unsafe { arg(broker, "broker") }?
            .stats()
            .tls_handshake_failures)
    })
}

/// Sets the CA file (PEM) a broker's certificate must be issued by, for
/// `tls://` addresses; NULL trusts the system's certificate store.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_options_set_tls_ca(
    options: *mut sb_client_options,
    ca_file: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (o, ca) = unsafe { (arg_mut(options, "options")?, opt_text(ca_file, "ca_file")?) };
        o.tls.ca = ca.map(PathBuf::from);
        Ok(())
    })
}

/// Sets a client certificate chain and its key (PEM files) to present to
/// a broker that asks for one (mutual TLS); both NULL presents none. One
/// NULL and not the other is `SB_INVALID_ARGUMENT`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_options_set_tls_cert(
    options: *mut sb_client_options,
    cert_file: *const c_char,
    key_file: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (o, cert, key) = unsafe {
            (
                arg_mut(options, "options")?,
                opt_text(cert_file, "cert_file")?,
                opt_text(key_file, "key_file")?,
            )
        };
        if cert.is_some() != key.is_some() {
            return Err(fail(
                sb_status::SB_INVALID_ARGUMENT,
                "a client certificate needs its key, and a key its certificate (one is NULL)",
            ));
        }
        o.tls.cert = cert.map(PathBuf::from);
        o.tls.key = key.map(PathBuf::from);
        Ok(())
    })
}
