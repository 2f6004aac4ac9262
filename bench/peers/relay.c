/* The raw relay floor: caller -> middle -> callee and back, 64-byte
 * messages, every process driven by poll() like an event loop.
 *
 *   relay unix|tcp seq  WARM N        N sequential round trips
 *   relay unix|tcp pipe WARM N K      N calls with K in flight
 *   relay unix|tcp pipe WARM N K M    M callers, each N calls with K in
 *                                     flight (the shape of pipe.8x8)
 *
 * Three processes (caller, middle, callee) joined by two socket pairs:
 * AF_UNIX socketpair()s, or TCP connections over 127.0.0.1 with
 * TCP_NODELAY. The middle reads whatever is ready on one side and writes
 * it to the other: the least any broker can do. seq prints one sample per
 * round trip; pipe prints the time per call of each slice of 1000 calls,
 * or, with M callers, each caller one line of checkpoints (CLOCK_MONOTONIC
 * ns: the end of its warm-up, then every 1000 calls) for the driver to
 * merge over the time all M run, as it merges pipe.8x8's. With M callers
 * the middle forwards only whole messages (a caller's partial message
 * waits for its rest) and sends each echoed message back to the caller
 * whose message it was: the callee answers in order, so a queue of
 * owners per message is all the routing there is.
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

/* One read of a drain loop: >0 bytes, 0 EOF, DRAINED when nothing more
 * is there (EAGAIN), FAILED on an error; EINTR is retried. */
#define DRAINED (-1)
#define FAILED (-2)
static ssize_t read_more(int fd, char *buf, size_t cap)
{
	for (;;) {
		ssize_t r = read(fd, buf, cap);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? DRAINED : FAILED;
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
				ssize_t r = read_more(p[i].fd, buf, sizeof buf);
				if (r == DRAINED)
					break;
				if (r <= 0)
					return;
				if (write_all(p[1 - i].fd, buf, (size_t)r) < 0)
					return;
			}
		}
	}
}

#define MAX_CALLERS 64
#define OWNERS 65536 /* more than M * K messages ever in flight */
#define OUT (1 << 16)

/* The middle for M callers: whole messages to the callee, each echo back
 * to its caller; one write per read on each side, as middle() does. */
static void middle_many(const int *caller, int m, int callee)
{
	static char buf[OUT];
	static char held[MAX_CALLERS + 1][PAYLOAD]; /* partial messages; [m]: the callee's */
	static size_t held_n[MAX_CALLERS + 1];
	static char out[MAX_CALLERS + 1][OUT]; /* [m]: to the callee */
	static size_t out_n[MAX_CALLERS + 1];
	static unsigned char owner[OWNERS];
	size_t head = 0, tail = 0;
	struct pollfd p[MAX_CALLERS + 1];
	for (int i = 0; i < m; i++)
		p[i] = (struct pollfd){ .fd = caller[i], .events = POLLIN };
	p[m] = (struct pollfd){ .fd = callee, .events = POLLIN };
	int open_callers = m;
	while (open_callers > 0) {
		if (poll(p, (nfds_t)m + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		for (int i = 0; i <= m; i++) {
			if (!p[i].revents)
				continue;
			/* Drain to EAGAIN, like an edge-triggered loop would. */
			for (;;) {
				ssize_t r = read_more(p[i].fd, buf, sizeof buf);
				if (r == DRAINED)
					break;
				if (r == FAILED || (r == 0 && i == m))
					return;
				if (r == 0) {
					close(p[i].fd);
					p[i].fd = -1;
					open_callers--;
					break;
				}
				/* Whole messages only: what a read ends with mid-message
				 * waits in held[i] for the rest. */
				const char *msg = buf;
				size_t left = (size_t)r;
				while (left > 0) {
					size_t room = PAYLOAD - held_n[i];
					size_t take = room < left ? room : left;
					memcpy(held[i] + held_n[i], msg, take);
					held_n[i] += take;
					msg += take;
					left -= take;
					if (held_n[i] < PAYLOAD)
						break;
					held_n[i] = 0;
					int to = m;
					if (i < m)
						owner[tail++ % OWNERS] = (unsigned char)i;
					else
						to = owner[head++ % OWNERS];
					memcpy(out[to] + out_n[to], held[i], PAYLOAD);
					out_n[to] += PAYLOAD;
					if (out_n[to] + PAYLOAD > OUT) {
						if (p[to].fd >= 0 && write_all(p[to].fd, out[to], out_n[to]) < 0)
							return;
						out_n[to] = 0;
					}
				}
				for (int c = 0; c <= m; c++) {
					if (out_n[c] > 0 && p[c].fd >= 0 && write_all(p[c].fd, out[c], out_n[c]) < 0)
						return;
					out_n[c] = 0;
				}
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

/* checkpoints: print absolute times (the end of the warm-up, then every
 * SLICE calls) instead of the time per call of each slice. */
static void caller_pipe(int fd, long warm, long n, long k, int checkpoints)
{
	static char buf[1 << 16];
	char *out = malloc((size_t)k * PAYLOAD);
	memset(out, 'x', (size_t)k * PAYLOAD);
	long total = warm + n, sent = 0, done = 0;
	size_t partial = 0;
	uint64_t *s = malloc(sizeof *s * (size_t)(n / SLICE + 2));
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
			if (done == warm) {
				mark = now_ns();
				if (checkpoints)
					s[ns++] = mark;
			} else if (done > warm && (done - warm) % SLICE == 0) {
				uint64_t t = now_ns();
				s[ns++] = checkpoints ? t : (t - mark) / SLICE;
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
	if (checkpoints)
		print_list("CHECKPOINTS", s, ns);
	else
		print_samples(s, ns);
}

int main(int argc, char **argv)
{
	if (argc < 5 || (strcmp(argv[1], "unix") && strcmp(argv[1], "tcp")) ||
	    (strcmp(argv[2], "seq") && strcmp(argv[2], "pipe")) ||
	    (!strcmp(argv[2], "pipe") && argc < 6)) {
		fprintf(stderr, "usage: relay unix|tcp seq WARM N | relay unix|tcp pipe WARM N K [CALLERS]\n");
		return 2;
	}
	const char *lim = getenv("SBBENCH_LIMIT");
	if (lim)
		limit_secs = (unsigned)arg_long(lim, "SBBENCH_LIMIT");
	int tcp = !strcmp(argv[1], "tcp");
	int pipe_mode = !strcmp(argv[2], "pipe");
	long warm = arg_long(argv[3], "WARM"), n = arg_long(argv[4], "N");
	long k = pipe_mode ? arg_long(argv[5], "K") : 1;
	long m = pipe_mode && argc > 6 ? arg_long(argv[6], "CALLERS") : 1;
	if (k < 1)
		k = 1;
	if (m < 1 || m > MAX_CALLERS || m * k * 2 > OWNERS) {
		fprintf(stderr, "CALLERS must be 1 to %d (and CALLERS * K below %d)\n", MAX_CALLERS,
			OWNERS / 2);
		return 2;
	}
	alarm(limit_secs);
	signal(SIGPIPE, SIG_IGN);
	int a[MAX_CALLERS][2], b[2];
	for (long i = 0; i < m; i++)
		make_pair(tcp, a[i]); /* caller a[i][0] <-> a[i][1] middle */
	make_pair(tcp, b); /* middle b[0] <-> b[1] callee */
	fflush(stdout);
	pid_t pm = fork();
	if (pm == 0) {
		bound_child(limit_secs);
		int ends[MAX_CALLERS];
		for (long i = 0; i < m; i++) {
			close(a[i][0]);
			set_nonblock(a[i][1]);
			ends[i] = a[i][1];
		}
		close(b[1]);
		set_nonblock(b[0]);
		if (m == 1)
			middle(ends[0], b[0]);
		else
			middle_many(ends, (int)m, b[0]);
		_exit(0);
	}
	pid_t pc = fork();
	if (pc == 0) {
		bound_child(limit_secs);
		for (long i = 0; i < m; i++) {
			close(a[i][0]);
			close(a[i][1]);
		}
		close(b[0]);
		set_nonblock(b[1]);
		callee(b[1]);
		_exit(0);
	}
	close(b[0]);
	close(b[1]);
	pid_t pr[MAX_CALLERS];
	for (long i = 0; i < m; i++) {
		close(a[i][1]);
		pr[i] = fork();
		if (pr[i] == 0) {
			bound_child(limit_secs);
			for (long j = i + 1; j < m; j++) {
				close(a[j][0]);
				close(a[j][1]);
			}
			set_nonblock(a[i][0]);
			if (pipe_mode)
				caller_pipe(a[i][0], warm, n, k, m > 1);
			else
				caller_seq(a[i][0], warm, n);
			_exit(0);
		}
		close(a[i][0]);
	}
	int status, rc = 0;
	for (long i = 0; i < m + 2; i++) {
		pid_t p = wait(&status);
		for (long j = 0; j < m; j++)
			if (p == pr[j] && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
				rc = 1;
	}
	return rc;
}
