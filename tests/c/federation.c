/*
 * federation.c: the federation's broker options from C. Bad settings are
 * refused with SB_INVALID_ARGUMENT (a bad broker id, namespace or URL),
 * credentials before the federation with SB_INVALID_STATE, heartbeats
 * with a zero value or a timeout not longer than the interval with
 * SB_INVALID_ARGUMENT naming the setting; a broker with
 * federation set starts and serves its own clients while its NATS
 * servers are unreachable (it keeps trying in the background), and
 * frees cleanly. An NKey seed file is read when it is set: a good one is
 * taken, a mistyped one is refused naming the file and not the seed; a
 * NATS TLS CA file that does not exist fails the broker's start, named.
 * Calls across brokers over a real NATS cluster: federation_call.c (and
 * tests/federation*.rs from Rust).
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
    CHECK_ST(sb_broker_options_set_federation(bo, "wss://127.0.0.1:1", "b1",
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

    CHECK_ST(sb_broker_options_set_federation_heartbeat(bo, 0, 2000),
             SB_INVALID_ARGUMENT);
    CHECK(strstr(sb_last_error(), "hb_interval") != NULL);
    CHECK_ST(sb_broker_options_set_federation_heartbeat(bo, 1000, 1000),
             SB_INVALID_ARGUMENT);
    CHECK(strstr(sb_last_error(), "hb_timeout") != NULL);
    CHECK_OK(sb_broker_options_set_federation_heartbeat(bo, 200, 3000));
    CHECK_OK(sb_broker_options_set_federation_sys_events(bo, true));
    OK("heartbeat and disconnect event settings are checked and taken");

    {
        /* The NATS clients' test user seed, and the same with a typo. */
        static const char seed[] =
            "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY\n";
        char good[] = "/tmp/sb-nkey-XXXXXX", bad[] = "/tmp/sb-nkey-XXXXXX";
        int fd_good = mkstemp(good), fd_bad = mkstemp(bad);
        char typo[sizeof seed];
        CHECK(fd_good >= 0 && fd_bad >= 0);
        memcpy(typo, seed, sizeof seed);
        typo[20] = typo[20] == 'A' ? 'B' : 'A';
        CHECK(write(fd_good, seed, strlen(seed)) == (ssize_t)strlen(seed));
        CHECK(write(fd_bad, typo, strlen(typo)) == (ssize_t)strlen(typo));
        close(fd_good);
        close(fd_bad);
        CHECK_OK(sb_broker_options_set_nats_nkey(bo, good));
        CHECK_ST(sb_broker_options_set_nats_nkey(bo, bad), SB_INVALID_ARGUMENT);
        CHECK(strstr(sb_last_error(), bad) != NULL);
        CHECK(strstr(sb_last_error(), "checksum") != NULL);
        CHECK(strstr(sb_last_error(), "MK2FG4MI6UE3ACF3F") == NULL);
        CHECK_OK(sb_broker_options_set_nats_nkey(bo, NULL));
        unlink(good);
        unlink(bad);
    }
    OK("an NKey seed file is read and checked when it is set");

    CHECK_ST(sb_broker_options_set_nats_tls(bo, NULL, "c.pem", NULL),
             SB_INVALID_ARGUMENT);
    CHECK_OK(sb_broker_options_set_nats_tls(bo, "/nonexistent/ca.pem", NULL, NULL));
    CHECK_ST(sb_broker_new_with(lp, listens, 1, bo, &broker), SB_INVALID_ARGUMENT);
    CHECK(strstr(sb_last_error(), "/nonexistent/ca.pem") != NULL);
    CHECK_OK(sb_broker_options_set_nats_tls(bo, NULL, NULL, NULL));
    OK("NATS TLS files are checked when the broker starts");

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
