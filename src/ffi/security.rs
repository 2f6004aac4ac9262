//! Who may do what, from C: `sb_broker_options` (tokens, named tokens,
//! Unix socket mode and group, a policy file) for `sb_broker_new_with`,
//! `sb_client_options` (token, client name) for `sb_client_connect_with`,
//! and the caller identity of a served request (`sb_served_caller_*`).

use super::boundary::{fail, status, value_or, Fail};
use super::broker::sb_broker;
use super::callbacks::{register, UserData};
use super::client::{connect_with_config, sb_client, sb_connect_fn};
use super::convert::{opt_text, put, text, text_array};
use super::event_loop::sb_loop;
use super::handles::{arg, arg_mut, boxed, new_into, take, Handle};
use super::served::sb_served;
use super::status::sb_status;
use crate::broker::{Broker, BrokerConfig, Policy};
use crate::client::ClientConfig;
use crate::event_loop::EventLoop;
use crate::request::ServedRequest;
use crate::transport::Address;
use crate::wire::CallerInfo;
use std::ffi::{c_char, c_void};
use std::path::Path;

/// How to start a broker: tokens, Unix socket mode and group, a policy.
/// Plain data (it belongs to no loop). Free with
/// `sb_broker_options_free`.
#[derive(Debug)]
pub struct sb_broker_options {
    _private: [u8; 0],
}

impl Handle for sb_broker_options {
    type Target = BrokerConfig;
    fn home(_: &BrokerConfig) -> Option<&EventLoop> {
        None
    }
}

/// How a client connects: token, client name. Plain data (it belongs to
/// no loop). Free with `sb_client_options_free`.
#[derive(Debug)]
pub struct sb_client_options {
    _private: [u8; 0],
}

impl Handle for sb_client_options {
    type Target = ClientConfig;
    fn home(_: &ClientConfig) -> Option<&EventLoop> {
        None
    }
}

/// New broker options: no token, Unix socket files of mode 0660 and the
/// process's group, no policy (everything allowed).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_new(out: *mut *mut sb_broker_options) -> sb_status {
    // SAFETY: NULL or writable per the conventions.
    unsafe { new_into::<sb_broker_options>(out, BrokerConfig::default()) }
}

/// Frees broker options. NULL is a no-op.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_free(options: *mut sb_broker_options) {
    // SAFETY: NULL or an owned sb_broker_options, freed once.
    drop(unsafe { take(options) });
}

/// Sets the shared token (NULL for none). Compared in constant time.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_set_token(
    options: *mut sb_broker_options,
    token: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (o, token) = unsafe { (arg_mut(options, "options")?, opt_text(token, "token")?) };
        o.token = token.map(str::to_string);
        Ok(())
    })
}

/// Adds a named token: a client presenting `secret` is known as `name`
/// (its identity for the policy and for the publishers it calls).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_add_named_token(
    options: *mut sb_broker_options,
    name: *const c_char,
    secret: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (o, name, secret) = unsafe {
            (
                arg_mut(options, "options")?,
                text(name, "name")?,
                text(secret, "secret")?,
            )
        };
        if name.is_empty() || secret.is_empty() {
            return Err(fail(
                sb_status::SB_INVALID_ARGUMENT,
                "a named token needs a name and a secret (one is empty)",
            ));
        }
        o.named_tokens.push((name.to_string(), secret.to_string()));
        Ok(())
    })
}

/// Sets the permission bits of the Unix socket files the broker creates
/// (default 0660); more than 0777 is `SB_INVALID_ARGUMENT`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_set_socket_mode(
    options: *mut sb_broker_options,
    mode: u32,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live per the conventions.
        let o = unsafe { arg_mut(options, "options") }?;
        if mode > 0o777 {
            return Err(fail(
                sb_status::SB_INVALID_ARGUMENT,
                format!("socket mode {mode:o} is not a permission mode (at most 0777)"),
            ));
        }
        o.socket_mode = mode;
        Ok(())
    })
}

/// Sets the group (a name or a number; NULL for the process's own) of
/// the Unix socket files the broker creates. An unknown group fails
/// `sb_broker_new_with`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_set_socket_group(
    options: *mut sb_broker_options,
    group: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (o, group) = unsafe { (arg_mut(options, "options")?, opt_text(group, "group")?) };
        o.socket_group = group.map(str::to_string);
        Ok(())
    })
}

/// Reads the policy file at `path` (NULL: no policy). A file that cannot
/// be read is `SB_IO`, a bad rule `SB_INVALID_ARGUMENT` naming its line.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_options_set_policy_file(
    options: *mut sb_broker_options,
    path: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (o, path) = unsafe { (arg_mut(options, "options")?, opt_text(path, "path")?) };
        o.policy = match path {
            Some(p) => Some(Policy::from_file(Path::new(p))?),
            None => None,
        };
        Ok(())
    })
}

/// Starts a broker on `lp` listening on `n_listen` addresses with
/// `options` (NULL for the defaults; they are copied, so they may be
/// freed after). Free with `sb_broker_free`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_new_with(
    lp: *mut sb_loop,
    listen: *const *const c_char,
    n_listen: usize,
    options: *const sb_broker_options,
    out: *mut *mut sb_broker,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (lp, listen) = unsafe { (arg(lp, "loop")?, text_array(listen, n_listen, "listen")?) };
        let mut config = if options.is_null() {
            BrokerConfig::default()
        } else {
            // SAFETY: a live sb_broker_options per the conventions.
            unsafe { arg(options, "options") }?.clone()
        };
        if out.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "out is NULL"));
        }
        config.listen = listen
            .into_iter()
            .map(|a| a.parse::<Address>().map_err(Fail::from))
            .collect::<Result<_, _>>()?;
        let broker = Broker::new(lp, config)?;
        // SAFETY: checked non-NULL above.
        unsafe { out.write(boxed::<sb_broker>(broker)) };
        Ok(())
    })
}

/// The number of operations the broker's policy denied (each answered
/// `SB_ACCESS_DENIED`). 0 for NULL.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_access_denied(broker: *const sb_broker) -> u64 {
    value_or(0, || {
        // SAFETY: NULL or a live sb_broker.
        Ok(unsafe { arg(broker, "broker") }?.stats().access_denied)
    })
}

/// New client options: no token, no client name.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_options_new(out: *mut *mut sb_client_options) -> sb_status {
    // SAFETY: NULL or writable per the conventions.
    unsafe { new_into::<sb_client_options>(out, ClientConfig::default()) }
}

/// Frees client options. NULL is a no-op.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_options_free(options: *mut sb_client_options) {
    // SAFETY: NULL or an owned sb_client_options, freed once.
    drop(unsafe { take(options) });
}

/// Sets the token to present (NULL for none).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_options_set_token(
    options: *mut sb_client_options,
    token: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (o, token) = unsafe { (arg_mut(options, "options")?, opt_text(token, "token")?) };
        o.token = token.map(str::to_string);
        Ok(())
    })
}

/// Sets the name the client gives itself (NULL for none): the
/// publishers it calls see it (`sb_served_caller_client_name`). Free
/// text that proves nothing.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_options_set_name(
    options: *mut sb_client_options,
    name: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid per the conventions.
        let (o, name) = unsafe { (arg_mut(options, "options")?, opt_text(name, "name")?) };
        o.name = name.map(str::to_string);
        Ok(())
    })
}

/// `sb_client_connect` with `options` (NULL for the defaults; copied,
/// so they may be freed after).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_connect_with(
    lp: *mut sb_loop,
    address: *const c_char,
    options: *const sb_client_options,
    on_connect: sb_connect_fn,
    user: *mut c_void,
    free_user: super::callbacks::sb_free_fn,
    out: *mut *mut sb_client,
) -> sb_status {
    let body = |lp: &EventLoop, user: UserData| {
        let config = if options.is_null() {
            ClientConfig::default()
        } else {
            // SAFETY: a live sb_client_options per the conventions.
            unsafe { arg(options, "options") }?.clone()
        };
        // SAFETY: forwarded contract.
        unsafe { connect_with_config(lp, address, config, on_connect, user, out) }
    };
    // SAFETY: NULL or a live sb_loop.
    unsafe { register(lp, "loop", user, free_user, body) }
}

/// The served request's caller identity, or `SB_NOT_FOUND` for a request
/// from this process (or through a broker that did not say).
///
/// # Safety
/// `s` must be NULL or a live sb_served.
unsafe fn caller<'a>(s: *const sb_served) -> Result<&'a CallerInfo, Fail> {
    // SAFETY: forwarded contract.
    let served: &ServedRequest = unsafe { arg(s, "served") }?;
    served.caller().ok_or_else(|| {
        fail(
            sb_status::SB_NOT_FOUND,
            "the request has no caller identity (it comes from this process)",
        )
    })
}

/// The broker's connection id of the caller of a request that came
/// through a broker; 0 for a local request (or NULL).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_caller_connection(s: *const sb_served) -> u64 {
    // SAFETY: NULL or a live sb_served.
    value_or(0, || Ok(unsafe { caller(s) }?.connection))
}

fn known(value: Option<u32>, what: &str) -> Result<u32, Fail> {
    value.ok_or_else(|| {
        fail(
            sb_status::SB_NOT_FOUND,
            format!("the caller's {what} is not known (it did not connect on a Unix socket)"),
        )
    })
}

/// The caller's user id in `*out`, known when it connected to the broker
/// on a Unix socket (read from the kernel); else `SB_NOT_FOUND`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_caller_uid(s: *const sb_served, out: *mut u32) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_served.
        let v = known(unsafe { caller(s) }?.uid, "uid")?;
        // SAFETY: NULL or writable per the conventions.
        unsafe { put(out, v, "out") }
    })
}

/// The caller's group id, as `sb_served_caller_uid`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_caller_gid(s: *const sb_served, out: *mut u32) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_served.
        let v = known(unsafe { caller(s) }?.gid, "gid")?;
        // SAFETY: NULL or writable per the conventions.
        unsafe { put(out, v, "out") }
    })
}

/// The caller's process id (when it connected), as
/// `sb_served_caller_uid`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_caller_pid(s: *const sb_served, out: *mut u32) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_served.
        let v = known(unsafe { caller(s) }?.pid, "pid")?;
        // SAFETY: NULL or writable per the conventions.
        unsafe { put(out, v, "out") }
    })
}

/// Copies `value` NUL-terminated into `buf` of `cap` bytes.
///
/// # Safety
/// `buf` must be NULL or writable for `cap` bytes.
unsafe fn copy_text(
    value: Option<&str>,
    what: &str,
    buf: *mut c_char,
    cap: usize,
) -> Result<(), Fail> {
    let value =
        value.ok_or_else(|| fail(sb_status::SB_NOT_FOUND, format!("the caller has no {what}")))?;
    if buf.is_null() {
        return Err(fail(sb_status::SB_NULL_ARGUMENT, "buf is NULL"));
    }
    if value.len() + 1 > cap {
        return Err(fail(
            sb_status::SB_LIMIT_EXCEEDED,
            format!("the {what} needs {} bytes", value.len() + 1),
        ));
    }
    // SAFETY: buf has cap >= len + 1 writable bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(value.as_ptr(), buf.cast(), value.len());
        buf.add(value.len()).write(0);
    }
    Ok(())
}

/// Writes the caller's identity name (the name of the token it
/// presented) NUL-terminated into `buf` of `cap` bytes; `SB_NOT_FOUND`
/// when it has none, `SB_LIMIT_EXCEEDED` when it does not fit.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_caller_identity(
    s: *const sb_served,
    buf: *mut c_char,
    cap: usize,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_served; buf writable for cap bytes.
        unsafe { copy_text(caller(s)?.identity.as_deref(), "identity", buf, cap) }
    })
}

/// Writes the name the caller gave itself, as
/// `sb_served_caller_identity`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_caller_client_name(
    s: *const sb_served,
    buf: *mut c_char,
    cap: usize,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_served; buf writable for cap bytes.
        unsafe { copy_text(caller(s)?.client_name.as_deref(), "client name", buf, cap) }
    })
}
