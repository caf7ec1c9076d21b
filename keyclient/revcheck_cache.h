#ifndef KMILTER_KEYCLIENT_REVCHECK_CACHE_H
#define KMILTER_KEYCLIENT_REVCHECK_CACHE_H
/*
 * NAME
 *	revcheck_cache - revocation answers kept until their nextUpdate
 * SUMMARY
 *	revcache_new(), revcache_free(), revcache_get(), revcache_put(),
 *	revcache_count()
 * DESCRIPTION
 *	A bounded table of answers keyed by a string (a certificate's
 *	issuer hash and serial).  revcache_put() stores an answer until
 *	the time `until' (its nextUpdate); when the table is full, an
 *	expired entry is replaced, else the one that expires first.
 *	revcache_get() finds an answer that has not expired yet.
 * OWNERSHIP
 *	Keys and texts are copied (cut to their field sizes).
 * ERRORS
 *	revcache_new() returns NULL when out of memory; revcache_get()
 *	returns 0 when there is no live entry, 1 with *ans filled.
 * THREADS
 *	Thread-safe: one mutex around the table.
 */
#include <stddef.h>
#include <time.h>

enum revstatus {
	REV_GOOD = 0,
	REV_REVOKED,
	REV_UNKNOWN		/* nobody could tell */
};

struct revanswer {
	enum revstatus	 status;
	char		 why[320];	/* "revoked 2026...Z (keyCompromise) by OCSP http://..." */
};

struct revcache;

struct revcache	*revcache_new(size_t max);
struct revcache	*revcache_free(struct revcache *);
int		 revcache_get(struct revcache *, const char *key, time_t now,
		    struct revanswer *ans);
void		 revcache_put(struct revcache *, const char *key,
		    const struct revanswer *ans, time_t until);
size_t		 revcache_count(struct revcache *);

#endif
