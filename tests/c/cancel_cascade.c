/*
 * cancel_cascade.c: cancelling a request cancels everything made on its
 * behalf, across processes.
 *
 *   A (this process: broker + caller)
 *     -> B (child process) relay
 *          -> C (child process) work    made inside B's handler (implicit
 *                                        parent)
 *          -> C work                    made later from a timer, with B's
 *                                        request as explicit parent
 *
 * C emits "started" on each work; once both started, B emits "started"
 * to A; A then frees its request (sb_request_free), which cancels it.
 * B's on-cancel runs once and finds both its requests to C already
 * cancelled; C's on-cancel runs once per work; neither can answer after.
 * Children report through a pipe: 'P' published, 'X' on-cancel ran.
 * After a round trip through B (nothing may be in flight behind it), A
 * checks that no response of the cancelled request reached it and that
 * the broker holds no pending call.
 */
#include "check.h"

/* ---- child C ------------------------------------------------------------ */

static child *self_c;
static sb_served *work_refs[2];
static cb *work_cancel[2];
static int n_work;

static void c_on_cancel(void *user)
{
    cb *c = (cb *)user;
    const sb_served *s = (const sb_served *)c->extra;
    cb_alive(c);
    c->calls++;
    CHECK(!sb_served_is_open(s));
    CHECK_ST(sb_served_emit(s, "late", NULL), SB_INVALID_STATE);
    CHECK_ST(sb_served_return(s, NULL, NULL), SB_INVALID_STATE);
    child_report(self_c, 'X');
}

static int32_t c_work(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    cb_alive((cb *)user);
    CHECK(n_work < 2);
    work_refs[n_work] = sb_served_ref(req);
    work_cancel[n_work] = cb_new("C on_cancel");
    work_cancel[n_work]->extra = work_refs[n_work];
    CHECK_OK(sb_served_on_cancel(req, c_on_cancel, work_cancel[n_work],
                                 cb_free));
    n_work++;
    CHECK_OK(sb_served_emit(req, "started", NULL));
    return 0;
}

static int body_c(child *self, void *arg)
{
    sb_loop *lp = NULL;
    sb_client *client;
    sb_stage *stage = NULL;
    char addr[256];
    int i;
    (void)arg;
    self_c = self;
    read_line(self->ctl, addr, sizeof addr);
    CHECK_OK(sb_loop_new(&lp));
    client = connect_client(lp, addr, NULL);
    CHECK_OK(sb_stage_new(lp, "C", &stage));
    CHECK_OK(sb_stage_on(stage, "work", c_work, cb_new("work"), cb_free));
    CHECK_OK(publish_wait(lp, stage, client, "C", NULL, 0));
    child_report(self, 'P');

    RUN_UNTIL(lp, fd_readable(self->ctl)); /* the parent says: finish */
    CHECK_INT(n_work, 2);
    for (i = 0; i < 2; i++) {
        CHECK_INT(work_cancel[i]->calls, 1);
        cb_check_freed(work_cancel[i], 1);
        sb_served_free(work_refs[i]);
    }
    sb_stage_free(stage);
    sb_client_free(client);
    sb_loop_free(lp);
    cb_check_all_freed();
    return 0;
}

/* ---- child B -------------------------------------------------------------- */

static child *self_b;
static sb_loop *lp_b;
static sb_remote *remote_c;
static sb_served *relay_ref;
static sb_request *subs[2];
static int started_b;
static cb *relay_cancel;

static int32_t b_on_started(void *user, const sb_ctx *ctx)
{
    const sb_served *mine = sb_ctx_req(ctx);
    cb_alive((cb *)user);
    /* Both requests to C answer inside B's relay request. */
    CHECK(mine != NULL);
    CHECK_INT(sb_served_id(mine), sb_served_id(relay_ref));
    if (++started_b == 2)
        CHECK_OK(sb_served_emit(mine, "started", NULL));
    return 0;
}

static int32_t b_on_other(void *user, const sb_ctx *ctx)
{
    cb_alive((cb *)user);
    FAILF("B got an unexpected '%s' response from C",
          sb_response_kind(sb_ctx_rsp(ctx)));
    return 0;
}

static sb_request *b_work(const sb_served *parent)
{
    sb_request_builder *b = sb_request_to_remote(remote_c, "work");
    sb_request *req = NULL;
    CHECK(b != NULL);
    if (parent != NULL)
        CHECK_OK(sb_request_builder_parent(b, parent));
    CHECK_OK(sb_request_builder_on(b, "started", b_on_started,
                                   cb_new("B on started"), cb_free));
    CHECK_OK(sb_request_builder_fallback(b, b_on_other, cb_new("B other"),
                                         cb_free));
    CHECK_OK(sb_request_send(b, &req));
    return req;
}

/* Outside every handler: only the explicit parent links it to relay. */
static void b_second_work(void *user, sb_loop *lp)
{
    (void)lp;
    cb_alive((cb *)user);
    subs[1] = b_work(relay_ref);
}

static void b_on_cancel(void *user)
{
    cb *c = (cb *)user;
    cb_alive(c);
    c->calls++;
    /* Children are cancelled before the callee hears of it. */
    CHECK(!sb_request_is_open(subs[0]));
    CHECK(subs[1] != NULL);
    CHECK(!sb_request_is_open(subs[1]));
    CHECK(!sb_served_is_open(relay_ref));
    CHECK_ST(sb_served_emit(relay_ref, NULL, NULL), SB_INVALID_STATE);
    child_report(self_b, 'X');
}

static int32_t b_relay(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    uint64_t timer;
    cb_alive((cb *)user);
    CHECK(relay_ref == NULL);
    relay_ref = sb_served_ref(req);
    relay_cancel = cb_new("B on_cancel");
    CHECK_OK(sb_served_on_cancel(req, b_on_cancel, relay_cancel, cb_free));
    subs[0] = b_work(NULL); /* implicit parent: the request being served */
    CHECK_OK(sb_loop_add_timer(lp_b, 1, b_second_work, cb_new("timer"),
                               cb_free, &timer));
    return 0;
}

static int32_t b_ping(void *user, const sb_ctx *ctx)
{
    cb_alive((cb *)user);
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), "pong", NULL));
    return 0;
}

static int body_b(child *self, void *arg)
{
    sb_client *client;
    sb_stage *stage = NULL;
    sb_status st;
    char addr[256];
    (void)arg;
    self_b = self;
    read_line(self->ctl, addr, sizeof addr);
    CHECK_OK(sb_loop_new(&lp_b));
    client = connect_client(lp_b, addr, NULL);
    remote_c = subscribe_wait(lp_b, client, "C", &st);
    CHECK_ST(st, SB_OK);
    CHECK_OK(sb_stage_new(lp_b, "B", &stage));
    CHECK_OK(sb_stage_on(stage, "relay", b_relay, cb_new("relay"), cb_free));
    CHECK_OK(sb_stage_on(stage, "ping", b_ping, cb_new("ping"), cb_free));
    CHECK_OK(publish_wait(lp_b, stage, client, "B", NULL, 0));
    child_report(self, 'P');

    RUN_UNTIL(lp_b, fd_readable(self->ctl));
    CHECK(relay_cancel != NULL);
    CHECK_INT(relay_cancel->calls, 1);
    cb_check_freed(relay_cancel, 1);
    CHECK_INT(started_b, 2);
    sb_request_free(subs[0]);
    sb_request_free(subs[1]);
    sb_served_free(relay_ref);
    sb_remote_free(remote_c);
    sb_stage_free(stage);
    sb_client_free(client);
    sb_loop_free(lp_b);
    cb_check_all_freed();
    return 0;
}

/* ---- A: the parent ---------------------------------------------------------- */

static int32_t a_count(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    cb_alive(c);
    c->calls++;
    snprintf(c->message, sizeof c->message, "%s",
             sb_response_kind(sb_ctx_rsp(ctx)));
    return 0;
}

int main(void)
{
    child b, c;
    sb_loop *lp = NULL;
    sb_broker *broker;
    sb_client *client;
    sb_remote *remote_b;
    sb_request_builder *rb;
    sb_request *req = NULL, *ping = NULL;
    cb *started, *other, *pong;
    sb_status st;
    char addr[256];

    test_begin(__FILE__);
    /* Fork first: the children share no stagebus object with us. */
    b = spawn_child(body_b, NULL);
    c = spawn_child(body_c, NULL);
    started = cb_new("A started");
    other = cb_new("A other");
    pong = cb_new("A pong");

    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    child_send_address(&c, addr);
    RUN_UNTIL(lp, child_reports(&c) >= 1);
    CHECK_STR(c.got, "P");
    child_send_address(&b, addr);
    RUN_UNTIL(lp, child_reports(&b) >= 1);
    CHECK_STR(b.got, "P");
    OK("children B and C published their stages");

    client = connect_client(lp, addr, NULL);
    remote_b = subscribe_wait(lp, client, "B", &st);
    CHECK_ST(st, SB_OK);
    rb = sb_request_to_remote(remote_b, "relay");
    CHECK_OK(sb_request_builder_on(rb, "started", a_count, started, cb_free));
    CHECK_OK(sb_request_builder_fallback(rb, a_count, other, cb_free));
    CHECK_OK(sb_request_send(rb, &req));
    RUN_UNTIL(lp, started->calls == 1);
    CHECK_INT(sb_broker_pending_calls(broker), 3);
    OK("A -> B -> C twice: C started both, B told A");

    sb_request_free(req);
    cb_check_freed(started, 1);
    cb_check_freed(other, 1);
    OK("A freed its request; its handlers were released");

    RUN_UNTIL(lp, child_reports(&b) >= 2 && child_reports(&c) >= 3);
    CHECK_STR(b.got, "PX");
    CHECK_STR(c.got, "PXX");
    OK("the cancel reached B once and both of C's requests once each");

    /* A round trip through B: nothing of the relay is in flight behind it. */
    rb = sb_request_to_remote(remote_b, "ping");
    CHECK_OK(sb_request_builder_on(rb, "pong", a_count, pong, cb_free));
    CHECK_OK(sb_request_send(rb, &ping));
    RUN_UNTIL(lp, pong->calls == 1);
    sb_request_free(ping);
    CHECK_INT(started->calls, 1);
    CHECK_INT(other->calls, 0);
    RUN_UNTIL(lp, sb_broker_pending_calls(broker) == 0);
    OK("no response of the cancelled request reached A; no call is pending");

    close(b.ctl);
    close(c.ctl);
    CHECK_INT(wait_child(&b), 0);
    CHECK_INT(wait_child(&c), 0);
    child_reports(&b);
    child_reports(&c);
    CHECK_STR(b.got, "PX");
    CHECK_STR(c.got, "PXX");
    close(b.report);
    close(c.report);
    OK("B and C exited cleanly, each on-cancel having run once");

    sb_remote_free(remote_b);
    sb_client_free(client);
    sb_broker_free(broker);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
