/*
 * pipeline.c - end-of-message processing (see pipeline.h).
 */
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
	if (dir == DIR_OUTBOUND)
		outbound_eom(s, v);
	else if (dir == DIR_INBOUND && (!two_pass || s->decrypt_pass))
		inbound_eom(s, v);
	else if (dir == DIR_INBOUND)
		log_debug(1, "%s: inbound: decryption left to the decrypt pass (%s)",
		    message_qid(m), s->conf->in_decrypt_daemon);
	return dir;
}

/* pipeline_outbound - is this message outbound (known from MAIL FROM on)? */
int
pipeline_outbound(const struct session *s)
{
	return s->msg != NULL && !s->decrypt_pass && policy_direction(s->conf, s->client_internal,
	    s->auth_authen, s->msg->from, NULL, 0) == DIR_OUTBOUND;
}
