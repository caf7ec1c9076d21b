/*
 * verdict.c - the end-of-message decision (see verdict.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secmem.h"
#include "spool.h"
#include "verdict.h"

/* body_free - wipe and free the new body: it may be decrypted or signed plaintext */
static void
body_free(struct verdict *v)
{
	if (v->body != NULL) {
		secmem_wipe(v->body, v->bodylen);
		free(v->body);
	}
	v->bodyspool = spool_free(v->bodyspool);
}

/* verdict_init - a pass verdict with no changes */
void
verdict_init(struct verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->kind = VERDICT_PASS;
	v->action_name = "pass";
	strcpy(v->result, "ok");
}

/* verdict_clear - free what a verdict holds and make it a pass again */
void
verdict_clear(struct verdict *v)
{
	verdict_drop_changes(v);
	verdict_init(v);
}

/* verdict_drop_changes - forget header and body changes, keep the decision */
void
verdict_drop_changes(struct verdict *v)
{
	for (int i = 0; i < v->nchanges; i++) {
		free(v->changes[i].name);
		free(v->changes[i].value);
	}
	free(v->changes);
	body_free(v);
	v->changes = NULL;
	v->nchanges = 0;
	v->body = NULL;
	v->bodylen = 0;
}

/* verdict_header_change - change (value) or delete (NULL) the index-th header of a name */
enum km_status
verdict_header_change(struct verdict *v, const char *name, int index, const char *value)
{
	struct header_change *nc = realloc(v->changes, sizeof(*nc) * (size_t)(v->nchanges + 1));

	if (nc == NULL)
		return KM_NOMEM;
	v->changes = nc;
	nc = &v->changes[v->nchanges];
	nc->name = strdup(name);
	nc->value = value ? strdup(value) : NULL;
	nc->index = index;
	if (nc->name == NULL || (value && nc->value == NULL)) {
		free(nc->name);
		free(nc->value);
		return KM_NOMEM;
	}
	v->nchanges++;
	v->kind = VERDICT_REWRITE;
	return KM_OK;
}

/* verdict_header_add - add a header at the end */
enum km_status
verdict_header_add(struct verdict *v, const char *name, const char *value)
{
	return verdict_header_change(v, name, 0, value);
}

/* verdict_set_body - replace the body (the verdict takes ownership) */
void
verdict_set_body(struct verdict *v, unsigned char *body, size_t len)
{
	body_free(v);
	v->body = body;
	v->bodylen = len;
	v->kind = VERDICT_REWRITE;
}

/* verdict_set_body_spool - replace the body with a spool's content (the verdict takes ownership) */
void
verdict_set_body_spool(struct verdict *v, struct spool *body)
{
	body_free(v);
	v->body = NULL;
	v->bodylen = 0;
	v->bodyspool = body;
	v->kind = VERDICT_REWRITE;
}

/* verdict_reject - reject with an SMTP reply */
void
verdict_reject(struct verdict *v, const char *rcode, const char *xcode, const char *fmt, ...)
{
	va_list ap;

	v->kind = VERDICT_REJECT;
	snprintf(v->rcode, sizeof(v->rcode), "%s", rcode);
	snprintf(v->xcode, sizeof(v->xcode), "%s", xcode);
	va_start(ap, fmt);
	vsnprintf(v->reply, sizeof(v->reply), fmt, ap);
	va_end(ap);
	snprintf(v->result, sizeof(v->result), "%s", v->reply);
}

/* verdict_tempfail - tempfail (451 4.3.0) so the MTA retries */
void
verdict_tempfail(struct verdict *v, const char *fmt, ...)
{
	va_list ap;

	v->kind = VERDICT_TEMPFAIL;
	strcpy(v->rcode, "451");
	strcpy(v->xcode, "4.3.0");
	va_start(ap, fmt);
	vsnprintf(v->result, sizeof(v->result), fmt, ap);
	va_end(ap);
	snprintf(v->reply, sizeof(v->reply), "kmilter: temporary failure, try again later");
}

/* verdict_downgrade - the message leaves less protected than policy wanted */
void
verdict_downgrade(struct verdict *v, const char *fmt, ...)
{
	va_list ap;

	v->downgraded = 1;
	va_start(ap, fmt);
	vsnprintf(v->result, sizeof(v->result), fmt, ap);
	va_end(ap);
}
