//! Federation from C: `sb_broker_options_set_federation` and
//! `sb_broker_options_set_nats_credentials` (or `_set_nats_nkey`) make
//! `sb_broker_new_with` start a broker that joins other brokers over a
//! NATS cluster (see
//! `FederationConfig`). No logic here: the settings are checked by
//! `FederationConfig` itself.

use super::boundary::{fail, status};
use super::convert::{opt_text, text};
use super::handles::arg_mut;
use super::security::sb_broker_options;
use super::status::sb_status;
use crate::federation::nats::{NKeySeed, NatsAuth};
use crate::FederationConfig;
use std::ffi::c_char;

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
        let Some(f) = o.federation.as_mut() else {
            return Err(fail(
                sb_status::SB_INVALID_STATE,
                "NATS credentials need sb_broker_options_set_federation first",
            ));
        };
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
        let Some(f) = o.federation.as_mut() else {
            return Err(fail(
                sb_status::SB_INVALID_STATE,
                "an NKey needs sb_broker_options_set_federation first",
            ));
        };
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
