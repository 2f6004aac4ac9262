/*
 * libev_embed.c: stagebus inside a libev loop.
 *
 * A broker, a service and a caller share one sb_loop, and nobody calls
 * sb_loop_run: libev drives it. The host
 *
 *   - watches sb_loop_fd() with an ev_io for EV_READ (level-triggered,
 *     libev's default),
 *   - arms an ev_timer from sb_loop_timeout_ms() (-1: none, 0: at once,
 *     else whole milliseconds),
 *   - calls sb_loop_dispatch() when either fires, and asks for the
 *     timeout again after every dispatch (and after setting things up).
 *
 * Next to it runs the host's own periodic 5 ms ev_timer, which must
 * keep firing while the round of requests (20 request/returns and an
 * emit/recall dialogue) is under way.
 *
 *   cc -std=c99 libev_embed.c -lev -lstagebus
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>

#include "stagebus.h"

#include "embed_demo.h"

/* --- the host side: libev ------------------------------------------------ */

struct host {
    struct ev_loop *loop;
    ev_io readable;    /* sb_loop_fd */
    ev_timer timeout;  /* from sb_loop_timeout_ms */
    ev_timer tick;     /* the host's own 5 ms timer */
    ev_timer deadline; /* gives up after 10 s */
    struct demo *demo;
};

/* Arms (or disarms) the host timer from the loop's next deadline. */
static void rearm(struct host *h) {
    ev_timer_stop(h->loop, &h->timeout);
    int64_t ms = sb_loop_timeout_ms(h->demo->lp);
    if (ms < 0) {
        return;
    }
    ev_now_update(h->loop); /* measure from now, not the loop's cached time */
    ev_timer_set(&h->timeout, (ev_tstamp)ms / 1000.0, 0.0);
    ev_timer_start(h->loop, &h->timeout);
}

static void dispatch(struct host *h) {
    demo_check(h->demo, sb_loop_dispatch(h->demo->lp), "dispatch");
    if (h->demo->finished != 0) {
        ev_break(h->loop, EVBREAK_ALL);
    } else {
        rearm(h);
    }
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    struct host *h = w->data;
    h->demo->fd_wakeups++;
    dispatch(h);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    struct host *h = w->data;
    h->demo->timer_wakeups++;
    dispatch(h);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    struct host *h = w->data;
    h->demo->ticks++;
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    struct host *h = w->data;
    demo_fail(h->demo, "deadline", "the round took more than 10 s");
    ev_break(loop, EVBREAK_ALL);
}

int main(void) {
    struct demo d;
    memset(&d, 0, sizeof d);
    struct host h;
    memset(&h, 0, sizeof h);
    h.demo = &d;

    h.loop = ev_loop_new(EVFLAG_AUTO);
    if (h.loop == NULL) {
        fprintf(stderr, "ev_loop_new failed\n");
        return 1;
    }
    if (demo_start(&d)) {
        ev_io_init(&h.readable, on_readable, sb_loop_fd(d.lp), EV_READ);
        ev_timer_init(&h.timeout, on_timeout, 0.0, 0.0);
        ev_timer_init(&h.tick, on_tick, 0.005, 0.005);
        ev_timer_init(&h.deadline, on_deadline, 10.0, 0.0);
        h.readable.data = h.timeout.data = h.tick.data = h.deadline.data = &h;
        ev_io_start(h.loop, &h.readable);
        ev_timer_start(h.loop, &h.tick);
        ev_timer_start(h.loop, &h.deadline);
        rearm(&h); /* setting up queued work: probably "now" */
        ev_run(h.loop, 0);
        ev_io_stop(h.loop, &h.readable);
        ev_timer_stop(h.loop, &h.timeout);
        ev_timer_stop(h.loop, &h.tick);
        ev_timer_stop(h.loop, &h.deadline);
    }
    int rc = demo_report(&d, "libev");

    demo_free(&d);
    ev_loop_destroy(h.loop);
    return rc;
}
