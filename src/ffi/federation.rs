//! Federation from C: `sb_broker_options_set_federation`, then the NATS
//! credentials (`_set_nats_credentials` or `_set_nats_nkey`) and TLS
//! (`_set_nats_tls`), make `sb_broker_new_with` start a broker that joins
//! other brokers over a NATS cluster (see `FederationConfig`). No logic
//! here: the settings are checked by `FederationConfig` itself.

use super::boundary::{fail, status, Fail};
use super::convert::{opt_text, text};
use super::handles::arg_mut;
use super::security::sb_broker_options;
use super::status::sb_status;
use crate::federation::nats::{NKeySeed, NatsAuth};
use crate::{ClientTls, FederationConfig};
use std::ffi::c_char;
use std::path::PathBuf;

/// The federation settings that a setter fills; `SB_INVALID_STATE`
/// (saying `what` needs it) before `sb_broker_options_set_federation`.
fn federation_of<'a>(
    o: &'a mut crate::BrokerConfig,
    what: &str,
) -> Result<&'a mut FederationConfig, Fail> {
    o.federation.as_mut().ok_or_else(|| {
        fail(
            sb_status::SB_INVALID_STATE,
            format!("{what} sb_broker_options_set_federation first"),
        )
    })
}

/// Makes the broker join a federation: `servers` is a comma-separated
/// list of `nats://HOST:PORT` URLs (credentials may be in a URL),
/// `broker_id` this broker's id (1 to 64 letters, digits, `_` or `-`,
/// unique in the namespace), `ns` the namespace (NULL for `sb`). A bad
/// setting is `SB_INVALID_ARGUMENT`, with the reason in
/// `sb_last_error`. NULL `servers` turns federation off.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_set_federation(
    options: *mut sb_broker_options,
    servers: *const c_char,
    broker_id: *const c_char,
    ns: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (o, servers, ns) = unsafe {
            (
                arg_mut(options, "options")?,
                opt_text(servers, "servers")?,
                opt_text(ns, "ns")?,
            )
        };
        let Some(servers) = servers else {
            o.federation = None;
            return Ok(());
        };
        // SAFETY: NULL or valid per the conventions.
        let id = unsafe { text(broker_id, "broker_id") }?;
        let mut config = FederationConfig::new(servers, id)?;
        if let Some(ns) = ns {
            config = config.with_namespace(ns)?;
        }
        o.federation = Some(config);
        Ok(())
    })
}

/// The credentials the broker gives NATS: a user with a password, or a
/// token (the other NULL), or all NULL for none (those of the URLs).
/// `SB_INVALID_STATE` before `sb_broker_options_set_federation`;
/// `SB_INVALID_ARGUMENT` for a user without a password or both kinds.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_set_nats_credentials(
    options: *mut sb_broker_options,
    user: *const c_char,
    password: *const c_char,
    token: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (o, user, password, token) = unsafe {
            (
                arg_mut(options, "options")?,
                opt_text(user, "user")?,
                opt_text(password, "password")?,
                opt_text(token, "token")?,
            )
        };
        let f = federation_of(o, "NATS credentials need")?;
        f.auth = match (user, password, token) {
            (Some(u), Some(p), None) => NatsAuth::UserPassword {
                user: u.to_string(),
                password: p.to_string(),
            },
            (None, None, Some(t)) => NatsAuth::Token(t.to_string()),
            (None, None, None) => NatsAuth::None,
            _ => {
                return Err(fail(
                    sb_status::SB_INVALID_ARGUMENT,
                    "NATS credentials: a user with a password, or a token, not both",
                ))
            }
        };
        Ok(())
    })
}

/// Makes the broker authenticate to NATS with a user's NKey: `seed_file`
/// holds its seed (`SU…`, as `nk -gen user` writes it, or a `.creds`
/// file); the seed is read now and never leaves the process (the
/// server's challenge is signed). NULL removes it. `SB_INVALID_STATE`
/// before `sb_broker_options_set_federation`; `SB_INVALID_ARGUMENT` for a
/// file that cannot be read or holds no valid user seed (the message
/// names the file, never the seed), or when the library was built
/// without the `tls` feature, whose crypto signs.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_set_nats_nkey(
    options: *mut sb_broker_options,
    seed_file: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (o, seed_file) = unsafe {
            (
                arg_mut(options, "options")?,
                opt_text(seed_file, "seed_file")?,
            )
        };
        let f = federation_of(o, "an NKey needs")?;
        f.auth = match seed_file {
            Some(path) => NatsAuth::NKey(
                NKeySeed::from_file(std::path::Path::new(path))
                    .map_err(|e| fail(sb_status::SB_INVALID_ARGUMENT, e))?,
            ),
            None => NatsAuth::None,
        };
        Ok(())
    })
}

/// TLS toward NATS: `ca_file` the CA of the servers' certificates (NULL:
/// the system's roots), `cert_file` and `key_file` a client certificate
/// for servers that verify clients (both NULL: none). With any of them
/// set every NATS connection uses TLS; without, `tls://` servers and
/// servers that require TLS get it. The files are read when the broker
/// starts (`sb_broker_new_with` fails naming a bad one).
/// `SB_INVALID_STATE` before `sb_broker_options_set_federation`;
/// `SB_INVALID_ARGUMENT` for a certificate without its key or a key
/// without its certificate.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_set_nats_tls(
    options: *mut sb_broker_options,
    ca_file: *const c_char,
    cert_file: *const c_char,
    key_file: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (o, ca, cert, key) = unsafe {
            (
                arg_mut(options, "options")?,
                opt_text(ca_file, "ca_file")?,
                opt_text(cert_file, "cert_file")?,
                opt_text(key_file, "key_file")?,
            )
        };
        let f = federation_of(o, "NATS TLS settings need")?;
        if cert.is_some() != key.is_some() {
            return Err(fail(
                sb_status::SB_INVALID_ARGUMENT,
                "a client certificate needs its key, and a key its certificate (one is NULL)",
            ));
        }
        f.tls = ClientTls {
            ca: ca.map(PathBuf::from),
            cert: cert.map(PathBuf::from),
            key: key.map(PathBuf::from),
        };
        Ok(())
    })
}

/// Heartbeats between federated brokers: this broker says it is alive
/// every `interval_ms` (default 500), and a peer broker silent for
/// `timeout_ms` (default 2000) is declared dead: its sessions leave every
/// listing and the calls to it end with `publisher_gone`.
/// `SB_INVALID_STATE` before `sb_broker_options_set_federation` (which
/// sets the defaults again); `SB_INVALID_ARGUMENT` for a zero value or a
/// timeout not longer than the interval.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_set_federation_heartbeat(
    options: *mut sb_broker_options,
    interval_ms: u64,
    timeout_ms: u64,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live per the conventions.
        let o = unsafe { arg_mut(options, "options")? };
        let f = federation_of(o, "heartbeat settings need")?;
        let checked = f.clone().with_heartbeats(
            std::time::Duration::from_millis(interval_ms),
            std::time::Duration::from_millis(timeout_ms),
        )?;
        *f = checked;
        Ok(())
    })
}

/// Makes the broker take the NATS servers' client disconnect events
/// (`$SYS.ACCOUNT.*.DISCONNECT`) as a faster sign of a peer broker's
/// death (`on`; default off): a peer whose connection closed is probed
/// at once and declared dead on two no-responders answers `hb_interval`
/// apart with no heartbeat between, instead of after the heartbeat
/// timeout. Only useful where the NATS account imports those events
/// from the system account. `SB_INVALID_STATE` before
/// `sb_broker_options_set_federation`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_set_federation_sys_events(
    options: *mut sb_broker_options,
    on: bool,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live per the conventions.
        let o = unsafe { arg_mut(options, "options")? };
        federation_of(o, "disconnect events need")?.sys_events = on;
        Ok(())
    })
}
