/*
 * libuv_fds.c: stagebus inside a libuv loop, fd by fd.
 *
 * A broker, a service and a caller share one sb_loop, and nobody calls
 * sb_loop_run: libuv drives it, watching every fd of the loop with a
 * uv_poll_t of its own (libuv's way to watch an fd it does not own). The
 * host
 *
 *   - gives sb_loop_watch_fds() a function that starts, changes or closes
 *     one uv_poll_t per fd as the loop tells it (SB_FD_READ, SB_FD_WRITE,
 *     0 to stop),
 *   - calls sb_loop_dispatch_fd() when one of them fires,
 *   - arms a uv_timer_t from sb_loop_timeout_ms() (-1: none, 0: at once,
 *     else whole milliseconds) and calls sb_loop_dispatch() when it fires,
 *     asking for the timeout again after every dispatch.
 *
 * Next to it runs the host's own periodic 5 ms timer, which must keep
 * firing while the round of requests is under way.
 *
 *   cc -std=c99 libuv_fds.c -luv -lstagebus
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "stagebus.h"

#include "embed_demo.h"

/* --- the host side: libuv, one uv_poll_t per fd ---------------------------- */

#define MAX_FDS 1024 /* the example's fds are few and small */

struct host {
    uv_loop_t loop;
    uv_poll_t *polls[MAX_FDS]; /* the poll of each watched fd, or NULL */
    uv_timer_t timeout;        /* from sb_loop_timeout_ms */
    uv_timer_t tick;           /* the host's own 5 ms timer */
    uv_timer_t deadline;       /* gives up after 10 s */
    unsigned long watch_changes;
    struct demo *demo;
};

static void on_timeout(uv_timer_t *t);

/* Arms (or disarms) the host timer from the loop's next deadline. */
static void rearm(struct host *h) {
    uv_timer_stop(&h->timeout);
    int64_t ms = sb_loop_timeout_ms(h->demo->lp);
    if (ms >= 0) {
        uv_update_time(&h->loop); /* measure from now, not the loop's cached time */
        uv_timer_start(&h->timeout, on_timeout, (uint64_t)ms, 0);
    }
}

static void after_dispatch(struct host *h, sb_status st, const char *what) {
    demo_check(h->demo, st, what);
    if (h->demo->finished != 0) {
        uv_stop(&h->loop);
    } else {
        rearm(h);
    }
}

static void on_fd(uv_poll_t *p, int status, int events) {
    struct host *h = p->data;
    int fd = -1;
    uv_fileno((uv_handle_t *)p, &fd);
    /* An error (the peer gone, say) is for the loop to find by reading. */
    uint32_t ready = (status < 0 || (events & (UV_READABLE | UV_DISCONNECT))) ? SB_FD_READ : 0;
    if (events & UV_WRITABLE) {
        ready |= SB_FD_WRITE;
    }
    h->demo->fd_wakeups++;
    after_dispatch(h, sb_loop_dispatch_fd(h->demo->lp, fd, ready), "dispatch_fd");
}

static void free_poll(uv_handle_t *handle) { free(handle); }

/* sb_watch_fn: the loop's fds as they come, change and go. A closed poll
 * is freed by libuv's close callback; a new one is made for an fd told
 * again, even if the number is reused at once. */
static void watch(void *user, int32_t fd, uint32_t events) {
    struct host *h = user;
    if (fd < 0 || fd >= MAX_FDS) {
        demo_fail(h->demo, "watch", "an fd beyond the example's table");
        return;
    }
    h->watch_changes++;
    if (events == 0) {
        if (h->polls[fd] != NULL) {
            uv_close((uv_handle_t *)h->polls[fd], free_poll);
            h->polls[fd] = NULL;
        }
        return;
    }
    if (h->polls[fd] == NULL) {
        uv_poll_t *p = malloc(sizeof *p);
        if (p == NULL || uv_poll_init(&h->loop, p, fd) != 0) {
            free(p);
            demo_fail(h->demo, "watch", "cannot make a uv_poll_t");
            return;
        }
        p->data = h;
        h->polls[fd] = p;
    }
    int mask = ((events & SB_FD_READ) ? UV_READABLE | UV_DISCONNECT : 0) |
               ((events & SB_FD_WRITE) ? UV_WRITABLE : 0);
    uv_poll_start(h->polls[fd], mask, on_fd);
}

static void on_timeout(uv_timer_t *t) {
    struct host *h = t->data;
    h->demo->timer_wakeups++;
    after_dispatch(h, sb_loop_dispatch(h->demo->lp), "dispatch");
}

static void on_tick(uv_timer_t *t) {
    struct host *h = t->data;
    h->demo->ticks++;
}

static void on_deadline(uv_timer_t *t) {
    struct host *h = t->data;
    demo_fail(h->demo, "deadline", "the round took more than 10 s");
    uv_stop(&h->loop);
}

int main(void) {
    struct demo d;
    memset(&d, 0, sizeof d);
    static struct host h; /* the fd table is large for a stack */
    h.demo = &d;

    if (uv_loop_init(&h.loop) != 0) {
        fprintf(stderr, "uv_loop_init failed\n");
        return 1;
    }
    uv_timer_init(&h.loop, &h.timeout);
    uv_timer_init(&h.loop, &h.tick);
    uv_timer_init(&h.loop, &h.deadline);
    h.timeout.data = h.tick.data = h.deadline.data = &h;
    if (demo_start(&d) && demo_check(&d, sb_loop_watch_fds(d.lp, watch, &h, NULL), "watch_fds")) {
        uv_timer_start(&h.tick, on_tick, 5, 5);
        uv_timer_start(&h.deadline, on_deadline, 10000, 0);
        rearm(&h);
        uv_run(&h.loop, UV_RUN_DEFAULT);
        /* Every uv_poll_t is closed through the watch function. */
        demo_check(&d, sb_loop_unwatch_fds(d.lp), "unwatch_fds");
        for (int fd = 0; fd < MAX_FDS; fd++) {
            if (h.polls[fd] != NULL) {
                demo_fail(&d, "unwatch_fds", "an fd is still watched");
            }
        }
        printf("libuv-fds: %lu changes to the watched fds\n", h.watch_changes);
    }
    int rc = demo_report(&d, "libuv-fds");

    demo_free(&d);
    uv_close((uv_handle_t *)&h.timeout, NULL);
    uv_close((uv_handle_t *)&h.tick, NULL);
    uv_close((uv_handle_t *)&h.deadline, NULL);
    uv_run(&h.loop, UV_RUN_DEFAULT); /* the close callbacks */
    if (uv_loop_close(&h.loop) != 0) {
        printf("libuv-fds: FAILED: handles left open\n");
        rc = 1;
    }
    return rc;
}
