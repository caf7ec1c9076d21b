/*
 * inbound_layers.c - open the S/MIME layers of an entity in memory
 * (decrypt, verify, unwrap) and deliver what was opened (see inbound_int.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>

#include "entity.h"
#include "harvest.h"
#include "hp.h"
#include "inbound.h"
#include "inbound_decrypt.h"
#include "inbound_int.h"
#include "inbound_spool.h"
#include "keystore.h"
#include "log.h"
#include "mime.h"
#include "policy.h"
#include "runtime.h"
#include "secmem.h"
#include "smime.h"
#include "smime_verify.h"
#include "spool.h"

/* inbound_kind_of - the S/MIME kind of an entity's (or the message's) Content-Type */
enum mime_smime_kind
inbound_kind_of(const char *ctype)
{
	struct mime_ctype *ct = NULL;
	enum mime_smime_kind k = MIME_SMIME_NONE;

	if (ctype != NULL && mime_ctype_parse(ctype, &ct, NULL) == KM_OK)
		k = mime_smime_kind(ct);
	mime_ctype_free(ct);
	return k;
}

/* entity_header - a header of an entity held in memory, malloc'ed or NULL */
static char *
entity_header(const char *ent, size_t len, const char *name)
{
	struct mime_headers *h = NULL;
	size_t hl, bo;
	char *r = NULL;

	if (mime_entity_split(ent, len, &hl, &bo, NULL) == KM_OK &&
	    mime_headers_parse(ent, hl, &h, NULL) == KM_OK &&
	    mime_headers_get(h, name) != NULL)
		r = strdup(mime_headers_get(h, name));
	mime_headers_free(h);
	return r;
}

/* inbound_entity_ctype - the Content-Type of an entity held in memory, malloc'ed */
char *
inbound_entity_ctype(const char *ent, size_t len)
{
	return entity_header(ent, len, "Content-Type");
}

/* inbound_malformed - apply policy.on_malformed */
void
inbound_malformed(const struct session *s, struct verdict *v, const char *what)
{
	switch (s->conf->on_malformed) {
	case MALFORMED_REJECT:
		verdict_reject(v, "550", "5.6.0", "malformed S/MIME message: %s", what);
		break;
	case MALFORMED_TEMPFAIL:
		verdict_tempfail(v, "malformed S/MIME: %s", what);
		break;
	default:
		snprintf(v->result, sizeof(v->result), "passed unchanged: malformed: %.200s", what);
		break;
	}
}

/* What to do after one step of opening a layer. */
enum in_step {
	STEP_NEXT,	/* a layer was opened: look at the one inside */
	STEP_ON,	/* not this step's kind after all: try the next step */
	STEP_STOP,	/* nothing more to open */
	STEP_FAIL	/* the verdict is made (tempfail, reject, malformed) */
};

/*
 * weak_digest - a digest a signature may still use but that no longer
 * resists collisions (SHA-1, MD5): accepted, and said so in the result
 */
static int
weak_digest(const char *digest)
{
	return strcmp(digest, "sha1") == 0 || strcmp(digest, "md5") == 0;
}

/*
 * comment_text - text for an RFC 8601 comment: no parenthesis, backslash
 * or semicolon that would end it, or the result, early
 */
static void
comment_text(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (; *in != '\0' && o + 1 < len; in++)
		out[o++] = *in == '(' ? '[' : *in == ')' ? ']' : *in == '\\' ? '/' :
		    *in == ';' ? ',' : *in;
	out[o] = '\0';
}

/* ar_result - one "smime=..." result (RFC 8601 resinfo) for a verification */
static void
ar_result(const struct smime_verify_result *r, const char *problem, char *buf, size_t len)
{
	const char *who = *r->email ? r->email : "unknown";	/* %.200s below */
	char why[201];

	comment_text(problem != NULL ? problem : r->chain_error, why, sizeof(why));
	if (problem != NULL)
		snprintf(buf, len, "smime=permerror (%s)", why);
	else if (!r->sig_ok)
		snprintf(buf, len, "smime=fail (bad signature) body.smime-identifier=%.200s", who);
	else if (!r->chain_ok)
		snprintf(buf, len, "smime=fail (untrusted signer: %.100s) "
		    "body.smime-identifier=%.200s", why, who);
	else if (r->revoked)
		snprintf(buf, len, "smime=fail (revoked) "
		    "body.smime-identifier=%.200s", who);
	else if (r->rev_unknown)
		snprintf(buf, len, "smime=temperror (revocation status unknown) "
		    "body.smime-identifier=%.200s", who);
	else if (!r->from_match)
		snprintf(buf, len, "smime=fail (signer does not match From) "
		    "body.smime-identifier=%.200s", who);
	else if (weak_digest(r->digest))
		snprintf(buf, len, "smime=pass (weak digest %s) body.smime-identifier=%.200s",
		    r->digest, who);
	else
		snprintf(buf, len, "smime=pass body.smime-identifier=%.200s", who);
}

/*
 * ar_add - append one layer's result to the Authentication-Results value;
 * a result that does not fit whole is left out (the log says so), so the
 * header stays well formed and under the 998-octet line limit
 */
static void
ar_add(struct in_job *j, const char *result)
{
	size_t n = strlen(j->ar);

	if (n == 0)
		snprintf(j->ar, sizeof(j->ar), "%s; %s", j->c->in_authserv_id, result);
	else if (n + 2 + strlen(result) < sizeof(j->ar))
		snprintf(j->ar + n, sizeof(j->ar) - n, "; %s", result);
	else
		log_info("%s: inbound: Authentication-Results full, result of an inner "
		    "signature left out: %s", message_qid(j->m), result);
}

/* note_add - append one layer's log note */
static void
note_add(struct in_job *j, const char *note)
{
	size_t n = strlen(j->note);

	if (n < sizeof(j->note))
		snprintf(j->note + n, sizeof(j->note) - n, "%s%s", n ? "; " : "", note);
}

/*
 * inbound_verify_layer - verify a signed entity and add its result (outer layers
 * first: RFC 8601 allows one result per signature); from is the From
 * address it is compared with.  When content is not NULL it gets the
 * signed content (the unwrapped entity of opaque signed-data, part 0 of
 * multipart/signed).  sp: a multipart/signed too large for memory, its
 * header block (ctype) ending at bo of sp (inbound_spool.h); body unused;
 * when content is not NULL (it stays untouched) j->unwrap_head and
 * j->unwrap_sp get the header block and the body of what opaque
 * signed-data holds.
 * Returns smime_verify()'s status: KM_OK when the
 * signature could be checked at all, else why not in note.
 */
enum km_status
inbound_verify_layer(struct in_job *j, const char *ctype, const char *body, size_t len,
    const char *from, int *opaque, char **content, size_t *clen, char *note, size_t nlen,
    struct spool *sp, size_t bo)
{
	struct smime_verify_result res;
	struct smime_signer_certs sc;
	X509_STORE *trust = runtime_trust();
	BIO *bio = content != NULL && sp == NULL ? BIO_new(BIO_s_mem()) : NULL;
	BIO *spw = NULL, *split = NULL;
	struct kmerr err;
	char result[512];
	enum km_status st;
	/* only a signer compared with the message's own From (not a
	   forwarded message's) gives its certificates (harvest.h) */
	int harvest = j->c->in_harvest && from != NULL &&
	    from == message_header(j->m, "From");

	memset(&res, 0, sizeof(res));
	kmerr_clear(&err);
	if (sp != NULL && content != NULL &&	/* opaque content into a spool */
	    ((j->unwrap_sp = spool_new(j->c->spool_dir,
	    (size_t)j->c->spool_memory_max)) == NULL ||
	    (spw = spool_writer(j->unwrap_sp)) == NULL ||
	    (split = inbound_split_new(spw)) == NULL))
		j->unwrap_sp = spool_free(j->unwrap_sp);
	if (sp != NULL)		/* a large signed entity, from its spool */
		st = inbound_spool_verify(sp, bo, ctype, trust, runtime_revcheck(), from,
		    &res, harvest ? &sc : NULL, split, &err);
	else
		st = smime_verify_rev(ctype, body, len, trust, runtime_revcheck(), from,
		    &res, bio, harvest ? &sc : NULL, &err);
	/* a signer revoked, or whose status is unknown under hard-fail, is
	 * not a correspondent whose certificates we take */
	if (harvest && st == KM_OK && res.sig_ok && res.chain_ok &&
	    res.from_match && !res.revoked && !res.rev_unknown)
		harvest_signature(j->c, trust, runtime_revcheck(),
		    message_qid(j->m), res.email, &sc, harvest_store_keystore,
		    runtime_keystore());
	if (harvest)
		smime_signer_certs_clear(&sc);
	ar_result(&res, st != KM_OK ? err.msg : NULL, result, sizeof(result));
	if (j->c->in_verify)
		ar_add(j, result);
	if (st != KM_OK)
		snprintf(note, nlen, "signature not checked: %s", err.msg);
	else {
		/* a cut note is fine: it is a log line */
		if (snprintf(note, nlen, "signature %s signer=%.200s%s%s%s%s%.160s",
		    res.sig_ok && res.chain_ok && res.from_match && !res.revoked &&
		    !res.rev_unknown ? "pass" : "fail", *res.email ? res.email : "unknown",
		    weak_digest(res.digest) ? " weak-digest=" : "",
		    weak_digest(res.digest) ? res.digest : "",
		    res.canonical ? " (verified in canonical CRLF form)" : "",
		    res.revoked ? " revoked: " : res.rev_unknown ?
		    " revocation status unknown: " : "",
		    res.revoked || res.rev_unknown ? res.rev_error : "") >= (int)nlen)
			log_debug(2, "%s: inbound: note cut", message_qid(j->m));
		if (*res.rev_error && !res.revoked && !res.rev_unknown)
			log_debug(1, "%s: inbound: signer %.200s: %s", message_qid(j->m),
			    *res.email ? res.email : "unknown", res.rev_error);
		*opaque = res.opaque;
		if (bio != NULL)
			*content = entity_from_bio(bio, clen);
	}
	if (split != NULL && st == KM_OK && spool_writer_error(spw) == NULL)
		j->unwrap_head = inbound_split_head(split, &j->unwrap_hlen);
	if (j->unwrap_head == NULL)	/* also a header block that does not end */
		j->unwrap_sp = spool_free(j->unwrap_sp);
	if (split != NULL) {
		BIO_pop(split);
		BIO_free(split);
	}
	BIO_free(spw);
	note_add(j, note);
	if (bio != NULL) {
		char *data;
		long n = BIO_get_mem_data(bio, &data);

		if (n > 0)
			secmem_wipe(data, (size_t)n);
	}
	BIO_free(bio);
	X509_STORE_free(trust);
	return st;
}

/* inbound_take_layer - the entity just opened becomes the current one */
void
inbound_take_layer(struct in_job *j, char *next, size_t nextlen)
{
	if (j->cur)
		secmem_free(j->cur, j->curlen);
	j->cur = next;
	j->curlen = nextlen;
	free(j->curtype);
	j->curtype = inbound_entity_ctype(j->cur, j->curlen);
}

/*
 * hold_layer - a detached signature's content is an envelope: keep the
 * current entity (NULL: the message as it came) until it is known whether
 * the envelope opens, so the signature is not lost when it does not
 */
static void
hold_layer(struct in_job *j)
{
	j->held = j->cur;
	j->heldlen = j->curlen;
	j->heldtype = j->curtype;
	j->heldunwrapped = j->unwrapped;
	j->holding = 1;
	j->cur = NULL;
	j->curlen = 0;
	j->curtype = NULL;
}

/* inbound_settle_held - the envelope opened (keep what is inside) or not (go back) */
void
inbound_settle_held(struct in_job *j, int opened)
{
	if (!j->holding)
		return;
	if (opened) {
		if (j->held != NULL)
			secmem_free(j->held, j->heldlen);
		free(j->heldtype);
	} else {
		if (j->cur != NULL)
			secmem_free(j->cur, j->curlen);
		free(j->curtype);
		j->cur = j->held;
		j->curlen = j->heldlen;
		j->curtype = j->heldtype;
		j->unwrapped = j->heldunwrapped;
	}
	j->held = j->heldtype = NULL;
	j->heldlen = 0;
	j->holding = 0;
}

/* decrypt_step - open an enveloped layer (see inbound_decrypt_layer) */
static enum in_step
decrypt_step(struct in_job *j, enum mime_smime_kind *kind, const char *ctype,
    const char *b, size_t blen)
{
	char *next = NULL;
	size_t nextlen = 0;
	enum km_status st;

	if (!j->c->in_decrypt)
		return STEP_STOP;
	st = inbound_decrypt_layer(j->s, j->v, ctype, b, blen, &next, &nextlen, j->reason,
	    sizeof(j->reason), j->detail, sizeof(j->detail));
	if (st == KM_PROTO && *kind == MIME_SMIME_PKCS7_UNKNOWN) {
		/* pkcs7-mime without smime-type: maybe signed-data. */
		*kind = MIME_SMIME_SIGNED_OPAQUE;
		j->reason[0] = '\0';
		return STEP_ON;
	} else if (st == KM_PROTO) {
		inbound_malformed(j->s, j->v, j->reason);
		return STEP_FAIL;
	} else if (st == KM_TEMPFAIL || st == KM_NOMEM) {
		verdict_tempfail(j->v, "%s", j->reason);
		return STEP_FAIL;
	} else if (st != KM_OK) {
		log_info("%s: inbound: %s", message_qid(j->m), j->reason);
		inbound_settle_held(j, 0);
		return STEP_STOP;
	}
	inbound_settle_held(j, 1);
	j->decrypted++;
	inbound_take_layer(j, next, nextlen);
	return STEP_NEXT;
}

/* is_rfc822 - is this Content-Type message/rfc822 (a forwarded message)? */
static int
is_rfc822(const char *ctype)
{
	struct mime_ctype *ct = NULL;
	int r = 0;

	if (ctype != NULL && mime_ctype_parse(ctype, &ct, NULL) == KM_OK)
		r = strcasecmp(mime_ctype_type(ct), "message") == 0 &&
		    strcasecmp(mime_ctype_subtype(ct), "rfc822") == 0;
	mime_ctype_free(ct);
	return r;
}

/*
 * rfc822_open - the forwarded message inside a message/rfc822 entity, as
 * an entity of its own (secmem_alloc'ed copy); the old one is freed.
 * NULL when it has no body.
 */
static char *
rfc822_open(char *ent, size_t len, size_t *outlen)
{
	size_t hl, bo;
	char *r = NULL;

	if (mime_entity_split(ent, len, &hl, &bo, NULL) == KM_OK && bo < len &&
	    (r = secmem_alloc(len - bo + 1)) != NULL) {
		memcpy(r, ent + bo, len - bo);
		*outlen = len - bo;
	}
	secmem_free(ent, len);
	return r;
}

/*
 * signer_from - the From a signed entity's signer is compared with: a
 * signed entity inside a signature (a forwarded message, or one carrying
 * its own protected headers) has its own From; else the message's.
 * *own gets the malloc'ed copy to free.
 */
static const char *
signer_from(const struct in_job *j, int inside_signature, const char *ent, size_t len,
    char **own)
{
	*own = inside_signature && ent != NULL ? entity_header(ent, len, "From") : NULL;
	return *own != NULL ? *own : message_header(j->m, "From");
}

/* nests - is an entity of this Content-Type worth opening after a signature? */
static int
nests(const char *ctype)
{
	enum mime_smime_kind k = inbound_kind_of(ctype);

	return k == MIME_SMIME_SIGNED_OPAQUE || k == MIME_SMIME_SIGNED_DETACHED ||
	    k == MIME_SMIME_ENVELOPED || k == MIME_SMIME_AUTH_ENVELOPED || is_rfc822(ctype);
}

/*
 * first_part_nests - does the signed part of a multipart/signed (ctype and
 * body, or a whole entity when ctype is NULL) hold a signature, an
 * envelope or a forwarded message?  Read in place, so the signed content
 * is copied out only when it is opened.
 */
static int
first_part_nests(const char *ctype, const char *b, size_t len)
{
	struct mime_ctype *ct = NULL;
	struct mime_parts *parts = NULL;
	char *own = NULL, *c0 = NULL;
	size_t hl = 0, bo = 0;
	int r = 0;

	if (ctype == NULL) {
		if (mime_entity_split(b, len, &hl, &bo, NULL) != KM_OK)
			return 0;
		ctype = own = inbound_entity_ctype(b, len);
	}
	if (ctype != NULL && mime_ctype_parse(ctype, &ct, NULL) == KM_OK &&
	    mime_multipart_split(b + bo, len - bo, mime_ctype_param(ct, "boundary"),
	    &parts, NULL) == KM_OK && parts->count > 0) {
		c0 = inbound_entity_ctype(b + bo + parts->part[0].off, parts->part[0].len);
		r = nests(c0);
	}
	free(c0);
	mime_parts_free(parts);
	mime_ctype_free(ct);
	free(own);
	return r;
}

/*
 * nested_signed - report the signatures inside signed content that is
 * delivered as it is (part 0 of multipart/signed, or signed-data not
 * unwrapped): each inner layer is verified and gets its own result,
 * nothing is changed.  A message/rfc822 (a forwarded message) is looked
 * into.  Takes ent (secmem).
 */
static void
nested_signed(struct in_job *j, char *ent, size_t len, int depth)
{
	for (; ent != NULL && depth < 2 * MAX_LAYERS; depth++) {
		char *ctype = inbound_entity_ctype(ent, len), *own = NULL, *next = NULL, note[300];
		enum mime_smime_kind k = inbound_kind_of(ctype);
		size_t nextlen = 0;
		int opaque = 0, fwd = is_rfc822(ctype);

		free(ctype);
		if (fwd)
			next = rfc822_open(ent, len, &nextlen);
		else if (k == MIME_SMIME_SIGNED_OPAQUE || k == MIME_SMIME_SIGNED_DETACHED) {
			int look = k == MIME_SMIME_SIGNED_OPAQUE ||
			    first_part_nests(NULL, ent, len);

			inbound_verify_layer(j, NULL, ent, len, signer_from(j, 1, ent, len, &own),
			    &opaque, look ? &next : NULL, &nextlen, note, sizeof(note), NULL, 0);
			free(own);
			secmem_free(ent, len);
		} else {
			secmem_free(ent, len);
			return;
		}
		ent = next;
		len = nextlen;
	}
	if (ent != NULL)
		secmem_free(ent, len);
}

/* encrypted_entity - is this entity enveloped or auth-enveloped data? */
static int
encrypted_entity(const char *ent, size_t len)
{
	char *ctype = inbound_entity_ctype(ent, len);
	enum mime_smime_kind k = inbound_kind_of(ctype);

	free(ctype);
	return k == MIME_SMIME_ENVELOPED || k == MIME_SMIME_AUTH_ENVELOPED;
}

/*
 * verify_step - verify a signed layer, unwrap opaque signed-data if asked,
 * and report the signatures nested in what stays signed
 */
static enum in_step
verify_step(struct in_job *j, enum mime_smime_kind kind, int layer, const char *ctype,
    const char *b, size_t blen)
{
	int unwrap = kind == MIME_SMIME_SIGNED_OPAQUE && j->c->in_unwrap_opaque;
	char *next = NULL, *own = NULL, note[300];
	size_t nextlen = 0;
	int opaque = 0, look;
	enum km_status st;

	if (!j->c->in_verify && !unwrap)
		return STEP_STOP;
	look = kind == MIME_SMIME_SIGNED_OPAQUE || first_part_nests(ctype, b, blen);
	st = inbound_verify_layer(j, ctype, b, blen, signer_from(j, j->unwrapped, layer ? b : NULL,
	    blen, &own), &opaque, look ? &next : NULL, &nextlen, note, sizeof(note), NULL, 0);
	free(own);
	if (st == KM_PROTO && layer == 0) {
		/* Not S/MIME we can read at all: policy.on_malformed. */
		inbound_malformed(j->s, j->v, note);
		return STEP_FAIL;
	}
	if (st != KM_OK && *j->reason == '\0')
		/* The message's log line says why it was not checked. */
		snprintf(j->reason, sizeof(j->reason), "%.300s", note);
	if (next == NULL)
		return STEP_STOP;
	if (!opaque && j->c->in_decrypt && encrypted_entity(next, nextlen)) {
		/* Triple wrapping (RFC 2634): the signature over the envelope
		   is reported; the reader needs what is inside it. */
		unwrap = opaque = 1;
		hold_layer(j);
	}
	if (!unwrap || !opaque) {
		/* Delivered as it is: only report what is signed inside. */
		if (j->c->in_verify)
			nested_signed(j, next, nextlen, layer + 1);
		else
			secmem_free(next, nextlen);
		return STEP_STOP;
	}
	j->unwrapped = 1;
	inbound_take_layer(j, next, nextlen);
	return STEP_NEXT;
}

/*
 * inbound_open_layers - open up to MAX_LAYERS layers from layer first (0: the
 * message's body; later ones j->cur): encrypted, then maybe signed or
 * encrypted again.  0, or -1 when the verdict is made.
 */
int
inbound_open_layers(struct in_job *j, enum mime_smime_kind kind, const unsigned char *body,
    size_t bodylen, int first)
{
	enum in_step step = STEP_STOP;

	for (int layer = first; layer < MAX_LAYERS; layer++) {
		const char *ctype = layer == 0 ? message_header(j->m, "Content-Type") : NULL;
		const char *b = layer == 0 ? (const char *)body : j->cur;
		size_t blen = layer == 0 ? bodylen : j->curlen;

		if (layer > 0)
			/* cur is a whole entity: hand it over as such (ctype NULL). */
			kind = inbound_kind_of(j->curtype);
		step = STEP_ON;
		if (kind == MIME_SMIME_ENVELOPED || kind == MIME_SMIME_AUTH_ENVELOPED ||
		    (kind == MIME_SMIME_PKCS7_UNKNOWN && layer == 0))
			step = decrypt_step(j, &kind, ctype, b, blen);
		if (step == STEP_ON && (kind == MIME_SMIME_SIGNED_OPAQUE ||
		    kind == MIME_SMIME_SIGNED_DETACHED))
			step = verify_step(j, kind, layer, ctype, b, blen);
		if (step != STEP_NEXT)
			break;
	}
	return step == STEP_FAIL ? -1 : 0;
}

/*
 * protect_step - the protected headers of what was decrypted or unwrapped
 * replace the outer ones (hp.h); X-Kmilter-Header-Protection says which.
 * 0, or -1 when out of memory.
 */
static int
protect_step(struct in_job *j)
{
	struct hp_report rep;
	struct kmerr err;
	char hdr[700];

	if (!j->decrypted && !j->unwrapped)
		return 0;
	if (hp_apply(j->v, j->m, j->hpent != NULL ? j->hpent : j->cur,
	    j->hpent != NULL ? j->hplen : j->curlen, &rep, &err) != KM_OK)
		return -1;
	if (*rep.hp == '\0')
		return 0;
	hp_report_value(&rep, hdr, sizeof(hdr));
	if (*rep.skipped)
		log_warnx("%s: inbound: header protection: %s", message_qid(j->m), hdr);
	else
		log_info("%s: inbound: header protection: %s", message_qid(j->m), hdr);
	return verdict_header_add(j->v, "X-Kmilter-Header-Protection", hdr) == KM_OK ? 0 : -1;
}

/* inbound_deliver - the opened entity, the headers that say what was done, the result */
void
inbound_deliver(struct in_job *j)
{
	struct kmerr err;
	enum km_status st;

	if (j->cur != NULL &&
	    (st = entity_replace(j->v, j->m, j->cur, j->curlen, &err)) !=
	    KM_OK) {
		snprintf(j->reason, sizeof(j->reason), "%s", err.msg);
		if (st == KM_PROTO)
			inbound_malformed(j->s, j->v, j->reason);
		else
			verdict_tempfail(j->v, "%s", j->reason);
		return;
	}
	if (j->cur != NULL && protect_step(j) != 0)
		goto nomem;
	if (j->decrypted) {
		char hdr[300];

		snprintf(hdr, sizeof(hdr), "decrypted by %s%s%s", j->c->gateway_name,
		    *j->detail ? ", key " : "", j->detail);
		if (verdict_header_add(j->v, "X-Kmilter-Decrypted", hdr) != KM_OK)
			goto nomem;
	}
	if (*j->ar && verdict_header_add(j->v, "Authentication-Results", j->ar) != KM_OK)
		goto nomem;
	j->v->action_name = j->decrypted && *j->ar ? "decrypt+verify" : j->decrypted ?
	    "decrypt" : j->unwrapped ? "unwrap+verify" : *j->ar ? "verify" : "pass";
	if (*j->reason)
		snprintf(j->v->result, sizeof(j->v->result), "%.250s", j->reason);
	else if (*j->note)
		log_info("%s: inbound: %s", message_qid(j->m), j->note);
	return;
nomem:
	verdict_tempfail(j->v, "out of memory");
}
