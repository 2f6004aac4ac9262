/*
 * stats.c: the broker's report of itself from C.
 *
 *  - sb_broker_report: after 4 calls (1 answered, 3 failed with
 *    SB_HANDLER_FAILED) and 1 call to an unknown method, the totals,
 *    errors by code, the session and both connections read exactly;
 *  - sb_client_stats: the same figures reach a client over the wire;
 *  - sb_broker_report_prometheus: a buffer too small is SB_LIMIT_EXCEEDED
 *    with the length needed; a large one gets the exposition text.
 */
#include "check.h"

static sb_loop *lp;

static int32_t s_time(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, NULL));
    return 0;
}

static int32_t s_broken(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK_OK(sb_served_fail(sb_ctx_req(ctx), SB_HANDLER_FAILED, "broken"));
    return 0;
}

static int finals;

static int32_t on_final(void *user, const sb_ctx *ctx)
{
    (void)user;
    (void)ctx;
    finals++;
    return 0;
}

static void call(const sb_remote *remote, const char *method)
{
    sb_request *req = NULL;
    sb_request_builder *b = sb_request_to_remote(remote, method);
    int before = finals;
    CHECK(b != NULL);
    CHECK_OK(sb_request_builder_fallback(b, on_final, NULL, NULL));
    CHECK_OK(sb_request_send(b, &req));
    RUN_UNTIL(lp, finals == before + 1);
    sb_request_free(req);
}

static int64_t int_at(const sb_args *map, const char *key)
{
    int64_t n = -1;
    CHECK_OK(sb_args_get_int(map, key, &n));
    return n;
}

/* Checks a report value against the script. */
static void check_report(const sb_value *report)
{
    const sb_args *top, *totals, *errors, *session, *conn;
    const sb_value *sessions, *connections;
    char name[64];
    CHECK(sb_value_type_of(report) == SB_VALUE_MAP);
    top = sb_value_map(report);
    CHECK(int_at(top, "uptime_ms") >= 0);
    totals = sb_value_map(sb_args_get(top, "totals"));
    CHECK(totals != NULL);
    CHECK_INT(int_at(totals, "calls"), 4);
    CHECK_INT(int_at(totals, "connections"), 2);
    CHECK_INT(int_at(totals, "sessions"), 1);
    CHECK_INT(int_at(totals, "pending_calls"), 0);
    errors = sb_value_map(sb_args_get(top, "errors"));
    CHECK(errors != NULL);
    CHECK_INT(int_at(errors, "handler_failed"), 3);
    CHECK_INT(int_at(errors, "no_such_method"), 1);
    sessions = sb_args_get(top, "sessions");
    CHECK_INT(sb_value_list_len(sessions), 1);
    session = sb_value_map(sb_value_list_get(sessions, 0));
    CHECK_STR(arg_string(session, "name", name, sizeof name), "Clock");
    CHECK_INT(int_at(session, "calls"), 4);
    CHECK_INT(int_at(sb_value_map(sb_args_get(session, "errors")), "handler_failed"), 3);
    connections = sb_args_get(top, "connections");
    CHECK_INT(sb_value_list_len(connections), 2);
    conn = sb_value_map(sb_value_list_get(connections, 0));
    CHECK_INT(int_at(conn, "sessions"), 1);
    CHECK_INT(int_at(session, "publisher"), int_at(conn, "id"));
    CHECK(strncmp(arg_string(conn, "peer", name, sizeof name), "127.0.0.1:", 10) == 0);
}

static void on_stats(void *user, sb_status st, const sb_value *report,
                     const char *message)
{
    cb *c = user;
    cb_note(c, st, message);
    if (st == SB_OK)
        check_report(report);
}

int main(void)
{
    sb_broker *broker;
    sb_client *service, *caller;
    sb_stage *stage = NULL;
    sb_remote *remote;
    sb_value *report = NULL;
    const char *methods[] = {"time", "broken"};
    char addr[128];
    char small[8];
    static char text[16384];
    size_t len = 0;
    cb *stats = cb_new("stats");

    test_begin(__FILE__);
    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    service = connect_client(lp, addr, NULL);
    caller = connect_client(lp, addr, NULL);
    CHECK_OK(sb_stage_new(lp, "Clock", &stage));
    CHECK_OK(sb_stage_on(stage, "time", s_time, NULL, NULL));
    CHECK_OK(sb_stage_on(stage, "broken", s_broken, NULL, NULL));
    CHECK_ST(publish_wait(lp, stage, service, "Clock", methods, 2), SB_OK);
    remote = subscribe_wait(lp, caller, "Clock", NULL);
    CHECK(remote != NULL);

    call(remote, "time");
    call(remote, "broken");
    call(remote, "broken");
    call(remote, "broken");
    call(remote, "nope");

    CHECK_OK(sb_broker_report(broker, &report));
    check_report(report);
    sb_value_free(report);
    CHECK_ST(sb_broker_report(broker, NULL), SB_NULL_ARGUMENT);
    OK("sb_broker_report counts the scripted calls exactly");

    CHECK_OK(sb_client_stats(caller, on_stats, stats, cb_free));
    RUN_UNTIL(lp, stats->calls == 1);
    CHECK_ST(stats->status, SB_OK);
    cb_check_freed(stats, 1);
    OK("sb_client_stats gets the same report over the wire");

    CHECK_ST(sb_broker_report_prometheus(broker, small, sizeof small, &len),
             SB_LIMIT_EXCEEDED);
    CHECK(len > sizeof small);
    CHECK_OK(sb_broker_report_prometheus(broker, text, sizeof text, &len));
    CHECK_INT(strlen(text), len);
    CHECK(strstr(text, "\nstagebus_calls_total 4\n") != NULL);
    CHECK(strstr(text, "stagebus_errors_total{code=\"handler_failed\"} 3\n") != NULL);
    OK("sb_broker_report_prometheus tells the length needed, then writes "
       "the exposition text");

    sb_remote_free(remote);
    sb_stage_free(stage);
    sb_client_free(caller);
    sb_client_free(service);
    sb_broker_free(broker);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
