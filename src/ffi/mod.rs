//! The C API: `extern "C"` functions over the Rust API, and nothing else.
//!
//! This layer converts handles, strings and callbacks, catches panics and
//! maps errors to status codes. It holds no logic of its own: every
//! function forwards to the Rust API. All `unsafe` of the crate lives
//! here (and in the few libc calls of the command line), each block with
//! a `// SAFETY:` line.
//!
//! # Layout
//!
//! One module per C type family, and below them the machinery every
//! entry point shares:
//!
//! * `status`: `sb_status`, `sb_strerror`, `sb_last_error`.
//! * `boundary`: the panic boundary (`status`, `value_or`) and `Fail`.
//! * `handles`: the `Handle` trait binding each opaque type to its Rust
//!   type; reading, boxing and freeing handles, with the thread check.
//! * `convert`: plain arguments (strings, arrays, byte ranges,
//!   out-params), checked for NULL and UTF-8.
//! * `callbacks`: user pointers and `free_user`, completion callbacks,
//!   the C data slot of a scope.
//! * `event_loop`: `sb_loop` (timers, dispatch) and `sb_waker`.
//! * `broker`: `sb_broker`. `client`: `sb_client`. `call`:
//!   `sb_client_call`, `sb_client_call_sync` (calls by session name).
//! * `stage`: `sb_stage`, `sb_handler_kind`. `remote`: `sb_remote`.
//! * `request`: `sb_request_builder`, `sb_request` (the caller's side).
//! * `context`: `sb_ctx` and the wrapping of a C handler.
//! * `served`: `sb_served` (the callee's side). `response`: `sb_response`.
//! * `version`: `sb_version`. `args`: `sb_args`. `values`: `sb_value`.
//! * `signals`: signals and matches of `sb_client`, and its count of
//!   dropped one-way answers. `watches`: name watches of `sb_client`,
//!   and publishing in a name mode (`sb_stage_publish_mode`).
//! * `security`: `sb_broker_options`, `sb_client_options`, and a served
//!   request's caller identity (`sb_served_caller_*`).
//!
//! cbindgen writes the entry points into the header in the order the
//! modules are declared below, so that order is the header's: keep it
//! (the blank lines stop rustfmt from sorting the declarations).
//!
//! # API conventions (referred to by every function's docs)
//!
//! * **Handles** are opaque pointers created by `sb_*_new` (or another
//!   named constructor) and released by the matching `sb_*_free`, exactly
//!   once. `sb_*_free(NULL)` does nothing. Handles may be freed in any
//!   order: an object keeps what it needs alive.
//! * **Borrowed pointers** given to callbacks (`sb_ctx`, the `sb_served`
//!   and `sb_response` of a context, `sb_args`/`sb_value` read from them)
//!   are valid only during that callback; never free them. Take an owned
//!   reference with `sb_served_ref` to answer a request later.
//! * **Status**: every fallible function returns an `sb_status`
//!   (`SB_OK` = 0; numbers are stable). `sb_strerror(code)` names a code;
//!   `sb_last_error()` gives the detail of the last failure on this
//!   thread. Out-params are written only on success.
//! * **NULL and bad strings**: a NULL argument is `SB_NULL_ARGUMENT`;
//!   strings are NUL-terminated UTF-8, else `SB_INVALID_UTF8`. The `_n`
//!   functions (`sb_args_set_string_n`, `sb_value_new_string_n`) take a
//!   pointer and a length instead, so text may hold NUL characters; their
//!   pointer may be NULL only with a length of 0; `sb_args_get_string`,
//!   `sb_value_bytes` and `sb_stage_name` give text back as a pointer
//!   and a length. Nothing crashes on them.
//! * **Panics** never cross into C: a panic inside the library becomes
//!   `SB_PANIC` (or NULL / 0 where a function returns no status).
//! * **Callbacks** take `void *user` first. Every registration takes
//!   `user` and an optional `free_user`, which is called exactly once
//!   when the library no longer needs `user` (after the last callback).
//! * **Threads**: a loop and every object created on it belong to the
//!   thread that created the loop; callbacks run only on that thread,
//!   inside `sb_loop_run` / `sb_loop_dispatch`. Only `sb_waker_*`
//!   functions (`sb_waker_wake`, `sb_waker_post`, `sb_waker_free`) may be
//!   called from other threads, and args and values (plain data) belong
//!   to no loop. Every other function checks the calling thread first
//!   (a compare, no lock): from another thread it does nothing and
//!   returns `SB_WRONG_THREAD` (NULL / 0 / false where it returns no
//!   status), with `sb_last_error()` saying so. A `_free` from another
//!   thread frees nothing: the object is leaked, since freeing it there
//!   would run its destructors (and `free_user` hooks) on the wrong
//!   thread; `sb_last_error()` says so.
//! * **After `sb_loop_free`** its objects may still be freed, in any
//!   order, but every other use fails with `SB_INVALID_STATE` ("its loop
//!   was freed") and does nothing; `sb_waker_post` fails the same way
//!   and runs `free_user` at once.

#![allow(non_camel_case_types)]
// Every `unsafe` block says why it is sound (`// SAFETY:`); clippy checks.
#![warn(clippy::undocumented_unsafe_blocks)]

/// The `# Safety` section of every entry point that takes pointers,
/// attached as `#[doc = safety!()]`. It is Rust's reading of the API
/// conventions above, which C programs already have at the top of the
/// header: cbindgen copies only literal doc strings, so this one stays
/// out of the header.
macro_rules! safety {
    () => {
        "# Safety

Every pointer argument is NULL or as the API conventions (`src/ffi/mod.rs`)
require: a live handle of its type (owned, or borrowed for the callback that
gave it), freed at most once and not used after; a NUL-terminated string, or
with a length that many readable bytes; a writable out-param; a callback safe
to call with its `user` until `free_user` ran."
    };
}

mod status;

mod boundary;

mod handles;

mod convert;

mod callbacks;

mod event_loop;

mod broker;

mod client;

mod call;
mod reconnect;

mod stage;

mod remote;

mod request;

mod context;

mod served;

mod response;

mod version;

mod args;

mod values;

mod log;

mod signals;

mod security;
mod tls;
// Federation over NATS: its broker options.
mod federation;
mod watches;
