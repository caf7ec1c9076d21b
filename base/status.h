#ifndef KMILTER_BASE_STATUS_H
#define KMILTER_BASE_STATUS_H
/*
 * NAME
 *	status - the status codes every library-style module returns
 * SUMMARY
 *	enum km_status and its printable name.
 * DESCRIPTION
 *	The transient/permanent split decides what the milter answers:
 *	KM_TEMPFAIL and KM_NOMEM become SMFIS_TEMPFAIL (the MTA retries),
 *	KM_PERMFAIL becomes a reject or a configured action, KM_PROTO means
 *	malformed input (the caller decides: pass, reject or tempfail).
 * OWNERSHIP
 *	km_status_name() returns a static string.
 * ERRORS
 *	None.
 * THREADS
 *	Thread-safe.
 */

enum km_status {
	KM_OK = 0,
	KM_TEMPFAIL,	/* network down, timeout, Redis or KMIP unavailable */
	KM_PERMFAIL,	/* no key for the user, bad certificate, refused */
	KM_NOMEM,	/* allocation failed */
	KM_PROTO	/* malformed input */
};

const char *km_status_name(enum km_status);

#endif
