#ifndef KMILTER_KEYCLIENT_KEYSTORE_INT_H
#define KMILTER_KEYCLIENT_KEYSTORE_INT_H
/*
 * NAME
 *	keystore_int - internals shared by the keystore module family
 * SUMMARY
 *	Private to the keystore*.c files: nothing else includes this
 *	header.
 *	Types: struct keystore (the handle), struct keyset (an L1 key set).
 *	Entry kinds K_*, RELEASE_TTL, REASON_MAX.
 *	Helpers: bump(), min_ms() (static inline).
 *	keystore_lookup.c: keystore_prepare(), keystore_l1_get(),
 *	keystore_revc(), keystore_l2_get(), keystore_l2_put(): every L2
 *	entry is wrapped (keystore_env_wrap()) with the user's revocation
 *	counter and refused when it is not the KM's current one.
 *	keystore_hook.c: keystore_real_hook_ask(), keystore_hook_call(),
 *	keystore_hook_call_key(), keystore_hook_password(),
 *	keystore_release_check(), keystore_locked_lookup(),
 *	keystore_use_unlocked(), keystore_unlock(), keystore_unlock_signer().
 *	keystore_keys.c: keystore_raw_keys().
 *	The functions of keystore_entry.h and keystore_certcheck.h.
 *	The files depend one way: keystore_keys.c on keystore_hook.c, both
 *	and keystore_cert.c and keystore_signer.c on keystore_lookup.c.
 * DESCRIPTION
 *	keystore.c builds the handle and its caches; keystore_cert.c,
 *	keystore_keys.c and keystore_signer.c own the lookup order of
 *	their kind (L1 -> L2 -> KM) on the path keystore_lookup.c gives
 *	them; keystore_hook.c the admin hook's part of a key lookup: the release
 *	decision, unlocking enhanced keys with the hook's password, and the
 *	L2 entries of unlocked keys and of a wrong password.
 *
 *	keystore_prepare(): the address normalized (norm) and its keyed
 *	hash (the cache key), one more lookup counted.  keystore_l1_get():
 *	KM_OK with a reference on an L1 hit, positive or negative.
 *
 *	keystore_release_check(): with hook_release, may this gateway have
 *	addr's keys (asks the hook once per RELEASE_TTL).
 *	keystore_locked_lookup(): 1 when L2 records a wrong password, its
 *	reason in why.  keystore_use_unlocked(): fills the keys of enhanced
 *	generations from L2's unlocked entry.  keystore_unlock(): asks the
 *	hook for the password and unlocks every enhanced generation still
 *	locked, storing the unlocked keys in L2.  keystore_hook_password():
 *	the one place that asks the hook for a password (event unlock) and
 *	turns a refusal or failure into a reason.  keystore_unlock_signer():
 *	a signing key unlocked with it (never stored in L2), and the key
 *	file brought to the escrow's level (keystore.h).
 * OWNERSHIP
 *	Generations handed in are modified in place (key references added);
 *	the caller still owns and frees them.  Everything else is borrowed.
 * ERRORS
 *	enum km_status, reasons in err or why.  keystore_unlock():
 *	KM_OK (all unlocked), KM_PERMFAIL ("locked", *wrongpw set when the
 *	password did not open a key), KM_TEMPFAIL, KM_NOMEM.
 * THREADS
 *	As keystore.h: thread-safe on a shared struct keystore.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "hook_proto.h"
#include "keystore.h"
#include "keystore_certcheck.h"
#include "keystore_entry.h"
#include "log.h"
#include "seal.h"

struct memcache_ref;

/* Entry kinds.  "cert" and "enckey" are among CACHE_KINDS; the other two
 * L2 kinds are deleted by keystore_invalidate() itself. */
#define K_CERT		"cert"		/* L1+L2: current encryption cert */
#define K_KEYS		"enckey"	/* L1: usable set; L2: set as KM has it */
#define K_UNLOCKED	"enckey-unl"	/* L2: unlocked enhanced keys */
#define K_LOCKED	"enckey-lck"	/* L2: wrong password, reason */
#define K_SIGNER	"signer"	/* L1 only */
#define K_RELEASE	"release"	/* release decisions (own memcache) */
#define K_REVC		"revc"		/* revocation counters (own memcache) */

#define RELEASE_TTL	86400		/* seconds a release decision holds */
#define REASON_MAX	160
#define REVC_ENTRIES	10000		/* revocation counters kept */

/*
 * The revocation counter of one lookup (keymodel_revocation_count()),
 * read before L2 and the KM are.  known 0: the KM could not be asked, so
 * L2 entries are neither trusted nor written.  cached: it came from the
 * revc memcache (re-read once from the KM before an entry is refused).
 */
struct revc {
	int		 known;
	int		 cached;
	uint32_t	 n;
};

struct keyset {
	int			 locked;	/* wrong password: reason */
	char			 reason[REASON_MAX];
	size_t			 n;
	struct keystore_key	*keys;
};

/* The handle. */
struct keystore {
	struct keystore_backend	 be;
	int			 has_km, has_l2;
	struct keymodel		*km;
	struct cache		*cache;
	struct cache_sub	*sub;
	struct seal_key		*seal;
	char			 seal_err[192];	/* why no seal key ("" if ok) */
	struct memcache		*l1;		/* NULL: no L1 */
	struct memcache		*released;
	struct memcache		*revc;		/* revocation counters */
	struct hook		*hook;
	struct certdir		*dirs;		/* directories of the conf */
	char			*state_dir;
	char			*gateway;
	int			 memory_ttl, cert_ttl, key_ttl, negative_ttl;
	int			 unlocked_ttl, hook_release;
	atomic_ulong		 l1_hits, l2_hits, km_fetches, misses;
	atomic_ulong		 negative_hits, km_errors, l2_errors;
	atomic_ulong		 hook_calls, hook_unlocked, hook_locked;
	atomic_ulong		 invalidations, lookups;
	atomic_ulong		 revc_fetches, l2_stale;
};

/* bump - add one to a counter */
static inline void
bump(atomic_ulong *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* min_ms - the smaller of two TTLs in seconds, as milliseconds */
static inline int64_t
min_ms(int a, int b)
{
	return (int64_t)(a < b ? a : b) * 1000;
}

/* The lookup path (keystore_lookup.c): the address, L1, and the sealed
 * L2 entries bound to the revocation counter. */
enum km_status	 keystore_prepare(struct keystore *, const char *addr,
		    char *norm, size_t normlen,
		    char hash[SEAL_HASH_HEXLEN + 1], struct kmerr *err);
enum km_status	 keystore_l1_get(struct keystore *, const char *kind,
		    const char *hash, struct memcache_ref **);
enum km_status	 keystore_revc(struct keystore *, const char *norm,
		    const char *hash, struct revc *);
enum km_status	 keystore_l2_get(struct keystore *, struct revc *,
		    const char *kind, const char *norm, const char *hash,
		    unsigned char **body, size_t *len, int *negative);
void		 keystore_l2_put(struct keystore *, const struct revc *,
		    const char *kind, const char *norm,
		    const unsigned char *body, size_t len, int negative,
		    int ttl);

/* The admin hook's part of a key lookup (keystore_hook.c). */
enum km_status	 keystore_real_hook_ask(void *ks,
		    const struct hook_request *, struct hook_answer *,
		    struct kmerr *err);
enum km_status	 keystore_hook_call(struct keystore *, enum hook_event,
		    const char *addr, enum hook_level, const char *queue_id,
		    struct hook_answer *, struct kmerr *err);
enum km_status	 keystore_hook_call_key(struct keystore *, enum hook_event,
		    const char *addr, enum hook_key, enum hook_level,
		    const char *queue_id, struct hook_answer *,
		    struct kmerr *err);
enum km_status	 keystore_hook_password(struct keystore *, const char *norm,
		    enum hook_key, const char *queue_id, struct hook_answer *,
		    struct kmerr *why);
enum km_status	 keystore_unlock_signer(struct keystore *, const char *norm,
		    const char *queue_id, X509 *cert, const unsigned char *enc,
		    size_t enclen, const struct keymodel_gen *, size_t n,
		    int escrow, EVP_PKEY **key, int *wrongpw,
		    struct kmerr *why);
/* keystore_keys.c: the user's escrowed generations as the KM holds them
 * (L2, else the KM), keys of enhanced ones still encrypted */
enum km_status	 keystore_raw_keys(struct keystore *, struct revc *,
		    const char *norm, const char *hash, struct keymodel_gen **,
		    size_t *n, struct kmerr *err);
enum km_status	 keystore_release_check(struct keystore *,
		    const char *norm, const char *hash, int enhanced,
		    const char *queue_id, struct kmerr *err);
int		 keystore_locked_lookup(struct keystore *, struct revc *,
		    const char *norm, const char *hash, char *why,
		    size_t wlen);
void		 keystore_use_unlocked(struct keystore *, struct revc *,
		    const char *norm, const char *hash,
		    struct keymodel_gen *, size_t n);
enum km_status	 keystore_unlock(struct keystore *, const struct revc *,
		    const char *norm, const char *queue_id,
		    struct keymodel_gen *, size_t n, int *wrongpw,
		    struct kmerr *why);

#endif
