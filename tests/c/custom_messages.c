/*
 * custom_messages.c: messages of application-defined kinds through the C
 * API (the original's custom message types and unknown_message_event;
 * SEMANTICS.md P20, P21, and checks 5-6 of t/01-basic.t).
 *
 *  1. sb_client_send_custom: the broker knows no such kind and answers
 *     with a protocol error, which reaches the client's
 *     sb_client_on_unknown_message handler as kind "result", with the id
 *     the application chose (also an id the client uses for one of its
 *     own operations, and UINT64_MAX) and the broker's text as payload.
 *     The connection carries on; the client's own operation gets its own
 *     answer.
 *  2. Replacing the handler frees the old registration at once, once;
 *     only the new one hears later answers.
 *  3. Without a handler the answer is ignored and the connection lives.
 *  4. After sb_client_close: SB_BROKER_GONE, and no callback.
 *  5. Freeing the client frees the handler's user data, once.
 */
#include "check.h"

#define MAX_SEEN 8

/* What an unknown-message handler saw, in order. */
typedef struct seen {
    int n;
    char kind[MAX_SEEN][32];
    uint64_t id[MAX_SEEN];
    char payload[MAX_SEEN][128];
} seen;

static void on_unknown(void *user, const char *kind, uint64_t id,
                       const uint8_t *payload, size_t len)
{
    cb *c = (cb *)user;
    seen *s = (seen *)c->extra;
    cb_alive(c);
    c->calls++;
    if (s->n >= MAX_SEEN)
        FAILF("more than %d unknown messages", MAX_SEEN);
    CHECK(kind != NULL);
    CHECK(len == 0 || payload != NULL);
    snprintf(s->kind[s->n], sizeof s->kind[0], "%s", kind);
    s->id[s->n] = id;
    if (len >= sizeof s->payload[0])
        len = sizeof s->payload[0] - 1;
    if (len > 0)
        memcpy(s->payload[s->n], payload, len);
    s->payload[s->n][len] = '\0';
    s->n++;
}

int main(void)
{
    sb_loop *lp = NULL;
    sb_broker *broker;
    sb_client *client, *quiet;
    char addr[256];
    seen first, second;
    cb *u1 = cb_new("unknown handler 1");
    cb *u2 = cb_new("unknown handler 2");
    cb *closed = cb_new("unknown handler of the closed client");
    const char *listing;
    static const uint8_t payload_with_nul[] = {'a', 0, 'b'};

    test_begin(__FILE__);
    memset(&first, 0, sizeof first);
    memset(&second, 0, sizeof second);
    u1->extra = &first;
    u2->extra = &second;
    closed->extra = &second;

    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    client = connect_client(lp, addr, NULL);

    /* 1 */
    CHECK_OK(sb_client_on_unknown_message(client, on_unknown, u1, cb_free));
    cb_check_freed(u1, 0);
    /* 1 is also the id of the client's next operation, the listing
     * below; the broker answers the custom message first. */
    CHECK_OK(sb_client_send_custom(client, "frob", 1, payload_with_nul,
                                   sizeof payload_with_nul));
    listing = listing_wait(lp, client);
    CHECK_STR(listing, "");
    CHECK_OK(sb_client_send_custom(client, "fr\xc3\xb8"
                                           "b",
                                   UINT64_MAX, NULL, 0));
    RUN_UNTIL(lp, first.n == 2);
    CHECK_STR(first.kind[0], "result");
    CHECK(first.id[0] == 1);
    CHECK_STR(first.payload[0], "protocol: Unknown message type 'frob'");
    CHECK_STR(first.kind[1], "result");
    CHECK(first.id[1] == UINT64_MAX);
    CHECK_STR(first.payload[1],
              "protocol: Unknown message type 'fr\xc3\xb8"
              "b'");
    OK("send_custom: the broker's protocol error reaches the unknown-message "
       "handler as 'result' with the application's id (1, UINT64_MAX)");
    OK("the listing that shares id 1 got its own answer; the connection "
       "carries on");

    /* 2 */
    CHECK_OK(sb_client_on_unknown_message(client, on_unknown, u2, cb_free));
    cb_check_freed(u1, 1);
    cb_check_freed(u2, 0);
    CHECK_OK(sb_client_send_custom(client, "again", 7, NULL, 0));
    RUN_UNTIL(lp, second.n == 1);
    CHECK_INT(first.n, 2);
    CHECK(second.id[0] == 7);
    CHECK_STR(second.payload[0], "protocol: Unknown message type 'again'");
    OK("replacing the handler frees the old one at once, once; only the "
       "new one hears later answers");

    /* 3 */
    quiet = connect_client(lp, addr, NULL);
    CHECK_OK(sb_client_send_custom(quiet, "frob", 3, NULL, 0));
    listing = listing_wait(lp, quiet);
    CHECK_STR(listing, "");
    CHECK_INT(second.n, 1);
    OK("without a handler the answer is ignored; the connection lives");

    /* 4 */
    CHECK_OK(sb_client_on_unknown_message(quiet, on_unknown, closed,
                                          cb_free));
    CHECK_OK(sb_client_close(quiet));
    CHECK_ST(sb_client_send_custom(quiet, "frob", 4, NULL, 0),
             SB_BROKER_GONE);
    CHECK(sb_last_error()[0] != '\0');
    CHECK_OK(sb_loop_run_for(lp, 20));
    CHECK_INT(closed->calls, 0);
    CHECK_INT(second.n, 1);
    OK("send_custom after close: SB_BROKER_GONE (%s), no callback",
       sb_last_error());

    /* 5 */
    sb_client_free(quiet);
    cb_check_freed(closed, 1);
    sb_client_free(client);
    cb_check_freed(u2, 1);
    OK("freeing the client frees its handler's user data, once");

    sb_broker_free(broker);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
