#ifndef KMILTER_KEYCLIENT_KEYMODEL_ERR_H
#define KMILTER_KEYCLIENT_KEYMODEL_ERR_H
/*
 * NAME
 *	keymodel_err - the error line of the keymodel family
 * SUMMARY
 *	seterr(), ossl_fail() (static inline).  Private to the keymodel_*.c
 *	files: nothing else includes this header.
 * DESCRIPTION
 *	seterr() formats one line into (errstr, errlen) when there is a
 *	buffer; ossl_fail() drains the OpenSSL error queue into the log and
 *	sets "WHAT failed".  Kept apart from keymodel_int.h so that the
 *	pure modules of the family (keymodel_name.c, keymodel_cert.c) need
 *	nothing of keymodel.c; they go when errors become a struct kmerr.
 * OWNERSHIP
 *	errstr is the caller's.
 * ERRORS
 *	ossl_fail() returns the status it is given.
 * THREADS
 *	Thread-safe.
 */
#include <stdarg.h>
#include <stdio.h>

#include "log.h"
#include "status.h"

/* seterr - format one error line into errstr, if there is one */
static inline void KM_PRINTF(3, 4)
seterr(char *errstr, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errstr == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errstr, errlen, fmt, ap);
	va_end(ap);
}

/* ossl_fail - drain the OpenSSL error queue and set a message */
static inline enum km_status
ossl_fail(enum km_status st, char *errstr, size_t errlen, const char *what)
{
	log_openssl(what);
	seterr(errstr, errlen, "%s failed", what);
	return st;
}

#endif
