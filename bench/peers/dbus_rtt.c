/* Peer: dbus-daemon method call round trip on a private bus (libdbus).
 *
 *   dbus_rtt WARM N
 *
 * Starts dbus-daemon on a Unix socket in a fresh temporary directory with
 * its own config (nothing touches the system or session bus), a server
 * that owns org.sbbench.Echo and answers Echo(s) with the same string,
 * and a caller making N blocking calls with a 64-byte string
 * (dbus_connection_send_with_reply_and_block). Caller, daemon and server
 * are separate processes. Prints one sample per round trip. */
#include "common.h"

#include <dbus/dbus.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

static unsigned limit_secs = 120;

static DBusConnection *connect_bus(const char *addr)
{
	DBusError err;
	dbus_error_init(&err);
	DBusConnection *c = dbus_connection_open_private(addr, &err);
	if (!c || !dbus_bus_register(c, &err)) {
		fprintf(stderr, "dbus connect %s: %s\n", addr, err.message ? err.message : "?");
		exit(1);
	}
	return c;
}

static void server(const char *addr, int ready_fd)
{
	DBusConnection *c = connect_bus(addr);
	DBusError err;
	dbus_error_init(&err);
	if (dbus_bus_request_name(c, "org.sbbench.Echo", DBUS_NAME_FLAG_DO_NOT_QUEUE, &err) !=
	    DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER) {
		fprintf(stderr, "request_name: %s\n", err.message ? err.message : "not primary");
		exit(1);
	}
	if (write(ready_fd, "r", 1) != 1)
		exit(1);
	close(ready_fd);
	while (dbus_connection_read_write(c, -1)) {
		DBusMessage *m;
		while ((m = dbus_connection_pop_message(c))) {
			if (dbus_message_is_method_call(m, "org.sbbench.Echo", "Echo")) {
				const char *s = NULL;
				DBusMessage *r = dbus_message_new_method_return(m);
				if (dbus_message_get_args(m, NULL, DBUS_TYPE_STRING, &s, DBUS_TYPE_INVALID))
					dbus_message_append_args(r, DBUS_TYPE_STRING, &s, DBUS_TYPE_INVALID);
				dbus_connection_send(c, r, NULL);
				dbus_connection_flush(c);
				dbus_message_unref(r);
			} else if (dbus_message_is_method_call(m, "org.sbbench.Echo", "Quit") ||
				   dbus_message_is_signal(m, DBUS_INTERFACE_LOCAL, "Disconnected")) {
				exit(0);
			}
			dbus_message_unref(m);
		}
	}
}

static void caller(const char *addr, long warm, long n)
{
	DBusConnection *c = connect_bus(addr);
	char payload[PAYLOAD + 1];
	memset(payload, 'x', PAYLOAD);
	payload[PAYLOAD] = '\0';
	const char *p = payload;
	uint64_t *s = malloc(sizeof *s * (size_t)(n ? n : 1));
	for (long i = 0; i < warm + n; i++) {
		uint64_t t0 = now_ns();
		DBusMessage *m = dbus_message_new_method_call("org.sbbench.Echo", "/org/sbbench/Echo",
							      "org.sbbench.Echo", "Echo");
		dbus_message_append_args(m, DBUS_TYPE_STRING, &p, DBUS_TYPE_INVALID);
		DBusError err;
		dbus_error_init(&err);
		DBusMessage *r = dbus_connection_send_with_reply_and_block(c, m, 5000, &err);
		if (!r) {
			fprintf(stderr, "call: %s\n", err.message);
			exit(1);
		}
		uint64_t t1 = now_ns();
		dbus_message_unref(m);
		dbus_message_unref(r);
		if (i >= warm)
			s[i - warm] = t1 - t0;
	}
	DBusMessage *q = dbus_message_new_method_call("org.sbbench.Echo", "/org/sbbench/Echo",
						      "org.sbbench.Echo", "Quit");
	dbus_message_set_no_reply(q, TRUE);
	dbus_connection_send(c, q, NULL);
	dbus_connection_flush(c);
	print_samples(s, (size_t)n);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: dbus_rtt WARM N\n");
		return 2;
	}
	const char *lim = getenv("SBBENCH_LIMIT");
	if (lim)
		limit_secs = (unsigned)arg_long(lim, "SBBENCH_LIMIT");
	long warm = arg_long(argv[1], "WARM"), n = arg_long(argv[2], "N");
	alarm(limit_secs);
	char dir[] = "/tmp/sbbench-dbus-XXXXXX";
	if (!mkdtemp(dir))
		die("mkdtemp");
	char conf[256], addr[256];
	snprintf(conf, sizeof conf, "%s/bus.conf", dir);
	snprintf(addr, sizeof addr, "unix:path=%s/bus", dir);
	FILE *f = fopen(conf, "w");
	if (!f)
		die("bus.conf");
	fprintf(f,
		"<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
		" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
		"<busconfig>\n"
		"  <type>sbbench</type>\n"
		"  <listen>%s</listen>\n"
		"  <auth>EXTERNAL</auth>\n"
		"  <policy context=\"default\">\n"
		"    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n"
		"    <allow eavesdrop=\"true\"/>\n"
		"    <allow own=\"*\"/>\n"
		"  </policy>\n"
		"</busconfig>\n",
		addr);
	fclose(f);

	int ap[2];
	if (pipe(ap) < 0)
		die("pipe");
	fflush(stdout);
	pid_t pd = fork();
	if (pd == 0) {
		bound_child(limit_secs);
		close(ap[0]);
		dup2(ap[1], 3);
		/* As root it warns that it cannot raise its fd limit; harmless. */
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			dup2(devnull, 2);
		char confarg[300];
		snprintf(confarg, sizeof confarg, "--config-file=%s", conf);
		execlp("dbus-daemon", "dbus-daemon", confarg, "--nofork", "--nopidfile",
		       "--print-address=3", (char *)NULL);
		die("exec dbus-daemon");
	}
	close(ap[1]);
	char line[512];
	ssize_t got = read(ap[0], line, sizeof line - 1);
	if (got <= 0) {
		fprintf(stderr, "dbus-daemon did not start\n");
		kill(pd, SIGTERM);
		return 1;
	}
	close(ap[0]);

	int rp[2];
	if (pipe(rp) < 0)
		die("pipe");
	pid_t ps = fork();
	if (ps == 0) {
		bound_child(limit_secs);
		close(rp[0]);
		server(addr, rp[1]);
		_exit(0);
	}
	close(rp[1]);
	char r;
	if (read(rp[0], &r, 1) != 1) {
		fprintf(stderr, "echo server did not start\n");
		kill(pd, SIGTERM);
		kill(ps, SIGTERM);
		return 1;
	}
	pid_t pc = fork();
	if (pc == 0) {
		bound_child(limit_secs);
		caller(addr, warm, n);
		_exit(0);
	}
	int status, rc = 0;
	waitpid(pc, &status, 0);
	if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		rc = 1;
	waitpid(ps, NULL, 0);
	kill(pd, SIGTERM);
	waitpid(pd, NULL, 0);
	unlink(conf);
	char sock[300];
	snprintf(sock, sizeof sock, "%s/bus", dir);
	unlink(sock);
	rmdir(dir);
	return rc;
}
