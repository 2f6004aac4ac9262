/*
 * call_sync.c: calls by session name without a subscribe.
 * sb_client_call_sync returns the final answer (SB_OK and the return's
 * args), or the error that ended the call: SB_NO_SUCH_SESSION,
 * SB_NO_SUCH_METHOD, the service's own error, SB_TIMEOUT (the service
 * sees the cancel); inside a callback of its loop it is refused with
 * SB_INVALID_STATE. sb_client_call delivers every response to one
 * handler and frees its user data once after the last; a call still
 * pending when everything is freed has its user data freed once and
 * leaks nothing (under valgrind).
 */
#include "check.h"

static int32_t echo(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, sb_ctx_args(ctx)));
    return 0;
}

static int32_t refuse(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK_OK(sb_served_fail(sb_ctx_req(ctx), SB_INVALID_ARGUMENT,
                            "no thanks"));
    return 0;
}

/* Two ticks, then the return. */
static int32_t count(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    (void)user;
    CHECK_OK(sb_served_emit(req, "tick", NULL));
    CHECK_OK(sb_served_emit(req, "tick", NULL));
    CHECK_OK(sb_served_return(req, NULL, NULL));
    return 0;
}

static void cancelled(void *user)
{
    ((cb *)user)->calls++;
}

static int hangs;

/* Never answers: kept in its own data slot until the caller cancels. */
static int32_t hang(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    hangs++;
    CHECK_OK(sb_served_on_cancel(req, cancelled, user, NULL));
    CHECK_OK(sb_served_set_data(req, sb_served_ref(req), free_kept_served));
    return 0;
}

/* A blocking call inside a handler: refused, and the status it got is
 * the answer. */
static int32_t nested(void *user, const sb_ctx *ctx)
{
    const sb_client *caller = (const sb_client *)user;
    sb_args *reply = NULL, *a = sb_args_new();
    sb_status st = sb_client_call_sync(caller, "Svc", "echo", NULL, 1000,
                                       &reply);
    CHECK(reply == NULL);
    CHECK(strstr(sb_last_error(), "inside a callback") != NULL);
    CHECK_OK(sb_args_set_int(a, "status", st));
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, a));
    sb_args_free(a);
    return 0;
}

/* sb_client_call's handler: counts responses, notes the final one. */
static int32_t on_response(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    const sb_response *rsp = sb_ctx_rsp(ctx);
    cb_alive(c);
    CHECK(rsp != NULL);
    if (sb_response_is_final(rsp)) {
        c->status = sb_response_error(rsp);
        snprintf(c->message, sizeof c->message, "%s",
                 sb_response_error(rsp) == SB_OK ? sb_response_kind(rsp)
                                                 : sb_response_message(rsp));
        c->id = 1;
    } else {
        c->calls++;
    }
    return 0;
}

int main(void)
{
    sb_loop *lp = NULL;
    sb_broker *broker;
    sb_client *caller, *service;
    sb_stage *stage = NULL;
    sb_args *a, *reply = NULL;
    int64_t n = 0;
    char text[64];
    char addr[256];
    cb *seen_cancel = cb_new("cancel seen");
    cb *async = cb_new("async call"), *unknown = cb_new("async, no session");
    cb *ignored = cb_new("async, no handler");
    cb *pending = cb_new("async, pending at the end");

    test_begin(__FILE__);
    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    caller = connect_client(lp, addr, NULL);
    service = connect_client(lp, addr, NULL);
    CHECK_OK(sb_stage_new(lp, "Svc", &stage));
    CHECK_OK(sb_stage_on(stage, "echo", echo, NULL, NULL));
    CHECK_OK(sb_stage_on(stage, "refuse", refuse, NULL, NULL));
    CHECK_OK(sb_stage_on(stage, "count", count, NULL, NULL));
    CHECK_OK(sb_stage_on(stage, "hang", hang, seen_cancel, cb_free));
    CHECK_OK(sb_stage_on(stage, "nested", nested, caller, NULL));
    CHECK_OK(publish_wait(lp, stage, service, "Svc", NULL, 0));

    /* The answer, without a subscribe. */
    a = sb_args_new();
    CHECK_OK(sb_args_set_string(a, "text", "hi"));
    CHECK_OK(sb_client_call_sync(caller, "Svc", "echo", a, 10000, &reply));
    sb_args_free(a);
    CHECK(reply != NULL);
    CHECK_STR(arg_string(reply, "text", text, sizeof text), "hi");
    sb_args_free(reply);
    reply = NULL;
    CHECK_OK(sb_client_call_sync(caller, "Svc", "count", NULL, 0, NULL));
    OK("call_sync returns the return's args (emits passed over)");

    /* Error codes, with the reason in sb_last_error. */
    CHECK_ST(sb_client_call_sync(caller, "Nobody", "echo", NULL, 10000,
                                 &reply),
             SB_NO_SUCH_SESSION);
    CHECK(strstr(sb_last_error(), "Nobody") != NULL);
    CHECK(reply == NULL);
    CHECK_ST(sb_client_call_sync(caller, "Svc", "nope", NULL, 10000, &reply),
             SB_NO_SUCH_METHOD);
    CHECK_ST(sb_client_call_sync(caller, "Svc", "refuse", NULL, 10000,
                                 &reply),
             SB_INVALID_ARGUMENT);
    CHECK(strstr(sb_last_error(), "no thanks") != NULL);
    CHECK_ST(sb_client_call_sync(caller, "", "echo", NULL, 10000, &reply),
             SB_INVALID_ARGUMENT);
    CHECK_ST(sb_client_call_sync(NULL, "Svc", "echo", NULL, 0, &reply),
             SB_NULL_ARGUMENT);
    CHECK_ST(sb_client_call_sync(caller, NULL, "echo", NULL, 0, &reply),
             SB_NULL_ARGUMENT);
    CHECK(reply == NULL);
    OK("call_sync reports the error that ended the call");

    /* A timeout cancels the call at the service. */
    CHECK_ST(sb_client_call_sync(caller, "Svc", "hang", NULL, 100, &reply),
             SB_TIMEOUT);
    CHECK(reply == NULL);
    RUN_UNTIL(lp, seen_cancel->calls > 0);
    OK("call_sync times out, and the service sees the cancel");

    /* Refused inside a callback (a method handler on the same loop). */
    CHECK_OK(sb_client_call_sync(caller, "Svc", "nested", NULL, 10000,
                                 &reply));
    CHECK_OK(sb_args_get_int(reply, "status", &n));
    CHECK_INT(n, SB_INVALID_STATE);
    sb_args_free(reply);
    reply = NULL;
    OK("call_sync inside a callback is SB_INVALID_STATE");

    /* The asynchronous call: every response to one handler, user data
     * freed once after the last. */
    CHECK_OK(sb_client_call(caller, "Svc", "count", NULL, on_response, async,
                            cb_free));
    RUN_UNTIL(lp, async->id == 1);
    CHECK_INT(async->calls, 2);
    CHECK_ST(async->status, SB_OK);
    CHECK_STR(async->message, "return");
    RUN_UNTIL(lp, async->frees == 1);
    cb_check_freed(async, 1);
    CHECK_OK(sb_client_call(caller, "Nobody", "echo", NULL, on_response,
                            unknown, cb_free));
    RUN_UNTIL(lp, unknown->id == 1);
    CHECK_ST(unknown->status, SB_NO_SUCH_SESSION);
    RUN_UNTIL(lp, unknown->frees == 1);
    CHECK_OK(sb_client_call(caller, "Svc", "echo", NULL, NULL, ignored,
                            cb_free));
    RUN_UNTIL(lp, ignored->frees == 1);
    CHECK_ST(sb_client_call(caller, NULL, "echo", NULL, NULL, NULL, NULL),
             SB_NULL_ARGUMENT);
    OK("sb_client_call delivers every response and frees user data once");

    /* Still pending when everything is freed. */
    CHECK_OK(sb_client_call(caller, "Svc", "hang", NULL, on_response, pending,
                            cb_free));
    RUN_UNTIL(lp, hangs == 2);
    CHECK_INT(pending->frees, 0);

    sb_stage_free(stage);
    sb_client_free(caller);
    sb_client_free(service);
    sb_broker_free(broker);
    sb_loop_free(lp);
    cb_check_freed(pending, 1);
    CHECK_INT(pending->id, 0);
    OK("a call pending at sb_loop_free is dropped, its user data freed once");
    cb_check_all_freed();
    return test_end();
}
