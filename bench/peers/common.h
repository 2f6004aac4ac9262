/* Shared helpers of the bench peers: clock, result line, safety bound.
 *
 * Every peer prints its measurements as one line
 *     SAMPLES <ns> <ns> ...
 * (nanoseconds per operation) on stdout, which bench/run's driver
 * (bench/src/main.rs) parses. Every process a peer starts arms alarm()
 * first, so it stops by itself even if its parent dies. */
#ifndef SBBENCH_COMMON_H
#define SBBENCH_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD 64

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	exit(1);
}

/* Call first in every child: ends it when the parent dies, and in any
 * case after `secs` seconds. */
static inline void bound_child(unsigned secs)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	alarm(secs);
}

/* One line "TAG v0 v1 ..." written with one write(), so that the lines
 * of processes sharing stdout (a pipe to the driver) do not interleave
 * (a pipe keeps writes of up to PIPE_BUF, 4096 bytes, whole: a line of
 * checkpoints of 100,000 calls is 1,700). */
static inline void print_list(const char *tag, const uint64_t *v, size_t n)
{
	size_t cap = strlen(tag) + 2 + n * 21, len = 0;
	char *line = malloc(cap);
	if (!line)
		die("malloc");
	len += (size_t)snprintf(line, cap, "%s", tag);
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(line + len, cap - len, " %llu", (unsigned long long)v[i]);
	line[len++] = '\n';
	fflush(stdout);
	for (size_t off = 0; off < len;) {
		ssize_t w = write(STDOUT_FILENO, line + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die("write stdout");
		off += (size_t)w;
	}
	free(line);
}

static inline void print_samples(const uint64_t *v, size_t n)
{
	print_list("SAMPLES", v, n);
}

/* Positive integer argument or exit 2. */
static inline long arg_long(const char *s, const char *name)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < 0) {
		fprintf(stderr, "bad %s: %s\n", name, s);
		exit(2);
	}
	return v;
}

#endif
