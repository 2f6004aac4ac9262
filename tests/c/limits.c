/*
 * limits.c: the broker's limits from C (issue 13): sb_broker_set_limit
 * and sb_broker_limit by name, their errors, and a limit enforced and
 * counted (sb_broker_limits_exceeded).
 *
 * A broker whose registry budget per connection is set below one
 * session's names: the publish is answered SB_LIMIT_EXCEEDED and
 * counted, a smaller one passes. Then its memory budget is set to 1
 * byte: a listing (new work) is refused with SB_LIMIT_EXCEEDED.
 */
#include "check.h"

static int32_t noop(void *user, const sb_ctx *ctx)
{
    (void)user;
    (void)ctx;
    return 0;
}

int main(void)
{
    sb_loop *lp = NULL;
    sb_broker *broker;
    sb_client *client;
    sb_stage *stage = NULL;
    char addr[256];
    uint64_t value = 0;
    static char long_name[200];
    const char *big[1];
    const char *small[1] = {"m"};
    cb *c;

    test_begin(__FILE__);
    memset(long_name, 'x', sizeof long_name - 1);
    big[0] = long_name;
    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);

    CHECK_OK(sb_broker_limit(broker, "max-hello-frame", &value));
    CHECK_INT(value, 512);
    CHECK_OK(sb_broker_set_limit(broker, "write-timeout-ms", 2500));
    CHECK_OK(sb_broker_limit(broker, "write-timeout-ms", &value));
    CHECK_INT(value, 2500);
    /* Federation's limits are in the same table. */
    CHECK_OK(sb_broker_limit(broker, "max-nats-queued-bytes", &value));
    CHECK_INT(value, 64 << 20);
    CHECK_OK(sb_broker_set_limit(broker, "max-pending-per-link", 8));
    CHECK_OK(sb_broker_limit(broker, "max-pending-per-link", &value));
    CHECK_INT(value, 8);
    CHECK_ST(sb_broker_set_limit(broker, "max-nothing", 1), SB_INVALID_ARGUMENT);
    CHECK(strstr(sb_last_error(), "max-memory") != NULL);
    CHECK_ST(sb_broker_set_limit(broker, "max-memory", 0), SB_INVALID_ARGUMENT);
    CHECK_ST(sb_broker_set_limit(NULL, "max-memory", 1), SB_NULL_ARGUMENT);
    CHECK_ST(sb_broker_set_limit(broker, NULL, 1), SB_NULL_ARGUMENT);
    CHECK_ST(sb_broker_limit(broker, "max-memory", NULL), SB_NULL_ARGUMENT);
    CHECK_INT(sb_broker_limits_exceeded(NULL), 0);
    OK("limits are set and read by name; bad names and values are refused");

    CHECK_OK(sb_broker_set_limit(broker, "max-registry-bytes-per-connection",
                                 200));
    client = connect_client(lp, addr, NULL);
    CHECK_OK(sb_stage_new(lp, "Svc", &stage));
    CHECK_OK(sb_stage_on(stage, long_name, noop, NULL, NULL));
    CHECK_OK(sb_stage_on(stage, "m", noop, NULL, NULL));
    CHECK_ST(publish_wait(lp, stage, client, "Big", big, 1), SB_LIMIT_EXCEEDED);
    CHECK_INT(sb_broker_limits_exceeded(broker), 1);
    CHECK_OK(publish_wait(lp, stage, client, "Small", small, 1));
    OK("a publish over the registry budget is refused and counted");

    CHECK_OK(sb_broker_set_limit(broker, "max-memory", 1));
    c = cb_new("listing");
    CHECK_OK(sb_client_listing(client, cb_listing, c, cb_free));
    RUN_UNTIL(lp, c->calls > 0);
    CHECK_ST(c->status, SB_LIMIT_EXCEEDED);
    cb_check_freed(c, 1);
    CHECK_INT(sb_broker_limits_exceeded(broker), 2);
    OK("at the memory budget a listing is refused with limit_exceeded");

    sb_stage_free(stage);
    sb_client_free(client);
    sb_broker_free(broker);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
