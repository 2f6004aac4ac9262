/*
 * accessors.c: text holding NUL characters, a stage's name and a
 * request's data slot, through the C API.
 *
 *  1. sb_args_set_string_n / sb_value_new_string_n take text with NULs;
 *     sb_args_get_string, sb_value_bytes and sb_args_entry give it back
 *     whole, with its length. (NULL, 0) is the empty string; bytes that
 *     are not UTF-8 are refused and leave the args as they were.
 *  2. Such text survives a request through a broker and the answer
 *     back (the callee echoes it), in args and inside a list.
 *  3. sb_stage_name gives the name given to sb_stage_new, also for the
 *     stage a handler gets from sb_ctx_stage.
 *  4. sb_request_data gives what sb_request_set_data stored (the same
 *     pointer sb_response_data gives in the response handlers); NULL
 *     before it is set and after the caller's side ended, when its free
 *     ran once.
 */
#include "check.h"

static const char nul_text[] = "a\0b\0\xc3\xa9"; /* 'a' NUL 'b' NUL e-acute */
#define NUL_TEXT_LEN 6
static const char stage_name[] = "Echo \xe2\x9c\x93"; /* "Echo" + check mark */

/* The string under key, which must be exactly want[0..len). */
static void check_text(const sb_args *args, const char *key,
                       const char *want, size_t want_len)
{
    const char *p = NULL;
    size_t len = 0;
    CHECK_OK(sb_args_get_string(args, key, &p, &len));
    CHECK_INT(len, want_len);
    CHECK(len == 0 || memcmp(p, want, len) == 0);
}

static void check_value_text(const sb_value *v, const char *want,
                             size_t want_len)
{
    const uint8_t *p = NULL;
    size_t len = 0;
    CHECK(sb_value_type_of(v) == SB_VALUE_STRING);
    CHECK_OK(sb_value_bytes(v, &p, &len));
    CHECK_INT(len, want_len);
    CHECK(len == 0 || memcmp(p, want, len) == 0);
}

/* 1 */
static void strings_with_nul(void)
{
    sb_args *a = sb_args_new();
    sb_value *v, *list;
    const char *key = NULL;
    size_t klen = 0;
    const sb_value *vp = NULL;
    static const char bad[] = {'o', 'k', (char)0xff, 0, 'x'};

    CHECK_OK(sb_args_set_string_n(a, "s", nul_text, NUL_TEXT_LEN));
    check_text(a, "s", nul_text, NUL_TEXT_LEN);
    check_value_text(sb_args_get(a, "s"), nul_text, NUL_TEXT_LEN);
    CHECK_OK(sb_args_entry(a, 0, &key, &klen, &vp));
    CHECK(klen == 1 && key[0] == 's');
    check_value_text(vp, nul_text, NUL_TEXT_LEN);
    /* The NUL-terminated setter stops at the first NUL. */
    CHECK_OK(sb_args_set_string(a, "c", nul_text));
    check_text(a, "c", "a", 1);
    OK("sb_args_set_string_n keeps NULs; the getters give the length");

    CHECK_OK(sb_args_set_string_n(a, "empty", NULL, 0));
    check_text(a, "empty", "", 0);
    CHECK_OK(sb_args_set_string_n(a, "prefix", "abc", 2));
    check_text(a, "prefix", "ab", 2);
    CHECK_INT(sb_args_len(a), 4);
    CHECK_ST(sb_args_set_string_n(a, "s", bad, sizeof bad),
             SB_INVALID_UTF8);
    CHECK(strstr(sb_last_error(), "UTF-8") != NULL);
    CHECK_ST(sb_args_set_string_n(a, "s", NULL, 1), SB_NULL_ARGUMENT);
    CHECK_INT(sb_args_len(a), 4);
    check_text(a, "s", nul_text, NUL_TEXT_LEN);
    OK("(NULL, 0) is \"\"; only len bytes are read; bad UTF-8 and NULL "
       "with a length are refused and change nothing");

    v = sb_value_new_string_n(nul_text, NUL_TEXT_LEN);
    CHECK(v != NULL);
    check_value_text(v, nul_text, NUL_TEXT_LEN);
    list = sb_value_new_list();
    CHECK_OK(sb_value_list_push(list, v));
    check_value_text(sb_value_list_get(list, 0), nul_text, NUL_TEXT_LEN);
    v = sb_value_new_string_n(NULL, 0);
    check_value_text(v, "", 0);
    sb_value_free(v);
    CHECK(sb_value_new_string_n(bad, sizeof bad) == NULL);
    CHECK(strstr(sb_last_error(), "UTF-8") != NULL);
    CHECK(sb_value_new_string_n(NULL, 2) == NULL);
    CHECK_OK(sb_args_set_value(a, "list", list));
    OK("sb_value_new_string_n keeps NULs, (NULL, 0) is \"\", bad input is "
       "NULL");
    sb_args_free(a);
}

/* The echo stage's method: answers with its args, after checking the
 * stage's name as the handler sees it. */
static int32_t echo(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    const char *name = NULL;
    size_t len = 0;
    cb_alive(c);
    c->calls++;
    CHECK_OK(sb_stage_name(sb_ctx_stage(ctx), &name, &len));
    CHECK_INT(len, strlen(stage_name));
    CHECK(memcmp(name, stage_name, len) == 0);
    check_text(sb_ctx_args(ctx), "text", nul_text, NUL_TEXT_LEN);
    CHECK_OK(sb_served_return(sb_ctx_req(ctx), NULL, sb_ctx_args(ctx)));
    return 0;
}

static sb_request *the_request;

/* The caller's return handler. */
static int32_t on_return(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    const sb_args *args = sb_ctx_args(ctx);
    const sb_value *list;
    cb_alive(c);
    c->calls++;
    check_text(args, "text", nul_text, NUL_TEXT_LEN);
    list = sb_args_get(args, "list");
    CHECK_INT(sb_value_list_len(list), 1);
    check_value_text(sb_value_list_get(list, 0), nul_text, NUL_TEXT_LEN);
    /* 4: the same slot from both sides, while the request is open. */
    CHECK(sb_response_data(sb_ctx_rsp(ctx)) == c->extra);
    CHECK(sb_request_data(the_request) == c->extra);
    return 0;
}

/* 2, 3, 4 */
static void through_a_broker(void)
{
    sb_loop *lp = NULL;
    sb_broker *broker;
    sb_client *pub, *sub;
    sb_stage *stage = NULL;
    sb_remote *remote;
    sb_request_builder *b;
    sb_args *a = sb_args_new();
    sb_value *list = sb_value_new_list();
    cb *m_echo = cb_new("echo"), *ret = cb_new("on return");
    cb *data = cb_new("request data");
    const char *name = (const char *)&name;
    size_t len = 99;
    char addr[256];
    sb_status st;

    CHECK_OK(sb_loop_new(&lp));
    broker = start_broker(lp, "tcp://127.0.0.1:0", NULL, addr, sizeof addr);
    pub = connect_client(lp, addr, NULL);
    sub = connect_client(lp, addr, NULL);

    /* 3 */
    CHECK_OK(sb_stage_new(lp, stage_name, &stage));
    CHECK_ST(sb_stage_name(stage, NULL, &len), SB_NULL_ARGUMENT);
    CHECK(name == (const char *)&name && len == 99);
    CHECK_OK(sb_stage_name(stage, &name, &len));
    CHECK_INT(len, strlen(stage_name));
    CHECK(memcmp(name, stage_name, len) == 0);
    OK("sb_stage_name gives the name given to sb_stage_new (%d bytes)",
       (int)len);

    CHECK_OK(sb_stage_on(stage, "echo", echo, m_echo, cb_free));
    CHECK_ST(publish_wait(lp, stage, pub, "Echo", NULL, 0), SB_OK);
    remote = subscribe_wait(lp, sub, "Echo", &st);
    CHECK_ST(st, SB_OK);

    CHECK_OK(sb_args_set_string_n(a, "text", nul_text, NUL_TEXT_LEN));
    CHECK_OK(sb_value_list_push(list, sb_value_new_string_n(nul_text,
                                                            NUL_TEXT_LEN)));
    CHECK_OK(sb_args_set_value(a, "list", list));
    b = sb_request_to_remote(remote, "echo");
    CHECK(b != NULL);
    CHECK_OK(sb_request_builder_args(b, a));
    sb_args_free(a);
    ret->extra = data;
    CHECK_OK(sb_request_builder_on(b, "return", on_return, ret, cb_free));
    CHECK_OK(sb_request_send(b, &the_request));

    /* 4 */
    CHECK(sb_request_data(the_request) == NULL);
    CHECK_OK(sb_request_set_data(the_request, data, cb_free));
    CHECK(sb_request_data(the_request) == data);
    RUN_UNTIL(lp, ret->calls == 1);
    CHECK_INT(m_echo->calls, 1);
    OK("text with NULs crosses the broker both ways, in args and in a list");
    OK("the stage's name inside its handler (sb_ctx_stage) is the same");
    CHECK(!sb_request_is_open(the_request));
    cb_check_freed(data, 1);
    CHECK(sb_request_data(the_request) == NULL);
    OK("sb_request_data: NULL before set, the slot while open (the same "
       "as sb_response_data), NULL after the end, freed once");

    sb_request_free(the_request);
    sb_remote_free(remote);
    sb_stage_free(stage);
    sb_client_free(sub);
    sb_client_free(pub);
    sb_broker_free(broker);
    sb_loop_free(lp);
}

int main(void)
{
    test_begin(__FILE__);
    strings_with_nul();
    through_a_broker();
    cb_check_all_freed();
    return test_end();
}
