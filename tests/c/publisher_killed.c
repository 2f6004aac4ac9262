/*
 * publisher_killed.c: a publisher process dies (SIGKILL) while a call to
 * it is pending. The caller's error handler gets SB_PUBLISHER_GONE, the
 * subscriber hears the session is gone, the session leaves the listing,
 * the broker holds no pending call, and later calls and subscriptions
 * get SB_NO_SUCH_SESSION.
 */
#include "check.h"

/* The publisher child is check.h's hanging_publisher. */

/* ---- the caller ------------------------------------------------------------ */

static int32_t on_error(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    const sb_response *rsp = sb_ctx_rsp(ctx);
    char code[64];
    cb_alive(c);
    cb_note(c, sb_response_error(rsp), sb_response_message(rsp));
    CHECK_STR(sb_response_kind(rsp), "error");
    CHECK(sb_response_is_final(rsp));
    /* The error's args carry the same code, by name. */
    arg_string(sb_ctx_args(ctx), "code", code, sizeof code);
    CHECK_STR(code, sb_strerror(sb_response_error(rsp)));
    return 0;
}

static int32_t on_other(void *user, const sb_ctx *ctx)
{
    cb_alive((cb *)user);
    FAILF("unexpected '%s' response", sb_response_kind(sb_ctx_rsp(ctx)));
    return 0;
}

static int32_t survivor_ping(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, NULL));
    return 0;
}

static sb_request *call_remote(const sb_remote *remote, const char *method,
                               cb *err)
{
    sb_request_builder *b = sb_request_to_remote(remote, method);
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
    sb_stage *survivor = NULL;
    sb_remote *remote, *again;
    sb_request *req;
    cb *err, *gone;
    sb_status st;
    char addr[256];

    test_begin(__FILE__);
    p = spawn_child(hanging_publisher, (void *)"Victim");
    err = cb_new("error");
    gone = cb_new("session gone");

    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    client = connect_client(lp, addr, NULL);
    CHECK_OK(sb_client_on_session_gone(client, cb_session_gone, gone,
                                       cb_free));
    CHECK_OK(sb_stage_new(lp, "Survivor", &survivor));
    CHECK_OK(sb_stage_on(survivor, "ping", survivor_ping, NULL, NULL));
    CHECK_OK(publish_wait(lp, survivor, client, "Survivor", NULL, 0));
    child_send_address(&p, addr);
    RUN_UNTIL(lp, child_reports(&p) >= 1);
    CHECK_STR(p.got, "P");
    CHECK_STR(listing_wait(lp, client), "Survivor[ping];Victim[hang];");
    remote = subscribe_wait(lp, client, "Victim", &st);
    CHECK_ST(st, SB_OK);
    OK("the publisher child published Victim; subscribed");

    req = call_remote(remote, "hang", err);
    RUN_UNTIL(lp, child_reports(&p) >= 2);
    CHECK_STR(p.got, "PC");
    CHECK_INT(sb_broker_pending_calls(broker), 1);
    OK("the call reached the publisher and is pending");

    CHECK(kill(p.pid, SIGKILL) == 0);
    CHECK_INT(wait_child(&p), 128 + SIGKILL);
    RUN_UNTIL(lp, err->calls == 1 && gone->calls == 1);
    CHECK_ST(err->status, SB_PUBLISHER_GONE);
    CHECK(err->message[0] != '\0');
    CHECK(!sb_request_is_open(req));
    OK("the pending call failed with publisher_gone (\"%s\")", err->message);
    CHECK_STR(gone->message, "Victim");
    CHECK_ST(gone->status, SB_PUBLISHER_GONE);
    OK("the subscriber was told Victim is gone");
    CHECK_STR(listing_wait(lp, client), "Survivor[ping];");
    CHECK_INT(sb_broker_pending_calls(broker), 0);
    OK("Victim left the listing; no call is pending");
    sb_request_free(req);
    cb_check_freed(err, 1);

    /* The subscription ended with the session: requests through its
     * remote stage fail at once. */
    req = NULL;
    CHECK_ST(sb_request_send(sb_request_to_remote(remote, "hang"), &req),
             SB_NOT_SUBSCRIBED);
    CHECK(req == NULL);
    again = subscribe_wait(lp, client, "Victim", &st);
    CHECK_ST(st, SB_NO_SUCH_SESSION);
    CHECK(again == NULL);
    OK("later calls fail with not_subscribed, subscriptions with no_such_session");

    close(p.ctl);
    close(p.report);
    sb_remote_free(remote);
    sb_stage_free(survivor);
    sb_client_free(client);
    sb_broker_free(broker);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
