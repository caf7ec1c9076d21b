/*
 * outbound_stream.c - sign and encrypt a message whose body is in a spool
 * file, from that spool into new spools, in bounded memory (see
 * outbound_int.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>

#include "entity.h"
#include "log.h"
#include "mime.h"
#include "outbound_int.h"
#include "secmem.h"
#include "smime.h"
#include "spool.h"

#define HEAD_PIECE	65536	/* body bytes header protection sees */
#define RESULT_MEMMAX	65536	/* a result spool's bytes in memory before its file */
#define SCAN_CHUNK	32768

/*
 * close_delim - for a multipart body, a close delimiter to put after the
 * piece header protection sees, so that the piece parses as a whole
 * multipart body; "" for any other body
 */
static void
close_delim(const struct message *m, char *buf, size_t len)
{
	const char *ctype = message_header(m, "Content-Type"), *bd;
	struct mime_ctype *ct = NULL;

	*buf = '\0';
	if (ctype != NULL && mime_ctype_parse(ctype, &ct, NULL) == KM_OK &&
	    strcmp(mime_ctype_type(ct), "multipart") == 0 &&
	    (bd = mime_ctype_param(ct, "boundary")) != NULL && strlen(bd) <= 70)
		snprintf(buf, len, "\r\n--%s--\r\n", bd);
	mime_ctype_free(ct);
}

/* read_full - exactly n bytes of a spool from off (n within its size) */
static enum km_status
read_full(struct spool *sp, size_t off, unsigned char *buf, size_t n, struct kmerr *err)
{
	size_t got;

	while (n > 0) {
		if (spool_read(sp, off, buf, n, &got, err) != KM_OK)
			return KM_TEMPFAIL;
		if (got == 0)
			return kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
			    "spool: %zu bytes missing", n);
		off += got;
		buf += got;
		n -= got;
	}
	return KM_OK;
}

/*
 * make_head - j->entity: the entity with the first piece of the body (header
 * protection sees the headers and that piece; it only changes the start of
 * a body, and copies the rest as it is); src: that, then the rest of the
 * body from the spool.  Header protection is given the piece with a close
 * delimiter after it (multipart bodies), which it copies to the end of
 * j->entity: checked, then left out.  The result is the in-memory one
 * (test_outbound checks it) except in two corners: a multipart/mixed
 * body whose first part's header block does not end within HEAD_PIECE
 * bytes gets no Legacy Display Element, and one with no close delimiter at all gets one (in memory it
 * would not parse).
 */
static int
make_head(struct out_job *j, struct smime_source *src)
{
	struct spool *body = j->m->body;
	size_t n = spool_size(body) < HEAD_PIECE ? spool_size(body) : HEAD_PIECE, dl;
	unsigned char *piece;
	char delim[96];
	struct kmerr err;
	int rc;

	close_delim(j->m, delim, sizeof(delim));
	dl = strlen(delim);
	if ((piece = malloc(n + dl)) == NULL) {
		verdict_tempfail(j->v, "out of memory");
		return -1;
	}
	if (read_full(body, 0, piece, n, &err) != KM_OK) {
		secmem_free(piece, n + dl);
		verdict_tempfail(j->v, "%s", err.msg);
		return -1;
	}
	memcpy(piece + n, delim, dl);
	rc = outbound_make_entity(j, piece, n + dl);
	secmem_free(piece, n + dl);
	if (rc != 0)
		return -1;
	if (j->entlen < dl || memcmp(j->entity + j->entlen - dl, delim, dl) != 0) {
		verdict_tempfail(j->v, "rewrite: header protection changed the end of "
		    "the body's first piece");
		return -1;
	}
	src->head = j->entity;
	src->headlen = j->entlen - dl;
	src->body = body;
	src->off = n;
	return 0;
}

/* source_clean - outbound_seven_bit_clean() of a whole source; -1 if it cannot be read */
static int
source_clean(const struct smime_source *src, struct kmerr *err)
{
	unsigned char *buf;
	size_t line = 0, off = src->off, got;
	int clean;

	if (!outbound_seven_bit_clean(src->head, src->headlen, &line))
		return 0;
	if ((buf = malloc(SCAN_CHUNK)) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return -1;
	}
	for (clean = 1; clean == 1; off += got) {
		if (spool_read(src->body, off, buf, SCAN_CHUNK, &got, err) != KM_OK)
			clean = -1;
		else if (got == 0)
			break;
		else
			clean = outbound_seven_bit_clean((const char *)buf, got, &line);
	}
	secmem_free(buf, SCAN_CHUNK);
	return clean;
}

/*
 * stream_fail - the verdict for a failed step: the spool's reason when
 * writing to it failed (a full or unwritable spool answers 4.3.2, as
 * while the body arrives), else OpenSSL's
 */
static int
stream_fail(struct out_job *j, const char *what, const struct kmerr *err, BIO *writer)
{
	const struct kmerr *werr = writer != NULL ? spool_writer_error(writer) : NULL;

	if (werr != NULL) {
		verdict_tempfail(j->v, "%s: %s", what, werr->msg);
		snprintf(j->v->xcode, sizeof(j->v->xcode), "4.3.2");
	} else
		verdict_tempfail(j->v, "%s: %s", what, err->msg);
	return -1;
}

/* stream_sign - the source signed to out (writer: the spool BIO behind it) */
static int
stream_sign(struct out_job *j, const struct smime_source *src, BIO *out, BIO *writer)
{
	enum smime_sign_mode mode = j->c->out_signature == SIGFORM_OPAQUE ?
	    SMIME_MODE_OPAQUE : SMIME_MODE_DETACHED;
	struct smime_publish pub = { .enc = NULL, .chain = j->org };
	struct kmerr err;
	int clean;

	if (!j->encrypt && mode == SMIME_MODE_DETACHED) {
		if ((clean = source_clean(src, &err)) < 0)
			return stream_fail(j, "signing", &err, NULL);
		if (!clean)
			mode = SMIME_MODE_OPAQUE;
	}
	if (j->c->out_publish_cert)
		pub.enc = j->self;	/* set by choose_publish(), or NULL */
	if (smime_sign_source(src, j->signer, j->key, j->chain, &pub,
	    outbound_digest(j->c->out_digest), mode, out, &err) != KM_OK)
		return stream_fail(j, "signing", &err, writer);
	return 0;
}

/* stream_encrypt - the source encrypted to out (writer: the spool BIO behind it) */
static int
stream_encrypt(struct out_job *j, const struct smime_source *src, BIO *out, BIO *writer)
{
	struct kmerr err;

	if (outbound_encrypt_to(j) != 0)
		return -1;
	if (smime_encrypt_source(src, j->certs, j->ncerts, outbound_cipher(j->c->out_cipher),
	    j->c->out_rsa_padding == PADDING_OAEP ? SMIME_PAD_OAEP : SMIME_PAD_PKCS1,
	    out, &err) != KM_OK)
		return stream_fail(j, "encryption", &err, writer);
	return 0;
}

/*
 * room - is there room in the spool for what signing and encrypting will
 * write (base64 makes 78 bytes of 57: 1.37 times; a detached signature
 * copies the content as it is)?  A check, not a reservation
 * (spool_disk_room): it spares the work that would fail for want of
 * space, the spool budget itself still guards every write.  0, or -1
 * with the verdict made (4.3.2).
 */
static int
room(struct out_job *j)
{
	size_t size = spool_size(j->m->body) + j->entlen, sig = 0, out;
	struct kmerr err;

	if (j->sign)
		sig = j->c->out_signature == SIGFORM_OPAQUE ? size / 57 * 78 : size;
	out = j->encrypt ? (j->sign ? sig : size) / 57 * 78 : 0;
	if (spool_disk_room((j->encrypt ? out : 0) + sig, &err) == KM_OK)
		return 0;
	verdict_tempfail(j->v, "%s (for the %s copies)", err.msg, j->sign && j->encrypt ?
	    "signed and encrypted" : j->sign ? "signed" : "encrypted");
	snprintf(j->v->xcode, sizeof(j->v->xcode), "4.3.2");
	return -1;
}

/* One streamed rewrite: the spools and the BIOs over them. */
struct stream {
	struct spool	*mid;		/* signed, to be encrypted */
	struct spool	*final;		/* the new body */
	BIO		*midw;
	BIO		*finalw;
	BIO		*head;		/* the new header block */
	BIO		*split;		/* header block to head, body to finalw */
};

/* stream_open - the spools and BIOs a rewrite writes to; -1 when out of memory */
static int
stream_open(struct out_job *j, struct stream *st)
{
	size_t memmax = (size_t)j->c->spool_memory_max < RESULT_MEMMAX ?
	    (size_t)j->c->spool_memory_max : RESULT_MEMMAX;

	if ((st->final = spool_new(j->c->spool_dir, memmax)) == NULL ||
	    (st->finalw = spool_writer(st->final)) == NULL ||
	    (st->head = BIO_new(BIO_s_mem())) == NULL ||
	    (st->split = entity_split_writer(st->head, st->finalw)) == NULL)
		return -1;
	if (j->sign && j->encrypt &&
	    ((st->mid = spool_new(j->c->spool_dir, memmax)) == NULL ||
	    (st->midw = spool_writer(st->mid)) == NULL))
		return -1;
	return 0;
}

/* stream_close - free what stream_open made (BIOs before their spools) */
static void
stream_close(struct stream *st)
{
	BIO_free(st->split);
	BIO_free(st->finalw);
	BIO_free(st->midw);
	BIO_free(st->head);
	spool_free(st->mid);
	spool_free(st->final);
}

/*
 * outbound_rewrite_stream - sign and/or encrypt a body held in a spool
 * file; the verdict gets the header changes and the new body as a spool.
 * 0, or -1 with the verdict made.
 */
int
outbound_rewrite_stream(struct out_job *j)
{
	struct stream st = { 0 };
	struct smime_source src, mid = { 0 };
	struct kmerr err;
	char *head;
	long headlen;
	int rc = -1;

	if (make_head(j, &src) != 0 || room(j) != 0)
		return -1;
	if (stream_open(j, &st) != 0) {
		verdict_tempfail(j->v, "out of memory");
		goto out;
	}
	log_debug(1, "%s: outbound: streamed from the spool (%zu body bytes)",
	    message_qid(j->m), spool_size(j->m->body));
	if (j->sign && stream_sign(j, &src, j->encrypt ? st.midw : st.split,
	    j->encrypt ? st.midw : st.finalw) != 0)
		goto out;
	mid.body = st.mid;
	if (j->encrypt && stream_encrypt(j, j->sign ? &mid : &src, st.split, st.finalw) != 0)
		goto out;
	headlen = BIO_get_mem_data(st.head, &head);
	if (entity_replace_spool(j->v, j->m, head, headlen > 0 ? (size_t)headlen : 0,
	    st.final, &err) != KM_OK) {
		verdict_tempfail(j->v, "rewrite: %s", err.msg);
		goto out;
	}
	st.final = NULL;	/* the verdict's now */
	rc = 0;
out:
	stream_close(&st);
	return rc;
}
