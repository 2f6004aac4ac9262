/*
 * monitor.c: watching a broker's traffic from C (sb_client_monitor).
 *
 *  - a monitor with payloads sees a call's deliver (with its args),
 *    emit and result in order, each from and to the right connection;
 *  - a monitor filtered to another session sees none of it;
 *  - a cancel is seen too; free_user runs once, when the client closes.
 */
#include "check.h"

static sb_loop *lp;

static int32_t s_tick(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    (void)user;
    CHECK_OK(sb_served_emit(req, "step", NULL));
    CHECK_OK(sb_served_return(req, "done", NULL));
    return 0;
}

static sb_served *hung; /* kept, never answered: the caller cancels it */

static int32_t s_hang(void *user, const sb_ctx *ctx)
{
    (void)user;
    hung = sb_served_ref(sb_ctx_req(ctx));
    return 0;
}

#define MAX_TAPS 32
struct taps {
    int n;
    char lines[MAX_TAPS][128];
    int64_t from[MAX_TAPS], to[MAX_TAPS];
    char x[32]; /* the deliver's args x */
    int answered;
    sb_status status;
    int freed;
};

static void on_tap(void *user, const sb_value *event)
{
    struct taps *t = user;
    const sb_args *e = sb_value_map(event);
    char kind[32], session[32], name[32];
    CHECK(e != NULL);
    arg_string(e, "kind", kind, sizeof kind);
    if (strcmp(kind, "deliver") && strcmp(kind, "emit") && strcmp(kind, "result") &&
        strcmp(kind, "cancel"))
        return;
    CHECK(t->n < MAX_TAPS);
    snprintf(t->lines[t->n], sizeof t->lines[0], "%s %s %s", kind,
             arg_string(e, "session", session, sizeof session),
             arg_string(e, "name", name, sizeof name));
    CHECK_OK(sb_args_get_int(e, "from", &t->from[t->n]));
    CHECK_OK(sb_args_get_int(e, "to", &t->to[t->n]));
    if (strcmp(kind, "deliver") == 0 && sb_args_get(e, "args") != NULL)
        arg_string(sb_value_map(sb_args_get(e, "args")), "x", t->x, sizeof t->x);
    t->n++;
}

static void on_done(void *user, sb_status st, const char *message)
{
    struct taps *t = user;
    (void)message;
    t->answered++;
    t->status = st;
}

static void free_taps(void *user)
{
    ((struct taps *)user)->freed++;
}

/* A client connected to addr, with its connection id. */
static sb_client *connect_with_id(const char *addr, uint64_t *id)
{
    sb_client *client = NULL;
    cb *c = cb_new("connect");
    CHECK_OK(sb_client_connect(lp, addr, NULL, cb_connected, c, cb_free, &client));
    RUN_UNTIL(lp, c->calls > 0);
    CHECK_ST(c->status, SB_OK);
    *id = c->id;
    return client;
}

static int final_seen;

static int32_t on_final(void *user, const sb_ctx *ctx)
{
    (void)user;
    (void)ctx;
    final_seen++;
    return 0;
}

int main(void)
{
    sb_broker *broker;
    sb_client *service, *watcher, *picky_client, *caller;
    sb_stage *stage = NULL;
    sb_remote *remote;
    sb_request_builder *b;
    sb_request *req = NULL, *hang = NULL;
    sb_args *args;
    const char *methods[] = {"tick", "hang"};
    char addr[128];
    uint64_t svc_id = 0, caller_id = 0;
    static struct taps all, picky;

    test_begin(__FILE__);
    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    service = connect_with_id(addr, &svc_id);
    watcher = connect_client(lp, addr, NULL);
    picky_client = connect_client(lp, addr, NULL);
    caller = connect_with_id(addr, &caller_id);
    CHECK_OK(sb_stage_new(lp, "Clock", &stage));
    CHECK_OK(sb_stage_on(stage, "tick", s_tick, NULL, NULL));
    CHECK_OK(sb_stage_on(stage, "hang", s_hang, NULL, NULL));
    CHECK_ST(publish_wait(lp, stage, service, "Clock", methods, 2), SB_OK);

    CHECK_ST(sb_client_monitor(NULL, NULL, true, on_tap, on_done, &all, free_taps),
             SB_NULL_ARGUMENT);
    CHECK_INT(all.freed, 1);
    all.freed = 0;
    CHECK_OK(sb_client_monitor(watcher, NULL, true, on_tap, on_done, &all, free_taps));
    CHECK_OK(sb_client_monitor(picky_client, "Other", false, on_tap, on_done, &picky,
                               free_taps));
    RUN_UNTIL(lp, all.answered == 1 && picky.answered == 1);
    CHECK_ST(all.status, SB_OK);
    OK("sb_client_monitor is answered once; a bad argument frees the user data at once");

    remote = subscribe_wait(lp, caller, "Clock", NULL);
    CHECK(remote != NULL);
    args = sb_args_new();
    CHECK_OK(sb_args_set_string(args, "x", "y"));
    b = sb_request_to_remote(remote, "tick");
    CHECK_OK(sb_request_builder_args(b, args));
    CHECK_OK(sb_request_builder_fallback(b, on_final, NULL, NULL));
    CHECK_OK(sb_request_send(b, &req));
    sb_args_free(args);
    RUN_UNTIL(lp, final_seen == 2 && all.n == 3); /* the emit and the return */
    CHECK_STR(all.lines[0], "deliver Clock tick");
    CHECK_STR(all.lines[1], "emit Clock step");
    CHECK_STR(all.lines[2], "result Clock done");
    CHECK_STR(all.x, "y");
    CHECK(all.from[0] == (int64_t)caller_id && all.to[0] == (int64_t)svc_id);
    CHECK(all.from[1] == (int64_t)svc_id && all.to[1] == (int64_t)caller_id);
    OK("a call's deliver (with its args), emit and result, in order, from and to "
       "the right connections");

    b = sb_request_to_remote(remote, "hang");
    CHECK_OK(sb_request_send(b, &hang));
    RUN_UNTIL(lp, all.n == 4);
    CHECK(sb_request_cancel(hang));
    RUN_UNTIL(lp, all.n == 5);
    CHECK_STR(all.lines[4], "cancel Clock ");
    CHECK_INT(picky.n, 0);
    OK("a cancel is seen; a monitor of another session sees nothing");

    sb_client_free(watcher);
    sb_client_free(picky_client);
    RUN_UNTIL(lp, all.freed == 1 && picky.freed == 1);
    OK("free_user runs once when the monitoring client is gone");

    sb_served_free(hung);
    sb_request_free(hang);
    sb_request_free(req);
    sb_remote_free(remote);
    sb_stage_free(stage);
    sb_client_free(caller);
    sb_client_free(service);
    sb_broker_free(broker);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
