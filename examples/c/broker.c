/*
 * broker.c: a stagebus broker as a program.
 *
 *   broker ADDRESS...        e.g.  broker tcp://127.0.0.1:0 unix:/tmp/sb.sock
 *
 * Listens on every ADDRESS (port 0 picks a free one), prints one line
 * "listening on ADDR" per address with the real port (flushed, so a
 * parent process can read it), and serves until SIGINT or SIGTERM.
 *
 * Signals: a handler may not call into the library (nothing in it is
 * async-signal-safe). Instead the loop takes SIGINT and SIGTERM itself
 * (sb_loop_on_unix_signals: blocked, then read from a signalfd), and
 * runs stop_on_signal on its own thread when one arrives, where any
 * call is allowed. No thread of ours, and none of the library's.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "stagebus.h"

/* Runs on the loop thread, inside sb_loop_run; `user` is where the
 * signal's number goes. */
static void stop_on_signal(void *user, sb_loop *lp, int32_t signal) {
    *(int32_t *)user = signal;
    sb_loop_stop(lp);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s ADDRESS...   (e.g. tcp://127.0.0.1:0)\n", argv[0]);
        return 2;
    }

    sb_loop *lp = NULL;
    sb_status st = sb_loop_new(&lp);
    if (st != SB_OK) {
        fprintf(stderr, "broker: %s: %s\n", sb_strerror(st), sb_last_error());
        return 1;
    }

    /* First, before any thread exists (threads started later inherit the
     * mask; the library starts none), and before the addresses are
     * printed: a parent that reads them may signal at once. */
    const int32_t stop_signals[] = {SIGINT, SIGTERM};
    int32_t signo = 0;
    st = sb_loop_on_unix_signals(lp, stop_signals, 2, stop_on_signal, &signo, NULL);
    if (st != SB_OK) {
        fprintf(stderr, "broker: cannot watch SIGINT/SIGTERM: %s\n", sb_last_error());
        sb_loop_free(lp);
        return 1;
    }

    sb_broker *broker = NULL;
    st = sb_broker_new(lp, (const char *const *)(argv + 1), (size_t)(argc - 1), NULL, &broker);
    if (st != SB_OK) {
        fprintf(stderr, "broker: cannot listen: %s: %s\n", sb_strerror(st), sb_last_error());
        sb_loop_free(lp);
        return 1;
    }

    size_t n = sb_broker_address_count(broker);
    for (size_t i = 0; i < n; i++) {
        char addr[512];
        if (sb_broker_address(broker, i, addr, sizeof addr) == SB_OK) {
            printf("listening on %s\n", addr);
        }
    }
    fflush(stdout);

    st = sb_loop_run(lp);
    int rc = 0;
    if (st != SB_OK) {
        fprintf(stderr, "broker: the loop failed: %s: %s\n", sb_strerror(st), sb_last_error());
        rc = 1;
    }

    if (signo != 0) {
        printf("stopping on signal %d\n", (int)signo);
        fflush(stdout);
    }

    sb_broker_free(broker);
    sb_loop_free(lp);
    return rc;
}
