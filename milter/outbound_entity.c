/*
 * outbound_entity.c - what both rewrite paths of outbound (in memory,
 * outbound.c; streamed, outbound_stream.c) share: the entity to protect,
 * the certificates to encrypt to, the configuration's algorithms.  See
 * outbound_int.h.
 */
#include <stdio.h>
#include <stdlib.h>

#include <openssl/x509.h>

#include "entity.h"
#include "hp.h"
#include "keystore.h"
#include "log.h"
#include "outbound_int.h"
#include "policy.h"
#include "runtime.h"
#include "smime.h"

/*
 * outbound_seven_bit_clean - can this entity travel as multipart/signed unchanged?
 * *line carries the length of the current line from one piece to the next
 * (0 at the start).
 */
int
outbound_seven_bit_clean(const char *p, size_t n, size_t *line)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c >= 0x80 || c == 0)
			return 0;
		if (c == '\n')
			*line = 0;
		else if (++*line > 998)
			return 0;
	}
	return 1;
}

/* outbound_digest, outbound_cipher - configuration words to smime enums */
enum smime_digest
outbound_digest(int d)
{
	return d == DIGEST_SHA512 ? SMIME_MD_SHA512 : d == DIGEST_SHA384 ? SMIME_MD_SHA384 :
	    SMIME_MD_SHA256;
}

enum smime_cipher
outbound_cipher(int c)
{
	return c == CIPHER_AES256_GCM ? SMIME_CIPHER_AES256_GCM :
	    c == CIPHER_AES128_CBC ? SMIME_CIPHER_AES128_CBC : SMIME_CIPHER_AES256_CBC;
}

/* add_cert - add a certificate to the list unless it is there already */
static void
add_cert(X509 **list, size_t *n, X509 *c)
{
	for (size_t i = 0; i < *n; i++)
		if (X509_cmp(list[i], c) == 0)
			return;
	list[(*n)++] = c;
}

/*
 * outbound_sender_cert - j->self: the sender's encryption certificate, asked for
 * once per message; the keystore's answer (err filled)
 */
enum km_status
outbound_sender_cert(struct out_job *j, char *err, size_t errlen)
{
	struct kmerr ke = { 0 };
	enum km_status st;

	if (j->self_looked) {
		snprintf(err, errlen, "%s", j->self_err);
		return j->self != NULL ? KM_OK : KM_PERMFAIL;
	}
	st = keystore_get_cert(runtime_keystore(), j->m->from, &j->self, &ke);
	snprintf(err, errlen, "%s", ke.msg);
	if (st != KM_TEMPFAIL && st != KM_NOMEM) {
		j->self_looked = 1;
		snprintf(j->self_err, sizeof(j->self_err), "%s", ke.msg);
	}
	return st;
}

/*
 * outbound_encrypt_to - j->certs: every recipient's certificate, and the sender's
 * when encrypt_to_self says so; 0, or -1 with the verdict made
 */
int
outbound_encrypt_to(struct out_job *j)
{
	struct message *m = j->m;
	enum km_status st;
	char err[512];

	if ((j->certs = calloc((size_t)m->nrcpts + 1, sizeof(*j->certs))) == NULL) {
		verdict_tempfail(j->v, "out of memory");
		return -1;
	}
	for (int i = 0; i < m->nrcpts; i++)
		add_cert(j->certs, &j->ncerts, m->rcpt_certs[i]);
	if (!j->c->out_encrypt_to_self || !policy_domain_internal(j->c, m->from))
		return 0;
	st = outbound_sender_cert(j, err, sizeof(err));
	if (st == KM_OK)
		add_cert(j->certs, &j->ncerts, j->self);
	else if (st == KM_TEMPFAIL || st == KM_NOMEM) {
		verdict_tempfail(j->v, "certificate of the sender <%s>: %s", m->from, err);
		return -1;
	} else
		log_info("%s: outbound: sender <%s> has no certificate: the sent "
		    "copy is not encrypted to them: %s", message_qid(m), m->from, err);
	return 0;
}

/*
 * outbound_make_entity - j->entity: what is signed or encrypted; with its headers
 * protected (hp.h) unless the client signed it (its signature covers an
 * entity kmilter must not change).  0, or -1 with the verdict made.
 */
int
outbound_make_entity(struct out_job *j, const unsigned char *body, size_t bodylen)
{
	struct hp_out o = { .cipher = j->encrypt, .hide_subject = j->encrypt && j->hide_subject,
	    .subject = j->newsubj };
	struct hp_report rep;
	struct kmerr err;

	if (!j->protect) {
		if (entity_from_message(j->m, body, bodylen, &j->entity, &j->entlen) == KM_OK)
			return 0;
		verdict_tempfail(j->v, "out of memory");
		return -1;
	}
	if (hp_protect(j->m, &o, body, bodylen, &j->entity, &j->entlen, &rep, &err) != KM_OK) {
		verdict_tempfail(j->v, "%s", err.msg);
		return -1;
	}
	if (*rep.hp == '\0')
		j->protect = 0;	/* the client protected them: its choice stands */
	else
		log_debug(1, "%s: outbound: headers protected (hp=%s)%s%s", message_qid(j->m),
		    rep.hp, o.hide_subject ? ", Subject hidden" : "",
		    rep.legacy ? ", legacy display" : "");
	return 0;
}
