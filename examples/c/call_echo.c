/*
 * call_echo.c: the simplest call with a reply. Calls `echo` of the
 * session "Demo" (what `stagebus serve --name Demo` publishes) by name,
 * with text=hello, waits for the answer and prints it.
 *
 *   stagebus broker --listen tcp://127.0.0.1:56789 &
 *   stagebus serve --broker tcp://127.0.0.1:56789 --name Demo &
 *   cc call_echo.c $(pkg-config --cflags --libs stagebus) -o call_echo
 *   ./call_echo tcp://127.0.0.1:56789
 *
 * Exit 0 with "Demo.echo returned text=hello", 1 with the error.
 */
#include <stdio.h>

#include "stagebus.h"

int main(int argc, char **argv) {
    sb_loop *lp = NULL; sb_client *client = NULL;
    sb_args *args = sb_args_new(), *reply = NULL;
    sb_loop_new(&lp);
    sb_client_connect(lp, argc > 1 ? argv[1] : "tcp://127.0.0.1:56789", NULL, NULL, NULL, NULL, &client);
    sb_args_set_string(args, "text", "hello");
    sb_status st = sb_client_call_sync(client, "Demo", "echo", args, 5000, &reply);
    const char *text = NULL; size_t len = 0;
    if (st == SB_OK && sb_args_get_string(reply, "text", &text, &len) == SB_OK)
        printf("Demo.echo returned text=%.*s\n", (int)len, text);
    else
        fprintf(stderr, "call_echo: %s: %s\n", sb_strerror(st), sb_last_error());
    sb_args_free(args); sb_args_free(reply); sb_client_free(client); sb_loop_free(lp);
    return st != SB_OK;
}
