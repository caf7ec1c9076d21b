#ifndef KMILTER_MILTER_FORGED_H
#define KMILTER_MILTER_FORGED_H
/*
 * NAME
 *	forged - remove headers that pose as the gateway's own
 * SUMMARY
 *	ar_authserv_is(), forged_is_ours(), forged_remove()
 * DESCRIPTION
 *	kmilter writes two kinds of result headers: Authentication-Results
 *	with its authserv-id (policy.inbound.authserv_id) and X-Kmilter-*.
 *	A reader trusts them only if nothing else could have written them,
 *	so forged_remove() deletes every such header a message arrives
 *	with, in every direction (inbound, outbound, internal to internal,
 *	pass-through), before kmilter adds its own.  Headers of other
 *	authserv-ids are kept.
 *	ar_authserv_is() reads the authserv-id of an Authentication-Results
 *	value as RFC 8601 defines it: CFWS first (spaces, tabs, CR and LF of
 *	folding, nested comments with quoted-pairs), then a token or a
 *	quoted-string, which must equal id ignoring case.  A token ends at
 *	whitespace, a comment, ';' or any other MIME tspecial; what follows
 *	it (a version, the results, or garbage) does not matter: a header
 *	whose authserv-id reads as ours is removed whatever its tail.  A
 *	value with no authserv-id at all (empty, an unclosed comment or
 *	quoted-string) is not ours.
 *	forged_is_ours() says whether one header (name, value) imitates
 *	kmilter's: any X-Kmilter* name, or Authentication-Results (name
 *	compared ignoring case and trailing blanks) carrying id.
 * OWNERSHIP
 *	Nothing is kept.
 * ERRORS
 *	forged_remove() returns the number of headers removed, or -1 when
 *	out of memory (the caller tempfails).
 * THREADS
 *	Thread-safe; pure apart from the verdict and one log line.
 */
#include "session.h"
#include "verdict.h"

int	ar_authserv_is(const char *value, const char *id);
int	forged_is_ours(const char *name, const char *value, const char *id);
int	forged_remove(const struct session *, struct verdict *);

#endif
