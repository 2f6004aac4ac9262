/*
 * service.c: publishes a stage "Greeter" on a broker.
 *
 *   service ADDRESS          e.g.  service tcp://127.0.0.1:7000
 *
 * Methods:
 *   hello {name}   returns {greeting: "Hello, NAME!"}
 *   count {n}      emits n times {i: 1..n}, then returns {total: n}
 *   ask            emits "question" {question}, waits for the caller to
 *                  recall "answer" {name} in the same request, then
 *                  returns {reply}
 *   slow           never answers; prints when the caller cancels it
 *
 * Prints "ready" (flushed) once the broker has accepted the session, a
 * line per request served, and runs until SIGINT or SIGTERM (taken on
 * the loop: see broker.c).
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stagebus.h"

struct service {
    sb_loop *lp;
    int exit_code;
};

#if defined(__GNUC__)
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#endif

/* Prints one line and flushes it: a parent process may be reading. */
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

/* Copies the string arg `key` into `buf` (NUL-terminated), or `dflt`. */
static void text_arg(const sb_args *args, const char *key, const char *dflt, char *buf,
                     size_t cap) {
    const char *p = NULL;
    size_t len = 0;
    if (sb_args_get_string(args, key, &p, &len) != SB_OK) {
        p = dflt;
        len = strlen(dflt);
    }
    if (len >= cap) {
        len = cap - 1;
    }
    memcpy(buf, p, len);
    buf[len] = '\0';
}

/* Answers with one string arg. */
static int32_t return_text(const sb_served *req, const char *key, const char *value) {
    sb_args *out = sb_args_new();
    sb_status st = sb_args_set_string(out, key, value);
    if (st == SB_OK) {
        st = sb_served_return(req, NULL, out);
    }
    sb_args_free(out);
    return (int32_t)st;
}

/* --- methods ------------------------------------------------------- */

static int32_t on_hello(void *user, const sb_ctx *ctx) {
    (void)user;
    char name[128], greeting[160];
    text_arg(sb_ctx_args(ctx), "name", "world", name, sizeof name);
    snprintf(greeting, sizeof greeting, "Hello, %s!", name);
    say("hello: greeting %s (request %" PRIu64 ")", name, sb_served_id(sb_ctx_req(ctx)));
    return return_text(sb_ctx_req(ctx), "greeting", greeting);
}

static int32_t on_count(void *user, const sb_ctx *ctx) {
    (void)user;
    const sb_served *req = sb_ctx_req(ctx);
    int64_t n = 3;
    sb_args_get_int(sb_ctx_args(ctx), "n", &n); /* optional: n stays 3 */
    if (n < 0 || n > 1000) {
        /* A failure of our own making: the caller gets this code and text. */
        sb_served_fail(req, SB_INVALID_ARGUMENT, "n must be between 0 and 1000");
        return SB_OK;
    }
    sb_args *out = sb_args_new();
    sb_status st = SB_OK;
    for (int64_t i = 1; i <= n && st == SB_OK; i++) {
        st = sb_args_set_int(out, "i", i);
        if (st == SB_OK) {
            st = sb_served_emit(req, NULL, out); /* NULL kind: "emit" */
        }
    }
    sb_args_free(out);
    if (st != SB_OK) {
        return (int32_t)st; /* the library fails the request with it */
    }
    out = sb_args_new();
    sb_args_set_int(out, "total", n);
    st = sb_served_return(req, NULL, out);
    sb_args_free(out);
    say("count: emitted %" PRId64 " times, returned", n);
    return (int32_t)st;
}

/* The marker that `ask` leaves in the request's callee data: `answer`
 * accepts only recalls of an `ask`. */
static const char ASKED[] = "asked";

static int32_t on_ask(void *user, const sb_ctx *ctx) {
    (void)user;
    const sb_served *req = sb_ctx_req(ctx);
    sb_status st = sb_served_set_data(req, (void *)ASKED, NULL);
    if (st != SB_OK) {
        return (int32_t)st;
    }
    sb_args *q = sb_args_new();
    sb_args_set_string(q, "question", "What is your name?");
    st = sb_served_emit(req, "question", q);
    sb_args_free(q);
    say("ask: asked request %" PRIu64 " for a name", sb_served_id(req));
    return (int32_t)st; /* no return yet: the recall "answer" finishes it */
}

/* Runs when the caller recalls "answer" on an `ask` request: same
 * request, same callee data. */
static int32_t on_answer(void *user, const sb_ctx *ctx) {
    (void)user;
    const sb_served *req = sb_ctx_req(ctx);
    if (sb_served_data(req) != (void *)ASKED) {
        sb_served_fail(req, SB_INVALID_STATE, "answer is a recall of ask");
        return SB_OK;
    }
    char name[128], reply[200];
    text_arg(sb_ctx_args(ctx), "name", "stranger", name, sizeof name);
    snprintf(reply, sizeof reply, "Nice to meet you, %s.", name);
    say("ask: request %" PRIu64 " answered %s", sb_served_id(req), name);
    return return_text(req, "reply", reply);
}

struct slow {
    uint64_t id;
    sb_served *kept;
};

static void slow_cancelled(void *user) {
    struct slow *s = user;
    say("slow: on_cancel ran (request %" PRIu64 ")", s->id);
}

static void slow_free(void *user) {
    struct slow *s = user;
    sb_served_free(s->kept);
    free(s);
}

static int32_t on_slow(void *user, const sb_ctx *ctx) {
    (void)user;
    const sb_served *req = sb_ctx_req(ctx);
    struct slow *s = malloc(sizeof *s);
    if (s == NULL) {
        return SB_HANDLER_FAILED;
    }
    s->id = sb_served_id(req);
    /* Kept: a request its handler neither answers nor keeps ends at once
     * with SB_UNANSWERED for the caller. */
    s->kept = sb_served_ref(req);
    say("slow: holding request %" PRIu64 " until it is cancelled", s->id);
    /* slow_free runs once when the request ends, cancelled or not, and
     * lets go of the reference. */
    return (int32_t)sb_served_on_cancel(req, slow_cancelled, s, slow_free);
}

/* --- connection ------------------------------------------------------ */

static void quit(struct service *svc, int code) {
    svc->exit_code = code;
    sb_loop_stop(svc->lp);
}

static void connected(void *user, sb_status st, uint64_t conn, const char *message) {
    struct service *svc = user;
    if (st != SB_OK) {
        fprintf(stderr, "service: cannot connect: %s: %s\n", sb_strerror(st), message);
        quit(svc, 1);
        return;
    }
    say("connected (connection %" PRIu64 ")", conn);
}

static void published(void *user, sb_status st, const char *message) {
    struct service *svc = user;
    if (st != SB_OK) {
        fprintf(stderr, "service: cannot publish: %s: %s\n", sb_strerror(st), message);
        quit(svc, 1);
        return;
    }
    say("ready");
}

static void disconnected(void *user, sb_status st, const char *message) {
    struct service *svc = user;
    fprintf(stderr, "service: lost the broker: %s: %s\n", sb_strerror(st), message);
    quit(svc, 1);
}

/* --- signals (see broker.c) ----------------------------------------- */

/* Runs on the loop thread; `user` is where the signal's number goes. */
static void stop_on_signal(void *user, sb_loop *lp, int32_t signal) {
    *(int32_t *)user = signal;
    sb_loop_stop(lp);
}

static int check(sb_status st, const char *what) {
    if (st != SB_OK) {
        fprintf(stderr, "service: %s: %s: %s\n", what, sb_strerror(st), sb_last_error());
        return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s BROKER-ADDRESS\n", argv[0]);
        return 2;
    }
    struct service svc = {NULL, 0};
    sb_client *client = NULL;
    sb_stage *stage = NULL;
    const int32_t stop_signals[] = {SIGINT, SIGTERM};
    int32_t signo = 0;

    if (!check(sb_loop_new(&svc.lp), "loop")) {
        return 1;
    }
    if (!check(sb_loop_on_unix_signals(svc.lp, stop_signals, 2, stop_on_signal, &signo, NULL),
               "watch SIGINT/SIGTERM")) {
        sb_loop_free(svc.lp);
        return 1;
    }
    if (!check(sb_client_connect(svc.lp, argv[1], NULL, connected, &svc, NULL, &client),
               "connect") ||
        !check(sb_client_on_disconnect(client, disconnected, &svc, NULL), "on_disconnect") ||
        !check(sb_stage_new(svc.lp, "Greeter", &stage), "stage") ||
        !check(sb_stage_on(stage, "hello", on_hello, NULL, NULL), "hello") ||
        !check(sb_stage_on(stage, "count", on_count, NULL, NULL), "count") ||
        !check(sb_stage_on(stage, "ask", on_ask, NULL, NULL), "ask") ||
        !check(sb_stage_on(stage, "answer", on_answer, NULL, NULL), "answer") ||
        /* Reached by a recall inside an `ask` only, never requested. */
        !check(sb_stage_set_kind(stage, "answer", SB_HANDLER_RECALL_ONLY), "answer kind") ||
        !check(sb_stage_on(stage, "slow", on_slow, NULL, NULL), "slow")) {
        svc.exit_code = 1;
        goto out;
    }
    /* The methods callers may request. `answer` is left out on purpose:
     * it is recall-only, reached by a recall inside an `ask` request. */
    {
        const char *methods[] = {"hello", "count", "ask", "slow"};
        if (!check(sb_stage_publish(stage, client, "Greeter", methods, 4, published, &svc, NULL),
                   "publish")) {
            svc.exit_code = 1;
            goto out;
        }
    }

    if (!check(sb_loop_run(svc.lp), "run")) {
        svc.exit_code = 1;
    }

out:
    if (signo != 0) {
        say("stopping on signal %d", (int)signo);
    }
    sb_stage_free(stage);
    sb_client_free(client);
    sb_loop_free(svc.lp);
    return svc.exit_code;
}
