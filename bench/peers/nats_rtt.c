/* Peer: nats-server request/reply with libnats (the NATS C client).
 *
 *   nats_rtt seq WARM N          sequential: one sample per round trip
 *   nats_rtt pipe WARM N K       K requests in flight: time per request
 *                                over slices of 1000 (SLICE)
 *   nats_rtt seq2 WARM N         as seq, across a two-node cluster: the
 *                                requester on one node, the responder on
 *                                the other (the NATS part of fed.rtt's
 *                                path, route hop included)
 *
 * Three processes, as for a stagebus brokered call: nats-server on
 * 127.0.0.1 (a free port), a responder subscribed to "bench.echo" that
 * publishes each 64-byte request back to its reply subject, and a
 * requester that publishes 64-byte requests with its own inbox as reply
 * subject and takes the replies from a synchronous subscription (what
 * natsConnection_Request does, without its extra thread hop: NATS's best
 * case). Both clients set SendAsap, so each publish is written at once
 * instead of waiting for libnats's flusher thread. nats-server is the
 * distribution's `nats-server` (NATS_SERVER overrides the path). */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nats/nats.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define SLICE 1000
#define SUBJECT "bench.echo"

static unsigned limit_secs = 120;

static void ndie(const char *what, natsStatus s)
{
	fprintf(stderr, "%s: %s\n", what, natsStatus_GetText(s));
	exit(1);
}

/* A port free now on 127.0.0.1 (the kernel's choice). */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		die("free port");
	close(fd);
	return ntohs(a.sin_port);
}

/* Connects to `url`, retrying while the server starts (up to 10 s). */
static natsConnection *connect_to(const char *url)
{
	natsOptions *opts;
	natsStatus s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetURL(opts, url);
	if (s == NATS_OK)
		s = natsOptions_SetSendAsap(opts, true);
	if (s != NATS_OK)
		ndie("options", s);
	natsConnection *nc = NULL;
	for (int i = 0; i < 1000; i++) {
		s = natsConnection_Connect(&nc, opts);
		if (s == NATS_OK)
			break;
		usleep(10000);
	}
	if (s != NATS_OK)
		ndie("connect", s);
	natsOptions_Destroy(opts);
	return nc;
}

static void responder(const char *url, int ready_fd)
{
	natsConnection *nc = connect_to(url);
	natsSubscription *sub;
	natsStatus s = natsConnection_SubscribeSync(&sub, nc, SUBJECT);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(sub, -1, -1);
	if (s == NATS_OK)
		s = natsConnection_Flush(nc); /* the server has the subscription */
	if (s != NATS_OK)
		ndie("responder subscribe", s);
	if (write(ready_fd, "r", 1) != 1)
		exit(1);
	close(ready_fd);
	for (;;) {
		natsMsg *m;
		s = natsSubscription_NextMsg(&m, sub, 60000);
		if (s != NATS_OK)
			return;
		s = natsConnection_Publish(nc, natsMsg_GetReply(m), natsMsg_GetData(m),
					   natsMsg_GetDataLength(m));
		natsMsg_Destroy(m);
		if (s != NATS_OK)
			return;
	}
}

static void requester(const char *url, int pipelined, long warm, long n, long k)
{
	natsConnection *nc = connect_to(url);
	natsInbox *inbox;
	natsSubscription *sub;
	natsStatus s = natsInbox_Create(&inbox);
	if (s == NATS_OK)
		s = natsConnection_SubscribeSync(&sub, nc, inbox);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(sub, -1, -1);
	if (s == NATS_OK)
		s = natsConnection_Flush(nc);
	if (s != NATS_OK)
		ndie("requester subscribe", s);
	char msg[PAYLOAD];
	memset(msg, 'x', sizeof msg);
	/* Across a cluster the responder's interest reaches this node over
	 * the route some time after it subscribed: until a request is
	 * answered (no-responders statuses and silence in between), try
	 * again, up to 20 s. */
	for (int tries = 0;; tries++) {
		if (tries == 400) {
			fprintf(stderr, "the responder never answered\n");
			exit(1);
		}
		s = natsConnection_PublishRequest(nc, SUBJECT, inbox, msg, sizeof msg);
		if (s != NATS_OK)
			ndie("request", s);
		natsMsg *m;
		s = natsSubscription_NextMsg(&m, sub, 50);
		if (s == NATS_OK) {
			int answered = natsMsg_GetDataLength(m) == PAYLOAD;
			natsMsg_Destroy(m);
			if (answered)
				break;
		} else if (s == NATS_NO_RESPONDERS) {
			usleep(50000);
		} else if (s != NATS_TIMEOUT) {
			ndie("reply", s);
		}
	}
	/* Anything late of the tries above (answers, no-responders
	 * statuses) goes before the samples start. */
	for (;;) {
		natsMsg *m;
		s = natsSubscription_NextMsg(&m, sub, 200);
		if (s == NATS_OK)
			natsMsg_Destroy(m);
		else if (s != NATS_NO_RESPONDERS)
			break;
	}
	long total = warm + n;
	size_t nsamples = pipelined ? (size_t)(n / SLICE) : (size_t)n;
	uint64_t *v = malloc(sizeof *v * (nsamples ? nsamples : 1));
	size_t got = 0;
	long issued = 0, done = 0;
	long inflight = pipelined ? k : 1;
	uint64_t t0 = now_ns(), slice_t0 = 0;
	while (done < total) {
		while (issued < total && issued - done < inflight) {
			if (!pipelined)
				t0 = now_ns();
			s = natsConnection_PublishRequest(nc, SUBJECT, inbox, msg, sizeof msg);
			if (s != NATS_OK)
				ndie("request", s);
			issued++;
		}
		natsMsg *m;
		s = natsSubscription_NextMsg(&m, sub, 10000);
		if (s != NATS_OK)
			ndie("reply", s);
		if (natsMsg_GetDataLength(m) != PAYLOAD) {
			fprintf(stderr, "reply of %d bytes\n", natsMsg_GetDataLength(m));
			exit(1);
		}
		natsMsg_Destroy(m);
		done++;
		if (!pipelined) {
			if (done > warm && got < nsamples)
				v[got++] = now_ns() - t0;
		} else if (done == warm) {
			slice_t0 = now_ns();
		} else if (done > warm && (done - warm) % SLICE == 0 && got < nsamples) {
			uint64_t t = now_ns();
			v[got++] = (t - slice_t0) / SLICE;
			slice_t0 = t;
		}
	}
	print_samples(v, got);
	natsSubscription_Destroy(sub);
	natsInbox_Destroy(inbox);
	natsConnection_Destroy(nc);
}

/* Starts nats-server on 127.0.0.1:port, listening for routes on
 * `cluster` and routed to `route_to` (cluster ports) when those are
 * non-zero. */
static pid_t start_server(const char *server, int port, int cluster, int route_to)
{
	char port_s[16], cluster_s[64], route_s[64];
	snprintf(port_s, sizeof port_s, "%d", port);
	snprintf(cluster_s, sizeof cluster_s, "nats://127.0.0.1:%d", cluster);
	snprintf(route_s, sizeof route_s, "nats://127.0.0.1:%d", route_to);
	pid_t pid = fork();
	if (pid == 0) {
		bound_child(limit_secs);
		/* Its log (startup lines) is not ours to print. */
		freopen("/dev/null", "w", stdout);
		freopen("/dev/null", "w", stderr);
		if (route_to)
			execlp(server, server, "-a", "127.0.0.1", "-p", port_s, "--cluster_name", "bench",
			       "--cluster", cluster_s, "--routes", route_s, (char *)NULL);
		else if (cluster)
			execlp(server, server, "-a", "127.0.0.1", "-p", port_s, "--cluster_name", "bench",
			       "--cluster", cluster_s, (char *)NULL);
		else
			execlp(server, server, "-a", "127.0.0.1", "-p", port_s, (char *)NULL);
		_exit(127);
	}
	return pid;
}

int main(int argc, char **argv)
{
	int pipelined = argc >= 5 && !strcmp(argv[1], "pipe");
	int two_nodes = argc >= 4 && !strcmp(argv[1], "seq2");
	if (!(argc >= 4 && !strcmp(argv[1], "seq")) && !pipelined && !two_nodes) {
		fprintf(stderr, "usage: nats_rtt seq WARM N | nats_rtt seq2 WARM N | nats_rtt pipe WARM N K\n");
		return 2;
	}
	const char *lim = getenv("SBBENCH_LIMIT");
	if (lim)
		limit_secs = (unsigned)arg_long(lim, "SBBENCH_LIMIT");
	long warm = arg_long(argv[2], "WARM"), n = arg_long(argv[3], "N");
	long k = pipelined ? arg_long(argv[4], "K") : 1;
	if (k < 1) {
		fprintf(stderr, "K must be at least 1\n");
		return 2;
	}
	alarm(limit_secs);
	const char *server = getenv("NATS_SERVER");
	if (!server)
		server = access("/usr/sbin/nats-server", X_OK) == 0 ? "/usr/sbin/nats-server" : "nats-server";
	int port = free_port(), port2 = two_nodes ? free_port() : 0;
	char url[64], url2[64];
	snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
	snprintf(url2, sizeof url2, "nats://127.0.0.1:%d", two_nodes ? port2 : port);
	fflush(stdout);
	pid_t ps, ps2 = 0;
	if (two_nodes) {
		int c1 = free_port(), c2 = free_port();
		/* One route, from the second node to the first: two nodes
		 * routing to each other would drop a duplicate route after
		 * start, with whatever crossed it. */
		ps = start_server(server, port, c1, 0);
		ps2 = start_server(server, port2, c2, c1);
	} else {
		ps = start_server(server, port, 0, 0);
	}
	int rp[2];
	if (pipe(rp) < 0)
		die("pipe");
	pid_t pr = fork();
	if (pr == 0) {
		bound_child(limit_secs);
		close(rp[0]);
		/* Across the cluster: the responder on the second node. */
		responder(url2, rp[1]);
		_exit(0);
	}
	close(rp[1]);
	char c;
	int rc = 1;
	if (read(rp[0], &c, 1) == 1) {
		requester(url, pipelined, warm, n, k);
		rc = 0;
	} else {
		fprintf(stderr, "the responder did not start (is nats-server installed?)\n");
	}
	kill(pr, SIGTERM);
	kill(ps, SIGTERM);
	if (ps2)
		kill(ps2, SIGTERM);
	waitpid(pr, NULL, 0);
	waitpid(ps, NULL, 0);
	if (ps2)
		waitpid(ps2, NULL, 0);
	return rc;
}
