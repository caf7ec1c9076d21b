/*
 * ctlproto.c - the control protocol, both ends (see ctlproto.h).
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctlproto.h"

/* ctlproto_read_command - one command line from a client (2 s at most) */
int
ctlproto_read_command(int fd, char *cmd, size_t len)
{
	size_t got = 0;

	while (got < len - 1 && memchr(cmd, '\n', got) == NULL) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, CTLPROTO_READ_MS) != 1 ||
		    (n = read(fd, cmd + got, len - 1 - got)) <= 0)
			break;
		got += (size_t)n;
	}
	if (got == 0)
		return -1;
	cmd[got] = '\0';
	cmd[strcspn(cmd, "\r\n")] = '\0';
	return 0;
}

/* ctlproto_ask - send one command to a running kmilter and read the answer */
int
ctlproto_ask(const char *path, const char *cmd, char *out, size_t outlen,
    struct kmerr *err)
{
	struct sockaddr_un sun;
	size_t got = 0;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE,
		    "control socket path too long: %s", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE,
		    "cannot reach kmilter at %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	{
		char line[128];
		int n = snprintf(line, sizeof(line), "%s\n", cmd);

		/* One write: the server answers as soon as it has the line. */
		if (n < 0 || (size_t)n >= sizeof(line) ||
		    send(fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
			kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE,
			    "control socket %s: %s", path,
			    strerror(errno));
			close(fd);
			return -1;
		}
	}
	while (got + 1 < outlen) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, 5000) != 1)
			break;
		if ((n = read(fd, out + got, outlen - got - 1)) <= 0)
			break;
		got += (size_t)n;
	}
	out[got] = '\0';
	close(fd);
	return 0;
}
