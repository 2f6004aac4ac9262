/*
 * check.h: what every C API test shares.
 *
 *  - CHECK macros: a failure prints FILE:LINE, the expression, the status
 *    name and sb_last_error(), then exits 1. Passing steps print TAP-like
 *    "ok N - ..." lines; test_end() prints the plan.
 *  - RUN_UNTIL(lp, cond): drives the loop with sb_loop_run_for in short
 *    slices until cond holds, failing after TEST_WAIT_MS. No sleeping.
 *  - cb: a record used as the `user` of callbacks. It counts the calls
 *    and the free_user calls (cb_free); cb_check_all_freed() proves that
 *    every free_user ran exactly once.
 *  - Helpers for the usual set-up (broker, connected client, published
 *    stage, subscription) and for child processes (spawn_child).
 *
 * Everything is static inline so that a program uses what it needs and
 * -Wall -Wextra -Werror stays quiet about the rest.
 */
#ifndef STAGEBUS_TEST_CHECK_H
#define STAGEBUS_TEST_CHECK_H

#define _POSIX_C_SOURCE 200809L

#include "stagebus.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long any single wait may take: valgrind included, on a loaded
 * 2-core machine running the C programs side by side (5 s was seen to
 * run out there). Only a failing test ever waits this long. */
#define TEST_WAIT_MS 20000

static int test_count;
static const char *test_file = "?";

#define FAILF_AT(file, line, ...)                                           \
    do {                                                                    \
        fflush(stdout);                                                     \
        fprintf(stderr, "%s:%d: ", (file), (line));                         \
        fprintf(stderr, __VA_ARGS__);                                       \
        fprintf(stderr, "\n    [pid %d] sb_last_error(): \"%s\"\n",         \
                (int)getpid(), sb_last_error());                            \
        printf("not ok %d - %s:%d\n", test_count + 1, (file), (line));      \
        fflush(stdout);                                                     \
        fflush(stderr);                                                     \
        exit(1);                                                            \
    } while (0)

#define FAILF(...) FAILF_AT(__FILE__, __LINE__, __VA_ARGS__)

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond))                                                        \
            FAILF("CHECK(%s) failed", #cond);                               \
    } while (0)

#define CHECK_ST(expr, want)                                                \
    do {                                                                    \
        sb_status got_ = (expr);                                            \
        sb_status want_ = (want);                                           \
        if (got_ != want_)                                                  \
            FAILF("%s returned %d (%s), want %d (%s)", #expr, (int)got_,    \
                  sb_strerror(got_), (int)want_, sb_strerror(want_));       \
    } while (0)

#define CHECK_OK(expr) CHECK_ST(expr, SB_OK)

#define CHECK_INT(a, b)                                                     \
    do {                                                                    \
        long long a_ = (long long)(a);                                      \
        long long b_ = (long long)(b);                                      \
        if (a_ != b_)                                                       \
            FAILF("%s is %lld, want %s = %lld", #a, a_, #b, b_);            \
    } while (0)

#define CHECK_STR(a, b)                                                     \
    do {                                                                    \
        const char *a_ = (a);                                               \
        const char *b_ = (b);                                               \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                \
            FAILF("%s is \"%s\", want \"%s\"", #a, a_ ? a_ : "(null)",      \
                  b_ ? b_ : "(null)");                                      \
    } while (0)

/* Set in child processes: their steps are comments, not TAP lines. */
static int test_in_child;

/* Records one passing step. */
#define OK(...)                                                             \
    do {                                                                    \
        if (test_in_child)                                                  \
            printf("# child %d: ok - ", (int)getpid());                     \
        else                                                                \
            printf("ok %d - ", ++test_count);                               \
        printf(__VA_ARGS__);                                                \
        printf("\n");                                                       \
        fflush(stdout);                                                     \
    } while (0)

static inline double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Drives the loop a (and b, unless NULL, in turn) until cond holds;
 * fails after TEST_WAIT_MS. */
#define RUN_BOTH_UNTIL(a, b, cond)                                          \
    do {                                                                    \
        double deadline_ = now_ms() + TEST_WAIT_MS;                         \
        sb_loop *other_ = (b);                                              \
        while (!(cond)) {                                                   \
            if (now_ms() > deadline_)                                       \
                FAILF("timed out after %d ms waiting for %s",               \
                      TEST_WAIT_MS, #cond);                                 \
            CHECK_OK(sb_loop_run_for((a), 2));                              \
            if (other_ != NULL)                                             \
                CHECK_OK(sb_loop_run_for(other_, 2));                       \
        }                                                                   \
    } while (0)

/* Drives the loop until cond holds; fails after TEST_WAIT_MS. */
#define RUN_UNTIL(lp, cond) RUN_BOTH_UNTIL(lp, NULL, cond)

static inline void test_begin(const char *file)
{
    test_file = file;
    /* A backstop: nothing here may hang, even if a wait is forgotten. */
    alarm(60);
    printf("# %s (stagebus %s)\n", file, sb_version());
    fflush(stdout);
}

static inline int test_end(void)
{
    printf("1..%d\n# PASS %s\n", test_count, test_file);
    fflush(stdout);
    return 0;
}

/* ---- callback records ------------------------------------------------ */

typedef struct cb {
    const char *name;
    int calls;          /* how often the callback ran */
    int frees;          /* how often free_user ran with this record */
    sb_status status;   /* status of the last call */
    char message[512];  /* message (or text) of the last call */
    uint64_t id;        /* a connection id, request id, ... */
    void *ptr;          /* a remote stage, ... */
    void *extra;        /* test-specific */
} cb;

#define CB_MAX 512
static cb cb_pool[CB_MAX];
static int cb_used;

/* A zeroed record from the pool; every record must be freed once. */
static inline cb *cb_new(const char *name)
{
    cb *c;
    if (cb_used >= CB_MAX)
        FAILF("cb pool exhausted");
    c = &cb_pool[cb_used++];
    memset(c, 0, sizeof *c);
    c->name = name;
    c->status = (sb_status)-1;
    return c;
}

/* The free_user of every registration. */
static inline void cb_free(void *user)
{
    cb *c = (cb *)user;
    c->frees++;
    if (c->frees > 1)
        FAILF("free_user of '%s' ran %d times", c->name, c->frees);
}

static inline void cb_check_freed_at(const cb *c, int want, const char *file,
                                     int line)
{
    if (c->frees != want)
        FAILF_AT(file, line, "free_user of '%s' ran %d times, want %d",
                 c->name, c->frees, want);
}

/* free_user of c ran exactly `want` times so far. */
#define cb_check_freed(c, want)                                             \
    cb_check_freed_at((c), (want), __FILE__, __LINE__)

/* Every record of the pool was freed exactly once. */
static inline void cb_check_all_freed(void)
{
    int i;
    for (i = 0; i < cb_used; i++)
        cb_check_freed_at(&cb_pool[i], 1, test_file, 0);
    OK("every free_user ran exactly once (%d registrations)", cb_used);
}

/*
 * Called by every callback that gets a record as its user: a callback
 * running after its free_user is a use after free.
 */
#define cb_alive(c)                                                         \
    do {                                                                    \
        const cb *alive_ = (c);                                             \
        if (alive_->frees != 0)                                             \
            FAILF("a callback of '%s' ran after its free_user",             \
                  alive_->name);                                            \
    } while (0)

static inline void cb_note(cb *c, sb_status st, const char *message)
{
    cb_alive(c);
    c->calls++;
    c->status = st;
    snprintf(c->message, sizeof c->message, "%s", message ? message : "");
}

/* sb_done_fn */
static inline void cb_done(void *user, sb_status st, const char *message)
{
    cb_note((cb *)user, st, message);
}

/* sb_connect_fn */
static inline void cb_connected(void *user, sb_status st, uint64_t id,
                                const char *message)
{
    cb *c = (cb *)user;
    cb_note(c, st, message);
    c->id = id;
}

/* sb_subscribed_fn: keeps the remote stage in ptr. */
static inline void cb_subscribed(void *user, sb_status st, sb_remote *remote,
                                 const char *message)
{
    cb *c = (cb *)user;
    cb_note(c, st, message);
    if (st == SB_OK && remote == NULL)
        FAILF("subscribe succeeded without a remote stage");
    if (st != SB_OK && remote != NULL)
        FAILF("subscribe failed with a remote stage");
    c->ptr = remote;
}

/* sb_session_gone_fn: the session name goes to message. */
static inline void cb_session_gone(void *user, const char *session,
                                   sb_status st, const char *message)
{
    cb *c = (cb *)user;
    (void)message;
    cb_note(c, st, session);
}

/*
 * sb_unknown_message_fn: the id goes to id, "kind|payload" to message,
 * with a NUL byte of the payload written as "\\0".
 */
static inline void cb_unknown(void *user, const char *kind, uint64_t id,
                              const uint8_t *payload, size_t len)
{
    cb *c = (cb *)user;
    size_t i, n;
    cb_note(c, SB_OK, kind);
    c->id = id;
    n = strlen(c->message);
    if (n + 1 < sizeof c->message)
        c->message[n++] = '|';
    for (i = 0; i < len && n + 3 < sizeof c->message; i++) {
        if (payload[i] == 0) {
            c->message[n++] = '\\';
            c->message[n++] = '0';
        } else {
            c->message[n++] = (char)payload[i];
        }
    }
    c->message[n] = '\0';
}

/* sb_watch_fn: counts the fds watched now in id (each fd is told once
 * to be watched, and once, with 0, to be dropped). */
static inline void cb_watch(void *user, int32_t fd, uint32_t events)
{
    cb *c = (cb *)user;
    cb_alive(c);
    c->calls++;
    if (fd < 0)
        FAILF("watch told of fd %d", (int)fd);
    if (events != 0)
        c->id++;
    else
        c->id--;
}

/* sb_loop_fn */
static inline void cb_loop(void *user, sb_loop *lp)
{
    (void)lp;
    cb_alive((cb *)user);
    ((cb *)user)->calls++;
}

/* sb_unix_signal_fn: counts the call, keeps the signal in id, stops
 * the loop. */
static inline void cb_unix_signal(void *user, sb_loop *lp, int32_t signal)
{
    cb_alive((cb *)user);
    ((cb *)user)->calls++;
    ((cb *)user)->id = (uint64_t)signal;
    sb_loop_stop(lp);
}

/* sb_notify_fn */
static inline void cb_notify(void *user)
{
    cb_alive((cb *)user);
    ((cb *)user)->calls++;
}

/* A copy of a string value under key, or "" (NUL-terminated). */
static inline const char *arg_string(const sb_args *args, const char *key,
                                     char *buf, size_t cap)
{
    const char *p = NULL;
    size_t len = 0;
    buf[0] = '\0';
    if (sb_args_get_string(args, key, &p, &len) == SB_OK) {
        if (len >= cap)
            len = cap - 1;
        memcpy(buf, p, len);
        buf[len] = '\0';
    }
    return buf;
}

/*
 * sb_listing_fn: writes the listing as "Name[m1,m2];Name2[...];" into
 * message, checking the value's shape on the way.
 */
static inline void cb_listing(void *user, sb_status st,
                              const sb_value *sessions, const char *message)
{
    cb *c = (cb *)user;
    size_t i, j, n;
    char out[512] = "";
    cb_note(c, st, message);
    if (st != SB_OK)
        return;
    CHECK(sb_value_type_of(sessions) == SB_VALUE_LIST);
    n = sb_value_list_len(sessions);
    for (i = 0; i < n; i++) {
        const sb_value *item = sb_value_list_get(sessions, i);
        const sb_args *map = sb_value_map(item);
        const sb_value *methods;
        char name[128];
        CHECK(map != NULL);
        arg_string(map, "name", name, sizeof name);
        strncat(out, name, sizeof out - strlen(out) - 1);
        strncat(out, "[", sizeof out - strlen(out) - 1);
        methods = sb_args_get(map, "methods");
        CHECK(sb_value_type_of(methods) == SB_VALUE_LIST);
        for (j = 0; j < sb_value_list_len(methods); j++) {
            const uint8_t *p;
            size_t len;
            char m[128];
            CHECK_OK(sb_value_bytes(sb_value_list_get(methods, j), &p, &len));
            if (len >= sizeof m)
                len = sizeof m - 1;
            memcpy(m, p, len);
            m[len] = '\0';
            if (j > 0)
                strncat(out, ",", sizeof out - strlen(out) - 1);
            strncat(out, m, sizeof out - strlen(out) - 1);
        }
        strncat(out, "];", sizeof out - strlen(out) - 1);
    }
    snprintf(c->message, sizeof c->message, "%s", out);
}

/* ---- set-up helpers ---------------------------------------------------- */

/* A broker listening on one address; its real address goes to addr. */
static inline sb_broker *start_broker(sb_loop *lp, const char *listen,
                                      const char *token, char *addr,
                                      size_t cap)
{
    sb_broker *broker = NULL;
    const char *listens[1];
    listens[0] = listen;
    CHECK_OK(sb_broker_new(lp, listens, 1, token, &broker));
    CHECK(broker != NULL);
    CHECK_INT(sb_broker_address_count(broker), 1);
    CHECK_OK(sb_broker_address(broker, 0, addr, cap));
    return broker;
}

/* A client connected (handshake done) to addr. */
static inline sb_client *connect_client(sb_loop *lp, const char *addr,
                                        const char *token)
{
    sb_client *client = NULL;
    cb *c = cb_new("connect");
    CHECK_OK(sb_client_connect(lp, addr, token, cb_connected, c, cb_free,
                               &client));
    CHECK(client != NULL);
    RUN_UNTIL(lp, c->calls > 0);
    CHECK_ST(c->status, SB_OK);
    CHECK(c->id > 0);
    cb_check_freed(c, 1);
    return client;
}

/* Publishes stage as session through client and waits for the answer. */
static inline sb_status publish_wait(sb_loop *lp, const sb_stage *stage,
                                     const sb_client *client,
                                     const char *session,
                                     const char *const *methods, size_t n)
{
    cb *c = cb_new("publish");
    CHECK_OK(sb_stage_publish(stage, client, session, methods, n, cb_done, c,
                              cb_free));
    RUN_UNTIL(lp, c->calls > 0);
    cb_check_freed(c, 1);
    return c->status;
}

/* Subscribes to session; NULL (with *st set) on failure. */
static inline sb_remote *subscribe_wait(sb_loop *lp, const sb_client *client,
                                        const char *session, sb_status *st)
{
    cb *c = cb_new("subscribe");
    CHECK_OK(sb_remote_subscribe(client, session, cb_subscribed, c, cb_free));
    RUN_UNTIL(lp, c->calls > 0);
    cb_check_freed(c, 1);
    if (st != NULL)
        *st = c->status;
    return (sb_remote *)c->ptr;
}

/* The listing as written by cb_listing. */
static inline const char *listing_wait(sb_loop *lp, const sb_client *client)
{
    cb *c = cb_new("listing");
    CHECK_OK(sb_client_listing(client, cb_listing, c, cb_free));
    RUN_UNTIL(lp, c->calls > 0);
    CHECK_ST(c->status, SB_OK);
    cb_check_freed(c, 1);
    return c->message;
}

/* ---- child processes ------------------------------------------------- */

/*
 * A child process: `ctl` carries the broker address (one line) from the
 * parent and, when the parent closes it, the order to finish; `report`
 * carries bytes from the child to the parent.
 */
typedef struct child {
    pid_t pid;
    int ctl;        /* parent: write end; child: read end */
    int report;     /* parent: read end; child: write end */
    char got[128];  /* parent: what the child reported so far */
} child;

/* Parent-side fds of earlier children, closed in every later child. */
static int child_fds[64];
static int child_nfds;

/*
 * Forks a child running body(self, arg) and exiting with its result.
 * Fork before creating any stagebus object: the child then shares no
 * socket or epoll instance with the parent.
 */
static inline child spawn_child(int (*body)(child *self, void *arg),
                                void *arg)
{
    int ctl[2], report[2];
    child c;
    CHECK(pipe(ctl) == 0);
    CHECK(pipe(report) == 0);
    fflush(stdout);
    fflush(stderr);
    memset(&c, 0, sizeof c);
    c.pid = fork();
    CHECK(c.pid >= 0);
    if (c.pid == 0) {
        int i, rc;
        for (i = 0; i < child_nfds; i++)
            close(child_fds[i]);
        close(ctl[1]);
        close(report[0]);
        test_in_child = 1;
        c.pid = getpid();
        c.ctl = ctl[0];
        c.report = report[1];
        alarm(60);
        rc = body(&c, arg);
        close(c.ctl);
        close(c.report);
        fflush(stdout);
        exit(rc);
    }
    close(ctl[0]);
    close(report[1]);
    c.ctl = ctl[1];
    c.report = report[0];
    if (child_nfds + 2 <= 64) {
        child_fds[child_nfds++] = c.ctl;
        child_fds[child_nfds++] = c.report;
    }
    return c;
}

/* Whether fd is readable (data or EOF) right now. */
static inline int fd_readable(int fd)
{
    struct pollfd p;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, 0) > 0;
}

/* Writes all of buf or fails. */
static inline void write_all(int fd, const void *buf, size_t len)
{
    const char *p = (const char *)buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            FAILF("write to fd %d failed: %s", fd, strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

/* Reads one line (without '\n') from fd, waiting at most TEST_WAIT_MS. */
static inline void read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    double deadline = now_ms() + TEST_WAIT_MS;
    for (;;) {
        struct pollfd p;
        char ch;
        ssize_t r;
        int left = (int)(deadline - now_ms());
        if (left <= 0)
            FAILF("timed out reading a line from fd %d", fd);
        p.fd = fd;
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, left) <= 0)
            continue;
        r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            FAILF("fd %d closed before a full line", fd);
        if (ch == '\n')
            break;
        if (n + 1 < cap)
            buf[n++] = ch;
    }
    buf[n] = '\0';
}

/* Reads what is available on fd without blocking (up to cap-1 bytes). */
static inline size_t read_available(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap && fd_readable(fd)) {
        ssize_t r = read(fd, buf + n, 1);
        if (r <= 0)
            break;
        n++;
    }
    buf[n] = '\0';
    return n;
}

/* Appends what the child reported since the last call to c->got;
 * returns its length. Meant for RUN_UNTIL conditions. */
static inline size_t child_reports(child *c)
{
    size_t n = strlen(c->got);
    read_available(c->report, c->got + n, sizeof c->got - n);
    return strlen(c->got);
}

/* The parent tells a child the broker address. */
static inline void child_send_address(const child *c, const char *addr)
{
    write_all(c->ctl, addr, strlen(addr));
    write_all(c->ctl, "\n", 1);
}

/* The child reports one byte to its parent. */
static inline void child_report(const child *c, char what)
{
    write_all(c->report, &what, 1);
}

/* Waits (bounded) for the child to exit; returns its exit status. */
static inline int wait_child(child *c)
{
    double deadline = now_ms() + TEST_WAIT_MS;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(c->pid, &status, WNOHANG);
        if (r == c->pid)
            break;
        if (r < 0 && errno != EINTR)
            FAILF("waitpid(%d) failed: %s", (int)c->pid, strerror(errno));
        if (now_ms() > deadline) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &status, 0);
            FAILF("child %d did not exit in time", (int)c->pid);
        }
        poll(NULL, 0, 5);
    }
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

/* ---- a publisher child that never answers --------------------------------- */

/* The child running hanging_publisher, for never_answer to report to
 * (NULL in the parent). */
static child *hanging_self;

static inline void free_kept_served(void *user)
{
    sb_served_free((sb_served *)user);
}

/* A handler that never answers: the request is kept in its own data slot
 * (a request neither answered nor kept ends at once with SB_UNANSWERED),
 * so the call stays pending; a child reports 'C' for each. */
static inline int32_t never_answer(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    (void)user;
    CHECK_OK(sb_served_set_data(req, sb_served_ref(req), free_kept_served));
    if (hanging_self)
        child_report(hanging_self, 'C');
    return 0;
}

/* A child body (spawn_child): reads the broker's address, publishes the
 * session named by `session` (a const char *) with one method, `hang`,
 * that never answers, reports 'P', and runs until it is stopped, killed,
 * or its parent closes ctl (then exits 3). */
static inline int hanging_publisher(child *self, void *session)
{
    const char *name = (const char *)session;
    sb_loop *lp = NULL;
    sb_client *client;
    sb_stage *stage = NULL;
    char addr[256];
    hanging_self = self;
    read_line(self->ctl, addr, sizeof addr);
    CHECK_OK(sb_loop_new(&lp));
    client = connect_client(lp, addr, NULL);
    CHECK_OK(sb_stage_new(lp, name, &stage));
    CHECK_OK(sb_stage_on(stage, "hang", never_answer, NULL, NULL));
    CHECK_OK(publish_wait(lp, stage, client, name, NULL, 0));
    child_report(self, 'P');
    RUN_UNTIL(lp, fd_readable(self->ctl));
    sb_stage_free(stage);
    sb_client_free(client);
    sb_loop_free(lp);
    return 3;
}

/* A broker child: waits for its listen address, listens, reports 'B',
 * runs until killed or its parent closes ctl. */
static inline int broker_child(child *self, void *unused)
{
    sb_loop *lp = NULL;
    sb_broker *broker;
    char listen[256], addr[256];
    (void)unused;
    read_line(self->ctl, listen, sizeof listen);
    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, listen, NULL, addr, sizeof addr);
    child_report(self, 'B');
    while (!fd_readable(self->ctl))
        CHECK_OK(sb_loop_run_for(lp, 10));
    sb_broker_free(broker);
    sb_loop_free(lp);
    return 0;
}

/* Removes the directory of a test's Unix socket (b.sock and its lock). */
static inline void remove_socket_dir(const char *dir)
{
    char path[320];
    snprintf(path, sizeof path, "%s/b.sock", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/b.sock.lock", dir);
    unlink(path);
    rmdir(dir);
}

#endif /* STAGEBUS_TEST_CHECK_H */
