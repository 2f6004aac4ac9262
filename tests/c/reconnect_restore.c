/*
 * reconnect_restore.c: signal matches and name watches live through a
 * broker killed with -9 and restarted on the same Unix socket, from C.
 *
 * Two broker children (the second starts only after the first was
 * killed). Here, on two loops: a reconnecting publisher of Svc that emits
 * signals (on a loop of its own, turned only when this test says so), and
 * a reconnecting client with a match (sb_client_add_match) and a watch
 * (sb_client_watch). After the restart the client is back before the
 * publisher: its renewed watch reports Svc gone (SB_PUBLISHER_GONE), then
 * appeared once the publisher is back by itself; its match hears the
 * signals emitted after the restart. No SB_CONNECTION_RESTORE_FAILED.
 */
#include "check.h"

#include <stdlib.h>

static char names_log[1024];
static int ticks[2]; /* "tick1" before the restart, "tick2" after */

/* sb_signal_fn: counts tick1 and tick2; anything else is a failure. */
static void on_signal(void *user, const char *session, const char *signal,
                      const sb_args *args)
{
    (void)args;
    cb_alive((cb *)user);
    CHECK_STR(session, "Svc");
    if (strcmp(signal, "tick1") == 0)
        ticks[0]++;
    else if (strcmp(signal, "tick2") == 0)
        ticks[1]++;
    else
        FAILF("a signal the match does not cover: %s", signal);
}

/* sb_name_event_fn: appends "present Svc;", "gone Svc publisher_gone;"... */
static void on_name(void *user, sb_name_event event, const char *name,
                    const sb_value *methods, sb_status reason,
                    const char *message)
{
    static const char *kinds[] = {"present", "appeared", "owner_changed",
                                  "gone"};
    size_t used = strlen(names_log);
    (void)message;
    cb_alive((cb *)user);
    CHECK((unsigned)event < 4);
    CHECK((event == SB_NAME_GONE) == (methods == NULL));
    if (event == SB_NAME_GONE)
        snprintf(names_log + used, sizeof names_log - used, "%s %s %s;",
                 kinds[event], name, sb_strerror(reason));
    else
        snprintf(names_log + used, sizeof names_log - used, "%s %s;",
                 kinds[event], name);
}

/* Counts disconnected (1) and reconnected (100); nothing else may come. */
static void on_event(void *user, uint32_t event, const char *session,
                     sb_status st, const char *message)
{
    cb *c = (cb *)user;
    if (event == SB_CONNECTION_DISCONNECTED)
        c->id += 1;
    else if (event == SB_CONNECTION_RECONNECTED)
        c->id += 100;
    else
        FAILF("unexpected event %u (%s: %s)", (unsigned)event,
              session ? session : "", message);
    cb_note(c, st, message);
}

/* Emits tick2 (the publisher may still be reconnecting: whatever the
 * status); whether one was heard. */
static int emitted_and_heard(const sb_client *publisher)
{
    (void)sb_client_emit_signal(publisher, "Svc", "tick2", NULL);
    return ticks[1] > 0;
}

int main(void)
{
    child b1, b2;
    sb_loop *lp = NULL, *plp = NULL;
    sb_client *publisher, *client;
    sb_stage *stage = NULL;
    cb *events, *match, *watch, *removed, *unwatched;
    uint64_t match_id = 0, watch_id = 0;
    char dir_template[] = "/tmp/sb-restore-XXXXXX";
    char listen[300];
    const char *dir;

    test_begin(__FILE__);
    dir = mkdtemp(dir_template);
    CHECK(dir != NULL);
    snprintf(listen, sizeof listen, "unix:%s/b.sock", dir);
    /* Every child is forked before any stagebus object exists here. */
    b1 = spawn_child(broker_child, NULL);
    b2 = spawn_child(broker_child, NULL);

    CHECK_OK(sb_loop_new(&lp));
    CHECK_OK(sb_loop_new(&plp));
    child_send_address(&b1, listen);
    RUN_UNTIL(lp, child_reports(&b1) >= 1);

    publisher = connect_client(plp, listen, NULL);
    CHECK_OK(sb_client_set_reconnect(publisher, 20, 200, 0));
    CHECK_OK(sb_stage_new(plp, "Svc", &stage));
    CHECK_OK(publish_wait(plp, stage, publisher, "Svc", NULL, 0));

    client = connect_client(lp, listen, NULL);
    CHECK_OK(sb_client_set_reconnect(client, 20, 200, 0));
    events = cb_new("events");
    CHECK_OK(sb_client_on_connection_event(client, on_event, events, cb_free));
    match = cb_new("match");
    CHECK_OK(sb_client_add_match(client, "Svc", "tick*", on_signal, cb_done,
                                 match, cb_free, &match_id));
    RUN_UNTIL(lp, match->calls > 0);
    CHECK_ST(match->status, SB_OK);
    watch = cb_new("watch");
    CHECK_OK(sb_client_watch(client, "Sv*", on_name, cb_done, watch, cb_free,
                             &watch_id));
    RUN_UNTIL(lp, watch->calls > 0);
    CHECK_ST(watch->status, SB_OK);
    CHECK_STR(names_log, "present Svc;");
    CHECK_OK(sb_client_emit_signal(publisher, "Svc", "tick1", NULL));
    RUN_BOTH_UNTIL(lp, plp, ticks[0] == 1);
    OK("a reconnecting listener and watcher, before the restart");

    CHECK(kill(b1.pid, SIGKILL) == 0);
    CHECK_INT(wait_child(&b1), 128 + SIGKILL);
    RUN_UNTIL(lp, events->id == 1);
    child_send_address(&b2, listen);
    RUN_UNTIL(lp, child_reports(&b2) >= 1);
    /* The publisher's loop stands still: Svc is not published again yet. */
    RUN_UNTIL(lp, strlen(names_log) > strlen("present Svc;"));
    CHECK_INT(events->id, 101);
    CHECK_STR(names_log, "present Svc;gone Svc publisher_gone;");
    OK("the broker killed with -9 and restarted: the renewed watch reports "
       "the name gone meanwhile");

    RUN_BOTH_UNTIL(lp, plp,
                   strcmp(names_log, "present Svc;gone Svc publisher_gone;"
                                     "appeared Svc;") == 0);
    OK("the publisher came back by itself: the watch saw it appear");

    /* The match may be renewed a little after the reconnect: emit until
     * one arrives. */
    RUN_BOTH_UNTIL(lp, plp, emitted_and_heard(publisher));
    CHECK_INT(ticks[0], 1);
    OK("the renewed match hears the signals emitted after the restart");

    removed = cb_new("remove_match");
    CHECK_OK(sb_client_remove_match(client, match_id, cb_done, removed,
                                    cb_free));
    unwatched = cb_new("unwatch");
    CHECK_OK(sb_client_unwatch(client, watch_id, cb_done, unwatched,
                               cb_free));
    RUN_UNTIL(lp, removed->calls > 0 && unwatched->calls > 0);
    CHECK_ST(removed->status, SB_OK);
    CHECK_ST(unwatched->status, SB_OK);
    cb_check_freed(match, 1);
    cb_check_freed(watch, 1);
    OK("the renewed match and watch end as any other");

    close(b1.ctl);
    close(b2.ctl);
    sb_stage_free(stage);
    sb_client_free(publisher);
    sb_client_free(client);
    sb_loop_free(plp);
    sb_loop_free(lp);
    cb_check_all_freed();
    remove_socket_dir(dir);
    return test_end();
}
