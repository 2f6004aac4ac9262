/*
 * federation.c: the federation's broker options from C. Bad settings are
 * refused with SB_INVALID_ARGUMENT (a bad broker id, namespace or URL),
 * credentials before the federation with SB_INVALID_STATE; a broker with
 * federation set starts and serves its own clients while its NATS
 * servers are unreachable (it keeps trying in the background), and
 * frees cleanly. Calls across brokers over a real NATS cluster:
 * federation_call.c (and tests/federation*.rs from Rust).
 */
#include "check.h"

int main(void)
{
    sb_loop *lp = NULL;
    sb_broker_options *bo = NULL;
    sb_broker *broker = NULL;
    sb_client *client = NULL;
    const char *listens[1] = {"tcp://127.0.0.1:0"};
    char addr[256];

    test_begin(__FILE__);
    CHECK_OK(sb_loop_new(&lp));
    CHECK_OK(sb_broker_options_new(&bo));
    CHECK_ST(sb_broker_options_set_nats_credentials(bo, "u", "p", NULL),
             SB_INVALID_STATE);
    CHECK_ST(sb_broker_options_set_federation(bo, "nats://127.0.0.1:1", "b 1",
                                              NULL),
             SB_INVALID_ARGUMENT);
    CHECK_ST(sb_broker_options_set_federation(bo, "nats://127.0.0.1:1", "b1",
                                              "a.b"),
             SB_INVALID_ARGUMENT);
    CHECK_ST(sb_broker_options_set_federation(bo, "tls://127.0.0.1:1", "b1",
                                              NULL),
             SB_INVALID_ARGUMENT);
    CHECK_ST(sb_broker_options_set_federation(bo, "nats://127.0.0.1:1", NULL,
                                              NULL),
             SB_NULL_ARGUMENT);
    CHECK_ST(sb_broker_options_set_federation(NULL, "nats://127.0.0.1:1", "b1",
                                              NULL),
             SB_NULL_ARGUMENT);
    OK("bad federation settings are refused");

    CHECK_OK(sb_broker_options_set_federation(
        bo, "nats://127.0.0.1:1,nats://127.0.0.1:2", "b1", "c_test"));
    CHECK_ST(sb_broker_options_set_nats_credentials(bo, "u", NULL, NULL),
             SB_INVALID_ARGUMENT);
    CHECK_ST(sb_broker_options_set_nats_credentials(bo, "u", "p", "t"),
             SB_INVALID_ARGUMENT);
    CHECK_OK(sb_broker_options_set_nats_credentials(bo, "u", "p", NULL));
    CHECK_OK(sb_broker_options_set_nats_credentials(bo, NULL, NULL, "t"));
    OK("federation settings and NATS credentials are taken");

    CHECK_OK(sb_broker_new_with(lp, listens, 1, bo, &broker));
    sb_broker_options_free(bo);
    CHECK_OK(sb_broker_address(broker, 0, addr, sizeof addr));
    client = connect_client(lp, addr, NULL);
    CHECK_INT(sb_broker_pending_calls(broker), 0);
    OK("a federated broker serves its clients while NATS is unreachable");

    sb_client_free(client);
    sb_broker_free(broker);
    sb_loop_free(lp);
    return test_end();
}
