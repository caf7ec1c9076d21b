/*
 * keystore.c - the key lookup facade: L1 (memcache) -> L2 (Redis, sealed)
 * -> KM (keymodel), plus the admin hook for password-protected keys.
 * See keystore.h and docs/keystore.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "keystore.h"
#include "cache.h"
#include "conf.h"
#include "hook.h"
#include "keymodel.h"
#include "kmip.h"
#include "log.h"
#include "memcache.h"
#include "pkcs8pw.h"
#include "seal.h"
#include "secmem.h"
#include "signstore.h"

/* Entry kinds.  "cert" and "enckey" are among CACHE_KINDS; the other two
 * L2 kinds are deleted by keystore_invalidate() itself. */
#define K_CERT		"cert"		/* L1+L2: current encryption cert */
#define K_KEYS		"enckey"	/* L1: usable set; L2: set as KM has it */
#define K_UNLOCKED	"enckey-unl"	/* L2: unlocked enhanced keys */
#define K_LOCKED	"enckey-lck"	/* L2: wrong password, reason */
#define K_SIGNER	"signer"	/* L1 only */
#define K_RELEASE	"release"	/* release decisions (own memcache) */

#define RELEASE_TTL	86400		/* seconds a release decision holds */
#define RELEASE_ENTRIES	10000
#define SET_MAGIC	"KSG1"
#define SET_MAX		1000		/* generations in one set */
#define REASON_MAX	160

struct keyset {
	int			 locked;	/* wrong password: reason */
	char			 reason[REASON_MAX];
	size_t			 n;
	struct keystore_key	*keys;
};

struct signer {
	X509		*cert;
	EVP_PKEY	*key;
	STACK_OF(X509)	*chain;
};

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
	struct hook		*hook;
	char			*state_dir;
	char			*gateway;
	int			 memory_ttl, cert_ttl, key_ttl, negative_ttl;
	int			 unlocked_ttl, hook_release;
	atomic_ulong		 l1_hits, l2_hits, km_fetches, misses;
	atomic_ulong		 negative_hits, km_errors, l2_errors;
	atomic_ulong		 hook_calls, hook_unlocked, hook_locked;
	atomic_ulong		 invalidations, lookups;
};

static void seterr(char *, size_t, const char *, ...) KM_PRINTF(3, 4);

/* seterr - format a reason into the caller's buffer, if any */
static void
seterr(char *errstr, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errstr == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errstr, errlen, fmt, ap);
	va_end(ap);
}

/* bump - add one to a counter */
static void
bump(atomic_ulong *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* min_ms - the smaller of two TTLs in seconds, as milliseconds */
static int64_t
min_ms(int a, int b)
{
	return (int64_t)(a < b ? a : b) * 1000;
}

/* ---- default backend: the real KM, signstore, Redis and hook ---- */

/* real_km_cert - keymodel_current_cert */
static enum km_status
real_km_cert(void *arg, const char *addr, X509 **out, char *errstr,
    size_t errlen)
{
	struct keystore *ks = arg;

	return keymodel_current_cert(ks->km, addr, out, errstr, errlen);
}

/* real_km_keys - keymodel_decryption_keys */
static enum km_status
real_km_keys(void *arg, const char *addr, struct keymodel_gen **out,
    size_t *n, char *errstr, size_t errlen)
{
	struct keystore *ks = arg;

	return keymodel_decryption_keys(ks->km, addr, out, n, errstr, errlen);
}

/* real_km_gens_free - keymodel_gens_free */
static void
real_km_gens_free(void *arg, struct keymodel_gen *g, size_t n)
{
	(void)arg;
	keymodel_gens_free(g, n);
}

/* real_signer - signstore_load from the state directory */
static enum km_status
real_signer(void *arg, const char *addr, X509 **cert, EVP_PKEY **key,
    STACK_OF(X509) **chain, char *errstr, size_t errlen)
{
	struct keystore *ks = arg;

	if (ks->seal_err[0] != '\0') {
		seterr(errstr, errlen, "no signing key for %s here: %s",
		    addr, ks->seal_err);
		return KM_PERMFAIL;
	}
	return signstore_load(ks->state_dir, ks->seal, addr, cert, key, chain,
	    errstr, errlen);
}

/* real_l2_get - cache_get */
static enum km_status
real_l2_get(void *arg, const char *kind, const char *addr,
    unsigned char **buf, size_t *len, int *negative)
{
	return cache_get(((struct keystore *)arg)->cache, kind, addr, buf, len,
	    negative);
}

/* real_l2_put - cache_put */
static enum km_status
real_l2_put(void *arg, const char *kind, const char *addr,
    const unsigned char *buf, size_t len, int ttl)
{
	return cache_put(((struct keystore *)arg)->cache, kind, addr, buf, len,
	    ttl);
}

/* real_l2_put_negative - cache_put_negative */
static enum km_status
real_l2_put_negative(void *arg, const char *kind, const char *addr, int ttl)
{
	return cache_put_negative(((struct keystore *)arg)->cache, kind, addr,
	    ttl);
}

/* real_l2_del - cache_del */
static enum km_status
real_l2_del(void *arg, const char *kind, const char *addr)
{
	return cache_del(((struct keystore *)arg)->cache, kind, addr);
}

/* real_l2_invalidate - cache_invalidate (deletes and publishes) */
static enum km_status
real_l2_invalidate(void *arg, const char *addr)
{
	return cache_invalidate(((struct keystore *)arg)->cache, addr);
}

/* real_hook_ask - hook_ask on the configured hook */
static enum km_status
real_hook_ask(void *arg, const struct hook_request *req,
    struct hook_answer *out, char *errstr, size_t errlen)
{
	return hook_ask(((struct keystore *)arg)->hook, req, out, errstr,
	    errlen);
}

/* ---- value types kept in L1 ---- */

/* keyset_free - free a key set (memcache free callback) */
static void
keyset_free(void *p)
{
	struct keyset *s = p;

	if (s == NULL)
		return;
	keystore_keys_free(s->keys, s->n);
	free(s);
}

/* signer_free - free a cached signer (memcache free callback) */
static void
signer_free(void *p)
{
	struct signer *s = p;

	if (s == NULL)
		return;
	X509_free(s->cert);
	EVP_PKEY_free(s->key);
	if (s->chain != NULL)
		sk_X509_pop_free(s->chain, X509_free);
	free(s);
}

/* x509_free_cb - X509_free as a memcache free callback */
static void
x509_free_cb(void *p)
{
	X509_free(p);
}

/* keystore_keys_free - release the references of a key array */
void
keystore_keys_free(struct keystore_key *keys, size_t n)
{
	if (keys == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		X509_free(keys[i].cert);
		EVP_PKEY_free(keys[i].key);
	}
	free(keys);
}

/* keys_copy - new references to every key of a set */
static enum km_status
keys_copy(const struct keyset *s, struct keystore_key **out, size_t *n)
{
	struct keystore_key *k;

	if ((k = calloc(s->n ? s->n : 1, sizeof(*k))) == NULL)
		return KM_NOMEM;
	for (size_t i = 0; i < s->n; i++) {
		k[i] = s->keys[i];
		if (k[i].cert != NULL)
			X509_up_ref(k[i].cert);
		EVP_PKEY_up_ref(k[i].key);
	}
	*out = k;
	*n = s->n;
	return KM_OK;
}

/* ---- the L2 form of a set of generations ---- */

/* gens_free - free generations made here (der in secmem) */
static void
gens_free(struct keymodel_gen *g, size_t n)
{
	if (g == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		X509_free(g[i].cert);
		EVP_PKEY_free(g[i].key);
		secmem_free(g[i].der, g[i].derlen);
	}
	free(g);
}

/* put32 - append a big-endian 32-bit number */
static unsigned char *
put32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
	return p + 4;
}

/* get32 - read a big-endian 32-bit number if 4 bytes remain */
static int
get32(const unsigned char **p, const unsigned char *end, uint32_t *v)
{
	if (end - *p < 4)
		return -1;
	*v = ((uint32_t)(*p)[0] << 24) | ((uint32_t)(*p)[1] << 16) |
	    ((uint32_t)(*p)[2] << 8) | (*p)[3];
	*p += 4;
	return 0;
}

/*
 * gens_encode - serialize generations for L2
 * Format: "KSG1" n(4) then per generation: generation(4) state(4)
 * enhanced(1) certlen(4) cert-DER derlen(4) der.  The buffer is secmem
 * (a plain PKCS#8 key is secret); free with secmem_free(*out, *outlen).
 */
static enum km_status
gens_encode(const struct keymodel_gen *g, size_t n, unsigned char **out,
    size_t *outlen)
{
	size_t len = 8;
	unsigned char *buf, *p;

	for (size_t i = 0; i < n; i++) {
		int cl = g[i].cert ? i2d_X509(g[i].cert, NULL) : 0;

		if (cl < 0)
			return KM_PROTO;
		len += 17 + (size_t)cl + g[i].derlen;
	}
	if ((buf = secmem_alloc(len)) == NULL)
		return KM_NOMEM;
	memcpy(buf, SET_MAGIC, 4);
	p = put32(buf + 4, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		int cl = g[i].cert ? i2d_X509(g[i].cert, NULL) : 0;

		p = put32(p, (uint32_t)g[i].generation);
		p = put32(p, (uint32_t)g[i].state);
		*p++ = g[i].enhanced ? 1 : 0;
		p = put32(p, (uint32_t)cl);
		if (cl > 0)
			i2d_X509(g[i].cert, &p);
		p = put32(p, (uint32_t)g[i].derlen);
		if (g[i].derlen > 0)
			memcpy(p, g[i].der, g[i].derlen);
		p += g[i].derlen;
	}
	*out = buf;
	*outlen = len;
	return KM_OK;
}

/* parse_plain - parse a plain PKCS#8 key and check it against cert */
static enum km_status
parse_plain(const unsigned char *der, size_t len, X509 *cert, EVP_PKEY **out,
    char *errstr, size_t errlen)
{
	const unsigned char *p = der;
	PKCS8_PRIV_KEY_INFO *p8;
	EVP_PKEY *k = NULL;

	*out = NULL;
	p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
	if (p8 == NULL || p != der + len ||
	    (k = EVP_PKCS82PKEY(p8)) == NULL) {
		PKCS8_PRIV_KEY_INFO_free(p8);
		ERR_clear_error();
		seterr(errstr, errlen, "private key does not parse");
		return KM_PROTO;
	}
	PKCS8_PRIV_KEY_INFO_free(p8);
	if (cert != NULL && X509_check_private_key(cert, k) != 1) {
		EVP_PKEY_free(k);
		ERR_clear_error();
		seterr(errstr, errlen, "private key does not match certificate");
		return KM_PROTO;
	}
	*out = k;
	return KM_OK;
}

/* gens_decode - strict parse of an L2 set; plain keys are parsed too */
static enum km_status
gens_decode(const unsigned char *buf, size_t len, struct keymodel_gen **out,
    size_t *nout, char *errstr, size_t errlen)
{
	const unsigned char *p = buf, *end = buf + len;
	struct keymodel_gen *g = NULL;
	uint32_t n, v;
	size_t i = 0;
	enum km_status st = KM_PROTO;

	*out = NULL;
	*nout = 0;
	if (len < 8 || memcmp(buf, SET_MAGIC, 4) != 0) {
		seterr(errstr, errlen, "bad set header");
		return KM_PROTO;
	}
	p += 4;
	if (get32(&p, end, &n) < 0 || n == 0 || n > SET_MAX) {
		seterr(errstr, errlen, "bad set count");
		return KM_PROTO;
	}
	if ((g = calloc(n ? n : 1, sizeof(*g))) == NULL)
		return KM_NOMEM;
	for (i = 0; i < n; i++) {
		const unsigned char *c;
		enum pkcs8pw_kind kind;

		if (get32(&p, end, &v) < 0 || v == 0 || v > KEYMODEL_GEN_MAX)
			goto bad;
		g[i].generation = (int)v;
		if (get32(&p, end, &v) < 0 || v > 16)
			goto bad;
		g[i].state = (int)v;
		if (end - p < 1 || *p > 1)
			goto bad;
		g[i].enhanced = *p++;
		if (get32(&p, end, &v) < 0 || v > (size_t)(end - p))
			goto bad;
		if (v > 0) {
			c = p;
			g[i].cert = d2i_X509(NULL, &c, (long)v);
			if (g[i].cert == NULL || c != p + v)
				goto bad;
			p += v;
		}
		if (get32(&p, end, &v) < 0 || v == 0 ||
		    v > (size_t)(end - p))
			goto bad;
		if ((g[i].der = secmem_alloc(v)) == NULL) {
			st = KM_NOMEM;
			goto fail;
		}
		memcpy(g[i].der, p, v);
		g[i].derlen = v;
		p += v;
		kind = pkcs8pw_detect(g[i].der, g[i].derlen);
		if (kind != (g[i].enhanced ? PKCS8PW_ENCRYPTED : PKCS8PW_PLAIN))
			goto bad;
		if (!g[i].enhanced && (st = parse_plain(g[i].der, g[i].derlen,
		    g[i].cert, &g[i].key, errstr, errlen)) != KM_OK)
			goto fail;
	}
	if (p != end)
		goto bad;
	*out = g;
	*nout = n;
	return KM_OK;
bad:
	seterr(errstr, errlen, "malformed generation %zu", i + 1);
	st = KM_PROTO;
fail:
	ERR_clear_error();
	gens_free(g, n);
	return st;
}

/* ---- certificate checks ---- */

/* addr_eq - local part exact, domain case-insensitive */
static int
addr_eq(const char *a, size_t alen, const char *b)
{
	const char *at_a = memchr(a, '@', alen), *at_b = strrchr(b, '@');
	size_t la, lb;

	if (at_a == NULL || at_b == NULL)
		return 0;
	la = (size_t)(at_a - a);
	lb = (size_t)(at_b - b);
	if (la != lb || memcmp(a, b, la) != 0)
		return 0;
	if (alen - la != strlen(at_b))
		return 0;
	return strncasecmp(at_a, at_b, alen - la) == 0;
}

/* cert_has_addr - SAN rfc822Name or subject emailAddress equals addr */
static int
cert_has_addr(X509 *cert, const char *addr)
{
	GENERAL_NAMES *san;
	X509_NAME *subj;
	int found = 0, idx = -1;

	san = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; san != NULL && i < sk_GENERAL_NAME_num(san); i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(san, i);

		if (gn->type == GEN_EMAIL && addr_eq((const char *)
		    ASN1_STRING_get0_data(gn->d.rfc822Name),
		    (size_t)ASN1_STRING_length(gn->d.rfc822Name), addr))
			found = 1;
	}
	GENERAL_NAMES_free(san);
	subj = X509_get_subject_name(cert);
	while (!found && (idx = X509_NAME_get_index_by_NID(subj,
	    NID_pkcs9_emailAddress, idx)) >= 0) {
		ASN1_STRING *s = X509_NAME_ENTRY_get_data(
		    X509_NAME_get_entry(subj, idx));

		if (addr_eq((const char *)ASN1_STRING_get0_data(s),
		    (size_t)ASN1_STRING_length(s), addr))
			found = 1;
	}
	return found;
}

/* cert_check - usable encryption certificate for addr? */
static enum km_status
cert_check(X509 *cert, const char *addr, char *errstr, size_t errlen)
{
	uint32_t eku, ku;

	if (X509_cmp_time(X509_get0_notAfter(cert), NULL) <= 0) {
		seterr(errstr, errlen, "certificate for %s expired", addr);
		return KM_PERMFAIL;
	}
	if (X509_cmp_time(X509_get0_notBefore(cert), NULL) >= 0) {
		seterr(errstr, errlen, "certificate for %s not yet valid",
		    addr);
		return KM_PERMFAIL;
	}
	/* X509_get_extended_key_usage() caches the extensions; absent
	 * EKU/KU mean any. */
	eku = X509_get_extended_key_usage(cert);
	ku = X509_get_key_usage(cert);
	if (!(eku & XKU_SMIME) ||
	    !(ku & (KU_KEY_ENCIPHERMENT | KU_KEY_AGREEMENT))) {
		ERR_clear_error();
		seterr(errstr, errlen, "certificate for %s is not for "
		    "emailProtection encryption", addr);
		return KM_PERMFAIL;
	}
	if (!cert_has_addr(cert, addr)) {
		seterr(errstr, errlen, "certificate does not name %s", addr);
		return KM_PERMFAIL;
	}
	return KM_OK;
}

/* ---- construction ---- */

/* read_secret_file - read a short secret file (password) into secmem */
static char *
read_secret_file(const char *path, char *errstr, size_t errlen)
{
	char buf[512], *s;
	ssize_t r;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		seterr(errstr, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r < 0) {
		seterr(errstr, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf[r] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	s = secmem_strdup(buf);
	secmem_wipe(buf, sizeof(buf));
	if (s == NULL)
		seterr(errstr, errlen, "out of memory");
	return s;
}

/* on_invalidate - subscriber callback: drop L1 entries of an address */
static void
on_invalidate(const char *addr_hash, void *arg)
{
	struct keystore *ks = arg;

	if (addr_hash == NULL) {
		if (ks->l1 != NULL)
			memcache_clear(ks->l1);
		memcache_clear(ks->released);
		log_debug(1, "keystore: invalidation resync: L1 cleared");
		return;
	}
	if (ks->l1 != NULL)
		memcache_invalidate(ks->l1, addr_hash);
	memcache_invalidate(ks->released, addr_hash);
	log_debug(2, "keystore: invalidated %.12s...", addr_hash);
}

/* load_seal - the gateway seal key, or an ephemeral one without L2 */
static int
load_seal(struct keystore *ks, const struct kmilter_conf *conf, int need,
    char *errstr, size_t errlen)
{
	char path[1024], why[128] = "";
	unsigned char ikm[SEAL_KEY_LEN];

	if (signstore_seal_key_path(conf, path, sizeof(path)) == KM_OK)
		ks->seal = seal_key_load(path, why, sizeof(why));
	else
		snprintf(why, sizeof(why), "seal key path too long");
	if (ks->seal != NULL)
		return 0;
	if (need) {
		seterr(errstr, errlen, "seal key: %s", why);
		return -1;
	}
	/* No Redis: the key only names L1 entries, any key will do; the
	 * signing store cannot be opened without the real one. */
	snprintf(ks->seal_err, sizeof(ks->seal_err), "seal key: %s", why);
	if (RAND_priv_bytes(ikm, sizeof(ikm)) != 1) {
		seterr(errstr, errlen, "no randomness for a seal key");
		return -1;
	}
	ks->seal = seal_key_from_bytes(ikm, sizeof(ikm), errstr, errlen);
	OPENSSL_cleanse(ikm, sizeof(ikm));
	if (ks->seal == NULL)
		return -1;
	log_info("keystore: %s; no signing keys (L1 names use a "
	    "temporary key)", ks->seal_err);
	return 0;
}

/* start_l2 - connect the Redis cache and its invalidation subscriber */
static int
start_l2(struct keystore *ks, const struct kmilter_conf *conf, char *errstr,
    size_t errlen)
{
	struct cache_opts o;
	char *pw = NULL, why[256];
	int rc = -1;

	memset(&o, 0, sizeof(o));
	o.unix_path = conf->redis_socket && *conf->redis_socket ?
	    conf->redis_socket : NULL;
	o.host = conf->redis_host && *conf->redis_host ? conf->redis_host :
	    NULL;
	o.port = conf->redis_port;
	o.database = conf->redis_database;
	o.connect_timeout_ms = conf->redis_connect_timeout_ms;
	o.command_timeout_ms = conf->redis_command_timeout_ms;
	o.key = ks->seal;
	if (conf->redis_password_file && *conf->redis_password_file) {
		if ((pw = read_secret_file(conf->redis_password_file, errstr,
		    errlen)) == NULL)
			goto out;
		o.password = pw;
	}
	if ((ks->cache = cache_new(&o, errstr, errlen)) == NULL)
		goto out;
	ks->sub = cache_subscribe_start(&o, on_invalidate, ks, why,
	    sizeof(why));
	if (ks->sub == NULL)
		log_warnx("keystore: no invalidation subscriber: %s", why);
	rc = 0;
out:
	secmem_strfree(pw);
	return rc;
}

/* keystore_new_backend - a keystore over the given backend functions */
struct keystore *
keystore_new_backend(const struct kmilter_conf *conf,
    const struct keystore_backend *be, char *errstr, size_t errlen)
{
	struct keystore *ks;
	int want_l2 = (conf->redis_socket && *conf->redis_socket) ||
	    (conf->redis_host && *conf->redis_host);

	if ((ks = calloc(1, sizeof(*ks))) == NULL) {
		seterr(errstr, errlen, "out of memory");
		return NULL;
	}
	ks->memory_ttl = conf->memory_ttl > 0 ? conf->memory_ttl : 60;
	ks->cert_ttl = conf->cert_ttl > 0 ? conf->cert_ttl : 3600;
	ks->key_ttl = conf->key_ttl > 0 ? conf->key_ttl : 600;
	ks->negative_ttl = conf->negative_ttl > 0 ? conf->negative_ttl : 60;
	ks->unlocked_ttl = conf->hook_unlocked_key_ttl;
	ks->hook_release = conf->hook_release;
	ks->state_dir = strdup(conf->state_dir ? conf->state_dir : "");
	ks->gateway = conf->gateway_name && *conf->gateway_name ?
	    strdup(conf->gateway_name) : NULL;
	if (ks->state_dir == NULL || (conf->gateway_name &&
	    *conf->gateway_name && ks->gateway == NULL)) {
		seterr(errstr, errlen, "out of memory");
		goto fail;
	}
	if (load_seal(ks, conf, be == NULL && want_l2, errstr, errlen) < 0)
		goto fail;
	if (conf->memory_entries > 0 && (ks->l1 = memcache_new(
	    (size_t)conf->memory_entries, be ? be->clock_ms : NULL,
	    be ? be->arg : NULL)) == NULL) {
		seterr(errstr, errlen, "out of memory");
		goto fail;
	}
	if ((ks->released = memcache_new(RELEASE_ENTRIES,
	    be ? be->clock_ms : NULL, be ? be->arg : NULL)) == NULL) {
		seterr(errstr, errlen, "out of memory");
		goto fail;
	}
	if (conf->hook_path && *conf->hook_path &&
	    (be == NULL || be->hook_ask == NULL)) {
		struct hook_opts ho;

		memset(&ho, 0, sizeof(ho));
		ho.path = conf->hook_path;
		ho.timeout_ms = conf->hook_timeout_ms;
		ho.max_running = conf->hook_max_running;
		ho.on_failure_unlock = conf->hook_on_failure ==
		    HOOKFAIL_TEMPFAIL ? HOOK_ACTION_TEMPFAIL :
		    HOOK_ACTION_KEEP_ENCRYPTED;
		ho.on_failure_release = HOOK_ACTION_DENY;
		if ((ks->hook = hook_new(&ho, errstr, errlen)) == NULL)
			goto fail;
	}
	if (be != NULL) {
		ks->be = *be;
		if (ks->be.hook_ask == NULL && ks->hook != NULL) {
			ks->be.hook_ask = real_hook_ask;
			/* the fakes' arg is not ours: route through ks */
		}
		ks->has_km = be->km_cert != NULL;
		ks->has_l2 = be->l2_get != NULL;
		return ks;
	}
	ks->be.arg = ks;
	ks->be.signer = real_signer;
	if (ks->hook != NULL)
		ks->be.hook_ask = real_hook_ask;
	if (conf->km_nservers > 0) {
		if ((ks->km = keymodel_new(conf, errstr, errlen)) == NULL)
			goto fail;
		ks->be.km_cert = real_km_cert;
		ks->be.km_keys = real_km_keys;
		ks->be.km_gens_free = real_km_gens_free;
		ks->has_km = 1;
	}
	if (want_l2) {
		if (start_l2(ks, conf, errstr, errlen) < 0)
			goto fail;
		ks->be.l2_get = real_l2_get;
		ks->be.l2_put = real_l2_put;
		ks->be.l2_put_negative = real_l2_put_negative;
		ks->be.l2_del = real_l2_del;
		ks->be.l2_invalidate = real_l2_invalidate;
		ks->has_l2 = 1;
	}
	log_info("keystore: L1 %s, L2 %s, KM %s, hook %s%s",
	    ks->l1 ? "on" : "off", ks->has_l2 ? "redis" : "off",
	    ks->has_km ? "on" : "not configured", ks->hook ? "on" : "off",
	    ks->hook_release ? " (release)" : "");
	return ks;
fail:
	keystore_free(ks);
	return NULL;
}

/* keystore_new - the keystore of a configuration (real KM, Redis, hook) */
struct keystore *
keystore_new(const struct kmilter_conf *conf, char *errstr, size_t errlen)
{
	return keystore_new_backend(conf, NULL, errstr, errlen);
}

/* keystore_free - stop the subscriber, free caches and handles */
struct keystore *
keystore_free(struct keystore *ks)
{
	if (ks == NULL)
		return NULL;
	ks->sub = cache_subscribe_stop(ks->sub);
	ks->cache = cache_free(ks->cache);
	ks->km = keymodel_free(ks->km);
	ks->hook = hook_free(ks->hook);
	ks->l1 = memcache_free(ks->l1);
	ks->released = memcache_free(ks->released);
	ks->seal = seal_key_free(ks->seal);
	free(ks->state_dir);
	free(ks->gateway);
	free(ks);
	return NULL;
}

/* be_hook - the hook function to call, with its argument */
static enum km_status
be_hook(struct keystore *ks, const struct hook_request *req,
    struct hook_answer *a, char *errstr, size_t errlen)
{
	/* real_hook_ask wants the keystore, a fake its own arg */
	void *arg = ks->be.hook_ask == real_hook_ask ? (void *)ks : ks->be.arg;

	bump(&ks->hook_calls);
	return ks->be.hook_ask(arg, req, a, errstr, errlen);
}

/* prepare - normalize the address and compute its keyed hash */
static enum km_status
prepare(struct keystore *ks, const char *addr, char *norm, size_t normlen,
    char hash[SEAL_HASH_HEXLEN + 1], char *errstr, size_t errlen)
{
	enum km_status st;

	bump(&ks->lookups);
	if (addr == NULL) {
		seterr(errstr, errlen, "no address");
		return KM_PROTO;
	}
	if ((st = keymodel_addr_normalize(addr, norm, normlen, errstr,
	    errlen)) != KM_OK)
		return st;
	if ((st = seal_name_hash(ks->seal, norm, hash)) != KM_OK)
		seterr(errstr, errlen, "cannot hash address");
	return st;
}

/* l1_get - L1 lookup; KM_OK with *ref on a hit (positive or negative) */
static enum km_status
l1_get(struct keystore *ks, const char *kind, const char *hash,
    struct memcache_ref **ref)
{
	*ref = NULL;
	if (ks->l1 == NULL)
		return KM_PERMFAIL;
	return memcache_get(ks->l1, kind, hash, ref);
}

/* ---- certificates ---- */

/* cert_result - check a found certificate and hand out a reference */
static enum km_status
cert_result(X509 *c, const char *addr, X509 **cert, char *errstr,
    size_t errlen)
{
	enum km_status st;

	if ((st = cert_check(c, addr, errstr, errlen)) != KM_OK)
		return st;
	X509_up_ref(c);
	*cert = c;
	return KM_OK;
}

/* keystore_get_cert - the current encryption certificate of addr */
enum km_status
keystore_get_cert(struct keystore *ks, const char *addr, X509 **cert,
    char *errstr, size_t errlen)
{
	char norm[KEYMODEL_ADDR_MAX + 1], hash[SEAL_HASH_HEXLEN + 1];
	struct memcache_ref *ref;
	unsigned char *buf = NULL, *der = NULL;
	size_t len = 0;
	X509 *c = NULL;
	int neg = 0, dl;
	enum km_status st;

	*cert = NULL;
	if ((st = prepare(ks, addr, norm, sizeof(norm), hash, errstr,
	    errlen)) != KM_OK)
		return st;
	if (l1_get(ks, K_CERT, hash, &ref) == KM_OK) {
		bump(&ks->l1_hits);
		if (memcache_is_negative(ref)) {
			bump(&ks->negative_hits);
			seterr(errstr, errlen, "no certificate for %s", norm);
			st = KM_PERMFAIL;
		} else
			st = cert_result(memcache_value(ref), norm, cert,
			    errstr, errlen);
		memcache_release(ref);
		return st;
	}
	if (ks->has_l2) {
		st = ks->be.l2_get(ks->be.arg, K_CERT, norm, &buf, &len, &neg);
		if (st == KM_OK && neg) {
			bump(&ks->l2_hits);
			bump(&ks->negative_hits);
			if (ks->l1)
				memcache_put_negative(ks->l1, K_CERT, hash,
				    min_ms(ks->memory_ttl, ks->negative_ttl));
			seterr(errstr, errlen, "no certificate for %s", norm);
			return KM_PERMFAIL;
		}
		if (st == KM_OK) {
			const unsigned char *p = buf;

			c = d2i_X509(NULL, &p, (long)len);
			if (c == NULL || p != buf + len) {
				X509_free(c);
				c = NULL;
				ERR_clear_error();
				log_warnx("keystore: %s: bad certificate in "
				    "L2, deleted", norm);
				ks->be.l2_del(ks->be.arg, K_CERT, norm);
			} else
				bump(&ks->l2_hits);
			secmem_free(buf, len);
		} else if (st == KM_TEMPFAIL)
			bump(&ks->l2_errors);
	}
	if (c == NULL) {
		if (!ks->has_km) {
			seterr(errstr, errlen, "no KM configured");
			return KM_PERMFAIL;
		}
		bump(&ks->km_fetches);
		st = ks->be.km_cert(ks->be.arg, norm, &c, errstr, errlen);
		if (st == KM_PERMFAIL) {
			bump(&ks->misses);
			if (ks->has_l2)
				ks->be.l2_put_negative(ks->be.arg, K_CERT,
				    norm, ks->negative_ttl);
			if (ks->l1)
				memcache_put_negative(ks->l1, K_CERT, hash,
				    min_ms(ks->memory_ttl, ks->negative_ttl));
			return KM_PERMFAIL;
		}
		if (st != KM_OK) {
			bump(&ks->km_errors);
			log_warnx("keystore: %s: KM: %s", norm, errstr ?
			    errstr : km_status_name(st));
			return st;
		}
		if (ks->has_l2 && (dl = i2d_X509(c, &der)) > 0) {
			ks->be.l2_put(ks->be.arg, K_CERT, norm, der,
			    (size_t)dl, ks->cert_ttl);
			OPENSSL_free(der);
		}
	}
	st = cert_result(c, norm, cert, errstr, errlen);
	if (ks->l1 == NULL || memcache_put(ks->l1, K_CERT, hash, c,
	    x509_free_cb, min_ms(ks->memory_ttl, ks->cert_ttl)) != KM_OK)
		X509_free(c);
	return st;
}

/* ---- decryption keys ---- */

/* release_check - hook_release: may this gateway have the keys? */
static enum km_status
release_check(struct keystore *ks, const char *norm, const char *hash,
    int enhanced, const char *queue_id, char *errstr, size_t errlen)
{
	struct memcache_ref *ref;
	struct hook_request rq;
	struct hook_answer a;
	char why[160] = "";
	static int allowed = 1;

	if (!ks->hook_release)
		return KM_OK;
	if (memcache_get(ks->released, K_RELEASE, hash, &ref) == KM_OK) {
		int neg = memcache_is_negative(ref);

		memcache_release(ref);
		if (!neg)
			return KM_OK;
		seterr(errstr, errlen, "release denied");
		return KM_PERMFAIL;
	}
	if (ks->be.hook_ask == NULL) {
		seterr(errstr, errlen, "release denied: no hook configured");
		return KM_PERMFAIL;
	}
	memset(&rq, 0, sizeof(rq));
	memset(&a, 0, sizeof(a));
	rq.event = HOOK_EVENT_RELEASE;
	rq.address = norm;
	rq.key = HOOK_KEY_ENCRYPTION;
	rq.level = enhanced ? HOOK_LEVEL_ENHANCED : HOOK_LEVEL_DEFAULT;
	rq.queue_id = queue_id;
	rq.gateway = ks->gateway;
	be_hook(ks, &rq, &a, why, sizeof(why));
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
	    "-", norm, why[0] ? ": " : "", why);
	seterr(errstr, errlen, "release denied%s%s", a.reason[0] ? ": " : "",
	    a.reason);
	hook_answer_clear(&a);
	return KM_PERMFAIL;
}

/* raw_set - the set of generations as the KM holds it: L2, else KM */
static enum km_status
raw_set(struct keystore *ks, const char *norm, struct keymodel_gen **g, size_t *n, char *errstr, size_t errlen)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	struct keymodel_gen *kg = NULL;
	size_t kn = 0;
	int neg = 0;
	char why[160];
	enum km_status st;

	if (ks->has_l2) {
		st = ks->be.l2_get(ks->be.arg, K_KEYS, norm, &buf, &len, &neg);
		if (st == KM_OK && neg) {
			bump(&ks->l2_hits);
			bump(&ks->negative_hits);
			seterr(errstr, errlen, "no keys for %s", norm);
			return KM_PERMFAIL;
		}
		if (st == KM_OK) {
			st = gens_decode(buf, len, g, n, why, sizeof(why));
			secmem_free(buf, len);
			if (st == KM_OK) {
				bump(&ks->l2_hits);
				return KM_OK;
			}
			if (st == KM_NOMEM)
				return st;
			log_warnx("keystore: %s: bad key set in L2 (%s), "
			    "deleted", norm, why);
			ks->be.l2_del(ks->be.arg, K_KEYS, norm);
		} else if (st == KM_TEMPFAIL)
			bump(&ks->l2_errors);
	}
	if (!ks->has_km) {
		seterr(errstr, errlen, "no KM configured");
		return KM_PERMFAIL;
	}
	bump(&ks->km_fetches);
	st = ks->be.km_keys(ks->be.arg, norm, &kg, &kn, errstr, errlen);
	if (st == KM_OK && kn == 0) {
		ks->be.km_gens_free(ks->be.arg, kg, kn);
		seterr(errstr, errlen, "no keys for %s", norm);
		st = KM_PERMFAIL;
	}
	if (st == KM_PERMFAIL) {
		bump(&ks->misses);
		if (ks->has_l2)
			ks->be.l2_put_negative(ks->be.arg, K_KEYS, norm,
			    ks->negative_ttl);
		return st;
	}
	if (st != KM_OK) {
		bump(&ks->km_errors);
		log_warnx("keystore: %s: KM: %s", norm, errstr ? errstr :
		    km_status_name(st));
		return st;
	}
	/* One code path from here: encode, then decode our own copy. */
	st = gens_encode(kg, kn, &buf, &len);
	ks->be.km_gens_free(ks->be.arg, kg, kn);
	if (st != KM_OK) {
		seterr(errstr, errlen, "cannot encode key set");
		return st;
	}
	st = gens_decode(buf, len, g, n, errstr, errlen);
	if (st == KM_OK && ks->has_l2)
		ks->be.l2_put(ks->be.arg, K_KEYS, norm, buf, len, ks->key_ttl);
	secmem_free(buf, len);
	return st;
}

/* use_unlocked - fill enhanced generations from the L2 unlocked entry */
static void
use_unlocked(struct keystore *ks, const char *norm, struct keymodel_gen *g,
    size_t n)
{
	unsigned char *buf = NULL;
	size_t len = 0, un = 0;
	struct keymodel_gen *u = NULL;
	int neg = 0;
	char why[160];

	if (!ks->has_l2 || ks->be.l2_get(ks->be.arg, K_UNLOCKED, norm, &buf,
	    &len, &neg) != KM_OK || neg)
		return;
	if (gens_decode(buf, len, &u, &un, why, sizeof(why)) != KM_OK) {
		log_warnx("keystore: %s: bad unlocked entry (%s), deleted",
		    norm, why);
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
	gens_free(u, un);
}

/* store_unlocked - put the unlocked enhanced keys into L2 */
static void
store_unlocked(struct keystore *ks, const char *norm,
    struct keymodel_gen *u, size_t un)
{
	unsigned char *buf = NULL;
	size_t len = 0;

	if (!ks->has_l2 || un == 0 || ks->unlocked_ttl <= 0)
		return;
	if (gens_encode(u, un, &buf, &len) != KM_OK)
		return;
	ks->be.l2_put(ks->be.arg, K_UNLOCKED, norm, buf, len,
	    ks->unlocked_ttl);
	secmem_free(buf, len);
}

/* locked_lookup - a wrong password recorded in L2? reason into why */
static int
locked_lookup(struct keystore *ks, const char *norm, char *why, size_t wlen)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	int neg = 0;

	if (!ks->has_l2 || ks->be.l2_get(ks->be.arg, K_LOCKED, norm, &buf,
	    &len, &neg) != KM_OK)
		return 0;
	snprintf(why, wlen, "%.*s", (int)(len < 100 ? len : 100),
	    buf ? (const char *)buf : "wrong password");
	for (char *p = why; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	secmem_free(buf, len);
	return 1;
}

/*
 * unlock - unlock every enhanced generation with the hook's password.
 * Returns KM_OK (all unlocked), KM_PERMFAIL with reason in why ("locked"),
 * KM_TEMPFAIL, or *wrongpw set when the password did not open a key.
 */
static enum km_status
unlock(struct keystore *ks, const char *norm, const char *queue_id,
    struct keymodel_gen *g, size_t n, int *wrongpw, char *why, size_t wlen)
{
	struct hook_request rq;
	struct hook_answer a;
	struct keymodel_gen *u = NULL;
	size_t un = 0;
	char herr[160] = "";
	enum km_status st = KM_OK;

	*wrongpw = 0;
	if (ks->be.hook_ask == NULL) {
		snprintf(why, wlen, "no hook configured");
		return KM_PERMFAIL;
	}
	memset(&rq, 0, sizeof(rq));
	memset(&a, 0, sizeof(a));
	rq.event = HOOK_EVENT_UNLOCK;
	rq.address = norm;
	rq.key = HOOK_KEY_ENCRYPTION;
	rq.level = HOOK_LEVEL_ENHANCED;
	rq.queue_id = queue_id;
	rq.gateway = ks->gateway;
	be_hook(ks, &rq, &a, herr, sizeof(herr));
	switch (a.action) {
	case HOOK_ACTION_PASSWORD:
		break;
	case HOOK_ACTION_TEMPFAIL:
		if (a.failure != HOOK_FAIL_NONE)
			snprintf(why, wlen, "hook failed: %s (tempfail)",
			    hook_failure_name(a.failure));
		else
			snprintf(why, wlen, "hook: tempfail%s%.100s",
			    a.reason[0] ? ": " : "", a.reason);
		st = KM_TEMPFAIL;
		goto out;
	default:
		if (a.failure != HOOK_FAIL_NONE)
			snprintf(why, wlen, "hook failed: %s",
			    hook_failure_name(a.failure));
		else
			snprintf(why, wlen, "keep-encrypted%s%.100s",
			    a.reason[0] ? ": " : "", a.reason);
		st = KM_PERMFAIL;
		goto out;
	}
	if ((u = calloc(n, sizeof(*u))) == NULL) {
		st = KM_NOMEM;
		snprintf(why, wlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char *plain = NULL;
		size_t plen = 0;
		EVP_PKEY *k = NULL;

		if (!g[i].enhanced || g[i].key != NULL)
			continue;
		st = pkcs8pw_unwrap(g[i].der, g[i].derlen, a.password,
		    a.password_len, &plain, &plen, herr, sizeof(herr));
		if (st == KM_OK)
			st = parse_plain(plain, plen, g[i].cert, &k, herr,
			    sizeof(herr));
		if (st != KM_OK) {
			secmem_free(plain, plen);
			if (st == KM_PERMFAIL || st == KM_PROTO) {
				*wrongpw = 1;
				snprintf(why, wlen, "wrong password");
				st = KM_PERMFAIL;
			} else
				snprintf(why, wlen, "%s", herr);
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
	store_unlocked(ks, norm, u, un);
out:
	gens_free(u, un);
	hook_answer_clear(&a);
	return st;
}

/* gen_cmp - current first, then newest generation first */
static int
gen_cmp(const void *pa, const void *pb)
{
	const struct keystore_key *a = pa, *b = pb;

	if (a->current != b->current)
		return b->current - a->current;
	return b->generation - a->generation;
}

/* build_set - the usable key set, from generations all unlocked */
static struct keyset *
build_set(struct keymodel_gen *g, size_t n)
{
	struct keyset *s;

	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->keys = calloc(n ? n : 1, sizeof(*s->keys))) == NULL) {
		free(s);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		struct keystore_key *k = &s->keys[s->n];

		if (g[i].key == NULL)
			continue;
		k->cert = g[i].cert;
		k->key = g[i].key;
		g[i].cert = NULL;
		g[i].key = NULL;
		k->generation = g[i].generation;
		k->current = g[i].state == KMIP_STATE_ACTIVE;
		s->n++;
	}
	qsort(s->keys, s->n, sizeof(*s->keys), gen_cmp);
	return s;
}

/*
 * locked_result - fail "locked: why"; remember (a wrong password) keeps
 * the answer in L1, and in L2 too when to_l2 (not when it came from L2).
 */
static enum km_status
locked_result(struct keystore *ks, const char *norm, const char *hash,
    const char *why, int remember, int to_l2, char *errstr, size_t errlen)
{
	struct keyset *s;

	bump(&ks->hook_locked);
	seterr(errstr, errlen, "locked: %s", why);
	if (!remember)
		return KM_PERMFAIL;
	if (ks->has_l2 && to_l2)
		ks->be.l2_put(ks->be.arg, K_LOCKED, norm,
		    (const unsigned char *)why, strlen(why), ks->negative_ttl);
	if (ks->l1 != NULL && (s = calloc(1, sizeof(*s))) != NULL) {
		s->locked = 1;
		snprintf(s->reason, sizeof(s->reason), "%s", why);
		if (memcache_put(ks->l1, K_KEYS, hash, s, keyset_free,
		    min_ms(ks->memory_ttl, ks->negative_ttl)) != KM_OK)
			keyset_free(s);
	}
	return KM_PERMFAIL;
}

/* keystore_get_keys - every usable decryption key of addr */
enum km_status
keystore_get_keys(struct keystore *ks, const char *addr, const char *queue_id,
    struct keystore_key **keys, size_t *n, char *errstr, size_t errlen)
{
	char norm[KEYMODEL_ADDR_MAX + 1], hash[SEAL_HASH_HEXLEN + 1];
	char why[REASON_MAX] = "";
	struct memcache_ref *ref;
	struct keymodel_gen *g = NULL;
	struct keyset *s = NULL;
	size_t gn = 0;
	int enhanced = 0, need_hook = 0, unlocked = 0, wrongpw = 0;
	int64_t ttl;
	enum km_status st;

	*keys = NULL;
	*n = 0;
	if ((st = prepare(ks, addr, norm, sizeof(norm), hash, errstr,
	    errlen)) != KM_OK)
		return st;
	if (l1_get(ks, K_KEYS, hash, &ref) == KM_OK) {
		const struct keyset *ls = memcache_value(ref);

		bump(&ks->l1_hits);
		if (memcache_is_negative(ref) || ls->locked)
			bump(&ks->negative_hits);
		if (memcache_is_negative(ref)) {
			seterr(errstr, errlen, "no keys for %s", norm);
			st = KM_PERMFAIL;
		} else if (ls->locked) {
			seterr(errstr, errlen, "locked: %s", ls->reason);
			st = KM_PERMFAIL;
		} else
			st = keys_copy(ls, keys, n);
		memcache_release(ref);
		return st;
	}
	st = raw_set(ks, norm, &g, &gn, errstr, errlen);
	if (st == KM_PERMFAIL && ks->has_km && ks->l1 != NULL)
		memcache_put_negative(ks->l1, K_KEYS, hash,
		    min_ms(ks->memory_ttl, ks->negative_ttl));
	if (st != KM_OK)
		return st;
	for (size_t i = 0; i < gn; i++)
		if (g[i].enhanced)
			enhanced = 1;
	if ((st = release_check(ks, norm, hash, enhanced, queue_id, errstr,
	    errlen)) != KM_OK)
		goto out;
	if (enhanced) {
		if (locked_lookup(ks, norm, why, sizeof(why))) {
			st = locked_result(ks, norm, hash, why, 1, 0,
			    errstr, errlen);
			goto out;
		}
		use_unlocked(ks, norm, g, gn);
		for (size_t i = 0; i < gn; i++)
			if (g[i].enhanced && g[i].key == NULL)
				need_hook = 1;
		if (need_hook) {
			st = unlock(ks, norm, queue_id, g, gn, &wrongpw, why,
			    sizeof(why));
			if (st == KM_TEMPFAIL) {
				seterr(errstr, errlen, "%s", why);
				goto out;
			}
			if (st == KM_PERMFAIL) {
				st = locked_result(ks, norm, hash, why,
				    wrongpw, 1, errstr, errlen);
				log_info("%s keystore: %s: key locked: %s",
				    queue_id ? queue_id : "-", norm, why);
				goto out;
			}
			if (st != KM_OK) {
				seterr(errstr, errlen, "%s", why);
				goto out;
			}
			bump(&ks->hook_unlocked);
			log_info("%s keystore: %s: key unlocked by hook",
			    queue_id ? queue_id : "-", norm);
		}
		unlocked = 1;
	}
	if ((s = build_set(g, gn)) == NULL) {
		seterr(errstr, errlen, "out of memory");
		st = KM_NOMEM;
		goto out;
	}
	if ((st = keys_copy(s, keys, n)) != KM_OK) {
		seterr(errstr, errlen, "out of memory");
		goto out;
	}
	ttl = min_ms(ks->memory_ttl, ks->key_ttl);
	if (unlocked && ks->unlocked_ttl > 0 &&
	    (int64_t)ks->unlocked_ttl * 1000 < ttl)
		ttl = (int64_t)ks->unlocked_ttl * 1000;
	if (ks->l1 != NULL && memcache_put(ks->l1, K_KEYS, hash, s,
	    keyset_free, ttl) == KM_OK)
		s = NULL;
out:
	keyset_free(s);
	gens_free(g, gn);
	return st;
}

/* ---- signing keys ---- */

/* signer_out - hand out new references of a cached signer */
static enum km_status
signer_out(const struct signer *s, const char *norm, X509 **cert,
    EVP_PKEY **key, STACK_OF(X509) **chain, char *errstr, size_t errlen)
{
	STACK_OF(X509) *ch = NULL;

	if (X509_cmp_time(X509_get0_notAfter(s->cert), NULL) <= 0) {
		seterr(errstr, errlen, "signing certificate for %s expired",
		    norm);
		return KM_PERMFAIL;
	}
	if (chain != NULL) {
		ch = s->chain ? X509_chain_up_ref(s->chain) : sk_X509_new_null();
		if (ch == NULL) {
			seterr(errstr, errlen, "out of memory");
			return KM_NOMEM;
		}
		*chain = ch;
	}
	X509_up_ref(s->cert);
	EVP_PKEY_up_ref(s->key);
	*cert = s->cert;
	*key = s->key;
	return KM_OK;
}

/* keystore_get_signer - this gateway's signing key for an internal sender */
enum km_status
keystore_get_signer(struct keystore *ks, const char *addr, X509 **cert,
    EVP_PKEY **key, STACK_OF(X509) **chain, char *errstr, size_t errlen)
{
	char norm[KEYMODEL_ADDR_MAX + 1], hash[SEAL_HASH_HEXLEN + 1];
	struct memcache_ref *ref;
	struct signer *s;
	enum km_status st;

	*cert = NULL;
	*key = NULL;
	if (chain != NULL)
		*chain = NULL;
	if ((st = prepare(ks, addr, norm, sizeof(norm), hash, errstr,
	    errlen)) != KM_OK)
		return st;
	if (l1_get(ks, K_SIGNER, hash, &ref) == KM_OK) {
		bump(&ks->l1_hits);
		if (memcache_is_negative(ref)) {
			bump(&ks->negative_hits);
			seterr(errstr, errlen, "no signing key for %s here",
			    norm);
			st = KM_PERMFAIL;
		} else
			st = signer_out(memcache_value(ref), norm, cert, key,
			    chain, errstr, errlen);
		memcache_release(ref);
		return st;
	}
	if (ks->be.signer == NULL) {
		seterr(errstr, errlen, "no signing store");
		return KM_PERMFAIL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		seterr(errstr, errlen, "out of memory");
		return KM_NOMEM;
	}
	st = ks->be.signer(ks->be.arg, norm, &s->cert, &s->key, &s->chain,
	    errstr, errlen);
	if (st != KM_OK) {
		signer_free(s);
		if (st == KM_PERMFAIL) {
			bump(&ks->misses);
			if (ks->l1 != NULL)
				memcache_put_negative(ks->l1, K_SIGNER, hash,
				    min_ms(ks->memory_ttl, ks->negative_ttl));
		}
		return st;
	}
	st = signer_out(s, norm, cert, key, chain, errstr, errlen);
	if (ks->l1 == NULL || memcache_put(ks->l1, K_SIGNER, hash, s,
	    signer_free, (int64_t)ks->memory_ttl * 1000) != KM_OK)
		signer_free(s);
	return st;
}

/* ---- administration ---- */

/* keystore_invalidate - drop L1 and L2 entries of addr and publish */
void
keystore_invalidate(struct keystore *ks, const char *addr)
{
	char norm[KEYMODEL_ADDR_MAX + 1], hash[SEAL_HASH_HEXLEN + 1];
	char why[160];
	enum km_status st;

	if (addr == NULL || keymodel_addr_normalize(addr, norm, sizeof(norm),
	    why, sizeof(why)) != KM_OK ||
	    seal_name_hash(ks->seal, norm, hash) != KM_OK) {
		log_warnx("keystore: invalidate: malformed address");
		return;
	}
	bump(&ks->invalidations);
	if (ks->l1 != NULL)
		memcache_invalidate(ks->l1, hash);
	memcache_invalidate(ks->released, hash);
	if (!ks->has_l2)
		return;
	ks->be.l2_del(ks->be.arg, K_UNLOCKED, norm);
	ks->be.l2_del(ks->be.arg, K_LOCKED, norm);
	if ((st = ks->be.l2_invalidate(ks->be.arg, norm)) != KM_OK)
		log_warnx("keystore: %s: invalidation not published: %s",
		    norm, km_status_name(st));
}

/* keystore_stats - a snapshot of the counters */
void
keystore_stats(struct keystore *ks, struct keystore_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->l1_hits = atomic_load(&ks->l1_hits);
	out->l2_hits = atomic_load(&ks->l2_hits);
	out->km_fetches = atomic_load(&ks->km_fetches);
	out->misses = atomic_load(&ks->misses);
	out->negative_hits = atomic_load(&ks->negative_hits);
	out->km_errors = atomic_load(&ks->km_errors);
	out->l2_errors = atomic_load(&ks->l2_errors);
	out->hook_calls = atomic_load(&ks->hook_calls);
	out->hook_unlocked = atomic_load(&ks->hook_unlocked);
	out->hook_locked = atomic_load(&ks->hook_locked);
	out->invalidations = atomic_load(&ks->invalidations);
	out->lookups = atomic_load(&ks->lookups);
}
