/*
 * proxysession_basic.c: POEx::ProxySession's t/01-basic.t flow
 * (SEMANTICS.md 1.11) through the C API, over TCP and over a Unix socket.
 *
 * A broker listens; a publisher client publishes the stage Foo as
 * FooSession with methods foo, bar, yar; a second client subscribes,
 * lists (exactly FooSession), and calls foo("string"), bar(1), yar(0),
 * which run once each, in order, and answer. yar rescinds FooSession
 * from inside its handler, as Foo::yar does; the subscriber is told the
 * session is gone, which ends its subscription, so a later unsubscribe
 * is refused (port decision: the broker tells subscribers). The
 * unsubscribe that succeeds is then shown on a fresh publication.
 */
#include "check.h"

#include <sys/stat.h>

static char order[128];        /* methods as the publisher ran them */
static char returns[128];      /* answers as the caller received them */
static sb_client *pub_client;  /* Foo's client, for the rescind in yar */
static cb *rescind_done;

static void append(char *buf, const char *word)
{
    if (buf[0] != '\0')
        strncat(buf, ",", 127 - strlen(buf));
    strncat(buf, word, 127 - strlen(buf));
}

static sb_args *method_args(const char *method)
{
    sb_args *a = sb_args_new();
    CHECK(a != NULL);
    CHECK_OK(sb_args_set_string(a, "method", method));
    return a;
}

/* Foo::foo(Str) */
static int32_t foo(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    const sb_served *req = sb_ctx_req(ctx);
    char s[64];
    sb_args *ret;
    cb_alive(c);
    c->calls++;
    c->id = sb_served_caller_id(req);
    CHECK_STR(sb_ctx_name(ctx), "foo");
    CHECK(sb_ctx_rsp(ctx) == NULL);
    CHECK(sb_ctx_stage(ctx) != NULL);
    CHECK(sb_served_is_open(req));
    CHECK_STR(arg_string(sb_ctx_args(ctx), "arg", s, sizeof s), "string");
    append(order, "foo");
    ret = method_args("foo");
    CHECK_OK(sb_served_return(req, NULL, ret));
    sb_args_free(ret);
    CHECK(!sb_served_is_open(req));
    return 0;
}

/* Foo::bar(Int) */
static int32_t bar(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    int64_t n = -1;
    sb_args *ret;
    cb_alive(c);
    c->calls++;
    c->id = sb_served_caller_id(sb_ctx_req(ctx));
    CHECK_STR(sb_ctx_name(ctx), "bar");
    CHECK_OK(sb_args_get_int(sb_ctx_args(ctx), "arg", &n));
    CHECK_INT(n, 1);
    append(order, "bar");
    ret = method_args("bar");
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, ret));
    sb_args_free(ret);
    return 0;
}

/* Foo::yar(Bool): answers, then rescinds FooSession like Foo::yar. */
static int32_t yar(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    bool b = true;
    sb_args *ret;
    cb_alive(c);
    c->calls++;
    c->id = sb_served_caller_id(sb_ctx_req(ctx));
    CHECK_STR(sb_ctx_name(ctx), "yar");
    CHECK_OK(sb_args_get_bool(sb_ctx_args(ctx), "arg", &b));
    CHECK(b == false);
    append(order, "yar");
    ret = method_args("yar");
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, ret));
    sb_args_free(ret);
    rescind_done = cb_new("rescind in yar");
    CHECK_OK(sb_client_rescind(pub_client, "FooSession", cb_done,
                               rescind_done, cb_free));
    return 0;
}

/* The caller's return handler: user is the request's record. */
static int32_t on_return(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    const sb_response *rsp = sb_ctx_rsp(ctx);
    char method[64];
    cb_alive(c);
    c->calls++;
    CHECK(rsp != NULL);
    CHECK_STR(sb_response_kind(rsp), "return");
    CHECK_STR(sb_ctx_name(ctx), "return");
    CHECK(sb_response_is_final(rsp));
    CHECK_ST(sb_response_error(rsp), SB_OK);
    CHECK_STR(sb_response_message(rsp), "");
    CHECK_INT(sb_response_id(rsp), c->id);
    arg_string(sb_ctx_args(ctx), "method", method, sizeof method);
    append(returns, method);
    return 0;
}

static int32_t on_unexpected(void *user, const sb_ctx *ctx)
{
    const sb_response *rsp = sb_ctx_rsp(ctx);
    cb_alive((cb *)user);
    FAILF("request '%s' got an unexpected '%s' response: %s (%s)",
          ((cb *)user)->name, sb_response_kind(rsp),
          sb_strerror(sb_response_error(rsp)), sb_response_message(rsp));
    return 0;
}

static sb_request *call(const sb_remote *remote, const char *method,
                        sb_args *args, cb *rec)
{
    sb_request_builder *b = sb_request_to_remote(remote, method);
    sb_request *req = NULL;
    cb *fallback = cb_new("fallback");
    fallback->name = rec->name;
    CHECK(b != NULL);
    CHECK_OK(sb_request_builder_args(b, args));
    CHECK_OK(sb_request_builder_on(b, "return", on_return, rec, cb_free));
    CHECK_OK(sb_request_builder_fallback(b, on_unexpected, fallback, cb_free));
    CHECK_OK(sb_request_send(b, &req));
    CHECK(req != NULL);
    rec->id = sb_request_id(req);
    CHECK(rec->id > 0);
    CHECK(sb_request_is_open(req));
    sb_args_free(args);
    return req;
}

static void flow(const char *listen)
{
    sb_loop *lp = NULL;
    sb_broker *broker;
    sb_client *sub_client;
    sb_stage *foo_stage = NULL;
    sb_remote *remote;
    sb_request *reqs[3];
    cb *m_foo = cb_new("foo"), *m_bar = cb_new("bar"), *m_yar = cb_new("yar");
    cb *r_foo = cb_new("call foo"), *r_bar = cb_new("call bar"),
       *r_yar = cb_new("call yar");
    cb *gone = cb_new("session gone"), *unsub = cb_new("unsubscribe");
    cb *connect_a = cb_new("connect a"), *connect_b = cb_new("connect b");
    const char *const methods[] = {"foo", "bar", "yar"};
    char addr[256];
    sb_args *a;
    sb_status st;
    int i;

    order[0] = returns[0] = '\0';
    rescind_done = NULL;
    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, listen, NULL, addr, sizeof addr);
    if (strncmp(listen, "tcp:", 4) == 0)
        CHECK(strcmp(addr + strlen(addr) - 2, ":0") != 0);
    else
        CHECK_STR(addr, listen);
    OK("broker listens on %s", addr);

    /* Step 2: connect, with the tag (user) round-tripping. */
    CHECK_OK(sb_client_connect(lp, addr, NULL, cb_connected, connect_a,
                               cb_free, &pub_client));
    CHECK_OK(sb_client_connect(lp, addr, NULL, cb_connected, connect_b,
                               cb_free, &sub_client));
    RUN_UNTIL(lp, connect_a->calls == 1 && connect_b->calls == 1);
    CHECK_ST(connect_a->status, SB_OK);
    CHECK_ST(connect_b->status, SB_OK);
    CHECK(connect_a->id != 0 && connect_b->id != 0);
    CHECK(connect_a->id != connect_b->id);
    cb_check_freed(connect_a, 1);
    OK("two clients connected (connection ids %llu and %llu)",
       (unsigned long long)connect_a->id, (unsigned long long)connect_b->id);
    CHECK_OK(sb_client_on_session_gone(sub_client, cb_session_gone, gone,
                                       cb_free));

    /* Step 4: Foo publishes itself as FooSession. */
    CHECK_OK(sb_stage_new(lp, "Foo", &foo_stage));
    CHECK_OK(sb_stage_on(foo_stage, "foo", foo, m_foo, cb_free));
    CHECK_OK(sb_stage_on(foo_stage, "bar", bar, m_bar, cb_free));
    CHECK_OK(sb_stage_on(foo_stage, "yar", yar, m_yar, cb_free));
    CHECK_OK(publish_wait(lp, foo_stage, pub_client, "FooSession", methods,
                          3));
    OK("FooSession published");

    /* Step 5: subscribe; step 6: the listing holds exactly FooSession. */
    remote = subscribe_wait(lp, sub_client, "FooSession", &st);
    CHECK_ST(st, SB_OK);
    CHECK(remote != NULL);
    OK("subscribed to FooSession");
    CHECK_STR(listing_wait(lp, sub_client), "FooSession[foo,bar,yar];");
    OK("the listing holds exactly FooSession with foo, bar, yar");

    /* Step 6-7: foo('string'), bar(1), yar(0) run once each, in order. */
    a = sb_args_new();
    CHECK_OK(sb_args_set_string(a, "arg", "string"));
    reqs[0] = call(remote, "foo", a, r_foo);
    a = sb_args_new();
    CHECK_OK(sb_args_set_int(a, "arg", 1));
    reqs[1] = call(remote, "bar", a, r_bar);
    a = sb_args_new();
    CHECK_OK(sb_args_set_bool(a, "arg", false));
    reqs[2] = call(remote, "yar", a, r_yar);
    RUN_UNTIL(lp, r_foo->calls + r_bar->calls + r_yar->calls == 3);
    CHECK_INT(m_foo->calls, 1);
    CHECK_INT(m_bar->calls, 1);
    CHECK_INT(m_yar->calls, 1);
    CHECK_STR(order, "foo,bar,yar");
    CHECK_STR(returns, "foo,bar,yar");
    /* The callee sees the caller's id of the transaction as caller_id. */
    CHECK_INT(m_foo->id, r_foo->id);
    CHECK_INT(m_bar->id, r_bar->id);
    CHECK_INT(m_yar->id, r_yar->id);
    for (i = 0; i < 3; i++) {
        CHECK(!sb_request_is_open(reqs[i]));
        CHECK(!sb_request_cancel(reqs[i]));
        sb_request_free(reqs[i]);
    }
    cb_check_freed(r_foo, 1);
    cb_check_freed(r_yar, 1);
    OK("foo, bar, yar ran once each, in order, and answered in order");

    /* Step 8: yar rescinded; the subscriber hears of it. */
    RUN_UNTIL(lp, rescind_done != NULL && rescind_done->calls == 1 &&
                      gone->calls == 1);
    CHECK_ST(rescind_done->status, SB_OK);
    CHECK_STR(gone->message, "FooSession");
    CHECK_ST(gone->status, SB_NO_SUCH_SESSION);
    OK("rescind from inside yar succeeded; the subscriber was told");
    CHECK_STR(listing_wait(lp, sub_client), "");
    OK("the listing is empty");

    /* Step 9: the subscription ended with the session. */
    CHECK_ST(sb_remote_unsubscribe(remote, cb_done, unsub, cb_free),
             SB_NOT_SUBSCRIBED);
    cb_check_freed(unsub, 1);
    CHECK_INT(unsub->calls, 0);
    sb_remote_free(remote);
    OK("unsubscribing a gone session is refused at once (not_subscribed)");

    /* The unsubscribe that succeeds: publish again (every handler name). */
    CHECK_OK(publish_wait(lp, foo_stage, pub_client, "FooSession", NULL, 0));
    CHECK_STR(listing_wait(lp, sub_client), "FooSession[bar,foo,yar];");
    remote = subscribe_wait(lp, sub_client, "FooSession", &st);
    CHECK_ST(st, SB_OK);
    unsub = cb_new("unsubscribe 2");
    CHECK_OK(sb_remote_unsubscribe(remote, cb_done, unsub, cb_free));
    RUN_UNTIL(lp, unsub->calls == 1);
    CHECK_ST(unsub->status, SB_OK);
    unsub = cb_new("unsubscribe 3");
    CHECK_ST(sb_remote_unsubscribe(remote, cb_done, unsub, cb_free),
             SB_NOT_SUBSCRIBED);
    OK("unsubscribe succeeds once, then is refused");
    rescind_done = cb_new("rescind 2");
    CHECK_OK(sb_client_rescind(pub_client, "FooSession", cb_done,
                               rescind_done, cb_free));
    RUN_UNTIL(lp, rescind_done->calls == 1);
    CHECK_ST(rescind_done->status, SB_OK);
    rescind_done = cb_new("rescind 3");
    CHECK_ST(sb_client_rescind(pub_client, "FooSession", cb_done,
                               rescind_done, cb_free),
             SB_NOT_PUBLISHER);
    CHECK_STR(listing_wait(lp, sub_client), "");
    CHECK_INT(gone->calls, 1);
    OK("rescind after unsubscribe tells nobody; rescinding twice is refused");

    /* Step 10: shut down. */
    sb_remote_free(remote);
    sb_stage_free(foo_stage);
    sb_client_free(sub_client);
    sb_client_free(pub_client);
    pub_client = NULL;
    sb_broker_free(broker);
    sb_loop_free(lp);
    cb_check_freed(gone, 1);
    cb_check_freed(m_foo, 1);
    OK("everything freed");
}

int main(void)
{
    char dir[] = "/tmp/stagebus-c-XXXXXX";
    char listen[256];
    struct stat sb;

    test_begin(__FILE__);
    flow("tcp://127.0.0.1:0");

    CHECK(mkdtemp(dir) != NULL);
    snprintf(listen, sizeof listen, "unix:%s/bus.sock", dir);
    flow(listen);
    /* The broker removed its socket file. */
    CHECK(stat(listen + 5, &sb) != 0);
    CHECK(rmdir(dir) == 0);
    OK("the unix socket file is gone with the broker");

    cb_check_all_freed();
    return test_end();
}
