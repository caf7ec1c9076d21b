/*
 * inbound.c - decrypt and verify S/MIME for internal users (see inbound.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>

#include "entity.h"
#include "inbound.h"
#include "keystore.h"
#include "log.h"
#include "mime.h"
#include "policy.h"
#include "runtime.h"
#include "secmem.h"
#include "smime.h"
#include "smime_verify.h"
#include "spool.h"

#define MAX_LAYERS 3

/* kind_of - the S/MIME kind of an entity's (or the message's) Content-Type */
static enum mime_smime_kind
kind_of(const char *ctype)
{
	struct mime_ctype *ct = NULL;
	enum mime_smime_kind k = MIME_SMIME_NONE;

	if (ctype != NULL && mime_ctype_parse(ctype, &ct, NULL) == KM_OK)
		k = mime_smime_kind(ct);
	mime_ctype_free(ct);
	return k;
}

/* entity_ctype - the Content-Type of an entity held in memory, malloc'ed */
static char *
entity_ctype(const char *ent, size_t len)
{
	struct mime_headers *h = NULL;
	size_t hl, bo;
	char *r = NULL;

	if (mime_entity_split(ent, len, &hl, &bo, NULL) == KM_OK &&
	    mime_headers_parse(ent, hl, &h, NULL) == KM_OK &&
	    mime_headers_get(h, "Content-Type") != NULL)
		r = strdup(mime_headers_get(h, "Content-Type"));
	mime_headers_free(h);
	return r;
}

/* malformed - apply policy.on_malformed */
static void
malformed(const struct session *s, struct verdict *v, const char *what)
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

struct keyset {
	struct keystore_key **keys;	/* per recipient */
	size_t *nkeys;
	int n;
};

/* keyset_free - release every recipient's keys */
static void
keyset_free(struct keyset *ks)
{
	for (int i = 0; i < ks->n; i++)
		keystore_keys_free(ks->keys[i], ks->nkeys[i]);
	free(ks->keys);
	free(ks->nkeys);
	memset(ks, 0, sizeof(*ks));
}

/*
 * kept_by_hook - did the admin hook itself decide that a key stays locked
 * or is not released (policy), rather than something failing?
 */
static int
kept_by_hook(const struct kmerr *err)
{
	/* the key store gives this reason to the hook's decisions only
	 * (keep-encrypted, release denied); see keystore.h */
	return kmerr_is(err, KMERR_REFUSED);
}

/*
 * readers_of - the keys of every envelope recipient, who must all be
 * internal and each hold a key matching a RecipientInfo.  KM_OK; else
 * KM_PERMFAIL (why in reason; the verdict is downgraded when policy
 * wanted the message decrypted), KM_TEMPFAIL or KM_NOMEM.
 */
static enum km_status
readers_of(const struct session *s, struct verdict *v, const struct smime_envelope *env,
    struct keyset *ks, char *reason, size_t rlen)
{
	const struct message *m = s->msg;
	enum km_status st;
	char err[256];
	struct kmerr ke = { 0 };

	/* One body reaches every recipient: all must be internal. */
	for (int i = 0; i < m->nrcpts; i++)
		if (!policy_domain_internal(s->conf, m->rcpts[i])) {
			verdict_downgrade(v, "kept encrypted: <%.200s> is not internal",
			    m->rcpts[i]);
			snprintf(reason, rlen, "%s", v->result);
			return KM_PERMFAIL;
		}
	ks->keys = calloc((size_t)m->nrcpts, sizeof(*ks->keys));
	ks->nkeys = calloc((size_t)m->nrcpts, sizeof(*ks->nkeys));
	if (m->nrcpts == 0 || ks->keys == NULL || ks->nkeys == NULL)
		return KM_NOMEM;
	for (int i = 0; i < m->nrcpts; i++) {
		int fits = 0;

		st = keystore_get_keys(runtime_keystore(), m->rcpts[i], m->queue_id,
		    &ks->keys[ks->n], &ks->nkeys[ks->n], &ke);
		snprintf(err, sizeof(err), "%s", ke.msg);
		if (st == KM_TEMPFAIL || st == KM_NOMEM) {
			snprintf(reason, rlen, "keys of <%s>: %s", m->rcpts[i], err);
			return st;
		}
		if (st != KM_OK) {
			/* No key, or locked: the hook's own decision is policy;
			   anything else leaves it less readable than wanted. */
			if (!kept_by_hook(&ke))
				verdict_downgrade(v, "kept encrypted: <%.200s>: %.200s",
				    m->rcpts[i], err);
			snprintf(reason, rlen, "left encrypted: <%s>: %s", m->rcpts[i], err);
			return KM_PERMFAIL;
		}
		for (size_t k = 0; k < ks->nkeys[ks->n]; k++)
			fits |= smime_envelope_match(env, ks->keys[ks->n][k].cert);
		ks->n++;
		if (!fits) {
			verdict_downgrade(v, "kept encrypted: <%.200s> holds no key this "
			    "message was encrypted to (forwarded, list or Bcc?)", m->rcpts[i]);
			snprintf(reason, rlen, "%s", v->result);
			return KM_PERMFAIL;
		}
	}
	return KM_OK;
}

/*
 * decrypt_layer - decrypt one enveloped layer if every envelope recipient
 * is internal and can read it with its own keys (see inbound.h).
 * Returns KM_OK with *out (plaintext entity); KM_PERMFAIL when it stays
 * encrypted (why in reason, verdict downgraded); KM_TEMPFAIL; KM_PROTO.
 */
static enum km_status
decrypt_layer(const struct session *s, struct verdict *v, const char *ctype, const char *body,
    size_t len, char **out, size_t *outlen, char *reason, size_t rlen, char *detail, size_t dlen)
{
	const struct message *m = s->msg;
	struct smime_envelope *env = NULL;
	struct keyset ks = { 0 };
	struct smime_reader *rd = NULL;
	struct smime_keypair *cands = NULL;
	size_t total = 0, nc = 0;
	int *matched = NULL, failed = -1;
	enum km_status st;
	BIO *bio = NULL;
	struct kmerr err;

	if ((st = smime_envelope_open(ctype, body, len, &env, &err)) != KM_OK) {
		snprintf(reason, rlen, "%s", err.msg);
		return st;
	}
	if ((st = readers_of(s, v, env, &ks, reason, rlen)) != KM_OK)
		goto out;
	for (int r = 0; r < ks.n; r++)
		total += ks.nkeys[r];
	rd = calloc((size_t)ks.n, sizeof(*rd));
	matched = calloc((size_t)ks.n, sizeof(*matched));
	cands = calloc(total, sizeof(*cands));
	if (rd == NULL || matched == NULL || cands == NULL ||
	    (bio = BIO_new(BIO_s_mem())) == NULL) {
		st = KM_NOMEM;
		goto out;
	}
	/* Each recipient is a reader with its own keys only. */
	for (int r = 0; r < ks.n; r++) {
		rd[r].cands = &cands[nc];
		rd[r].ncands = ks.nkeys[r];
		for (size_t k = 0; k < ks.nkeys[r]; k++, nc++) {
			cands[nc].cert = ks.keys[r][k].cert;
			cands[nc].key = ks.keys[r][k].key;
		}
	}
	st = smime_envelope_decrypt_readers(env, rd, (size_t)ks.n, bio, &failed, matched,
	    &err);
	if (st == KM_PERMFAIL && failed >= 0) {
		verdict_downgrade(v, "kept encrypted: <%.200s> cannot open it (its "
		    "RecipientInfo does not yield the content key)", m->rcpts[failed]);
		snprintf(reason, rlen, "%s", v->result);
		goto out;
	}
	if (st != KM_OK) {
		snprintf(reason, rlen, "left encrypted: %s", err.msg);
		st = st == KM_NOMEM ? KM_NOMEM : KM_PERMFAIL;
		goto out;
	}
	if ((*out = entity_from_bio(bio, outlen)) == NULL) {
		st = KM_NOMEM;
		goto out;
	}
	/* Which generation opened it for the first recipient, for the log. */
	if (matched[0] >= 0)
		snprintf(detail, dlen, "generation %d%s", ks.keys[0][matched[0]].generation,
		    ks.keys[0][matched[0]].current ? "" : " (expired)");
	st = KM_OK;
out:
	if (bio != NULL) {
		char *data;
		long n = BIO_get_mem_data(bio, &data);

		if (n > 0)
			secmem_wipe(data, (size_t)n);
		BIO_free(bio);
	}
	free(cands);
	free(matched);
	free(rd);
	keyset_free(&ks);
	smime_envelope_free(env);
	if (st == KM_NOMEM)
		snprintf(reason, rlen, "out of memory");
	return st;
}

/* ar_header - the Authentication-Results value for a verification */
static void
ar_header(const struct session *s, const struct smime_verify_result *r, const char *problem,
    char *buf, size_t len)
{
	const char *id = s->conf->in_authserv_id;

	if (problem != NULL)
		snprintf(buf, len, "%s; smime=permerror (%.200s)", id, problem);
	else if (!r->sig_ok)
		snprintf(buf, len, "%s; smime=fail (bad signature) body.smime-identifier=%s",
		    id, *r->email ? r->email : "unknown");
	else if (!r->chain_ok)
		snprintf(buf, len, "%s; smime=fail (untrusted signer: %.100s) "
		    "body.smime-identifier=%s", id, r->chain_error, *r->email ? r->email : "unknown");
	else if (!r->from_match)
		snprintf(buf, len, "%s; smime=fail (signer does not match From) "
		    "body.smime-identifier=%s", id, *r->email ? r->email : "unknown");
	else
		snprintf(buf, len, "%s; smime=pass body.smime-identifier=%s", id, r->email);
}

/*
 * verify_layer - verify a signed entity; fills the AR value; for opaque
 * signed-data with unwrapping, *content gets the inner entity.  Returns
 * smime_verify()'s status: KM_OK when the signature could be checked at
 * all (the verdict is in the AR value), else why not in note.
 */
static enum km_status
verify_layer(const struct session *s, const char *ctype, const char *body, size_t len,
    int want_content, char **content, size_t *clen, char *ar, size_t arlen, char *note,
    size_t nlen)
{
	struct smime_verify_result res;
	X509_STORE *trust = runtime_trust();
	BIO *bio = want_content ? BIO_new(BIO_s_mem()) : NULL;
	struct kmerr err;
	enum km_status st;

	memset(&res, 0, sizeof(res));
	st = smime_verify(ctype, body, len, trust, message_header(s->msg, "From"), &res, bio,
	    &err);
	if (st != KM_OK) {
		ar_header(s, &res, err.msg, ar, arlen);
		snprintf(note, nlen, "signature not checked: %s", err.msg);
	} else {
		ar_header(s, &res, NULL, ar, arlen);
		snprintf(note, nlen, "signature %s signer=%s", res.sig_ok && res.chain_ok &&
		    res.from_match ? "pass" : "fail", *res.email ? res.email : "unknown");
		if (bio != NULL && res.opaque)
			*content = entity_from_bio(bio, clen);
	}
	BIO_free(bio);
	X509_STORE_free(trust);
	return st;
}

/* What opening the layers of one message found, and the entity so far. */
struct in_job {
	struct session	*s;
	struct message	*m;
	const struct kmilter_conf *c;
	struct verdict	*v;
	char		*cur;		/* the innermost entity opened: wiped */
	size_t		 curlen;
	char		*curtype;	/* its Content-Type */
	int		 decrypted;
	int		 unwrapped;
	char		 reason[512];
	char		 detail[64];
	char		 ar[512];
	char		 note[300];
};

/* What to do after one step of opening a layer. */
enum in_step {
	STEP_NEXT,	/* a layer was opened: look at the one inside */
	STEP_ON,	/* not this step's kind after all: try the next step */
	STEP_STOP,	/* nothing more to open */
	STEP_FAIL	/* the verdict is made (tempfail, reject, malformed) */
};

/* take_layer - the entity just opened becomes the current one */
static void
take_layer(struct in_job *j, char *next, size_t nextlen)
{
	if (j->cur)
		secmem_free(j->cur, j->curlen);
	j->cur = next;
	j->curlen = nextlen;
	free(j->curtype);
	j->curtype = entity_ctype(j->cur, j->curlen);
}

/* decrypt_step - open an enveloped layer (see decrypt_layer) */
static enum in_step
decrypt_step(struct in_job *j, enum mime_smime_kind *kind, const char *ctype,
    const char *b, size_t blen)
{
	char *next = NULL;
	size_t nextlen = 0;
	enum km_status st;

	if (!j->c->in_decrypt)
		return STEP_STOP;
	st = decrypt_layer(j->s, j->v, ctype, b, blen, &next, &nextlen, j->reason,
	    sizeof(j->reason), j->detail, sizeof(j->detail));
	if (st == KM_PROTO && *kind == MIME_SMIME_PKCS7_UNKNOWN) {
		/* pkcs7-mime without smime-type: maybe signed-data. */
		*kind = MIME_SMIME_SIGNED_OPAQUE;
		j->reason[0] = '\0';
		return STEP_ON;
	} else if (st == KM_PROTO) {
		malformed(j->s, j->v, j->reason);
		return STEP_FAIL;
	} else if (st == KM_TEMPFAIL || st == KM_NOMEM) {
		verdict_tempfail(j->v, "%s", j->reason);
		return STEP_FAIL;
	} else if (st != KM_OK) {
		log_info("%s: inbound: %s", message_qid(j->m), j->reason);
		return STEP_STOP;
	}
	j->decrypted++;
	take_layer(j, next, nextlen);
	return STEP_NEXT;
}

/* verify_step - verify a signed layer, and unwrap opaque signed-data if asked */
static enum in_step
verify_step(struct in_job *j, enum mime_smime_kind kind, int layer, const char *ctype,
    const char *b, size_t blen)
{
	int unwrap = kind == MIME_SMIME_SIGNED_OPAQUE && j->c->in_unwrap_opaque;
	char *next = NULL;
	size_t nextlen = 0;
	enum km_status st;

	if (!j->c->in_verify && !unwrap)
		return STEP_STOP;
	st = verify_layer(j->s, ctype, b, blen, unwrap, &next, &nextlen, j->ar,
	    sizeof(j->ar), j->note, sizeof(j->note));
	if (st == KM_PROTO && layer == 0) {
		/* Not S/MIME we can read at all: policy.on_malformed. */
		malformed(j->s, j->v, j->note);
		return STEP_FAIL;
	}
	if (st != KM_OK && *j->reason == '\0')
		/* The message's log line says why it was not checked. */
		snprintf(j->reason, sizeof(j->reason), "%.300s", j->note);
	if (!j->c->in_verify)
		j->ar[0] = '\0';
	if (next == NULL)
		return STEP_STOP;
	j->unwrapped = 1;
	take_layer(j, next, nextlen);
	return STEP_NEXT;
}

/*
 * open_layers - open up to MAX_LAYERS layers: encrypted, then maybe signed
 * or encrypted again.  0, or -1 when the verdict is made.
 */
static int
open_layers(struct in_job *j, enum mime_smime_kind kind, const unsigned char *body,
    size_t bodylen)
{
	enum in_step step = STEP_STOP;

	for (int layer = 0; layer < MAX_LAYERS; layer++) {
		const char *ctype = layer == 0 ? message_header(j->m, "Content-Type") : NULL;
		const char *b = layer == 0 ? (const char *)body : j->cur;
		size_t blen = layer == 0 ? bodylen : j->curlen;

		if (layer > 0)
			/* cur is a whole entity: hand it over as such (ctype NULL). */
			kind = kind_of(j->curtype);
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

/* deliver - the opened entity, the headers that say what was done, the result */
static void
deliver(struct in_job *j)
{
	struct kmerr err;
	enum km_status st;

	if (j->cur != NULL &&
	    (st = entity_replace(j->v, j->m, j->cur, j->curlen, &err)) !=
	    KM_OK) {
		snprintf(j->reason, sizeof(j->reason), "%s", err.msg);
		if (st == KM_PROTO)
			malformed(j->s, j->v, j->reason);
		else
			verdict_tempfail(j->v, "%s", j->reason);
		return;
	}
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
	kind = kind_of(message_header(j.m, "Content-Type"));
	if (kind == MIME_SMIME_NONE || kind == MIME_SMIME_CERTS_ONLY ||
	    kind == MIME_SMIME_COMPRESSED)
		return;
	if (spool_map(j.m->body, &body, &bodylen, &err) != KM_OK) {
		snprintf(j.reason, sizeof(j.reason), "%s", err.msg);
		verdict_tempfail(v, "%s", j.reason);
		return;
	}
	if (open_layers(&j, kind, body, bodylen) == 0)
		deliver(&j);
	if (v->kind == VERDICT_TEMPFAIL || v->kind == VERDICT_REJECT)
		verdict_drop_changes(v);
	if (j.cur)
		secmem_free(j.cur, j.curlen);
	free(j.curtype);
}
