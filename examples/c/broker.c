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
 * async-signal-safe). Instead SIGINT and SIGTERM are blocked in every
 * thread and a small thread waits for them with sigwait(); when one
 * arrives it posts sb_loop_stop to the loop through an sb_waker, the one
 * object that may be used from another thread.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stagebus.h"

struct signal_watch {
    sigset_t set;
    sb_waker *waker;
    int signo; /* written by the watcher thread, read after the join */
};

/* Runs on the loop thread, inside sb_loop_run. */
static void stop_loop(void *user, sb_loop *lp) {
    (void)user;
    sb_loop_stop(lp);
}

static void *watch_signals(void *arg) {
    struct signal_watch *w = arg;
    int sig = 0;
    if (sigwait(&w->set, &sig) == 0) {
        w->signo = sig;
        if (sb_waker_post(w->waker, stop_loop, NULL, NULL) != SB_OK) {
            fprintf(stderr, "broker: cannot post the stop: %s\n", sb_last_error());
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s ADDRESS...   (e.g. tcp://127.0.0.1:0)\n", argv[0]);
        return 2;
    }

    /* Block the signals before any thread exists, so that every thread
     * (the library's, if any, and ours) inherits the mask. */
    struct signal_watch watch;
    memset(&watch, 0, sizeof watch);
    sigemptyset(&watch.set);
    sigaddset(&watch.set, SIGINT);
    sigaddset(&watch.set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &watch.set, NULL) != 0) {
        fprintf(stderr, "broker: pthread_sigmask failed\n");
        return 1;
    }

    sb_loop *lp = NULL;
    sb_status st = sb_loop_new(&lp);
    if (st != SB_OK) {
        fprintf(stderr, "broker: %s: %s\n", sb_strerror(st), sb_last_error());
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

    watch.waker = sb_loop_waker(lp);
    pthread_t watcher;
    if (watch.waker == NULL || pthread_create(&watcher, NULL, watch_signals, &watch) != 0) {
        fprintf(stderr, "broker: cannot start the signal watcher\n");
        sb_waker_free(watch.waker);
        sb_broker_free(broker);
        sb_loop_free(lp);
        return 1;
    }

    st = sb_loop_run(lp);
    int rc = 0;
    if (st != SB_OK) {
        fprintf(stderr, "broker: the loop failed: %s: %s\n", sb_strerror(st), sb_last_error());
        rc = 1;
    }

    /* If the loop ended for another reason the watcher still waits:
     * wake it with one of its own signals (harmless if it is gone). */
    pthread_kill(watcher, SIGTERM);
    pthread_join(watcher, NULL);
    if (watch.signo != 0) {
        printf("stopping on signal %d\n", watch.signo);
        fflush(stdout);
    }

    sb_waker_free(watch.waker);
    sb_broker_free(broker);
    sb_loop_free(lp);
    return rc;
}
