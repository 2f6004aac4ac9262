/*
 * exports.c: what a published stage lets other programs reach (issue 10,
 * items 2, 3 and 6), from C.
 *
 * The stage Svc has a method `ask` (emits `question`), a recall-only
 * `answer` (SB_HANDLER_RECALL_ONLY), a method `secret_admin`, and the
 * handlers `on_cancel`, `on_my_ping` and `on_knock_hello` (a role
 * handler, marked SB_HANDLER_INTERNAL). Published as "All" without a
 * method list it exports `ask` and `secret_admin` only: a request for
 * cancel, my_ping, knock_hello or answer is SB_NO_SUCH_METHOD. Published
 * as "Ask" with the list {ask}, a recall of `secret_admin` inside an
 * `ask` dialogue ends the request with SB_NO_SUCH_METHOD and never runs
 * it, while a recall of `answer` returns. The served request shows the
 * caller's id as sb_served_caller_id. After sb_remote_unsubscribe,
 * sb_request_send through the remote stage fails with SB_NOT_SUBSCRIBED.
 */
#include "check.h"

static sb_loop *lp;
static int ran_secret, ran_internal;
static uint64_t served_caller_id, served_id;

static int32_t svc_ask(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    (void)user;
    served_caller_id = sb_served_caller_id(req);
    served_id = sb_served_id(req);
    CHECK_OK(sb_served_emit(req, "question", NULL));
    return 0;
}

static int32_t svc_answer(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK(sb_served_id(sb_ctx_req(ctx)) == served_id);
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), "greeting", NULL));
    return 0;
}

static int32_t svc_secret(void *user, const sb_ctx *ctx)
{
    (void)user;
    ran_secret++;
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), "secret", NULL));
    return 0;
}

static int32_t svc_internal(void *user, const sb_ctx *ctx)
{
    (void)user;
    (void)ctx;
    ran_internal++;
    return 0;
}

/* The outcome of one request: the final response's kind or error. */
typedef struct {
    int done;
    sb_status error;
    char kind[64];
    const char *recall; /* what to recall on `question` */
} outcome;

static int32_t on_question(void *user, const sb_ctx *ctx)
{
    outcome *o = (outcome *)((cb *)user)->extra;
    CHECK_OK(sb_response_recall(sb_ctx_rsp(ctx), o->recall, NULL));
    return 0;
}

static int32_t on_final(void *user, const sb_ctx *ctx)
{
    outcome *o = (outcome *)((cb *)user)->extra;
    const sb_response *rsp = sb_ctx_rsp(ctx);
    if (!sb_response_is_final(rsp))
        return 0;
    o->done = 1;
    o->error = sb_response_error(rsp);
    snprintf(o->kind, sizeof o->kind, "%s", sb_response_kind(rsp));
    return 0;
}

/* Sends `method` through remote (recalling `recall` on a question) and
 * waits for its final response. */
static void request(const sb_remote *remote, const char *method,
                    const char *recall, outcome *o, uint64_t *id)
{
    sb_request_builder *b = sb_request_to_remote(remote, method);
    sb_request *req = NULL;
    cb *q = cb_new("question"), *f = cb_new("final");
    memset(o, 0, sizeof *o);
    o->recall = recall;
    q->extra = o;
    f->extra = o;
    CHECK(b != NULL);
    CHECK_OK(sb_request_builder_on(b, "question", on_question, q, cb_free));
    CHECK_OK(sb_request_builder_fallback(b, on_final, f, cb_free));
    CHECK_OK(sb_request_send(b, &req));
    if (id != NULL)
        *id = sb_request_id(req);
    RUN_UNTIL(lp, o->done);
    sb_request_free(req);
}

int main(void)
{
    sb_stage *svc = NULL;
    sb_broker *broker;
    sb_client *pub, *sub;
    sb_remote *all, *ask_only;
    sb_status st;
    outcome o;
    uint64_t id = 0;
    char addr[256];
    const char *hidden[] = {"cancel", "on_cancel", "my_ping", "knock_hello", "answer"};
    const char *ask_methods[] = {"ask"};
    size_t i;

    test_begin(__FILE__);
    CHECK_OK(sb_loop_new(&lp));
    CHECK_OK(sb_stage_new(lp, "Svc", &svc));
    CHECK_OK(sb_stage_on(svc, "ask", svc_ask, NULL, NULL));
    CHECK_OK(sb_stage_on(svc, "answer", svc_answer, NULL, NULL));
    CHECK_OK(sb_stage_set_kind(svc, "answer", SB_HANDLER_RECALL_ONLY));
    CHECK_OK(sb_stage_on(svc, "secret_admin", svc_secret, NULL, NULL));
    CHECK_OK(sb_stage_on(svc, "on_cancel", svc_internal, NULL, NULL));
    CHECK_OK(sb_stage_on(svc, "on_my_ping", svc_internal, NULL, NULL));
    CHECK_OK(sb_stage_on(svc, "on_knock_hello", svc_internal, NULL, NULL));
    CHECK_OK(sb_stage_set_kind(svc, "on_knock_hello", SB_HANDLER_INTERNAL));

    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    pub = connect_client(lp, addr, NULL);
    sub = connect_client(lp, addr, NULL);
    CHECK_OK(publish_wait(lp, svc, pub, "All", NULL, 0));
    CHECK_OK(publish_wait(lp, svc, pub, "Ask", ask_methods, 1));
    CHECK_STR(listing_wait(lp, sub), "All[ask,secret_admin];Ask[ask];");
    all = subscribe_wait(lp, sub, "All", &st);
    CHECK_ST(st, SB_OK);
    ask_only = subscribe_wait(lp, sub, "Ask", &st);
    CHECK_ST(st, SB_OK);

    /* Not exported: refused, nothing runs. */
    for (i = 0; i < sizeof hidden / sizeof hidden[0]; i++) {
        request(all, hidden[i], "answer", &o, NULL);
        CHECK_ST(o.error, SB_NO_SUCH_METHOD);
    }
    CHECK_INT(ran_internal, 0);

    /* A recall of an unexported handler is refused at the publisher. */
    request(ask_only, "ask", "secret_admin", &o, NULL);
    CHECK_ST(o.error, SB_NO_SUCH_METHOD);
    CHECK_INT(ran_secret, 0);

    /* The recall-only answer works, and the callee sees the caller's id
     * as caller_id. */
    request(ask_only, "ask", "answer", &o, &id);
    CHECK_ST(o.error, SB_OK);
    CHECK_STR(o.kind, "greeting");
    CHECK(served_caller_id == id);
    CHECK(served_id != 0);

    /* After an unsubscribe, requests fail at once. */
    CHECK_OK(sb_remote_unsubscribe(ask_only, NULL, NULL, NULL));
    {
        sb_request *req = NULL;
        CHECK_ST(sb_request_send(sb_request_to_remote(ask_only, "ask"), &req),
                 SB_NOT_SUBSCRIBED);
        CHECK(req == NULL);
    }

    sb_remote_free(ask_only);
    sb_remote_free(all);
    sb_client_free(sub);
    sb_client_free(pub);
    sb_broker_free(broker);
    sb_stage_free(svc);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
