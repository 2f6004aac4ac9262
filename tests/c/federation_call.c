/*
 * federation_call.c: a C client calling a session published on another
 * broker. Two brokers made from C with sb_broker_options_set_federation
 * join the NATS cluster tests/c_api.rs started (its URLs in
 * STAGEBUS_TEST_NATS_A and STAGEBUS_TEST_NATS_B, one node each, and a
 * namespace of their own in STAGEBUS_TEST_NATS_NS). A stage published
 * through broker c2 is called through broker c1 exactly as a local one:
 * sb_client_call_sync returns its answer; an asynchronous call gets 500
 * emits in order, then the return; a missing method is
 * SB_NO_SUCH_METHOD and a missing session SB_NO_SUCH_SESSION; the
 * service sees the caller's name marked with its broker; everything
 * frees cleanly (under valgrind). Without those variables (run by hand)
 * it says so and passes nothing.
 */
#include "check.h"
#include <stdlib.h>

static int32_t echo(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, sb_ctx_args(ctx)));
    return 0;
}

/* n ticks numbered from 0, then the return. */
static int32_t count(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    int64_t n = 0;
    (void)user;
    CHECK_OK(sb_args_get_int(sb_ctx_args(ctx), "n", &n));
    for (int64_t i = 0; i < n; i++) {
        sb_args *a = sb_args_new();
        CHECK_OK(sb_args_set_int(a, "i", i));
        CHECK_OK(sb_served_emit(req, "tick", a));
        sb_args_free(a);
    }
    CHECK_OK(sb_served_return(req, NULL, NULL));
    return 0;
}

/* Answers with the caller's client name, as the service sees it. */
static int32_t whoami(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    char name[256] = "";
    sb_args *a = sb_args_new();
    (void)user;
    if (sb_served_caller_client_name(req, name, sizeof name) != SB_OK)
        name[0] = '\0';
    CHECK_OK(sb_args_set_string(a, "name", name));
    CHECK_OK(sb_served_return(req, NULL, a));
    sb_args_free(a);
    return 0;
}

/* Counts the emits, checking their order; notes the final answer. */
static int32_t on_response(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    const sb_response *rsp = sb_ctx_rsp(ctx);
    int64_t i = -1;
    cb_alive(c);
    if (sb_response_is_final(rsp)) {
        c->status = sb_response_error(rsp);
        c->id = 1;
        return 0;
    }
    CHECK_OK(sb_args_get_int(sb_ctx_args(ctx), "i", &i));
    CHECK_INT(i, c->calls);
    c->calls++;
    return 0;
}

/* A client connected to addr under the name `name`. */
static sb_client *connect_named(sb_loop *lp, const char *addr,
                                const char *name)
{
    sb_client_options *co = NULL;
    sb_client *client = NULL;
    cb *c = cb_new("connect");
    CHECK_OK(sb_client_options_new(&co));
    CHECK_OK(sb_client_options_set_name(co, name));
    CHECK_OK(sb_client_connect_with(lp, addr, co, cb_connected, c, cb_free,
                                    &client));
    sb_client_options_free(co);
    RUN_UNTIL(lp, c->calls > 0);
    CHECK_ST(c->status, SB_OK);
    return client;
}

static sb_broker *federated(sb_loop *lp, const char *url, const char *id,
                            const char *ns, char *addr, size_t cap)
{
    sb_broker_options *bo = NULL;
    sb_broker *broker = NULL;
    const char *listens[1] = {"tcp://127.0.0.1:0"};
    CHECK_OK(sb_broker_options_new(&bo));
    CHECK_OK(sb_broker_options_set_federation(bo, url, id, ns));
    CHECK_OK(sb_broker_new_with(lp, listens, 1, bo, &broker));
    sb_broker_options_free(bo);
    CHECK_OK(sb_broker_address(broker, 0, addr, cap));
    return broker;
}

int main(void)
{
    const char *url_a = getenv("STAGEBUS_TEST_NATS_A");
    const char *url_b = getenv("STAGEBUS_TEST_NATS_B");
    const char *ns = getenv("STAGEBUS_TEST_NATS_NS");
    const char *methods[3] = {"echo", "count", "whoami"};
    sb_loop *lp = NULL;
    sb_broker *b1, *b2;
    sb_client *caller, *service;
    sb_stage *stage = NULL;
    sb_args *a, *reply = NULL;
    sb_status st;
    double deadline;
    char text[256], addr1[256], addr2[256];
    cb *stream = cb_new("stream");

    test_begin(__FILE__);
    if (url_a == NULL || url_b == NULL || ns == NULL) {
        printf("# SKIP no NATS cluster given (tests/c_api.rs starts one)\n");
        return test_end();
    }
    CHECK_OK(sb_loop_new(&lp));
    b1 = federated(lp, url_a, "c1", ns, addr1, sizeof addr1);
    b2 = federated(lp, url_b, "c2", ns, addr2, sizeof addr2);
    caller = connect_named(lp, addr1, "c-caller");
    service = connect_client(lp, addr2, NULL);
    CHECK_OK(sb_stage_new(lp, "Svc", &stage));
    CHECK_OK(sb_stage_on(stage, "echo", echo, NULL, NULL));
    CHECK_OK(sb_stage_on(stage, "count", count, NULL, NULL));
    CHECK_OK(sb_stage_on(stage, "whoami", whoami, NULL, NULL));
    /* The directory is ready once the brokers reached NATS: until then
     * a publish is SB_TIMEOUT. */
    deadline = now_ms() + TEST_WAIT_MS;
    while ((st = publish_wait(lp, stage, service, "Svc", methods, 3)) ==
               SB_TIMEOUT &&
           now_ms() < deadline)
        CHECK_OK(sb_loop_run_for(lp, 100));
    CHECK_OK(st);
    OK("a stage is published through a federated broker");

    /* Called through the other broker once its directory has it. */
    a = sb_args_new();
    CHECK_OK(sb_args_set_string(a, "text", "across"));
    deadline = now_ms() + TEST_WAIT_MS;
    while ((st = sb_client_call_sync(caller, "Svc", "echo", a, 10000,
                                     &reply)) == SB_NO_SUCH_SESSION &&
           now_ms() < deadline)
        CHECK_OK(sb_loop_run_for(lp, 50));
    sb_args_free(a);
    CHECK_OK(st);
    CHECK(reply != NULL);
    CHECK_STR(arg_string(reply, "text", text, sizeof text), "across");
    sb_args_free(reply);
    reply = NULL;
    OK("sb_client_call_sync across brokers returns the answer");

    a = sb_args_new();
    CHECK_OK(sb_args_set_int(a, "n", 500));
    CHECK_OK(sb_client_call(caller, "Svc", "count", a, on_response, stream,
                            cb_free));
    sb_args_free(a);
    RUN_UNTIL(lp, stream->id == 1);
    CHECK_ST(stream->status, SB_OK);
    CHECK_INT(stream->calls, 500);
    RUN_UNTIL(lp, stream->frees == 1);
    OK("500 emits across brokers arrive in order, then the return");

    CHECK_ST(sb_client_call_sync(caller, "Svc", "nope", NULL, 10000, &reply),
             SB_NO_SUCH_METHOD);
    CHECK_ST(sb_client_call_sync(caller, "Nobody", "echo", NULL, 10000,
                                 &reply),
             SB_NO_SUCH_SESSION);
    CHECK(reply == NULL);
    OK("errors across brokers are the local ones");

    CHECK_OK(sb_client_call_sync(caller, "Svc", "whoami", NULL, 10000,
                                 &reply));
    CHECK_STR(arg_string(reply, "name", text, sizeof text),
              "c-caller (via broker c1)");
    sb_args_free(reply);
    reply = NULL;
    OK("the service sees the remote caller, marked with its broker");

    sb_stage_free(stage);
    sb_client_free(caller);
    sb_client_free(service);
    sb_broker_free(b1);
    sb_broker_free(b2);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
