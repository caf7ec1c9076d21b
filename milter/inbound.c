/*
 * inbound.c - decrypt and verify S/MIME for internal users (see inbound.h):
 * the end of message, in memory or from the spool; the layers of an entity
 * are opened in inbound_layers.c (see inbound_int.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inbound.h"
#include "inbound_decrypt.h"
#include "inbound_int.h"
#include "inbound_spool.h"
#include "log.h"
#include "mime.h"
#include "secmem.h"
#include "spool.h"

/*
 * Large messages.  A body past milter.spool_memory_max is on disk; mapping
 * it would bring all of it into memory (and its base64 decoded, and the
 * plaintext, several copies).  An envelope is read as a stream instead
 * (inbound_decrypt_spool), whatever its size: that is also faster for a
 * small one (20 kB: 0.9-1.1 ms against 1.6-2.2 ms in memory, decryption
 * alone, on a loaded 2-core host), and one path is tested by every case.
 * The plaintext entity's header block is kept in memory and its body goes
 * to a spool of its own (inbound_split_new), so the body is spooled once.
 * When the entity fits in milter.spool_memory_max it is read into memory
 * and opened further as any other layer; when it does not, its header
 * block is the new entity's and its body goes to the MTA in chunks from
 * a spool (verdict_set_body_spool); a multipart/signed there is checked
 * reading its signed part from the spool (inbound_spool.h), opaque
 * signed-data as a stream (cms_stream.h), its content unwrapped into a
 * spool of its own when policy unwraps.  A large signed message that is
 * not encrypted is checked the same way from the body's own spool.
 */
/* entity_join - a header block and a small spooled body as one entity (secmem) */
static char *
entity_join(const char *head, size_t hlen, struct spool *body, size_t *len)
{
	size_t n = hlen + spool_size(body), got;
	struct kmerr err;
	char *buf;

	if ((buf = secmem_alloc(n + 1)) == NULL)
		return NULL;
	memcpy(buf, head, hlen);
	if (spool_read(body, 0, buf + hlen, n - hlen, &got, &err) != KM_OK ||
	    got != n - hlen) {
		secmem_free(buf, n + 1);
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/*
 * deliver_spool - a large decrypted or unwrapped entity, its header block
 * in memory and its body in a spool: a signature in it checked (signed-
 * data unwrapped, up to MAX_LAYERS deep), then the header block through
 * inbound_deliver() (the Content-* headers, header protection, the result
 * headers) and the body from the spool.  Takes head and body.
 */
static void
deliver_spool(struct in_job *j, char *head, size_t hlen, struct spool *body, int depth)
{
	char *ctype = inbound_entity_ctype(head, hlen);
	enum mime_smime_kind k = inbound_kind_of(ctype);

	if (depth < MAX_LAYERS && (k == MIME_SMIME_SIGNED_DETACHED ||
	    k == MIME_SMIME_SIGNED_OPAQUE) && (j->c->in_verify ||
	    (k == MIME_SMIME_SIGNED_OPAQUE && j->c->in_unwrap_opaque))) {
		char note[300], *want = NULL;
		int opaque = 0, unwrap = k == MIME_SMIME_SIGNED_OPAQUE &&
		    j->c->in_unwrap_opaque;

		if (inbound_verify_layer(j, ctype, NULL, 0, message_header(j->m, "From"), &opaque,
		    unwrap ? &want : NULL, NULL, note, sizeof(note), body, 0) != KM_OK &&
		    *j->reason == '\0')
			snprintf(j->reason, sizeof(j->reason), "%.300s", note);
		if (j->unwrap_sp != NULL) {
			/* signed-data unwrapped: what it held is delivered */
			struct spool *inner = j->unwrap_sp;
			char *ih = j->unwrap_head;

			j->unwrap_sp = NULL;
			j->unwrap_head = NULL;
			j->unwrapped = 1;
			free(ctype);
			secmem_free(head, hlen + 1);
			spool_free(body);
			deliver_spool(j, ih, j->unwrap_hlen, inner, depth + 1);
			return;
		}
	}
	/* header protection reads the payload's root: part 0 of a signed one */
	if (k == MIME_SMIME_SIGNED_DETACHED)
		j->hpent = inbound_spool_part0_head(body, 0, ctype, &j->hplen);
	free(ctype);
	j->cur = head;		/* the header block is the entity inbound_deliver() sees */
	j->curlen = hlen;
	inbound_deliver(j);
	if (j->v->kind == VERDICT_REWRITE) {
		verdict_set_body_spool(j->v, body);
		body = NULL;
	}
	if (j->hpent != NULL)
		secmem_free(j->hpent, j->hplen + 1);
	j->hpent = NULL;
	spool_free(body);
}

/*
 * stream_eom - a large enveloped message: decrypt it from its spool, then
 * open what is inside as usual when it fits in memory
 */
static void
stream_eom(struct in_job *j)
{
	struct spool *pt = NULL;
	enum km_status st;
	char *ent, *head = NULL;
	size_t len, hlen = 0;

	st = inbound_decrypt_spool(j->s, j->v, j->m->body, CMS_IN_AUTO, &pt, &head, &hlen,
	    j->reason, sizeof(j->reason), j->detail, sizeof(j->detail));
	if (st == KM_PROTO) {
		inbound_malformed(j->s, j->v, j->reason);
		return;
	}
	if (st == KM_TEMPFAIL || st == KM_NOMEM) {
		verdict_tempfail(j->v, "%s", j->reason);
		return;
	}
	if (st != KM_OK) {
		log_info("%s: inbound: %s", message_qid(j->m), j->reason);
		inbound_deliver(j);
		return;
	}
	j->decrypted++;
	if (hlen + spool_size(pt) > (size_t)j->c->spool_memory_max) {
		log_info("%s: inbound: decrypted %zu octets from the spool", message_qid(j->m),
		    hlen + spool_size(pt));
		deliver_spool(j, head, hlen, pt, 1);
		return;
	}
	ent = entity_join(head, hlen, pt, &len);
	secmem_free(head, hlen + 1);
	spool_free(pt);
	if (ent == NULL) {
		verdict_tempfail(j->v, "decrypted entity: cannot read it back");
		return;
	}
	inbound_take_layer(j, ent, len);
	if (inbound_open_layers(j, inbound_kind_of(j->curtype), NULL, 0, 1) == 0) {
		inbound_settle_held(j, 0);
		inbound_deliver(j);
	}
}

/*
 * stream_verify_eom - a large signed message (not encrypted): its
 * signature checked reading the signed part from the body's spool; a
 * multipart/signed is delivered as it came, with the result, opaque
 * signed-data unwrapped when policy says so (from a spool too)
 */
static void
stream_verify_eom(struct in_job *j, enum mime_smime_kind kind)
{
	char note[300], *want = NULL;
	int opaque = 0, unwrap = kind == MIME_SMIME_SIGNED_OPAQUE && j->c->in_unwrap_opaque;
	enum km_status st;

	if (!j->c->in_verify && !unwrap)
		return;
	log_info("%s: inbound: signature checked from the spool (%zu octets)",
	    message_qid(j->m), spool_size(j->m->body));
	st = inbound_verify_layer(j, message_header(j->m, "Content-Type"), NULL, 0,
	    message_header(j->m, "From"), &opaque, unwrap ? &want : NULL, NULL, note,
	    sizeof(note), j->m->body, 0);
	if (st == KM_PROTO) {
		inbound_malformed(j->s, j->v, note);
		return;
	}
	if (st != KM_OK)
		snprintf(j->reason, sizeof(j->reason), "%.300s", note);
	if (j->unwrap_sp != NULL) {
		struct spool *inner = j->unwrap_sp;
		char *ih = j->unwrap_head;

		j->unwrap_sp = NULL;
		j->unwrap_head = NULL;
		j->unwrapped = 1;
		deliver_spool(j, ih, j->unwrap_hlen, inner, 1);
		return;
	}
	inbound_deliver(j);
}

/* inbound_eom - decrypt and verify for internal recipients */
void
inbound_eom(struct session *s, struct verdict *v)
{
	struct in_job j = { .s = s, .m = s->msg, .c = s->conf, .v = v };
	const unsigned char *body;
	size_t bodylen;
	enum mime_smime_kind kind;
	struct kmerr err;

	/* Forged X-Kmilter-* and Authentication-Results are gone already:
	 * pipeline_run() removes them in every direction (forged.h). */
	kind = inbound_kind_of(message_header(j.m, "Content-Type"));
	if (kind == MIME_SMIME_NONE || kind == MIME_SMIME_CERTS_ONLY ||
	    kind == MIME_SMIME_COMPRESSED)
		return;
	if ((kind == MIME_SMIME_ENVELOPED || kind == MIME_SMIME_AUTH_ENVELOPED) &&
	    j.c->in_decrypt)
		stream_eom(&j);
	else if ((kind == MIME_SMIME_SIGNED_DETACHED || kind == MIME_SMIME_SIGNED_OPAQUE) &&
	    spool_on_disk(j.m->body))
		stream_verify_eom(&j, kind);
	else if (spool_map(j.m->body, &body, &bodylen, &err) != KM_OK) {
		snprintf(j.reason, sizeof(j.reason), "%s", err.msg);
		verdict_tempfail(v, "%s", j.reason);
		return;
	} else if (inbound_open_layers(&j, kind, body, bodylen, 0) == 0) {
		inbound_settle_held(&j, 0);	/* an envelope left unopened */
		inbound_deliver(&j);
	}
	inbound_settle_held(&j, 1);
	if (v->kind == VERDICT_TEMPFAIL || v->kind == VERDICT_REJECT)
		verdict_drop_changes(v);
	if (j.cur)
		secmem_free(j.cur, j.curlen);
	free(j.curtype);
}
