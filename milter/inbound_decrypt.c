/*
 * inbound_decrypt.c - open one enveloped layer of inbound mail for the
 * internal recipients that can read it (see inbound_decrypt.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>

#include "entity.h"
#include "inbound_decrypt.h"
#include "keystore.h"
#include "log.h"
#include "policy.h"
#include "runtime.h"
#include "secmem.h"
#include "smime.h"
#include "inbound_spool.h"
#include "spool.h"

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
 * Content ciphers accepted inbound (README, "Inbound S/MIME as clients
 * send it"): AES in CBC or GCM;
 * Triple-DES still, as RFC 8551 2.7 lets receivers (older Outlook and
 * gpgsm send it), marked weak in X-Kmilter-Decrypted; RC2 (RC2/40 of old
 * Windows clients), single DES and anything else stay encrypted and the
 * verdict says so.  kmilter itself only ever encrypts with AES.
 */
enum cipher_use { CIPHER_OK, CIPHER_WEAK, CIPHER_REFUSED };

/* cipher_use - how an inbound content cipher (OpenSSL short name) is taken */
static enum cipher_use
cipher_use(const char *name)
{
	static const char *const ok[] = { "AES-128-CBC", "AES-192-CBC", "AES-256-CBC",
	    "id-aes128-GCM", "id-aes192-GCM", "id-aes256-GCM" };

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strcmp(name, ok[i]) == 0)
			return CIPHER_OK;
	return strcmp(name, "DES-EDE3-CBC") == 0 ? CIPHER_WEAK : CIPHER_REFUSED;
}

/*
 * open_for_readers - decrypt an opened envelope into out when every
 * envelope recipient is internal and can read it with its own keys.
 * KM_OK (detail says with which key); KM_PERMFAIL when it stays encrypted
 * (why in reason, verdict downgraded); KM_TEMPFAIL; KM_NOMEM.  out may
 * hold a failed try's bytes on an error: the caller discards it.
 */
static enum km_status
open_for_readers(const struct session *s, struct verdict *v, struct smime_envelope *env,
    BIO *out, BIO *spoolw, char *reason, size_t rlen, char *detail, size_t dlen)
{
	const struct kmerr *we;
	const struct message *m = s->msg;
	struct keyset ks = { 0 };
	struct smime_reader *rd = NULL;
	struct smime_keypair *cands = NULL;
	size_t total = 0, nc = 0;
	int *matched = NULL, failed = -1;
	enum km_status st;
	struct kmerr err;
	char cbuf[64];
	const char *cipher;

	if ((cipher = smime_envelope_cipher(env, cbuf, sizeof(cbuf))) != NULL &&
	    cipher_use(cipher) == CIPHER_REFUSED) {
		verdict_downgrade(v, "kept encrypted: content cipher %s is not accepted "
		    "(weak)", cipher);
		snprintf(reason, rlen, "%s", v->result);
		return KM_PERMFAIL;
	}
	if ((st = readers_of(s, v, env, &ks, reason, rlen)) != KM_OK)
		goto out;
	for (int r = 0; r < ks.n; r++)
		total += ks.nkeys[r];
	rd = calloc((size_t)ks.n, sizeof(*rd));
	matched = calloc((size_t)ks.n, sizeof(*matched));
	cands = calloc(total, sizeof(*cands));
	if (rd == NULL || matched == NULL || cands == NULL) {
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
	st = smime_envelope_decrypt_readers(env, rd, (size_t)ks.n, out, &failed, matched,
	    &err);
	if (st != KM_OK && spoolw != NULL && (we = spool_writer_error(spoolw)) != NULL) {
		/* the spool filled up or could not be written: try later */
		snprintf(reason, rlen, "decrypted entity: %s", we->msg);
		st = we->status == KM_NOMEM ? KM_NOMEM : KM_TEMPFAIL;
		goto out;
	}
	if (st == KM_PERMFAIL && failed >= 0) {
		verdict_downgrade(v, "kept encrypted: <%.200s> cannot open it (its "
		    "RecipientInfo does not yield the content key)", m->rcpts[failed]);
		snprintf(reason, rlen, "%s", v->result);
		goto out;
	}
	if (st == KM_TEMPFAIL) {
		/* the input or the spool could not be read or written */
		snprintf(reason, rlen, "%s", err.msg);
		goto out;
	}
	if (st != KM_OK) {
		snprintf(reason, rlen, "left encrypted: %s", err.msg);
		st = st == KM_NOMEM ? KM_NOMEM : KM_PERMFAIL;
		goto out;
	}
	/* Which generation opened it for the first recipient, for the log. */
	if (matched[0] >= 0)
		snprintf(detail, dlen, "generation %d%s", ks.keys[0][matched[0]].generation,
		    ks.keys[0][matched[0]].current ? "" : " (expired)");
	if (cipher != NULL && cipher_use(cipher) == CIPHER_WEAK) {
		size_t n = strlen(detail);

		snprintf(detail + n, dlen - n, "%sweak cipher %s", n ? ", " : "", cipher);
		log_info("%s: inbound: content cipher %s is weak (accepted)",
		    message_qid(m), cipher);
	}
	st = KM_OK;
out:
	free(cands);
	free(matched);
	free(rd);
	keyset_free(&ks);
	if (st == KM_NOMEM)
		snprintf(reason, rlen, "out of memory");
	return st;
}

/*
 * inbound_decrypt_layer - decrypt one enveloped layer if every envelope recipient
 * is internal and can read it with its own keys (see inbound_decrypt.h).
 * Returns KM_OK with *out (plaintext entity); KM_PERMFAIL when it stays
 * encrypted (why in reason, verdict downgraded); KM_TEMPFAIL; KM_PROTO.
 */
enum km_status
inbound_decrypt_layer(const struct session *s, struct verdict *v, const char *ctype, const char *body,
    size_t len, char **out, size_t *outlen, char *reason, size_t rlen, char *detail, size_t dlen)
{
	struct smime_envelope *env = NULL;
	enum km_status st;
	BIO *bio = NULL;
	struct kmerr err;

	if ((st = smime_envelope_open(ctype, body, len, &env, &err)) != KM_OK) {
		snprintf(reason, rlen, "%s", err.msg);
		return st;
	}
	if ((bio = BIO_new(BIO_s_mem())) == NULL)
		st = KM_NOMEM;
	else if ((st = open_for_readers(s, v, env, bio, NULL, reason, rlen, detail, dlen)) ==
	    KM_OK && (*out = entity_from_bio(bio, outlen)) == NULL)
		st = KM_NOMEM;
	if (bio != NULL) {
		char *data;
		long n = BIO_get_mem_data(bio, &data);

		if (n > 0)
			secmem_wipe(data, (size_t)n);
		BIO_free(bio);
	}
	smime_envelope_free(env);
	if (st == KM_NOMEM)
		snprintf(reason, rlen, "out of memory");
	return st;
}

/*
 * inbound_decrypt_spool - the same for a large message read as a stream
 * from its spool (see inbound_decrypt.h)
 */
enum km_status
inbound_decrypt_spool(const struct session *s, struct verdict *v, struct spool *in,
    enum cms_in_mode mode, struct spool **out, char **head, size_t *hlen, char *reason,
    size_t rlen, char *detail, size_t dlen)
{
	struct smime_envelope *env = NULL;
	struct spool *pt = NULL;
	BIO *rd = NULL, *wr = NULL, *split = NULL;
	enum km_status st;
	struct kmerr err;

	*out = NULL;
	*head = NULL;
	if ((rd = spool_reader(in)) == NULL) {
		snprintf(reason, rlen, "out of memory");
		return KM_NOMEM;
	}
	if ((st = smime_envelope_open_stream(rd, mode, &env, &err)) != KM_OK) {
		snprintf(reason, rlen, "%s", err.msg);
		goto out;
	}
	if ((pt = spool_new(s->conf->spool_dir, (size_t)s->conf->spool_memory_max)) == NULL ||
	    (wr = spool_writer(pt)) == NULL || (split = inbound_split_new(wr)) == NULL) {
		st = KM_NOMEM;
		snprintf(reason, rlen, "out of memory");
		goto out;
	}
	st = open_for_readers(s, v, env, split, wr, reason, rlen, detail, dlen);
	if (st == KM_OK && (*head = inbound_split_head(split, hlen)) == NULL) {
		snprintf(reason, rlen, "decrypted entity: no end of its header block in "
		    "its first %d octets", SPLIT_HEAD_MAX);
		st = KM_PROTO;
	}
	if (st == KM_OK) {
		*out = pt;
		pt = NULL;
	}
out:
	if (split != NULL) {
		BIO_pop(split);
		BIO_free(split);
	}
	BIO_free(wr);
	spool_free(pt);		/* a failed try's plaintext, wiped */
	smime_envelope_free(env);
	BIO_free(rd);
	return st;
}
