/*
 * robustness.c: the C API conventions under abuse.
 *
 *  1. A NULL for any pointer argument of any entry point gives
 *     SB_NULL_ARGUMENT (or NULL / 0 / false / "" where the function
 *     returns no status) and no crash; out-params stay untouched; a
 *     registration that fails still calls its free_user, once, at once;
 *     an argument whose ownership the call takes is freed even then.
 *  2. Strings that are not UTF-8 give SB_INVALID_UTF8.
 *  3. Every _free(NULL) is a no-op.
 *  4. A builder call that fails leaves the builder as it was.
 *  5. sb_debug_panic() comes back as SB_PANIC, and the library keeps
 *     working, also when it happens inside a handler.
 *  6. Handles freed in unusual orders (the loop first, the broker before
 *     its clients, a client before its requests, ...) with timers, posts,
 *     deferred requests and pending calls outstanding: no crash, every
 *     free_user exactly once, and nothing leaks (valgrind).
 *
 * tests/c_api.rs checks that every function of the header is named here.
 */
#define STAGEBUS_TESTING 1 /* declares sb_debug_panic */
#include "check.h"

#include <pthread.h>
#include <signal.h>

static const char bad[] = {(char)0xff, (char)0xfe, 'x', 0}; /* not UTF-8 */

/* Registering with a record that must be freed once, at once, because
 * the call fails. U names the record inside `call`. */
#define REG_FAILS(want, call)                                               \
    do {                                                                    \
        cb *U = cb_new(#call);                                              \
        CHECK_ST(call, want);                                               \
        cb_check_freed(U, 1);                                               \
        CHECK_INT(U->calls, 0);                                             \
    } while (0)

#define NULLARG(call) CHECK_ST(call, SB_NULL_ARGUMENT)
#define BADUTF8(call) CHECK_ST(call, SB_INVALID_UTF8)

static int32_t h_noop(void *user, const sb_ctx *ctx)
{
    (void)user;
    (void)ctx;
    return 0;
}

/* ---- 1-3: NULL, bad strings and free(NULL) outside handlers -------------- */

static void nulls_outside_handlers(void)
{
    sb_loop *lp = NULL, *lp_out = (sb_loop *)&lp_out;
    sb_stage *stage = NULL, *stage_out = (sb_stage *)&stage_out;
    sb_broker *broker, *broker_out = (sb_broker *)&broker_out;
    sb_client *client, *client_out = (sb_client *)&client_out;
    sb_waker *waker;
    sb_request_builder *b;
    sb_request *req_out = (sb_request *)&req_out;
    sb_args *a = sb_args_new();
    sb_value *list = sb_value_new_list(), *v = sb_value_new_int(3);
    const char *listen[1];
    const char *null_listen[1] = {NULL};
    const char *methods[2] = {"m", NULL};
    char addr[256], buf[64];
    uint64_t id = 777;
    int64_t i = 42;
    double d = 2.5;
    bool flag = true;
    const char *p = NULL, *key = NULL;
    const uint8_t *bp = NULL;
    size_t len = 99;
    const sb_value *vp = NULL;

    /* library */
    CHECK(sb_version() != NULL && sb_version()[0] != '\0');
    CHECK(sb_last_error() != NULL);

    /* loop */
    NULLARG(sb_loop_new(NULL));
    CHECK_OK(sb_loop_new(&lp));
    NULLARG(sb_loop_dispatch(NULL));
    NULLARG(sb_loop_run(NULL));
    NULLARG(sb_loop_run_for(NULL, 1));
    NULLARG(sb_loop_stop(NULL));
    CHECK_INT(sb_loop_fd(NULL), -1);
    CHECK_INT(sb_loop_timeout_ms(NULL), -1);
    NULLARG(sb_loop_cancel_timer(NULL, 1));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_loop_add_timer(NULL, 1, cb_loop, U, cb_free, &id));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_loop_add_timer(lp, 1, NULL, U, cb_free, &id));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_loop_add_timer(lp, 1, cb_loop, U, cb_free, NULL));
    CHECK_INT(id, 777);
    /* a host that watches the loop's fds one by one */
    REG_FAILS(SB_NULL_ARGUMENT, sb_loop_watch_fds(NULL, cb_watch, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT, sb_loop_watch_fds(lp, NULL, U, cb_free));
    NULLARG(sb_loop_unwatch_fds(NULL));
    NULLARG(sb_loop_dispatch_fd(NULL, 0, SB_FD_READ));
    CHECK_ST(sb_loop_dispatch_fd(lp, 0, SB_FD_READ), SB_INVALID_STATE);
    CHECK_OK(sb_loop_unwatch_fds(lp)); /* nothing watched: nothing to do */
    {
        cb *w = cb_new("watch");
        CHECK_OK(sb_loop_watch_fds(lp, cb_watch, w, cb_free));
        CHECK(w->id == 2); /* the loop's wake-up and alarm */
        CHECK_ST(sb_loop_dispatch_fd(lp, -1, SB_FD_READ), SB_INVALID_ARGUMENT);
        CHECK_ST(sb_loop_dispatch_fd(lp, 0, 4), SB_INVALID_ARGUMENT);
        /* Not one of the loop's fds: the rest of the turn runs alone. */
        CHECK_OK(sb_loop_dispatch_fd(lp, 0, SB_FD_READ | SB_FD_WRITE));
        CHECK_OK(sb_loop_unwatch_fds(lp));
        CHECK(w->id == 0 && w->calls == 4);
        cb_check_freed(w, 1);
    }
    {
        /* Freeing the loop ends the watch without telling the host. */
        sb_loop *watched_loop = NULL;
        cb *w = cb_new("watch, freed with its loop");
        CHECK_OK(sb_loop_new(&watched_loop));
        CHECK_OK(sb_loop_watch_fds(watched_loop, cb_watch, w, cb_free));
        sb_loop_free(watched_loop);
        CHECK(w->id == 2 && w->calls == 2);
        cb_check_freed(w, 1);
    }
    /* Unix signals taken on the loop */
    {
        const int32_t usr1[1] = {SIGUSR1}, kill_[1] = {SIGKILL}, none[1] = {0};
        sigset_t now;
        cb *s = cb_new("unix signals");
        REG_FAILS(SB_NULL_ARGUMENT,
                  sb_loop_on_unix_signals(NULL, usr1, 1, cb_unix_signal, U, cb_free));
        REG_FAILS(SB_NULL_ARGUMENT,
                  sb_loop_on_unix_signals(lp, NULL, 1, cb_unix_signal, U, cb_free));
        REG_FAILS(SB_NULL_ARGUMENT, sb_loop_on_unix_signals(lp, usr1, 1, NULL, U, cb_free));
        REG_FAILS(SB_INVALID_ARGUMENT,
                  sb_loop_on_unix_signals(lp, NULL, 0, cb_unix_signal, U, cb_free));
        REG_FAILS(SB_INVALID_ARGUMENT,
                  sb_loop_on_unix_signals(lp, kill_, 1, cb_unix_signal, U, cb_free));
        REG_FAILS(SB_INVALID_ARGUMENT,
                  sb_loop_on_unix_signals(lp, none, 1, cb_unix_signal, U, cb_free));
        NULLARG(sb_loop_clear_unix_signals(NULL));
        CHECK_OK(sb_loop_clear_unix_signals(lp)); /* none: nothing to do */
        CHECK_OK(sb_loop_on_unix_signals(lp, usr1, 1, cb_unix_signal, s, cb_free));
        CHECK(pthread_sigmask(SIG_BLOCK, NULL, &now) == 0 && sigismember(&now, SIGUSR1));
        CHECK(raise(SIGUSR1) == 0); /* this thread: the loop's */
        CHECK_OK(sb_loop_run(lp)); /* the signal function stops it */
        CHECK(s->calls == 1 && s->id == SIGUSR1);
        CHECK_OK(sb_loop_clear_unix_signals(lp));
        cb_check_freed(s, 1);
        CHECK(pthread_sigmask(SIG_BLOCK, NULL, &now) == 0 && !sigismember(&now, SIGUSR1));
    }
    CHECK(sb_loop_waker(NULL) == NULL);
    NULLARG(sb_waker_wake(NULL));
    REG_FAILS(SB_NULL_ARGUMENT, sb_waker_post(NULL, cb_loop, U, cb_free));
    waker = sb_loop_waker(lp);
    CHECK(waker != NULL);
    REG_FAILS(SB_NULL_ARGUMENT, sb_waker_post(waker, NULL, U, cb_free));
    sb_waker_free(waker);

    /* broker */
    listen[0] = "tcp://127.0.0.1:0";
    NULLARG(sb_broker_new(NULL, listen, 1, NULL, &broker_out));
    NULLARG(sb_broker_new(lp, NULL, 1, NULL, &broker_out));
    NULLARG(sb_broker_new(lp, null_listen, 1, NULL, &broker_out));
    NULLARG(sb_broker_new(lp, listen, 1, NULL, NULL));
    CHECK_ST(sb_broker_new(lp, NULL, 0, NULL, &broker_out),
             SB_INVALID_ARGUMENT);
    listen[0] = bad;
    BADUTF8(sb_broker_new(lp, listen, 1, NULL, &broker_out));
    listen[0] = "tcp://127.0.0.1:0";
    BADUTF8(sb_broker_new(lp, listen, 1, bad, &broker_out));
    CHECK(broker_out == (sb_broker *)&broker_out);
    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    CHECK_INT(sb_broker_address_count(NULL), 0);
    NULLARG(sb_broker_address(NULL, 0, buf, sizeof buf));
    NULLARG(sb_broker_address(broker, 0, NULL, 64));
    CHECK_INT(sb_broker_pending_calls(NULL), 0);
    CHECK_INT(sb_broker_access_denied(NULL), 0);
    CHECK_INT(sb_broker_tls_handshake_failures(NULL), 0);
    {
        sb_broker_options *bo = NULL;
        sb_client_options *co = NULL;
        NULLARG(sb_broker_options_new(NULL));
        sb_broker_options_free(NULL);
        NULLARG(sb_broker_options_set_token(NULL, "t"));
        NULLARG(sb_broker_options_add_named_token(NULL, "n", "s"));
        NULLARG(sb_broker_options_set_socket_mode(NULL, 0600));
        NULLARG(sb_broker_options_set_socket_group(NULL, "0"));
        NULLARG(sb_broker_options_set_policy_file(NULL, NULL));
        NULLARG(sb_broker_options_set_tls_cert(NULL, "c", "k"));
        NULLARG(sb_broker_options_set_tls_client_ca(NULL, "ca"));
        CHECK_OK(sb_broker_options_new(&bo));
        BADUTF8(sb_broker_options_set_tls_cert(bo, bad, "k"));
        NULLARG(sb_broker_options_set_federation(NULL, "nats://127.0.0.1:4222", "b1", NULL));
        NULLARG(sb_broker_options_set_federation(bo, "nats://127.0.0.1:4222", NULL, NULL));
        BADUTF8(sb_broker_options_set_federation(bo, bad, "b1", NULL));
        BADUTF8(sb_broker_options_set_federation(bo, "nats://127.0.0.1:4222", bad, NULL));
        NULLARG(sb_broker_options_set_nats_credentials(NULL, "u", "p", NULL));
        CHECK_ST(sb_broker_options_set_nats_credentials(bo, NULL, NULL, "t"), SB_INVALID_STATE);
        CHECK_ST(sb_broker_options_set_nats_nkey(bo, "fed.nk"), SB_INVALID_STATE);
        CHECK_ST(sb_broker_options_set_nats_tls(bo, "ca.pem", NULL, NULL), SB_INVALID_STATE);
        CHECK_ST(sb_broker_options_set_federation_heartbeat(bo, 500, 2000), SB_INVALID_STATE);
        CHECK_ST(sb_broker_options_set_federation_sys_events(bo, true), SB_INVALID_STATE);
        NULLARG(sb_broker_options_set_federation_sys_events(NULL, true));
        NULLARG(sb_broker_options_set_federation_heartbeat(NULL, 500, 2000));
        CHECK_OK(sb_broker_options_set_federation(bo, "nats://127.0.0.1:4222", "b1", NULL));
        CHECK_ST(sb_broker_options_set_federation_heartbeat(bo, 0, 2000), SB_INVALID_ARGUMENT);
        CHECK_ST(sb_broker_options_set_federation_heartbeat(bo, 500, 0), SB_INVALID_ARGUMENT);
        CHECK_ST(sb_broker_options_set_federation_heartbeat(bo, 2000, 500), SB_INVALID_ARGUMENT);
        CHECK_ST(sb_broker_options_set_federation_heartbeat(bo, UINT64_MAX, UINT64_MAX),
                 SB_INVALID_ARGUMENT);
        CHECK_OK(sb_broker_options_set_federation_heartbeat(bo, 100, 900));
        CHECK_OK(sb_broker_options_set_federation_sys_events(bo, true));
        CHECK_OK(sb_broker_options_set_federation_sys_events(bo, false));
        BADUTF8(sb_broker_options_set_nats_credentials(bo, bad, "p", NULL));
        CHECK_ST(sb_broker_options_set_nats_credentials(bo, "u", NULL, NULL), SB_INVALID_ARGUMENT);
        NULLARG(sb_broker_options_set_nats_tls(NULL, "ca.pem", NULL, NULL));
        BADUTF8(sb_broker_options_set_nats_tls(bo, bad, NULL, NULL));
        CHECK_ST(sb_broker_options_set_nats_tls(bo, NULL, "c.pem", NULL), SB_INVALID_ARGUMENT);
        NULLARG(sb_broker_options_set_nats_nkey(NULL, "fed.nk"));
        BADUTF8(sb_broker_options_set_nats_nkey(bo, bad));
        CHECK_ST(sb_broker_options_set_nats_nkey(bo, "/nonexistent/fed.nk"), SB_INVALID_ARGUMENT);
        CHECK_OK(sb_broker_options_set_federation(bo, NULL, NULL, NULL));
        NULLARG(sb_broker_options_add_named_token(bo, NULL, "s"));
        BADUTF8(sb_broker_options_set_token(bo, bad));
        NULLARG(sb_broker_new_with(NULL, listen, 1, bo, &broker_out));
        NULLARG(sb_broker_new_with(lp, listen, 1, bo, NULL));
        sb_broker_options_free(bo);
        NULLARG(sb_client_options_new(NULL));
        sb_client_options_free(NULL);
        NULLARG(sb_client_options_set_token(NULL, "t"));
        NULLARG(sb_client_options_set_name(NULL, "n"));
        NULLARG(sb_client_options_set_tls_ca(NULL, "ca"));
        NULLARG(sb_client_options_set_tls_cert(NULL, "c", "k"));
        CHECK_OK(sb_client_options_new(&co));
        BADUTF8(sb_client_options_set_name(co, bad));
        BADUTF8(sb_client_options_set_tls_ca(co, bad));
        REG_FAILS(SB_NULL_ARGUMENT,
                  sb_client_connect_with(lp, NULL, co, cb_connected, U,
                                         cb_free, &client_out));
        sb_client_options_free(co);
    }

    /* client */
    REG_FAILS(SB_NULL_ARGUMENT, sb_client_connect(NULL, addr, NULL,
                                                  cb_connected, U, cb_free,
                                                  &client_out));
    REG_FAILS(SB_NULL_ARGUMENT, sb_client_connect(lp, NULL, NULL,
                                                  cb_connected, U, cb_free,
                                                  &client_out));
    REG_FAILS(SB_NULL_ARGUMENT, sb_client_connect(lp, addr, NULL,
                                                  cb_connected, U, cb_free,
                                                  NULL));
    REG_FAILS(SB_INVALID_UTF8, sb_client_connect(lp, bad, NULL, cb_connected,
                                                 U, cb_free, &client_out));
    REG_FAILS(SB_INVALID_UTF8, sb_client_connect(lp, addr, bad, cb_connected,
                                                 U, cb_free, &client_out));
    CHECK(client_out == (sb_client *)&client_out);
    client = connect_client(lp, addr, NULL);
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_client_on_disconnect(NULL, cb_done, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_client_on_disconnect(client, NULL, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_client_on_session_gone(NULL, cb_session_gone, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_client_on_session_gone(client, NULL, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_client_listing(NULL, cb_listing, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT, sb_client_listing(client, NULL, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_client_rescind(NULL, "S", cb_done, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_client_rescind(client, NULL, cb_done, U, cb_free));
    REG_FAILS(SB_INVALID_UTF8,
              sb_client_rescind(client, bad, cb_done, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_client_on_unknown_message(NULL, cb_unknown, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_client_on_unknown_message(client, NULL, U, cb_free));
    NULLARG(sb_client_send_custom(NULL, "k", 1, (const uint8_t *)"x", 1));
    NULLARG(sb_client_send_custom(client, NULL, 1, (const uint8_t *)"x", 1));
    NULLARG(sb_client_send_custom(client, "k", 1, NULL, 2));
    NULLARG(sb_client_call(NULL, "S", "m", NULL, NULL, NULL, NULL));
    NULLARG(sb_client_call(client, NULL, "m", NULL, NULL, NULL, NULL));
    NULLARG(sb_client_call(client, "S", NULL, NULL, NULL, NULL, NULL));
    NULLARG(sb_client_call_sync(NULL, "S", "m", NULL, 0, NULL));
    NULLARG(sb_client_call_sync(client, NULL, "m", NULL, 0, NULL));
    NULLARG(sb_client_call_sync(client, "S", NULL, NULL, 0, NULL));
    BADUTF8(sb_client_send_custom(client, bad, 1, NULL, 0));
    NULLARG(sb_client_close(NULL));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_client_close_graceful(NULL, cb_done, U, cb_free));
    NULLARG(sb_client_set_linger(NULL, 100));
    NULLARG(sb_client_set_default_timeout_ms(NULL, 100));
    NULLARG(sb_client_set_ping(NULL, 100, 2));
    NULLARG(sb_client_set_reconnect(NULL, 100, 200, 0));
    NULLARG(sb_client_disable_reconnect(NULL));
    NULLARG(sb_client_add_address(NULL, "unix:/nowhere"));
    NULLARG(sb_client_set_reconnect_buffer(NULL, false, 1));
    NULLARG(sb_client_set_reconnect_restore(NULL, 1, 1));
    /* stats, monitor, logging, limits */
    {
        sb_value *report = NULL;
        char text[8];
        size_t len = 0;
        uint64_t n = 0;
        NULLARG(sb_broker_report(NULL, &report));
        NULLARG(sb_broker_report(broker, NULL));
        NULLARG(sb_broker_report_prometheus(NULL, text, sizeof text, &len));
        NULLARG(sb_broker_report_prometheus(broker, NULL, 0, &len));
        NULLARG(sb_broker_set_limit(NULL, "max-frame", 1024));
        NULLARG(sb_broker_set_limit(broker, NULL, 1024));
        NULLARG(sb_broker_limit(NULL, "max-frame", &n));
        NULLARG(sb_broker_limit(broker, "max-frame", NULL));
        CHECK_INT(sb_broker_limits_exceeded(NULL), 0);
        REG_FAILS(SB_NULL_ARGUMENT, sb_client_stats(NULL, NULL, U, cb_free));
        REG_FAILS(SB_NULL_ARGUMENT, sb_client_stats(client, NULL, U, cb_free));
        REG_FAILS(SB_NULL_ARGUMENT,
                  sb_client_monitor(NULL, NULL, false, NULL, NULL, U, cb_free));
        REG_FAILS(SB_NULL_ARGUMENT,
                  sb_client_monitor(client, NULL, false, NULL, cb_done, U, cb_free));
        REG_FAILS(SB_INVALID_ARGUMENT, sb_set_log_handler(NULL, 0, U, cb_free));
        CHECK_OK(sb_set_log_handler(NULL, SB_LOG_ERROR, NULL, NULL));
    }
    /* signals, one-way calls, watches, name modes */
    {
        uint64_t id = 0;
        NULLARG(sb_client_emit_signal(NULL, "S", "sig", NULL));
        NULLARG(sb_client_emit_signal(client, NULL, "sig", NULL));
        NULLARG(sb_client_emit_signal(client, "S", NULL, NULL));
        REG_FAILS(SB_NULL_ARGUMENT,
                  sb_client_add_match(NULL, "*", "*", NULL, NULL, U, cb_free, &id));
        REG_FAILS(SB_NULL_ARGUMENT,
                  sb_client_add_match(client, NULL, "*", NULL, NULL, U, cb_free, &id));
        REG_FAILS(SB_NULL_ARGUMENT,
                  sb_client_remove_match(NULL, 1, cb_done, U, cb_free));
        CHECK_INT(sb_client_dropped_answers(NULL), 0);
        REG_FAILS(SB_NULL_ARGUMENT,
                  sb_client_watch(NULL, "*", NULL, NULL, U, cb_free, &id));
        REG_FAILS(SB_NULL_ARGUMENT,
                  sb_client_watch(client, NULL, NULL, NULL, U, cb_free, &id));
        REG_FAILS(SB_NULL_ARGUMENT, sb_client_unwatch(NULL, 1, cb_done, U, cb_free));
        REG_FAILS(SB_NULL_ARGUMENT,
                  sb_stage_publish_mode(NULL, client, "S", methods, 1, 0, cb_done, U,
                                        cb_free));
        REG_FAILS(SB_NULL_ARGUMENT,
                  sb_stage_publish_mode(stage, NULL, "S", methods, 1, 0, cb_done, U,
                                        cb_free));
    }
    NULLARG(sb_client_on_connection_event(NULL, NULL, NULL, NULL));
    NULLARG(sb_broker_set_ping(NULL, 100, 2));

    /* stage */
    NULLARG(sb_stage_new(NULL, "S", &stage_out));
    NULLARG(sb_stage_new(lp, NULL, &stage_out));
    NULLARG(sb_stage_new(lp, "S", NULL));
    BADUTF8(sb_stage_new(lp, bad, &stage_out));
    CHECK(stage_out == (sb_stage *)&stage_out);
    CHECK_OK(sb_stage_new(lp, "S", &stage));
    REG_FAILS(SB_NULL_ARGUMENT, sb_stage_on(NULL, "m", h_noop, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT, sb_stage_on(stage, NULL, h_noop, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT, sb_stage_on(stage, "m", NULL, U, cb_free));
    REG_FAILS(SB_INVALID_UTF8, sb_stage_on(stage, bad, h_noop, U, cb_free));
    CHECK_ST(sb_stage_set_kind(NULL, "m", SB_HANDLER_INTERNAL), SB_NULL_ARGUMENT);
    CHECK_ST(sb_stage_set_kind(stage, NULL, SB_HANDLER_INTERNAL), SB_NULL_ARGUMENT);
    CHECK_ST(sb_stage_set_kind(stage, bad, SB_HANDLER_INTERNAL), SB_INVALID_UTF8);
    CHECK_ST(sb_stage_set_kind(stage, "m", 7), SB_INVALID_ARGUMENT);
    CHECK_ST(sb_stage_set_kind(stage, "", SB_HANDLER_METHOD), SB_INVALID_ARGUMENT);
    REG_FAILS(SB_NULL_ARGUMENT, sb_stage_publish(NULL, client, "S", NULL, 0,
                                                 cb_done, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT, sb_stage_publish(stage, NULL, "S", NULL, 0,
                                                 cb_done, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT, sb_stage_publish(stage, client, NULL, NULL,
                                                 0, cb_done, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT, sb_stage_publish(stage, client, "S", NULL, 2,
                                                 cb_done, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT, sb_stage_publish(stage, client, "S", methods,
                                                 2, cb_done, U, cb_free));
    methods[1] = bad;
    REG_FAILS(SB_INVALID_UTF8, sb_stage_publish(stage, client, "S", methods,
                                                2, cb_done, U, cb_free));
    REG_FAILS(SB_INVALID_UTF8, sb_stage_publish(stage, client, bad, NULL, 0,
                                                cb_done, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT, sb_stage_set_data(NULL, U, cb_free));
    CHECK(sb_stage_data(NULL) == NULL);
    NULLARG(sb_stage_name(NULL, &p, &len));
    NULLARG(sb_stage_name(stage, NULL, &len));
    NULLARG(sb_stage_name(stage, &p, NULL));

    /* remote */
    NULLARG(sb_remote_post(NULL, "m", NULL));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_remote_subscribe(NULL, "S", cb_subscribed, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_remote_subscribe(client, NULL, cb_subscribed, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_remote_subscribe(client, "S", NULL, U, cb_free));
    REG_FAILS(SB_INVALID_UTF8,
              sb_remote_subscribe(client, bad, cb_subscribed, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT, sb_remote_subscribe_wait(NULL, "S", 1, cb_subscribed,
                                                         U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT, sb_remote_subscribe_wait(client, NULL, 1,
                                                         cb_subscribed, U,
                                                         cb_free));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_remote_subscribe_wait(client, "S", 1, NULL, U, cb_free));
    REG_FAILS(SB_INVALID_UTF8, sb_remote_subscribe_wait(client, bad, 1,
                                                        cb_subscribed, U,
                                                        cb_free));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_remote_unsubscribe(NULL, cb_done, U, cb_free));

    /* requests */
    CHECK(sb_request_to_stage(NULL, "m") == NULL);
    CHECK(sb_request_to_stage(stage, NULL) == NULL);
    CHECK(sb_request_to_stage(stage, bad) == NULL);
    CHECK(sb_request_to_remote(NULL, "m") == NULL);
    NULLARG(sb_request_builder_args(NULL, NULL));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_request_builder_on(NULL, "return", h_noop, U, cb_free));
    NULLARG(sb_request_builder_on_method(NULL, "return", "m"));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_request_builder_fallback(NULL, h_noop, U, cb_free));
    NULLARG(sb_request_builder_role(NULL, "r"));
    NULLARG(sb_request_builder_timeout_ms(NULL, 5));
    NULLARG(sb_request_builder_parent(NULL, NULL));
    NULLARG(sb_request_send(NULL, &req_out));
    b = sb_request_to_stage(stage, "m");
    CHECK(b != NULL);
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_request_builder_on(b, NULL, h_noop, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_request_builder_on(b, "return", NULL, U, cb_free));
    REG_FAILS(SB_INVALID_UTF8,
              sb_request_builder_on(b, bad, h_noop, U, cb_free));
    NULLARG(sb_request_builder_on_method(b, NULL, "m"));
    NULLARG(sb_request_builder_on_method(b, "return", NULL));
    BADUTF8(sb_request_builder_on_method(b, "return", bad));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_request_builder_fallback(b, NULL, U, cb_free));
    NULLARG(sb_request_builder_role(b, NULL));
    BADUTF8(sb_request_builder_role(b, bad));
    NULLARG(sb_request_builder_parent(b, NULL));
    /* The builder survived every failure above (see builder_failures). */
    CHECK_OK(sb_request_builder_timeout_ms(b, 5));
    NULLARG(sb_request_send(b, NULL)); /* consumes b anyway */
    CHECK(req_out == (sb_request *)&req_out);
    CHECK(!sb_request_cancel(NULL));
    CHECK_INT(sb_request_id(NULL), 0);
    CHECK(!sb_request_is_open(NULL));
    REG_FAILS(SB_NULL_ARGUMENT, sb_request_set_data(NULL, U, cb_free));
    CHECK(sb_request_data(NULL) == NULL);

    /* contexts, served requests and responses (NULL handles) */
    CHECK(sb_ctx_name(NULL) != NULL && sb_ctx_name(NULL)[0] == '\0');
    CHECK(sb_ctx_args(NULL) == NULL);
    CHECK(sb_ctx_req(NULL) == NULL);
    CHECK(sb_ctx_rsp(NULL) == NULL);
    CHECK(sb_ctx_stage(NULL) == NULL);
    CHECK(sb_served_ref(NULL) == NULL);
    CHECK_INT(sb_served_id(NULL), 0);
    CHECK_INT(sb_served_caller_id(NULL), 0);
    CHECK_INT(sb_served_caller_connection(NULL), 0);
    {
        uint32_t v = 7;
        char name[8];
        NULLARG(sb_served_caller_uid(NULL, &v));
        NULLARG(sb_served_caller_gid(NULL, &v));
        NULLARG(sb_served_caller_pid(NULL, &v));
        CHECK_INT(v, 7);
        NULLARG(sb_served_caller_identity(NULL, name, sizeof name));
        NULLARG(sb_served_caller_client_name(NULL, name, sizeof name));
    }
    CHECK(!sb_served_is_open(NULL));
    CHECK(!sb_served_expects_answer(NULL));
    {
        int64_t left = 7;
        NULLARG(sb_served_time_left_ms(NULL, &left));
        CHECK_INT(left, 7);
    }
    NULLARG(sb_served_emit(NULL, NULL, NULL));
    NULLARG(sb_served_return(NULL, NULL, NULL));
    NULLARG(sb_served_fail(NULL, SB_TIMEOUT, "m"));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_served_on_cancel(NULL, cb_notify, U, cb_free));
    REG_FAILS(SB_NULL_ARGUMENT, sb_served_set_data(NULL, U, cb_free));
    CHECK(sb_served_data(NULL) == NULL);
    CHECK_INT(sb_response_id(NULL), 0);
    CHECK(sb_response_kind(NULL) != NULL && sb_response_kind(NULL)[0] == 0);
    CHECK(!sb_response_is_final(NULL));
    CHECK_ST(sb_response_error(NULL), SB_NULL_ARGUMENT);
    CHECK(sb_response_message(NULL) != NULL);
    CHECK(sb_response_data(NULL) == NULL);
    NULLARG(sb_response_recall(NULL, "m", NULL));
    CHECK(!sb_response_cancel(NULL));

    /* args */
    CHECK(sb_args_clone(NULL) == NULL);
    NULLARG(sb_args_set_null(NULL, "k"));
    NULLARG(sb_args_set_null(a, NULL));
    BADUTF8(sb_args_set_null(a, bad));
    NULLARG(sb_args_set_bool(NULL, "k", true));
    NULLARG(sb_args_set_bool(a, NULL, true));
    NULLARG(sb_args_set_int(NULL, "k", 1));
    NULLARG(sb_args_set_int(a, NULL, 1));
    NULLARG(sb_args_set_float(NULL, "k", 1.0));
    NULLARG(sb_args_set_float(a, NULL, 1.0));
    NULLARG(sb_args_set_string(NULL, "k", "v"));
    NULLARG(sb_args_set_string(a, NULL, "v"));
    NULLARG(sb_args_set_string(a, "k", NULL));
    BADUTF8(sb_args_set_string(a, "k", bad));
    BADUTF8(sb_args_set_string(a, bad, "v"));
    NULLARG(sb_args_set_string_n(NULL, "k", "v", 1));
    NULLARG(sb_args_set_string_n(a, NULL, "v", 1));
    NULLARG(sb_args_set_string_n(a, "k", NULL, 1));
    BADUTF8(sb_args_set_string_n(a, "k", bad, 2));
    BADUTF8(sb_args_set_string_n(a, bad, "v", 1));
    NULLARG(sb_args_set_bytes(NULL, "k", (const uint8_t *)"ab", 2));
    NULLARG(sb_args_set_bytes(a, NULL, (const uint8_t *)"ab", 2));
    NULLARG(sb_args_set_bytes(a, "k", NULL, 2));
    /* Bytes may be anything, also what is no UTF-8. */
    CHECK_OK(sb_args_set_bytes(a, "raw", (const uint8_t *)bad, 3));
    CHECK_OK(sb_args_set_bytes(a, "empty", NULL, 0));
    /* Ownership is taken also on failure: valgrind sees no leak. */
    NULLARG(sb_args_set_value(NULL, "k", sb_value_new_int(1)));
    NULLARG(sb_args_set_value(a, NULL, sb_value_new_string("leak?")));
    BADUTF8(sb_args_set_value(a, bad, sb_value_new_list()));
    NULLARG(sb_args_set_value(a, "k", NULL));
    CHECK_INT(sb_args_len(a), 2);
    CHECK_INT(sb_args_len(NULL), 0);
    CHECK(sb_args_get(NULL, "raw") == NULL);
    CHECK(sb_args_get(a, NULL) == NULL);
    CHECK(sb_args_get(a, bad) == NULL);
    NULLARG(sb_args_entry(NULL, 0, &key, &len, &vp));
    NULLARG(sb_args_entry(a, 0, NULL, &len, &vp));
    NULLARG(sb_args_entry(a, 0, &key, NULL, &vp));
    NULLARG(sb_args_entry(a, 0, &key, &len, NULL));
    NULLARG(sb_args_get_int(NULL, "k", &i));
    NULLARG(sb_args_get_int(a, NULL, &i));
    CHECK_OK(sb_args_set_int(a, "i", 5));
    NULLARG(sb_args_get_int(a, "i", NULL));
    NULLARG(sb_args_get_float(NULL, "i", &d));
    NULLARG(sb_args_get_float(a, NULL, &d));
    NULLARG(sb_args_get_float(a, "i", NULL));
    CHECK_OK(sb_args_set_bool(a, "b", false));
    NULLARG(sb_args_get_bool(NULL, "b", &flag));
    NULLARG(sb_args_get_bool(a, NULL, &flag));
    NULLARG(sb_args_get_bool(a, "b", NULL));
    CHECK_OK(sb_args_set_string(a, "s", "text"));
    NULLARG(sb_args_get_string(NULL, "s", &p, &len));
    NULLARG(sb_args_get_string(a, NULL, &p, &len));
    NULLARG(sb_args_get_string(a, "s", NULL, &len));
    NULLARG(sb_args_get_string(a, "s", &p, NULL));
    BADUTF8(sb_args_get_int(a, bad, &i));
    CHECK(i == 42 && d == 2.5 && flag && p == NULL && len == 99);
    CHECK(key == NULL && vp == NULL);

    /* values (the constructors without pointers cannot fail) */
    {
        sb_value *nv = sb_value_new_null();
        CHECK(sb_value_type_of(nv) == SB_VALUE_NULL);
        NULLARG(sb_args_set_value(NULL, "k", nv)); /* freed */
    }
    CHECK(sb_value_new_string(NULL) == NULL);
    CHECK(sb_value_new_string(bad) == NULL);
    CHECK(sb_value_new_string_n(NULL, 3) == NULL);
    CHECK(sb_value_new_string_n(bad, 2) == NULL);
    CHECK(sb_value_new_bytes(NULL, 3) == NULL);
    {
        sb_value *empty = sb_value_new_bytes(NULL, 0);
        CHECK(sb_value_type_of(empty) == SB_VALUE_BYTES);
        sb_value_free(empty);
    }
    CHECK(sb_value_new_map(NULL) == NULL);
    NULLARG(sb_value_list_push(NULL, sb_value_new_float(1.0))); /* freed */
    NULLARG(sb_value_list_push(list, NULL));
    CHECK_INT(sb_value_list_len(list), 0);
    CHECK(sb_value_type_of(NULL) == SB_VALUE_NULL);
    NULLARG(sb_value_bool(NULL, &flag));
    NULLARG(sb_value_int(NULL, &i));
    NULLARG(sb_value_int(v, NULL));
    NULLARG(sb_value_float(NULL, &d));
    NULLARG(sb_value_float(v, NULL));
    {
        sb_value *bv = sb_value_new_bool(true);
        sb_value *sv = sb_value_new_string("abc");
        NULLARG(sb_value_bool(bv, NULL));
        NULLARG(sb_value_bytes(NULL, &bp, &len));
        NULLARG(sb_value_bytes(sv, NULL, &len));
        NULLARG(sb_value_bytes(sv, &bp, NULL));
        sb_value_free(bv);
        sb_value_free(sv);
    }
    CHECK_INT(sb_value_list_len(NULL), 0);
    CHECK(sb_value_list_get(NULL, 0) == NULL);
    CHECK(sb_value_map(NULL) == NULL);
    CHECK(i == 42 && d == 2.5 && flag && bp == NULL && len == 99);
    OK("NULL arguments everywhere: SB_NULL_ARGUMENT or a neutral value, "
       "out-params untouched, failed registrations freed once");
    OK("strings that are not UTF-8: SB_INVALID_UTF8");

    /* 3: _free(NULL) is a no-op for every free function. */
    sb_loop_free(NULL);
    sb_waker_free(NULL);
    sb_broker_free(NULL);
    sb_client_free(NULL);
    sb_stage_free(NULL);
    sb_remote_free(NULL);
    sb_request_builder_free(NULL);
    sb_request_free(NULL);
    sb_served_free(NULL);
    sb_args_free(NULL);
    sb_value_free(NULL);
    OK("every _free(NULL) is a no-op");

    sb_value_free(v);
    sb_value_free(list);
    sb_args_free(a);
    sb_stage_free(stage);
    sb_client_free(client);
    sb_broker_free(broker);
    sb_loop_free(lp);
}

/* ---- 1-2 inside handlers: live contexts, served requests, responses ------ */

static int probe_runs;

static int32_t probe_method(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    (void)user;
    probe_runs++;
    NULLARG(sb_served_fail(req, SB_TIMEOUT, NULL));
    BADUTF8(sb_served_fail(req, SB_TIMEOUT, bad));
    BADUTF8(sb_served_emit(req, bad, NULL));
    BADUTF8(sb_served_return(req, bad, NULL));
    REG_FAILS(SB_NULL_ARGUMENT, sb_served_on_cancel(req, NULL, U, cb_free));
    /* A panic inside a handler stays inside its entry point. */
    CHECK_ST(sb_debug_panic(), SB_PANIC);
    CHECK(sb_served_is_open(req));
    CHECK_OK(sb_served_emit(req, NULL, NULL));
    return 0;
}

static int32_t probe_on_emit(void *user, const sb_ctx *ctx)
{
    const sb_response *rsp = sb_ctx_rsp(ctx);
    (void)user;
    probe_runs++;
    NULLARG(sb_response_recall(rsp, NULL, NULL));
    BADUTF8(sb_response_recall(rsp, bad, NULL));
    CHECK_OK(sb_response_recall(rsp, "finish", NULL));
    return 0;
}

static int32_t probe_finish(void *user, const sb_ctx *ctx)
{
    (void)user;
    probe_runs++;
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, NULL));
    return 0;
}

static int32_t probe_on_return(void *user, const sb_ctx *ctx)
{
    (void)user;
    (void)ctx;
    probe_runs++;
    return 0;
}

static void inside_handlers(void)
{
    sb_loop *lp = NULL;
    sb_stage *stage = NULL;
    sb_request_builder *b;
    sb_request *req = NULL;

    CHECK_OK(sb_loop_new(&lp));
    CHECK_OK(sb_stage_new(lp, "Probe", &stage));
    CHECK_OK(sb_stage_on(stage, "probe", probe_method, NULL, NULL));
    CHECK_OK(sb_stage_on(stage, "finish", probe_finish, NULL, NULL));
    b = sb_request_to_stage(stage, "probe");
    CHECK_OK(sb_request_builder_on(b, "emit", probe_on_emit, NULL, NULL));
    CHECK_OK(sb_request_builder_on(b, "return", probe_on_return, NULL, NULL));
    CHECK_OK(sb_request_send(b, &req));
    RUN_UNTIL(lp, probe_runs == 4);
    sb_request_free(req);
    sb_stage_free(stage);
    sb_loop_free(lp);
    OK("inside handlers: NULL and bad strings refused, a panic contained, "
       "the dialogue completes");
}

/* ---- 4: a failed builder call leaves the builder as it was ---------------- */

static int32_t count_return(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    (void)ctx;
    cb_alive(c);
    c->calls++;
    return 0;
}

static int32_t answer(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, NULL));
    return 0;
}

static void builder_failures(void)
{
    sb_loop *lp = NULL;
    sb_stage *stage = NULL;
    sb_request_builder *b;
    sb_request *req = NULL;
    cb *ret = cb_new("return after failed builder calls");

    CHECK_OK(sb_loop_new(&lp));
    CHECK_OK(sb_stage_new(lp, "Answer", &stage));
    CHECK_OK(sb_stage_on(stage, "m", answer, NULL, NULL));
    b = sb_request_to_stage(stage, "m");
    CHECK_OK(sb_request_builder_on(b, "return", count_return, ret, cb_free));
    NULLARG(sb_request_builder_role(b, NULL));
    BADUTF8(sb_request_builder_on_method(b, bad, "x"));
    REG_FAILS(SB_NULL_ARGUMENT,
              sb_request_builder_on(b, NULL, h_noop, U, cb_free));
    NULLARG(sb_request_builder_parent(b, NULL));
    /* Still the same builder, handlers and all. */
    cb_check_freed(ret, 0);
    CHECK_OK(sb_request_builder_timeout_ms(b, 5000));
    CHECK_OK(sb_request_send(b, &req));
    RUN_UNTIL(lp, ret->calls == 1);
    sb_request_free(req);
    cb_check_freed(ret, 1);
    sb_stage_free(stage);
    sb_loop_free(lp);
    OK("a failed builder call leaves the builder usable and unchanged");
}

/* ---- 5: panics ------------------------------------------------------------- */

static void panics(void)
{
    sb_loop *lp = NULL;
    sb_stage *stage = NULL;
    sb_request_builder *b;
    sb_request *req = NULL;
    cb *ret = cb_new("return after panic");
    int k;

    for (k = 0; k < 3; k++) {
        CHECK_ST(sb_debug_panic(), SB_PANIC);
        CHECK(strstr(sb_last_error(), "sb_debug_panic") != NULL);
    }
    CHECK_STR(sb_strerror(SB_PANIC), "panic");
    OK("sb_debug_panic() returns SB_PANIC (\"%s\")", sb_last_error());

    CHECK_OK(sb_loop_new(&lp));
    CHECK_OK(sb_stage_new(lp, "Answer", &stage));
    CHECK_OK(sb_stage_on(stage, "m", answer, NULL, NULL));
    b = sb_request_to_stage(stage, "m");
    CHECK_OK(sb_request_builder_on(b, "return", count_return, ret, cb_free));
    CHECK_OK(sb_request_send(b, &req));
    RUN_UNTIL(lp, ret->calls == 1);
    sb_request_free(req);
    sb_stage_free(stage);
    sb_loop_free(lp);
    OK("the library keeps working after panics");
}

/* ---- 6: unusual free orders ------------------------------------------------- */

typedef struct world {
    sb_loop *lp;             /* L */
    sb_broker *broker;       /* B */
    sb_client *pub;          /* P */
    sb_client *sub;          /* U */
    sb_stage *stage;         /* S */
    sb_remote *remote;       /* R */
    sb_request *remote_req;  /* Q: pending at the publisher */
    sb_request *local_req;   /* q: sent, not yet run */
    sb_request_builder *b;   /* D: never sent */
    sb_served *served;       /* F: the publisher's view of Q */
    sb_waker *waker;         /* W */
    int loop_freed;
} world;

static sb_served *hung;

static int32_t hang(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    const sb_served *req = sb_ctx_req(ctx);
    cb_alive(c);
    hung = sb_served_ref(req);
    CHECK_OK(sb_served_set_data(req, cb_new("served data"), cb_free));
    CHECK_OK(sb_served_on_cancel(req, cb_notify, cb_new("on_cancel"),
                                 cb_free));
    return 0;
}

static sb_request *pending(sb_request_builder *b)
{
    sb_request *req = NULL;
    CHECK_OK(sb_request_builder_on(b, "return", h_noop, cb_new("on return"),
                                   cb_free));
    CHECK_OK(sb_request_builder_fallback(b, h_noop, cb_new("fallback"),
                                         cb_free));
    CHECK_OK(sb_request_send(b, &req));
    CHECK_OK(sb_request_set_data(req, cb_new("request data"), cb_free));
    return req;
}

static void make_world(world *w)
{
    char addr[256];
    uint64_t id;
    sb_status st;

    memset(w, 0, sizeof *w);
    hung = NULL;
    CHECK_OK(sb_loop_new(&w->lp));
    w->broker = start_broker(w->lp, "tcp://127.0.0.1:0", NULL, addr,
                             sizeof addr);
    w->pub = connect_client(w->lp, addr, NULL);
    w->sub = connect_client(w->lp, addr, NULL);
    CHECK_OK(sb_client_on_disconnect(w->pub, cb_done, cb_new("disconnect"),
                                     cb_free));
    CHECK_OK(sb_client_on_session_gone(w->sub, cb_session_gone,
                                       cb_new("session gone"), cb_free));
    CHECK_OK(sb_stage_new(w->lp, "World", &w->stage));
    CHECK_OK(sb_stage_set_data(w->stage, cb_new("stage data"), cb_free));
    CHECK_OK(sb_stage_on(w->stage, "hang", hang, cb_new("hang"), cb_free));
    CHECK_OK(publish_wait(w->lp, w->stage, w->pub, "World", NULL, 0));
    w->remote = subscribe_wait(w->lp, w->sub, "World", &st);
    CHECK_ST(st, SB_OK);
    w->remote_req = pending(sb_request_to_remote(w->remote, "hang"));
    RUN_UNTIL(w->lp, hung != NULL);
    w->served = hung;
    /* Outstanding when the freeing starts: */
    w->local_req = pending(sb_request_to_stage(w->stage, "hang"));
    w->b = sb_request_to_stage(w->stage, "hang");
    CHECK_OK(sb_request_builder_on(w->b, "return", h_noop,
                                   cb_new("unsent on return"), cb_free));
    CHECK_OK(sb_loop_add_timer(w->lp, 60000, cb_loop, cb_new("timer"),
                               cb_free, &id));
    w->waker = sb_loop_waker(w->lp);
    CHECK_OK(sb_waker_post(w->waker, cb_loop, cb_new("post"), cb_free));
    CHECK_OK(sb_client_listing(w->sub, cb_listing, cb_new("listing"),
                               cb_free));
    CHECK_OK(sb_client_on_unknown_message(w->sub, cb_unknown,
                                          cb_new("unknown message"),
                                          cb_free));
    CHECK_OK(sb_client_send_custom(w->sub, "frob", 1, NULL, 0));
}

static void free_one(world *w, char which)
{
    switch (which) {
    case 'L':
        sb_loop_free(w->lp);
        w->loop_freed = 1;
        break;
    case 'B': sb_broker_free(w->broker); break;
    case 'P': sb_client_free(w->pub); break;
    case 'U': sb_client_free(w->sub); break;
    case 'S': sb_stage_free(w->stage); break;
    case 'R': sb_remote_free(w->remote); break;
    case 'Q': sb_request_free(w->remote_req); break;
    case 'q': sb_request_free(w->local_req); break;
    case 'D': sb_request_builder_free(w->b); break;
    case 'F': sb_served_free(w->served); break;
    case 'W':
        /* A post after the loop is gone is refused, and freed at once. */
        {
            cb *late = cb_new("late post");
            CHECK_ST(sb_waker_post(w->waker, cb_loop, late, cb_free),
                     w->loop_freed ? SB_INVALID_STATE : SB_OK);
            if (w->loop_freed)
                cb_check_freed(late, 1);
        }
        sb_waker_free(w->waker);
        break;
    default: FAILF("no handle '%c'", which);
    }
}

static void free_orders(void)
{
    static const char *const orders[] = {
        "LBPUSRQqDFW", /* the loop first */
        "WFDqQRSUPBL", /* the loop last, everything else backwards */
        "BLQPSFUWRqD", /* the broker first, then the loop */
        "PUSRBFQDqWL", /* clients before their requests */
        "SRQFLqDWUPB", /* stage and remote first, clients after the loop */
    };
    size_t k;
    const char *o;
    for (k = 0; k < sizeof orders / sizeof orders[0]; k++) {
        world w;
        int first = cb_used;
        int n;
        make_world(&w);
        for (o = orders[k]; *o; o++)
            free_one(&w, *o);
        for (n = first; n < cb_used; n++)
            if (cb_pool[n].frees != 1)
                FAILF("freed in the order %s: free_user of '%s' ran %d "
                      "times, want 1",
                      orders[k], cb_pool[n].name, cb_pool[n].frees);
        OK("freed in the order %s: no crash, %d free_user calls, each once",
           orders[k], cb_used - first);
    }
}

/* A timer frees the loop it runs on (its handle was the program's): the
 * run ends and nothing reads the freed handle (valgrind checks). */
static sb_loop *self_freeing;
static int self_freed;

static void free_own_loop(void *user, sb_loop *lp)
{
    (void)user;
    (void)lp;
    sb_loop_free(self_freeing);
    self_freeing = NULL;
    self_freed++;
}

static void loop_freed_inside_its_own_callback(void)
{
    uint64_t id = 0;
    int way;
    for (way = 0; way < 3; way++) {
        self_freeing = NULL;
        CHECK_OK(sb_loop_new(&self_freeing));
        self_freed = 0;
        CHECK_OK(sb_loop_add_timer(self_freeing, 0, free_own_loop, NULL, NULL, &id));
        /* The handle is gone once the callback returns: each call gets
         * its own copy of the pointer, freed inside. */
        if (way == 0)
            CHECK_OK(sb_loop_run(self_freeing));
        else if (way == 1)
            CHECK_OK(sb_loop_run_for(self_freeing, 1000));
        else {
            sb_loop *lp = self_freeing;
            while (self_freed == 0)
                CHECK_OK(sb_loop_dispatch(lp));
        }
        CHECK(self_freed == 1);
        CHECK(self_freeing == NULL);
    }
    OK("a loop freed inside its own callback ends sb_loop_run, sb_loop_run_for "
       "and sb_loop_dispatch cleanly");
}

int main(void)
{
    test_begin(__FILE__);
    nulls_outside_handlers();
    inside_handlers();
    builder_failures();
    panics();
    free_orders();
    loop_freed_inside_its_own_callback();
    cb_check_all_freed();
    return test_end();
}
