/*
 * keystore_hook.c - the admin hook's part of a key lookup: the release
 * decision, unlocking password-protected keys (decryption keys and this
 * gateway's signing keys) with the hook's password, and the L2 entries of
 * unlocked decryption keys and of a wrong password.  See keystore_int.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "hook.h"
#include "keymodel.h"
#include "keymodel_protect.h"
#include "keystore_int.h"
#include "memcache.h"
#include "pkcs8pw.h"
#include "secmem.h"

/* keystore_real_hook_ask - hook_ask on the configured hook */
enum km_status
keystore_real_hook_ask(void *arg, const struct hook_request *req,
    struct hook_answer *out, struct kmerr *err)
{
	return hook_ask(((struct keystore *)arg)->hook,
	    req, out, err);
}

/* keystore_hook_call - ask the hook about addr's encryption key from this
 * gateway; *a is cleared first */
enum km_status
keystore_hook_call(struct keystore *ks, enum hook_event event,
    const char *addr, enum hook_level level, const char *queue_id,
    struct hook_answer *a, struct kmerr *err)
{
	return keystore_hook_call_key(ks, event, addr, HOOK_KEY_ENCRYPTION,
	    level, queue_id, a, err);
}

/* keystore_hook_call_key - keystore_hook_call about one kind of key */
enum km_status
keystore_hook_call_key(struct keystore *ks, enum hook_event event,
    const char *addr, enum hook_key key, enum hook_level level,
    const char *queue_id, struct hook_answer *a, struct kmerr *err)
{
	/* keystore_real_hook_ask wants the keystore, a fake its own arg */
	void *arg = ks->be.hook_ask == keystore_real_hook_ask ? (void *)ks :
	    ks->be.arg;
	struct hook_request rq;

	memset(&rq, 0, sizeof(rq));
	memset(a, 0, sizeof(*a));
	rq.event = event;
	rq.address = addr;
	rq.key = key;
	rq.level = level;
	rq.queue_id = queue_id;
	rq.gateway = ks->gateway;
	bump(&ks->hook_calls);
	return ks->be.hook_ask(arg, &rq, a, err);
}

/* keystore_release_check - hook_release: may this gateway have the keys? */
enum km_status
keystore_release_check(struct keystore *ks, const char *norm, const char *hash,
    int enhanced, const char *queue_id, struct kmerr *err)
{
	struct memcache_ref *ref;
	struct hook_answer a;
	struct kmerr why;
	static int allowed = 1;

	if (!ks->hook_release)
		return KM_OK;
	if (memcache_get(ks->released, K_RELEASE, hash, &ref) == KM_OK) {
		int neg = memcache_is_negative(ref);

		memcache_release(ref);
		if (!neg)
			return KM_OK;
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "release denied");
	}
	if (ks->be.hook_ask == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "release denied: no hook configured");
	kmerr_clear(&why);
	keystore_hook_call(ks, HOOK_EVENT_RELEASE, norm, enhanced ?
	    HOOK_LEVEL_ENHANCED : HOOK_LEVEL_DEFAULT, queue_id, &a, &why);
	if (a.action == HOOK_ACTION_ALLOW) {
		memcache_put(ks->released, K_RELEASE, hash, &allowed, NULL,
		    (int64_t)RELEASE_TTL * 1000);
		hook_answer_clear(&a);
		log_info("%s keystore: %s: release allowed by hook",
		    queue_id ? queue_id : "-", norm);
		return KM_OK;
	}
	if (a.failure == HOOK_FAIL_NONE)
		memcache_put_negative(ks->released, K_RELEASE, hash,
		    (int64_t)ks->negative_ttl * 1000);
	log_info("%s keystore: %s: release denied%s%s", queue_id ? queue_id :
	    "-", norm, why.msg[0] ? ": " : "", why.msg);
	kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
	    "release denied%s%s", a.reason[0] ? ": " : "",
	    a.reason);
	hook_answer_clear(&a);
	return KM_PERMFAIL;
}

/* keystore_use_unlocked - fill enhanced generations from the L2 unlocked
 * entry */
void
keystore_use_unlocked(struct keystore *ks, struct revc *rc, const char *norm,
    const char *hash, struct keymodel_gen *g, size_t n)
{
	unsigned char *buf = NULL;
	size_t len = 0, un = 0;
	struct keymodel_gen *u = NULL;
	int neg = 0;
	struct kmerr why;

	if (keystore_l2_get(ks, rc, K_UNLOCKED, norm, hash, &buf, &len,
	    &neg) != KM_OK)
		return;
	if (neg) {
		secmem_free(buf, len);
		return;
	}
	if (keystore_entry_decode(buf, len, &u, &un, &why) != KM_OK) {
		log_warnx("keystore: %s: bad unlocked entry (%s), deleted",
		    norm, why.msg);
		ks->be.l2_del(ks->be.arg, K_UNLOCKED, norm);
	}
	secmem_free(buf, len);
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < un; j++) {
			if (!g[i].enhanced || g[i].key != NULL ||
			    u[j].generation != g[i].generation ||
			    u[j].key == NULL || g[i].cert == NULL ||
			    X509_check_private_key(g[i].cert, u[j].key) != 1)
				continue;
			EVP_PKEY_up_ref(u[j].key);
			g[i].key = u[j].key;
		}
	}
	ERR_clear_error();
	keystore_gens_free(u, un);
}

/* store_unlocked - put the unlocked enhanced keys into L2 */
static void
store_unlocked(struct keystore *ks, const struct revc *rc, const char *norm,
    struct keymodel_gen *u, size_t un)
{
	unsigned char *buf = NULL;
	size_t len = 0;

	if (!ks->has_l2 || un == 0 || ks->unlocked_ttl <= 0)
		return;
	if (keystore_entry_encode(u, un, &buf, &len) != KM_OK)
		return;
	keystore_l2_put(ks, rc, K_UNLOCKED, norm, buf, len, 0,
	    ks->unlocked_ttl);
	secmem_free(buf, len);
}

/* keystore_locked_lookup - a wrong password recorded in L2? reason into why */
int
keystore_locked_lookup(struct keystore *ks, struct revc *rc,
    const char *norm, const char *hash, char *why, size_t wlen)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	int neg = 0;

	if (keystore_l2_get(ks, rc, K_LOCKED, norm, hash, &buf, &len,
	    &neg) != KM_OK)
		return 0;
	snprintf(why, wlen, "%.*s", (int)(len < 100 ? len : 100),
	    len > 0 ? (const char *)buf : "wrong password");
	for (char *p = why; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	secmem_free(buf, len);
	return 1;
}

/*
 * keystore_hook_password - ask the hook (event unlock) for the password of
 * addr's key of that kind: KM_OK with the password in *a (the caller
 * clears it with hook_answer_clear()), else the reason in why: KM_PERMFAIL
 * (no hook, a failure, KMERR_REFUSED when the hook said keep-encrypted)
 * or KM_TEMPFAIL.
 */
enum km_status
keystore_hook_password(struct keystore *ks, const char *norm,
    enum hook_key key, const char *queue_id, struct hook_answer *a,
    struct kmerr *why)
{
	struct kmerr herr;
	enum km_status st;

	memset(a, 0, sizeof(*a));
	if (ks->be.hook_ask == NULL)
		return kmerr_set(why, KM_PERMFAIL, KMERR_NONE,
		    "no hook configured");
	kmerr_clear(&herr);
	keystore_hook_call_key(ks, HOOK_EVENT_UNLOCK, norm, key,
	    HOOK_LEVEL_ENHANCED, queue_id, a, &herr);
	switch (a->action) {
	case HOOK_ACTION_PASSWORD:
		return KM_OK;
	case HOOK_ACTION_TEMPFAIL:
		if (a->failure != HOOK_FAIL_NONE)
			st = kmerr_set(why, KM_TEMPFAIL, KMERR_NONE,
			    "hook failed: %s (tempfail)",
			    hook_failure_name(a->failure));
		else
			st = kmerr_set(why, KM_TEMPFAIL, KMERR_NONE,
			    "hook: tempfail%s%.100s", a->reason[0] ? ": " : "",
			    a->reason);
		break;
	default:
		if (a->failure != HOOK_FAIL_NONE)
			st = kmerr_set(why, KM_PERMFAIL, KMERR_NONE,
			    "hook failed: %s", hook_failure_name(a->failure));
		else
			st = kmerr_set(why, KM_PERMFAIL, KMERR_REFUSED,
			    "keep-encrypted%s%.100s", a->reason[0] ? ": " : "",
			    a->reason);
		break;
	}
	hook_answer_clear(a);
	return st;
}

/*
 * keystore_unlock - unlock every enhanced generation with the hook's password.
 * Returns KM_OK (all unlocked), KM_PERMFAIL with the reason in why
 * ("locked"; KMERR_REFUSED when the hook itself said keep-encrypted),
 * KM_TEMPFAIL, or *wrongpw set when the password did not open a key.
 */
enum km_status
keystore_unlock(struct keystore *ks, const struct revc *rc, const char *norm,
    const char *queue_id, struct keymodel_gen *g, size_t n, int *wrongpw,
    struct kmerr *why)
{
	struct hook_answer a;
	struct keymodel_gen *u = NULL;
	size_t un = 0;
	struct kmerr herr;
	enum km_status st = KM_OK;

	*wrongpw = 0;
	kmerr_clear(&herr);
	if ((st = keystore_hook_password(ks, norm, HOOK_KEY_ENCRYPTION,
	    queue_id, &a, why)) != KM_OK)
		goto out;
	if ((u = calloc(n, sizeof(*u))) == NULL) {
		st = kmerr_set(why, KM_NOMEM, KMERR_NONE, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char *plain = NULL;
		size_t plen = 0;
		EVP_PKEY *k = NULL;

		if (!g[i].enhanced || g[i].key != NULL)
			continue;
		st = pkcs8pw_unwrap(g[i].der, g[i].derlen, a.password,
		    a.password_len, &plain, &plen, &herr);
		if (st == KM_OK)
			st = keystore_parse_plain(plain, plen, g[i].cert, &k,
			    &herr);
		if (st != KM_OK) {
			secmem_free(plain, plen);
			if (st == KM_PERMFAIL || st == KM_PROTO) {
				*wrongpw = 1;
				st = kmerr_set(why, KM_PERMFAIL,
				    KMERR_BADPASSWORD, "wrong password");
			} else
				kmerr_set(why, st, herr.reason, "%.*s",
				    REASON_MAX - 1, herr.msg);
			goto out;
		}
		g[i].key = k;
		EVP_PKEY_up_ref(k);
		u[un].generation = g[i].generation;
		u[un].state = g[i].state;
		u[un].key = k;
		u[un].der = plain;
		u[un].derlen = plen;
		if ((u[un].cert = g[i].cert) != NULL)
			X509_up_ref(u[un].cert);
		un++;
	}
	store_unlocked(ks, rc, norm, u, un);
out:
	keystore_gens_free(u, un);
	hook_answer_clear(&a);
	return st;
}

/* signer_level - bring the signing key file to the escrow's level: the
 * key stays usable whatever happens here (logged) */
static void
signer_level(struct keystore *ks, const char *norm, const char *queue_id,
    const char *oldpw, size_t oldlen, const char *newpw, size_t newlen)
{
	struct kmerr e;

	if (ks->be.signer_rewrap == NULL)
		return;
	kmerr_clear(&e);
	if (ks->be.signer_rewrap(ks->be.arg, norm, oldpw, oldlen, newpw,
	    newlen, &e) != KM_OK)
		log_warnx("%s keystore: %s: signing key left %s: %s",
		    queue_id ? queue_id : "-", norm, newpw != NULL ? "plain" :
		    "protected", e.msg);
}

/*
 * keystore_unlock_signer - norm's signing key unlocked with the hook's
 * password (event unlock, key signing).  enc: the key as the signstore
 * holds it when it is protected; NULL when it is plain (*key is set) but
 * the user's escrowed key is enhanced, so it must be protected: the
 * password must then open the escrowed key (g, n: the user's escrowed
 * generations) and the key file is wrapped under it.  A protected key
 * whose user is back at level default (escrow 0) is made plain again.
 * KM_OK with *key; KM_PERMFAIL with the reason in why (*wrongpw when the
 * password opened nothing); KM_TEMPFAIL; KM_NOMEM.
 */
enum km_status
keystore_unlock_signer(struct keystore *ks, const char *norm,
    const char *queue_id, X509 *cert, const unsigned char *enc, size_t enclen,
    const struct keymodel_gen *g, size_t n, int escrow, EVP_PKEY **key,
    int *wrongpw, struct kmerr *why)
{
	struct hook_answer a;
	unsigned char *plain = NULL;
	size_t plen = 0;
	EVP_PKEY *k = NULL;
	struct kmerr e;
	enum km_status st;

	*wrongpw = 0;
	if ((st = keystore_hook_password(ks, norm, HOOK_KEY_SIGNING, queue_id,
	    &a, why)) != KM_OK)
		return st;
	if (enc == NULL) {
		/* plain here, enhanced in the KM: wrap it lazily */
		if (keymodel_password_opens(g, n, a.password,
		    a.password_len) != 1) {
			*wrongpw = 1;
			st = kmerr_set(why, KM_PERMFAIL, KMERR_BADPASSWORD,
			    "wrong password");
		} else
			signer_level(ks, norm, queue_id, NULL, 0, a.password,
			    a.password_len);
		goto out;
	}
	st = pkcs8pw_unwrap(enc, enclen, a.password, a.password_len, &plain,
	    &plen, &e);
	if (st == KM_OK)
		st = keystore_parse_plain(plain, plen, cert, &k, &e);
	secmem_free(plain, plen);
	if (st == KM_PERMFAIL || st == KM_PROTO) {
		*wrongpw = 1;
		if (keymodel_password_opens(g, n, a.password,
		    a.password_len) == 1)
			st = kmerr_set(why, KM_PERMFAIL, KMERR_BADPASSWORD,
			    "protected by an earlier password (kmctl "
			    "set-password on this gateway, or signing-enroll "
			    "again)");
		else
			st = kmerr_set(why, KM_PERMFAIL, KMERR_BADPASSWORD,
			    "wrong password");
		goto out;
	}
	if (st != KM_OK) {
		kmerr_set(why, st, e.reason, "%s", e.msg);
		goto out;
	}
	*key = k;
	if (escrow == 0)	/* the user cleared the password elsewhere */
		signer_level(ks, norm, queue_id, a.password, a.password_len,
		    NULL, 0);
out:
	hook_answer_clear(&a);
	return st;
}
