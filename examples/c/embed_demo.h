/*
 * embed_demo.h: the stagebus side shared by the host-loop examples
 * (libevent_embed.c, libev_embed.c, glib_embed.c): a broker, a service and
 * a caller on one sb_loop, and the round of requests they run. Each
 * example adds only its host side: how its loop watches sb_loop_fd and
 * arms a timer from sb_loop_timeout_ms.
 *
 * Include it after <inttypes.h>, <stdio.h>, <stdlib.h>, <string.h>,
 * <time.h> and "stagebus.h".
 */
#ifndef STAGEBUS_EMBED_DEMO_H
#define STAGEBUS_EMBED_DEMO_H

/* --- the stagebus side: a broker, a service and a caller on one loop ---- */

#define CALLS 20 /* sequential hello requests in the round */

struct demo {
    sb_loop *lp;
    sb_broker *broker;
    sb_client *service_client;
    sb_client *caller_client;
    sb_stage *greeter;
    sb_remote *remote;
    sb_request *req;
    int calls;        /* hello requests answered */
    int dialogue;     /* question seen, recall sent, reply checked */
    int finished;     /* 0 running, 1 done, -1 failed */
    /* Counted by the host: */
    unsigned long ticks;          /* its own periodic timer */
    unsigned long fd_wakeups;     /* dispatches because the fd was readable */
    unsigned long timer_wakeups;  /* dispatches because the timeout expired */
    unsigned long ticks_at_start; /* ticks when the round began */
    unsigned long ticks_in_round;
    double started_ms, round_ms;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void demo_fail(struct demo *d, const char *what, const char *detail) {
    fprintf(stderr, "FAILED: %s: %s\n", what, detail);
    d->finished = -1;
}

static int demo_check(struct demo *d, sb_status st, const char *what) {
    if (st != SB_OK) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s: %s", sb_strerror(st), sb_last_error());
        demo_fail(d, what, detail);
        return 0;
    }
    return 1;
}

/* Answers `req` with the string arg `key` = `value`. */
static int32_t return_text(const sb_served *req, const char *key, const char *value) {
    sb_args *out = sb_args_new();
    sb_status st = sb_args_set_string(out, key, value);
    if (st == SB_OK) {
        st = sb_served_return(req, NULL, out);
    }
    sb_args_free(out);
    return (int32_t)st;
}

/* Reads the string arg `key` into `buf` ("" if missing). */
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

/* The service: Greeter.hello, Greeter.ask and its recall `answer`. */

static int32_t svc_hello(void *user, const sb_ctx *ctx) {
    (void)user;
    int64_t n = 0;
    sb_args_get_int(sb_ctx_args(ctx), "n", &n);
    char greeting[64];
    snprintf(greeting, sizeof greeting, "hello #%" PRId64, n);
    return return_text(sb_ctx_req(ctx), "greeting", greeting);
}

static int32_t svc_ask(void *user, const sb_ctx *ctx) {
    (void)user;
    sb_args *q = sb_args_new();
    sb_args_set_string(q, "question", "What is your name?");
    sb_status st = sb_served_emit(sb_ctx_req(ctx), "question", q);
    sb_args_free(q);
    return (int32_t)st;
}

static int32_t svc_answer(void *user, const sb_ctx *ctx) {
    (void)user;
    char name[64], reply[128];
    text_arg(sb_ctx_args(ctx), "name", name, sizeof name);
    snprintf(reply, sizeof reply, "Nice to meet you, %s.", name);
    return return_text(sb_ctx_req(ctx), "reply", reply);
}

/* The caller. */

static int32_t unexpected(void *user, const sb_ctx *ctx) {
    const sb_response *rsp = sb_ctx_rsp(ctx);
    char detail[512];
    snprintf(detail, sizeof detail, "'%s' (%s: %s)", sb_response_kind(rsp),
             sb_strerror(sb_response_error(rsp)), sb_response_message(rsp));
    demo_fail(user, "unexpected response", detail);
    return SB_OK;
}

/* Sends `method` to Greeter with `args`, handling `kind1` with `f1` and
 * `kind2` with `f2` (NULL: none); anything else is unexpected. */
static void demo_send(struct demo *d, const char *method, const sb_args *args, const char *kind1,
                      sb_handler_fn f1, const char *kind2, sb_handler_fn f2) {
    sb_request_free(d->req); /* the previous request, already answered */
    d->req = NULL;
    sb_request_builder *b = sb_request_to_remote(d->remote, method);
    if (b == NULL) {
        demo_fail(d, method, sb_last_error());
        return;
    }
    sb_status st = sb_request_builder_args(b, args);
    if (st == SB_OK) {
        st = sb_request_builder_on(b, kind1, f1, d, NULL);
    }
    if (st == SB_OK && kind2 != NULL) {
        st = sb_request_builder_on(b, kind2, f2, d, NULL);
    }
    if (st == SB_OK) {
        st = sb_request_builder_fallback(b, unexpected, d, NULL);
    }
    if (st == SB_OK) {
        st = sb_request_builder_timeout_ms(b, 5000);
    }
    if (st != SB_OK) {
        sb_request_builder_free(b);
        demo_check(d, st, method);
        return;
    }
    demo_check(d, sb_request_send(b, &d->req), method);
}

static int32_t asked(void *user, const sb_ctx *ctx);
static int32_t replied(void *user, const sb_ctx *ctx);
static int32_t greeted(void *user, const sb_ctx *ctx);

static void send_hello(void *user, sb_loop *lp) {
    (void)lp;
    struct demo *d = user;
    sb_args *args = sb_args_new();
    sb_args_set_int(args, "n", d->calls + 1);
    demo_send(d, "hello", args, "return", greeted, NULL, NULL);
    sb_args_free(args);
}

static void send_ask(void *user, sb_loop *lp) {
    (void)lp;
    demo_send(user, "ask", NULL, "question", asked, "return", replied);
}

static int32_t greeted(void *user, const sb_ctx *ctx) {
    struct demo *d = user;
    char greeting[64], expected[64];
    text_arg(sb_ctx_args(ctx), "greeting", greeting, sizeof greeting);
    snprintf(expected, sizeof expected, "hello #%d", d->calls + 1);
    if (strcmp(greeting, expected) != 0) {
        demo_fail(d, "wrong greeting", greeting);
        return SB_OK;
    }
    d->calls++;
    /* A 1 ms pause between requests (a library timer, so that the host
     * also wakes up for sb_loop_timeout_ms), then the next one. */
    uint64_t timer;
    demo_check(d, sb_loop_add_timer(d->lp, 1, d->calls < CALLS ? send_hello : send_ask, d, NULL,
                                    &timer),
               "timer");
    return SB_OK;
}

static int32_t asked(void *user, const sb_ctx *ctx) {
    struct demo *d = user;
    sb_args *a = sb_args_new();
    sb_args_set_string(a, "name", "host");
    if (demo_check(d, sb_response_recall(sb_ctx_rsp(ctx), "answer", a), "recall")) {
        d->dialogue = 2; /* question seen, answer recalled */
    }
    sb_args_free(a);
    return SB_OK;
}

static int32_t replied(void *user, const sb_ctx *ctx) {
    struct demo *d = user;
    char reply[128];
    text_arg(sb_ctx_args(ctx), "reply", reply, sizeof reply);
    if (d->dialogue != 2 || strcmp(reply, "Nice to meet you, host.") != 0) {
        demo_fail(d, "wrong reply", reply);
        return SB_OK;
    }
    d->dialogue = 3;
    d->ticks_in_round = d->ticks - d->ticks_at_start;
    d->round_ms = now_ms() - d->started_ms;
    d->finished = 1; /* the host stops after this dispatch */
    return SB_OK;
}

static void subscribed(void *user, sb_status st, sb_remote *remote, const char *message) {
    struct demo *d = user;
    if (st != SB_OK) {
        demo_fail(d, "subscribe", message);
        return;
    }
    d->remote = remote;
    d->ticks_at_start = d->ticks;
    d->started_ms = now_ms();
    send_hello(d, d->lp);
}

static void published(void *user, sb_status st, const char *message) {
    struct demo *d = user;
    if (st != SB_OK) {
        demo_fail(d, "publish", message);
        return;
    }
    demo_check(d, sb_remote_subscribe(d->caller_client, "Greeter", subscribed, d, NULL),
               "subscribe");
}

/* Sets everything up; the round runs as the host dispatches. */
static int demo_start(struct demo *d) {
    const char *listen[] = {"tcp://127.0.0.1:0"};
    char address[256];
    const char *methods[] = {"hello", "ask"};
    return demo_check(d, sb_loop_new(&d->lp), "loop") &&
           demo_check(d, sb_broker_new(d->lp, listen, 1, NULL, &d->broker), "broker") &&
           demo_check(d, sb_broker_address(d->broker, 0, address, sizeof address), "address") &&
           demo_check(d, sb_client_connect(d->lp, address, NULL, NULL, NULL, NULL,
                                           &d->service_client),
                      "connect") &&
           demo_check(d, sb_client_connect(d->lp, address, NULL, NULL, NULL, NULL,
                                           &d->caller_client),
                      "connect") &&
           demo_check(d, sb_stage_new(d->lp, "Greeter", &d->greeter), "stage") &&
           demo_check(d, sb_stage_on(d->greeter, "hello", svc_hello, NULL, NULL), "hello") &&
           demo_check(d, sb_stage_on(d->greeter, "ask", svc_ask, NULL, NULL), "ask") &&
           demo_check(d, sb_stage_on(d->greeter, "answer", svc_answer, NULL, NULL), "answer") &&
           demo_check(d, sb_stage_set_kind(d->greeter, "answer", SB_HANDLER_RECALL_ONLY),
                      "answer kind") &&
           demo_check(d, sb_stage_publish(d->greeter, d->service_client, "Greeter", methods, 2,
                                          published, d, NULL),
                      "publish");
}

static void demo_free(struct demo *d) {
    sb_request_free(d->req);
    sb_remote_free(d->remote);
    sb_client_free(d->caller_client);
    sb_client_free(d->service_client);
    sb_stage_free(d->greeter);
    sb_broker_free(d->broker);
    sb_loop_free(d->lp);
}

/* Prints the summary; the exit status of the program. */
static int demo_report(const struct demo *d, const char *host) {
    if (d->finished != 1) {
        printf("%s: FAILED after %d of %d calls\n", host, d->calls, CALLS);
        return 1;
    }
    printf("%s: %d requests and an emit/recall dialogue in %.1f ms\n", host, d->calls,
           d->round_ms);
    printf("%s: dispatches: %lu on the fd, %lu on the timeout\n", host, d->fd_wakeups,
           d->timer_wakeups);
    printf("%s: host ticks during the round: %lu\n", host, d->ticks_in_round);
    if (d->ticks_in_round == 0) {
        printf("%s: FAILED: the host's own timer never fired during the round\n", host);
        return 1;
    }
    printf("%s: OK\n", host);
    return 0;
}

#endif /* STAGEBUS_EMBED_DEMO_H */
