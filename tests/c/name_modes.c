/*
 * name_modes.c: name watches and several publishers per name from C,
 * over TCP and over a Unix socket, on one loop.
 *
 * Watch: sb_client_watch reports the current state first, then done,
 * then appeared / owner changed / gone (with the reason) in order;
 * sb_client_unwatch ends it.
 *
 * Queue: two stages publish Q with SB_NAME_QUEUE; the owner keeps two
 * calls unanswered; its client goes (a disconnect, as a kill is at the
 * broker): both calls end once with SB_PUBLISHER_GONE, the watch hears
 * of the owner change, the standby serves the next call. A publish in
 * another mode is SB_NAME_MODE_CONFLICT.
 *
 * Balance: three stages publish B with SB_NAME_BALANCE; 30 calls of
 * `who` are shared among all three.
 */
#include "check.h"

typedef struct events {
    cb *rec;
    char log[1024];
} events;

static void on_name(void *user, sb_name_event event, const char *name,
                    const sb_value *methods, sb_status reason,
                    const char *message)
{
    events *e = (events *)((cb *)user)->extra;
    const char *what = event == SB_NAME_PRESENT         ? "present"
                       : event == SB_NAME_APPEARED      ? "appeared"
                       : event == SB_NAME_OWNER_CHANGED ? "owner"
                                                        : "gone";
    cb_alive(e->rec);
    (void)message;
    if (event == SB_NAME_GONE) {
        CHECK(methods == NULL);
        snprintf(e->log + strlen(e->log), sizeof e->log - strlen(e->log),
                 "%s %s %s;", what, name, sb_strerror(reason));
    } else {
        CHECK(methods != NULL);
        CHECK_ST(reason, SB_OK);
        snprintf(e->log + strlen(e->log), sizeof e->log - strlen(e->log),
                 "%s %s %zu;", what, name, sb_value_list_len(methods));
    }
}

static void on_done(void *user, sb_status st, const char *message)
{
    events *e = (events *)((cb *)user)->extra;
    cb_note(e->rec, st, message);
    snprintf(e->log + strlen(e->log), sizeof e->log - strlen(e->log),
             "done;");
}

/* A stage method answering {who: user's id}. */
static int32_t who(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    sb_args *a = sb_args_new();
    cb_alive(c);
    c->calls++;
    CHECK_OK(sb_args_set_int(a, "who", (int64_t)c->id));
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, a));
    sb_args_free(a);
    return 0;
}

/* Response handler: the who of a return, or the status of an error, in
 * the cb (id = who, status). */
static int32_t on_response(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    const sb_response *rsp = sb_ctx_rsp(ctx);
    int64_t n = -1;
    cb_note(c, sb_response_error(rsp), sb_response_message(rsp));
    if (sb_response_error(rsp) == SB_OK) {
        CHECK_OK(sb_args_get_int(sb_ctx_args(ctx), "who", &n));
        c->id = (uint64_t)n;
    }
    return 0;
}

static sb_request *send(const sb_remote *remote, const char *method, cb *c)
{
    sb_request *req = NULL;
    sb_request_builder *b = sb_request_to_remote(remote, method);
    CHECK(b != NULL);
    CHECK_OK(sb_request_builder_fallback(b, on_response, c, cb_free));
    CHECK_OK(sb_request_send(b, &req));
    return req;
}

static uint64_t who_answers(sb_loop *lp, const sb_remote *remote)
{
    cb *c = cb_new("who");
    sb_request *req = send(remote, "who", c);
    RUN_UNTIL(lp, c->calls > 0);
    CHECK_ST(c->status, SB_OK);
    sb_request_free(req);
    return c->id;
}

static sb_status publish_mode(sb_loop *lp, const sb_stage *stage,
                              const sb_client *client, const char *session,
                              uint32_t mode)
{
    cb *c = cb_new("publish mode");
    const char *const methods[] = {"who", "hang"};
    CHECK_OK(sb_stage_publish_mode(stage, client, session, methods, 2, mode,
                                   cb_done, c, cb_free));
    RUN_UNTIL(lp, c->calls > 0);
    cb_check_freed(c, 1);
    return c->status;
}

static void flow(const char *listen)
{
    sb_loop *lp = NULL;
    sb_broker *broker;
    sb_client *caller, *pubs[3];
    sb_stage *stages[3];
    sb_remote *q, *b;
    sb_request *hung[2];
    cb *hung_cb[2], *ids[3], *unwatched = cb_new("unwatch");
    events ev;
    uint64_t watch_id = 0, seen[3] = {0, 0, 0};
    char addr[256];
    int i;

    memset(&ev, 0, sizeof ev);
    ev.rec = cb_new("watch");
    ev.rec->extra = &ev;
    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, listen, NULL, addr, sizeof addr);
    caller = connect_client(lp, addr, NULL);
    for (i = 0; i < 3; i++) {
        pubs[i] = connect_client(lp, addr, NULL);
        ids[i] = cb_new("stage");
        ids[i]->id = (uint64_t)(i + 1);
        stages[i] = NULL;
        CHECK_OK(sb_stage_new(lp, "S", &stages[i]));
        CHECK_OK(sb_stage_on(stages[i], "who", who, ids[i], cb_free));
        CHECK_OK(sb_stage_on(stages[i], "hang", never_answer, NULL, NULL));
    }

    /* The watch, before anything is published. */
    CHECK_OK(sb_client_watch(caller, "*", on_name, on_done, ev.rec, cb_free,
                             &watch_id));
    CHECK(watch_id > 0);
    RUN_UNTIL(lp, ev.rec->calls > 0);
    CHECK_ST(ev.rec->status, SB_OK);
    CHECK_STR(ev.log, "done;");
    CHECK_ST(sb_client_watch(caller, "a*b", on_name, NULL, NULL, NULL,
                             &watch_id),
             SB_INVALID_ARGUMENT);
    OK("a watch of nothing published reports done at once");

    /* Queue: owner, standby; the owner's calls end once when it goes. */
    CHECK_OK(publish_mode(lp, stages[0], pubs[0], "Q", SB_NAME_QUEUE));
    CHECK_OK(publish_mode(lp, stages[1], pubs[1], "Q", SB_NAME_QUEUE));
    CHECK_ST(publish_mode(lp, stages[2], pubs[2], "Q", SB_NAME_BALANCE),
             SB_NAME_MODE_CONFLICT);
    {
        const char *const one[] = {"who"};
        CHECK_ST(sb_stage_publish_mode(stages[2], pubs[2], "Q", one, 1, 7,
                                       NULL, NULL, NULL),
                 SB_INVALID_ARGUMENT);
    }
    q = subscribe_wait(lp, caller, "Q", NULL);
    CHECK(q != NULL);
    CHECK_INT((int)who_answers(lp, q), 1);
    for (i = 0; i < 2; i++) {
        hung_cb[i] = cb_new("hung");
        hung[i] = send(q, "hang", hung_cb[i]);
    }
    listing_wait(lp, caller);
    sb_stage_free(stages[0]);
    sb_client_free(pubs[0]);
    for (i = 0; i < 2; i++) {
        RUN_UNTIL(lp, hung_cb[i]->calls > 0);
        CHECK_ST(hung_cb[i]->status, SB_PUBLISHER_GONE);
    }
    CHECK_INT((int)who_answers(lp, q), 2);
    for (i = 0; i < 2; i++) {
        CHECK_INT(hung_cb[i]->calls, 1);
        sb_request_free(hung[i]);
    }
    CHECK_STR(ev.log, "done;appeared Q 2;owner Q 2;");
    OK("queue: the owner's calls end once with SB_PUBLISHER_GONE; the standby serves");

    /* Balance over three publishers: each serves a share. */
    pubs[0] = connect_client(lp, addr, NULL);
    CHECK_OK(sb_stage_new(lp, "S", &stages[0]));
    ids[0] = cb_new("stage");
    ids[0]->id = 1;
    CHECK_OK(sb_stage_on(stages[0], "who", who, ids[0], cb_free));
    for (i = 0; i < 3; i++)
        CHECK_OK(publish_mode(lp, stages[i], pubs[i], "B", SB_NAME_BALANCE));
    b = subscribe_wait(lp, caller, "B", NULL);
    CHECK(b != NULL);
    for (i = 0; i < 30; i++)
        seen[who_answers(lp, b) - 1]++;
    for (i = 0; i < 3; i++)
        CHECK(seen[i] >= 5);
    OK("balance: 30 calls shared by 3 publishers (%d, %d, %d)", (int)seen[0],
       (int)seen[1], (int)seen[2]);

    /* The standby's client goes: Q is gone; unwatch ends the watch. */
    sb_stage_free(stages[1]);
    sb_client_free(pubs[1]);
    RUN_UNTIL(lp, strstr(ev.log, "gone Q") != NULL);
    CHECK_OK(sb_client_unwatch(caller, watch_id, cb_done, unwatched, cb_free));
    RUN_UNTIL(lp, unwatched->calls > 0);
    CHECK_ST(unwatched->status, SB_OK);
    cb_check_freed(ev.rec, 1);
    CHECK_STR(ev.log,
              "done;appeared Q 2;owner Q 2;appeared B 2;gone Q publisher_gone;");
    OK("the watch saw every change in order; unwatch frees it");

    sb_remote_free(q);
    sb_remote_free(b);
    sb_stage_free(stages[0]);
    sb_stage_free(stages[2]);
    sb_client_free(pubs[0]);
    sb_client_free(pubs[2]);
    sb_client_free(caller);
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
