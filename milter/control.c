/*
 * control.c - the local control socket (see control.h).
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "ctlproto.h"
#include "keystore.h"
#include "log.h"
#include "runtime.h"
#include "stats.h"

static int listen_fd = -1;
static int stop_pipe[2] = { -1, -1 };
static pthread_t control_tid;
static char control_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

/* answer_stats - the counters, one name=value per line */
static size_t
answer_stats(char *buf, size_t len)
{
	struct keystore_stats ks;
	size_t n = stats_format(buf, len);

	memset(&ks, 0, sizeof(ks));
	runtime_pin();
	if (runtime_keystore() != NULL)
		keystore_stats(runtime_keystore(), &ks);
	runtime_unpin();
	/* stats_format writes "stats: a=1 b=2 ..."; make it one per line. */
	for (size_t i = 0; i < n; i++)
		if (buf[i] == ' ')
			buf[i] = '\n';
	if (n < len)
		n += (size_t)snprintf(buf + n, len - n,
		    "\nkeys_lookups=%lu\nkeys_l1_hits=%lu\nkeys_l2_hits=%lu\nkeys_km_fetches=%lu\n"
		    "keys_misses=%lu\nkeys_km_errors=%lu\nkeys_l2_errors=%lu\nhook_calls=%lu\n"
		    "hook_unlocked=%lu\nhook_locked=%lu\n",
		    ks.lookups, ks.l1_hits, ks.l2_hits, ks.km_fetches, ks.misses, ks.km_errors,
		    ks.l2_errors, ks.hook_calls, ks.hook_unlocked, ks.hook_locked);
	return n < len ? n : len - 1;
}

/* serve - read one command from a client and answer it */
static void
serve(int fd)
{
	char cmd[CTLPROTO_CMD_MAX], out[4096];
	size_t len;

	if (ctlproto_read_command(fd, cmd, sizeof(cmd)) != 0)
		return;
	if (strcmp(cmd, "stats") == 0) {
		len = answer_stats(out, sizeof(out));
		out[len] = '\0';
		/* drop the "stats:" word the log line starts with */
		if (strncmp(out, "stats:\n", 7) == 0)
			memmove(out, out + 7, strlen(out + 7) + 1);
	} else
		snprintf(out, sizeof(out), "error: unknown command \"%.40s\" (try: stats)\n", cmd);
	if (send(fd, out, strlen(out), MSG_NOSIGNAL) < 0)
		log_debug(1, "control: client went away: %s", strerror(errno));
}

/* control_thread - accept clients until control_stop() */
static void *
control_thread(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p[2] = { { listen_fd, POLLIN, 0 }, { stop_pipe[0], POLLIN, 0 } };
		int fd;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		if ((fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC)) < 0)
			continue;
		serve(fd);
		close(fd);
	}
	return NULL;
}

/* control_start - listen on path (mode 0600) in a thread of its own */
int
control_start(const char *path, struct kmerr *err)
{
	struct sockaddr_un sun;
	mode_t old;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "control socket path too long: %s", path);
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	strcpy(control_path, path);
	unlink(path);
	if ((listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    pipe2(stop_pipe, O_CLOEXEC) != 0) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "control socket: %s",
		    strerror(errno));
		return -1;
	}
	old = umask(0177);
	if (bind(listen_fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
	    listen(listen_fd, 8) != 0) {
		umask(old);
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "control socket %s: %s",
		    path, strerror(errno));
		return -1;
	}
	umask(old);
	if (pthread_create(&control_tid, NULL, control_thread, NULL) != 0) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "control thread: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* control_stop - stop the listener and remove the socket */
void
control_stop(void)
{
	if (listen_fd < 0)
		return;
	if (write(stop_pipe[1], "x", 1) == 1)
		pthread_join(control_tid, NULL);
	close(listen_fd);
	listen_fd = -1;
	unlink(control_path);
}
