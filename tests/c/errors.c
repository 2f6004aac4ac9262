/*
 * errors.c: every error status a C program can meet, each provoked the
 * way a user would, with the status where the API says it comes (a
 * return value, a completion callback, or an error response).
 *
 * Request errors are checked on a local stage and again through a broker
 * (location transparency: the same codes and messages). SB_NULL_ARGUMENT,
 * SB_INVALID_UTF8 and SB_PANIC are robustness.c's. A callee may also fail
 * with any library code of its choosing (shown with SB_LIMIT_EXCEEDED
 * through sb_served_fail).
 */
#include "check.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

static sb_loop *lp;

/* ---- the stage S whose methods misbehave on purpose --------------------- */

static sb_served *ended_ref; /* a request S answered: ended */
static cb *hang_cancel;

static int32_t s_twice(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    (void)user;
    CHECK_OK(sb_served_return(req, NULL, NULL));
    CHECK_ST(sb_served_return(req, NULL, NULL), SB_INVALID_STATE);
    CHECK_ST(sb_served_emit(req, NULL, NULL), SB_INVALID_STATE);
    CHECK_ST(sb_served_fail(req, SB_TIMEOUT, "late"), SB_INVALID_STATE);
    sb_served_free(ended_ref);
    ended_ref = sb_served_ref(req);
    return 0;
}

static int32_t s_fail_cancelled(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK_OK(sb_served_fail(sb_ctx_req(ctx), SB_CANCELLED, "callee gave up"));
    return 0;
}

static int32_t s_fail_chosen(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK_OK(sb_served_fail(sb_ctx_req(ctx), SB_LIMIT_EXCEEDED, "passed on"));
    return 0;
}

/* A number that is no sb_status: the caller gets handler_failed. */
static int32_t s_fail_odd(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK_OK(sb_served_fail(sb_ctx_req(ctx), 1000, "odd code"));
    return 0;
}

static int32_t s_rc_limit(void *user, const sb_ctx *ctx)
{
    (void)user;
    (void)ctx;
    return SB_LIMIT_EXCEEDED;
}

static int32_t s_rc_minus(void *user, const sb_ctx *ctx)
{
    (void)user;
    (void)ctx;
    return -1;
}

static int32_t s_rc_not_found(void *user, const sb_ctx *ctx)
{
    (void)user;
    (void)ctx;
    return SB_NOT_FOUND; /* a C-call status, not a library error code */
}

/* The first final answer wins; the status returned after it is ignored. */
static int32_t s_fail_then_rc(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK_OK(sb_served_fail(sb_ctx_req(ctx), SB_TIMEOUT, "mine"));
    return SB_IO;
}

static void free_served(void *user)
{
    sb_served_free((sb_served *)user);
}

static int hang_started;

static int32_t s_hang(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    (void)user;
    hang_started++;
    CHECK_OK(sb_served_on_cancel(req, cb_notify, hang_cancel, cb_free));
    /* Kept in its own data slot (freed when it ends): a request neither
     * answered nor kept ends at once with SB_UNANSWERED. */
    CHECK_OK(sb_served_set_data(req, sb_served_ref(req), free_served));
    return 0;
}

static int32_t i_work(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, NULL));
    return 0;
}

/* on_my_return: the stage intercepts its own return. */
static int32_t i_on_my_return(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    cb_alive(c);
    c->calls++;
    CHECK_STR(sb_ctx_name(ctx), "return");
    return 0;
}

/* ---- calling, and what came back ------------------------------------------ */

/* Every response lands here: kind, error code and message are noted. */
static int32_t on_any(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    const sb_response *rsp = sb_ctx_rsp(ctx);
    cb_alive(c);
    CHECK(sb_response_is_final(rsp));
    CHECK(c->calls == 0);
    cb_note(c, sb_response_error(rsp), sb_response_message(rsp));
    c->ptr = (void *)(sb_response_error(rsp) == SB_OK ? "return" : "error");
    CHECK_STR(sb_response_kind(rsp), (const char *)c->ptr);
    return 0;
}

/* Calls method on stage or remote and waits for the final response. */
static cb *call(const sb_stage *stage, const sb_remote *remote,
                const char *method, uint64_t timeout_ms)
{
    sb_request_builder *b = stage ? sb_request_to_stage(stage, method)
                                  : sb_request_to_remote(remote, method);
    sb_request *req = NULL;
    cb *c = cb_new(method);
    CHECK(b != NULL);
    CHECK_OK(sb_request_builder_fallback(b, on_any, c, cb_free));
    if (timeout_ms > 0)
        CHECK_OK(sb_request_builder_timeout_ms(b, timeout_ms));
    CHECK_OK(sb_request_send(b, &req));
    RUN_UNTIL(lp, c->calls == 1);
    CHECK(!sb_request_is_open(req));
    sb_request_free(req);
    cb_check_freed(c, 1);
    return c;
}

static void expect_call_at(const sb_stage *stage, const sb_remote *remote,
                           const char *method, sb_status want,
                           const char *msg, int line)
{
    cb *r = call(stage, remote, method, 0);
    if (r->status != want)
        FAILF_AT(__FILE__, line, "%s: status %d (%s), want %d (%s): %s",
                 method, (int)r->status, sb_strerror(r->status), (int)want,
                 sb_strerror(want), r->message);
    if (msg != NULL && strstr(r->message, msg) == NULL)
        FAILF_AT(__FILE__, line, "%s: message \"%s\" lacks \"%s\"", method,
                 r->message, msg);
}

/* Calls method and expects a final response of status want whose message
 * contains msg (unless NULL). */
#define EXPECT_CALL(stage, remote, method, want, msg)                       \
    expect_call_at((stage), (remote), (method), (want), (msg), __LINE__)

static void request_errors(const sb_stage *s, const sb_remote *r,
                           const char *where)
{
    cb *timed;
    sb_request_builder *b;
    sb_request *req = (sb_request *)&req; /* must stay untouched */

    EXPECT_CALL(s, r, "twice", SB_OK, NULL);
    OK("%s: answering twice is SB_INVALID_STATE for the callee", where);
    EXPECT_CALL(s, r, "nope", SB_NO_SUCH_METHOD, "nope");
    OK("%s: SB_NO_SUCH_METHOD", where);
    EXPECT_CALL(s, r, "fail_cancelled", SB_CANCELLED, "callee gave up");
    OK("%s: SB_CANCELLED from the callee, with its message", where);
    EXPECT_CALL(s, r, "fail_chosen", SB_LIMIT_EXCEEDED, "passed on");
    EXPECT_CALL(s, r, "fail_odd", SB_HANDLER_FAILED, "odd code");
    OK("%s: the callee's own code travels; an unknown one is handler_failed",
       where);
    EXPECT_CALL(s, r, "rc_limit", SB_LIMIT_EXCEEDED, "rc_limit");
    EXPECT_CALL(s, r, "rc_minus", SB_HANDLER_FAILED, "-1");
    EXPECT_CALL(s, r, "rc_not_found", SB_HANDLER_FAILED, "104");
    OK("%s: a handler's non-zero status reaches the caller", where);
    EXPECT_CALL(s, r, "fail_then_rc", SB_TIMEOUT, "mine");
    OK("%s: the first final answer wins", where);

    hang_cancel = cb_new("hang on_cancel");
    hang_started = 0;
    timed = call(s, r, "hang", 300);
    CHECK_ST(timed->status, SB_TIMEOUT);
    if (hang_started) {
        RUN_UNTIL(lp, hang_cancel->calls == 1);
        cb_check_freed(hang_cancel, 1);
    } else {
        /* A slow machine (valgrind) let the timeout pass before the
         * callee was reached: a request cancelled before delivery never
         * reaches its callee, so there is nothing to cancel there. */
        CHECK_INT(hang_cancel->calls, 0);
        cb_free(hang_cancel);
    }
    OK("%s: SB_TIMEOUT after timeout_ms; the callee's on_cancel ran if it "
       "had started", where);

    b = s ? sb_request_to_stage(s, "") : sb_request_to_remote(r, "");
    CHECK(b != NULL);
    CHECK_ST(sb_request_send(b, &req), SB_INVALID_ARGUMENT);
    CHECK(req == (sb_request *)&req);
    OK("%s: an empty method is SB_INVALID_ARGUMENT at send", where);

    CHECK(ended_ref != NULL && !sb_served_is_open(ended_ref));
    b = s ? sb_request_to_stage(s, "twice") : sb_request_to_remote(r, "twice");
    CHECK_OK(sb_request_builder_parent(b, ended_ref));
    CHECK_ST(sb_request_send(b, &req), SB_CANCELLED);
    CHECK(req == (sb_request *)&req);
    OK("%s: a child of an ended request is SB_CANCELLED at send", where);
}

/* ---- connection-level errors ---------------------------------------------- */

static cb *connect_outcome(const char *addr, const char *token)
{
    sb_client *client = NULL;
    cb *c = cb_new("connect");
    CHECK_OK(sb_client_connect(lp, addr, token, cb_connected, c, cb_free,
                               &client));
    RUN_UNTIL(lp, c->calls == 1);
    sb_client_free(client);
    return c;
}

/* A TCP port on loopback where nobody listens (bound, then closed). */
static int closed_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* A server that answers the hello with bytes that are no frame. */
static int fake_fd = -1;
static int fake_conn = -1;

static int fake_server_step(void)
{
    static const unsigned char junk[16] = {
        0xff, 0xff, 0xff, 0xff, 'n', 'o', 't', ' ',
        'a',  ' ',  'f',  'r',  'a', 'm', 'e', '!'};
    if (fake_conn < 0) {
        fake_conn = accept(fake_fd, NULL, NULL);
        if (fake_conn >= 0)
            write_all(fake_conn, junk, sizeof junk);
    }
    return 0;
}

static int fake_server(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    fake_fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fake_fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fake_fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(listen(fake_fd, 4) == 0);
    CHECK(fcntl(fake_fd, F_SETFL, O_NONBLOCK) == 0);
    CHECK(getsockname(fake_fd, (struct sockaddr *)&sa, &len) == 0);
    return ntohs(sa.sin_port);
}

static void connection_errors(const char *addr)
{
    sb_broker *locked, *dup = (sb_broker *)&dup;
    sb_client *client = (sb_client *)&client;
    const char *listen1[1];
    char secure[256], other[256];
    cb *c;
    sb_client *probe;

    /* SB_REFUSED: a wrong or missing token. */
    locked = start_broker(lp, "tcp://127.0.0.1:0", "secret", secure,
                          sizeof secure);
    CHECK_ST(connect_outcome(secure, "wrong")->status, SB_REFUSED);
    CHECK_ST(connect_outcome(secure, NULL)->status, SB_REFUSED);
    CHECK_ST(connect_outcome(secure, "secret")->status, SB_OK);
    sb_broker_free(locked);
    OK("SB_REFUSED for a wrong or missing token; the right one connects");

    /* SB_IO: nobody listens; an address in use. */
    snprintf(other, sizeof other, "tcp://127.0.0.1:%d", closed_port());
    c = connect_outcome(other, NULL);
    CHECK_ST(c->status, SB_IO);
    CHECK(c->message[0] != '\0');
    CHECK_ST(connect_outcome("unix:/nonexistent/stagebus.sock", NULL)->status,
             SB_IO);
    OK("SB_IO connecting to a closed port (\"%s\")", c->message);
    listen1[0] = addr;
    CHECK_ST(sb_broker_new(lp, listen1, 1, NULL, &dup), SB_IO);
    CHECK(dup == (sb_broker *)&dup);
    OK("SB_IO listening on an address in use");

    /* Operations on a client whose connect failed complete with
     * broker_gone. */
    c = cb_new("connect");
    CHECK_OK(sb_client_connect(lp, other, NULL, cb_connected, c, cb_free,
                               &probe));
    {
        cb *l = cb_new("listing on failed client");
        CHECK_OK(sb_client_listing(probe, cb_listing, l, cb_free));
        RUN_UNTIL(lp, c->calls == 1 && l->calls == 1);
        CHECK_ST(c->status, SB_IO);
        CHECK_ST(l->status, SB_BROKER_GONE);
    }
    sb_client_free(probe);
    OK("an operation started before a failed connect gets SB_BROKER_GONE");

    /* SB_PROTOCOL: the peer is no broker. */
    snprintf(other, sizeof other, "tcp://127.0.0.1:%d", fake_server());
    c = cb_new("connect to fake");
    CHECK_OK(sb_client_connect(lp, other, NULL, cb_connected, c, cb_free,
                               &probe));
    RUN_UNTIL(lp, fake_server_step() || c->calls == 1);
    CHECK_ST(c->status, SB_PROTOCOL);
    sb_client_free(probe);
    close(fake_conn);
    close(fake_fd);
    OK("SB_PROTOCOL when the peer sends no frame (\"%s\")", c->message);

    /* SB_INVALID_ARGUMENT: malformed addresses; out-params untouched. */
    listen1[0] = "http://127.0.0.1:1";
    CHECK_ST(sb_broker_new(lp, listen1, 1, NULL, &dup), SB_INVALID_ARGUMENT);
    CHECK(strstr(sb_last_error(), "http://") != NULL);
    CHECK_ST(sb_client_connect(lp, "bogus", NULL, NULL, NULL, NULL, &client),
             SB_INVALID_ARGUMENT);
    CHECK(client == (sb_client *)&client);
    CHECK(dup == (sb_broker *)&dup);
    OK("SB_INVALID_ARGUMENT for bad addresses; out-params untouched");
}

/* ---- values ------------------------------------------------------------------ */

static void value_errors(void)
{
    sb_args *a = sb_args_new();
    sb_value *list = sb_value_new_list();
    sb_value *n = sb_value_new_int(7);
    int64_t i = 42;
    bool b = true;
    double d = 1.5;
    const char *p = NULL;
    size_t len = 99;
    const uint8_t *bytes = NULL;
    const sb_value *v;
    const char *key;

    CHECK_OK(sb_args_set_string(a, "s", "text"));
    CHECK_OK(sb_args_set_int(a, "i", 5));
    CHECK_ST(sb_args_get_int(a, "s", &i), SB_WRONG_TYPE);
    CHECK_ST(sb_args_get_bool(a, "i", &b), SB_WRONG_TYPE);
    CHECK_ST(sb_args_get_float(a, "s", &d), SB_WRONG_TYPE);
    CHECK_ST(sb_args_get_string(a, "i", &p, &len), SB_WRONG_TYPE);
    CHECK(strstr(sb_last_error(), "'i'") != NULL);
    CHECK(i == 42 && b == true && d == 1.5 && p == NULL && len == 99);
    CHECK_ST(sb_value_int(sb_args_get(a, "s"), &i), SB_WRONG_TYPE);
    CHECK_ST(sb_value_bytes(n, &bytes, &len), SB_WRONG_TYPE);
    CHECK_ST(sb_value_list_push(n, sb_value_new_null()), SB_WRONG_TYPE);
    CHECK(sb_value_map(n) == NULL);
    CHECK(sb_value_list_get(n, 0) == NULL);
    CHECK_INT(sb_value_list_len(n), 0);
    OK("SB_WRONG_TYPE; out-params untouched");

    CHECK_ST(sb_args_get_int(a, "missing", &i), SB_NOT_FOUND);
    CHECK(strstr(sb_last_error(), "missing") != NULL);
    CHECK(sb_args_get(a, "missing") == NULL);
    CHECK_ST(sb_args_entry(a, 2, &key, &len, &v), SB_NOT_FOUND);
    CHECK(sb_value_list_get(list, 0) == NULL);
    CHECK(i == 42 && len == 99);
    CHECK_ST(sb_loop_cancel_timer(lp, 123456), SB_NOT_FOUND);
    OK("SB_NOT_FOUND for keys, indexes and timers");

    sb_value_free(n);
    sb_value_free(list);
    sb_args_free(a);
}

/* ---- everything ---------------------------------------------------------------- */

static const sb_status all_codes[] = {
    SB_OK, SB_NO_SUCH_SESSION, SB_NO_SUCH_METHOD, SB_PUBLISHER_GONE,
    SB_BROKER_GONE, SB_TIMEOUT, SB_LIMIT_EXCEEDED, SB_PROTOCOL,
    SB_ALREADY_EXISTS, SB_INVALID_ARGUMENT, SB_NOT_PUBLISHER,
    SB_NOT_SUBSCRIBED, SB_REFUSED, SB_IO, SB_CANCELLED,
    SB_HANDLER_FAILED, SB_INVALID_STATE, SB_UNANSWERED, SB_NAME_MODE_CONFLICT,
    SB_ACCESS_DENIED, SB_NULL_ARGUMENT,
    SB_INVALID_UTF8, SB_PANIC, SB_WRONG_TYPE, SB_NOT_FOUND, SB_WRONG_THREAD,
    SB_UNKNOWN};

static void strerror_names(void)
{
    size_t n = sizeof all_codes / sizeof all_codes[0], i, j;
    static const int32_t strangers[] = {15, 21, 42, 99, 106, 1000, -1, 65534,
                                        65536, 2147483647};
    for (i = 0; i < n; i++) {
        const char *s = sb_strerror(all_codes[i]);
        CHECK(s != NULL && s[0] != '\0');
        CHECK(s == sb_strerror(all_codes[i])); /* static */
        for (j = 0; j < i; j++)
            CHECK(strcmp(s, sb_strerror(all_codes[j])) != 0);
    }
    CHECK_STR(sb_strerror(SB_OK), "ok");
    CHECK_STR(sb_strerror(SB_PUBLISHER_GONE), "publisher_gone");
    /* Numbers that are no status (a handler's return, say) are named too. */
    for (i = 0; i < sizeof strangers / sizeof strangers[0]; i++)
        CHECK_STR(sb_strerror(strangers[i]), "unknown");
    OK("sb_strerror names all %d codes distinctly; other numbers 'unknown'",
       (int)n);
}

static int32_t never_called(void *user, const sb_ctx *ctx)
{
    (void)user;
    (void)ctx;
    FAILF("a handler registered after its loop was freed ran");
    return 0;
}

/* Objects used after their loop was freed: refused, and still freeable. */
static void used_after_loop_freed(void)
{
    sb_loop *l = NULL;
    sb_stage *st = NULL;
    sb_client *client = NULL;
    sb_request_builder *b;
    sb_request *req = NULL;
    const char *name;
    size_t len;
    cb *c = cb_new("handler after free");

    CHECK_OK(sb_loop_new(&l));
    CHECK_OK(sb_stage_new(l, "Orphan", &st));
    CHECK_OK(sb_client_connect(l, "tcp://127.0.0.1:1", NULL, NULL, NULL, NULL,
                               &client));
    b = sb_request_to_stage(st, "work");
    CHECK(b != NULL);
    sb_loop_free(l);

#define FREED(expr)                                                         \
    do {                                                                    \
        CHECK_ST(expr, SB_INVALID_STATE);                                   \
        CHECK(strstr(sb_last_error(), "loop was freed") != NULL);           \
    } while (0)
    FREED(sb_stage_on(st, "work", never_called, c, cb_free));
    cb_check_freed(c, 1);
    FREED(sb_stage_name(st, &name, &len));
    FREED(sb_request_builder_role(b, "r"));
    FREED(sb_request_send(b, &req));
    CHECK(req == NULL);
    FREED(sb_client_listing(client, cb_listing, NULL, NULL));
    FREED(sb_client_close(client));
    CHECK(sb_request_to_stage(st, "work") == NULL);
    CHECK(strstr(sb_last_error(), "loop was freed") != NULL);
#undef FREED
    OK("objects used after sb_loop_free: SB_INVALID_STATE \"its loop was "
       "freed\", nothing done");

    sb_client_free(client);
    sb_stage_free(st);
}

int main(void)
{
    sb_stage *s = NULL, *interceptor = NULL;
    sb_broker *broker;
    sb_client *pub, *sub, *other;
    sb_remote *remote, *none = (sb_remote *)&none;
    cb *intercepted = cb_new("on_my_return"), *c, *unsub, *gone_pub, *gone_sub;
    sb_status st;
    char addr[256], small[8], longname[300];
    const char *const s_methods[] = {
        "twice", "fail_cancelled", "fail_chosen", "fail_odd", "rc_limit",
        "rc_minus", "rc_not_found", "fail_then_rc", "hang", "nope"};

    test_begin(__FILE__);
    strerror_names();

    CHECK_OK(sb_loop_new(&lp));
    CHECK_OK(sb_stage_new(lp, "S", &s));
    CHECK_OK(sb_stage_on(s, "twice", s_twice, NULL, NULL));
    CHECK_OK(sb_stage_on(s, "fail_cancelled", s_fail_cancelled, NULL, NULL));
    CHECK_OK(sb_stage_on(s, "fail_chosen", s_fail_chosen, NULL, NULL));
    CHECK_OK(sb_stage_on(s, "fail_odd", s_fail_odd, NULL, NULL));
    CHECK_OK(sb_stage_on(s, "rc_limit", s_rc_limit, NULL, NULL));
    CHECK_OK(sb_stage_on(s, "rc_minus", s_rc_minus, NULL, NULL));
    CHECK_OK(sb_stage_on(s, "rc_not_found", s_rc_not_found, NULL, NULL));
    CHECK_OK(sb_stage_on(s, "fail_then_rc", s_fail_then_rc, NULL, NULL));
    CHECK_OK(sb_stage_on(s, "hang", s_hang, NULL, NULL));
    value_errors();

    request_errors(s, NULL, "local");

    CHECK_OK(sb_stage_new(lp, "Interceptor", &interceptor));
    CHECK_OK(sb_stage_on(interceptor, "work", i_work, NULL, NULL));
    CHECK_OK(sb_stage_on(interceptor, "on_my_return", i_on_my_return,
                         intercepted, cb_free));
    c = call(interceptor, NULL, "work", 0);
    CHECK_ST(c->status, SB_CANCELLED);
    CHECK_INT(intercepted->calls, 1);
    OK("local: a return the callee intercepts (on_my_return) is SB_CANCELLED");

    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    pub = connect_client(lp, addr, NULL);
    sub = connect_client(lp, addr, NULL);
    other = connect_client(lp, addr, NULL);
    /* "nope" is offered but has no handler; "ghost" is not offered. */
    CHECK_OK(publish_wait(lp, s, pub, "S", s_methods, 10));
    remote = subscribe_wait(lp, sub, "S", &st);
    CHECK_ST(st, SB_OK);
    request_errors(NULL, remote, "remote");
    EXPECT_CALL(NULL, remote, "ghost", SB_NO_SUCH_METHOD, "ghost");
    OK("remote: a method the session does not offer is SB_NO_SUCH_METHOD");

    /* Session-level errors. */
    CHECK_ST(publish_wait(lp, s, other, "S", NULL, 0), SB_ALREADY_EXISTS);
    OK("SB_ALREADY_EXISTS publishing a taken name");
    CHECK_ST(publish_wait(lp, s, other, "", NULL, 0), SB_INVALID_ARGUMENT);
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_ST(publish_wait(lp, s, other, longname, NULL, 0),
             SB_LIMIT_EXCEEDED);
    OK("SB_INVALID_ARGUMENT for an empty name, SB_LIMIT_EXCEEDED for a long "
       "one");
    c = cb_new("rescind by another");
    CHECK_ST(sb_client_rescind(other, "S", cb_done, c, cb_free),
             SB_NOT_PUBLISHER);
    CHECK_INT(c->calls, 0);
    cb_check_freed(c, 1);
    OK("SB_NOT_PUBLISHER rescinding another's session (at once)");
    CHECK(subscribe_wait(lp, other, "Nobody", &st) == NULL);
    CHECK_ST(st, SB_NO_SUCH_SESSION);
    OK("SB_NO_SUCH_SESSION subscribing to an unknown name");
    CHECK(subscribe_wait(lp, other, "", &st) == NULL);
    CHECK_ST(st, SB_INVALID_ARGUMENT);
    CHECK_ST(sb_client_rescind(other, "", cb_done, cb_new("rescind ''"),
                               cb_free),
             SB_INVALID_ARGUMENT);
    {
        sb_stage *unnamed = NULL;
        CHECK_ST(sb_stage_new(lp, "", &unnamed), SB_INVALID_ARGUMENT);
        CHECK(unnamed == NULL);
    }
    OK("SB_INVALID_ARGUMENT for an empty session name (subscribe, rescind) "
       "and an empty stage name");
    none = subscribe_wait(lp, other, "S", &st);
    CHECK_ST(st, SB_OK);
    unsub = cb_new("unsubscribe");
    CHECK_OK(sb_remote_unsubscribe(none, cb_done, unsub, cb_free));
    RUN_UNTIL(lp, unsub->calls == 1);
    CHECK_ST(sb_remote_unsubscribe(none, cb_done, cb_new("again"), cb_free),
             SB_NOT_SUBSCRIBED);
    sb_remote_free(none);
    OK("SB_NOT_SUBSCRIBED unsubscribing twice");

    /* Broker addresses. */
    CHECK_ST(sb_broker_address(broker, 0, small, 4), SB_LIMIT_EXCEEDED);
    CHECK_ST(sb_broker_address(broker, 1, small, sizeof small), SB_NOT_FOUND);
    OK("sb_broker_address: SB_LIMIT_EXCEEDED for a small buffer, "
       "SB_NOT_FOUND past the end");

    connection_errors(addr);

    /* SB_BROKER_GONE: the broker is freed with a call pending. */
    gone_pub = cb_new("pub disconnect");
    gone_sub = cb_new("sub disconnect");
    CHECK_OK(sb_client_on_disconnect(pub, cb_done, gone_pub, cb_free));
    CHECK_OK(sb_client_on_disconnect(sub, cb_done, gone_sub, cb_free));
    hang_cancel = cb_new("hang on_cancel (broker gone)");
    {
        sb_request_builder *b = sb_request_to_remote(remote, "hang");
        sb_request *req = NULL;
        cb *r = cb_new("hang (broker gone)");
        CHECK_OK(sb_request_builder_fallback(b, on_any, r, cb_free));
        CHECK_OK(sb_request_send(b, &req));
        RUN_UNTIL(lp, sb_broker_pending_calls(broker) == 1);
        sb_broker_free(broker);
        RUN_UNTIL(lp, r->calls == 1 && gone_pub->calls == 1 &&
                          gone_sub->calls == 1 && hang_cancel->calls == 1);
        CHECK_ST(r->status, SB_BROKER_GONE);
        CHECK_ST(gone_pub->status, SB_BROKER_GONE);
        CHECK_ST(gone_sub->status, SB_BROKER_GONE);
        sb_request_free(req);
    }
    OK("freeing the broker: the pending call fails with SB_BROKER_GONE, both "
       "clients are told, the callee's on_cancel runs");
    c = cb_new("listing after");
    CHECK_OK(sb_client_listing(sub, cb_listing, c, cb_free));
    RUN_UNTIL(lp, c->calls == 1);
    CHECK_ST(c->status, SB_BROKER_GONE);
    CHECK(subscribe_wait(lp, sub, "S", &st) == NULL);
    CHECK_ST(st, SB_BROKER_GONE);
    CHECK_ST(publish_wait(lp, s, pub, "S2", NULL, 0), SB_BROKER_GONE);
    c = call(NULL, remote, "twice", 0);
    CHECK_ST(c->status, SB_BROKER_GONE);
    OK("afterwards every operation completes with SB_BROKER_GONE");

    /* sb_client_close: the same, on purpose; on_disconnect is not called. */
    c = cb_new("listing after close");
    CHECK_OK(sb_client_close(other));
    CHECK_OK(sb_client_listing(other, cb_listing, c, cb_free));
    RUN_UNTIL(lp, c->calls == 1);
    CHECK_ST(c->status, SB_BROKER_GONE);
    OK("after sb_client_close operations get SB_BROKER_GONE");

    sb_served_free(ended_ref);
    sb_remote_free(remote);
    sb_client_free(other);
    sb_client_free(sub);
    sb_client_free(pub);
    sb_stage_free(interceptor);
    sb_stage_free(s);
    sb_loop_free(lp);
    used_after_loop_freed();
    cb_check_all_freed();
    return test_end();
}
