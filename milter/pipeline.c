/*
 * pipeline.c - end-of-message processing (see pipeline.h).
 */
#include "forged.h"
#include "inbound.h"
#include "outbound.h"
#include "pipeline.h"

/* pipeline_run - decide the message's direction and fill the verdict */
enum direction
pipeline_run(struct session *s, struct verdict *v)
{
	struct message *m = s->msg;
	enum direction dir;

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
	else if (dir == DIR_INBOUND)
		inbound_eom(s, v);
	return dir;
}

/* pipeline_outbound - is this message outbound (known from MAIL FROM on)? */
int
pipeline_outbound(const struct session *s)
{
	return s->msg != NULL && policy_direction(s->conf, s->client_internal,
	    s->auth_authen, s->msg->from, NULL, 0) == DIR_OUTBOUND;
}
