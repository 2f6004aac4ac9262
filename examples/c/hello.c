/*
 * hello.c: the smallest program against the C library; the README's
 * recipe for building and linking a C program compiles and runs it.
 *
 * Prints the library's version, starts a broker on a free loopback port
 * and prints where it listens, then frees everything. Exit 0 on success.
 */
#include <stdio.h>

#include "stagebus.h"

int main(void) {
    printf("stagebus %s\n", sb_version());
    sb_loop *lp = NULL;
    if (sb_loop_new(&lp) != SB_OK) {
        fprintf(stderr, "hello: %s\n", sb_last_error());
        return 1;
    }
    const char *listen[] = {"tcp://127.0.0.1:0"};
    sb_broker *broker = NULL;
    if (sb_broker_new(lp, listen, 1, NULL, &broker) != SB_OK) {
        fprintf(stderr, "hello: %s\n", sb_last_error());
        sb_loop_free(lp);
        return 1;
    }
    char address[256];
    if (sb_broker_address(broker, 0, address, sizeof address) == SB_OK) {
        printf("a broker listened on %s\n", address);
    }
    sb_broker_free(broker);
    sb_loop_free(lp);
    return 0;
}
