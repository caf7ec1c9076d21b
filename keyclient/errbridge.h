#ifndef KMILTER_KEYCLIENT_ERRBRIDGE_H
#define KMILTER_KEYCLIENT_ERRBRIDGE_H
/*
 * NAME
 *	errbridge - call a module that still reports errors as (errstr,
 *	errlen) from one that reports them in a struct kmerr
 * SUMMARY
 *	ERRBRIDGE_BUF(err), errbridge_took() (static inline).
 * DESCRIPTION
 *	ERRBRIDGE_BUF(err) expands to the two arguments "errstr, errlen"
 *	that lend err's message buffer to the callee (NULL, 0 when err is
 *	NULL); errbridge_took(err, st) then records the callee's status in
 *	err when it is not KM_OK (reason KMERR_NONE: such a callee tells
 *	failures apart by status only) and returns st:
 *	    st = errbridge_took(err, kmip_locate(c, ..., ERRBRIDGE_BUF(err)));
 *	It goes when kmip, hook and cache take a struct kmerr themselves.
 * OWNERSHIP
 *	err is the caller's.
 * ERRORS
 *	None of its own.
 * THREADS
 *	As the error object: one thread.
 */
#include <stddef.h>

#include "kmerr.h"

#define ERRBRIDGE_BUF(e) \
	((e) != NULL ? (e)->msg : NULL), ((e) != NULL ? sizeof((e)->msg) : 0)

/* errbridge_took - keep a callee's failure status in err; returns st */
static inline enum km_status
errbridge_took(struct kmerr *e, enum km_status st)
{
	if (e != NULL && st != KM_OK) {
		e->status = st;
		e->reason = KMERR_NONE;
	}
	return st;
}

#endif
