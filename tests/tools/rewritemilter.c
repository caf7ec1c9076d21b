/*
 * NAME
 *	rewritemilter - a milter that replaces each body with its base64
 * SUMMARY
 *	rewritemilter -p unix:/path [-P pidfile] [-T timeout]
 * DESCRIPTION
 *	The benchmarks' reference for a milter that rewrites every message
 *	as kmilter does, minus the cryptography.  It negotiates kmilter's
 *	protocol steps (KMILTER_MILTER_STEPS) and actions, encodes the body
 *	as it arrives (base64, 76-character lines ending in CRLF, as kmilter
 *	writes a CMS body), and at end of message sets
 *	Content-Transfer-Encoding: base64 and hands the new body to the MTA
 *	with smfi_replacebody in chunks of at most REPLACE_CHUNK bytes.  A
 *	body that is already base64 (Content-Transfer-Encoding: base64) is
 *	encoded again all the same: the point is the work, not the result.
 * OWNERSHIP
 *	The per-connection struct (and its encoded body) is allocated in
 *	connect and freed in close.
 * ERRORS
 *	Exits 1 with a message on stderr when start-up fails; a message whose
 *	body cannot be held (out of memory) is tempfailed.
 * THREADS
 *	libmilter runs one thread per connection; no shared state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <libmilter/mfapi.h>

#include "callbacks.h"
#include "milterrun.h"

#define B64_LINE_IN	57		/* input bytes per 76-character line */
#define B64_LINE_OUT	(76 + 2)	/* one encoded line with CRLF */
#define REPLACE_CHUNK	(64 * 1024)	/* bytes per smfi_replacebody call */

static char m_name[] = "rewritemilter";
static char m_cte[] = "Content-Transfer-Encoding";
static char m_base64[] = "base64";

struct rwconn {
	unsigned char	 part[B64_LINE_IN];	/* input not yet a whole line */
	size_t		 partlen;
	unsigned char	*out;			/* encoded body so far */
	size_t		 outlen;
	size_t		 outsize;
	int		 has_cte;		/* the message has a CTE header */
	int		 failed;		/* out of memory: tempfail at EOM */
};

/* conn_get - the connection state of ctx, or NULL */
static struct rwconn *
conn_get(SMFICTX *ctx)
{
	return smfi_getpriv(ctx);
}

/* conn_reset - forget the message, keep the buffer for the next one */
static void
conn_reset(struct rwconn *c)
{
	c->partlen = c->outlen = 0;
	c->has_cte = c->failed = 0;
}

/* out_room - make room for n more encoded bytes; -1 when out of memory */
static int
out_room(struct rwconn *c, size_t n)
{
	unsigned char *p;
	size_t want;

	if (c->outsize - c->outlen >= n)
		return 0;
	want = c->outsize ? c->outsize : 32 * 1024;
	while (want - c->outlen < n) {
		if (want > ((size_t)-1) / 2)
			return -1;
		want *= 2;
	}
	if ((p = realloc(c->out, want)) == NULL)
		return -1;
	c->out = p;
	c->outsize = want;
	return 0;
}

/* encode_line - append the base64 of len (<= 57) input bytes and CRLF */
static void
encode_line(struct rwconn *c, const unsigned char *in, size_t len)
{
	int n;

	n = EVP_EncodeBlock(c->out + c->outlen, in, (int)len);
	c->outlen += (size_t)n;
	c->out[c->outlen++] = '\r';
	c->out[c->outlen++] = '\n';
}

/* encode_chunk - encode whole lines of chunk, keep the rest in part */
static int
encode_chunk(struct rwconn *c, const unsigned char *chunk, size_t len)
{
	size_t take;

	if (out_room(c, (len / B64_LINE_IN + 2) * B64_LINE_OUT) != 0)
		return -1;
	if (c->partlen > 0) {
		take = B64_LINE_IN - c->partlen;
		if (take > len)
			take = len;
		memcpy(c->part + c->partlen, chunk, take);
		c->partlen += take;
		chunk += take;
		len -= take;
		if (c->partlen < B64_LINE_IN)
			return 0;
		encode_line(c, c->part, B64_LINE_IN);
		c->partlen = 0;
	}
	for (; len >= B64_LINE_IN; chunk += B64_LINE_IN, len -= B64_LINE_IN)
		encode_line(c, chunk, B64_LINE_IN);
	memcpy(c->part, chunk, len);
	c->partlen = len;
	return 0;
}

/* rw_negotiate - kmilter's actions and protocol steps */
static sfsistat
rw_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
    unsigned long f2, unsigned long f3, unsigned long *pf0,
    unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	*pf0 = (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY) & f0;
	*pf1 = KMILTER_MILTER_STEPS & f1;
	*pf2 = 0;
	*pf3 = 0;
	return SMFIS_CONTINUE;
}

/* rw_connect - allocate the connection state */
static sfsistat
rw_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
	struct rwconn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return SMFIS_TEMPFAIL;
	smfi_setpriv(ctx, c);
	return SMFIS_CONTINUE;
}

/* rw_envfrom - start a message */
static sfsistat
rw_envfrom(SMFICTX *ctx, char **argv)
{
	struct rwconn *c = conn_get(ctx);

	if (c == NULL)
		return SMFIS_TEMPFAIL;
	conn_reset(c);
	return SMFIS_CONTINUE;
}

/* rw_header - note whether the message has a Content-Transfer-Encoding */
static sfsistat
rw_header(SMFICTX *ctx, char *name, char *value)
{
	struct rwconn *c = conn_get(ctx);

	if (c != NULL && strcasecmp(name, m_cte) == 0)
		c->has_cte = 1;
	return SMFIS_NOREPLY;
}

/* rw_body - encode a body chunk */
static sfsistat
rw_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct rwconn *c = conn_get(ctx);

	if (c != NULL && !c->failed && encode_chunk(c, chunk, len) != 0)
		c->failed = 1;
	return SMFIS_NOREPLY;
}

/* rw_eom - finish the encoding, set the header, replace the body */
static sfsistat
rw_eom(SMFICTX *ctx)
{
	struct rwconn *c = conn_get(ctx);
	size_t off, n;
	int rc;

	if (c == NULL || c->failed)
		return SMFIS_TEMPFAIL;		/* out of memory */
	if (c->partlen > 0) {
		encode_line(c, c->part, c->partlen);	/* room: encode_chunk */
		c->partlen = 0;
	}
	rc = c->has_cte ? smfi_chgheader(ctx, m_cte, 1, m_base64) :
	    smfi_addheader(ctx, m_cte, m_base64);
	for (off = 0; rc == MI_SUCCESS && off < c->outlen; off += n) {
		n = c->outlen - off < REPLACE_CHUNK ? c->outlen - off :
		    REPLACE_CHUNK;
		rc = smfi_replacebody(ctx, c->out + off, (int)n);
	}
	conn_reset(c);
	return rc == MI_SUCCESS ? SMFIS_CONTINUE : SMFIS_TEMPFAIL;
}

/* rw_abort - forget the message */
static sfsistat
rw_abort(SMFICTX *ctx)
{
	struct rwconn *c = conn_get(ctx);

	if (c != NULL)
		conn_reset(c);
	return SMFIS_CONTINUE;
}

/* rw_close - free the connection state (may be NULL) */
static sfsistat
rw_close(SMFICTX *ctx)
{
	struct rwconn *c = conn_get(ctx);

	if (c != NULL) {
		free(c->out);
		free(c);
	}
	smfi_setpriv(ctx, NULL);
	return SMFIS_CONTINUE;
}

static struct smfiDesc rw_desc = {
	.xxfi_name = m_name,
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY,
	.xxfi_connect = rw_connect,
	.xxfi_envfrom = rw_envfrom,
	.xxfi_header = rw_header,
	.xxfi_body = rw_body,
	.xxfi_eom = rw_eom,
	.xxfi_abort = rw_abort,
	.xxfi_close = rw_close,
	.xxfi_negotiate = rw_negotiate,
};

/* main - parse arguments, open the socket, run libmilter */
int
main(int argc, char **argv)
{
	return milterrun_main("rewritemilter", &rw_desc, argc, argv, NULL);
}
