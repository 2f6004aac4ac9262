/*
 * unanswered.c: a request its handler neither answers nor keeps ends
 * with SB_UNANSWERED for the caller, once, locally and through a broker.
 *
 * The stage Forgetful serves:
 *   forget  returns 0 without answering and without sb_served_ref;
 *   keep    takes an owned reference (sb_served_ref) and returns; the
 *           test frees it later without answering;
 *   ask     emits `question` and keeps nothing: the emit keeps the
 *           request open for the caller's recall of `answer`, which
 *           returns.
 * The caller of `forget` and of `keep` (once the reference is freed)
 * gets exactly one final response, an error SB_UNANSWERED; the caller of
 * `ask` gets its return.
 */
#include "check.h"

static sb_loop *lp;
static sb_served *kept;

static int32_t forget(void *user, const sb_ctx *ctx)
{
    cb_alive((cb *)user);
    CHECK(sb_served_is_open(sb_ctx_req(ctx)));
    return 0;
}

static int32_t keep(void *user, const sb_ctx *ctx)
{
    cb_alive((cb *)user);
    CHECK(kept == NULL);
    kept = sb_served_ref(sb_ctx_req(ctx));
    CHECK(kept != NULL);
    return 0;
}

static int32_t ask(void *user, const sb_ctx *ctx)
{
    cb_alive((cb *)user);
    CHECK_OK(sb_served_emit(sb_ctx_req(ctx), "question", NULL));
    return 0;
}

static int32_t answer(void *user, const sb_ctx *ctx)
{
    cb_alive((cb *)user);
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, sb_ctx_args(ctx)));
    return 0;
}

/* The caller's record: every response, the last one's status. */
static int32_t on_any(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    const sb_response *rsp = sb_ctx_rsp(ctx);
    cb_alive(c);
    if (!sb_response_is_final(rsp)) {
        sb_args *a = sb_args_new();
        CHECK_STR(sb_response_kind(rsp), "question");
        CHECK_OK(sb_args_set_string(a, "name", "Rocco"));
        CHECK_OK(sb_response_recall(rsp, "answer", a));
        sb_args_free(a);
        return 0;
    }
    c->calls++;
    c->status = sb_response_error(rsp);
    snprintf(c->message, sizeof c->message, "%s", sb_response_message(rsp));
    return 0;
}

static sb_request *send_to(const sb_stage *stage, const sb_remote *remote,
                           const char *method, cb *c)
{
    sb_request_builder *b = stage ? sb_request_to_stage(stage, method)
                                  : sb_request_to_remote(remote, method);
    sb_request *req = NULL;
    CHECK(b != NULL);
    CHECK_OK(sb_request_builder_fallback(b, on_any, c, cb_free));
    CHECK_OK(sb_request_send(b, &req));
    return req;
}

/* Nothing more arrives for `c`: a round trip through `ask` after it. */
static void settle(const sb_stage *stage, const sb_remote *remote)
{
    cb *c = cb_new("settle");
    sb_request *req = send_to(stage, remote, "ask", c);
    RUN_UNTIL(lp, c->calls == 1);
    CHECK_ST(c->status, SB_OK);
    sb_request_free(req);
    cb_check_freed(c, 1);
}

static void run(const sb_stage *stage, const sb_remote *remote)
{
    const char *where = stage ? "local" : "remote";
    cb *forgot = cb_new("forget");
    cb *held = cb_new("keep");
    sb_request *req;

    req = send_to(stage, remote, "forget", forgot);
    RUN_UNTIL(lp, forgot->calls > 0);
    settle(stage, remote);
    CHECK_INT(forgot->calls, 1);
    CHECK_ST(forgot->status, SB_UNANSWERED);
    CHECK(!sb_request_is_open(req));
    CHECK(strstr(forgot->message, "without an answer") != NULL);
    sb_request_free(req);
    cb_check_freed(forgot, 1);
    OK("%s: a request neither answered nor kept ends with SB_UNANSWERED "
       "(%s)",
       where, sb_strerror(SB_UNANSWERED));

    req = send_to(stage, remote, "keep", held);
    RUN_UNTIL(lp, kept != NULL);
    settle(stage, remote);
    CHECK_INT(held->calls, 0);
    CHECK(sb_request_is_open(req));
    sb_served_free(kept);
    kept = NULL;
    RUN_UNTIL(lp, held->calls > 0);
    settle(stage, remote);
    CHECK_INT(held->calls, 1);
    CHECK_ST(held->status, SB_UNANSWERED);
    sb_request_free(req);
    cb_check_freed(held, 1);
    OK("%s: a kept request is open until its last reference is freed, "
       "then ends with SB_UNANSWERED",
       where);
    OK("%s: an emit keeps the request open for the caller's recall", where);
}

int main(void)
{
    sb_stage *stage = NULL;
    sb_broker *broker;
    sb_client *pub, *sub;
    sb_remote *remote;
    sb_status st;
    char addr[256];

    test_begin(__FILE__);
    CHECK_STR(sb_strerror(SB_UNANSWERED), "unanswered");
    CHECK_OK(sb_loop_new(&lp));
    CHECK_OK(sb_stage_new(lp, "Forgetful", &stage));
    CHECK_OK(sb_stage_on(stage, "forget", forget, cb_new("forget handler"),
                         cb_free));
    CHECK_OK(sb_stage_on(stage, "keep", keep, cb_new("keep handler"),
                         cb_free));
    CHECK_OK(sb_stage_on(stage, "ask", ask, cb_new("ask handler"), cb_free));
    CHECK_OK(sb_stage_on(stage, "answer", answer, cb_new("answer handler"),
                         cb_free));

    run(stage, NULL);

    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    pub = connect_client(lp, addr, NULL);
    sub = connect_client(lp, addr, NULL);
    CHECK_OK(publish_wait(lp, stage, pub, "Forgetful", NULL, 0));
    remote = subscribe_wait(lp, sub, "Forgetful", &st);
    CHECK_ST(st, SB_OK);

    run(NULL, remote);

    sb_remote_free(remote);
    sb_client_free(sub);
    sb_client_free(pub);
    sb_broker_free(broker);
    sb_stage_free(stage);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
