/* Peer: libzmq REQ -> ROUTER/proxy/DEALER -> REP round trip.
 *
 *   zmq_rtt ipc|tcp WARM N
 *
 * Three processes: a proxy (zmq_proxy between a ROUTER frontend and a
 * DEALER backend), a REP echo server connected to the backend, and a REQ
 * caller connected to the frontend sending 64-byte messages. Endpoints
 * are ipc:// in a fresh temporary directory or tcp://127.0.0.1 with
 * kernel-chosen ports. Prints one sample per round trip. */
#include "common.h"

#include <sys/wait.h>
#include <zmq.h>

static unsigned limit_secs = 120;

static void zdie(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, zmq_strerror(zmq_errno()));
	exit(1);
}

static void proxy(const char *front, const char *back, int ready_fd)
{
	void *ctx = zmq_ctx_new();
	void *r = zmq_socket(ctx, ZMQ_ROUTER), *d = zmq_socket(ctx, ZMQ_DEALER);
	if (zmq_bind(r, front) < 0 || zmq_bind(d, back) < 0)
		zdie("bind");
	char ep[2][256];
	size_t l0 = sizeof ep[0], l1 = sizeof ep[1];
	zmq_getsockopt(r, ZMQ_LAST_ENDPOINT, ep[0], &l0);
	zmq_getsockopt(d, ZMQ_LAST_ENDPOINT, ep[1], &l1);
	if (write(ready_fd, ep, sizeof ep) != (ssize_t)sizeof ep)
		exit(1);
	close(ready_fd);
	zmq_proxy(r, d, NULL);
}

static void server(const char *back)
{
	void *ctx = zmq_ctx_new();
	void *s = zmq_socket(ctx, ZMQ_REP);
	if (zmq_connect(s, back) < 0)
		zdie("connect backend");
	char buf[PAYLOAD];
	for (;;) {
		int n = zmq_recv(s, buf, sizeof buf, 0);
		if (n < 0 || zmq_send(s, buf, (size_t)n, 0) < 0)
			return;
	}
}

static void caller(const char *front, long warm, long n)
{
	void *ctx = zmq_ctx_new();
	void *s = zmq_socket(ctx, ZMQ_REQ);
	int zero = 0;
	zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
	if (zmq_connect(s, front) < 0)
		zdie("connect frontend");
	char msg[PAYLOAD], in[PAYLOAD];
	memset(msg, 'x', sizeof msg);
	uint64_t *v = malloc(sizeof *v * (size_t)(n ? n : 1));
	for (long i = 0; i < warm + n; i++) {
		uint64_t t0 = now_ns();
		if (zmq_send(s, msg, sizeof msg, 0) < 0 || zmq_recv(s, in, sizeof in, 0) < 0)
			zdie("round trip");
		if (i >= warm)
			v[i - warm] = now_ns() - t0;
	}
	print_samples(v, (size_t)n);
	zmq_close(s);
	zmq_ctx_term(ctx);
}

int main(int argc, char **argv)
{
	if (argc < 4 || (strcmp(argv[1], "ipc") && strcmp(argv[1], "tcp"))) {
		fprintf(stderr, "usage: zmq_rtt ipc|tcp WARM N\n");
		return 2;
	}
	const char *lim = getenv("SBBENCH_LIMIT");
	if (lim)
		limit_secs = (unsigned)arg_long(lim, "SBBENCH_LIMIT");
	long warm = arg_long(argv[2], "WARM"), n = arg_long(argv[3], "N");
	alarm(limit_secs);
	char dir[] = "/tmp/sbbench-zmq-XXXXXX";
	char front[256], back[256];
	int ipc = !strcmp(argv[1], "ipc");
	if (ipc) {
		if (!mkdtemp(dir))
			die("mkdtemp");
		snprintf(front, sizeof front, "ipc://%s/front", dir);
		snprintf(back, sizeof back, "ipc://%s/back", dir);
	} else {
		snprintf(front, sizeof front, "tcp://127.0.0.1:*");
		snprintf(back, sizeof back, "tcp://127.0.0.1:*");
	}
	int rp[2];
	if (pipe(rp) < 0)
		die("pipe");
	fflush(stdout);
	pid_t pp = fork();
	if (pp == 0) {
		bound_child(limit_secs);
		close(rp[0]);
		proxy(front, back, rp[1]);
		_exit(0);
	}
	close(rp[1]);
	char ep[2][256];
	if (read(rp[0], ep, sizeof ep) != (ssize_t)sizeof ep) {
		fprintf(stderr, "proxy did not start\n");
		kill(pp, SIGTERM);
		return 1;
	}
	pid_t ps = fork();
	if (ps == 0) {
		bound_child(limit_secs);
		server(ep[1]);
		_exit(0);
	}
	pid_t pc = fork();
	if (pc == 0) {
		bound_child(limit_secs);
		caller(ep[0], warm, n);
		_exit(0);
	}
	int status, rc = 0;
	waitpid(pc, &status, 0);
	if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		rc = 1;
	kill(ps, SIGTERM);
	kill(pp, SIGTERM);
	waitpid(ps, NULL, 0);
	waitpid(pp, NULL, 0);
	if (ipc) {
		char p[300];
		snprintf(p, sizeof p, "%s/front", dir);
		unlink(p);
		snprintf(p, sizeof p, "%s/back", dir);
		unlink(p);
		rmdir(dir);
	}
	return rc;
}
