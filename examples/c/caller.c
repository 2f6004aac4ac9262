/*
 * caller.c: uses the "Greeter" session of service.c through a broker.
 *
 *   caller ADDRESS           e.g.  caller tcp://127.0.0.1:7000
 *
 * Connects, subscribes to "Greeter" and runs five steps, one after the
 * other, printing a transcript:
 *
 *   hello    request / return
 *   count    request / three emits / return
 *   ask      request / emit "question" / recall "answer" / return
 *   slow     request, cancelled by a timer 100 ms later; no response
 *            may arrive afterwards (the service prints its on_cancel)
 *   nosuch   a method the session does not have: an error response
 *            with the code no_such_method
 *
 * Exits 0 when every step went as expected, 1 when one did not, 3 when
 * the whole run took more than 10 seconds.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stagebus.h"

enum step { STEP_HELLO, STEP_COUNT, STEP_ASK, STEP_SLOW, STEP_NOSUCH, STEP_DONE };

static const char *const STEP_NAMES[] = {"hello", "count", "ask", "slow", "nosuch", "done"};

struct caller {
    sb_loop *lp;
    sb_client *client;
    sb_remote *greeter;
    sb_request *req; /* the request of the current step */
    enum step step;
    int passed;    /* steps that went as expected */
    int emits;     /* emits seen by `count` */
    int exit_code; /* -1 while running */
};

#if defined(__GNUC__)
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#endif

static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static void finish(struct caller *c, int code) {
    if (c->exit_code < 0) {
        c->exit_code = code;
    }
    sb_loop_stop(c->lp);
}

static void failed(struct caller *c, const char *why) {
    say("FAILED in step %s: %s", STEP_NAMES[c->step], why);
    finish(c, 1);
}

/* Copies the string arg `key` into `buf`; "" when it is missing. */
static void text_arg(const sb_args *args, const char *key, char *buf, size_t cap) {
    const char *p = "";
    size_t len = 0;
    sb_args_get_string(args, key, &p, &len);
    if (len >= cap) {
        len = cap - 1;
    }
    memcpy(buf, p, len);
    buf[len] = '\0';
}

static void start_step(struct caller *c);

/* Moves on from a timer rather than from inside a response handler, so
 * that each step starts from a clean stack. */
static void next_step_now(void *user, sb_loop *lp) {
    (void)lp;
    start_step(user);
}

static void step_passed(struct caller *c) {
    c->passed++;
    c->step++;
    uint64_t timer;
    if (sb_loop_add_timer(c->lp, 0, next_step_now, c, NULL, &timer) != SB_OK) {
        failed(c, sb_last_error());
    }
}

/* A response that no step expects: an error where a return should be,
 * or anything at all for the cancelled `slow`. */
static int32_t unexpected(void *user, const sb_ctx *ctx) {
    struct caller *c = user;
    const sb_response *rsp = sb_ctx_rsp(ctx);
    char why[512];
    snprintf(why, sizeof why, "unexpected '%s' response (%s: %s)", sb_response_kind(rsp),
             sb_strerror(sb_response_error(rsp)), sb_response_message(rsp));
    failed(c, why);
    return SB_OK;
}

/* --- hello ------------------------------------------------------------ */

static int32_t hello_returned(void *user, const sb_ctx *ctx) {
    struct caller *c = user;
    char greeting[256];
    text_arg(sb_ctx_args(ctx), "greeting", greeting, sizeof greeting);
    say("hello <- return greeting=\"%s\"", greeting);
    if (strcmp(greeting, "Hello, caller!") != 0) {
        failed(c, "wrong greeting");
    } else {
        step_passed(c);
    }
    return SB_OK;
}

/* --- count ------------------------------------------------------------ */

static int32_t count_emitted(void *user, const sb_ctx *ctx) {
    struct caller *c = user;
    int64_t i = 0;
    sb_args_get_int(sb_ctx_args(ctx), "i", &i);
    c->emits++;
    say("count <- emit i=%" PRId64, i);
    if (i != c->emits) {
        failed(c, "emits out of order");
    }
    return SB_OK;
}

static int32_t count_returned(void *user, const sb_ctx *ctx) {
    struct caller *c = user;
    int64_t total = -1;
    sb_args_get_int(sb_ctx_args(ctx), "total", &total);
    say("count <- return total=%" PRId64 " after %d emits", total, c->emits);
    if (total != 3 || c->emits != 3) {
        failed(c, "expected three emits, then total=3");
    } else {
        step_passed(c);
    }
    return SB_OK;
}

/* --- ask ---------------------------------------------------------------- */

static int32_t ask_questioned(void *user, const sb_ctx *ctx) {
    struct caller *c = user;
    char question[256];
    text_arg(sb_ctx_args(ctx), "question", question, sizeof question);
    say("ask <- emit question=\"%s\"", question);
    /* Answer inside the same request: the callee's `answer` runs and
     * sees the same request (and its data) as `ask` did. */
    sb_args *a = sb_args_new();
    sb_args_set_string(a, "name", "caller");
    sb_status st = sb_response_recall(sb_ctx_rsp(ctx), "answer", a);
    sb_args_free(a);
    if (st != SB_OK) {
        failed(c, sb_last_error());
    } else {
        say("ask -> recall answer name=\"caller\"");
    }
    return SB_OK;
}

static int32_t ask_returned(void *user, const sb_ctx *ctx) {
    struct caller *c = user;
    char reply[256];
    text_arg(sb_ctx_args(ctx), "reply", reply, sizeof reply);
    say("ask <- return reply=\"%s\"", reply);
    if (strcmp(reply, "Nice to meet you, caller.") != 0) {
        failed(c, "wrong reply");
    } else {
        step_passed(c);
    }
    return SB_OK;
}

/* --- slow --------------------------------------------------------------- */

static void slow_quiet(void *user, sb_loop *lp) {
    (void)lp;
    struct caller *c = user;
    say("slow: no response after the cancel, as expected");
    step_passed(c);
}

static void slow_cancel(void *user, sb_loop *lp) {
    (void)lp;
    struct caller *c = user;
    int was_open = sb_request_cancel(c->req);
    say("slow -> cancel after 100 ms (the request was %s)", was_open ? "open" : "closed");
    if (!was_open) {
        failed(c, "the slow request ended before the cancel");
        return;
    }
    /* Give a stray response the time to arrive (it must not). */
    uint64_t timer;
    sb_loop_add_timer(c->lp, 100, slow_quiet, c, NULL, &timer);
}

/* --- nosuch ------------------------------------------------------------- */

static int32_t nosuch_failed(void *user, const sb_ctx *ctx) {
    struct caller *c = user;
    const sb_response *rsp = sb_ctx_rsp(ctx);
    sb_status code = sb_response_error(rsp);
    say("nosuch <- error %s: %s", sb_strerror(code), sb_response_message(rsp));
    if (code != SB_NO_SUCH_METHOD || !sb_response_is_final(rsp)) {
        failed(c, "expected a final no_such_method error");
    } else {
        step_passed(c);
    }
    return SB_OK;
}

/* --- the steps ------------------------------------------------------------ */

static void start_step(struct caller *c) {
    if (c->exit_code >= 0) {
        return;
    }
    sb_request_free(c->req); /* the previous step's, long ended */
    c->req = NULL;
    if (c->step == STEP_DONE) {
        say("caller: %d of %d steps passed", c->passed, (int)STEP_DONE);
        finish(c, c->passed == (int)STEP_DONE ? 0 : 1);
        return;
    }

    const char *method = STEP_NAMES[c->step];
    sb_request_builder *b = sb_request_to_remote(c->greeter, method);
    if (b == NULL) {
        failed(c, sb_last_error());
        return;
    }
    sb_args *args = sb_args_new();
    sb_status st = SB_OK;
    switch (c->step) {
    case STEP_HELLO:
        sb_args_set_string(args, "name", "caller");
        st = sb_request_builder_on(b, "return", hello_returned, c, NULL);
        break;
    case STEP_COUNT:
        sb_args_set_int(args, "n", 3);
        st = sb_request_builder_on(b, "emit", count_emitted, c, NULL);
        if (st == SB_OK) {
            st = sb_request_builder_on(b, "return", count_returned, c, NULL);
        }
        break;
    case STEP_ASK:
        st = sb_request_builder_on(b, "question", ask_questioned, c, NULL);
        if (st == SB_OK) {
            st = sb_request_builder_on(b, "return", ask_returned, c, NULL);
        }
        break;
    case STEP_SLOW:
        break; /* any response is unexpected: the fallback below */
    case STEP_NOSUCH:
        st = sb_request_builder_on(b, "error", nosuch_failed, c, NULL);
        break;
    case STEP_DONE:
        break;
    }
    if (st == SB_OK) {
        st = sb_request_builder_args(b, args);
    }
    if (st == SB_OK) {
        /* Everything not mapped above (an error, a stray emit) fails the
         * step. */
        st = sb_request_builder_fallback(b, unexpected, c, NULL);
    }
    if (st == SB_OK && c->step != STEP_SLOW) {
        /* A guarantee of a final answer even if the service hangs. */
        st = sb_request_builder_timeout_ms(b, 5000);
    }
    sb_args_free(args);
    if (st != SB_OK) {
        sb_request_builder_free(b);
        failed(c, sb_last_error());
        return;
    }
    st = sb_request_send(b, &c->req); /* consumes the builder */
    if (st != SB_OK) {
        failed(c, sb_last_error());
        return;
    }
    say("%s -> request %" PRIu64, method, sb_request_id(c->req));
    if (c->step == STEP_SLOW) {
        uint64_t timer;
        if (sb_loop_add_timer(c->lp, 100, slow_cancel, c, NULL, &timer) != SB_OK) {
            failed(c, sb_last_error());
        }
    }
}

/* --- connection ----------------------------------------------------------- */

static void connected(void *user, sb_status st, uint64_t conn, const char *message) {
    struct caller *c = user;
    if (st != SB_OK) {
        say("caller: cannot connect: %s: %s", sb_strerror(st), message);
        finish(c, 1);
        return;
    }
    say("connected (connection %" PRIu64 ")", conn);
}

static void subscribed(void *user, sb_status st, sb_remote *remote, const char *message) {
    struct caller *c = user;
    if (st != SB_OK) {
        say("caller: cannot subscribe to Greeter: %s: %s", sb_strerror(st), message);
        finish(c, 1);
        return;
    }
    c->greeter = remote; /* owned: freed at the end */
    say("subscribed to Greeter");
    start_step(c);
}

static void watchdog(void *user, sb_loop *lp) {
    (void)lp;
    struct caller *c = user;
    say("caller: timed out in step %s", STEP_NAMES[c->step]);
    finish(c, 3);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s BROKER-ADDRESS\n", argv[0]);
        return 2;
    }
    struct caller c;
    memset(&c, 0, sizeof c);
    c.exit_code = -1;
    c.step = STEP_HELLO;

    sb_status st = sb_loop_new(&c.lp);
    if (st != SB_OK) {
        fprintf(stderr, "caller: %s: %s\n", sb_strerror(st), sb_last_error());
        return 1;
    }
    uint64_t timer;
    /* Operations may start before the connection is up: they queue. */
    if ((st = sb_client_connect(c.lp, argv[1], NULL, connected, &c, NULL, &c.client)) != SB_OK ||
        (st = sb_remote_subscribe(c.client, "Greeter", subscribed, &c, NULL)) != SB_OK ||
        (st = sb_loop_add_timer(c.lp, 10000, watchdog, &c, NULL, &timer)) != SB_OK ||
        (st = sb_loop_run(c.lp)) != SB_OK) {
        fprintf(stderr, "caller: %s: %s\n", sb_strerror(st), sb_last_error());
        c.exit_code = 1;
    }

    sb_request_free(c.req);
    sb_remote_free(c.greeter);
    sb_client_free(c.client);
    sb_loop_free(c.lp);
    return c.exit_code < 0 ? 1 : c.exit_code;
}
