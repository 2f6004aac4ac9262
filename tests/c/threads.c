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

int main(void)
{
    test_begin(__FILE__);
    run_with_threads();
    embedded();
    CHECK_INT(freed_posts, THREADS * POSTS + POSTS);
    cb_check_all_freed();
    return test_end();
}
