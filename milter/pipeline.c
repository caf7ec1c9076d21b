/*
 * pipeline.c - end-of-message processing (see pipeline.h).
 */
#include "pipeline.h"

/* pipeline_run - decide the message's direction and fill the verdict */
enum direction
pipeline_run(struct session *s, struct verdict *v)
{
	struct message *m = s->msg;
	enum direction dir;

	dir = policy_direction(s->conf, s->client_internal, s->auth_authen,
	    m->from, m->rcpts, m->nrcpts);
	v->action_name = "pass";
	return dir;
}
