/*
 * kmerr.c - the one error object (see kmerr.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "kmerr.h"

/* kmerr_clear - no error */
void
kmerr_clear(struct kmerr *e)
{
	if (e == NULL)
		return;
	e->status = KM_OK;
	e->reason = KMERR_NONE;
	e->msg[0] = '\0';
}

/* kmerr_set - a status, a reason and a formatted message; returns st */
enum km_status
kmerr_set(struct kmerr *e, enum km_status st, enum kmerr_reason reason,
    const char *fmt, ...)
{
	va_list ap;

	if (e == NULL)
		return st;
	e->status = st;
	e->reason = reason;
	va_start(ap, fmt);
	if (vsnprintf(e->msg, sizeof(e->msg), fmt, ap) < 0)
		e->msg[0] = '\0';
	va_end(ap);
	return st;
}

/* kmerr_ossl - what failed, and OpenSSL's first reason; empties the queue */
enum km_status
kmerr_ossl(struct kmerr *e, enum km_status st, const char *what)
{
	const char *func = NULL, *data = NULL, *r = NULL;
	unsigned long code;
	int flags = 0;

	code = ERR_get_error_all(NULL, NULL, &func, &data, &flags);
	if (code != 0)
		r = ERR_reason_error_string(code);
	if (!(flags & ERR_TXT_STRING) || data == NULL)
		data = "";
	kmerr_set(e, st, KMERR_NONE, "%s: %s%s%s%s%s%s", what,
	    code == 0 ? "failed" : r != NULL ? r : "error",
	    func != NULL && *func ? " in " : "", func != NULL ? func : "",
	    *data ? " (" : "", data, *data ? ")" : "");
	ERR_clear_error();
	return st;
}

/* kmerr_prefix - put context in front of the message; returns the status */
enum km_status
kmerr_prefix(struct kmerr *e, const char *fmt, ...)
{
	char head[KMERR_MSG_MAX], tail[KMERR_MSG_MAX];
	va_list ap;

	if (e == NULL)
		return KM_OK;
	va_start(ap, fmt);
	if (vsnprintf(head, sizeof(head), fmt, ap) < 0)
		head[0] = '\0';
	va_end(ap);
	memcpy(tail, e->msg, sizeof(tail));
	snprintf(e->msg, sizeof(e->msg), "%s%s", head, tail);
	return e->status;
}

/* kmerr_is - did it fail for that reason? */
int
kmerr_is(const struct kmerr *e, enum kmerr_reason reason)
{
	return e != NULL && e->status != KM_OK && e->reason == reason;
}
