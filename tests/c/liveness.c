/*
 * liveness.c: ping settings and the going-away notice from C (issue 12,
 * items 1 and 4).
 *
 * A broker pinging every 100 ms (sb_broker_set_ping) and a caller doing
 * the same (sb_client_set_ping). A publisher child is frozen (SIGSTOP)
 * while a call to it is pending: the call ends with SB_PUBLISHER_GONE and
 * the session leaves the listing, while the caller, idle meanwhile and
 * answering pings, stays connected. Then a call to a session of the
 * caller's own is pending when the broker is freed: it ends once with
 * SB_BROKER_GONE, saying the broker is going away.
 */
#include "check.h"

/* The publisher child is check.h's hanging_publisher. */

/* ---- the caller ------------------------------------------------------------ */

static int32_t on_error(void *user, const sb_ctx *ctx)
{
    const sb_response *rsp = sb_ctx_rsp(ctx);
    cb *c = (cb *)user;
    cb_alive(c);
    cb_note(c, sb_response_error(rsp), sb_response_message(rsp));
    return 0;
}

static int32_t on_other(void *user, const sb_ctx *ctx)
{
    cb_alive((cb *)user);
    FAILF("unexpected '%s' response", sb_response_kind(sb_ctx_rsp(ctx)));
    return 0;
}

static sb_request *call_remote(const sb_remote *remote, cb *err)
{
    sb_request_builder *b = sb_request_to_remote(remote, "hang");
    sb_request *req = NULL;
    CHECK_OK(sb_request_builder_on(b, "error", on_error, err, cb_free));
    CHECK_OK(sb_request_builder_fallback(b, on_other, cb_new("other"),
                                         cb_free));
    CHECK_OK(sb_request_send(b, &req));
    return req;
}

int main(void)
{
    child p;
    sb_loop *lp = NULL;
    sb_broker *broker;
    sb_client *client;
    sb_stage *own = NULL;
    sb_remote *remote;
    sb_request *req;
    cb *err, *lost;
    sb_status st;
    char addr[256];
    double idle_until;
    /* Under valgrind everything runs many times slower, the peers'
     * answers to pings too: the interval stretches with it. */
    const uint64_t ping_ms = getenv("STAGEBUS_UNDER_VALGRIND") ? 1000 : 100;

    test_begin(__FILE__);
    p = spawn_child(hanging_publisher, (void *)"Frozen");

    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    CHECK_OK(sb_broker_set_ping(broker, ping_ms, 2));
    CHECK_ST(sb_broker_set_ping(NULL, 100, 2), SB_NULL_ARGUMENT);
    client = connect_client(lp, addr, NULL);
    CHECK_OK(sb_client_set_ping(client, ping_ms, 2));
    CHECK_ST(sb_client_set_ping(NULL, 100, 2), SB_NULL_ARGUMENT);
    lost = cb_new("disconnect");
    CHECK_OK(sb_client_on_disconnect(client, cb_done, lost, cb_free));
    child_send_address(&p, addr);
    RUN_UNTIL(lp, child_reports(&p) >= 1);
    CHECK_STR(listing_wait(lp, client), "Frozen[hang];");
    remote = subscribe_wait(lp, client, "Frozen", &st);
    CHECK_ST(st, SB_OK);
    err = cb_new("error");
    req = call_remote(remote, err);
    RUN_UNTIL(lp, child_reports(&p) >= 2);
    CHECK_STR(p.got, "PC");
    OK("the call reached the publisher child and is pending");

    CHECK(kill(p.pid, SIGSTOP) == 0);
    RUN_UNTIL(lp, err->calls == 1);
    CHECK_ST(err->status, SB_PUBLISHER_GONE);
    OK("the frozen publisher's call ended with publisher_gone (\"%s\")",
       err->message);
    CHECK_STR(listing_wait(lp, client), "");
    CHECK_INT(sb_broker_pending_calls(broker), 0);
    OK("Frozen left the listing");
    CHECK(kill(p.pid, SIGKILL) == 0);
    CHECK_INT(wait_child(&p), 128 + SIGKILL);
    sb_request_free(req);
    sb_remote_free(remote);
    cb_check_freed(err, 1);

    /* Idle for many intervals: the caller answers pings and stays. */
    idle_until = now_ms() + 6 * (double)ping_ms;
    RUN_UNTIL(lp, now_ms() >= idle_until);
    CHECK_INT(lost->calls, 0);
    OK("an idle caller that answers pings stays connected");

    CHECK_OK(sb_stage_new(lp, "Own", &own));
    CHECK_OK(sb_stage_on(own, "hang", never_answer, NULL, NULL));
    hanging_self = NULL;
    CHECK_OK(publish_wait(lp, own, client, "Own", NULL, 0));
    remote = subscribe_wait(lp, client, "Own", &st);
    CHECK_ST(st, SB_OK);
    err = cb_new("error");
    req = call_remote(remote, err);
    RUN_UNTIL(lp, sb_broker_pending_calls(broker) == 1);
    sb_broker_free(broker);
    RUN_UNTIL(lp, err->calls >= 1 && lost->calls >= 1);
    CHECK_ST(err->status, SB_BROKER_GONE);
    CHECK(strstr(err->message, "going away") != NULL);
    CHECK(strstr(lost->message, "going away") != NULL);
    idle_until = now_ms() + 100;
    RUN_UNTIL(lp, now_ms() >= idle_until);
    CHECK_INT(err->calls, 1);
    OK("freeing the broker ended the pending call once with broker_gone (\"%s\")",
       err->message);

    close(p.ctl);
    close(p.report);
    sb_request_free(req);
    sb_remote_free(remote);
    sb_stage_free(own);
    sb_client_free(client);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
