/*
 * threads.c: the loop's thread rule and the two ways to drive it.
 *
 *  1. sb_loop_run: four other threads sb_waker_post functions at it; every
 *     function and every free_user runs on the loop thread, inside
 *     sb_loop_run, in each thread's posting order; a last post calls
 *     sb_loop_stop, which ends sb_loop_run.
 *  2. Embedded: a host loop of poll(2) on sb_loop_fd with
 *     sb_loop_timeout_ms, calling sb_loop_dispatch, completes a call
 *     through a broker whose answer comes from a timer; it never spins;
 *     the fd is quiet when nothing waits, readable when an API call made
 *     outside dispatch queued work, and when another thread wakes it.
 *  3. The wrong thread: every entry point on a loop object (loop, broker,
 *     client, stage, remote, builder, request, served request, handler
 *     context, response, timers), called from another thread, returns
 *     SB_WRONG_THREAD (or its failure value) with a last error saying so,
 *     runs a refused registration's free_user at once, prints nothing
 *     (no panic message), frees nothing, and leaves every object working
 *     on the loop thread: nothing is lost.
 *  4. Posting to a freed loop: sb_waker_post fails with SB_INVALID_STATE,
 *     keeps nothing and runs free_user at once, on the posting thread,
 *     for every post.
 */
#include "check.h"

#include <pthread.h>

#define THREADS 4
#define POSTS 200

static pthread_t loop_thread;
static sb_loop *lp;
static sb_waker *waker;

/* Touched only on the loop thread. */
static int ran[THREADS];
static int freed_posts;
static int stop_ran;

typedef struct post {
    int thread;
    int seq;
} post;

static post posts[THREADS][POSTS];

static void on_loop_thread(const char *what)
{
    if (!pthread_equal(pthread_self(), loop_thread))
        FAILF("%s ran off the loop thread", what);
}

static void run_post(void *user, sb_loop *l)
{
    post *p = (post *)user;
    on_loop_thread("a posted function");
    CHECK(l != NULL);
    /* Each thread's posts run in the order it posted them. */
    CHECK_INT(p->seq, ran[p->thread]);
    ran[p->thread]++;
}

static void free_post(void *user)
{
    (void)user;
    on_loop_thread("a posted function's free_user");
    freed_posts++;
}

static void stop_loop(void *user, sb_loop *l)
{
    int k;
    (void)user;
    on_loop_thread("the stopping post");
    for (k = 0; k < THREADS; k++)
        CHECK_INT(ran[k], POSTS);
    stop_ran++;
    CHECK_OK(sb_loop_stop(l));
}

static void fail_if_run(void *user, sb_loop *l)
{
    (void)user;
    (void)l;
    FAILF("sb_loop_run did not return within %d ms", TEST_WAIT_MS);
}

static void *poster(void *arg)
{
    int t = (int)(size_t)arg;
    int k;
    for (k = 0; k < POSTS; k++) {
        posts[t][k].thread = t;
        posts[t][k].seq = k;
        CHECK_OK(sb_waker_post(waker, run_post, &posts[t][k], free_post));
        if (k % 50 == 0)
            CHECK_OK(sb_waker_wake(waker));
    }
    return NULL;
}

static void *stopper(void *arg)
{
    pthread_t *threads = (pthread_t *)arg;
    int k;
    /* Posted after every poster finished: it runs after their posts. */
    for (k = 0; k < THREADS; k++)
        CHECK(pthread_join(threads[k], NULL) == 0);
    CHECK_OK(sb_waker_post(waker, stop_loop, NULL, NULL));
    return NULL;
}

static void run_with_threads(void)
{
    pthread_t threads[THREADS], stop_thread;
    uint64_t guard;
    int k;

    loop_thread = pthread_self();
    CHECK_OK(sb_loop_new(&lp));
    waker = sb_loop_waker(lp);
    CHECK(waker != NULL);
    CHECK_OK(sb_loop_add_timer(lp, TEST_WAIT_MS, fail_if_run, NULL, NULL,
                               &guard));
    for (k = 0; k < THREADS; k++)
        CHECK(pthread_create(&threads[k], NULL, poster, (void *)(size_t)k) ==
              0);
    CHECK(pthread_create(&stop_thread, NULL, stopper, threads) == 0);

    CHECK_OK(sb_loop_run(lp));

    CHECK(pthread_join(stop_thread, NULL) == 0);
    CHECK_INT(stop_ran, 1);
    CHECK_INT(freed_posts, THREADS * POSTS);
    CHECK_OK(sb_loop_cancel_timer(lp, guard));
    OK("%d posts from %d threads ran on the loop thread in order; a posted "
       "sb_loop_stop ended sb_loop_run",
       THREADS * POSTS, THREADS);

    /* A waker may be freed from any thread (here: after its loop). */
    sb_loop_free(lp);
    sb_waker_free(waker);
    lp = NULL;
    waker = NULL;
}

/* ---- embedded --------------------------------------------------------------- */

static int later_runs;

static void answer_later(void *user, sb_loop *l)
{
    sb_served *req = (sb_served *)user;
    sb_args *a = sb_args_new();
    (void)l;
    later_runs++;
    CHECK_OK(sb_args_set_string(a, "answer", "late"));
    CHECK_OK(sb_served_return(req, NULL, a));
    sb_args_free(a);
}

static void free_served(void *user)
{
    sb_served_free((sb_served *)user);
}

static int32_t slow_method(void *user, const sb_ctx *ctx)
{
    uint64_t id;
    (void)user;
    /* The answer comes from a timer: the host must honour the timeout. */
    CHECK_OK(sb_loop_add_timer(lp, 20, answer_later,
                               sb_served_ref(sb_ctx_req(ctx)), free_served,
                               &id));
    return 0;
}

static int32_t on_answer(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    char buf[32];
    cb_alive(c);
    c->calls++;
    CHECK_STR(arg_string(sb_ctx_args(ctx), "answer", buf, sizeof buf),
              "late");
    return 0;
}

static int fd_ready(int fd)
{
    return fd_readable(fd);
}

/* A host loop: poll the fd with the loop's timeout, then dispatch. */
static int host_until(int *flag, int want)
{
    int fd = sb_loop_fd(lp);
    int turns = 0;
    double deadline = now_ms() + TEST_WAIT_MS;
    while (*flag < want) {
        int64_t t = sb_loop_timeout_ms(lp);
        struct pollfd p;
        int wait;
        if (now_ms() > deadline)
            FAILF("the host loop did not finish in %d ms", TEST_WAIT_MS);
        CHECK(t >= -1);
        wait = t < 0 || t > 1000 ? 1000 : (int)t;
        p.fd = fd;
        p.events = POLLIN;
        p.revents = 0;
        CHECK(poll(&p, 1, wait) >= 0);
        CHECK_OK(sb_loop_dispatch(lp));
        turns++;
    }
    return turns;
}

static void embedded(void)
{
    sb_broker *broker;
    sb_client *pub, *sub;
    sb_stage *stage = NULL;
    sb_remote *remote;
    sb_request_builder *b;
    sb_request *req = NULL;
    cb *answered = cb_new("answer"), *connected = cb_new("connect");
    cb *published = cb_new("publish"), *subscribed = cb_new("subscribe");
    char addr[256];
    int fd, turns;
    pthread_t t;

    CHECK_OK(sb_loop_new(&lp));
    fd = sb_loop_fd(lp);
    CHECK(fd >= 0);
    CHECK_INT(sb_loop_timeout_ms(lp), -1);
    CHECK(!fd_ready(fd));
    OK("a new loop: fd %d is quiet, no deadline", fd);

    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    CHECK_OK(sb_client_connect(lp, addr, NULL, cb_connected, connected,
                               cb_free, &pub));
    CHECK_OK(sb_client_connect(lp, addr, NULL, NULL, NULL, NULL, &sub));
    CHECK_OK(sb_stage_new(lp, "Slow", &stage));
    CHECK_OK(sb_stage_on(stage, "slow", slow_method, NULL, NULL));
    /* Work queued outside dispatch makes the fd readable. */
    CHECK(fd_ready(fd));
    OK("work queued by calls outside dispatch makes the fd readable");
    CHECK_OK(sb_stage_publish(stage, pub, "Slow", NULL, 0, cb_done,
                              published, cb_free));
    turns = host_until(&published->calls, 1);
    CHECK_ST(published->status, SB_OK);
    CHECK_ST(connected->status, SB_OK);
    CHECK_OK(sb_remote_subscribe(sub, "Slow", cb_subscribed, subscribed,
                                 cb_free));
    turns += host_until(&subscribed->calls, 1);
    remote = (sb_remote *)subscribed->ptr;
    CHECK(remote != NULL);

    b = sb_request_to_remote(remote, "slow");
    CHECK_OK(sb_request_builder_on(b, "return", on_answer, answered,
                                   cb_free));
    CHECK_OK(sb_request_send(b, &req));
    turns += host_until(&answered->calls, 1);
    CHECK_INT(later_runs, 1);
    /* A handful of turns, not a spin: connect, publish, subscribe, the
     * call there and back, and one timer. */
    CHECK(turns < 200);
    OK("poll + sb_loop_timeout_ms + sb_loop_dispatch completed a call "
       "answered from a 20 ms timer in %d turns", turns);

    /* Idle again: quiet fd (after draining what is left), no zero timeout. */
    {
        int k;
        for (k = 0; k < 100 && (fd_ready(fd) || sb_loop_timeout_ms(lp) == 0);
             k++)
            CHECK_OK(sb_loop_dispatch(lp));
        CHECK(!fd_ready(fd));
        CHECK(sb_loop_timeout_ms(lp) != 0);
    }
    OK("idle: the fd is quiet and the timeout is not zero");

    /* Another thread wakes the host through the fd. */
    waker = sb_loop_waker(lp);
    loop_thread = pthread_self();
    {
        static int woken;
        CHECK(pthread_create(&t, NULL, poster, (void *)(size_t)0) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        CHECK(fd_ready(fd));
        memset(ran, 0, sizeof ran);
        woken = 0;
        while (ran[0] < POSTS && woken++ < 1000)
            CHECK_OK(sb_loop_dispatch(lp));
        CHECK_INT(ran[0], POSTS);
    }
    OK("posts from another thread make the fd readable and run in dispatch");

    sb_request_free(req);
    sb_remote_free(remote);
    sb_waker_free(waker);
    sb_stage_free(stage);
    sb_client_free(sub);
    sb_client_free(pub);
    sb_broker_free(broker);
    sb_loop_free(lp);
}

/* ---- the wrong thread ------------------------------------------------------- */

/* What the other thread gets to misuse; filled in on the loop thread. */
typedef struct foreign {
    sb_loop *lp;
    sb_broker *broker;
    sb_client *client;
    sb_stage *stage;
    sb_remote *remote;
    sb_request_builder *builder;
    sb_request *req;
    sb_served *served;
    const sb_ctx *ctx;
    const sb_response *rsp;
    uint64_t timer;
    int checked;
    int refused_frees; /* free_user of refused registrations */
} foreign;

static foreign fx;

static void foreign_free(void *user)
{
    (void)user;
    fx.refused_frees++;
}

static int32_t never_run(void *user, const sb_ctx *ctx)
{
    (void)user;
    (void)ctx;
    FAILF("a handler registered from the wrong thread ran");
    return 0;
}

static void never_run_loop(void *user, sb_loop *l)
{
    (void)user;
    (void)l;
    FAILF("a timer added from the wrong thread ran");
}

/* Some other error, so that a failure value's last error is this call's. */
static void other_error(void)
{
    CHECK_ST(sb_args_set_int(NULL, "k", 1), SB_NULL_ARGUMENT);
}

static void check_wrong_thread_error(const char *expr, int line)
{
    if (strstr(sb_last_error(), "thread") == NULL)
        FAILF_AT(__FILE__, line, "%s: sb_last_error() does not name the "
                 "thread rule", expr);
    fx.checked++;
}

/* A call returning a status. */
#define WRONG(expr)                                                         \
    do {                                                                    \
        other_error();                                                      \
        CHECK_ST(expr, SB_WRONG_THREAD);                                    \
        check_wrong_thread_error(#expr, __LINE__);                          \
    } while (0)

/* A call returning a value: its failure value, and the last error. */
#define WRONG_VALUE(expr, failed)                                           \
    do {                                                                    \
        other_error();                                                      \
        CHECK((expr) == (failed));                                          \
        check_wrong_thread_error(#expr, __LINE__);                          \
    } while (0)

/* A call returning nothing (a free). */
#define WRONG_VOID(expr)                                                    \
    do {                                                                    \
        other_error();                                                      \
        expr;                                                               \
        check_wrong_thread_error(#expr, __LINE__);                          \
    } while (0)

/* In a response handler, while its context and response are alive. */
static void *misuse_ctx(void *arg)
{
    const sb_ctx *ctx = (const sb_ctx *)arg;
    const sb_response *rsp;
    (void)arg;
    WRONG_VALUE(sb_ctx_name(ctx)[0], '\0');
    WRONG_VALUE(sb_ctx_args(ctx), NULL);
    WRONG_VALUE(sb_ctx_req(ctx), NULL);
    WRONG_VALUE(sb_ctx_rsp(ctx), NULL);
    WRONG_VALUE(sb_ctx_stage(ctx), NULL);
    rsp = fx.rsp;
    WRONG_VALUE(sb_response_id(rsp), 0);
    WRONG_VALUE(sb_response_kind(rsp)[0], '\0');
    WRONG_VALUE(sb_response_is_final(rsp), false);
    WRONG(sb_response_error(rsp));
    WRONG_VALUE(sb_response_message(rsp)[0], '\0');
    WRONG_VALUE(sb_response_data(rsp), NULL);
    WRONG(sb_response_recall(rsp, "again", NULL));
    WRONG_VALUE(sb_response_cancel(rsp), false);
    return NULL;
}


/* Everything else, between turns of the loop. */
static void *misuse_objects(void *arg)
{
    sb_loop *lp2 = NULL;
    sb_client *c2 = NULL;
    sb_stage *s2 = NULL;
    sb_request *r2 = NULL;
    const char *name = NULL;
    size_t len = 0;
    char buf[64];
    uint64_t id = 0;
    const char *methods[1] = {"work"};
    sb_args *args = sb_args_new();
    (void)arg;

    /* The loop and its timers. */
    WRONG_VALUE(sb_loop_fd(fx.lp), -1);
    WRONG_VALUE(sb_loop_timeout_ms(fx.lp), -1);
    WRONG(sb_loop_dispatch(fx.lp));
    WRONG(sb_loop_run(fx.lp));
    WRONG(sb_loop_run_for(fx.lp, 1));
    WRONG(sb_loop_stop(fx.lp));
    WRONG(sb_loop_add_timer(fx.lp, 0, never_run_loop, &fx, foreign_free,
                            &id));
    WRONG(sb_loop_cancel_timer(fx.lp, fx.timer));
    WRONG_VALUE(sb_loop_waker(fx.lp), NULL);
    WRONG_VOID(sb_loop_free(fx.lp));

    /* Plain data and a loop of this thread's own stay usable. */
    CHECK_OK(sb_args_set_int(args, "n", 1));
    CHECK_OK(sb_loop_new(&lp2));
    CHECK_OK(sb_loop_dispatch(lp2));
    sb_loop_free(lp2);

    /* The broker. */
    WRONG_VALUE(sb_broker_address_count(fx.broker), 0);
    WRONG(sb_broker_address(fx.broker, 0, buf, sizeof buf));
    WRONG_VALUE(sb_broker_pending_calls(fx.broker), 0);
    WRONG(sb_broker_new(fx.lp, methods, 1, NULL, &fx.broker));
    WRONG_VOID(sb_broker_free(fx.broker));

    /* The client. */
    WRONG(sb_client_connect(fx.lp, "tcp://127.0.0.1:1", NULL, NULL, &fx,
                            foreign_free, &c2));
    CHECK(c2 == NULL);
    WRONG(sb_client_on_disconnect(fx.client, cb_done, &fx, foreign_free));
    WRONG(sb_client_on_session_gone(fx.client, cb_session_gone, &fx,
                                    foreign_free));
    WRONG(sb_client_on_unknown_message(fx.client, cb_unknown, &fx,
                                       foreign_free));
    WRONG(sb_client_send_custom(fx.client, "x", 1, NULL, 0));
    WRONG(sb_client_listing(fx.client, cb_listing, &fx, foreign_free));
    WRONG(sb_client_rescind(fx.client, "Svc", cb_done, &fx, foreign_free));
    WRONG(sb_client_close(fx.client));
    WRONG_VOID(sb_client_free(fx.client));

    /* The stage. */
    WRONG(sb_stage_new(fx.lp, "Other", &s2));
    CHECK(s2 == NULL);
    WRONG(sb_stage_on(fx.stage, "work", never_run, &fx, foreign_free));
    WRONG(sb_stage_publish(fx.stage, fx.client, "Other", NULL, 0, cb_done,
                           &fx, foreign_free));
    WRONG(sb_stage_set_data(fx.stage, &fx, foreign_free));
    WRONG_VALUE(sb_stage_data(fx.stage), NULL);
    WRONG(sb_stage_name(fx.stage, &name, &len));
    WRONG_VOID(sb_stage_free(fx.stage));

    /* The remote stage. */
    WRONG(sb_remote_subscribe(fx.client, "Svc", cb_subscribed, &fx,
                              foreign_free));
    WRONG(sb_remote_unsubscribe(fx.remote, cb_done, &fx, foreign_free));
    WRONG_VALUE(sb_request_to_remote(fx.remote, "work"), NULL);
    WRONG_VOID(sb_remote_free(fx.remote));

    /* A builder made on the loop thread. */
    WRONG_VALUE(sb_request_to_stage(fx.stage, "work"), NULL);
    WRONG(sb_request_builder_args(fx.builder, args));
    WRONG(sb_request_builder_on(fx.builder, "return", never_run, &fx,
                                foreign_free));
    WRONG(sb_request_builder_on_method(fx.builder, "emit", "work"));
    WRONG(sb_request_builder_fallback(fx.builder, never_run, &fx,
                                      foreign_free));
    WRONG(sb_request_builder_role(fx.builder, "r"));
    WRONG(sb_request_builder_timeout_ms(fx.builder, 1));
    WRONG(sb_request_builder_parent(fx.builder, fx.served));
    WRONG(sb_request_send(fx.builder, &r2));
    CHECK(r2 == NULL);
    WRONG_VOID(sb_request_builder_free(fx.builder));

    /* The request. */
    WRONG_VALUE(sb_request_cancel(fx.req), false);
    WRONG_VALUE(sb_request_id(fx.req), 0);
    WRONG_VALUE(sb_request_is_open(fx.req), false);
    WRONG(sb_request_set_data(fx.req, &fx, foreign_free));
    WRONG_VALUE(sb_request_data(fx.req), NULL);
    WRONG_VOID(sb_request_free(fx.req));

    /* The served request (an owned reference). */
    WRONG_VALUE(sb_served_ref(fx.served), NULL);
    WRONG_VALUE(sb_served_id(fx.served), 0);
    WRONG_VALUE(sb_served_is_open(fx.served), false);
    WRONG(sb_served_emit(fx.served, NULL, args));
    WRONG(sb_served_return(fx.served, NULL, args));
    WRONG(sb_served_fail(fx.served, SB_HANDLER_FAILED, "no"));
    WRONG(sb_served_on_cancel(fx.served, cb_notify, &fx, foreign_free));
    WRONG(sb_served_set_data(fx.served, &fx, foreign_free));
    WRONG_VALUE(sb_served_data(fx.served), NULL);
    WRONG_VOID(sb_served_free(fx.served));

    sb_args_free(args);
    return NULL;
}

/* The service: keeps the request, emits, answers later. */
static int32_t work(void *user, const sb_ctx *ctx)
{
    sb_args *a = sb_args_new();
    (void)user;
    fx.served = sb_served_ref(sb_ctx_req(ctx));
    CHECK(fx.served != NULL);
    CHECK_OK(sb_args_set_int(a, "n", 1));
    CHECK_OK(sb_served_emit(fx.served, NULL, a));
    sb_args_free(a);
    return 0;
}

static int emits_seen;

static int32_t on_emit(void *user, const sb_ctx *ctx)
{
    pthread_t t;
    (void)user;
    fx.ctx = ctx;
    fx.rsp = sb_ctx_rsp(ctx);
    CHECK(fx.rsp != NULL);
    CHECK(pthread_create(&t, NULL, misuse_ctx, (void *)ctx) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    /* Still whole for this thread. */
    CHECK_STR(sb_ctx_name(ctx), "emit");
    CHECK_STR(sb_response_kind(fx.rsp), "emit");
    emits_seen++;
    return 0;
}

static int32_t on_return(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    char buf[16];
    cb_alive(c);
    c->calls++;
    CHECK_STR(arg_string(sb_ctx_args(ctx), "done", buf, sizeof buf), "yes");
    return 0;
}

static int32_t count_return(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    (void)ctx;
    cb_alive(c);
    c->calls++;
    c->status = SB_OK;
    return 0;
}

static int32_t remote_work(void *user, const sb_ctx *ctx)
{
    (void)user;
    return sb_served_return(sb_ctx_req(ctx), NULL, NULL);
}

static void wrong_thread(void)
{
    char addr[256];
    cb *answered = cb_new("answer"), *remote_answered = cb_new("remote");
    sb_request *req2 = NULL;
    sb_args *a;
    pthread_t t;
    int err_fd, saved_fd;
    FILE *err;
    char errbuf[512];
    size_t n;

    memset(&fx, 0, sizeof fx);
    CHECK_OK(sb_loop_new(&fx.lp));
    lp = fx.lp;
    fx.broker = start_broker(fx.lp, "tcp://127.0.0.1:0", NULL, addr,
                             sizeof addr);
    fx.client = connect_client(fx.lp, addr, NULL);
    CHECK_OK(sb_stage_new(fx.lp, "Svc", &fx.stage));
    CHECK_OK(sb_stage_on(fx.stage, "work", work, NULL, NULL));
    CHECK_OK(sb_stage_on(fx.stage, "remote_work", remote_work, NULL, NULL));
    CHECK_ST(publish_wait(fx.lp, fx.stage, fx.client, "Svc", NULL, 0), SB_OK);
    fx.remote = subscribe_wait(fx.lp, fx.client, "Svc", NULL);
    CHECK(fx.remote != NULL);
    CHECK_OK(sb_loop_add_timer(fx.lp, TEST_WAIT_MS, fail_if_run, NULL, NULL,
                               &fx.timer));
    fx.builder = sb_request_to_remote(fx.remote, "remote_work");
    CHECK(fx.builder != NULL);

    /* Panic messages would go to stderr: catch it in a file. */
    err = tmpfile();
    CHECK(err != NULL);
    err_fd = fileno(err);
    fflush(stderr);
    saved_fd = dup(2);
    CHECK(saved_fd >= 0);
    CHECK(dup2(err_fd, 2) == 2);

    {
        sb_request_builder *b = sb_request_to_stage(fx.stage, "work");
        CHECK_OK(sb_request_builder_on(b, "emit", on_emit, NULL, NULL));
        CHECK_OK(sb_request_builder_on(b, "return", on_return, answered,
                                       cb_free));
        CHECK_OK(sb_request_send(b, &fx.req));
    }
    RUN_UNTIL(fx.lp, emits_seen == 1 && fx.served != NULL);

    CHECK(pthread_create(&t, NULL, misuse_objects, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);

    fflush(stderr);
    CHECK(dup2(saved_fd, 2) == 2);
    close(saved_fd);
    n = fread(errbuf, 1, sizeof errbuf - 1, err);
    errbuf[n] = '\0';
    fclose(err);
    if (n != 0)
        FAILF("the wrong thread's calls printed: %s", errbuf);
    /* Every registration refused: its free_user ran at once. */
    CHECK_INT(fx.refused_frees, 17);
    OK("%d calls from another thread returned SB_WRONG_THREAD with a last "
       "error, printed nothing, and ran refused registrations' free_user "
       "at once", fx.checked);

    /* Nothing was lost, freed or changed: all of it still works here. */
    CHECK(sb_request_is_open(fx.req));
    CHECK(sb_served_is_open(fx.served));
    CHECK(sb_broker_address_count(fx.broker) == 1);
    a = sb_args_new();
    CHECK_OK(sb_args_set_string(a, "done", "yes"));
    CHECK_OK(sb_served_return(fx.served, NULL, a));
    sb_args_free(a);
    RUN_UNTIL(fx.lp, answered->calls == 1);
    CHECK_OK(sb_request_builder_on(fx.builder, "return", count_return,
                                   remote_answered, cb_free));
    CHECK_OK(sb_request_send(fx.builder, &req2));
    RUN_UNTIL(fx.lp, remote_answered->calls == 1);
    CHECK_ST(remote_answered->status, SB_OK);
    CHECK_OK(sb_loop_cancel_timer(fx.lp, fx.timer));
    OK("afterwards every object works on the loop thread: the request is "
       "answered, the builder sends through the remote stage, the timer "
       "was still pending");

    sb_request_free(req2);
    sb_request_free(fx.req);
    sb_served_free(fx.served);
    sb_remote_free(fx.remote);
    sb_stage_free(fx.stage);
    sb_client_free(fx.client);
    sb_broker_free(fx.broker);
    sb_loop_free(fx.lp);
    lp = NULL;
}

/* ---- posting to a freed loop ------------------------------------------------ */

#define LATE_POSTS 1000

static int late_frees;

static void late_free(void *user)
{
    (void)user;
    if (!pthread_equal(pthread_self(), loop_thread))
        FAILF("a refused post's free_user ran off the posting thread");
    late_frees++;
}

static void late_run(void *user, sb_loop *l)
{
    (void)user;
    (void)l;
    FAILF("a function posted to a freed loop ran");
}

static void post_after_free(void)
{
    sb_loop *l;
    sb_waker *w;
    int k;

    CHECK_OK(sb_loop_new(&l));
    w = sb_loop_waker(l);
    CHECK(w != NULL);
    sb_loop_free(l);
    /* Here the posting thread is this one. */
    loop_thread = pthread_self();
    for (k = 0; k < LATE_POSTS; k++) {
        CHECK_ST(sb_waker_post(w, late_run, &late_frees, late_free),
                 SB_INVALID_STATE);
        CHECK(strstr(sb_last_error(), "freed") != NULL);
        /* Run at once: nothing is kept for later. */
        CHECK_INT(late_frees, k + 1);
    }
    CHECK_OK(sb_waker_wake(w));
    sb_waker_free(w);
    CHECK_INT(late_frees, LATE_POSTS);
    OK("%d posts to a freed loop: each failed with SB_INVALID_STATE and ran "
       "its free_user at once, on the posting thread; freeing the waker ran "
       "none", LATE_POSTS);
}

int main(void)
{
    test_begin(__FILE__);
    run_with_threads();
    embedded();
    CHECK_INT(freed_posts, THREADS * POSTS + POSTS);
    wrong_thread();
    post_after_free();
    cb_check_all_freed();
    return test_end();
}
