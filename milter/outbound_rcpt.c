/*
 * outbound_rcpt.c - outbound_rcpt(): a recipient's certificate looked up at
 * RCPT TO, refusals there, and missing_cert "split" groups (see outbound.h);
 * outbound_lookup_cert(), which end of message uses too (outbound_int.h).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/x509.h>

#include "keystore.h"
#include "log.h"
#include "outbound.h"
#include "outbound_int.h"
#include "policy.h"
#include "revcheck.h"
#include "runtime.h"

/*
 * revoked_check - is an outside recipient's certificate revoked?  KM_OK to
 * use it; else it is dropped: KM_PERMFAIL (revoked, or its status unknown
 * under revocation.check = hard: *unknown set then if not NULL), reason in
 * err.  The KM's own certificates (internal domains) are revoked with kmctl
 * revoke, the KM never hands those out: not asked.
 */
static enum km_status
revoked_check(const struct kmilter_conf *c, struct message *m, int i,
    int *unknown, char *err, size_t errlen)
{
	X509_STORE *trust;
	struct kmerr ke;
	enum km_status st;

	if (policy_domain_internal(c, m->rcpts[i]))
		return KM_OK;
	kmerr_clear(&ke);
	trust = runtime_trust();
	st = revcheck_cert(runtime_revcheck(), m->rcpt_certs[i], NULL, trust, &ke);
	X509_STORE_free(trust);
	if (st == KM_OK) {
		if (ke.msg[0] != '\0')
			log_debug(1, "%s: outbound: rcpt=<%s>: %s", message_qid(m),
			    m->rcpts[i], ke.msg);
		return KM_OK;
	}
	X509_free(m->rcpt_certs[i]);
	m->rcpt_certs[i] = NULL;
	/* the reason the message line carries is short; the details here */
	if (st == KM_PERMFAIL && kmerr_is(&ke, KMERR_REFUSED))
		snprintf(err, errlen, "revoked");
	else {
		if (unknown != NULL)
			*unknown = 1;
		snprintf(err, errlen, "revocation status unknown");
	}
	log_warnx("%s: outbound: rcpt=<%s>: certificate not used: %s", message_qid(m),
	    m->rcpts[i], ke.msg);
	return KM_PERMFAIL;
}

/* outbound_lookup_cert - the recipient's usable certificate, from RCPT time or now;
 * *unknown (if not NULL) says a "none" is not a "no": a directory did not
 * answer, or nobody could tell whether its outside certificate was revoked
 * (revocation.check = hard) */
enum km_status
outbound_lookup_cert(const struct kmilter_conf *c, struct message *m, int i, char *err,
    size_t errlen, int *unknown)
{
	struct kmerr ke = { 0 };
	enum km_status st;

	if (unknown != NULL)
		*unknown = 0;
	if (m->rcpt_certs[i] != NULL)
		return KM_OK;
	st = keystore_get_cert(runtime_keystore(), m->rcpts[i], &m->rcpt_certs[i],
	    &ke);
	snprintf(err, errlen, "%s", ke.msg);
	if (unknown != NULL)
		*unknown = st == KM_PERMFAIL && kmerr_is(&ke, KMERR_UNREACHABLE);
	if (st == KM_OK && m->rcpt_certs[i] != NULL)
		st = revoked_check(c, m, i, unknown, err, errlen);
	return st;
}

/* What a recipient gets (missing_cert "split"); 0 is "not known yet". */
enum protection { PROT_ENCRYPTED = 1, PROT_SIGNED };

/* protection_name - a group's name in replies and log lines */
static const char *
protection_name(int p)
{
	return p == PROT_ENCRYPTED ? "encrypted" : "signed-only";
}

/*
 * encrypts - will outbound_eom() encrypt to a recipient of this policy
 * who has a usable certificate?  Not when policy.outbound.encrypt is
 * "never", unless the recipient's rule is mandatory (choose_encrypt()).
 */
static int
encrypts(const struct kmilter_conf *c, const struct rcpt_policy *pol)
{
	if (pol->encrypt == ENCRYPT_NEVER)
		return 0;
	return pol->encrypt == ENCRYPT_MANDATORY || c->out_encrypt != ENCRYPT_NEVER;
}

/*
 * rcpt_protection - what recipient i can have: *prot encrypted (policy
 * wants it and a usable certificate was found) or signed only; *cert
 * whether it has a usable certificate (looked up unless its policy is
 * "never"): 1 yes, 0 no, -1 not known (a directory did not answer, or
 * nobody could tell whether its outside certificate was revoked under
 * revocation.check = hard).  KM_OK (err: why no certificate), or the
 * lookup's KM_TEMPFAIL/KM_NOMEM.
 */
static enum km_status
rcpt_protection(struct session *s, int i, int *prot, int *cert, char *err, size_t errlen)
{
	struct rcpt_policy pol = policy_for_rcpt(s->conf, s->msg->rcpts[i]);
	enum km_status st;
	int unknown;

	*prot = PROT_SIGNED;
	*cert = 0;
	if (pol.encrypt == ENCRYPT_NEVER) {
		snprintf(err, errlen, "policy: encrypt never");
		return KM_OK;
	}
	st = outbound_lookup_cert(s->conf, s->msg, i, err, errlen, &unknown);
	if (st == KM_TEMPFAIL || st == KM_NOMEM)
		return st;
	*cert = st == KM_OK ? 1 : unknown ? -1 : 0;
	if (*cert > 0 && encrypts(s->conf, &pol))
		*prot = PROT_ENCRYPTED;
	return KM_OK;
}

/* lookup_tempfail - 451 4.7.1: the certificate cannot be looked up now */
static enum km_status
lookup_tempfail(struct message *m, int i, const char *err, char *reply, size_t replylen,
    const char **rcode, const char **xcode)
{
	*rcode = "451";
	*xcode = "4.7.1";
	snprintf(reply, replylen, "<%s>: cannot look up the S/MIME certificate "
	    "now, try again later", m->rcpts[i]);
	log_warnx("%s: outbound: rcpt=<%s>: certificate lookup: %s", message_qid(m),
	    m->rcpts[i], err);
	return KM_TEMPFAIL;
}

/*
 * split_rcpt - missing_cert "split": recipient i (protection prot) joins
 * the transaction only if it gets what the first accepted recipient gets;
 * else 452 4.5.3, so that the client sends it in another transaction
 * (RFC 5321 4.5.3.1.10).  The first recipient's protection is worked out
 * here if it was accepted before the message was known to be outbound.
 */
static enum km_status
split_rcpt(struct session *s, int i, int prot, char *reply, size_t replylen,
    const char **rcode, const char **xcode)
{
	struct message *m = s->msg;
	char err[256];
	int first, cert;

	if (m->protection == 0 && i > 0) {
		if (rcpt_protection(s, 0, &first, &cert, err, sizeof(err)) != KM_OK)
			return lookup_tempfail(m, 0, err, reply, replylen, rcode, xcode);
		m->protection = first;
	}
	if (m->protection == 0 || m->protection == prot) {
		m->protection = prot;
		return KM_OK;
	}
	*rcode = "452";
	*xcode = "4.5.3";
	snprintf(reply, replylen, "<%s>: %s, unlike the recipients accepted so far (%s): "
	    "different protection, send it separately", m->rcpts[i], protection_name(prot),
	    protection_name(m->protection));
	log_info("%s: outbound: rcpt=<%s> split: group=%s, transaction=%s: 452 4.5.3",
	    message_qid(m), m->rcpts[i], protection_name(prot), protection_name(m->protection));
	return KM_TEMPFAIL;
}

/* outbound_rcpt - look up a recipient's certificate; refuse or split as policy says */
enum km_status
outbound_rcpt(struct session *s, int i, char *reply, size_t replylen,
    const char **rcode, const char **xcode)
{
	struct message *m = s->msg;
	struct rcpt_policy pol = policy_for_rcpt(s->conf, m->rcpts[i]);
	int split = s->conf->out_missing_cert == MISSING_SPLIT, prot, cert;
	char err[256];
	enum km_status st;

	if (pol.encrypt == ENCRYPT_NEVER && !split)
		return KM_OK;
	st = rcpt_protection(s, i, &prot, &cert, err, sizeof(err));
	if (st != KM_OK)
		return lookup_tempfail(m, i, err, reply, replylen, rcode, xcode);
	if (cert <= 0 && pol.encrypt != ENCRYPT_NEVER &&
	    (pol.encrypt == ENCRYPT_MANDATORY || s->conf->out_missing_cert == MISSING_REFUSE)) {
		if (cert < 0)	/* not known now (see rcpt_protection): not a "no" */
			return lookup_tempfail(m, i, err, reply, replylen, rcode, xcode);
		*rcode = "550";
		*xcode = "5.7.1";
		snprintf(reply, replylen, "<%s>: no usable S/MIME certificate (%s), and "
		    "policy requires encryption for this recipient", m->rcpts[i], err);
		log_info("%s: outbound: rcpt=<%s> refused: %s", message_qid(m), m->rcpts[i], err);
		return KM_PERMFAIL;
	}
	if (cert <= 0 && pol.encrypt != ENCRYPT_NEVER)
		log_debug(1, "%s: outbound: rcpt=<%s>: %s", message_qid(m), m->rcpts[i], err);
	return split ? split_rcpt(s, i, prot, reply, replylen, rcode, xcode) : KM_OK;
}
