/*
 * log_handler.c: the library logs through the handler a C program sets,
 * never to stderr on its own.
 *
 *  - a peer that breaks the protocol is logged by the broker at warn
 *    level with its connection and the reason as fields;
 *  - a response no handler takes is logged at warn level with the
 *    request, its method and the response type as fields;
 *  - records finer than the level asked for do not arrive;
 *  - replacing the handler frees the old user data once; a bad level is
 *    refused, changes nothing and frees its user data at once.
 */
#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define MAX_RECORDS 64

struct record {
    sb_log_level level;
    char target[64];
    char message[256];
    char fields[256]; /* "k=v;k=v;" */
};

static sb_loop *lp_of_test;
static struct record records[MAX_RECORDS];
static int n_records;

static void on_log(void *user, sb_log_level level, const char *target,
                   const char *message, const sb_log_field *fields,
                   size_t n_fields)
{
    cb *c = user;
    struct record *r;
    size_t i;
    c->calls++;
    if (n_records == MAX_RECORDS)
        return;
    r = &records[n_records++];
    r->level = level;
    snprintf(r->target, sizeof r->target, "%s", target);
    snprintf(r->message, sizeof r->message, "%s", message);
    r->fields[0] = '\0';
    for (i = 0; i < n_fields; i++) {
        size_t used = strlen(r->fields);
        snprintf(r->fields + used, sizeof r->fields - used, "%s=%s;",
                 fields[i].key, fields[i].value);
    }
}

/* The first record whose fields contain every `;`-ended pair in want. */
static const struct record *find_record(const char *target, const char *want)
{
    int i;
    for (i = 0; i < n_records; i++) {
        char pairs[256];
        char *save = NULL;
        char *pair;
        int all = 1;
        if (strcmp(records[i].target, target) != 0)
            continue;
        snprintf(pairs, sizeof pairs, "%s", want);
        for (pair = strtok_r(pairs, ";", &save); pair != NULL;
             pair = strtok_r(NULL, ";", &save)) {
            char needle[128];
            snprintf(needle, sizeof needle, "%s;", pair);
            if (strstr(records[i].fields, needle) == NULL)
                all = 0;
        }
        if (all)
            return &records[i];
    }
    return NULL;
}

/* Whether a record of target has a field named key. */
static int has_field(const char *target, const char *key)
{
    char needle[64];
    int i;
    snprintf(needle, sizeof needle, "%s=", key);
    for (i = 0; i < n_records; i++) {
        const char *at = strstr(records[i].fields, needle);
        if (strcmp(records[i].target, target) == 0 && at != NULL &&
            (at == records[i].fields || at[-1] == ';'))
            return 1;
    }
    return 0;
}

static int32_t work(void *user, const sb_ctx *ctx)
{
    (void)user;
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), "done", NULL));
    return 0;
}

static void send_junk(const char *addr)
{
    static const unsigned char junk[16] = {
        0x0c, 0, 0, 0, 'n', 'o', 't', ' ', 'a', ' ', 'h', 'e', 'l', 'l', 'o', '!'};
    struct sockaddr_in sa;
    const char *colon = strrchr(addr, ':');
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0 && colon != NULL);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    write_all(fd, junk, sizeof junk);
    /* Kept open: the broker, not the peer, ends the connection. */
    RUN_UNTIL(lp_of_test, find_record("stagebus::broker", "reason=protocol") != NULL);
    close(fd);
}

int main(void)
{
    sb_loop *lp = NULL;
    sb_broker *broker;
    sb_stage *stage = NULL;
    sb_request_builder *b;
    sb_request *req = NULL;
    char addr[128];
    const struct record *r;
    cb *first = cb_new("first handler");
    cb *second = cb_new("second handler");
    cb *refused_low = cb_new("handler refused for level 0");
    cb *refused_high = cb_new("handler refused for level 6");

    test_begin(__FILE__);
    CHECK_OK(sb_loop_new(&lp));
    lp_of_test = lp;

    CHECK_ST(sb_set_log_handler(on_log, 0, refused_low, cb_free),
             SB_INVALID_ARGUMENT);
    CHECK_ST(sb_set_log_handler(on_log, 6, refused_high, cb_free),
             SB_INVALID_ARGUMENT);
    cb_check_freed(refused_low, 1);
    cb_check_freed(refused_high, 1);
    OK("a level out of range is refused; the user data is freed at once");

    CHECK_OK(sb_set_log_handler(on_log, SB_LOG_WARN, first, cb_free));

    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    send_junk(addr);
    r = find_record("stagebus::broker", "reason=protocol");
    CHECK(r->level == SB_LOG_WARN);
    CHECK(strstr(r->fields, "conn=") == r->fields);
    CHECK(strstr(r->message, "closed") != NULL);
    CHECK(!has_field("stagebus::broker", "peer"));
    OK("a protocol breach is logged at warn with conn and reason; the "
       "accept (debug) is not");

    CHECK_OK(sb_stage_new(lp, "Worker", &stage));
    CHECK_OK(sb_stage_on(stage, "work", work, NULL, NULL));
    b = sb_request_to_stage(stage, "work");
    CHECK(b != NULL);
    CHECK_OK(sb_request_send(b, &req));
    RUN_UNTIL(lp, find_record("stagebus::request", "kind=done;") != NULL);
    r = find_record("stagebus::request", "kind=done;method=work;");
    CHECK(r != NULL);
    CHECK(r->level == SB_LOG_WARN);
    CHECK(strstr(r->message, "unhandled 'done'") != NULL);
    OK("an unhandled response is logged with request, method and type");

    CHECK_OK(sb_set_log_handler(on_log, SB_LOG_DEBUG, second, cb_free));
    cb_check_freed(first, 1);
    n_records = 0;
    send_junk(addr);
    CHECK(has_field("stagebus::broker", "peer"));
    OK("a new handler replaces the old, whose user data is freed once; "
       "at debug level the accept with the peer's address arrives");

    CHECK_OK(sb_set_log_handler(NULL, SB_LOG_ERROR, NULL, NULL));
    cb_check_freed(second, 1);
    CHECK_INT(first->calls + second->calls > 0, 1);
    OK("a NULL handler stops logging and frees the last user data");

    sb_request_free(req);
    sb_stage_free(stage);
    sb_broker_free(broker);
    sb_loop_free(lp);
    cb_check_all_freed();
    return test_end();
}
