/*
 * libev_fds.c: stagebus inside a libev loop, fd by fd.
 *
 * The same round as libev_embed.c (a broker, a service and a caller on
 * one sb_loop, driven by libev alone), but libev watches every fd of the
 * loop itself instead of the one sb_loop_fd(), which saves the loop the
 * second wait of every wake-up. The host
 *
 *   - gives sb_loop_watch_fds() a function that starts, changes or stops
 *     one ev_io per fd as the loop tells it (SB_FD_READ, SB_FD_WRITE,
 *     0 to stop),
 *   - calls sb_loop_dispatch_fd() when one of them fires,
 *   - arms an ev_timer from sb_loop_timeout_ms() as libev_embed.c does,
 *     and calls sb_loop_dispatch() when it fires.
 *
 * Next to it runs the host's own periodic 5 ms ev_timer, which must
 * keep firing while the round is under way.
 *
 *   cc -std=c99 libev_fds.c -lev -lstagebus
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

/* --- the host side: libev, one ev_io per fd ------------------------------ */

#define MAX_FDS 1024 /* the example's fds are few and small */

struct host;

struct fd_watch {
    ev_io io;
    struct host *host;
    int active;
};

struct host {
    struct ev_loop *loop;
    struct fd_watch fds[MAX_FDS];
    ev_timer timeout;  /* from sb_loop_timeout_ms */
    ev_timer tick;     /* the host's own 5 ms timer */
    ev_timer deadline; /* gives up after 10 s */
    unsigned long watch_changes;
    struct demo *demo;
};

/* Arms (or disarms) the host timer from the loop's next deadline. */
static void rearm(struct host *h) {
    ev_timer_stop(h->loop, &h->timeout);
    int64_t ms = sb_loop_timeout_ms(h->demo->lp);
    if (ms < 0) {
        return;
    }
    ev_now_update(h->loop);
    ev_timer_set(&h->timeout, (ev_tstamp)ms / 1000.0, 0.0);
    ev_timer_start(h->loop, &h->timeout);
}

static void after_dispatch(struct host *h, sb_status st, const char *what) {
    demo_check(h->demo, st, what);
    if (h->demo->finished != 0) {
        ev_break(h->loop, EVBREAK_ALL);
    } else {
        rearm(h);
    }
}

static void on_fd(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    struct fd_watch *fw = w->data;
    struct host *h = fw->host;
    uint32_t events = ((revents & EV_READ) ? SB_FD_READ : 0) | ((revents & EV_WRITE) ? SB_FD_WRITE : 0);
    h->demo->fd_wakeups++;
    after_dispatch(h, sb_loop_dispatch_fd(h->demo->lp, w->fd, events), "dispatch_fd");
}

/* sb_watch_fn: the loop's fds as they come, change and go. */
static void watch(void *user, int32_t fd, uint32_t events) {
    struct host *h = user;
    if (fd < 0 || fd >= MAX_FDS) {
        demo_fail(h->demo, "watch", "an fd beyond the example's table");
        return;
    }
    struct fd_watch *fw = &h->fds[fd];
    h->watch_changes++;
    if (fw->active) {
        ev_io_stop(h->loop, &fw->io);
        fw->active = 0;
    }
    if (events != 0) {
        int mask = ((events & SB_FD_READ) ? EV_READ : 0) | ((events & SB_FD_WRITE) ? EV_WRITE : 0);
        ev_io_init(&fw->io, on_fd, fd, mask);
        fw->io.data = fw;
        fw->host = h;
        ev_io_start(h->loop, &fw->io);
        fw->active = 1;
    }
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    struct host *h = w->data;
    h->demo->timer_wakeups++;
    after_dispatch(h, sb_loop_dispatch(h->demo->lp), "dispatch");
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
    static struct host h; /* the fd table is large for a stack */
    h.demo = &d;

    h.loop = ev_loop_new(EVFLAG_AUTO);
    if (h.loop == NULL) {
        fprintf(stderr, "ev_loop_new failed\n");
        return 1;
    }
    if (demo_start(&d) && demo_check(&d, sb_loop_watch_fds(d.lp, watch, &h, NULL), "watch_fds")) {
        ev_timer_init(&h.timeout, on_timeout, 0.0, 0.0);
        ev_timer_init(&h.tick, on_tick, 0.005, 0.005);
        ev_timer_init(&h.deadline, on_deadline, 10.0, 0.0);
        h.timeout.data = h.tick.data = h.deadline.data = &h;
        ev_timer_start(h.loop, &h.tick);
        ev_timer_start(h.loop, &h.deadline);
        rearm(&h);
        ev_run(h.loop, 0);
        ev_timer_stop(h.loop, &h.timeout);
        ev_timer_stop(h.loop, &h.tick);
        ev_timer_stop(h.loop, &h.deadline);
        /* Every ev_io is stopped through the watch function. */
        demo_check(&d, sb_loop_unwatch_fds(d.lp), "unwatch_fds");
        for (int fd = 0; fd < MAX_FDS; fd++) {
            if (h.fds[fd].active) {
                demo_fail(&d, "unwatch_fds", "an fd is still watched");
            }
        }
        printf("libev-fds: %lu changes to the watched fds\n", h.watch_changes);
    }
    int rc = demo_report(&d, "libev-fds");

    demo_free(&d);
    ev_loop_destroy(h.loop);
    return rc;
}
