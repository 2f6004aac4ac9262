/*
 * glib_embed.c: stagebus inside a GLib main loop.
 *
 * A broker, a service and a caller share one sb_loop, and nobody calls
 * sb_loop_run: a GMainLoop drives it through a small custom GSource,
 * GLib's own way of adding an event source:
 *
 *   - g_source_add_unix_fd() watches sb_loop_fd() for G_IO_IN
 *     (level-triggered);
 *   - g_source_set_ready_time() is the timer, armed from
 *     sb_loop_timeout_ms() (-1: none, 0: at once, else whole
 *     milliseconds);
 *   - the source's dispatch calls sb_loop_dispatch() when either fired,
 *     then asks for the timeout again and re-arms.
 *
 * Next to it runs the host's own periodic 5 ms g_timeout, which must
 * keep firing while the round of requests (20 request/returns and an
 * emit/recall dialogue) is under way.
 *
 *   cc -std=c99 glib_embed.c $(pkg-config --cflags --libs glib-2.0) -lstagebus
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glib-unix.h>
#include <glib.h>

#include "stagebus.h"

#include "embed_demo.h"

/* --- the host side: GLib -------------------------------------------------- */

/* A GSource that drives an sb_loop. */
typedef struct {
    GSource source;
    struct demo *demo;
    gpointer fd_tag; /* from g_source_add_unix_fd */
} SbSource;

/* Arms (or disarms) the source's timer from the loop's next deadline. */
static void sb_source_rearm(SbSource *s) {
    int64_t ms = sb_loop_timeout_ms(s->demo->lp);
    if (ms < 0) {
        g_source_set_ready_time(&s->source, -1); /* wait for the fd only */
    } else if (ms == 0) {
        g_source_set_ready_time(&s->source, 0); /* dispatch again at once */
    } else {
        g_source_set_ready_time(&s->source, g_get_monotonic_time() + ms * 1000);
    }
}

/* Runs when the fd is readable or the ready time has passed. */
static gboolean sb_source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data) {
    SbSource *s = (SbSource *)source;
    if (g_source_query_unix_fd(source, s->fd_tag) & G_IO_IN) {
        s->demo->fd_wakeups++;
    } else {
        s->demo->timer_wakeups++;
    }
    demo_check(s->demo, sb_loop_dispatch(s->demo->lp), "dispatch");
    sb_source_rearm(s);
    /* The callback (g_source_set_callback) hears of every dispatch. */
    return callback == NULL ? G_SOURCE_CONTINUE : callback(user_data);
}

static GSourceFuncs sb_source_funcs = {
    .dispatch = sb_source_dispatch,
};

static GSource *sb_source_new(struct demo *d) {
    GSource *source = g_source_new(&sb_source_funcs, sizeof(SbSource));
    SbSource *s = (SbSource *)source;
    s->demo = d;
    s->fd_tag = g_source_add_unix_fd(source, sb_loop_fd(d->lp), G_IO_IN);
    sb_source_rearm(s); /* setting up queued work: probably "now" */
    return source;
}

struct host {
    GMainLoop *main_loop;
    struct demo *demo;
    guint deadline; /* 0 once it fired */
};

/* After each dispatch: quit once the round is over. */
static gboolean after_dispatch(gpointer user_data) {
    struct host *h = user_data;
    if (h->demo->finished != 0) {
        g_main_loop_quit(h->main_loop);
    }
    return G_SOURCE_CONTINUE;
}

static gboolean on_tick(gpointer user_data) {
    struct host *h = user_data;
    h->demo->ticks++;
    return G_SOURCE_CONTINUE;
}

static gboolean on_deadline(gpointer user_data) {
    struct host *h = user_data;
    demo_fail(h->demo, "deadline", "the round took more than 10 s");
    h->deadline = 0;
    g_main_loop_quit(h->main_loop);
    return G_SOURCE_REMOVE;
}

int main(void) {
    struct demo d;
    memset(&d, 0, sizeof d);
    struct host h = {NULL, &d, 0};

    if (demo_start(&d)) {
        h.main_loop = g_main_loop_new(NULL, FALSE);
        GSource *sb = sb_source_new(&d);
        g_source_set_callback(sb, after_dispatch, &h, NULL);
        g_source_attach(sb, NULL);
        guint tick = g_timeout_add(5, on_tick, &h);
        h.deadline = g_timeout_add(10000, on_deadline, &h);

        g_main_loop_run(h.main_loop);

        g_source_remove(tick);
        if (h.deadline != 0) {
            g_source_remove(h.deadline);
        }
        g_source_destroy(sb);
        g_source_unref(sb);
        g_main_loop_unref(h.main_loop);
    }
    int rc = demo_report(&d, "glib");

    demo_free(&d);
    return rc;
}
