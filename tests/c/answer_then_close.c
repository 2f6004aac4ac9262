/*
 * answer_then_close.c: "answer quit, then exit". A service process
 * answers a call and, in the same loop turn, lets go of its client, then
 * stops its loop, frees everything and exits. The caller gets the answer,
 * not SB_PUBLISHER_GONE, whichever way the service lets go:
 *
 *   0  sb_client_close inside the handler
 *   1  sb_client_free inside the handler
 *   2  sb_client_close from a 0 ms timer set by the handler
 *   3  sb_client_close_graceful inside the handler, stopping the loop
 *      from its completion (which reports SB_OK)
 *
 * Then, in this process: sb_client_close_graceful on a closed client
 * reports SB_INVALID_STATE; sb_client_set_linger takes effect.
 */
#include "check.h"

#define MODES 4

static const char *const mode_names[MODES] = {
    "close in the handler",
    "free in the handler",
    "close from a 0 ms timer",
    "graceful close in the handler",
};

/* ---- the service child ------------------------------------------------- */

static int mode;
static sb_loop *svc_lp;
static sb_client *svc_client;
static child *svc_self;

static void close_and_stop(void *user, sb_loop *lp)
{
    (void)user;
    CHECK_OK(sb_client_close(svc_client));
    CHECK_OK(sb_loop_stop(lp));
}

static void on_closed(void *user, sb_status st, const char *message)
{
    cb_note((cb *)user, st, message);
    CHECK_ST(st, SB_OK);
    child_report(svc_self, 'G');
    CHECK_OK(sb_loop_stop(svc_lp));
}

static int32_t svc_quit(void *user, const sb_ctx *ctx)
{
    sb_args *ret = sb_args_new();
    uint64_t timer = 0;
    (void)user;
    CHECK_OK(sb_args_set_int(ret, "bye", mode));
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, ret));
    sb_args_free(ret);
    switch (mode) {
    case 0:
        CHECK_OK(sb_client_close(svc_client));
        CHECK_OK(sb_loop_stop(svc_lp));
        break;
    case 1:
        sb_client_free(svc_client);
        svc_client = NULL;
        CHECK_OK(sb_loop_stop(svc_lp));
        break;
    case 2:
        CHECK_OK(sb_loop_add_timer(svc_lp, 0, close_and_stop, NULL, NULL,
                                   &timer));
        break;
    default:
        CHECK_OK(sb_client_close_graceful(svc_client, on_closed,
                                          cb_new("graceful close"), cb_free));
        break;
    }
    return 0;
}

static int body_service(child *self, void *arg)
{
    sb_stage *stage = NULL;
    char addr[256], session[16];
    mode = (int)(intptr_t)arg;
    svc_self = self;
    read_line(self->ctl, addr, sizeof addr);
    CHECK_OK(sb_loop_new(&svc_lp));
    svc_client = connect_client(svc_lp, addr, NULL);
    CHECK_OK(sb_stage_new(svc_lp, "Quitter", &stage));
    CHECK_OK(sb_stage_on(stage, "quit", svc_quit, NULL, NULL));
    snprintf(session, sizeof session, "Svc%d", mode);
    CHECK_OK(publish_wait(svc_lp, stage, svc_client, session, NULL, 0));
    child_report(self, 'P');
    CHECK_OK(sb_loop_run(svc_lp));
    /* Exit at once, as a program that was told to quit does. */
    sb_stage_free(stage);
    sb_client_free(svc_client);
    sb_loop_free(svc_lp);
    if (mode == 3)
        cb_check_all_freed();
    return 0;
}

/* ---- the caller ------------------------------------------------------------ */

static int32_t on_return(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    int64_t bye = -1;
    cb_note(c, SB_OK, sb_response_kind(sb_ctx_rsp(ctx)));
    CHECK_OK(sb_args_get_int(sb_ctx_args(ctx), "bye", &bye));
    c->id = (uint64_t)bye;
    return 0;
}

static int32_t on_other(void *user, const sb_ctx *ctx)
{
    const sb_response *rsp = sb_ctx_rsp(ctx);
    cb *c = (cb *)user;
    cb_note(c, sb_response_error(rsp), sb_response_message(rsp));
    return 0;
}

int main(void)
{
    child kids[MODES];
    sb_loop *lp = NULL;
    sb_broker *broker;
    sb_client *client, *closed;
    char addr[256], session[16];
    int i;

    test_begin(__FILE__);
    /* Forked before any stagebus object exists. */
    for (i = 0; i < MODES; i++)
        kids[i] = spawn_child(body_service, (void *)(intptr_t)i);

    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    client = connect_client(lp, addr, NULL);
    for (i = 0; i < MODES; i++)
        child_send_address(&kids[i], addr);
    for (i = 0; i < MODES; i++)
        RUN_UNTIL(lp, child_reports(&kids[i]) >= 1);
    OK("%d services published", MODES);

    for (i = 0; i < MODES; i++) {
        sb_remote *remote;
        sb_request_builder *b;
        sb_request *req = NULL;
        sb_status st;
        cb *ret = cb_new("return"), *other = cb_new("other");
        snprintf(session, sizeof session, "Svc%d", i);
        remote = subscribe_wait(lp, client, session, &st);
        CHECK_ST(st, SB_OK);
        b = sb_request_to_remote(remote, "quit");
        CHECK_OK(sb_request_builder_on(b, "return", on_return, ret, cb_free));
        CHECK_OK(sb_request_builder_fallback(b, on_other, other, cb_free));
        CHECK_OK(sb_request_send(b, &req));
        RUN_UNTIL(lp, ret->calls + other->calls > 0);
        if (other->calls > 0)
            FAILF("%s: the caller got %s (%s) instead of the answer",
                  mode_names[i], sb_strerror(other->status), other->message);
        CHECK_INT(ret->id, i);
        CHECK_INT(wait_child(&kids[i]), 0);
        child_reports(&kids[i]);
        CHECK_STR(kids[i].got, i == 3 ? "PG" : "P");
        OK("%s: the caller got the answer given just before", mode_names[i]);
        sb_request_free(req);
        sb_remote_free(remote);
        cb_check_freed(ret, 1);
        cb_check_freed(other, 1);
    }

    /* A graceful close of a closed client says so; the linger setter
     * works on an open client. */
    closed = connect_client(lp, addr, NULL);
    CHECK_OK(sb_client_set_linger(closed, 100));
    CHECK_OK(sb_client_close(closed));
    {
        cb *again = cb_new("graceful close again");
        CHECK_OK(sb_client_close_graceful(closed, cb_done, again, cb_free));
        CHECK_INT(again->calls, 0);
        RUN_UNTIL(lp, again->calls > 0);
        CHECK_ST(again->status, SB_INVALID_STATE);
        cb_check_freed(again, 1);
    }
    OK("sb_client_close_graceful on a closed client reports SB_INVALID_STATE");
    sb_client_free(closed);

    sb_client_free(client);
    sb_broker_free(broker);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
