//! `sb_broker`: a broker serving on a loop.

use super::boundary::{fail, status, value_or, Fail};
use super::convert::{opt_text, put, text, text_array};
use super::event_loop::sb_loop;
use super::handles::{arg, boxed, take, Handle};
use super::status::sb_status;
use super::values::sb_value;
use crate::broker::{Broker, BrokerConfig, Limit};
use crate::event_loop::EventLoop;
use crate::transport::Address;
use std::ffi::c_char;

/// A broker serving on a loop.
#[derive(Debug)]
pub struct sb_broker {
    _private: [u8; 0],
}

impl Handle for sb_broker {
    type Target = Broker;
    fn home(broker: &Broker) -> Option<&EventLoop> {
        Some(broker.event_loop())
    }
}

/// Starts a broker on `lp` listening on `n_listen` addresses
/// (`tcp://127.0.0.1:PORT`, port 0 for a free one; `unix:/path`), with an
/// optional `token` (NULL for none). Free with `sb_broker_free`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_new(
    lp: *mut sb_loop,
    listen: *const *const c_char,
    n_listen: usize,
    token: *const c_char,
    out: *mut *mut sb_broker,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / valid strings per the conventions.
        let (lp, listen, token) = unsafe {
            (
                arg(lp, "loop")?,
                text_array(listen, n_listen, "listen")?,
                opt_text(token, "token")?,
            )
        };
        if out.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "out is NULL"));
        }
        let config = BrokerConfig {
            listen: listen
                .into_iter()
                .map(|a| a.parse::<Address>().map_err(Fail::from))
                .collect::<Result<_, _>>()?,
            token: token.map(str::to_string),
            ..BrokerConfig::default()
        };
        let broker = Broker::new(lp, config)?;
        // SAFETY: checked non-NULL above.
        unsafe { out.write(boxed::<sb_broker>(broker)) };
        Ok(())
    })
}

/// Closes the broker and frees it: every client is told the broker is
/// going away (its calls end with `SB_BROKER_GONE`), and the notices
/// are written on later turns of the loop (at most 5 s; run the loop on
/// for them to leave). NULL is a no-op.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_free(broker: *mut sb_broker) {
    // SAFETY: NULL or an owned sb_broker, freed once.
    if let Some(broker) = unsafe { take(broker) } {
        let _ = status(|| {
            drop(broker);
            Ok(())
        });
    }
}

/// How many addresses the broker listens on.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_address_count(broker: *const sb_broker) -> usize {
    value_or(0, || {
        // SAFETY: NULL or a live sb_broker.
        Ok(unsafe { arg(broker, "broker") }?.local_addresses().len())
    })
}

/// Writes address `index` (with the real port) as a NUL-terminated
/// string into `buf` of `cap` bytes; `SB_LIMIT_EXCEEDED` if it does not
/// fit.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_address(
    broker: *const sb_broker,
    index: usize,
    buf: *mut c_char,
    cap: usize,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_broker.
        let broker = unsafe { arg(broker, "broker") }?;
        let addr = broker
            .local_addresses()
            .get(index)
            .map(ToString::to_string)
            .ok_or_else(|| {
                fail(
                    sb_status::SB_NOT_FOUND,
                    format!("no address at index {index}"),
                )
            })?;
        if buf.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "buf is NULL"));
        }
        if addr.len() + 1 > cap {
            return Err(fail(
                sb_status::SB_LIMIT_EXCEEDED,
                format!("the address needs {} bytes", addr.len() + 1),
            ));
        }
        // SAFETY: buf has cap >= len + 1 writable bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(addr.as_ptr(), buf.cast(), addr.len());
            buf.add(addr.len()).write(0);
        }
        Ok(())
    })
}

/// Sets the broker's liveness: a connection silent for `interval_ms` is
/// pinged, and one that leaves `max` pings unanswered (and one more
/// interval) is closed exactly as a disconnect: its sessions leave the
/// listing and calls to it end with `SB_PUBLISHER_GONE`. Defaults
/// 120000 ms and 2 (as NATS); 0 ms turns pinging off. Connections take
/// the new settings at their next tick; one that said hello while
/// pinging was off is not pinged.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_set_ping(
    broker: *const sb_broker,
    interval_ms: u64,
    max: u32,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_broker.
        let broker = unsafe { arg(broker, "broker") }?;
        broker.set_ping(std::time::Duration::from_millis(interval_ms), max);
        Ok(())
    })
}

/// Deliveries waiting for their result on this broker.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_pending_calls(broker: *const sb_broker) -> usize {
    value_or(0, || {
        // SAFETY: NULL or a live sb_broker.
        Ok(unsafe { arg(broker, "broker") }?.stats().pending_calls)
    })
}

/// Writes the broker's report of itself to `*out`: a map value with
/// `uptime_ms`, `totals` (connections, sessions, pending_calls,
/// waiting_subscribes, calls, dropped_stray, protocol_errors,
/// slow_consumers, refused_connections, access_denied), `errors` (code name → count),
/// `connections` (a list of maps: id, peer, handshaken, sessions,
/// calls_in_flight, serving, bytes_queued) and `sessions` (a list of
/// maps: name, publisher, calls, errors, in_flight). Owned: free it with
/// `sb_value_free`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_report(
    broker: *const sb_broker,
    out: *mut *mut sb_value,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_broker.
        let broker = unsafe { arg(broker, "broker") }?;
        if out.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "out is NULL"));
        }
        let report = broker.report().to_value();
        // SAFETY: checked non-NULL above.
        unsafe { out.write(boxed::<sb_value>(report)) };
        Ok(())
    })
}

/// Writes the broker's report in the Prometheus text exposition format
/// (NUL-terminated) into `buf` of `cap` bytes, and its length (without
/// the NUL) to `*len` if `len` is not NULL. When it does not fit, the
/// result is `SB_LIMIT_EXCEEDED`, nothing is written to `buf`, and
/// `*len` still tells the length: call again with a larger buffer (the
/// figures may have grown meanwhile).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_report_prometheus(
    broker: *const sb_broker,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_broker.
        let broker = unsafe { arg(broker, "broker") }?;
        let text = broker.report().to_prometheus();
        if !len.is_null() {
            // SAFETY: the caller's out-parameter, non-NULL.
            unsafe { len.write(text.len()) };
        }
        if buf.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "buf is NULL"));
        }
        if text.len() + 1 > cap {
            return Err(fail(
                sb_status::SB_LIMIT_EXCEEDED,
                format!("the report needs {} bytes", text.len() + 1),
            ));
        }
        // SAFETY: buf has cap >= text.len() + 1 bytes, per the caller.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
            buf.add(text.len()).write(0);
        }
        Ok(())
    })
}

/// Sets one of the broker's limits by name while it runs: the names
/// and meanings are those of the command line's `--limit NAME=N` and of
/// Rust's `Limit` (`"max-hello-frame"`, `"max-unauthenticated"`,
/// `"max-registry-bytes-per-connection"`, `"max-registry-bytes"`,
/// `"output-high-water"`, `"write-timeout-ms"`, `"max-input-bytes"`,
/// `"max-memory"`, `"max-frame"`, ...; durations in milliseconds).
/// `SB_INVALID_ARGUMENT`, with nothing changed, for an unknown name (the
/// message lists every name) or a 0 that would refuse everything.
/// Budgets, caps and timeouts apply from the next check; the frame size
/// limits to connections accepted afterwards. Going over a limit is an
/// error to whoever went over (`SB_LIMIT_EXCEEDED`, or a refusal and a
/// close for a peer that floods or does not read), counted in
/// `sb_broker_limits_exceeded`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_set_limit(
    broker: *const sb_broker,
    name: *const c_char,
    value: u64,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_broker; NULL or a valid string.
        let (broker, name) = unsafe { (arg(broker, "broker")?, text(name, "name")?) };
        broker.set_limit(Limit::from_name(name)?, value)?;
        Ok(())
    })
}

/// Writes the current value of the broker's limit `name` (see
/// `sb_broker_set_limit`) to `out`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_limit(
    broker: *const sb_broker,
    name: *const c_char,
    out: *mut u64,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_broker; NULL or a valid string.
        let (broker, name) = unsafe { (arg(broker, "broker")?, text(name, "name")?) };
        let value = broker.limit(Limit::from_name(name)?);
        // SAFETY: NULL (refused) or a writable u64.
        unsafe { put(out, value, "out") }
    })
}

/// How many times a client went over one of the broker's limits: requests
/// answered `SB_LIMIT_EXCEEDED`, and connections refused or closed for a
/// limit (the input budget, a peer that does not read).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_broker_limits_exceeded(broker: *const sb_broker) -> u64 {
    value_or(0, || {
        // SAFETY: NULL or a live sb_broker.
        Ok(unsafe { arg(broker, "broker") }?.stats().limits_exceeded)
    })
}
