/*
 * identity.c: broker and client options from C. A broker on a Unix
 * socket (mode 0600) with two named tokens and a policy file: the client
 * with the "app" token may not publish Admin (SB_ACCESS_DENIED, counted),
 * the one with "ops" may; a call from the "app" client, which named
 * itself "c-caller", reaches the publisher with the caller's uid, gid,
 * pid (this process), identity "app" and client name.
 */
#include "check.h"
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    int calls;
    uint32_t uid, gid, pid;
    uint64_t connection;
    char identity[64], client_name[64];
    sb_status missing_identity_status;
} seen_t;

static seen_t seen;

static int32_t echo(void *user, const sb_ctx *ctx)
{
    const sb_served *req = sb_ctx_req(ctx);
    char tiny[2];
    (void)user;
    seen.calls++;
    CHECK_OK(sb_served_caller_uid(req, &seen.uid));
    CHECK_OK(sb_served_caller_gid(req, &seen.gid));
    CHECK_OK(sb_served_caller_pid(req, &seen.pid));
    seen.connection = sb_served_caller_connection(req);
    CHECK_OK(sb_served_caller_identity(req, seen.identity,
                                       sizeof seen.identity));
    CHECK_OK(sb_served_caller_client_name(req, seen.client_name,
                                          sizeof seen.client_name));
    CHECK_ST(sb_served_caller_identity(req, tiny, sizeof tiny),
             SB_LIMIT_EXCEEDED);
    CHECK_OK(sb_served_return(req, NULL, sb_ctx_args(ctx)));
    return 0;
}

static int32_t on_return(void *user, const sb_ctx *ctx)
{
    cb *c = (cb *)user;
    cb_alive(c);
    c->calls++;
    CHECK_ST(sb_response_error(sb_ctx_rsp(ctx)), SB_OK);
    return 0;
}

static sb_client *connect_with(sb_loop *lp, const char *addr,
                               const char *token, const char *name,
                               uint64_t *id)
{
    sb_client_options *o = NULL;
    sb_client *client = NULL;
    cb *c = cb_new("connect");
    CHECK_OK(sb_client_options_new(&o));
    CHECK_OK(sb_client_options_set_token(o, token));
    CHECK_OK(sb_client_options_set_name(o, name));
    CHECK_OK(sb_client_connect_with(lp, addr, o, cb_connected, c, cb_free,
                                    &client));
    sb_client_options_free(o);
    RUN_UNTIL(lp, c->calls > 0);
    CHECK_ST(c->status, SB_OK);
    *id = c->id;
    cb_check_freed(c, 1);
    return client;
}

int main(void)
{
    char dir[] = "/tmp/stagebus-c-XXXXXX";
    char listen[256], policy[256], addr[256];
    const char *listens[1];
    const char *const methods[] = {"echo"};
    sb_loop *lp = NULL;
    sb_broker_options *bo = NULL;
    sb_broker *broker = NULL;
    sb_client *ops, *app;
    sb_stage *stage = NULL, *stage2 = NULL;
    sb_remote *remote;
    sb_request_builder *b;
    sb_request *req = NULL;
    cb *ret = cb_new("return");
    uint64_t ops_id, app_id;
    struct stat st;
    FILE *f;

    test_begin(__FILE__);
    CHECK(mkdtemp(dir) != NULL);
    snprintf(listen, sizeof listen, "unix:%s/bus.sock", dir);
    snprintf(policy, sizeof policy, "%s/policy", dir);
    f = fopen(policy, "w");
    CHECK(f != NULL);
    fputs("allow token=ops own Admin\nallow anyone call *\n", f);
    fclose(f);

    CHECK_OK(sb_loop_new(&lp));
    CHECK_OK(sb_broker_options_new(&bo));
    CHECK_OK(sb_broker_options_add_named_token(bo, "ops", "ops-secret"));
    CHECK_OK(sb_broker_options_add_named_token(bo, "app", "app-secret"));
    CHECK_ST(sb_broker_options_add_named_token(bo, "", "x"),
             SB_INVALID_ARGUMENT);
    CHECK_OK(sb_broker_options_set_socket_mode(bo, 0600));
    CHECK_ST(sb_broker_options_set_socket_mode(bo, 01777),
             SB_INVALID_ARGUMENT);
    CHECK_OK(sb_broker_options_set_socket_group(bo, "0"));
    CHECK_ST(sb_broker_options_set_policy_file(bo, "/nonexistent/policy"),
             SB_IO);
    CHECK_OK(sb_broker_options_set_policy_file(bo, policy));
    listens[0] = listen;
    CHECK_OK(sb_broker_new_with(lp, listens, 1, bo, &broker));
    sb_broker_options_free(bo);
    CHECK_OK(sb_broker_address(broker, 0, addr, sizeof addr));
    CHECK(stat(addr + 5, &st) == 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    OK("broker options: named tokens, socket mode 0600, a policy file");

    ops = connect_with(lp, addr, "ops-secret", NULL, &ops_id);
    app = connect_with(lp, addr, "app-secret", "c-caller", &app_id);

    CHECK_OK(sb_stage_new(lp, "Admin", &stage));
    CHECK_OK(sb_stage_on(stage, "echo", echo, NULL, NULL));
    CHECK_ST(publish_wait(lp, stage, app, "Admin", methods, 1),
             SB_ACCESS_DENIED);
    CHECK_INT(sb_broker_access_denied(broker), 1);
    CHECK_STR(sb_strerror(SB_ACCESS_DENIED), "access_denied");
    CHECK_OK(sb_stage_new(lp, "Admin", &stage2));
    CHECK_OK(sb_stage_on(stage2, "echo", echo, NULL, NULL));
    CHECK_OK(publish_wait(lp, stage2, ops, "Admin", methods, 1));
    OK("the policy denies app and allows ops to publish Admin");

    remote = subscribe_wait(lp, app, "Admin", NULL);
    CHECK(remote != NULL);
    b = sb_request_to_remote(remote, "echo");
    CHECK(b != NULL);
    CHECK_OK(sb_request_builder_on(b, "return", on_return, ret, cb_free));
    CHECK_OK(sb_request_send(b, &req));
    RUN_UNTIL(lp, ret->calls > 0);
    CHECK_INT(seen.calls, 1);
    CHECK_INT(seen.uid, getuid());
    CHECK_INT(seen.gid, getgid());
    CHECK_INT(seen.pid, getpid());
    CHECK_INT(seen.connection, app_id);
    CHECK_STR(seen.identity, "app");
    CHECK_STR(seen.client_name, "c-caller");
    sb_request_free(req);
    OK("the publisher sees the caller's uid, gid, pid, identity and name");

    sb_remote_free(remote);
    sb_stage_free(stage);
    sb_stage_free(stage2);
    sb_client_free(ops);
    sb_client_free(app);
    sb_broker_free(broker);
    sb_loop_free(lp);
    CHECK(unlink(policy) == 0);
    CHECK(rmdir(dir) == 0);
    cb_check_all_freed();
    return test_end();
}
