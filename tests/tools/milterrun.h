/*
 * NAME
 *	milterrun - the start-up the benchmarks' milters share
 * SUMMARY
 *	#include "milterrun.h"
 *	int milterrun(const char *name, struct smfiDesc *desc,
 *	    const char *sock, const char *pidfile, int timeout);
 *	int milterrun_main(const char *name, struct smfiDesc *desc,
 *	    int argc, char **argv, int *flag_a);
 * DESCRIPTION
 *	milterrun() opens sock with mode 0666 (Postfix's smtpd, user postfix,
 *	connects to it), registers desc, writes our pid to pidfile (when not
 *	NULL; atomically, readers never see it empty), runs smfi_main() until
 *	SIGTERM/SIGINT and removes the pid file.  For the milters in
 *	tests/tools (nullmilter, rewritemilter): header-only, as each tool is
 *	one .c file.  milterrun_main() parses their common command line
 *	(-p socket, -P pidfile, -T timeout; -a sets *flag_a when flag_a is not
 *	NULL), prints the usage and exits 2 on a bad one, then milterrun().
 * ERRORS
 *	Returns 1 with a message on stderr (prefixed with name) when start-up
 *	or smfi_main fails, 0 otherwise.
 */
#ifndef MILTERRUN_H
#define MILTERRUN_H

#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

/* milterrun_pidfile - write our pid to path via a renamed temporary file */
static int
milterrun_pidfile(const char *path)
{
	char tmp[4096];
	FILE *fp;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp) ||
	    (fp = fopen(tmp, "w")) == NULL)
		return -1;
	fprintf(fp, "%ld\n", (long)getpid());
	if (fclose(fp) != 0)
		return -1;
	return rename(tmp, path);
}

/* milterrun - open the socket, register, run libmilter */
static int
milterrun(const char *name, struct smfiDesc *desc, const char *sock,
    const char *pidfile, int timeout)
{
	int rc;

	umask(0111);
	if (smfi_setconn((char *)sock) == MI_FAILURE) {
		fprintf(stderr, "%s: bad socket %s\n", name, sock);
		return 1;
	}
	smfi_settimeout(timeout);
	if (smfi_register(*desc) == MI_FAILURE) {
		fprintf(stderr, "%s: smfi_register failed\n", name);
		return 1;
	}
	if (smfi_opensocket(true) == MI_FAILURE) {
		fprintf(stderr, "%s: cannot open %s\n", name, sock);
		return 1;
	}
	umask(022);
	if (pidfile != NULL && milterrun_pidfile(pidfile) != 0) {
		fprintf(stderr, "%s: %s: %s\n", name, pidfile, strerror(errno));
		return 1;
	}
	rc = smfi_main();
	if (pidfile != NULL)
		unlink(pidfile);
	return rc == MI_SUCCESS ? 0 : 1;
}

/* milterrun_usage - print the command line and exit */
static void
milterrun_usage(const char *name, int flag_a)
{
	fprintf(stderr, "usage: %s -p unix:/path|inet:port@host%s [-P pidfile] [-T timeout]\n",
	    name, flag_a ? " [-a]" : "");
	exit(2);
}

/* milterrun_main - parse the common arguments, open the socket, run libmilter */
static int
milterrun_main(const char *name, struct smfiDesc *desc, int argc, char **argv,
    int *flag_a)
{
	const char *sock = NULL, *pidfile = NULL;
	int ch, timeout = 300;

	while ((ch = getopt(argc, argv, flag_a != NULL ? "ap:P:T:" : "p:P:T:")) != -1) {
		switch (ch) {
		case 'a':
			*flag_a = 1;
			break;
		case 'p':
			sock = optarg;
			break;
		case 'P':
			pidfile = optarg;
			break;
		case 'T':
			timeout = atoi(optarg);
			if (timeout <= 0)
				milterrun_usage(name, flag_a != NULL);
			break;
		default:
			milterrun_usage(name, flag_a != NULL);
		}
	}
	if (sock == NULL || optind != argc)
		milterrun_usage(name, flag_a != NULL);
	return milterrun(name, desc, sock, pidfile, timeout);
}

#endif
