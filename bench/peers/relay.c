/* The raw relay floor: caller -> middle -> callee and back, 64-byte
 * messages, every process driven by poll() like an event loop.
 *
 *   relay unix|tcp seq  WARM N        N sequential round trips
 *   relay unix|tcp pipe WARM N K      N calls with K in flight
 *
 * Three processes (caller, middle, callee) joined by two socket pairs:
 * AF_UNIX socketpair()s, or TCP connections over 127.0.0.1 with
 * TCP_NODELAY. The middle reads whatever is ready on one side and writes
 * it to the other: the least any broker can do. seq prints one sample per
 * round trip; pipe prints the time per call of each slice of 1000 calls.
 * Everything ends by itself: the caller closes when done, the others see
 * EOF; alarm() bounds every process. */
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define SLICE 1000

static unsigned limit_secs = 120;

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		die("fcntl");
}

static void nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* A connected pair of stream sockets over AF_UNIX or TCP loopback. */
static void make_pair(int tcp, int sv[2])
{
	if (!tcp) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
			die("socketpair");
		return;
	}
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof a;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0)
		die("listen 127.0.0.1");
	sv[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (sv[0] < 0 || connect(sv[0], (struct sockaddr *)&a, sizeof a) < 0)
		die("connect 127.0.0.1");
	sv[1] = accept(l, NULL, NULL);
	if (sv[1] < 0)
		die("accept");
	close(l);
	nodelay(sv[0]);
	nodelay(sv[1]);
}

/* Waits until fd is ready for `events`. */
static void wait_fd(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR)
			die("poll");
}

/* Writes all of buf to a non-blocking fd, polling when it is full. */
static int write_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, buf, n);
		if (w > 0) {
			buf += w;
			n -= (size_t)w;
		} else if (w < 0 && errno == EAGAIN) {
			wait_fd(fd, POLLOUT);
		} else if (w < 0 && errno == EINTR) {
			continue;
		} else {
			return -1;
		}
	}
	return 0;
}

/* Reads what is there after poll() said readable: >0 bytes, 0 EOF. */
static ssize_t read_ready(int fd, char *buf, size_t cap)
{
	for (;;) {
		wait_fd(fd, POLLIN);
		ssize_t r = read(fd, buf, cap);
		if (r >= 0)
			return r;
		if (errno != EAGAIN && errno != EINTR)
			return 0;
	}
}

static void middle(int a, int b)
{
	static char buf[1 << 16];
	struct pollfd p[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		for (int i = 0; i < 2; i++) {
			if (!p[i].revents)
				continue;
			/* Drain to EAGAIN, like an edge-triggered loop would. */
			for (;;) {
				ssize_t r = read(p[i].fd, buf, sizeof buf);
				if (r == 0)
					return;
				if (r < 0) {
					if (errno == EAGAIN)
						break;
					if (errno == EINTR)
						continue;
					return;
				}
				if (write_all(p[1 - i].fd, buf, (size_t)r) < 0)
					return;
			}
		}
	}
}

static void callee(int fd)
{
	static char buf[1 << 16];
	for (;;) {
		ssize_t r = read_ready(fd, buf, sizeof buf);
		if (r <= 0 || write_all(fd, buf, (size_t)r) < 0)
			return;
	}
}

static void caller_seq(int fd, long warm, long n)
{
	char msg[PAYLOAD], in[PAYLOAD];
	memset(msg, 'x', sizeof msg);
	uint64_t *s = malloc(sizeof *s * (size_t)(n ? n : 1));
	for (long i = 0; i < warm + n; i++) {
		uint64_t t0 = now_ns();
		if (write_all(fd, msg, sizeof msg) < 0)
			die("write");
		size_t got = 0;
		while (got < sizeof in) {
			ssize_t r = read_ready(fd, in + got, sizeof in - got);
			if (r <= 0)
				die("read");
			got += (size_t)r;
		}
		if (i >= warm)
			s[i - warm] = now_ns() - t0;
	}
	print_samples(s, (size_t)n);
}

static void caller_pipe(int fd, long warm, long n, long k)
{
	static char buf[1 << 16];
	char *out = malloc((size_t)k * PAYLOAD);
	memset(out, 'x', (size_t)k * PAYLOAD);
	long total = warm + n, sent = 0, done = 0;
	size_t partial = 0;
	uint64_t *s = malloc(sizeof *s * (size_t)(n / SLICE + 1));
	size_t ns = 0;
	uint64_t mark = 0;
	long first = k < total ? k : total;
	if (write_all(fd, out, (size_t)first * PAYLOAD) < 0)
		die("write");
	sent = first;
	while (done < total) {
		ssize_t r = read_ready(fd, buf, sizeof buf);
		if (r <= 0)
			die("read");
		partial += (size_t)r;
		long fin = (long)(partial / PAYLOAD);
		partial %= PAYLOAD;
		for (long j = 0; j < fin; j++) {
			done++;
			if (done == warm)
				mark = now_ns();
			else if (done > warm && (done - warm) % SLICE == 0) {
				uint64_t t = now_ns();
				s[ns++] = (t - mark) / SLICE;
				mark = t;
			}
		}
		long more = total - sent < fin ? total - sent : fin;
		if (more > 0) {
			if (write_all(fd, out, (size_t)more * PAYLOAD) < 0)
				die("write");
			sent += more;
		}
	}
	print_samples(s, ns);
}

int main(int argc, char **argv)
{
	if (argc < 5 || (strcmp(argv[1], "unix") && strcmp(argv[1], "tcp")) ||
	    (strcmp(argv[2], "seq") && strcmp(argv[2], "pipe")) ||
	    (!strcmp(argv[2], "pipe") && argc < 6)) {
		fprintf(stderr, "usage: relay unix|tcp seq WARM N | relay unix|tcp pipe WARM N K\n");
		return 2;
	}
	const char *lim = getenv("SBBENCH_LIMIT");
	if (lim)
		limit_secs = (unsigned)arg_long(lim, "SBBENCH_LIMIT");
	int tcp = !strcmp(argv[1], "tcp");
	int pipe_mode = !strcmp(argv[2], "pipe");
	long warm = arg_long(argv[3], "WARM"), n = arg_long(argv[4], "N");
	long k = pipe_mode ? arg_long(argv[5], "K") : 1;
	if (k < 1)
		k = 1;
	alarm(limit_secs);
	signal(SIGPIPE, SIG_IGN);
	int a[2], b[2];
	make_pair(tcp, a); /* caller a[0] <-> a[1] middle */
	make_pair(tcp, b); /* middle b[0] <-> b[1] callee */
	fflush(stdout);
	pid_t pm = fork();
	if (pm == 0) {
		bound_child(limit_secs);
		close(a[0]);
		close(b[1]);
		set_nonblock(a[1]);
		set_nonblock(b[0]);
		middle(a[1], b[0]);
		_exit(0);
	}
	pid_t pc = fork();
	if (pc == 0) {
		bound_child(limit_secs);
		close(a[0]);
		close(a[1]);
		close(b[0]);
		set_nonblock(b[1]);
		callee(b[1]);
		_exit(0);
	}
	close(a[1]);
	close(b[0]);
	close(b[1]);
	pid_t pr = fork();
	if (pr == 0) {
		bound_child(limit_secs);
		set_nonblock(a[0]);
		if (pipe_mode)
			caller_pipe(a[0], warm, n, k);
		else
			caller_seq(a[0], warm, n);
		_exit(0);
	}
	close(a[0]);
	int status, rc = 0;
	for (int i = 0; i < 3; i++) {
		pid_t p = wait(&status);
		if (p == pr && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
			rc = 1;
	}
	return rc;
}
