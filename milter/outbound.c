/*
 * outbound.c - sign and encrypt what an internal user sends (see outbound.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/x509.h>

#include "entity.h"
#include "keystore.h"
#include "log.h"
#include "mime.h"
#include "outbound.h"
#include "policy.h"
#include "runtime.h"
#include "secmem.h"
#include "smime.h"
#include "spool.h"

/* lookup_cert - the recipient's certificate, from RCPT time or now */
static enum km_status
lookup_cert(struct message *m, int i, char *err, size_t errlen)
{
	struct kmerr ke = { 0 };
	enum km_status st;

	if (m->rcpt_certs[i] != NULL)
		return KM_OK;
	st = keystore_get_cert(runtime_keystore(), m->rcpts[i], &m->rcpt_certs[i],
	    &ke);
	snprintf(err, errlen, "%s", ke.msg);
	return st;
}

/* outbound_rcpt - look up a recipient's certificate; refuse when policy needs one */
enum km_status
outbound_rcpt(struct session *s, int i, char *reply, size_t replylen,
    const char **rcode, const char **xcode)
{
	struct message *m = s->msg;
	struct rcpt_policy pol = policy_for_rcpt(s->conf, m->rcpts[i]);
	char err[256];
	enum km_status st;

	if (pol.encrypt == ENCRYPT_NEVER)
		return KM_OK;
	st = lookup_cert(m, i, err, sizeof(err));
	if (st == KM_OK)
		return KM_OK;
	if (st == KM_TEMPFAIL || st == KM_NOMEM) {
		*rcode = "451";
		*xcode = "4.7.1";
		snprintf(reply, replylen, "<%s>: cannot look up the S/MIME certificate "
		    "now, try again later", m->rcpts[i]);
		log_warnx("%s: outbound: rcpt=<%s>: certificate lookup: %s", message_qid(m),
		    m->rcpts[i], err);
		return KM_TEMPFAIL;
	}
	if (pol.encrypt == ENCRYPT_MANDATORY ||
	    s->conf->out_missing_cert == MISSING_REFUSE) {
		*rcode = "550";
		*xcode = "5.7.1";
		snprintf(reply, replylen, "<%s>: no usable S/MIME certificate (%s), and "
		    "policy requires encryption for this recipient", m->rcpts[i], err);
		log_info("%s: outbound: rcpt=<%s> refused: %s", message_qid(m), m->rcpts[i], err);
		return KM_PERMFAIL;
	}
	log_debug(1, "%s: outbound: rcpt=<%s>: %s", message_qid(m), m->rcpts[i], err);
	return KM_OK;
}

/* strip_tag - the subject without the tag (case-insensitive), or NULL if absent */
static char *
strip_tag(const char *subject, const char *tag)
{
	size_t tl = strlen(tag), o = 0;
	const char *p = subject;
	char *out;
	int found = 0;

	if (tl == 0 || (out = malloc(strlen(subject) + 1)) == NULL)
		return NULL;
	while (*p) {
		if (strncasecmp(p, tag, tl) == 0) {
			found = 1;
			p += tl;
			while (*p == ' ' && (o == 0 || out[o - 1] == ' '))
				p++;
			continue;
		}
		out[o++] = *p++;
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
	if (!found) {
		free(out);
		return NULL;
	}
	return out;
}

/* seven_bit_clean - can this entity travel as multipart/signed unchanged? */
static int
seven_bit_clean(const char *p, size_t n)
{
	size_t line = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c >= 0x80 || c == 0)
			return 0;
		if (c == '\n')
			line = 0;
		else if (++line > 998)
			return 0;
	}
	return 1;
}

/* map_digest, map_cipher, map_padding - configuration words to smime enums */
static enum smime_digest
map_digest(int d)
{
	return d == DIGEST_SHA512 ? SMIME_MD_SHA512 : d == DIGEST_SHA384 ? SMIME_MD_SHA384 :
	    SMIME_MD_SHA256;
}

static enum smime_cipher
map_cipher(int c)
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
 * client_encrypted - does the body parse as CMS enveloped or authEnveloped
 *	data?  A label alone proves nothing: plaintext labelled
 *	application/pkcs7-mime must not pass as "already encrypted".
 *	KM_OK yes; KM_PROTO/KM_PERMFAIL no (why in err); KM_TEMPFAIL/KM_NOMEM.
 */
static enum km_status
client_encrypted(struct message *m, const char *ctype, char *err, size_t errlen)
{
	struct smime_envelope *env = NULL;
	const unsigned char *body;
	size_t bodylen;
	enum km_status st;

	if ((st = spool_map(m->body, &body, &bodylen, err, errlen)) != KM_OK)
		return st == KM_NOMEM ? KM_NOMEM : KM_TEMPFAIL;
	st = smime_envelope_open(ctype, (const char *)body, bodylen, &env, err, errlen);
	smime_envelope_free(env);
	return st;
}

/* add_reason - append a downgrade reason ("; " between them) */
static void
add_reason(char *buf, size_t len, const char *why)
{
	size_t used = strlen(buf), n = strlen(why);

	if (used > 0 && used + 2 < len) {
		memcpy(buf + used, "; ", 2);
		used += 2;
	}
	if (used + n >= len)
		n = len - used - 1;	/* truncated: the log line has a fixed size */
	memcpy(buf + used, why, n);
	buf[used + n] = '\0';
}

/* outbound_eom - sign and/or encrypt the message, or say why not */
void
outbound_eom(struct session *s, struct verdict *v)
{
	struct message *m = s->msg;
	const struct kmilter_conf *c = s->conf;
	struct keystore *ks = runtime_keystore();
	const char *ctype = message_header(m, "Content-Type");
	struct mime_ctype *ct = NULL;
	enum mime_smime_kind kind = MIME_SMIME_NONE;
	int sign = c->out_sign == SIGN_YES, encrypt = 1, mandatory_tag = 0, any_mandatory = 0;
	int want_encrypt = 0, sender_internal = policy_domain_internal(c, m->from);
	char err[512], blockers[200] = "", downgrade[256] = "", reason[300], *newsubj = NULL;
	struct kmerr ke = { 0 };
	enum policy_signer ps;
	X509 *signer = NULL, *self = NULL, **certs = NULL;
	EVP_PKEY *key = NULL;
	STACK_OF(X509) *chain = NULL;
	char *entity = NULL, *signed_ent = NULL, *final = NULL;
	size_t entlen = 0, signedlen = 0, finallen = 0, ncerts = 0;
	const unsigned char *body;
	size_t bodylen;
	enum km_status st;
	BIO *out = NULL;

	if (ctype != NULL && mime_ctype_parse(ctype, &ct, err, sizeof(err)) == KM_OK)
		kind = mime_smime_kind(ct);
	ct = mime_ctype_free(ct);
	if (kind == MIME_SMIME_ENVELOPED || kind == MIME_SMIME_AUTH_ENVELOPED ||
	    kind == MIME_SMIME_PKCS7_UNKNOWN) {
		switch (client_encrypted(m, ctype, err, sizeof(err))) {
		case KM_OK:
			snprintf(v->result, sizeof(v->result), "already encrypted by the client");
			return;
		case KM_TEMPFAIL:
		case KM_NOMEM:
			verdict_tempfail(v, "%s", err);
			return;
		default:
			log_warnx("%s: outbound: labelled %s but not CMS enveloped data (%s): "
			    "treated as content, signed and encrypted as policy says",
			    message_qid(m), mime_smime_kind_name(kind), err);
			kind = MIME_SMIME_NONE;
		}
	}
	if (kind == MIME_SMIME_SIGNED_DETACHED || kind == MIME_SMIME_SIGNED_OPAQUE)
		sign = 0;	/* keep the client's signature; encrypt around it */

	/* A subject tag makes every recipient mandatory. */
	if (*c->out_subject_tag && message_header(m, "Subject") != NULL &&
	    (newsubj = strip_tag(message_header(m, "Subject"), c->out_subject_tag)) != NULL) {
		mandatory_tag = 1;
		if (verdict_header_change(v, "Subject", 1, newsubj) != KM_OK)
			goto nomem;
	}

	/* One body for every recipient: encrypt only if all can read it. */
	for (int i = 0; i < m->nrcpts; i++) {
		struct rcpt_policy pol = policy_for_rcpt(c, m->rcpts[i]);
		char why[160];

		if (mandatory_tag)
			pol.encrypt = ENCRYPT_MANDATORY;
		if (!pol.sign)
			sign = 0;
		any_mandatory |= pol.encrypt == ENCRYPT_MANDATORY;
		want_encrypt |= pol.encrypt != ENCRYPT_NEVER;
		if (pol.encrypt == ENCRYPT_NEVER) {
			encrypt = 0;
			snprintf(why, sizeof(why), "<%s> (policy never)", m->rcpts[i]);
		} else if ((st = lookup_cert(m, i, err, sizeof(err))) == KM_OK)
			continue;
		else if (st == KM_TEMPFAIL || st == KM_NOMEM) {
			verdict_tempfail(v, "certificate lookup for <%s>: %s", m->rcpts[i], err);
			goto out;
		} else {
			encrypt = 0;
			snprintf(why, sizeof(why), "<%.60s> (%.80s)", m->rcpts[i], err);
		}
		if (strlen(blockers) + strlen(why) + 3 < sizeof(blockers))
			snprintf(blockers + strlen(blockers), sizeof(blockers) - strlen(blockers),
			    "%s%s", *blockers ? ", " : "", why);
	}
	if (c->out_encrypt == ENCRYPT_NEVER && !any_mandatory)
		encrypt = want_encrypt = 0;
	if (any_mandatory && !encrypt) {
		verdict_reject(v, "550", "5.7.1", "message must be encrypted, but no usable "
		    "S/MIME certificate for %s", blockers);
		goto out;
	}
	if (want_encrypt && !encrypt) {
		snprintf(reason, sizeof(reason), "not encrypted: %s", blockers);
		add_reason(downgrade, sizeof(downgrade), reason);
	}

	/* A signature means the sender: only for an identity that may use it. */
	if (sign && (ps = policy_signer(c, s->auth_authen, m->from)) != SIGNER_OK) {
		sign = 0;
		if (ps != SIGNER_NOT_INTERNAL) {
			snprintf(reason, sizeof(reason), "sending unsigned: <%.80s>: %s", m->from,
			    policy_signer_name(ps));
			add_reason(downgrade, sizeof(downgrade), reason);
		}
	}
	if (sign) {
		st = keystore_get_signer(ks, m->from, &signer, &key, &chain, &ke);
		snprintf(err, sizeof(err), "%s", ke.msg);
		if (st == KM_TEMPFAIL || st == KM_NOMEM ||
		    (st != KM_OK && c->out_no_signing_key == NOSIGNKEY_TEMPFAIL)) {
			verdict_tempfail(v, "signing key of <%s>: %s", m->from, err);
			goto out;
		}
		if (st != KM_OK) {
			sign = 0;
			snprintf(reason, sizeof(reason), "sending unsigned: <%.80s> has no signing "
			    "key here: %.120s", m->from, err);
			add_reason(downgrade, sizeof(downgrade), reason);
		}
	}
	if (!sign && !encrypt)
		goto out;

	if (spool_map(m->body, &body, &bodylen, err, sizeof(err)) != KM_OK) {
		verdict_tempfail(v, "%s", err);
		goto out;
	}
	if (entity_from_message(m, body, bodylen, &entity, &entlen) != KM_OK)
		goto nomem;

	if (sign) {
		enum smime_sign_mode mode = c->out_signature == SIGFORM_OPAQUE ?
		    SMIME_MODE_OPAQUE : SMIME_MODE_DETACHED;

		if (!encrypt && mode == SMIME_MODE_DETACHED && !seven_bit_clean(entity, entlen))
			mode = SMIME_MODE_OPAQUE;
		if ((out = BIO_new(BIO_s_mem())) == NULL)
			goto nomem;
		st = smime_sign(entity, entlen, signer, key, chain, map_digest(c->out_digest),
		    mode, out, err, sizeof(err));
		if (st != KM_OK) {
			verdict_tempfail(v, "signing: %s", err);
			goto out;
		}
		if ((signed_ent = entity_from_bio(out, &signedlen)) == NULL)
			goto nomem;
		BIO_free(out);
		out = NULL;
	}

	if (encrypt) {
		if ((certs = calloc((size_t)m->nrcpts + 1, sizeof(*certs))) == NULL)
			goto nomem;
		for (int i = 0; i < m->nrcpts; i++)
			add_cert(certs, &ncerts, m->rcpt_certs[i]);
		if (c->out_encrypt_to_self && sender_internal) {
			st = keystore_get_cert(ks, m->from, &self, &ke);
			snprintf(err, sizeof(err), "%s", ke.msg);
			if (st == KM_OK)
				add_cert(certs, &ncerts, self);
			else if (st == KM_TEMPFAIL || st == KM_NOMEM) {
				verdict_tempfail(v, "certificate of the sender <%s>: %s", m->from, err);
				goto out;
			} else
				log_info("%s: outbound: sender <%s> has no certificate: the sent "
				    "copy is not encrypted to them: %s", message_qid(m), m->from, err);
		}
		if ((out = BIO_new(BIO_s_mem())) == NULL)
			goto nomem;
		st = smime_encrypt(sign ? signed_ent : entity, sign ? signedlen : entlen,
		    certs, ncerts, map_cipher(c->out_cipher),
		    c->out_rsa_padding == PADDING_OAEP ? SMIME_PAD_OAEP : SMIME_PAD_PKCS1,
		    out, err, sizeof(err));
		if (st != KM_OK) {
			verdict_tempfail(v, "encryption: %s", err);
			goto out;
		}
		if ((final = entity_from_bio(out, &finallen)) == NULL)
			goto nomem;
	} else {
		final = signed_ent;
		finallen = signedlen;
		signed_ent = NULL;
	}

	if ((st = entity_replace(v, m, final, finallen, err, sizeof(err))) != KM_OK) {
		verdict_tempfail(v, "rewrite: %s", err);
		goto out;
	}
	v->action_name = sign && encrypt ? "sign+encrypt" : sign ? "sign" : "encrypt";
	goto out;
nomem:
	verdict_tempfail(v, "out of memory");
out:
	if (v->kind == VERDICT_TEMPFAIL || v->kind == VERDICT_REJECT)
		verdict_drop_changes(v);	/* nothing partial reaches the MTA */
	else if (*downgrade)
		verdict_downgrade(v, "%s", downgrade);
	BIO_free(out);
	if (entity)
		secmem_free(entity, entlen);
	if (signed_ent)
		secmem_free(signed_ent, signedlen);
	free(final);
	free(certs);
	free(newsubj);
	X509_free(self);
	X509_free(signer);
	EVP_PKEY_free(key);
	sk_X509_pop_free(chain, X509_free);
}
