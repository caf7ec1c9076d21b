/*
 * NAME
 *	nullmilter - a milter that takes every step kmilter takes and changes nothing
 * SUMMARY
 *	nullmilter -p unix:/path [-P pidfile] [-T timeout]
 * DESCRIPTION
 *	The floor for benchmarks: the protocol cost every milter pays.  It
 *	registers the same callbacks as kmilter (connect, envfrom, envrcpt,
 *	header, body, eom, abort, close) and negotiates exactly what kmilter
 *	negotiates (the same actions, the same macros, the same protocol
 *	steps: no HELO, EOH, DATA or unknown commands, no reply to headers
 *	and body chunks), keeps a small per-connection counter so each step
 *	does a little real work, and answers CONTINUE where a reply is due.
 *	It never modifies a message.
 *	The socket is created with mode 0666 so that Postfix's smtpd (user
 *	postfix) can connect.  SIGTERM/SIGINT stop it (libmilter handles them).
 * OWNERSHIP
 *	The per-connection struct is allocated in connect and freed in close.
 * ERRORS
 *	Exits 1 with a message on stderr when start-up fails.
 * THREADS
 *	libmilter runs one thread per connection; no shared state.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "callbacks.h"

/* libmilter takes char *, not const char *: keep writable copies. */
static char m_envfrom[] = "i {auth_authen}";
static char m_i[] = "i";
static char m_eom[] = "i";
static char m_auth[] = "{auth_authen}";
static char m_name[] = "nullmilter";

struct nullconn {
	unsigned long	messages;
	unsigned long	rcpts;
	unsigned long	headers;
	unsigned long	bytes;
};

/* conn_get - the connection state of ctx, or NULL */
static struct nullconn *
conn_get(SMFICTX *ctx)
{
	return smfi_getpriv(ctx);
}

/* null_negotiate - accept the MTA's offer and request kmilter's macros */
static sfsistat
null_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
    unsigned long f2, unsigned long f3, unsigned long *pf0,
    unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	*pf0 = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_QUARANTINE |
	    SMFIF_SETSYMLIST;
	*pf0 &= f0;
	*pf1 = KMILTER_MILTER_STEPS & f1;	/* kmilter's steps */
	*pf2 = 0;
	*pf3 = 0;
	if (f0 & SMFIF_SETSYMLIST) {
		smfi_setsymlist(ctx, SMFIM_ENVFROM, m_envfrom);
		smfi_setsymlist(ctx, SMFIM_EOM, m_eom);
	}
	return SMFIS_CONTINUE;
}

/* null_connect - allocate the connection state */
static sfsistat
null_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
	struct nullconn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return SMFIS_TEMPFAIL;
	smfi_setpriv(ctx, c);
	return SMFIS_CONTINUE;
}

/* null_envfrom - start a message: read the macros kmilter reads */
static sfsistat
null_envfrom(SMFICTX *ctx, char **argv)
{
	struct nullconn *c = conn_get(ctx);

	if (c == NULL)
		return SMFIS_TEMPFAIL;
	(void)smfi_getsymval(ctx, m_i);
	(void)smfi_getsymval(ctx, m_auth);
	c->rcpts = c->headers = c->bytes = 0;
	return SMFIS_CONTINUE;
}

/* null_envrcpt - count a recipient */
static sfsistat
null_envrcpt(SMFICTX *ctx, char **argv)
{
	struct nullconn *c = conn_get(ctx);

	if (c != NULL)
		c->rcpts++;
	return SMFIS_CONTINUE;
}

/* null_header - count a header (no reply, as kmilter) */
static sfsistat
null_header(SMFICTX *ctx, char *name, char *value)
{
	struct nullconn *c = conn_get(ctx);

	if (c != NULL)
		c->headers++;
	return SMFIS_NOREPLY;
}

/* null_body - count body bytes (no reply, as kmilter) */
static sfsistat
null_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct nullconn *c = conn_get(ctx);

	if (c != NULL)
		c->bytes += len;
	return SMFIS_NOREPLY;
}

/* null_eom - end of message: read the queue id, change nothing */
static sfsistat
null_eom(SMFICTX *ctx)
{
	struct nullconn *c = conn_get(ctx);

	(void)smfi_getsymval(ctx, m_i);
	if (c != NULL)
		c->messages++;
	return SMFIS_CONTINUE;
}

/* null_abort - forget the message */
static sfsistat
null_abort(SMFICTX *ctx)
{
	struct nullconn *c = conn_get(ctx);

	if (c != NULL)
		c->rcpts = c->headers = c->bytes = 0;
	return SMFIS_CONTINUE;
}

/* null_close - free the connection state (may be NULL) */
static sfsistat
null_close(SMFICTX *ctx)
{
	free(conn_get(ctx));
	smfi_setpriv(ctx, NULL);
	return SMFIS_CONTINUE;
}

static struct smfiDesc null_desc = {
	.xxfi_name = m_name,
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY |
	    SMFIF_QUARANTINE | SMFIF_SETSYMLIST,
	.xxfi_connect = null_connect,
	.xxfi_helo = NULL,
	.xxfi_envfrom = null_envfrom,
	.xxfi_envrcpt = null_envrcpt,
	.xxfi_header = null_header,
	.xxfi_eoh = NULL,
	.xxfi_body = null_body,
	.xxfi_eom = null_eom,
	.xxfi_abort = null_abort,
	.xxfi_close = null_close,
	.xxfi_negotiate = null_negotiate,
};

/* usage - print the command line and exit */
static void
usage(void)
{
	fprintf(stderr, "usage: nullmilter -p unix:/path|inet:port@host [-P pidfile] [-T timeout]\n");
	exit(2);
}

/* write_pidfile - write our pid to path, atomically (readers never see it empty) */
static int
write_pidfile(const char *path)
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

/* main - parse arguments, open the socket, run libmilter */
int
main(int argc, char **argv)
{
	const char *sock = NULL, *pidfile = NULL;
	int ch, timeout = 300, rc;

	while ((ch = getopt(argc, argv, "p:P:T:")) != -1) {
		switch (ch) {
		case 'p':
			sock = optarg;
			break;
		case 'P':
			pidfile = optarg;
			break;
		case 'T':
			timeout = atoi(optarg);
			if (timeout <= 0)
				usage();
			break;
		default:
			usage();
		}
	}
	if (sock == NULL || optind != argc)
		usage();
	umask(0111);
	if (smfi_setconn((char *)sock) == MI_FAILURE) {
		fprintf(stderr, "nullmilter: bad socket %s\n", sock);
		return 1;
	}
	smfi_settimeout(timeout);
	if (smfi_register(null_desc) == MI_FAILURE) {
		fprintf(stderr, "nullmilter: smfi_register failed\n");
		return 1;
	}
	if (smfi_opensocket(true) == MI_FAILURE) {
		fprintf(stderr, "nullmilter: cannot open %s\n", sock);
		return 1;
	}
	umask(022);
	if (pidfile != NULL && write_pidfile(pidfile) != 0) {
		fprintf(stderr, "nullmilter: %s: %s\n", pidfile, strerror(errno));
		return 1;
	}
	rc = smfi_main();
	if (pidfile != NULL)
		unlink(pidfile);
	return rc == MI_SUCCESS ? 0 : 1;
}
