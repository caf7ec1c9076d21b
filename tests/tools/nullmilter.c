/*
 * NAME
 *	nullmilter - a milter that takes every step kmilter takes and changes nothing
 * SUMMARY
 *	nullmilter -p unix:/path [-a] [-P pidfile] [-T timeout]
 * DESCRIPTION
 *	The floor for benchmarks: the protocol cost every milter pays.  By
 *	default it takes kmilter's steps: the same callbacks (connect,
 *	envfrom, envrcpt, header, body, eom, abort, close), the same actions,
 *	the same macros and the same protocol steps (no HELO, EOH, DATA or
 *	unknown commands, no reply to headers and body chunks).
 *	With -a it takes every step instead: it asks for every command
 *	(connect, HELO, MAIL, RCPT, DATA, unknown, each header, end of
 *	headers, each body chunk, end of message), answers each one, and
 *	asks for no skips: the floor of a milter that negotiates nothing
 *	away.
 *	Either way it keeps a small per-connection counter so each step does
 *	a little real work, answers CONTINUE where a reply is due and never
 *	modifies a message.
 *	The socket is created with mode 0666 so that Postfix's smtpd (user
 *	postfix) can connect.  SIGTERM/SIGINT stop it (libmilter handles them).
 * OWNERSHIP
 *	The per-connection struct is allocated in connect and freed in close.
 * ERRORS
 *	Exits 1 with a message on stderr when start-up fails.
 * THREADS
 *	libmilter runs one thread per connection; no shared state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "callbacks.h"
#include "milterrun.h"

/* libmilter takes char *, not const char *: keep writable copies. */
static char m_envfrom[] = "i {auth_authen}";
static char m_i[] = "i";
static char m_eom[] = "i";
static char m_auth[] = "{auth_authen}";
static char m_name[] = "nullmilter";

static int every_step;		/* -a: negotiate and answer every step */

struct nullconn {
	unsigned long	messages;
	unsigned long	rcpts;
	unsigned long	headers;
	unsigned long	bytes;
	unsigned long	steps;		/* HELO, DATA, unknown, EOH (-a) */
};

/* conn_get - the connection state of ctx, or NULL */
static struct nullconn *
conn_get(SMFICTX *ctx)
{
	return smfi_getpriv(ctx);
}

/* null_negotiate - accept the MTA's offer and request kmilter's macros;
 * kmilter's protocol steps, or every step with -a */
static sfsistat
null_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
    unsigned long f2, unsigned long f3, unsigned long *pf0,
    unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	*pf0 = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_QUARANTINE |
	    SMFIF_SETSYMLIST;
	*pf0 &= f0;
	*pf1 = every_step ? 0 : KMILTER_MILTER_STEPS & f1;
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

/* step_reply - the answer to a header or body chunk: none as kmilter,
 * CONTINUE with -a */
static sfsistat
step_reply(void)
{
	return every_step ? SMFIS_CONTINUE : SMFIS_NOREPLY;
}

/* null_header - count a header */
static sfsistat
null_header(SMFICTX *ctx, char *name, char *value)
{
	struct nullconn *c = conn_get(ctx);

	if (c != NULL)
		c->headers++;
	return step_reply();
}

/* null_body - count body bytes */
static sfsistat
null_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct nullconn *c = conn_get(ctx);

	if (c != NULL)
		c->bytes += len;
	return step_reply();
}

/* null_step - HELO, DATA, an unknown command, end of headers (-a only):
 * count it and go on */
static sfsistat
null_step(SMFICTX *ctx)
{
	struct nullconn *c = conn_get(ctx);

	if (c == NULL)
		return SMFIS_TEMPFAIL;
	c->steps++;
	return SMFIS_CONTINUE;
}

/* null_helo - HELO (-a only) */
static sfsistat
null_helo(SMFICTX *ctx, char *helo)
{
	return null_step(ctx);
}

/* null_unknown - an unknown SMTP command (-a only) */
static sfsistat
null_unknown(SMFICTX *ctx, const char *cmd)
{
	return null_step(ctx);
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
	.xxfi_helo = null_helo,
	.xxfi_envfrom = null_envfrom,
	.xxfi_envrcpt = null_envrcpt,
	.xxfi_header = null_header,
	.xxfi_eoh = null_step,
	.xxfi_body = null_body,
	.xxfi_eom = null_eom,
	.xxfi_abort = null_abort,
	.xxfi_close = null_close,
	.xxfi_unknown = null_unknown,
	.xxfi_data = null_step,
	.xxfi_negotiate = null_negotiate,
};

/* main - parse arguments, open the socket, run libmilter */
int
main(int argc, char **argv)
{
	return milterrun_main("nullmilter", &null_desc, argc, argv, &every_step);
}
