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
#include "hp.h"
#include "keystore.h"
#include "log.h"
#include "mime.h"
#include "orgchain.h"
#include "outbound.h"
#include "outbound_int.h"
#include "policy.h"
#include "revcheck.h"
#include "runtime.h"
#include "secmem.h"
#include "smime.h"
#include "spool.h"

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

/*
 * client_encrypted - does the body parse as CMS enveloped or authEnveloped
 *	data?  A label alone proves nothing: plaintext labelled
 *	application/pkcs7-mime must not pass as "already encrypted".
 *	KM_OK yes; KM_PROTO/KM_PERMFAIL no (why in err); KM_TEMPFAIL/KM_NOMEM.
 */
static enum km_status
client_encrypted(struct message *m, const char *ctype, struct kmerr *err)
{
	struct smime_envelope *env = NULL;
	const unsigned char *body;
	size_t bodylen;
	enum km_status st;

	if ((st = spool_map(m->body, &body, &bodylen, err)) != KM_OK)
		return st == KM_NOMEM ? KM_NOMEM : KM_TEMPFAIL;
	st = smime_envelope_open(ctype, (const char *)body, bodylen, &env, err);
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

/* downgrade - the message will leave without what kind says, for why:
 * every outbound downgrade goes through here (verdict_downgrade() at the
 * end of outbound_eom()) */
static void
downgrade(char *buf, size_t len, unsigned *dg, unsigned kind, const char *why)
{
	*dg |= kind;
	add_reason(buf, len, why);
}

/*
 * client_done - did the client encrypt it already (or can that not be
 * told now)?  1 when the verdict is made; else 0 with *kind what the
 * message is labelled as (a label on a body that is not CMS enveloped
 * data is logged and forgotten).
 */
static int
client_done(struct message *m, struct verdict *v, enum mime_smime_kind *kind)
{
	const char *ctype = message_header(m, "Content-Type");
	struct mime_ctype *ct = NULL;
	struct kmerr err;

	*kind = MIME_SMIME_NONE;
	if (ctype != NULL && mime_ctype_parse(ctype, &ct, &err) == KM_OK)
		*kind = mime_smime_kind(ct);
	mime_ctype_free(ct);
	if (*kind != MIME_SMIME_ENVELOPED && *kind != MIME_SMIME_AUTH_ENVELOPED &&
	    *kind != MIME_SMIME_PKCS7_UNKNOWN)
		return 0;
	switch (client_encrypted(m, ctype, &err)) {
	case KM_OK:
		snprintf(v->result, sizeof(v->result), "already encrypted by the client");
		return 1;
	case KM_TEMPFAIL:
	case KM_NOMEM:
		verdict_tempfail(v, "%s", err.msg);
		return 1;
	default:
		log_warnx("%s: outbound: labelled %s but not CMS enveloped data (%s): "
		    "treated as content, signed and encrypted as policy says",
		    message_qid(m), mime_smime_kind_name(*kind), err.msg);
		*kind = MIME_SMIME_NONE;
		return 0;
	}
}

/* strip_subject_tag - remove the tag from the Subject; 1 when it was there, -1 nomem */
static int
strip_subject_tag(struct out_job *j)
{
	const char *subject = message_header(j->m, "Subject");

	if (*j->c->out_subject_tag == '\0' || subject == NULL ||
	    (j->newsubj = strip_tag(subject, j->c->out_subject_tag)) == NULL)
		return 0;
	if (verdict_header_change(j->v, "Subject", 1, j->newsubj) != KM_OK) {
		verdict_tempfail(j->v, "out of memory");
		return -1;
	}
	return 1;
}

/*
 * choose_encrypt - one body for every recipient: encrypt only if all can
 * read it.  Sets j->encrypt (and clears j->sign unless every recipient's
 * policy, a rule else outbound.sign, says sign); 0 to go on, -1 when the verdict is made (tempfail, reject).
 */
static int
choose_encrypt(struct out_job *j, int mandatory_tag)
{
	struct message *m = j->m;
	int any_mandatory = 0, want_encrypt = 0;
	char err[512], blockers[200] = "", reason[300];
	enum km_status st;
	int unknown;

	j->encrypt = 1;
	for (int i = 0; i < m->nrcpts; i++) {
		struct rcpt_policy pol = policy_for_rcpt(j->c, m->rcpts[i]);
		char why[160];

		if (mandatory_tag)
			pol.encrypt = ENCRYPT_MANDATORY;
		if (!pol.sign)
			j->sign = 0;
		if (!pol.hide_subject)
			j->hide_subject = 0;
		any_mandatory |= pol.encrypt == ENCRYPT_MANDATORY;
		want_encrypt |= pol.encrypt != ENCRYPT_NEVER;
		if (pol.encrypt == ENCRYPT_NEVER) {
			j->encrypt = 0;
			snprintf(why, sizeof(why), "<%s> (policy never)", m->rcpts[i]);
		} else if ((st = outbound_lookup_cert(j->c, m, i, err, sizeof(err), &unknown)) ==
		    KM_OK)
			continue;
		else if (st == KM_TEMPFAIL || st == KM_NOMEM ||
		    (unknown && pol.encrypt == ENCRYPT_MANDATORY)) {
			verdict_tempfail(j->v, "certificate lookup for <%s>: %s", m->rcpts[i], err);
			return -1;
		} else {
			j->encrypt = 0;
			snprintf(why, sizeof(why), "<%.60s> (%.80s)", m->rcpts[i], err);
		}
		if (strlen(blockers) + strlen(why) + 3 < sizeof(blockers))
			snprintf(blockers + strlen(blockers), sizeof(blockers) - strlen(blockers),
			    "%s%s", *blockers ? ", " : "", why);
	}
	if (j->c->out_encrypt == ENCRYPT_NEVER && !any_mandatory)
		j->encrypt = want_encrypt = 0;
	if (any_mandatory && !j->encrypt) {
		verdict_reject(j->v, "550", "5.7.1", "message must be encrypted, but no usable "
		    "S/MIME certificate for %s", blockers);
		return -1;
	}
	if (want_encrypt && !j->encrypt) {
		snprintf(reason, sizeof(reason), "not encrypted: %s", blockers);
		downgrade(j->downgrade, sizeof(j->downgrade), &j->dg,
		    VERDICT_DG_UNENCRYPTED, reason);
	}
	return 0;
}

/*
 * choose_signer - a signature means the sender: only for an identity that
 * may use it, with its signing key here.  Clears j->sign (a downgrade
 * reason when policy wanted it); 0 to go on, -1 when the verdict is made.
 */
static int
choose_signer(struct out_job *j)
{
	struct message *m = j->m;
	struct kmerr ke = { 0 };
	enum policy_signer ps;
	enum km_status st;
	char err[512], reason[300];
	int locked;

	if (!j->sign)
		return 0;
	if ((ps = policy_signer(j->c, j->s->auth_authen, m->from)) != SIGNER_OK) {
		j->sign = 0;
		if (ps != SIGNER_NOT_INTERNAL) {
			snprintf(reason, sizeof(reason), "sending unsigned: <%.80s>: %s", m->from,
			    policy_signer_name(ps));
			downgrade(j->downgrade, sizeof(j->downgrade), &j->dg,
			    VERDICT_DG_UNSIGNED, reason);
		}
		return 0;
	}
	st = keystore_get_signer(runtime_keystore(), m->from, message_qid(m), &j->signer,
	    &j->key, &j->chain, &ke);
	snprintf(err, sizeof(err), "%s", ke.msg);
	/* a key protected by the sender's password the hook did not unlock */
	locked = st == KM_PERMFAIL && kmerr_is(&ke, KMERR_LOCKED);
	if (st == KM_TEMPFAIL || st == KM_NOMEM || (st != KM_OK && (locked ?
	    j->c->out_locked_signing_key : j->c->out_no_signing_key) ==
	    NOSIGNKEY_TEMPFAIL)) {
		verdict_tempfail(j->v, "signing key of <%s>: %s", m->from, err);
		return -1;
	}
	if (st != KM_OK) {
		j->sign = 0;
		if (locked)
			snprintf(reason, sizeof(reason), "sending unsigned: <%.80s>: %.160s",
			    m->from, err);
		else
			snprintf(reason, sizeof(reason), "sending unsigned: <%.80s> has no "
			    "signing key here: %.120s", m->from, err);
		downgrade(j->downgrade, sizeof(j->downgrade), &j->dg, VERDICT_DG_UNSIGNED,
		    reason);
	}
	return 0;
}

/*
 * choose_publish - what the signature publishes: the sender's encryption
 * certificate and the org CA (policy.outbound.publish_cert).  Without a
 * certificate the message is signed as it would be anyway: logged, not a
 * downgrade; a KM that does not answer is no reason to hold the mail.
 */
static void
choose_publish(struct out_job *j)
{
	char err[512];
	enum km_status st;

	if (!j->sign || !j->c->out_publish_cert)
		return;
	st = outbound_sender_cert(j, err, sizeof(err));
	if (st == KM_TEMPFAIL || st == KM_NOMEM)
		log_warnx("%s: outbound: encryption certificate of <%s> not "
		    "published this time: %s", message_qid(j->m), j->m->from, err);
	else if (st != KM_OK)
		log_info("%s: outbound: <%s> has no encryption certificate: "
		    "signed without publishing one: %s", message_qid(j->m),
		    j->m->from, err);
	else if ((j->org = orgchain_get()) == NULL)
		log_warnx("%s: outbound: org CA not published with the "
		    "certificate of <%s>: out of memory", message_qid(j->m),
		    j->m->from);
}

/*
 * take_output - what sign or encrypt wrote to out, copied into *buf; or
 * the verdict made (tempfail: what failed, or out of memory).  Frees out.
 * 0, or -1 with the verdict made.
 */
static int
take_output(struct out_job *j, enum km_status st, const char *what, const char *err,
    BIO *out, char **buf, size_t *len)
{
	if (st != KM_OK)
		verdict_tempfail(j->v, "%s: %s", what, err);
	else if ((*buf = entity_from_bio(out, len)) == NULL)
		verdict_tempfail(j->v, "out of memory");
	BIO_free(out);
	return *buf != NULL ? 0 : -1;
}

/* sign_entity - j->signed_ent: j->entity signed; 0, or -1 with the verdict made */
static int
sign_entity(struct out_job *j)
{
	enum smime_sign_mode mode = j->c->out_signature == SIGFORM_OPAQUE ?
	    SMIME_MODE_OPAQUE : SMIME_MODE_DETACHED;
	struct smime_publish pub = { .enc = NULL, .chain = j->org };
	BIO *out;
	struct kmerr err;
	enum km_status st;

	size_t line = 0;

	if (!j->encrypt && mode == SMIME_MODE_DETACHED &&
	    !outbound_seven_bit_clean(j->entity, j->entlen, &line))
		mode = SMIME_MODE_OPAQUE;
	if (j->c->out_publish_cert)
		pub.enc = j->self;	/* set by choose_publish(), or NULL */
	/* the entity (detached) or its base64 (opaque), and the signature */
	if ((out = entity_bio_sized((mode == SMIME_MODE_OPAQUE ? j->entlen / 3 * 4 :
	    j->entlen) + j->entlen / 32 + 8192)) == NULL) {
		verdict_tempfail(j->v, "out of memory");
		return -1;
	}
	st = smime_sign_publish(j->entity, j->entlen, j->signer, j->key, j->chain,
	    &pub, outbound_digest(j->c->out_digest), mode, out, &err);
	return take_output(j, st, "signing", err.msg, out, &j->signed_ent, &j->signedlen);
}

/* encrypt_entity - j->final: the (signed) entity encrypted; 0, or -1 with the verdict made */
static int
encrypt_entity(struct out_job *j)
{
	BIO *out;
	struct kmerr err;
	enum km_status st;
	size_t in;

	if (outbound_encrypt_to(j) != 0)
		return -1;
	in = j->sign ? j->signedlen : j->entlen;
	/* base64 (in lines) of the content and a RecipientInfo per certificate */
	if ((out = entity_bio_sized(in / 3 * 4 + in / 32 + 4096 + 1024 * j->ncerts)) == NULL) {
		verdict_tempfail(j->v, "out of memory");
		return -1;
	}
	st = smime_encrypt(j->sign ? j->signed_ent : j->entity,
	    j->sign ? j->signedlen : j->entlen, j->certs, j->ncerts,
	    outbound_cipher(j->c->out_cipher),
	    j->c->out_rsa_padding == PADDING_OAEP ? SMIME_PAD_OAEP : SMIME_PAD_PKCS1,
	    out, &err);
	return take_output(j, st, "encryption", err.msg, out, &j->final, &j->finallen);
}

/*
 * rewrite_memory - sign and/or encrypt a body held in memory; the verdict
 * gets the header changes and the new body.  0, or -1 with the verdict made.
 */
static int
rewrite_memory(struct out_job *j)
{
	const unsigned char *body;
	size_t bodylen;
	struct kmerr err;

	if (spool_map(j->m->body, &body, &bodylen, &err) != KM_OK) {
		verdict_tempfail(j->v, "%s", err.msg);
		return -1;
	}
	if (outbound_make_entity(j, body, bodylen) != 0)
		return -1;
	if (j->sign && sign_entity(j) != 0)
		return -1;
	if (j->encrypt) {
		if (encrypt_entity(j) != 0)
			return -1;
	} else {
		j->final = j->signed_ent;
		j->finallen = j->signedlen;
		j->signed_ent = NULL;
	}
	if (entity_replace(j->v, j->m, j->final, j->finallen, &err) != KM_OK) {
		verdict_tempfail(j->v, "rewrite: %s", err.msg);
		return -1;
	}
	return 0;
}

/*
 * rewrite - sign and/or encrypt the entity and put it in the verdict: in
 * memory, or streamed from the spool file a large body is in
 * (outbound_stream.c; the same result, in bounded memory)
 */
static void
rewrite(struct out_job *j)
{
	struct kmerr err;

	if ((spool_on_disk(j->m->body) ? outbound_rewrite_stream(j) : rewrite_memory(j)) != 0)
		return;
	if (j->protect && j->encrypt && j->hide_subject &&
	    hp_hide_outer(j->v, j->m, &err) != KM_OK) {
		verdict_tempfail(j->v, "rewrite: %s", err.msg);
		return;
	}
	j->v->action_name = j->sign && j->encrypt ? "sign+encrypt" : j->sign ? "sign" :
	    "encrypt";
}

/* out_job_clear - release what a job holds */
static void
out_job_clear(struct out_job *j)
{
	if (j->entity)
		secmem_free(j->entity, j->entlen);
	if (j->signed_ent)
		secmem_free(j->signed_ent, j->signedlen);
	if (j->final)
		secmem_free(j->final, j->finallen);
	free(j->certs);
	free(j->newsubj);
	X509_free(j->self);
	sk_X509_pop_free(j->org, X509_free);
	X509_free(j->signer);
	EVP_PKEY_free(j->key);
	sk_X509_pop_free(j->chain, X509_free);
}

/* outbound_eom - sign and/or encrypt the message, or say why not */
void
outbound_eom(struct session *s, struct verdict *v)
{
	struct out_job j = { .s = s, .m = s->msg, .c = s->conf, .v = v };
	enum mime_smime_kind kind;
	int tagged;

	if (client_done(j.m, v, &kind))
		return;
	j.sign = 1;	/* until a recipient's policy (a rule, else outbound.sign) says no */
	j.hide_subject = 1;	/* likewise (a rule, else outbound.hide_subject) */
	j.protect = 1;
	if (kind == MIME_SMIME_SIGNED_DETACHED || kind == MIME_SMIME_SIGNED_OPAQUE)
		j.sign = j.protect = 0;	/* keep the client's signature; encrypt around it */
	/* A subject tag makes every recipient mandatory. */
	if ((tagged = strip_subject_tag(&j)) < 0)
		goto out;
	if (choose_encrypt(&j, tagged) != 0 || choose_signer(&j) != 0)
		goto out;
	choose_publish(&j);
	if (j.sign || j.encrypt)
		rewrite(&j);
out:
	if (v->kind == VERDICT_TEMPFAIL || v->kind == VERDICT_REJECT)
		verdict_drop_changes(v);	/* nothing partial reaches the MTA */
	else if (*j.downgrade) {
		v->downgrade_kinds |= j.dg;
		verdict_downgrade(v, "%s", j.downgrade);
	}
	out_job_clear(&j);
}
