/*
 * signals.c: signals and one-way requests from C, over TCP and over a
 * Unix socket.
 *
 * Signals: a client publishing Src and Other emits 30 signals; 20
 * listeners with exact, prefix and wildcard matches (sb_client_add_match)
 * each get exactly the matching ones, in order, with the session and
 * signal names and the args; a removed match gets nothing more; only the
 * publisher may emit (SB_NOT_PUBLISHER), and bad patterns are refused.
 *
 * One-way: sb_remote_post runs the callee's method, which sees
 * sb_served_expects_answer false; its return is dropped at its client
 * (sb_client_dropped_answers) and the broker keeps no route
 * (sb_broker_pending_calls).
 */
#include "check.h"

#define LISTENERS 20
#define SIGNALS 30

static const char *const patterns[4][2] = {
    {"Src", "tick"}, {"*", "tick"}, {"Sr*", "*"}, {"*", "*"}};

static const char *emitted_session(int n)
{
    return n % 3 == 2 ? "Other" : "Src";
}

static const char *emitted_signal(int n)
{
    return n % 3 == 1 ? "tock" : "tick";
}

static int pattern_matches(const char *p, const char *name)
{
    size_t len = strlen(p);
    if (strcmp(p, "*") == 0)
        return 1;
    if (len > 0 && p[len - 1] == '*')
        return strncmp(p, name, len - 1) == 0;
    return strcmp(p, name) == 0;
}

static int expected_count(int which)
{
    int n, count = 0;
    for (n = 0; n < SIGNALS; n++)
        count += pattern_matches(patterns[which][0], emitted_session(n)) &&
                 pattern_matches(patterns[which][1], emitted_signal(n));
    return count;
}

/* A listener: id counts its signals, extra holds its pattern index, and
 * status holds the last n seen (checked to grow). */
typedef struct listener {
    cb *rec;
    int which;
    int got;
    int64_t last;
} listener;

static listener listeners[LISTENERS];

static void on_signal(void *user, const char *session, const char *signal,
                      const sb_args *args)
{
    listener *l = (listener *)((cb *)user)->extra;
    int64_t n = -1;
    cb_alive(l->rec);
    CHECK_OK(sb_args_get_int(args, "n", &n));
    CHECK(pattern_matches(patterns[l->which][0], session));
    CHECK(pattern_matches(patterns[l->which][1], signal));
    CHECK_STR(session, emitted_session((int)n));
    CHECK_STR(signal, emitted_signal((int)n));
    if (n <= l->last)
        FAILF("listener %d got n=%lld after n=%lld", l->which, (long long)n,
              (long long)l->last);
    l->last = n;
    l->got++;
}

static int32_t work(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    const sb_served *req = sb_ctx_req(ctx);
    cb_alive(c);
    c->calls++;
    c->id = sb_served_expects_answer(req) ? 1 : 2;
    CHECK_OK(sb_served_return(req, NULL, NULL));
    return 0;
}

static void flow(const char *listen)
{
    sb_loop *lp = NULL;
    sb_broker *broker;
    sb_client *emitter, *caller, *clients[LISTENERS];
    sb_stage *src = NULL, *other = NULL;
    sb_remote *remote;
    sb_args *a;
    cb *m_work = cb_new("work"), *removed = cb_new("remove match");
    cb *m_other = cb_new("other work");
    const char *const methods[] = {"work"};
    char addr[256];
    uint64_t match_id = 0, first_match = 0;
    int i, n;

    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, listen, NULL, addr, sizeof addr);
    emitter = connect_client(lp, addr, NULL);
    caller = connect_client(lp, addr, NULL);
    CHECK_OK(sb_stage_new(lp, "Src", &src));
    CHECK_OK(sb_stage_on(src, "work", work, m_work, cb_free));
    CHECK_OK(sb_stage_new(lp, "Other", &other));
    CHECK_OK(sb_stage_on(other, "work", work, m_other, cb_free));
    CHECK_OK(publish_wait(lp, src, emitter, "Src", methods, 1));
    CHECK_OK(publish_wait(lp, other, emitter, "Other", methods, 1));

    for (i = 0; i < LISTENERS; i++) {
        listener *l = &listeners[i];
        memset(l, 0, sizeof *l);
        l->which = i % 4;
        l->last = -1;
        l->rec = cb_new("listener");
        l->rec->extra = l;
        clients[i] = connect_client(lp, addr, NULL);
        CHECK_OK(sb_client_add_match(clients[i], patterns[l->which][0],
                                     patterns[l->which][1], on_signal,
                                     cb_done, l->rec, cb_free, &match_id));
        CHECK(match_id > 0);
        if (i == 0)
            first_match = match_id;
        RUN_UNTIL(lp, l->rec->calls > 0);
        CHECK_ST(l->rec->status, SB_OK);
    }
    OK("20 matches confirmed");

    for (n = 0; n < SIGNALS; n++) {
        a = sb_args_new();
        CHECK_OK(sb_args_set_int(a, "n", n));
        CHECK_OK(sb_client_emit_signal(emitter, emitted_session(n),
                                       emitted_signal(n), a));
        sb_args_free(a);
    }
    for (i = 0; i < LISTENERS; i++)
        RUN_UNTIL(lp, listeners[i].got == expected_count(listeners[i].which));
    for (i = 0; i < LISTENERS; i++) {
        listing_wait(lp, clients[i]);
        CHECK_INT(listeners[i].got, expected_count(listeners[i].which));
    }
    OK("every listener got exactly its signals, in order");

    /* Only the publisher emits; bad names and patterns are refused. */
    CHECK_ST(sb_client_emit_signal(caller, "Src", "tick", NULL),
             SB_NOT_PUBLISHER);
    CHECK_ST(sb_client_emit_signal(emitter, "Src", "a*", NULL),
             SB_INVALID_ARGUMENT);
    CHECK_ST(sb_client_add_match(caller, "S*c", "*", on_signal, NULL, NULL,
                                 NULL, &match_id),
             SB_INVALID_ARGUMENT);
    CHECK_ST(sb_client_add_match(caller, "*", "*", NULL, NULL, NULL, NULL,
                                 &match_id),
             SB_NULL_ARGUMENT);
    OK("bad emits and matches are refused");

    /* A removed match gets nothing more; its user is freed once. */
    CHECK_OK(sb_client_remove_match(clients[0], first_match, cb_done, removed,
                                    cb_free));
    RUN_UNTIL(lp, removed->calls > 0);
    CHECK_ST(removed->status, SB_OK);
    cb_check_freed(removed, 1);
    cb_check_freed(listeners[0].rec, 1);
    CHECK_ST(sb_client_remove_match(clients[0], first_match, NULL, NULL, NULL),
             SB_INVALID_ARGUMENT);
    OK("a removed match is forgotten and its user freed");

    /* One-way: the callee knows; nothing comes back; no route stays. */
    remote = subscribe_wait(lp, caller, "Src", NULL);
    CHECK(remote != NULL);
    a = sb_args_new();
    CHECK_OK(sb_args_set_int(a, "n", 1));
    CHECK_OK(sb_remote_post(remote, "work", a));
    sb_args_free(a);
    RUN_UNTIL(lp, m_work->calls == 1);
    CHECK_INT(m_work->id, 2);
    RUN_UNTIL(lp, sb_client_dropped_answers(emitter) == 1);
    listing_wait(lp, caller);
    CHECK_INT(sb_broker_pending_calls(broker), 0);
    CHECK_ST(sb_remote_post(remote, "", NULL), SB_INVALID_ARGUMENT);
    OK("a one-way request runs, expects no answer, leaves no route");
    sb_remote_free(remote);

    for (i = 0; i < LISTENERS; i++)
        sb_client_free(clients[i]);
    sb_stage_free(src);
    sb_stage_free(other);
    sb_client_free(emitter);
    sb_client_free(caller);
    sb_broker_free(broker);
    sb_loop_free(lp);
    for (i = 1; i < LISTENERS; i++)
        cb_check_freed(listeners[i].rec, 1);
}

int main(void)
{
    char dir[] = "/tmp/stagebus-c-XXXXXX";
    char listen[256];

    test_begin(__FILE__);
    flow("tcp://127.0.0.1:0");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(listen, sizeof listen, "unix:%s/bus.sock", dir);
    flow(listen);
    CHECK(rmdir(dir) == 0);
    cb_check_all_freed();
    return test_end();
}
