#ifndef KMILTER_BASE_KMERR_H
#define KMILTER_BASE_KMERR_H
/*
 * NAME
 *	kmerr - the one error object: a status, a reason code and a message
 * SUMMARY
 *	struct kmerr, kmerr_set(), kmerr_ossl(), kmerr_prefix(),
 *	kmerr_clear(), kmerr_is()
 * DESCRIPTION
 *	A function that can fail takes a "struct kmerr *err" as its last
 *	argument and, on failure, fills it with kmerr_set() (or kmerr_ossl()
 *	when OpenSSL said why) and returns the same status.  The caller logs
 *	err->msg and decides by err->status (what the milter answers: see
 *	status.h) and, where it must tell failures apart, by err->reason,
 *	never by the text of the message.
 *
 *	kmerr_set() formats the message (cut to KMERR_MSG_MAX - 1 bytes);
 *	kmerr_ossl() writes "what: <OpenSSL's first reason> in <function>
 *	(<data>)" and empties the calling thread's OpenSSL error queue;
 *	kmerr_prefix() puts context in front of a message a callee set
 *	("server km1: " + "Locate: timeout").  All of them accept err ==
 *	NULL (the caller does not want to know) and return the status.
 *
 *	Messages never hold a password or key material: a message is for a
 *	log line.
 * THREADS
 *	An error object belongs to one thread (usually on its stack).
 */
#include "log.h"
#include "status.h"

#define KMERR_MSG_MAX	256

/* Reasons a caller tells apart; KMERR_NONE when the status says enough. */
enum kmerr_reason {
	KMERR_NONE = 0,
	KMERR_NOTFOUND,		/* nothing for that name or address */
	KMERR_EXISTS,		/* already there */
	KMERR_TIMEOUT,		/* a peer did not answer in time */
	KMERR_UNREACHABLE,	/* a peer could not be reached */
	KMERR_BADINPUT,		/* the input is malformed */
	KMERR_BADPASSWORD,	/* a password does not open the key */
	KMERR_REFUSED,		/* a policy or a peer said no */
	KMERR_LOCKED		/* a password-protected key stayed locked */
};

struct kmerr {
	enum km_status	status;
	enum kmerr_reason reason;
	char		msg[KMERR_MSG_MAX];
};

void		kmerr_clear(struct kmerr *);
enum km_status	kmerr_set(struct kmerr *, enum km_status, enum kmerr_reason,
		    const char *fmt, ...) KM_PRINTF(4, 5);
enum km_status	kmerr_ossl(struct kmerr *, enum km_status, const char *what);
enum km_status	kmerr_prefix(struct kmerr *, const char *fmt, ...)
		    KM_PRINTF(2, 3);
int		kmerr_is(const struct kmerr *, enum kmerr_reason);

#endif
