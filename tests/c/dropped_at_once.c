/*
 * dropped_at_once.c: a request sent and freed at once (sb_request_free
 * right after sb_request_send, before the loop runs) never reaches its
 * callee, locally or through a broker on a Unix socket; one freed after
 * the callee started it runs and sees its cancel.
 *
 * The callee Work counts the runs of `work` and keeps each request open
 * (sb_served_ref) until its caller cancels; its on-cancel counts too.
 * "Never ran" is made certain without sleeping: a `mark` request to the
 * same stage follows the dropped one on the same FIFO path and is
 * answered; `work` would have run before it.
 */
#include "check.h"

static sb_loop *lp;
static int runs, cancels;
static sb_served *held[4];

static void on_cancel(void *user)
{
    cb_alive((cb *)user);
    cancels++;
}

static int32_t work(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    cb_alive((cb *)user);
    CHECK(runs < 4);
    held[runs++] = sb_served_ref(req);
    CHECK_OK(sb_served_on_cancel(req, on_cancel, cb_new("on cancel"),
                                 cb_free));
    return 0;
}

static int32_t mark(void *user, const sb_ctx *ctx)
{
    cb_alive((cb *)user);
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, NULL));
    return 0;
}

static int32_t on_marked(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    (void)ctx;
    cb_alive(c);
    c->calls++;
    return 0;
}

static sb_request_builder *to(const sb_stage *stage, const sb_remote *remote,
                              const char *method)
{
    sb_request_builder *b = stage ? sb_request_to_stage(stage, method)
                                  : sb_request_to_remote(remote, method);
    CHECK(b != NULL);
    return b;
}

/* Sends `mark` and waits for its answer. */
static void mark_wait(const sb_stage *stage, const sb_remote *remote)
{
    cb *c = cb_new("marked");
    sb_request_builder *b = to(stage, remote, "mark");
    sb_request *req = NULL;
    CHECK_OK(sb_request_builder_on(b, "return", on_marked, c, cb_free));
    CHECK_OK(sb_request_send(b, &req));
    RUN_UNTIL(lp, c->calls == 1);
    sb_request_free(req);
    cb_check_freed(c, 1);
}

static void both_ways(const sb_stage *stage, const sb_remote *remote,
                      const sb_broker *broker)
{
    const char *where = stage ? "local" : "remote";
    sb_request *req = NULL;
    int i;
    runs = cancels = 0;

    CHECK_OK(sb_request_send(to(stage, remote, "work"), &req));
    sb_request_free(req);
    mark_wait(stage, remote);
    CHECK_INT(runs, 0);
    CHECK_INT(cancels, 0);
    if (broker != NULL)
        CHECK_INT(sb_broker_pending_calls(broker), 0);
    OK("%s: a request sent and freed at once never reaches its callee",
       where);

    req = NULL;
    CHECK_OK(sb_request_send(to(stage, remote, "work"), &req));
    RUN_UNTIL(lp, runs == 1);
    if (broker != NULL)
        CHECK_INT(sb_broker_pending_calls(broker), 1);
    sb_request_free(req);
    RUN_UNTIL(lp, cancels == 1);
    mark_wait(stage, remote);
    CHECK_INT(runs, 1);
    if (broker != NULL)
        CHECK_INT(sb_broker_pending_calls(broker), 0);
    OK("%s: a request freed after its callee started sees its cancel",
       where);

    for (i = 0; i < runs; i++) {
        CHECK(!sb_served_is_open(held[i]));
        sb_served_free(held[i]);
        held[i] = NULL;
    }
}

int main(void)
{
    char dir[] = "/tmp/stagebus-c-XXXXXX";
    char listen[256], addr[256];
    sb_stage *stage = NULL;
    sb_broker *broker;
    sb_client *pub, *sub;
    sb_remote *remote;
    sb_status st;

    test_begin(__FILE__);
    CHECK_OK(sb_loop_new(&lp));
    CHECK_OK(sb_stage_new(lp, "Work", &stage));
    CHECK_OK(sb_stage_on(stage, "work", work, cb_new("work"), cb_free));
    CHECK_OK(sb_stage_on(stage, "mark", mark, cb_new("mark"), cb_free));

    both_ways(stage, NULL, NULL);

    CHECK(mkdtemp(dir) != NULL);
    snprintf(listen, sizeof listen, "unix:%s/bus.sock", dir);
    broker = start_broker(lp, listen, NULL, addr, sizeof addr);
    pub = connect_client(lp, addr, NULL);
    sub = connect_client(lp, addr, NULL);
    CHECK_OK(publish_wait(lp, stage, pub, "Work", NULL, 0));
    remote = subscribe_wait(lp, sub, "Work", &st);
    CHECK_ST(st, SB_OK);

    both_ways(NULL, remote, broker);

    sb_remote_free(remote);
    sb_client_free(sub);
    sb_client_free(pub);
    sb_broker_free(broker);
    sb_stage_free(stage);
    sb_loop_free(lp);
    CHECK(rmdir(dir) == 0);
    cb_check_all_freed();
    return test_end();
}
