/*
 * reconnect.c: a broker killed with -9 and restarted on the same address,
 * from C (issue 12, item 2).
 *
 * Three processes besides this one: two broker children (the second one
 * waits for its address and starts only after the first was killed) and a
 * C service child that turned reconnecting on (sb_client_set_reconnect)
 * and publishes Svc (echo, hang). The caller here reconnects too. Three
 * calls to hang are pending when the first broker is killed: each ends
 * exactly once with SB_BROKER_GONE. The second broker listens on the same
 * Unix socket: the service comes back by itself (it reports the
 * disconnected and reconnected events), and the caller's old sb_remote
 * works again. Then: the address list (a dead first address, then the
 * broker), fail-fast while reconnecting, and the setters' bad input.
 */
#include "check.h"

#include <stdlib.h>

static int32_t echo(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, sb_ctx_args(ctx)));
    return 0;
}

/* Reports 'D', 'R' or 'F' (republish failed) to the parent for each event
 * when user is a child, else counts them in a cb. */
static void on_event(void *user, uint32_t event, const char *session,
                     sb_status st, const char *message)
{
    cb *c = (cb *)user;
    cb_alive(c);
    if (event == SB_CONNECTION_DISCONNECTED) {
        CHECK(session == NULL);
        CHECK(st != SB_OK);
        c->id += 1;
    } else if (event == SB_CONNECTION_RECONNECTED) {
        CHECK(session == NULL);
        CHECK_ST(st, SB_OK);
        c->id += 100;
    } else {
        FAILF("unexpected event %u (%s)", (unsigned)event,
              session ? session : "");
    }
    cb_note(c, st, message);
    if (hanging_self != NULL)
        child_report(hanging_self,
                     event == SB_CONNECTION_DISCONNECTED ? 'D' : 'R');
}

/* The service child: reconnecting, publishes Svc, reports 'P', then 'C'
 * per hanging call and 'D' / 'R' per connection event. */
static int service_child(child *self, void *unused)
{
    sb_loop *lp = NULL;
    sb_client *client = NULL;
    sb_stage *stage = NULL;
    cb *conn = cb_new("connect"), *events = cb_new("events");
    char addr[256];
    (void)unused;
    hanging_self = self;
    read_line(self->ctl, addr, sizeof addr);
    CHECK_OK(sb_loop_new(&lp));
    CHECK_OK(sb_client_connect(lp, addr, NULL, cb_connected, conn, cb_free,
                               &client));
    CHECK_OK(sb_client_set_reconnect(client, 20, 200, 0));
    CHECK_OK(sb_client_on_connection_event(client, on_event, events,
                                           cb_free));
    RUN_UNTIL(lp, conn->calls > 0);
    CHECK_ST(conn->status, SB_OK);
    CHECK_OK(sb_stage_new(lp, "Svc", &stage));
    CHECK_OK(sb_stage_on(stage, "echo", echo, NULL, NULL));
    CHECK_OK(sb_stage_on(stage, "hang", never_answer, NULL, NULL));
    CHECK_OK(publish_wait(lp, stage, client, "Svc", NULL, 0));
    child_report(self, 'P');
    while (!fd_readable(self->ctl))
        CHECK_OK(sb_loop_run_for(lp, 10));
    sb_stage_free(stage);
    sb_client_free(client);
    sb_loop_free(lp);
    cb_check_freed(events, 1);
    return 0;
}

static int32_t on_answer(void *user, const sb_ctx *ctx)
{
    const sb_response *rsp = sb_ctx_rsp(ctx);
    cb *c = (cb *)user;
    cb_alive(c);
    cb_note(c, sb_response_error(rsp), sb_response_message(rsp));
    return 0;
}

static sb_request *call_remote(const sb_remote *remote, const char *method,
                               cb *c)
{
    sb_request_builder *b = sb_request_to_remote(remote, method);
    sb_request *req = NULL;
    CHECK_OK(sb_request_builder_fallback(b, on_answer, c, cb_free));
    CHECK_OK(sb_request_send(b, &req));
    return req;
}

/* Whether the listing shows Svc (held while reconnecting, then answered). */
static int svc_listed(sb_loop *lp, const sb_client *client)
{
    return strstr(listing_wait(lp, client), "Svc[") != NULL;
}

int main(void)
{
    child b1, b2, svc;
    sb_loop *lp = NULL;
    sb_client *client = NULL, *listed = NULL, *fast = NULL;
    sb_remote *remote;
    sb_request *hang[3], *req;
    cb *ends[3], *events, *answer, *conn;
    sb_status st;
    char dir_template[] = "/tmp/sb-reconnect-XXXXXX";
    char listen[300], dead[300];
    const char *dir;
    int i;

    test_begin(__FILE__);
    dir = mkdtemp(dir_template);
    CHECK(dir != NULL);
    snprintf(listen, sizeof listen, "unix:%s/b.sock", dir);
    snprintf(dead, sizeof dead, "unix:%s/nobody.sock", dir);
    /* Every child is forked before any stagebus object exists here. */
    b1 = spawn_child(broker_child, NULL);
    b2 = spawn_child(broker_child, NULL);
    svc = spawn_child(service_child, NULL);

    CHECK_OK(sb_loop_new(&lp));
    child_send_address(&b1, listen);
    RUN_UNTIL(lp, child_reports(&b1) >= 1);
    child_send_address(&svc, listen);
    RUN_UNTIL(lp, child_reports(&svc) >= 1);
    CHECK_STR(svc.got, "P");

    client = connect_client(lp, listen, NULL);
    CHECK_OK(sb_client_set_reconnect(client, 20, 200, 0));
    events = cb_new("events");
    CHECK_OK(sb_client_on_connection_event(client, on_event, events, cb_free));
    remote = subscribe_wait(lp, client, "Svc", &st);
    CHECK_ST(st, SB_OK);
    answer = cb_new("echo");
    req = call_remote(remote, "echo", answer);
    RUN_UNTIL(lp, answer->calls == 1);
    CHECK_ST(answer->status, SB_OK);
    sb_request_free(req);
    OK("a reconnecting caller reached the reconnecting C service");

    for (i = 0; i < 3; i++) {
        ends[i] = cb_new("hang");
        hang[i] = call_remote(remote, "hang", ends[i]);
    }
    RUN_UNTIL(lp, child_reports(&svc) >= 4);
    CHECK_STR(svc.got, "PCCC");
    CHECK(kill(b1.pid, SIGKILL) == 0);
    CHECK_INT(wait_child(&b1), 128 + SIGKILL);
    RUN_UNTIL(lp, ends[0]->calls && ends[1]->calls && ends[2]->calls);
    for (i = 0; i < 3; i++) {
        CHECK_ST(ends[i]->status, SB_BROKER_GONE);
        CHECK(strstr(ends[i]->message, "may or may not") != NULL);
    }
    RUN_UNTIL(lp, events->id == 1);
    OK("the broker killed with -9: each pending call ended with broker_gone "
       "(\"%s\")", ends[0]->message);

    child_send_address(&b2, listen);
    RUN_UNTIL(lp, child_reports(&b2) >= 1);
    RUN_UNTIL(lp, svc_listed(lp, client));
    RUN_UNTIL(lp, events->id == 101);
    RUN_UNTIL(lp, child_reports(&svc) >= 6);
    CHECK_STR(svc.got, "PCCCDR");
    OK("the broker restarted on the same address: the C service came back "
       "by itself");
    answer = cb_new("echo");
    req = call_remote(remote, "echo", answer);
    RUN_UNTIL(lp, answer->calls == 1);
    CHECK_ST(answer->status, SB_OK);
    sb_request_free(req);
    for (i = 0; i < 3; i++) {
        CHECK_INT(ends[i]->calls, 1);
        sb_request_free(hang[i]);
    }
    OK("the caller's old sb_remote works again; every call ended once");

    /* The address list: a dead first address, then the broker. */
    conn = cb_new("connect");
    CHECK_OK(sb_client_connect(lp, dead, NULL, cb_connected, conn, cb_free,
                               &listed));
    CHECK_ST(sb_client_add_address(listed, listen), SB_INVALID_STATE);
    CHECK_OK(sb_client_set_reconnect(listed, 10, 100, 5));
    CHECK_OK(sb_client_add_address(listed, listen));
    RUN_UNTIL(lp, conn->calls > 0);
    CHECK_ST(conn->status, SB_OK);
    CHECK(svc_listed(lp, listed));
    OK("first address dead, the second one answered");

    /* Fail fast while reconnecting: the broker is killed again. */
    conn = cb_new("connect");
    CHECK_OK(sb_client_connect(lp, listen, NULL, cb_connected, conn, cb_free,
                               &fast));
    CHECK_OK(sb_client_set_reconnect(fast, 5000, 5000, 0));
    CHECK_OK(sb_client_set_reconnect_buffer(fast, true, 8));
    CHECK_OK(sb_client_set_reconnect_restore(fast, 1000, 1000));
    RUN_UNTIL(lp, conn->calls > 0);
    CHECK_ST(conn->status, SB_OK);
    CHECK(kill(b2.pid, SIGKILL) == 0);
    CHECK_INT(wait_child(&b2), 128 + SIGKILL);
    answer = cb_new("listing");
    RUN_UNTIL(lp, events->id == 102);
    CHECK_OK(sb_client_listing(fast, cb_listing, answer, cb_free));
    RUN_UNTIL(lp, answer->calls > 0);
    CHECK_ST(answer->status, SB_BROKER_GONE);
    OK("fail-fast: a listing while reconnecting ended at once (\"%s\")",
       answer->message);

    /* Bad input. */
    CHECK_ST(sb_client_set_reconnect(NULL, 1, 2, 0), SB_NULL_ARGUMENT);
    CHECK_ST(sb_client_set_reconnect(client, 3, 2, 0), SB_INVALID_ARGUMENT);
    CHECK_ST(sb_client_add_address(client, "nowhere"), SB_INVALID_ARGUMENT);
    CHECK_ST(sb_client_add_address(client, NULL), SB_NULL_ARGUMENT);
    CHECK_ST(sb_client_on_connection_event(client, NULL, NULL, NULL),
             SB_NULL_ARGUMENT);
    CHECK_OK(sb_client_disable_reconnect(client));
    CHECK_ST(sb_client_set_reconnect_buffer(client, false, 1),
             SB_INVALID_STATE);
    CHECK_ST(sb_client_disable_reconnect(NULL), SB_NULL_ARGUMENT);
    OK("the setters refuse bad input clearly");

    close(svc.ctl);
    CHECK_INT(wait_child(&svc), 0);
    close(b1.ctl);
    close(b2.ctl);
    sb_remote_free(remote);
    sb_client_free(fast);
    sb_client_free(listed);
    sb_client_free(client);
    sb_loop_free(lp);
    cb_check_all_freed();
    remove_socket_dir(dir);
    return test_end();
}
