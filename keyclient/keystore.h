#ifndef KMILTER_KEYCLIENT_KEYSTORE_H
#define KMILTER_KEYCLIENT_KEYSTORE_H
/*
 * NAME
 *	keystore - the key lookup facade the milter calls
 * SUMMARY
 *	keystore_new(), keystore_free(), keystore_check_redis(), keystore_get_cert(),
 *	keystore_get_keys(), keystore_keys_free(), keystore_get_signer(),
 *	keystore_invalidate(), keystore_stats(), keystore_new_backend(),
 *	keystore_enroll_allowed(), keystore_enroll_key(),
 *	keystore_enroll_signer(), keystore_has_signer()
 * DESCRIPTION
 *	Looks up certificates and keys by e-mail address, in order:
 *	L1 in-process cache (memcache, parsed objects) -> L2 Redis (cache,
 *	sealed entries shared by the gateways) -> the KM (keymodel over
 *	KMIP).  Password-protected ("enhanced") keys are unlocked with the
 *	password the admin hook hands over (event unlock); with
 *	hook_release set, the first release of a key to this gateway asks
 *	the hook (event release).
 *
 *	Redis gets certificates (DER, cert_ttl), decryption keys as the KM
 *	holds them (PKCS#8 DER, still password-encrypted for enhanced
 *	users; key_ttl), unlocked enhanced keys (hook_unlocked_key_ttl)
 *	and negative answers (negative_ttl).  Never signing keys.  Redis
 *	down sends lookups straight to the KM; it is never a failure by
 *	itself.  Every L2 and KM answer is also kept in L1 (memory_ttl).
 *
 *	Replay.  Every L2 entry carries the user's revocation counter
 *	(keymodel_revocation_count(): how many of the user's KM objects are
 *	Compromised), read before the entry's contents were fetched.  An L2
 *	hit is used only if its counter is the KM's current one, so an entry
 *	saved before kmctl revoke and written back into Redis afterwards is
 *	refused (deleted, logged as stale or replayed, and the KM asked).
 *	The counter costs one Locate on one KM server; it is kept in memory
 *	for memory_ttl and dropped by the invalidation message.  When the KM
 *	cannot be asked for it, L2 is not used (a KM outage, as without L2).
 *
 *	keystore_new() is called at start-up, before privileges are
 *	dropped: it loads the seal (gateway) key and the KMIP client
 *	credentials; connections are made lazily.  Redis is optional (no
 *	cache.redis.* -> no L2), L1 is optional (memory_entries = 0), the
 *	KM is optional (no km.servers -> every KM lookup is KM_PERMFAIL
 *	"no KM configured").  With Redis, it starts the invalidation
 *	subscriber, which drops L1 entries for published address hashes.
 *
 *	An address the KM has no certificate for is looked up in the
 *	directories (certdir.h: LDAP, DNS SMIMEA); their answers, found or
 *	not, are cached like the KM's.  A directory that did not answer
 *	means "no certificate" for this lookup, and nothing is cached.
 *
 *	keystore_check_redis() (kmilter -n) connects to cache.redis.* as
 *	the cache does (AUTH with the password file, SELECT) and sends PING:
 *	0, or -1 with err saying why.
 *
 *	Automatic enrollment (milter/autoenroll.h decides when):
 *	keystore_enroll_allowed() asks the hook (event enroll; allow or
 *	deny; no hook, a failure or a malformed answer is a deny),
 *	keystore_enroll_key() makes the first generation of an address's
 *	escrowed encryption key as kmctl enroll does (keymodel_enroll();
 *	a rival enrollment that came first makes it yield, KM_TEMPFAIL,
 *	KMERR_REFUSED), keystore_enroll_signer() this gateway's signing key
 *	(signstore_enroll()) unless there is one, recorded in the KM for
 *	kmctl retire-gateway; it refuses (KM_PERMFAIL, KMERR_REFUSED) a
 *	retired gateway or a banned address (keymodel_ban.h), whose
 *	enrollment keymodel_enroll() refuses too.  Both drop the address's
 *	cached answers.
 *
 *	Signing keys follow the protection level.  keystore_get_signer()
 *	reads this gateway's signing key (signstore.h) and, on an L1 miss,
 *	the level of the user's escrowed key (the raw key set: L2, else the
 *	KM).  A plain signing key of a user at level default is used as it
 *	is (cached in L1 for memory_ttl).  A protected signing key, or a
 *	plain one of an enhanced user, needs the hook's password (event
 *	unlock, key=signing, level enhanced): the unlocked key is kept in L1
 *	only, for hook_unlocked_key_ttl, then the hook is asked again.
 *	Lazily, the key file follows the escrow: a plain key of an enhanced
 *	user is wrapped under the password (which must open the escrowed
 *	key first: the password of record), a protected key of a user back
 *	at level default is made plain (once the hook's password opens it).
 *	So a set-password or clear-password made on another gateway reaches
 *	this gateway's signing keys on their next use.  A signing key
 *	protected by an earlier password cannot be opened: locked, with the
 *	advice to re-enroll it.  When the level cannot be read (KM down, no
 *	L2 entry) a plain key is used as it is.
 *
 *	keystore_has_signer() only tells whether this gateway has a signing
 *	key for the address (KM_OK, locked or not; KM_PERMFAIL
 *	KMERR_NOTFOUND): it never asks the hook, so a check before the
 *	lookup that signs does not ask it twice.
 *
 *	A signing key that stays locked is KM_PERMFAIL with reason
 *	KMERR_LOCKED, "signing key of ADDR locked: <why>" (why: no hook
 *	configured, keep-encrypted..., hook failed: ..., wrong password); a
 *	wrong password is remembered in L1 for negative_ttl (not asked
 *	again meanwhile), the other refusals are not.  The hook's tempfail
 *	is KM_TEMPFAIL.
 *
 *	keystore_get_cert() checks before returning: not expired, purpose
 *	emailProtection, and the address matches the certificate (SAN
 *	rfc822Name or subject emailAddress; the domain compared
 *	case-insensitively).
 * OWNERSHIP
 *	keystore_new() copies what it needs from the configuration; caller
 *	frees with keystore_free(), which returns NULL.
 *	keystore_get_cert(): *cert is a new reference (X509_free()).
 *	keystore_get_keys(): *keys is an array of *n entries, each with
 *	new references; caller frees with keystore_keys_free(keys, n),
 *	which wipes and frees everything.
 *	keystore_get_signer(): new references in *cert, *key (EVP_PKEY_free)
 *	and *chain (sk_X509_pop_free(chain, X509_free); may be empty).
 * ERRORS
 *	KM_OK; KM_PERMFAIL (no certificate or key for the address, bad or
 *	mismatched certificate, "no KM configured", "locked: <reason>",
 *	"release denied"); KM_TEMPFAIL (KM unreachable and nothing cached,
 *	hook answered tempfail); KM_PROTO (malformed address or KM data);
 *	KM_NOMEM.  err always says why, never with key material or a
 *	password.  keystore_invalidate() returns KM_OK when the entries are
 *	dropped and the invalidation published (or there is no Redis),
 *	KM_PROTO for a malformed address, else the Redis error (logged).  Reasons: KMERR_NOTFOUND (no certificate or key for the
 *	address), KMERR_BADPASSWORD ("locked: wrong password"),
 *	KMERR_REFUSED (the admin hook itself said keep-encrypted, or denied
 *	the release: a policy decision, not a failure).
 *
 *	keystore_new_backend() is the test seam: the same keystore with the
 *	KM, signstore, Redis, hook and L1 clock replaced by the functions in
 *	a struct keystore_backend (unit tests pass named fakes).  A NULL
 *	km_cert means "no KM", a NULL l2_get "no L2", a NULL hook_ask the
 *	real hook from the configuration.
 * THREADS
 *	Thread-safe: any number of threads may call the lookups at once.
 *	keystore_free() must not run concurrently with any other call.
 */
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>
#include <openssl/evp.h>

#include "kmerr.h"
#include "status.h"

struct kmilter_conf;
struct keystore;
struct keymodel_gen;
struct hook_request;
struct hook_answer;

struct keystore_key {
	X509		*cert;		/* the certificate of this generation */
	EVP_PKEY	*key;		/* its private key, usable */
	int		 generation;	/* KM generation number */
	int		 current;	/* 1 for the current generation */
};

struct keystore_stats {
	unsigned long	 l1_hits;	/* answered from L1 (incl. negatives) */
	unsigned long	 l2_hits;	/* answered from Redis */
	unsigned long	 km_fetches;	/* asked the KM */
	unsigned long	 misses;	/* answered "none" (negative) */
	unsigned long	 negative_hits;	/* of the hits: negative entries */
	unsigned long	 km_errors;	/* KM unreachable / failed */
	unsigned long	 l2_errors;	/* Redis failures (went to the KM) */
	unsigned long	 hook_calls;	/* hook_ask() calls */
	unsigned long	 hook_unlocked;	/* enhanced keys unlocked */
	unsigned long	 hook_locked;	/* enhanced keys left locked */
	unsigned long	 invalidations;	/* keystore_invalidate() calls */
	unsigned long	 lookups;	/* get_cert + get_keys + get_signer */
	unsigned long	 revc_fetches;	/* revocation counters read from KM */
	unsigned long	 l2_stale;	/* L2 entries refused: stale counter */
};

int		 keystore_check_redis(const struct kmilter_conf *, struct kmerr *);
struct keystore	*keystore_new(const struct kmilter_conf *,
		    struct kmerr *err);
struct keystore	*keystore_free(struct keystore *);

enum km_status	 keystore_get_cert(struct keystore *, const char *addr,
		    X509 **cert, struct kmerr *err);
enum km_status	 keystore_get_keys(struct keystore *, const char *addr,
		    const char *queue_id, struct keystore_key **keys,
		    size_t *n, struct kmerr *err);
void		 keystore_keys_free(struct keystore_key *, size_t n);
enum km_status	 keystore_get_signer(struct keystore *, const char *addr,
		    const char *queue_id, X509 **cert, EVP_PKEY **key,
		    STACK_OF(X509) **chain, struct kmerr *err);
enum km_status	 keystore_has_signer(struct keystore *, const char *addr,
		    struct kmerr *err);
enum km_status	 keystore_invalidate(struct keystore *, const char *addr);
/* KM_PERMFAIL (KMERR_REFUSED) when milter.gateway_name is retired in the
 * KM (kmctl retire-gateway); KM_OK otherwise, also without a KM or when
 * the KM cannot be asked (logged).  kmilter asks it at start-up (main.c);
 * keystore_get_signer() refuses, the same way, a retired gateway's keys
 * and a banned address's (kmctl revoke --ban). */
enum km_status	 keystore_gateway_retired(struct keystore *,
		    struct kmerr *err);
/* Automatic enrollment (keystore_enroll.c). */
enum km_status	 keystore_enroll_allowed(struct keystore *, const char *addr,
		    const char *queue_id, struct kmerr *err);
enum km_status	 keystore_enroll_key(struct keystore *, const char *addr,
		    X509 *ca_cert, EVP_PKEY *ca_key, int *generation,
		    char *fp, size_t fplen, struct kmerr *err);
enum km_status	 keystore_enroll_signer(struct keystore *, const char *addr,
		    X509 *ca_cert, EVP_PKEY *ca_key, int *made,
		    struct kmerr *err);
void		 keystore_stats(struct keystore *, struct keystore_stats *);

/* Test seam: every function gets arg as its first parameter. */
struct keystore_backend {
	void		*arg;
	enum km_status	(*km_cert)(void *, const char *addr, X509 **out,
			    struct kmerr *err);
	enum km_status	(*km_keys)(void *, const char *addr,
			    struct keymodel_gen **out, size_t *n,
			    struct kmerr *err);
	void		(*km_gens_free)(void *, struct keymodel_gen *, size_t n);
	enum km_status	(*km_revcount)(void *, const char *addr,
			    uint32_t *count, struct kmerr *err);
	/* a protected signing key comes back in *enc (malloc'd), *key
	 * NULL (signstore_open()) */
	enum km_status	(*signer)(void *, const char *addr, X509 **cert,
			    EVP_PKEY **key, unsigned char **enc,
			    size_t *enclen, STACK_OF(X509) **chain,
			    struct kmerr *err);
	/* the signing key file rewritten at another level
	 * (signstore_rewrap()); NULL: never */
	enum km_status	(*signer_rewrap)(void *, const char *addr,
			    const char *oldpw, size_t oldlen,
			    const char *newpw, size_t newlen,
			    struct kmerr *err);
	enum km_status	(*l2_get)(void *, const char *kind, const char *addr,
			    unsigned char **buf, size_t *len, int *negative);
	enum km_status	(*l2_put)(void *, const char *kind, const char *addr,
			    const unsigned char *buf, size_t len, int ttl);
	enum km_status	(*l2_del)(void *, const char *kind, const char *addr);
	enum km_status	(*l2_invalidate)(void *, const char *addr);
	enum km_status	(*hook_ask)(void *, const struct hook_request *,
			    struct hook_answer *, struct kmerr *err);
	int64_t		(*clock_ms)(void *);	/* L1 clock; NULL: monotonic */
	/* directories, asked when the KM has no certificate (the real
	 * back end: certdir.h); NULL: none */
	enum km_status	(*dir_cert)(void *, const char *addr, X509 **out,
			    struct kmerr *err);
};

struct keystore	*keystore_new_backend(const struct kmilter_conf *,
		    const struct keystore_backend *, struct kmerr *err);

#endif
