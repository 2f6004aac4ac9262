/*
 * tls.c: TLS from C. The certificates come from the test harness, in the
 * directory $STAGEBUS_TEST_TLS (see tests/support/certs.rs): a CA, the
 * broker's certificate for 127.0.0.1, alice's client certificate, and
 * another CA.
 *
 * A broker on tls://127.0.0.1:0 asking for client certificates (mutual
 * TLS); two clients presenting alice's: a call goes through and the
 * publisher sees the caller's identity "CN=alice". A client without a
 * certificate and one trusting the other CA are refused (the broker
 * counts the failed handshakes). The option setters refuse half a pair
 * and a client CA before the certificate; a missing file fails the
 * broker's start with SB_IO naming it.
 */
#include "check.h"

static char identity[128];
static int served;

static int32_t echo(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    (void)user;
    served++;
    CHECK_OK(sb_served_caller_identity(req, identity, sizeof identity));
    CHECK_OK(sb_served_return(req, NULL, sb_ctx_args(ctx)));
    return 0;
}

static int32_t on_return(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    cb_alive(c);
    c->calls++;
    CHECK_ST(sb_response_error(sb_ctx_rsp(ctx)), SB_OK);
    return 0;
}

static char dir[512];

static const char *file(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

/* Connects with a CA file and (or not) alice's certificate: the status
 * of the connect; the client in *out (freed by the caller). */
static sb_status connect_tls(sb_loop *lp, const char *addr, const char *ca,
                             int with_cert, sb_client **out, char *message,
                             size_t cap)
{
    char p1[600], p2[600], p3[600];
    sb_client_options *o = NULL;
    cb *c = cb_new("connect");
    sb_status st;
    CHECK_OK(sb_client_options_new(&o));
    CHECK_OK(sb_client_options_set_tls_ca(o, file(p1, sizeof p1, ca)));
    CHECK_ST(sb_client_options_set_tls_cert(o, "x.pem", NULL),
             SB_INVALID_ARGUMENT);
    if (with_cert)
        CHECK_OK(sb_client_options_set_tls_cert(
            o, file(p2, sizeof p2, "alice.pem"),
            file(p3, sizeof p3, "alice.key")));
    CHECK_OK(sb_client_connect_with(lp, addr, o, cb_connected, c, cb_free,
                                    out));
    sb_client_options_free(o);
    RUN_UNTIL(lp, c->calls > 0);
    st = c->status;
    if (message)
        snprintf(message, cap, "%s", c->message);
    cb_check_freed(c, 1);
    return st;
}

int main(void)
{
    const char *env = getenv("STAGEBUS_TEST_TLS");
    char cert[600], key[600], ca[600], addr[256], message[512];
    const char *listens[] = {"tls://127.0.0.1:0"};
    const char *const methods[] = {"echo"};
    sb_loop *lp = NULL;
    sb_broker_options *bo = NULL;
    sb_broker *broker = NULL;
    sb_client *alice1 = NULL, *alice2 = NULL, *bad = NULL;
    sb_stage *stage = NULL;
    sb_remote *remote;
    sb_request_builder *b;
    sb_request *req = NULL;
    cb *ret = cb_new("return");

    test_begin(__FILE__);
    if (env == NULL || *env == '\0')
        FAILF("STAGEBUS_TEST_TLS names no certificate directory "
              "(run this program through tests/c_api.rs)");
    snprintf(dir, sizeof dir, "%s", env);

    CHECK_OK(sb_loop_new(&lp));
    CHECK_OK(sb_broker_options_new(&bo));
    CHECK_ST(sb_broker_options_set_tls_client_ca(bo, "ca.pem"),
             SB_INVALID_ARGUMENT);
    CHECK_ST(sb_broker_options_set_tls_cert(bo, NULL, "k.pem"),
             SB_INVALID_ARGUMENT);
    /* A missing key file fails the start, naming it. */
    CHECK_OK(sb_broker_options_set_tls_cert(
        bo, file(cert, sizeof cert, "broker.pem"), "/nonexistent/broker.key"));
    CHECK_ST(sb_broker_new_with(lp, listens, 1, bo, &broker), SB_IO);
    CHECK(strstr(sb_last_error(), "/nonexistent/broker.key") != NULL);
    CHECK_OK(sb_broker_options_set_tls_cert(
        bo, file(cert, sizeof cert, "broker.pem"),
        file(key, sizeof key, "broker.key")));
    CHECK_OK(sb_broker_options_set_tls_client_ca(bo,
                                                 file(ca, sizeof ca, "ca.pem")));
    CHECK_OK(sb_broker_new_with(lp, listens, 1, bo, &broker));
    sb_broker_options_free(bo);
    CHECK_OK(sb_broker_address(broker, 0, addr, sizeof addr));
    CHECK(strncmp(addr, "tls://127.0.0.1:", 16) == 0);
    OK("a broker on tls:// with mutual TLS; bad options refused");

    CHECK_OK(connect_tls(lp, addr, "ca.pem", 1, &alice1, NULL, 0));
    CHECK_OK(connect_tls(lp, addr, "ca.pem", 1, &alice2, NULL, 0));
    CHECK_OK(sb_stage_new(lp, "Echo", &stage));
    CHECK_OK(sb_stage_on(stage, "echo", echo, NULL, NULL));
    CHECK_OK(publish_wait(lp, stage, alice1, "Echo", methods, 1));
    remote = subscribe_wait(lp, alice2, "Echo", NULL);
    CHECK(remote != NULL);
    b = sb_request_to_remote(remote, "echo");
    CHECK(b != NULL);
    CHECK_OK(sb_request_builder_on(b, "return", on_return, ret, cb_free));
    CHECK_OK(sb_request_send(b, &req));
    RUN_UNTIL(lp, ret->calls > 0);
    CHECK_INT(served, 1);
    CHECK_STR(identity, "CN=alice");
    sb_request_free(req);
    OK("a call through tls://; the publisher sees the identity CN=alice");

    CHECK(connect_tls(lp, addr, "ca.pem", 0, &bad, message, sizeof message)
          != SB_OK);
    CHECK(strstr(message, "certificate") != NULL);
    sb_client_free(bad);
    bad = NULL;
    CHECK(connect_tls(lp, addr, "other-ca.pem", 1, &bad, message,
                      sizeof message) != SB_OK);
    CHECK(strstr(message, "UnknownIssuer") != NULL);
    sb_client_free(bad);
    RUN_UNTIL(lp, sb_broker_tls_handshake_failures(broker) >= 2);
    CHECK_INT(sb_broker_tls_handshake_failures(NULL), 0);
    OK("no client certificate, or a broker of another CA: refused");

    sb_remote_free(remote);
    sb_stage_free(stage);
    sb_client_free(alice1);
    sb_client_free(alice2);
    sb_broker_free(broker);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
