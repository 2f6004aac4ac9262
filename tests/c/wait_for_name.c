/*
 * wait_for_name.c: a caller subscribes with sb_remote_subscribe_wait
 * before its service is published, over TCP and over a Unix socket. The
 * broker holds the subscribe (a listing on the same connection, answered
 * in order, proves it arrived) until the service publishes; then the
 * remote stage works. A wait that expires ends once with
 * SB_NO_SUCH_SESSION and a message naming the session.
 */
#include "check.h"

static int32_t echo(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    cb_alive(c);
    c->calls++;
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, sb_ctx_args(ctx)));
    return 0;
}

static int32_t on_return(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    char text[64];
    cb_alive(c);
    c->calls++;
    CHECK_ST(sb_response_error(sb_ctx_rsp(ctx)), SB_OK);
    CHECK_STR(arg_string(sb_ctx_args(ctx), "text", text, sizeof text), "hi");
    return 0;
}

static void flow(const char *listen)
{
    sb_loop *lp = NULL;
    sb_broker *broker;
    sb_client *caller, *service;
    sb_stage *stage = NULL;
    sb_remote *remote;
    sb_request_builder *b;
    sb_request *req = NULL;
    sb_args *a;
    cb *waited = cb_new("subscribe wait"), *expired = cb_new("expired wait");
    cb *m_echo = cb_new("echo"), *ret = cb_new("return");
    const char *const methods[] = {"echo"};
    char addr[256];

    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, listen, NULL, addr, sizeof addr);
    caller = connect_client(lp, addr, NULL);
    service = connect_client(lp, addr, NULL);

    /* The wait that expires: answered once, with the session named. */
    CHECK_OK(sb_remote_subscribe_wait(caller, "Never", 30, cb_subscribed,
                                      expired, cb_free));
    RUN_UNTIL(lp, expired->calls > 0);
    CHECK_ST(expired->status, SB_NO_SUCH_SESSION);
    CHECK_STR(expired->message,
              "Session 'Never' was not published within 30 ms");
    cb_check_freed(expired, 1);
    OK("an expired wait is SB_NO_SUCH_SESSION");

    /* The caller first: its subscribe waits at the broker. */
    CHECK_OK(sb_remote_subscribe_wait(caller, "Svc", 60000, cb_subscribed,
                                      waited, cb_free));
    CHECK_STR(listing_wait(lp, caller), "");
    CHECK_INT(waited->calls, 0);
    OK("the subscribe waits while Svc is not published");

    CHECK_OK(sb_stage_new(lp, "Svc", &stage));
    CHECK_OK(sb_stage_on(stage, "echo", echo, m_echo, cb_free));
    CHECK_OK(publish_wait(lp, stage, service, "Svc", methods, 1));
    RUN_UNTIL(lp, waited->calls > 0);
    CHECK_ST(waited->status, SB_OK);
    cb_check_freed(waited, 1);
    remote = (sb_remote *)waited->ptr;
    OK("the waiting subscribe is answered once Svc is published");

    b = sb_request_to_remote(remote, "echo");
    CHECK(b != NULL);
    a = sb_args_new();
    CHECK_OK(sb_args_set_string(a, "text", "hi"));
    CHECK_OK(sb_request_builder_args(b, a));
    sb_args_free(a);
    CHECK_OK(sb_request_builder_on(b, "return", on_return, ret, cb_free));
    CHECK_OK(sb_request_send(b, &req));
    RUN_UNTIL(lp, ret->calls > 0);
    CHECK_INT(m_echo->calls, 1);
    sb_request_free(req);
    OK("a request through the waited-for remote stage returns");

    sb_remote_free(remote);
    sb_stage_free(stage);
    sb_client_free(caller);
    sb_client_free(service);
    sb_broker_free(broker);
    sb_loop_free(lp);
}

int main(void)
{
    char dir[] = "/tmp/stagebus-c-XXXXXX";
    char listen[256];

    test_begin(__FILE__);
    flow("tcp://127.0.0.1:0");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(listen, sizeof listen, "unix:%s/bus.sock", dir);
    flow(listen);
    CHECK(rmdir(dir) == 0);
    cb_check_all_freed();
    return test_end();
}
