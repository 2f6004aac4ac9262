/*
 * dialogue.c: emit -> recall -> return within one request, with
 * per-request data on both sides, locally and through a broker (the same
 * handlers either way).
 *
 * The stage Counter serves `start`: it keeps a record in its data slot
 * (sb_served_set_data) and emits `ask` three times; the caller answers
 * each ask with a recall of `answer`, reading its own data slot
 * (sb_request_set_data / sb_response_data); the third answer makes
 * Counter return the total later, from a timer, through an owned
 * reference (sb_served_ref). Each data slot's free function runs exactly
 * once, when its side of the transaction ends.
 *
 * The same dialogue is then run from inside a stage (Driver), whose
 * response handlers are found by role (`on_count_ask`) and by name
 * (`count_done`), and see Driver's own request (sb_ctx_req) and stage
 * data.
 */
#include "check.h"

static sb_loop *lp;

/* ---- the callee: Counter ----------------------------------------------- */

static void return_later(void *user, sb_loop *l)
{
    sb_served *pending = (sb_served *)user;
    cb *d = (cb *)sb_served_data(pending);
    sb_args *ret = sb_args_new();
    (void)l;
    CHECK(d != NULL);
    CHECK(sb_served_is_open(pending));
    CHECK_OK(sb_args_set_int(ret, "total", (int64_t)d->id));
    CHECK_OK(sb_served_return(pending, NULL, ret));
    sb_args_free(ret);
    CHECK(!sb_served_is_open(pending));
    /* The callee's side ended: its data is gone. */
    cb_check_freed(d, 1);
    CHECK(sb_served_data(pending) == NULL);
    CHECK_ST(sb_served_return(pending, NULL, NULL), SB_INVALID_STATE);
}

static void free_served(void *user)
{
    sb_served_free((sb_served *)user);
}

static void ask(const sb_served *req, int64_t n)
{
    sb_args *a = sb_args_new();
    CHECK_OK(sb_args_set_int(a, "n", n));
    CHECK_OK(sb_served_emit(req, "ask", a));
    sb_args_free(a);
}

static int32_t counter_start(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    cb *d = cb_new("callee data");
    cb *replaced = cb_new("callee data, replaced");
    cb_alive((cb *)user);
    CHECK(sb_served_data(req) == NULL);
    /* Replacing a slot frees the old value at once. */
    CHECK_OK(sb_served_set_data(req, replaced, cb_free));
    CHECK_OK(sb_served_set_data(req, d, cb_free));
    cb_check_freed(replaced, 1);
    CHECK(sb_served_data(req) == d);
    ask(req, 1);
    return 0;
}

static int32_t counter_answer(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    cb *d = (cb *)sb_served_data(req);
    int64_t reply = 0;
    uint64_t timer = 0;
    cb_alive((cb *)user);
    CHECK(d != NULL);
    CHECK_STR(d->name, "callee data");
    CHECK_STR(sb_ctx_name(ctx), "answer");
    CHECK_OK(sb_args_get_int(sb_ctx_args(ctx), "reply", &reply));
    d->calls++;
    d->id += (uint64_t)reply;
    if (d->calls < 3) {
        ask(req, d->calls + 1);
        return 0;
    }
    /* Answer later: an owned reference outlives this handler. */
    CHECK_OK(sb_loop_add_timer(lp, 1, return_later, sb_served_ref(req),
                               free_served, &timer));
    return 0;
}

/* ---- the caller -------------------------------------------------------- */

typedef struct {
    int asks;
    int returns;
    int64_t total;
    cb *data;  /* the caller's data slot */
} caller;

static void on_ask_common(caller *c, const sb_ctx *ctx)
{
    const sb_response *rsp = sb_ctx_rsp(ctx);
    sb_args *a;
    int64_t n = 0;
    CHECK(rsp != NULL);
    CHECK_STR(sb_response_kind(rsp), "ask");
    CHECK(!sb_response_is_final(rsp));
    CHECK(sb_response_data(rsp) == c->data);
    CHECK_OK(sb_args_get_int(sb_ctx_args(ctx), "n", &n));
    c->asks++;
    CHECK_INT(n, c->asks);
    a = sb_args_new();
    CHECK_OK(sb_args_set_int(a, "reply", n * 10));
    CHECK_OK(sb_response_recall(rsp, "answer", a));
    sb_args_free(a);
}

static void on_return_common(caller *c, const sb_ctx *ctx)
{
    const sb_response *rsp = sb_ctx_rsp(ctx);
    CHECK_STR(sb_response_kind(rsp), "return");
    CHECK(sb_response_is_final(rsp));
    CHECK(sb_response_data(rsp) == c->data);
    /* Still alive during the final handler; freed right after. */
    cb_check_freed(c->data, 0);
    CHECK_OK(sb_args_get_int(sb_ctx_args(ctx), "total", &c->total));
    CHECK_ST(sb_response_recall(rsp, "answer", NULL), SB_INVALID_STATE);
    c->returns++;
}

static int32_t on_ask(void *user, const sb_ctx *ctx)
{
    cb_alive((cb *)user);
    on_ask_common((caller *)((cb *)user)->extra, ctx);
    return 0;
}

static int32_t on_return(void *user, const sb_ctx *ctx)
{
    cb_alive((cb *)user);
    on_return_common((caller *)((cb *)user)->extra, ctx);
    return 0;
}

/* A top-level request to target (a stage or a remote stage). */
static void dialogue(const sb_stage *stage, const sb_remote *remote)
{
    caller c;
    cb *h_ask = cb_new("on ask"), *h_ret = cb_new("on return");
    cb *replaced = cb_new("caller data, replaced");
    sb_request_builder *b = stage ? sb_request_to_stage(stage, "start")
                                  : sb_request_to_remote(remote, "start");
    sb_request *req = NULL;
    memset(&c, 0, sizeof c);
    c.data = cb_new("caller data");
    h_ask->extra = h_ret->extra = &c;
    CHECK(b != NULL);
    CHECK_OK(sb_request_builder_on(b, "ask", on_ask, h_ask, cb_free));
    CHECK_OK(sb_request_builder_on(b, "return", on_return, h_ret, cb_free));
    CHECK_OK(sb_request_send(b, &req));
    CHECK_OK(sb_request_set_data(req, replaced, cb_free));
    CHECK_OK(sb_request_set_data(req, c.data, cb_free));
    cb_check_freed(replaced, 1);

    RUN_UNTIL(lp, c.returns == 1);
    CHECK_INT(c.asks, 3);
    CHECK_INT(c.total, 60);
    cb_check_freed(c.data, 1);
    CHECK(!sb_request_is_open(req));
    /* The request's handlers are released when the request has ended. */
    sb_request_free(req);
    cb_check_freed(h_ask, 1);
    cb_check_freed(h_ret, 1);
    OK("%s: three asks recalled, total returned, each data slot freed once",
       stage ? "local" : "remote");
}

/* ---- the same from inside a stage: Driver -------------------------------- */

static caller driver_caller;
static sb_request *driver_sub;          /* Driver's request to Counter */
static const sb_stage *driver_target;   /* Counter, local ... */
static const sb_remote *driver_remote;  /* ... or remote */

static int32_t driver_go(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    sb_request_builder *b;
    cb_alive((cb *)user);
    CHECK_OK(sb_served_set_data(req, driver_caller.data, cb_free));
    b = driver_target ? sb_request_to_stage(driver_target, "start")
                      : sb_request_to_remote(driver_remote, "start");
    CHECK(b != NULL);
    /* asks go to on_count_ask by role, the return to count_done by name. */
    CHECK_OK(sb_request_builder_role(b, "count"));
    CHECK_OK(sb_request_builder_on_method(b, "return", "count_done"));
    CHECK_OK(sb_request_send(b, &driver_sub));
    /* Its data slot is the same record: handlers compare against it. */
    CHECK_OK(sb_request_set_data(driver_sub, driver_caller.data, NULL));
    return 0;
}

/* Response handlers of Driver see Driver's own request and stage data. */
static void check_driver_ctx(const sb_ctx *ctx)
{
    const sb_served *mine = sb_ctx_req(ctx);
    CHECK(mine != NULL);
    CHECK(sb_served_is_open(mine));
    CHECK(sb_served_data(mine) == driver_caller.data);
    CHECK(sb_ctx_stage(ctx) != NULL);
    CHECK_STR(((cb *)sb_stage_data(sb_ctx_stage(ctx)))->name, "driver stage");
}

static int32_t driver_on_count_ask(void *user, const sb_ctx *ctx)
{
    cb_alive((cb *)user);
    check_driver_ctx(ctx);
    on_ask_common(&driver_caller, ctx);
    return 0;
}

static int32_t driver_count_done(void *user, const sb_ctx *ctx)
{
    sb_args *ret = sb_args_new();
    cb_alive((cb *)user);
    check_driver_ctx(ctx);
    CHECK(sb_response_data(sb_ctx_rsp(ctx)) == driver_caller.data);
    CHECK_OK(sb_args_get_int(sb_ctx_args(ctx), "total",
                             &driver_caller.total));
    driver_caller.returns++;
    /* Answer Driver's own caller with the total. */
    CHECK_OK(sb_args_set_int(ret, "total", driver_caller.total + 1));
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, ret));
    sb_args_free(ret);
    return 0;
}

static int32_t top_on_return(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    int64_t total = 0;
    cb_alive(c);
    CHECK_OK(sb_args_get_int(sb_ctx_args(ctx), "total", &total));
    c->calls++;
    c->id = (uint64_t)total;
    /* A top-level request: no stage, no request being served. */
    CHECK(sb_ctx_stage(ctx) == NULL);
    CHECK(sb_ctx_req(ctx) == NULL);
    return 0;
}

static void driven_dialogue(const sb_stage *driver, const sb_stage *stage,
                            const sb_remote *remote)
{
    cb *top = cb_new("top return");
    sb_request_builder *b = sb_request_to_stage(driver, "go");
    sb_request *req = NULL;
    memset(&driver_caller, 0, sizeof driver_caller);
    driver_caller.data = cb_new("driver's request data");
    driver_target = stage;
    driver_remote = remote;
    CHECK_OK(sb_request_builder_on(b, "return", top_on_return, top, cb_free));
    CHECK_OK(sb_request_send(b, &req));
    RUN_UNTIL(lp, top->calls == 1);
    CHECK_INT(driver_caller.asks, 3);
    CHECK_INT(driver_caller.returns, 1);
    CHECK_INT(top->id, 61);
    cb_check_freed(driver_caller.data, 1);
    sb_request_free(req);
    sb_request_free(driver_sub);
    driver_sub = NULL;
    cb_check_freed(top, 1);
    OK("%s, from a stage: role and named handlers, the stage's own request "
       "seen in them",
       stage ? "local" : "remote");
}

int main(void)
{
    sb_stage *counter = NULL, *driver = NULL;
    sb_broker *broker;
    sb_client *pub, *sub;
    sb_remote *remote;
    sb_status st;
    cb *stage_data = cb_new("driver stage");
    char addr[256];

    test_begin(__FILE__);
    CHECK_OK(sb_loop_new(&lp));
    CHECK_OK(sb_stage_new(lp, "Counter", &counter));
    CHECK_OK(sb_stage_on(counter, "start", counter_start, cb_new("start"),
                         cb_free));
    CHECK_OK(sb_stage_on(counter, "on_answer", counter_answer,
                         cb_new("answer"), cb_free));
    CHECK_OK(sb_stage_new(lp, "Driver", &driver));
    CHECK(sb_stage_data(driver) == NULL);
    CHECK_OK(sb_stage_set_data(driver, stage_data, cb_free));
    CHECK(sb_stage_data(driver) == stage_data);
    CHECK_OK(sb_stage_on(driver, "go", driver_go, cb_new("go"), cb_free));
    CHECK_OK(sb_stage_on(driver, "on_count_ask", driver_on_count_ask,
                         cb_new("on_count_ask"), cb_free));
    CHECK_OK(sb_stage_on(driver, "count_done", driver_count_done,
                         cb_new("count_done"), cb_free));

    dialogue(counter, NULL);
    driven_dialogue(driver, counter, NULL);

    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    pub = connect_client(lp, addr, NULL);
    sub = connect_client(lp, addr, NULL);
    CHECK_OK(publish_wait(lp, counter, pub, "Counter", NULL, 0));
    remote = subscribe_wait(lp, sub, "Counter", &st);
    CHECK_ST(st, SB_OK);

    dialogue(NULL, remote);
    driven_dialogue(driver, NULL, remote);

    sb_remote_free(remote);
    sb_client_free(sub);
    sb_client_free(pub);
    sb_broker_free(broker);
    cb_check_freed(stage_data, 0);
    sb_stage_free(driver);
    cb_check_freed(stage_data, 1);
    sb_stage_free(counter);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
