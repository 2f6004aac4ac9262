/*
 * libevent_embed.c: stagebus inside a libevent event_base.
 *
 * A broker, a service and a caller share one sb_loop, and nobody calls
 * sb_loop_run: libevent drives it. The host
 *
 *   - watches sb_loop_fd() for reading (it is level-readable),
 *   - arms a timer of its own from sb_loop_timeout_ms() (-1: none,
 *     0: at once, else whole milliseconds),
 *   - calls sb_loop_dispatch() when either fires, and asks for the
 *     timeout again after every dispatch (and after setting things up,
 *     since calls made outside a dispatch may queue work).
 *
 * Next to it runs the host's own periodic 5 ms timer, which must keep
 * firing while the round of requests (20 request/returns and an
 * emit/recall dialogue) is under way.
 *
 *   cc -std=c99 libevent_embed.c $(pkg-config --cflags --libs libevent) -lstagebus
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "stagebus.h"

#include "embed_demo.h"

/* --- the host side: libevent ------------------------------------------- */

struct host {
    struct event_base *base;
    struct event *readable; /* sb_loop_fd */
    struct event *timeout;  /* from sb_loop_timeout_ms */
    struct event *tick;     /* the host's own 5 ms timer */
    struct event *deadline; /* gives up after 10 s */
    struct demo *demo;
};

/* Arms (or disarms) the host timer from the loop's next deadline. */
static void rearm(struct host *h) {
    int64_t ms = sb_loop_timeout_ms(h->demo->lp);
    if (ms < 0) {
        event_del(h->timeout);
        return;
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_base_update_cache_time(h->base); /* measure from now, not the cached time */
    evtimer_add(h->timeout, &tv);          /* re-adding reschedules */
}

static void dispatch(struct host *h) {
    demo_check(h->demo, sb_loop_dispatch(h->demo->lp), "dispatch");
    if (h->demo->finished != 0) {
        event_base_loopbreak(h->base);
    } else {
        rearm(h);
    }
}

static void on_readable(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct host *h = arg;
    h->demo->fd_wakeups++;
    dispatch(h);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct host *h = arg;
    h->demo->timer_wakeups++;
    dispatch(h);
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct host *h = arg;
    h->demo->ticks++;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    struct host *h = arg;
    demo_fail(h->demo, "deadline", "the round took more than 10 s");
    event_base_loopbreak(h->base);
}

int main(void) {
    struct demo d;
    memset(&d, 0, sizeof d);
    struct host h;
    memset(&h, 0, sizeof h);
    h.demo = &d;

    /* libevent reads CLOCK_MONOTONIC_COARSE by default (a 4 ms tick on
     * many Linux kernels), so a 1 ms timeout would fire up to 4 ms late:
     * ask for the precise clock. */
    struct event_config *cfg = event_config_new();
    if (cfg != NULL) {
        event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
        h.base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    if (h.base == NULL) {
        fprintf(stderr, "event_base_new failed\n");
        return 1;
    }
    if (demo_start(&d)) {
        h.readable = event_new(h.base, sb_loop_fd(d.lp), EV_READ | EV_PERSIST, on_readable, &h);
        h.timeout = evtimer_new(h.base, on_timeout, &h);
        h.tick = event_new(h.base, -1, EV_PERSIST, on_tick, &h);
        h.deadline = evtimer_new(h.base, on_deadline, &h);
        struct timeval five_ms = {0, 5000}, ten_s = {10, 0};
        if (h.readable == NULL || h.timeout == NULL || h.tick == NULL || h.deadline == NULL ||
            event_add(h.readable, NULL) != 0 || event_add(h.tick, &five_ms) != 0 ||
            event_add(h.deadline, &ten_s) != 0) {
            demo_fail(&d, "libevent", "cannot add the events");
        } else {
            rearm(&h); /* setting up queued work: probably "now" */
            event_base_dispatch(h.base);
        }
    }
    int rc = demo_report(&d, "libevent");

    demo_free(&d);
    if (h.readable) event_free(h.readable);
    if (h.timeout) event_free(h.timeout);
    if (h.tick) event_free(h.tick);
    if (h.deadline) event_free(h.deadline);
    event_base_free(h.base);
    return rc;
}
