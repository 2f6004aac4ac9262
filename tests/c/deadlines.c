/*
 * deadlines.c: a request's timeout travels with it (issue 12, item 3),
 * from C, locally and through a broker.
 *
 * The stage Clock serves:
 *   look  returns `left`, its sb_served_time_left_ms (-1: no deadline);
 *   run   asks the local stage Clock for `look` (with its own timeout of
 *         `child_ms` if not 0) and returns what came back, with its own
 *         time left when it sent the child as `mine`.
 * A caller's timeout of 20 s reaches `look` as a time left in (0, 20000];
 * without one it reads -1. The child `look` of `run` inherits the
 * parent's deadline (no timeout of its own), is capped by it (600 s of
 * its own), or keeps its own when shorter (3 s). Through the broker,
 * sb_client_set_default_timeout_ms gives requests that set none a
 * deadline; 0 turns it off again.
 */
#include "check.h"

static sb_loop *lp;
static sb_stage *clock_stage;
static sb_request *child_req;
/* run's time left when it sent its child. */
static int64_t run_left;

static int32_t look(void *user, const sb_ctx *ctx)
{
    int64_t left = 0;
    sb_args *a = sb_args_new();
    cb_alive((cb *)user);
    CHECK_OK(sb_served_time_left_ms(sb_ctx_req(ctx), &left));
    CHECK_OK(sb_args_set_int(a, "left", left));
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), "seen", a));
    sb_args_free(a);
    return 0;
}

/* In the child's response handler the served request is run's. */
static int32_t on_child(void *user, const sb_ctx *ctx)
{
    int64_t left = 0;
    sb_args *a = sb_args_new();
    cb_alive((cb *)user);
    CHECK_OK(sb_args_get_int(sb_ctx_args(ctx), "left", &left));
    CHECK_OK(sb_args_set_int(a, "left", left));
    CHECK_OK(sb_args_set_int(a, "mine", run_left));
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), "seen", a));
    sb_args_free(a);
    return 0;
}

static int32_t run_child(void *user, const sb_ctx *ctx)
{
    int64_t child_ms = 0;
    sb_request_builder *b = sb_request_to_stage(clock_stage, "look");
    cb_alive((cb *)user);
    CHECK(b != NULL);
    CHECK_OK(sb_args_get_int(sb_ctx_args(ctx), "child_ms", &child_ms));
    CHECK_OK(sb_served_time_left_ms(sb_ctx_req(ctx), &run_left));
    if (child_ms > 0)
        CHECK_OK(sb_request_builder_timeout_ms(b, (uint64_t)child_ms));
    CHECK_OK(sb_request_builder_on(b, "seen", on_child, cb_new("on_child"),
                                   cb_free));
    CHECK(child_req == NULL);
    CHECK_OK(sb_request_send(b, &child_req));
    return 0;
}

/* The caller's record: the final response's `left` and `mine`. */
typedef struct {
    int done;
    int64_t left, mine;
} seen;

static int32_t on_seen(void *user, const sb_ctx *ctx)
{
    seen *s = (seen *)user;
    CHECK_ST(sb_response_error(sb_ctx_rsp(ctx)), SB_OK);
    CHECK_OK(sb_args_get_int(sb_ctx_args(ctx), "left", &s->left));
    if (sb_args_get_int(sb_ctx_args(ctx), "mine", &s->mine) != SB_OK)
        s->mine = 0;
    s->done = 1;
    return 0;
}

static seen call(const sb_remote *remote, const char *method,
                 uint64_t timeout_ms, int64_t child_ms)
{
    seen s = {0, 0, 0};
    sb_args *a = sb_args_new();
    sb_request *req = NULL;
    sb_request_builder *b = remote ? sb_request_to_remote(remote, method)
                                   : sb_request_to_stage(clock_stage, method);
    CHECK(b != NULL);
    CHECK_OK(sb_args_set_int(a, "child_ms", child_ms));
    CHECK_OK(sb_request_builder_args(b, a));
    sb_args_free(a);
    if (timeout_ms > 0)
        CHECK_OK(sb_request_builder_timeout_ms(b, timeout_ms));
    CHECK_OK(sb_request_builder_fallback(b, on_seen, &s, NULL));
    CHECK_OK(sb_request_send(b, &req));
    RUN_UNTIL(lp, s.done);
    sb_request_free(req);
    sb_request_free(child_req);
    child_req = NULL;
    return s;
}

static void run(const sb_remote *remote)
{
    const char *where = remote ? "remote" : "local";
    seen s;

    s = call(remote, "look", 20000, 0);
    CHECK(s.left > 0 && s.left <= 20000);
    OK("%s: the callee reads the time left of a 20 s timeout (%lld ms)",
       where, (long long)s.left);
    s = call(remote, "look", 0, 0);
    CHECK_INT(s.left, -1);
    OK("%s: without a timeout the callee has no deadline", where);

    s = call(remote, "run", 20000, 0);
    CHECK(s.mine > 0 && s.mine <= 20000);
    CHECK(s.left > 0 && s.left <= s.mine);
    OK("%s: a child without a timeout inherits its parent's deadline",
       where);
    s = call(remote, "run", 20000, 600000);
    CHECK(s.left > 0 && s.left <= s.mine);
    OK("%s: a child's longer timeout is capped by its parent's deadline",
       where);
    s = call(remote, "run", 20000, 3000);
    CHECK(s.left > 0 && s.left <= 3000);
    OK("%s: a child's shorter timeout wins", where);
}

int main(void)
{
    sb_broker *broker;
    sb_client *pub, *sub;
    sb_remote *remote;
    sb_status st;
    char addr[256];
    seen s;

    test_begin(__FILE__);
    CHECK_OK(sb_loop_new(&lp));
    CHECK_OK(sb_stage_new(lp, "Clock", &clock_stage));
    CHECK_OK(sb_stage_on(clock_stage, "look", look, cb_new("look"),
                         cb_free));
    CHECK_OK(sb_stage_on(clock_stage, "run", run_child, cb_new("run"),
                         cb_free));

    run(NULL);

    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    pub = connect_client(lp, addr, NULL);
    sub = connect_client(lp, addr, NULL);
    CHECK_OK(publish_wait(lp, clock_stage, pub, "Clock", NULL, 0));
    remote = subscribe_wait(lp, sub, "Clock", &st);
    CHECK_ST(st, SB_OK);

    run(remote);

    CHECK_OK(sb_client_set_default_timeout_ms(sub, 10000));
    s = call(remote, "look", 0, 0);
    CHECK(s.left > 0 && s.left <= 10000);
    OK("the client's default deadline applies to a request that sets none "
       "(%lld ms left)",
       (long long)s.left);
    CHECK_OK(sb_client_set_default_timeout_ms(sub, 0));
    s = call(remote, "look", 0, 0);
    CHECK_INT(s.left, -1);
    OK("a default of 0 turns it off");

    sb_remote_free(remote);
    sb_client_free(sub);
    sb_client_free(pub);
    sb_broker_free(broker);
    sb_stage_free(clock_stage);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
