/*
 * pipeline.c - end-of-message processing (see pipeline.h).
 */
#include <stdio.h>

#include "autoenroll.h"
#include "forged.h"
#include "inbound.h"
#include "log.h"
#include "outbound.h"
#include "pipeline.h"

/* pipeline_run - decide the message's direction and fill the verdict */
enum direction
pipeline_run(struct session *s, struct verdict *v)
{
	struct message *m = s->msg;
	int two_pass = *s->conf->in_decrypt_daemon != '\0';
	enum direction dir;

	if (s->decrypt_pass) {
		/* Never outbound, whoever re-injected it; an internal
		   sender's mail had its outbound work in the first pass
		   (signed, maybe encrypted on purpose): leave it alone. */
		if (policy_domain_internal(s->conf, m->from))
			return DIR_PASS;
		dir = policy_direction(s->conf, 0, NULL, m->from, m->rcpts, m->nrcpts);
	} else
		dir = policy_direction(s->conf, s->client_internal, s->auth_authen,
		    m->from, m->rcpts, m->nrcpts);
	/* Nothing from outside may pose as a result kmilter wrote: in
	 * every direction, before kmilter adds its own. */
	if (forged_remove(s, v) < 0) {
		verdict_tempfail(v, "out of memory");
		return dir;
	}
	if (dir == DIR_INBOUND && !s->decrypt_pass)
		autoenroll_inbound(s);
	if (dir == DIR_OUTBOUND) {
		if (autoenroll_outbound(s, v) == 0)
			outbound_eom(s, v);
	} else if (dir == DIR_INBOUND && (!two_pass || s->decrypt_pass))
		inbound_eom(s, v);
	else if (dir == DIR_INBOUND)
		log_debug(1, "%s: inbound: decryption left to the decrypt pass (%s)",
		    message_qid(m), s->conf->in_decrypt_daemon);
	return dir;
}

/*
 * pipeline_outbound - is this message outbound with the recipients so far?
 *	Known from MAIL FROM on for an internal sender; from the first
 *	outside recipient on for any other sender of a trusted client.
 */
int
pipeline_outbound(const struct session *s)
{
	return s->msg != NULL && !s->decrypt_pass && policy_direction(s->conf, s->client_internal,
	    s->auth_authen, s->msg->from, s->msg->rcpts, s->msg->nrcpts) == DIR_OUTBOUND;
}

/*
 * reply_safe - make text fit for smfi_setreply: libmilter drops a reply with
 *	a lone '%' and fails on control characters; both become '?'.
 */
static void
reply_safe(char *p)
{
	for (; *p != '\0'; p++)
		if (*p == '%' || (unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			*p = '?';
}

/*
 * pipeline_sender_refused - refuse MAIL FROM when an SMTP AUTH login claims
 *	an internal sender address it does not own (policy_signer()), unless
 *	policy.sender_login_mismatch is "unsigned".  Returns 1 with the
 *	reply text (for 553 5.7.1), else 0.
 */
int
pipeline_sender_refused(const struct session *s, char *reply, size_t replylen)
{
	const struct message *m = s->msg;

	if (m == NULL || s->auth_authen == NULL ||
	    !policy_client_trusted(s->conf, s->client_internal, s->auth_authen) ||
	    policy_signer(s->conf, s->auth_authen, m->from) != SIGNER_NOT_OWNED ||
	    s->conf->sender_login_mismatch != LOGINMISMATCH_REFUSE)
		return 0;
	snprintf(reply, replylen, "<%s>: Sender address rejected: not owned by user %s",
	    m->from, s->auth_authen);
	reply_safe(reply);
	log_warnx("%s: milter: MAIL FROM <%s> refused: not owned by the SMTP AUTH login "
	    "%s (policy.sender_login_map)", message_qid(m), m->from, s->auth_authen);
	return 1;
}
