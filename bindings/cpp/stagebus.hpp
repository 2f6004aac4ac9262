// stagebus.hpp: a header-only C++17 wrapper over the stagebus C API.
//
// It adds no behaviour of its own; every call forwards to one sb_*
// function. What it adds is C++ shape:
//
// * RAII: each class owns one C handle, frees it in its destructor and is
//   move-only. A default-constructed (or moved-from) object holds no
//   handle; `explicit operator bool` tells. `raw()` gives the C handle.
// * Errors: a failing status is thrown as `stagebus::Error`, carrying the
//   sb_status and the detail of sb_last_error().
// * Callbacks are std::function objects. Each one lives in a heap object
//   handed to the C registration as `user`, with a `free_user` that
//   deletes it; the library calls that exactly once when it no longer
//   needs the callback (also when the registration fails).
// * Handlers (stage methods and response handlers) get a `Ctx&`. An
//   exception escaping a handler ends the request it serves with an
//   error: an `Error` with its own code and text, anything else as
//   handler_failed (the C convention: sb_served_fail, then return).
//   Other callbacks (timers, completions, on-cancel) must not throw: an
//   exception cannot cross the C library, so escaping one terminates
//   the program (they are noexcept).
//
// Borrowed views (ArgsRef, ValueRef, Ctx, Served, Response) are valid
// only during the callback that gave them, like their C counterparts;
// Served::ref() makes an owned ServedRef to answer later; a request
// neither answered nor kept (nor emitted on, nor the parent of an open
// request) when its handler returns, or whose last ServedRef goes while
// it is open, ends with SB_UNANSWERED for its caller. A publication does
// not keep its Stage: keep the Stage as long as it should be served.
//
// Threads: as in C, every object belongs to the loop's thread; only
// Waker may be used from other threads. A call from another thread
// throws stagebus::Error with SB_WRONG_THREAD and does nothing; a
// destructor running there frees nothing (the object is leaked).
//
// Lifetimes: objects may be destroyed in any order, but none may be used
// after its Loop is gone (that throws SB_INVALID_STATE); declaring the
// Loop first does that. Waker::post after the Loop is gone throws
// SB_INVALID_STATE and destroys `f` at once.
#ifndef STAGEBUS_HPP
#define STAGEBUS_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "stagebus.h"

namespace stagebus {

// ---------------------------------------------------------------------
// Errors

// A failed call: the sb_status and the library's detail.
class Error : public std::runtime_error {
public:
    Error(sb_status status, const std::string &detail)
        : std::runtime_error(std::string(sb_strerror(status)) + ": " + detail), status_(status),
          detail_(detail) {}

    // The status code (SB_NO_SUCH_METHOD, SB_NOT_FOUND, ...).
    sb_status status() const noexcept { return status_; }
    // The text without the code's name.
    const std::string &detail() const noexcept { return detail_; }

private:
    sb_status status_;
    std::string detail_;
};

// The static name of a status code ("no_such_method").
inline const char *strerror(sb_status status) noexcept { return sb_strerror(status); }

// The library's version, e.g. "0.1.0".
inline const char *version() noexcept { return sb_version(); }

namespace detail {

// Throws the last error of this thread if `status` is not SB_OK.
inline void check(sb_status status) {
    if (status != SB_OK) {
        throw Error(status, sb_last_error());
    }
}

// For the functions that answer NULL instead of a status.
template <class T> T *check_ptr(T *p, sb_status status_if_null) {
    if (p == nullptr) {
        throw Error(status_if_null, sb_last_error());
    }
    return p;
}

// A move-only owner of one C handle.
template <class T, void (*Free)(T *)> class Handle {
public:
    Handle() noexcept = default;
    explicit Handle(T *p) noexcept : p_(p) {}
    ~Handle() { Free(p_); }
    Handle(Handle &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    Handle &operator=(Handle &&o) noexcept {
        if (this != &o) {
            Free(std::exchange(p_, std::exchange(o.p_, nullptr)));
        }
        return *this;
    }
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;

    // The C handle (NULL when empty); still owned by this object.
    T *raw() const noexcept { return p_; }
    // Gives up ownership of the C handle.
    T *release() noexcept { return std::exchange(p_, nullptr); }
    explicit operator bool() const noexcept { return p_ != nullptr; }

private:
    T *p_ = nullptr;
};

// `user` for a C registration: a heap copy of the callback, and the
// `free_user` that deletes it.
template <class Fn> void delete_fn(void *user) noexcept { delete static_cast<Fn *>(user); }

template <class Fn> Fn &fn(void *user) noexcept { return *static_cast<Fn *>(user); }

} // namespace detail

// A key or name: a C string or a std::string, passed on without a copy.
class CStr {
public:
    CStr(const char *s) noexcept : p_(s) {}
    CStr(const std::string &s) noexcept : p_(s.c_str()) {}
    const char *c_str() const noexcept { return p_; }

private:
    const char *p_;
};

class Ctx;
class ArgsRef;
class Args;
class Value;

// ---------------------------------------------------------------------
// Values and args

// A borrowed value (read from args, a list or a listing).
class ValueRef {
public:
    explicit ValueRef(const sb_value *p = nullptr) noexcept : p_(p) {}
    const sb_value *raw() const noexcept { return p_; }
    explicit operator bool() const noexcept { return p_ != nullptr; }

    sb_value_type type() const noexcept { return sb_value_type_of(p_); }
    bool is_null() const noexcept { return type() == SB_VALUE_NULL; }

    // The value as T: bool, an integer type, a floating type,
    // std::string_view (borrowed) or std::string (a copy; also reads
    // bytes). Throws SB_WRONG_TYPE when it is not one.
    template <class T> T as() const {
        if constexpr (std::is_same_v<T, bool>) {
            bool v = false;
            detail::check(sb_value_bool(p_, &v));
            return v;
        } else if constexpr (std::is_integral_v<T>) {
            std::int64_t v = 0;
            detail::check(sb_value_int(p_, &v));
            return static_cast<T>(v);
        } else if constexpr (std::is_floating_point_v<T>) {
            double v = 0;
            detail::check(sb_value_float(p_, &v));
            return static_cast<T>(v);
        } else if constexpr (std::is_same_v<T, std::string_view> ||
                             std::is_same_v<T, std::string>) {
            const std::uint8_t *s = nullptr;
            std::size_t n = 0;
            detail::check(sb_value_bytes(p_, &s, &n));
            return T(reinterpret_cast<const char *>(s), n);
        } else {
            static_assert(!sizeof(T *), "as<T>: T must be bool, a number or a string");
        }
    }

    // Lists: the number of items (0 for other types) and item `i`.
    std::size_t size() const noexcept { return sb_value_list_len(p_); }
    ValueRef operator[](std::size_t i) const {
        return ValueRef(detail::check_ptr(sb_value_list_get(p_, i), SB_NOT_FOUND));
    }

    // Maps: the args inside. Throws SB_WRONG_TYPE for other types.
    inline ArgsRef map() const;

private:
    const sb_value *p_;
};

// Borrowed args: a request's or response's, or a map value's.
class ArgsRef {
public:
    explicit ArgsRef(const sb_args *p = nullptr) noexcept : p_(p) {}
    const sb_args *raw() const noexcept { return p_; }

    std::size_t size() const noexcept { return sb_args_len(p_); }
    bool has(CStr key) const noexcept { return sb_args_get(p_, key.c_str()) != nullptr; }

    // The value under `key`; throws SB_NOT_FOUND when there is none.
    ValueRef value(CStr key) const {
        return ValueRef(detail::check_ptr(sb_args_get(p_, key.c_str()), SB_NOT_FOUND));
    }

    // The value under `key` as T (see ValueRef::as). Throws SB_NOT_FOUND
    // or SB_WRONG_TYPE.
    template <class T> T get(CStr key) const { return value(key).as<T>(); }

    // The value under `key` as T, or `otherwise` when there is none.
    template <class T> T get_or(CStr key, T otherwise) const {
        return has(key) ? get<T>(key) : otherwise;
    }

    // Entry `i` in name order: its name and value.
    std::pair<std::string_view, ValueRef> entry(std::size_t i) const {
        const char *key = nullptr;
        std::size_t len = 0;
        const sb_value *v = nullptr;
        detail::check(sb_args_entry(p_, i, &key, &len, &v));
        return {std::string_view(key, len), ValueRef(v)};
    }

private:
    const sb_args *p_;
};

inline ArgsRef ValueRef::map() const {
    return ArgsRef(detail::check_ptr(sb_value_map(p_), SB_WRONG_TYPE));
}

// An owned value, for lists and maps inside args.
class Value : public detail::Handle<sb_value, sb_value_free> {
public:
    using Handle::Handle;
    static Value null() { return Value(detail::check_ptr(sb_value_new_null(), SB_PANIC)); }
    static Value boolean(bool b) { return Value(detail::check_ptr(sb_value_new_bool(b), SB_PANIC)); }
    static Value integer(std::int64_t n) {
        return Value(detail::check_ptr(sb_value_new_int(n), SB_PANIC));
    }
    static Value number(double x) {
        return Value(detail::check_ptr(sb_value_new_float(x), SB_PANIC));
    }
    // A string value from a NUL-terminated C string.
    static Value string(const char *s) {
        return Value(detail::check_ptr(sb_value_new_string(s), SB_INVALID_ARGUMENT));
    }
    // A string value from a std::string or std::string_view, whole: NUL
    // characters inside are kept (sb_value_new_string_n).
    static Value string(std::string_view s) {
        return Value(
            detail::check_ptr(sb_value_new_string_n(s.data(), s.size()), SB_INVALID_ARGUMENT));
    }
    static Value bytes(const void *data, std::size_t len) {
        return Value(detail::check_ptr(
            sb_value_new_bytes(static_cast<const std::uint8_t *>(data), len), SB_NULL_ARGUMENT));
    }
    static Value list() { return Value(detail::check_ptr(sb_value_new_list(), SB_PANIC)); }
    static inline Value map(Args &&args);

    // Appends `item` to this list value.
    Value &push(Value &&item) & {
        detail::check(sb_value_list_push(raw(), item.release()));
        return *this;
    }
    // On a temporary: Value::list().push(a).push(b) stays movable.
    Value &&push(Value &&item) && {
        detail::check(sb_value_list_push(raw(), item.release()));
        return std::move(*this);
    }

    ValueRef view() const noexcept { return ValueRef(raw()); }
};

// Owned args, to send: set typed values, read them back.
class Args : public detail::Handle<sb_args, sb_args_free> {
public:
    Args() : Handle(detail::check_ptr(sb_args_new(), SB_PANIC)) {}
    explicit Args(sb_args *owned) noexcept : Handle(owned) {}
    // A copy of borrowed args.
    static Args clone(ArgsRef from) {
        return Args(detail::check_ptr(sb_args_clone(from.raw()), SB_NULL_ARGUMENT));
    }

    ArgsRef view() const noexcept { return ArgsRef(raw()); }
    operator ArgsRef() const noexcept { return view(); }

    // Sets `key` to `value`: nullptr, bool, an integer, a floating
    // number, a string (const char *, std::string, std::string_view) or
    // a Value (moved in). A std::string or std::string_view is taken
    // whole, NUL characters included (sb_args_set_string_n); a const
    // char * ends at its NUL.
    template <class T> Args &set(CStr key, T &&value) {
        using V = std::decay_t<T>;
        if constexpr (std::is_same_v<V, std::nullptr_t>) {
            detail::check(sb_args_set_null(raw(), key.c_str()));
        } else if constexpr (std::is_same_v<V, bool>) {
            detail::check(sb_args_set_bool(raw(), key.c_str(), value));
        } else if constexpr (std::is_integral_v<V>) {
            detail::check(sb_args_set_int(raw(), key.c_str(), static_cast<std::int64_t>(value)));
        } else if constexpr (std::is_floating_point_v<V>) {
            detail::check(sb_args_set_float(raw(), key.c_str(), static_cast<double>(value)));
        } else if constexpr (std::is_same_v<V, std::string>) {
            detail::check(sb_args_set_string_n(raw(), key.c_str(), value.data(), value.size()));
        } else if constexpr (std::is_convertible_v<const V &, const char *>) {
            detail::check(sb_args_set_string(raw(), key.c_str(), value));
        } else if constexpr (std::is_convertible_v<const V &, std::string_view>) {
            const std::string_view view(value);
            detail::check(sb_args_set_string_n(raw(), key.c_str(), view.data(), view.size()));
        } else if constexpr (std::is_same_v<V, Value>) {
            static_assert(!std::is_lvalue_reference_v<T>, "set(key, Value): move the Value in");
            detail::check(sb_args_set_value(raw(), key.c_str(), value.release()));
        } else {
            static_assert(!sizeof(V *), "set: unsupported value type");
        }
        return *this;
    }

    // Sets `key` to a copy of `len` bytes.
    Args &set_bytes(CStr key, const void *data, std::size_t len) {
        detail::check(sb_args_set_bytes(raw(), key.c_str(),
                                        static_cast<const std::uint8_t *>(data), len));
        return *this;
    }

    std::size_t size() const noexcept { return view().size(); }
    bool has(CStr key) const noexcept { return view().has(key); }
    ValueRef value(CStr key) const { return view().value(key); }
    template <class T> T get(CStr key) const { return view().get<T>(key); }
    template <class T> T get_or(CStr key, T otherwise) const {
        return view().get_or<T>(key, std::move(otherwise));
    }
};

inline Value Value::map(Args &&args) {
    return Value(detail::check_ptr(sb_value_new_map(args.release()), SB_NULL_ARGUMENT));
}

// ---------------------------------------------------------------------
// Callback types

// A stage method or a response handler.
using Handler = std::function<void(Ctx &)>;
// A timer, a posted function, an on-cancel notification.
using Callback = std::function<void()>;
// Completion of an operation: SB_OK and "", or an error and its text.
using DoneFn = std::function<void(sb_status, std::string_view message)>;
// Completion of a connect.
using ConnectFn =
    std::function<void(sb_status, std::uint64_t connection_id, std::string_view message)>;
// A subscribed session went away.
using SessionGoneFn =
    std::function<void(std::string_view session, sb_status, std::string_view message)>;
// Completion of a listing: a list of maps {name, methods}.
using ListingFn = std::function<void(sb_status, ValueRef sessions, std::string_view message)>;
// Gets the broker's report (a map value, borrowed during the call).
using StatsFn = std::function<void(sb_status, ValueRef report, std::string_view message)>;
// A message of an application-defined kind: its kind, id and payload
// bytes (borrowed for the call). The broker's answer to
// Client::send_custom arrives as kind "result" with the id sent.
using UnknownMessageFn =
    std::function<void(std::string_view kind, std::uint64_t id, std::string_view payload)>;
// A reconnecting client's connection changed: `event` is an
// sb_connection_event; `session` names the session of
// SB_CONNECTION_REPUBLISH_FAILED, the match or watch of
// SB_CONNECTION_RESTORE_FAILED (empty otherwise).
using ConnectionEventFn = std::function<void(sb_connection_event event, std::string_view session,
                                             sb_status, std::string_view message)>;

// An event of a name watch: the event, the name, the methods (a list
// value; null for SB_NAME_GONE) and, for SB_NAME_GONE, the reason.
using NameEventFn = std::function<void(sb_name_event, std::string_view name, ValueRef methods,
                                       sb_status reason, std::string_view message)>;

// A signal for a match: its session and signal names and its args
// (all borrowed for the call).
using SignalFn =
    std::function<void(std::string_view session, std::string_view signal, ArgsRef args)>;

namespace detail {

// The two callbacks of a match share one user pointer.
struct MatchFns {
    SignalFn on_signal;
    DoneFn done;
};

// Likewise for a watch.
struct WatchFns {
    NameEventFn on_event;
    DoneFn done;
};

// The C trampolines. Each finds its std::function in `user`.

inline int32_t run_handler(void *user, const sb_ctx *ctx) noexcept;

inline void run_loop_fn(void *user, sb_loop *) noexcept { fn<Callback>(user)(); }

inline void run_notify(void *user) noexcept { fn<Callback>(user)(); }

inline void run_watch(void *user, int32_t fd, uint32_t events) noexcept {
    fn<std::function<void(int, std::uint32_t)>>(user)(fd, events);
}

inline void run_unix_signal(void *user, sb_loop *, int32_t signal) noexcept {
    fn<std::function<void(int)>>(user)(signal);
}

inline void run_done(void *user, sb_status status, const char *message) noexcept {
    fn<DoneFn>(user)(status, message);
}

inline void run_connect(void *user, sb_status status, uint64_t id, const char *message) noexcept {
    fn<ConnectFn>(user)(status, id, message);
}

inline void run_connection_event(void *user, uint32_t event, const char *session,
                                 sb_status status, const char *message) noexcept {
    fn<ConnectionEventFn>(user)(static_cast<sb_connection_event>(event),
                                session ? std::string_view(session) : std::string_view(), status,
                                message);
}

inline void run_session_gone(void *user, const char *session, sb_status status,
                             const char *message) noexcept {
    fn<SessionGoneFn>(user)(session, status, message);
}

// The two callbacks of a monitor, sharing one `user`.
struct MonitorFns {
    std::function<void(ValueRef event)> tap;
    DoneFn done;
};

inline void run_tap(void *user, const sb_value *event) noexcept {
    fn<MonitorFns>(user).tap(ValueRef(event));
}

inline void run_monitor_done(void *user, sb_status status, const char *message) noexcept {
    if (fn<MonitorFns>(user).done) {
        fn<MonitorFns>(user).done(status, message);
    }
}

inline void run_stats(void *user, sb_status status, const sb_value *report,
                      const char *message) noexcept {
    fn<StatsFn>(user)(status, ValueRef(report), message);
}

inline void run_listing(void *user, sb_status status, const sb_value *sessions,
                        const char *message) noexcept {
    fn<ListingFn>(user)(status, ValueRef(sessions), message);
}

inline void run_unknown_message(void *user, const char *kind, uint64_t id,
                                const uint8_t *payload, size_t len) noexcept {
    const std::string_view bytes =
        len == 0 ? std::string_view()
                 : std::string_view(reinterpret_cast<const char *>(payload), len);
    fn<UnknownMessageFn>(user)(kind, id, bytes);
}

inline void run_match_signal(void *user, const char *session, const char *signal,
                             const sb_args *args) noexcept {
    static_cast<MatchFns *>(user)->on_signal(session, signal, ArgsRef(args));
}

inline void run_match_done(void *user, sb_status status, const char *message) noexcept {
    const DoneFn &done = static_cast<MatchFns *>(user)->done;
    if (done)
        done(status, message);
}

inline void run_watch_event(void *user, sb_name_event event, const char *name,
                            const sb_value *methods, sb_status reason,
                            const char *message) noexcept {
    static_cast<WatchFns *>(user)->on_event(event, name, ValueRef(methods), reason, message);
}

inline void run_watch_done(void *user, sb_status status, const char *message) noexcept {
    const DoneFn &done = static_cast<WatchFns *>(user)->done;
    if (done)
        done(status, message);
}

// Calls `reg(c_function, user, free_user)` with a heap copy of `f`. The
// library owns the copy from then on, also when the call fails. An empty
// `f` is passed as a NULL function (an SB_NULL_ARGUMENT error).
template <class Fn, class CFn, class Register>
sb_status register_fn(Fn f, CFn trampoline, Register reg) {
    const bool empty = !f;
    Fn *user = new Fn(std::move(f));
    return reg(empty ? nullptr : trampoline, static_cast<void *>(user), &delete_fn<Fn>);
}

// Like register_fn for optional completions: an empty `f` registers no
// callback at all.
template <class Fn, class CFn, class Register>
sb_status register_optional(Fn f, CFn trampoline, Register reg) {
    if (!f) {
        return reg(nullptr, nullptr, nullptr);
    }
    return register_fn(std::move(f), trampoline, reg);
}

} // namespace detail

// ---------------------------------------------------------------------
// Logging

// One key-value field of a log record ("conn" = "3").
struct LogField {
    std::string_view key;
    std::string_view value;
};

// Receives one log record; every view is valid during the call only.
using LogFn = std::function<void(sb_log_level level, std::string_view target,
                                 std::string_view message, const std::vector<LogField> &fields)>;

namespace detail {

inline void run_log(void *user, sb_log_level level, const char *target, const char *message,
                    const sb_log_field *fields, size_t n_fields) noexcept {
    std::vector<LogField> kv;
    kv.reserve(n_fields);
    for (size_t i = 0; i < n_fields; i++) {
        kv.push_back(LogField{fields[i].key, fields[i].value});
    }
    fn<LogFn>(user)(level, target, message, kv);
}

} // namespace detail

// Sends the library's log records at `max_level` or more severe to `f`
// (process-wide; it replaces the handler set before). The library never
// writes to stderr itself. `f` runs on the thread that logged (a thread
// driving a loop) and must not throw; an empty `f` stops logging.
inline void set_log_handler(LogFn f, sb_log_level max_level = SB_LOG_WARN) {
    detail::check(detail::register_optional(
        std::move(f), &detail::run_log, [&](sb_log_fn c, void *user, sb_free_fn free_user) {
            return sb_set_log_handler(c, static_cast<int32_t>(max_level), user, free_user);
        }));
}

// ---------------------------------------------------------------------
// The loop

// The thread-safe handle of a loop. The only object usable from other
// threads.
class Waker : public detail::Handle<sb_waker, sb_waker_free> {
public:
    using Handle::Handle;

    // Makes the loop's fd readable.
    void wake() const { detail::check(sb_waker_wake(raw())); }

    // Runs `f` on the loop thread during its next turn. `f` (and what it
    // captures) is destroyed on the loop thread; if the loop is gone this
    // throws SB_INVALID_STATE and `f` is destroyed at once, here.
    void post(Callback f) const {
        detail::check(detail::register_fn(
            std::move(f), &detail::run_loop_fn,
            [&](sb_loop_fn c, void *user, sb_free_fn free_user) {
                return sb_waker_post(raw(), c, user, free_user);
            }));
    }
};

// An event loop.
class Loop : public detail::Handle<sb_loop, sb_loop_free> {
public:
    Loop() {
        sb_loop *lp = nullptr;
        detail::check(sb_loop_new(&lp));
        Handle::operator=(Handle(lp));
    }
    explicit Loop(sb_loop *owned) noexcept : Handle(owned) {}

    // Runs until stop().
    void run() { detail::check(sb_loop_run(raw())); }
    // Runs until stop() or until `ms` milliseconds have passed.
    void run_for(std::uint64_t ms) { detail::check(sb_loop_run_for(raw(), ms)); }
    // Makes run() return after the current turn.
    void stop() { detail::check(sb_loop_stop(raw())); }

    // Embedding: the fd to watch for reading, the timeout (-1 none,
    // 0 now, else ms; far timers are inside the fd, so they give -1),
    // and one non-blocking turn.
    int fd() const noexcept { return sb_loop_fd(raw()); }
    std::int64_t timeout_ms() const noexcept { return sb_loop_timeout_ms(raw()); }
    void dispatch() { detail::check(sb_loop_dispatch(raw())); }

    // Embedding fd by fd, for hosts that watch several fds: `f(fd, events)`
    // is told every fd to watch (events SB_FD_READ | SB_FD_WRITE,
    // level-triggered; 0: stop watching it), at once and as they change;
    // the host calls dispatch_fd() for a ready fd and dispatch() when
    // timeout_ms() passes. `f` must not throw. unwatch_fds() goes back to
    // fd().
    void watch_fds(std::function<void(int fd, std::uint32_t events)> f) {
        detail::check(detail::register_fn(
            std::move(f), &detail::run_watch, [&](sb_watch_fn c, void *user, sb_free_fn free_user) {
                return sb_loop_watch_fds(raw(), c, user, free_user);
            }));
    }
    void unwatch_fds() { detail::check(sb_loop_unwatch_fds(raw())); }
    void dispatch_fd(int fd, std::uint32_t events) {
        detail::check(sb_loop_dispatch_fd(raw(), fd, events));
    }

    // Takes `signals` (SIGTERM, SIGINT, ...) on the loop instead of their
    // default action: `f(signal)` runs on the loop's thread when one
    // arrives (see sb_loop_on_unix_signals: call it on the loop's thread,
    // before starting other threads). `f` must not throw. A second call
    // replaces the first; clear_unix_signals() ends it.
    void on_unix_signals(const std::vector<int> &signals, std::function<void(int signal)> f) {
        static_assert(sizeof(int) == sizeof(int32_t), "signal numbers are passed as int32_t");
        detail::check(detail::register_fn(
            std::move(f), &detail::run_unix_signal,
            [&](sb_unix_signal_fn c, void *user, sb_free_fn free_user) {
                return sb_loop_on_unix_signals(raw(), signals.data(), signals.size(), c, user,
                                               free_user);
            }));
    }
    void clear_unix_signals() { detail::check(sb_loop_clear_unix_signals(raw())); }

    // Runs `f` once after `ms` milliseconds; the id cancels it.
    std::uint64_t add_timer(std::uint64_t ms, Callback f) {
        std::uint64_t id = 0;
        detail::check(detail::register_fn(std::move(f), &detail::run_loop_fn,
                                          [&](sb_loop_fn c, void *user, sb_free_fn free_user) {
                                              return sb_loop_add_timer(raw(), ms, c, user,
                                                                       free_user, &id);
                                          }));
        return id;
    }
    // Cancels a timer; throws SB_NOT_FOUND if it already ran.
    void cancel_timer(std::uint64_t id) { detail::check(sb_loop_cancel_timer(raw(), id)); }

    Waker waker() const {
        return Waker(detail::check_ptr(sb_loop_waker(raw()), SB_NULL_ARGUMENT));
    }
};

// ---------------------------------------------------------------------
// Broker and client

class RemoteStage;

// Completion of a subscribe: on success an owned remote stage.
using SubscribedFn =
    std::function<void(sb_status, RemoteStage remote, std::string_view message)>;

// How to start a broker: tokens, named tokens, Unix socket mode and
// group, a policy file (see sb_broker_options_*). Plain data.
class BrokerOptions : public detail::Handle<sb_broker_options, sb_broker_options_free> {
public:
    BrokerOptions() {
        sb_broker_options *o = nullptr;
        detail::check(sb_broker_options_new(&o));
        Handle::operator=(Handle(o));
    }
    BrokerOptions &token(const char *token) {
        detail::check(sb_broker_options_set_token(raw(), token));
        return *this;
    }
    // A client presenting `secret` is known as `name`.
    BrokerOptions &named_token(CStr name, CStr secret) {
        detail::check(sb_broker_options_add_named_token(raw(), name.c_str(), secret.c_str()));
        return *this;
    }
    // Permission bits of Unix socket files (default 0660).
    BrokerOptions &socket_mode(std::uint32_t mode) {
        detail::check(sb_broker_options_set_socket_mode(raw(), mode));
        return *this;
    }
    // Group (name or number) of Unix socket files.
    BrokerOptions &socket_group(CStr group) {
        detail::check(sb_broker_options_set_socket_group(raw(), group.c_str()));
        return *this;
    }
    // Reads the policy file at `path` (throws on a bad rule).
    BrokerOptions &policy_file(CStr path) {
        detail::check(sb_broker_options_set_policy_file(raw(), path.c_str()));
        return *this;
    }
    // The certificate chain and key files (PEM) of tls:// listeners,
    // read when the broker starts.
    BrokerOptions &tls_cert(CStr cert_file, CStr key_file) {
        detail::check(sb_broker_options_set_tls_cert(raw(), cert_file.c_str(), key_file.c_str()));
        return *this;
    }
    // Ask TLS clients for a certificate issued by a CA of `ca_file`
    // (mutual TLS); its subject becomes the client's identity. After
    // tls_cert.
    BrokerOptions &tls_client_ca(CStr ca_file) {
        detail::check(sb_broker_options_set_tls_client_ca(raw(), ca_file.c_str()));
        return *this;
    }
    // Joins a federation over NATS: `servers` is "nats://H:P,nats://H:P",
    // `broker_id` unique in the namespace `ns` (nullptr: "sb").
    BrokerOptions &federation(CStr servers, CStr broker_id, const char *ns = nullptr) {
        detail::check(sb_broker_options_set_federation(raw(), servers.c_str(),
                                                       broker_id.c_str(), ns));
        return *this;
    }
    // Heartbeats between federated brokers: every `interval` (default
    // 500 ms); a peer silent for `timeout` (default 2 s, longer than
    // `interval`) is declared dead. After federation(); a zero or
    // negative value throws invalid_argument.
    BrokerOptions &federation_heartbeat(std::chrono::milliseconds interval,
                                        std::chrono::milliseconds timeout) {
        auto ms = [](std::chrono::milliseconds d) {
            return d.count() > 0 ? static_cast<std::uint64_t>(d.count()) : std::uint64_t(0);
        };
        detail::check(sb_broker_options_set_federation_heartbeat(raw(), ms(interval), ms(timeout)));
        return *this;
    }
    // Take the NATS servers' client disconnect events ($SYS, imported into
    // the account) as a faster sign of a peer broker's death. After
    // federation().
    BrokerOptions &federation_sys_events(bool on = true) {
        detail::check(sb_broker_options_set_federation_sys_events(raw(), on));
        return *this;
    }
    // NATS credentials: a user with a password, or a token (others nullptr).
    BrokerOptions &nats_credentials(const char *user, const char *password,
                                    const char *token) {
        detail::check(sb_broker_options_set_nats_credentials(raw(), user, password, token));
        return *this;
    }
    // TLS toward NATS: CA file (nullptr: the system's roots), and a client
    // certificate with its key (both nullptr: none).
    BrokerOptions &nats_tls(const char *ca_file, const char *cert_file = nullptr,
                            const char *key_file = nullptr) {
        detail::check(sb_broker_options_set_nats_tls(raw(), ca_file, cert_file, key_file));
        return *this;
    }
    // NATS authentication with a user's NKey seed file (nullptr: none).
    BrokerOptions &nats_nkey(const char *seed_file) {
        detail::check(sb_broker_options_set_nats_nkey(raw(), seed_file));
        return *this;
    }
};

// How a client connects: token, client name (see sb_client_options_*).
class ClientOptions : public detail::Handle<sb_client_options, sb_client_options_free> {
public:
    ClientOptions() {
        sb_client_options *o = nullptr;
        detail::check(sb_client_options_new(&o));
        Handle::operator=(Handle(o));
    }
    ClientOptions &token(const char *token) {
        detail::check(sb_client_options_set_token(raw(), token));
        return *this;
    }
    // The name the client gives itself (shown to the publishers it calls).
    ClientOptions &name(const char *name) {
        detail::check(sb_client_options_set_name(raw(), name));
        return *this;
    }
    // The CA file (PEM) a tls:// broker's certificate must come from
    // (default: the system's certificate store).
    ClientOptions &tls_ca(CStr ca_file) {
        detail::check(sb_client_options_set_tls_ca(raw(), ca_file.c_str()));
        return *this;
    }
    // A client certificate chain and key (PEM files) for mutual TLS.
    ClientOptions &tls_cert(CStr cert_file, CStr key_file) {
        detail::check(sb_client_options_set_tls_cert(raw(), cert_file.c_str(), key_file.c_str()));
        return *this;
    }
};

// A broker serving on a loop.
class Broker : public detail::Handle<sb_broker, sb_broker_free> {
public:
    using Handle::Handle;
    // Listens on every address with `options`.
    Broker(Loop &loop, const std::vector<std::string> &listen, const BrokerOptions &options) {
        std::vector<const char *> addrs;
        addrs.reserve(listen.size());
        for (const std::string &a : listen) {
            addrs.push_back(a.c_str());
        }
        sb_broker *b = nullptr;
        detail::check(
            sb_broker_new_with(loop.raw(), addrs.data(), addrs.size(), options.raw(), &b));
        Handle::operator=(Handle(b));
    }
    // Listens on every address ("tcp://127.0.0.1:0", "unix:/path").
    Broker(Loop &loop, const std::vector<std::string> &listen, const char *token = nullptr) {
        std::vector<const char *> addrs;
        addrs.reserve(listen.size());
        for (const std::string &a : listen) {
            addrs.push_back(a.c_str());
        }
        sb_broker *b = nullptr;
        detail::check(sb_broker_new(loop.raw(), addrs.data(), addrs.size(), token, &b));
        Handle::operator=(Handle(b));
    }

    std::size_t address_count() const noexcept { return sb_broker_address_count(raw()); }

    // Address `index`, with the real port.
    std::string address(std::size_t index = 0) const {
        std::vector<char> buf(256);
        sb_status st = sb_broker_address(raw(), index, buf.data(), buf.size());
        if (st == SB_LIMIT_EXCEEDED) {
            buf.resize(65536);
            st = sb_broker_address(raw(), index, buf.data(), buf.size());
        }
        detail::check(st);
        return std::string(buf.data());
    }

    std::size_t pending_calls() const noexcept { return sb_broker_pending_calls(raw()); }

    // The broker's report of itself: a map value (see sb_broker_report).
    Value report() const {
        sb_value *v = nullptr;
        detail::check(sb_broker_report(raw(), &v));
        return Value(v);
    }

    // The report in the Prometheus text exposition format.
    std::string report_prometheus() const {
        std::string text(4096, '\0');
        std::size_t len = 0;
        for (;;) {
            sb_status st = sb_broker_report_prometheus(raw(), text.data(), text.size(), &len);
            if (st == SB_LIMIT_EXCEEDED && len + 1 > text.size()) {
                text.resize(len + 1024);
                continue;
            }
            detail::check(st);
            text.resize(len);
            return text;
        }
    }

    // Operations the policy denied (each answered SB_ACCESS_DENIED).
    std::uint64_t access_denied() const noexcept { return sb_broker_access_denied(raw()); }

    // TLS connections closed before their handshake was done.
    std::uint64_t tls_handshake_failures() const noexcept {
        return sb_broker_tls_handshake_failures(raw());
    }

    // Pings connections silent for `interval`; one that leaves `max`
    // pings unanswered is closed as a disconnect. Defaults 120 s and 2;
    // zero turns pinging off (see sb_broker_set_ping).
    void set_ping(std::chrono::milliseconds interval, std::uint32_t max) const {
        detail::check(sb_broker_set_ping(raw(), static_cast<std::uint64_t>(interval.count()), max));
    }

    // Sets one of the broker's limits by name ("max-hello-frame",
    // "max-memory", "write-timeout-ms", ...; see sb_broker_set_limit);
    // throws Error (invalid_argument) for an unknown name or a bad value.
    void set_limit(CStr name, std::uint64_t value) const {
        detail::check(sb_broker_set_limit(raw(), name.c_str(), value));
    }

    // The current value of the broker's limit `name`.
    std::uint64_t limit(CStr name) const {
        std::uint64_t value = 0;
        detail::check(sb_broker_limit(raw(), name.c_str(), &value));
        return value;
    }

    // How many times a client went over one of the broker's limits.
    std::uint64_t limits_exceeded() const noexcept { return sb_broker_limits_exceeded(raw()); }
};

// A connection to a broker.
class Client : public detail::Handle<sb_client, sb_client_free> {
public:
    using Handle::Handle;
    // Starts connecting; `on_connect` (optional) hears the outcome.
    // Operations may be started at once.
    Client(Loop &loop, CStr address, ConnectFn on_connect = {}, const char *token = nullptr) {
        sb_client *c = nullptr;
        detail::check(detail::register_optional(
            std::move(on_connect), &detail::run_connect,
            [&](sb_connect_fn f, void *user, sb_free_fn free_user) {
                return sb_client_connect(loop.raw(), address.c_str(), token, f, user, free_user,
                                         &c);
            }));
        Handle::operator=(Handle(c));
    }

    // Connects with `options` (token, client name).
    Client(Loop &loop, CStr address, const ClientOptions &options, ConnectFn on_connect = {}) {
        sb_client *c = nullptr;
        detail::check(detail::register_optional(
            std::move(on_connect), &detail::run_connect,
            [&](sb_connect_fn f, void *user, sb_free_fn free_user) {
                return sb_client_connect_with(loop.raw(), address.c_str(), options.raw(), f,
                                              user, free_user, &c);
            }));
        Handle::operator=(Handle(c));
    }

    void on_disconnect(DoneFn f) const {
        detail::check(detail::register_fn(std::move(f), &detail::run_done,
                                          [&](sb_done_fn c, void *user, sb_free_fn free_user) {
                                              return sb_client_on_disconnect(raw(), c, user,
                                                                             free_user);
                                          }));
    }

    void on_session_gone(SessionGoneFn f) const {
        detail::check(detail::register_fn(
            std::move(f), &detail::run_session_gone,
            [&](sb_session_gone_fn c, void *user, sb_free_fn free_user) {
                return sb_client_on_session_gone(raw(), c, user, free_user);
            }));
    }

    // Sets what receives messages of application-defined kinds
    // (replacing the previous handler).
    void on_unknown_message(UnknownMessageFn f) const {
        detail::check(detail::register_fn(
            std::move(f), &detail::run_unknown_message,
            [&](sb_unknown_message_fn c, void *user, sb_free_fn free_user) {
                return sb_client_on_unknown_message(raw(), c, user, free_user);
            }));
    }

    // Sends a message of the application-defined kind `kind` with the
    // application's `id` and `payload` bytes. The broker answers it with
    // a protocol error, which reaches on_unknown_message as kind
    // "result" with this id.
    void send_custom(CStr kind, std::uint64_t id, std::string_view payload = {}) const {
        detail::check(sb_client_send_custom(raw(), kind.c_str(), id,
                                            reinterpret_cast<const std::uint8_t *>(payload.data()),
                                            payload.size()));
    }

    void listing(ListingFn f) const {
        detail::check(detail::register_fn(std::move(f), &detail::run_listing,
                                          [&](sb_listing_fn c, void *user, sb_free_fn free_user) {
                                              return sb_client_listing(raw(), c, user, free_user);
                                          }));
    }

    // Monitors the broker's traffic (see sb_client_monitor): `tap` gets
    // each frame the broker saw as a map value; `done` (optional) the
    // broker's answer. An empty `session` monitors every session.
    void monitor(std::string_view session, bool payload, std::function<void(ValueRef event)> tap,
                 DoneFn done = nullptr) const {
        if (!tap) {
            throw Error(SB_NULL_ARGUMENT, "monitor: an empty tap handler");
        }
        std::string name(session);
        auto *fns = new detail::MonitorFns{std::move(tap), std::move(done)};
        detail::check(sb_client_monitor(raw(), name.empty() ? nullptr : name.c_str(), payload,
                                        &detail::run_tap, &detail::run_monitor_done, fns,
                                        &detail::delete_fn<detail::MonitorFns>));
    }

    // Asks the broker for its report of itself (see sb_client_stats).
    void stats(StatsFn f) const {
        detail::check(detail::register_fn(std::move(f), &detail::run_stats,
                                          [&](sb_stats_fn c, void *user, sb_free_fn free_user) {
                                              return sb_client_stats(raw(), c, user, free_user);
                                          }));
    }

    // Subscribes to `session`; `f` gets the remote stage or an error.
    inline void subscribe(CStr session, SubscribedFn f) const;

    // Subscribes to `session`, waiting up to `wait` for it to be
    // published if it is not yet; `f` runs once: with the remote stage as
    // soon as it is published, or SB_NO_SUCH_SESSION when the wait expires
    // (sb_remote_subscribe_wait).
    inline void subscribe_waiting(CStr session, std::chrono::milliseconds wait,
                                  SubscribedFn f) const;

    // Calls `method` of the session published as `session`, by name,
    // without subscribing (sb_client_call). `on_response` (empty: the
    // responses are ignored) runs for each emit and then the final
    // response (Ctx::rsp(): its kind, error() and message()); it is
    // destroyed after the last. The call runs to its end with no object
    // to hold: its final response, the client's default timeout, a
    // cancel from `on_response`, or the client closing.
    inline void call(CStr session, CStr method, ArgsRef args = ArgsRef(),
                     Handler on_response = {}) const;

    // Calls `method` of `session` by name and runs the loop until the
    // final answer (sb_client_call_sync): the return's args, or an Error
    // with the status that ended the call (SB_NO_SUCH_SESSION,
    // SB_TIMEOUT, ...). `timeout` 0: the client's default timeout, if
    // any. Throws SB_INVALID_STATE inside a callback of the loop.
    inline Args call_sync(CStr session, CStr method, ArgsRef args = ArgsRef(),
                          std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) const;

    // Withdraws a session this client published.
    void rescind(CStr session, DoneFn done = {}) const {
        detail::check(detail::register_optional(
            std::move(done), &detail::run_done,
            [&](sb_done_fn c, void *user, sb_free_fn free_user) {
                return sb_client_rescind(raw(), session.c_str(), c, user, free_user);
            }));
    }

    // Closes the connection (the object stays valid). What was accepted
    // for sending still leaves first, within the linger time; destroying
    // the last Client does the same.
    void close() const { detail::check(sb_client_close(raw())); }

    // close(), then `done` once the output left: SB_OK, or SB_TIMEOUT
    // when the linger time passed first (see sb_client_close_graceful).
    void close_gracefully(DoneFn done = {}) const {
        detail::check(detail::register_optional(
            std::move(done), &detail::run_done,
            [&](sb_done_fn c, void *user, sb_free_fn free_user) {
                return sb_client_close_graceful(raw(), c, user, free_user);
            }));
    }

    // How long a later close may take to flush (default 5000 ms).
    void set_linger(std::chrono::milliseconds linger) const {
        detail::check(sb_client_set_linger(raw(), static_cast<std::uint64_t>(linger.count())));
    }

    // The deadline of later requests that set none (neither their own
    // timeout nor an inherited one); zero turns it off, the default: long
    // calls and streams are legitimate.
    void set_default_timeout(std::chrono::milliseconds timeout) const {
        detail::check(sb_client_set_default_timeout_ms(
            raw(), static_cast<std::uint64_t>(timeout.count())));
    }

    // Pings a broker silent for `interval`; after `max` unanswered pings
    // it is taken for gone (calls end with broker_gone). Defaults 120 s
    // and 2; zero turns pinging off (see sb_client_set_ping).
    void set_ping(std::chrono::milliseconds interval, std::uint32_t max) const {
        detail::check(sb_client_set_ping(raw(), static_cast<std::uint64_t>(interval.count()), max));
    }

    // Turns reconnecting on (off by default): after a loss, wait
    // `initial` (doubling up to `max`, with jitter) and connect again to
    // the next address; `max_attempts` 0 tries forever. Every call in
    // flight at a loss ends once with broker_gone (the publisher may or
    // may not have run it); sessions are published again and
    // subscriptions renewed (see sb_client_set_reconnect).
    void set_reconnect(std::chrono::milliseconds initial, std::chrono::milliseconds max,
                       std::uint32_t max_attempts = 0) const {
        detail::check(sb_client_set_reconnect(raw(), static_cast<std::uint64_t>(initial.count()),
                                              static_cast<std::uint64_t>(max.count()),
                                              max_attempts));
    }

    // Turns reconnecting off: the next loss closes the client.
    void disable_reconnect() const { detail::check(sb_client_disable_reconnect(raw())); }

    // Adds a broker address tried in turn (reconnecting must be on).
    void add_address(CStr address) const {
        detail::check(sb_client_add_address(raw(), address.c_str()));
    }

    // Calls made while reconnecting are held (at most `limit`) or, with
    // `fail_fast`, fail at once with broker_gone.
    void set_reconnect_buffer(bool fail_fast, std::size_t limit) const {
        detail::check(sb_client_set_reconnect_buffer(raw(), fail_fast, limit));
    }

    // How long a republish retries while the name is still held, and
    // how long a renewed subscription waits for its session.
    void set_reconnect_restore(std::chrono::milliseconds republish_window,
                               std::chrono::milliseconds resubscribe_wait) const {
        detail::check(sb_client_set_reconnect_restore(
            raw(), static_cast<std::uint64_t>(republish_window.count()),
            static_cast<std::uint64_t>(resubscribe_wait.count())));
    }

    // Sets what hears of disconnects, reconnects and failed republishes
    // (replacing the previous handler).
    void on_connection_event(ConnectionEventFn f) const {
        detail::check(detail::register_fn(
            std::move(f), &detail::run_connection_event,
            [&](sb_connection_event_fn c, void *user, sb_free_fn free_user) {
                return sb_client_on_connection_event(raw(), c, user, free_user);
            }));
    }
    // Emits `signal` with `args` for `session`, which this client
    // publishes; every matching listener receives it, in order. Throws
    // SB_NOT_PUBLISHER otherwise (sb_client_emit_signal).
    void emit_signal(CStr session, CStr signal, ArgsRef args = ArgsRef()) const {
        detail::check(sb_client_emit_signal(raw(), session.c_str(), signal.c_str(), args.raw()));
    }

    // Listens for signals matching `session` and `signal` (exact,
    // "prefix*" or "*"): `f` runs for each, in order, once the broker
    // confirmed the match (`done`, optional). Returns the match's number
    // for remove_match (sb_client_add_match).
    std::uint64_t add_match(CStr session, CStr signal, SignalFn f, DoneFn done = {}) const {
        if (!f)
            throw std::invalid_argument("stagebus: a match needs a signal function");
        auto *fns = new detail::MatchFns{std::move(f), std::move(done)};
        std::uint64_t id = 0;
        detail::check(sb_client_add_match(raw(), session.c_str(), signal.c_str(),
                                          &detail::run_match_signal, &detail::run_match_done,
                                          fns, &detail::delete_fn<detail::MatchFns>, &id));
        return id;
    }

    // Ends a match: its function runs no more (sb_client_remove_match).
    void remove_match(std::uint64_t id, DoneFn done = {}) const {
        detail::check(detail::register_optional(
            std::move(done), &detail::run_done,
            [&](sb_done_fn c, void *user, sb_free_fn free_user) {
                return sb_client_remove_match(raw(), id, c, user, free_user);
            }));
    }

    // Watches the names matching `pattern` (a name, "prefix*" or "*"):
    // `f` gets the current state (SB_NAME_PRESENT each), then `done`
    // runs, then `f` gets every change. Returns the watch's number for
    // unwatch (sb_client_watch).
    std::uint64_t watch(CStr pattern, NameEventFn f, DoneFn done = {}) const {
        if (!f)
            throw std::invalid_argument("stagebus: a watch needs an event function");
        auto *fns = new detail::WatchFns{std::move(f), std::move(done)};
        std::uint64_t id = 0;
        detail::check(sb_client_watch(raw(), pattern.c_str(), &detail::run_watch_event,
                                      &detail::run_watch_done, fns,
                                      &detail::delete_fn<detail::WatchFns>, &id));
        return id;
    }

    // Ends a watch (sb_client_unwatch).
    void unwatch(std::uint64_t id, DoneFn done = {}) const {
        detail::check(detail::register_optional(
            std::move(done), &detail::run_done,
            [&](sb_done_fn c, void *user, sb_free_fn free_user) {
                return sb_client_unwatch(raw(), id, c, user, free_user);
            }));
    }

    // Answers of one-way requests served here that were dropped.
    std::uint64_t dropped_answers() const noexcept { return sb_client_dropped_answers(raw()); }
};

// A session subscribed through a client: a target for requests.
class RemoteStage : public detail::Handle<sb_remote, sb_remote_free> {
public:
    using Handle::Handle;

    void unsubscribe(DoneFn done = {}) const {
        detail::check(detail::register_optional(
            std::move(done), &detail::run_done,
            [&](sb_done_fn c, void *user, sb_free_fn free_user) {
                return sb_remote_unsubscribe(raw(), c, user, free_user);
            }));
    }

    // A one-way request: the callee runs `method`, nothing comes back
    // (sb_remote_post).
    void post(CStr method, ArgsRef args = ArgsRef()) const {
        detail::check(sb_remote_post(raw(), method.c_str(), args.raw()));
    }
};

namespace detail {
inline void run_subscribed(void *user, sb_status status, sb_remote *remote,
                           const char *message) noexcept {
    fn<SubscribedFn>(user)(status, RemoteStage(remote), message);
}
} // namespace detail

inline void Client::subscribe(CStr session, SubscribedFn f) const {
    detail::check(detail::register_fn(std::move(f), &detail::run_subscribed,
                                      [&](sb_subscribed_fn c, void *user, sb_free_fn free_user) {
                                          return sb_remote_subscribe(raw(), session.c_str(), c,
                                                                     user, free_user);
                                      }));
}

inline void Client::subscribe_waiting(CStr session, std::chrono::milliseconds wait,
                                      SubscribedFn f) const {
    if (wait.count() < 0)
        throw std::invalid_argument("stagebus: the wait must not be negative");
    const auto ms = static_cast<std::uint64_t>(wait.count());
    detail::check(detail::register_fn(std::move(f), &detail::run_subscribed,
                                      [&](sb_subscribed_fn c, void *user, sb_free_fn free_user) {
                                          return sb_remote_subscribe_wait(
                                              raw(), session.c_str(), ms, c, user, free_user);
                                      }));
}

// ---------------------------------------------------------------------
// What handlers see

class ServedRef;

// Who calls, as the broker knows the caller (Served::caller()).
struct Caller {
    // The broker's connection id of the caller.
    std::uint64_t connection = 0;
    // Known when the caller connected on a Unix socket.
    std::optional<std::uint32_t> uid, gid, pid;
    // The name of the token it presented, if named.
    std::optional<std::string> identity;
    // The name it gave itself (unverified).
    std::optional<std::string> client_name;
};

// The callee's view of a request it serves (borrowed in a handler).
class Served {
public:
    explicit Served(const sb_served *p = nullptr) noexcept : p_(p) {}
    const sb_served *raw() const noexcept { return p_; }
    explicit operator bool() const noexcept { return p_ != nullptr; }

    // The request's id in this process (distinct among live requests).
    std::uint64_t id() const noexcept { return sb_served_id(p_); }
    // The caller's id of the request (unique only in the caller's process).
    std::uint64_t caller_id() const noexcept { return sb_served_caller_id(p_); }
    // Who calls, for a request that came through a broker; none for a
    // request from this process.
    std::optional<Caller> caller() const {
        Caller c;
        c.connection = sb_served_caller_connection(p_);
        if (c.connection == 0)
            return std::nullopt;
        auto number = [&](sb_status (*get)(const sb_served *, std::uint32_t *)) {
            std::uint32_t v = 0;
            return get(p_, &v) == SB_OK ? std::optional<std::uint32_t>(v) : std::nullopt;
        };
        auto text = [&](sb_status (*get)(const sb_served *, char *, std::size_t)) {
            std::vector<char> buf(256);
            sb_status st = get(p_, buf.data(), buf.size());
            if (st == SB_LIMIT_EXCEEDED) {
                buf.resize(1 << 20);
                st = get(p_, buf.data(), buf.size());
            }
            return st == SB_OK ? std::optional<std::string>(buf.data()) : std::nullopt;
        };
        c.uid = number(sb_served_caller_uid);
        c.gid = number(sb_served_caller_gid);
        c.pid = number(sb_served_caller_pid);
        c.identity = text(sb_served_caller_identity);
        c.client_name = text(sb_served_caller_client_name);
        return c;
    }
    bool is_open() const noexcept { return sb_served_is_open(p_); }
    // False for a one-way request, whose answers are dropped.
    bool expects_answer() const noexcept { return sb_served_expects_answer(p_); }
    // The time left before the caller's deadline (zero once it passed),
    // or none without one. Requests made while serving inherit it.
    std::optional<std::chrono::milliseconds> time_left() const {
        std::int64_t ms = 0;
        detail::check(sb_served_time_left_ms(p_, &ms));
        if (ms < 0)
            return std::nullopt;
        return std::chrono::milliseconds(ms);
    }

    // An interim response: type "emit", or `kind`.
    void emit(ArgsRef args = ArgsRef()) const {
        detail::check(sb_served_emit(p_, nullptr, args.raw()));
    }
    void emit(CStr kind, ArgsRef args = ArgsRef()) const {
        detail::check(sb_served_emit(p_, kind.c_str(), args.raw()));
    }

    // The final response: type "return", or `kind`.
    void ret(ArgsRef args = ArgsRef()) const {
        detail::check(sb_served_return(p_, nullptr, args.raw()));
    }
    void ret(CStr kind, ArgsRef args) const {
        detail::check(sb_served_return(p_, kind.c_str(), args.raw()));
    }

    // Ends the request with an error for the caller.
    void fail(sb_status code, CStr message) const {
        detail::check(sb_served_fail(p_, code, message.c_str()));
    }

    // What runs if the caller cancels first.
    void on_cancel(Callback f) const {
        detail::check(detail::register_fn(std::move(f), &detail::run_notify,
                                          [&](sb_notify_fn c, void *user, sb_free_fn free_user) {
                                              return sb_served_on_cancel(p_, c, user, free_user);
                                          }));
    }

    // An owned reference, to answer after the handler returned (without
    // one, an unanswered request ends with SB_UNANSWERED).
    inline ServedRef ref() const;

protected:
    const sb_served *p_;
};

// An owned reference to a served request (Served::ref()).
class ServedRef : public Served {
public:
    ServedRef() noexcept = default;
    explicit ServedRef(sb_served *owned) noexcept : Served(owned) {}
    ~ServedRef() { sb_served_free(const_cast<sb_served *>(p_)); }
    ServedRef(ServedRef &&o) noexcept : Served(std::exchange(o.p_, nullptr)) {}
    ServedRef &operator=(ServedRef &&o) noexcept {
        if (this != &o) {
            sb_served_free(const_cast<sb_served *>(std::exchange(p_, std::exchange(o.p_, nullptr))));
        }
        return *this;
    }
    ServedRef(const ServedRef &) = delete;
    ServedRef &operator=(const ServedRef &) = delete;
};

inline ServedRef Served::ref() const {
    return ServedRef(detail::check_ptr(sb_served_ref(p_), SB_NULL_ARGUMENT));
}

// A response, in a response handler (borrowed).
class Response {
public:
    explicit Response(const sb_response *p = nullptr) noexcept : p_(p) {}
    const sb_response *raw() const noexcept { return p_; }
    explicit operator bool() const noexcept { return p_ != nullptr; }

    std::uint64_t id() const noexcept { return sb_response_id(p_); }
    // "emit", "return", "error" or the callee's own type.
    std::string_view kind() const noexcept { return sb_response_kind(p_); }
    bool is_final() const noexcept { return sb_response_is_final(p_); }
    // The error code of an error response, SB_OK otherwise.
    sb_status error() const noexcept { return sb_response_error(p_); }
    // The error message of an error response, "" otherwise.
    std::string_view message() const noexcept { return sb_response_message(p_); }

    // Answers an emit: runs `method` of the callee in the same request.
    void recall(CStr method, ArgsRef args = ArgsRef()) const {
        detail::check(sb_response_recall(p_, method.c_str(), args.raw()));
    }
    // Cancels the request; whether it was open.
    bool cancel() const noexcept { return sb_response_cancel(p_); }

private:
    const sb_response *p_;
};

// What a handler sees (borrowed for the call).
class Ctx {
public:
    explicit Ctx(const sb_ctx *p) noexcept : p_(p) {}
    const sb_ctx *raw() const noexcept { return p_; }

    // The method (downward) or response type (upward).
    std::string_view name() const noexcept { return sb_ctx_name(p_); }
    ArgsRef args() const noexcept { return ArgsRef(sb_ctx_args(p_)); }
    // The request being served (empty if none).
    Served req() const noexcept { return Served(sb_ctx_req(p_)); }
    // The response being handled (empty in method handlers).
    Response rsp() const noexcept { return Response(sb_ctx_rsp(p_)); }
    // The stage whose handler runs (borrowed; NULL if none).
    const sb_stage *stage() const noexcept { return sb_ctx_stage(p_); }

private:
    const sb_ctx *p_;
};

namespace detail {

// Ends the request being served with `code` and `message`, as a failing
// C handler would; the status to return to the library.
inline int32_t handler_failed(const sb_ctx *ctx, sb_status code, const char *message) noexcept {
    const sb_served *req = sb_ctx_req(ctx);
    if (req != nullptr && sb_served_is_open(req) && sb_served_fail(req, code, message) == SB_OK) {
        return SB_OK;
    }
    return static_cast<int32_t>(code); // nobody to tell: the library reports it
}

inline int32_t run_handler(void *user, const sb_ctx *ctx) noexcept {
    try {
        Ctx c(ctx);
        fn<Handler>(user)(c);
        return SB_OK;
    } catch (const Error &e) {
        return handler_failed(ctx, e.status() == SB_OK ? SB_HANDLER_FAILED : e.status(),
                              e.detail().c_str());
    } catch (const std::exception &e) {
        return handler_failed(ctx, SB_HANDLER_FAILED, e.what());
    } catch (...) {
        return handler_failed(ctx, SB_HANDLER_FAILED, "unknown C++ exception");
    }
}

} // namespace detail

// ---------------------------------------------------------------------
// Stages and requests

class Client;

// A named table of handlers.
class Stage : public detail::Handle<sb_stage, sb_stage_free> {
public:
    using Handle::Handle;
    Stage(Loop &loop, CStr name) {
        sb_stage *s = nullptr;
        detail::check(sb_stage_new(loop.raw(), name.c_str(), &s));
        Handle::operator=(Handle(s));
    }

    // The stage's name (borrowed from the stage).
    std::string_view name() const {
        const char *p = nullptr;
        std::size_t len = 0;
        detail::check(sb_stage_name(raw(), &p, &len));
        return std::string_view(p, len);
    }

    // Registers (or replaces) the handler `name`: a method, a response
    // handler (on_return, on_<role>_<type>), on_my_<type>, on_cancel.
    Stage &on(CStr name, Handler f) {
        detail::check(detail::register_fn(std::move(f), &detail::run_handler,
                                          [&](sb_handler_fn c, void *user, sb_free_fn free_user) {
                                              return sb_stage_on(raw(), name.c_str(), c, user,
                                                                 free_user);
                                          }));
        return *this;
    }

    // Marks what the handler(s) of method `name` are for: a request
    // method (SB_HANDLER_METHOD, the default), reached by recall only
    // (SB_HANDLER_RECALL_ONLY, a dialogue's answer), or not a method at
    // all (SB_HANDLER_INTERNAL, e.g. a role handler). Other programs
    // reach only exported methods by request, and those plus the
    // recall-only ones by recall; anything else is no_such_method.
    Stage &set_kind(CStr name, sb_handler_kind kind) {
        detail::check(sb_stage_set_kind(raw(), name.c_str(), static_cast<std::uint32_t>(kind)));
        return *this;
    }

    // Publishes the stage through `client` as `session`, exporting
    // `methods`, or when empty the stage's request methods (its
    // SB_HANDLER_METHOD names; never on_cancel, on_my_<type> or a name
    // marked otherwise with set_kind).
    void publish(const Client &client, CStr session, const std::vector<std::string> &methods,
                 DoneFn done = {}) const {
        std::vector<const char *> names;
        names.reserve(methods.size());
        for (const std::string &m : methods) {
            names.push_back(m.c_str());
        }
        detail::check(detail::register_optional(
            std::move(done), &detail::run_done,
            [&](sb_done_fn c, void *user, sb_free_fn free_user) {
                return sb_stage_publish(raw(), client.raw(), session.c_str(), names.data(),
                                        names.size(), c, user, free_user);
            }));
    }

    // publish() in a name mode: SB_NAME_QUEUE stands by until the owner
    // goes; SB_NAME_BALANCE shares the calls. The first publisher fixes
    // the mode (another is SB_NAME_MODE_CONFLICT; sb_stage_publish_mode).
    void publish(const Client &client, CStr session, const std::vector<std::string> &methods,
                 sb_name_mode mode, DoneFn done = {}) const {
        std::vector<const char *> names;
        names.reserve(methods.size());
        for (const std::string &m : methods) {
            names.push_back(m.c_str());
        }
        detail::check(detail::register_optional(
            std::move(done), &detail::run_done,
            [&](sb_done_fn c, void *user, sb_free_fn free_user) {
                return sb_stage_publish_mode(raw(), client.raw(), session.c_str(), names.data(),
                                             names.size(), static_cast<std::uint32_t>(mode), c,
                                             user, free_user);
            }));
    }
};

class Request;

// A request being built; send() consumes it.
class RequestBuilder : public detail::Handle<sb_request_builder, sb_request_builder_free> {
public:
    using Handle::Handle;
    RequestBuilder(const Stage &to, CStr method)
        : Handle(detail::check_ptr(sb_request_to_stage(to.raw(), method.c_str()),
                                   SB_INVALID_ARGUMENT)) {}
    RequestBuilder(const RemoteStage &to, CStr method)
        : Handle(detail::check_ptr(sb_request_to_remote(to.raw(), method.c_str()),
                                   SB_INVALID_ARGUMENT)) {}

    RequestBuilder &args(ArgsRef args) {
        detail::check(sb_request_builder_args(raw(), args.raw()));
        return *this;
    }
    // Handles responses of type `kind` ("return", "emit", "error", ...).
    RequestBuilder &on(CStr kind, Handler f) {
        detail::check(detail::register_fn(std::move(f), &detail::run_handler,
                                          [&](sb_handler_fn c, void *user, sb_free_fn free_user) {
                                              return sb_request_builder_on(raw(), kind.c_str(), c,
                                                                           user, free_user);
                                          }));
        return *this;
    }
    // Handles responses of type `kind` with the requesting stage's
    // handler `method`.
    RequestBuilder &on_method(CStr kind, CStr method) {
        detail::check(sb_request_builder_on_method(raw(), kind.c_str(), method.c_str()));
        return *this;
    }
    // Handles every response type nothing else handles.
    RequestBuilder &fallback(Handler f) {
        detail::check(detail::register_fn(std::move(f), &detail::run_handler,
                                          [&](sb_handler_fn c, void *user, sb_free_fn free_user) {
                                              return sb_request_builder_fallback(raw(), c, user,
                                                                                 free_user);
                                          }));
        return *this;
    }
    RequestBuilder &role(CStr role) {
        detail::check(sb_request_builder_role(raw(), role.c_str()));
        return *this;
    }
    RequestBuilder &timeout_ms(std::uint64_t ms) {
        detail::check(sb_request_builder_timeout_ms(raw(), ms));
        return *this;
    }
    RequestBuilder &parent(const Served &parent) {
        detail::check(sb_request_builder_parent(raw(), parent.raw()));
        return *this;
    }

    // Sends the request (consuming the builder, also on failure).
    inline Request send();
};

// The caller's handle on a request; destroying it cancels the request if
// it is still open. Destroyed before the loop runs again after send(), it
// never reaches its callee, local or remote; later, the callee may have
// started it and then sees the cancel.
class Request : public detail::Handle<sb_request, sb_request_free> {
public:
    using Handle::Handle;

    static RequestBuilder to(const Stage &stage, CStr method) {
        return RequestBuilder(stage, method);
    }
    static RequestBuilder to(const RemoteStage &remote, CStr method) {
        return RequestBuilder(remote, method);
    }

    std::uint64_t id() const noexcept { return sb_request_id(raw()); }
    bool is_open() const noexcept { return sb_request_is_open(raw()); }
    // Cancels the request and what was made on its behalf; whether it
    // was open.
    bool cancel() const noexcept { return sb_request_cancel(raw()); }
};

inline Request RequestBuilder::send() {
    sb_request *out = nullptr;
    detail::check(sb_request_send(release(), &out));
    return Request(out);
}

inline void Client::call(CStr session, CStr method, ArgsRef args, Handler on_response) const {
    detail::check(detail::register_optional(
        std::move(on_response), &detail::run_handler,
        [&](sb_handler_fn c, void *user, sb_free_fn free_user) {
            return sb_client_call(raw(), session.c_str(), method.c_str(), args.raw(), c, user,
                                  free_user);
        }));
}

inline Args Client::call_sync(CStr session, CStr method, ArgsRef args,
                              std::chrono::milliseconds timeout) const {
    if (timeout.count() < 0)
        throw std::invalid_argument("stagebus: the timeout must not be negative");
    sb_args *reply = nullptr;
    detail::check(sb_client_call_sync(raw(), session.c_str(), method.c_str(), args.raw(),
                                      static_cast<std::uint64_t>(timeout.count()), &reply));
    return Args(reply);
}

} // namespace stagebus

#endif // STAGEBUS_HPP
