/*
 * call_published.c ADDRESS: calls the POE session 'Calc' that
 * bindings/perl/t/lib/publisher_poe.pl publishes (an ordinary POE
 * session, through StageBus::POE::Publish), from C. Compiled and run by
 * bindings/perl/t/25-c-calls-published-poe.t with tests/c/check.h.
 *
 *   add {ARG0: 2, ARG1: 40}   -> return {result: 42}
 *   concat {x: "c", y: "api"} -> return {joined: "c-api"}
 *   count {ARG0: 3}           -> tick {i: 1}, {i: 2}, {i: 3}, return {total: 3}
 *   boom {ARG0: "from C"}     -> error SB_HANDLER_FAILED "from C"
 *   nope                      -> error SB_NO_SUCH_METHOD
 *   quit                      -> return {bye: true}; the publisher exits
 */
#include "check.h"

typedef struct {
    int ticks;          /* tick emits seen, in order */
    int finals;         /* final responses */
    char kind[64];      /* kind of the final response */
    sb_status error;    /* its error, if any */
    char message[256];  /* its error message */
    int64_t value;      /* result / total */
    char text[64];      /* joined */
} outcome;

static int32_t on_any(void *user, const sb_ctx *ctx)
{
    outcome *o = (outcome *)user;
    const sb_response *rsp = sb_ctx_rsp(ctx);
    const sb_args *args = sb_ctx_args(ctx);
    const char *kind = sb_response_kind(rsp);
    if (strcmp(kind, "tick") == 0) {
        int64_t i = 0;
        CHECK_OK(sb_args_get_int(args, "i", &i));
        CHECK_INT(i, o->ticks + 1);
        o->ticks++;
        return 0;
    }
    CHECK(sb_response_is_final(rsp));
    o->finals++;
    snprintf(o->kind, sizeof o->kind, "%s", kind);
    o->error = sb_response_error(rsp);
    snprintf(o->message, sizeof o->message, "%s",
             sb_response_message(rsp) ? sb_response_message(rsp) : "");
    if (sb_args_get_int(args, "result", &o->value) != SB_OK)
        (void)sb_args_get_int(args, "total", &o->value);
    arg_string(args, "joined", o->text, sizeof o->text);
    return 0;
}

/* Sends method with args (consumed) to remote; waits for its final response. */
static void call(sb_loop *lp, const sb_remote *remote, const char *method,
                 sb_args *args, outcome *o)
{
    sb_request_builder *b = sb_request_to_remote(remote, method);
    sb_request *req = NULL;
    CHECK(b != NULL);
    if (args != NULL) {
        CHECK_OK(sb_request_builder_args(b, args));
        sb_args_free(args);
    }
    CHECK_OK(sb_request_builder_fallback(b, on_any, o, NULL));
    CHECK_OK(sb_request_send(b, &req));
    RUN_UNTIL(lp, o->finals > 0);
    sb_request_free(req);
}

int main(int argc, char **argv)
{
    sb_loop *lp = NULL;
    sb_client *client;
    sb_remote *remote;
    sb_status st = SB_OK;
    sb_args *a;
    outcome add = {0}, concat = {0}, count = {0}, boom = {0}, nope = {0}, quit = {0};

    test_begin("call_published.c");
    if (argc != 2)
        FAILF("usage: call_published ADDRESS");
    CHECK_OK(sb_loop_new(&lp));
    client = connect_client(lp, argv[1], NULL);
    remote = subscribe_wait(lp, client, "Calc", &st);
    CHECK_ST(st, SB_OK);
    OK("subscribed to the POE session published as Calc");

    a = sb_args_new();
    CHECK_OK(sb_args_set_int(a, "ARG0", 2));
    CHECK_OK(sb_args_set_int(a, "ARG1", 40));
    call(lp, remote, "add", a, &add);
    CHECK_STR(add.kind, "return");
    CHECK_INT(add.value, 42);
    OK("add(2, 40): the event's return value 42 came back");

    a = sb_args_new();
    CHECK_OK(sb_args_set_string(a, "x", "c"));
    CHECK_OK(sb_args_set_string(a, "y", "api"));
    call(lp, remote, "concat", a, &concat);
    CHECK_STR(concat.kind, "return");
    CHECK_STR(concat.text, "c-api");
    OK("concat({x, y}): named args reached the event as a hash");

    a = sb_args_new();
    CHECK_OK(sb_args_set_int(a, "ARG0", 3));
    call(lp, remote, "count", a, &count);
    CHECK_INT(count.ticks, 3);
    CHECK_STR(count.kind, "return");
    CHECK_INT(count.value, 3);
    OK("count(3): three tick emits from POE delays, then the return");

    a = sb_args_new();
    CHECK_OK(sb_args_set_string(a, "ARG0", "from C"));
    call(lp, remote, "boom", a, &boom);
    CHECK_STR(boom.kind, "error");
    CHECK_ST(boom.error, SB_HANDLER_FAILED);
    CHECK_STR(boom.message, "from C");
    OK("boom: the die in the POE event is SB_HANDLER_FAILED with its message");

    call(lp, remote, "nope", NULL, &nope);
    CHECK_ST(nope.error, SB_NO_SUCH_METHOD);
    OK("nope: an event not published is SB_NO_SUCH_METHOD");

    call(lp, remote, "quit", NULL, &quit);
    CHECK_STR(quit.kind, "return");
    OK("quit answered");

    sb_remote_free(remote);
    sb_client_free(client);
    sb_loop_free(lp);
    return test_end();
}
