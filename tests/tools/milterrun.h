/*
 * NAME
 *	milterrun - the start-up the benchmarks' milters share
 * SUMMARY
 *	#include "milterrun.h"
 *	int milterrun(const char *name, struct smfiDesc *desc,
 *	    const char *sock, const char *pidfile, int timeout);
 * DESCRIPTION
 *	milterrun() opens sock with mode 0666 (Postfix's smtpd, user postfix,
 *	connects to it), registers desc, writes our pid to pidfile (when not
 *	NULL; atomically, readers never see it empty), runs smfi_main() until
 *	SIGTERM/SIGINT and removes the pid file.  For the milters in
 *	tests/tools (nullmilter, rewritemilter): header-only, as each tool is
 *	one .c file.
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

#endif
