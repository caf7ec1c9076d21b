/*
 * test_keystore.c - lookup order, negative caching, hook handling and
 * invalidation of the keystore facade, with named fakes for the KM, the
 * Redis L2, the hook, the signing store and the L1 clock
 * (keystore_new_backend).  Keys and certificates are real (EC P-256,
 * issued by a throw-away CA), so every check on them is real too.
 */
#include <pthread.h>
#include <stdint.h>
#include <syslog.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fixture.h"
#include "harness.h"
#include "conf.h"
#include "hook.h"
#include "keymodel.h"
#include "keymodel_cert.h"
#include "keystore.h"
#include "keystore_entry.h"
#include "kmip.h"
#include "log.h"
#include "pkcs8pw.h"
#include "secmem.h"

#define PW	"correct horse"

/* ---- a throw-away PKI ---- */

/*
 * mkcert - a certificate from the shared test CA for key: san (or NULL),
 * subject emailAddress (or NULL), validity from nb to na seconds from now,
 * extended key usage eku
 */
static X509 *
mkcert(EVP_PKEY *key, const char *san, const char *email, long nb, long na,
    const char *eku)
{
	struct fixture_cert spec = { .serial = 42, .cn = "user", .email = email,
	    .san = san, .ku = "keyAgreement", .eku = eku, .notbefore = nb,
	    .notafter = na };
	X509 *ca;
	EVP_PKEY *cakey;

	if (!fixture_ca(&ca, &cakey))
		return NULL;
	return fixture_cert(key, &spec, ca, cakey);
}

/* mkcert_ku - an S/MIME certificate for key (freed here) with keyUsage ku */
static X509 *
mkcert_ku(EVP_PKEY *key, const char *san, const char *ku)
{
	struct fixture_cert spec = { .serial = 43, .cn = "user", .san = san,
	    .ku = ku, .eku = "emailProtection" };
	X509 *ca, *x = NULL;
	EVP_PKEY *cakey;

	if (key != NULL && fixture_ca(&ca, &cakey))
		x = fixture_cert(key, &spec, ca, cakey);
	EVP_PKEY_free(key);
	return x;
}

/* dsa_key - a DSA-2048 key, or NULL */
static EVP_PKEY *
dsa_key(void)
{
	EVP_PKEY_CTX *pc, *kc = NULL;
	EVP_PKEY *params = NULL, *k = NULL;

	if ((pc = EVP_PKEY_CTX_new_from_name(NULL, "DSA", NULL)) != NULL &&
	    EVP_PKEY_paramgen_init(pc) > 0 &&
	    EVP_PKEY_CTX_set_dsa_paramgen_bits(pc, 2048) > 0 &&
	    EVP_PKEY_paramgen(pc, &params) > 0 &&
	    (kc = EVP_PKEY_CTX_new_from_pkey(NULL, params, NULL)) != NULL &&
	    EVP_PKEY_keygen_init(kc) > 0)
		EVP_PKEY_keygen(kc, &k);
	EVP_PKEY_CTX_free(pc);
	EVP_PKEY_CTX_free(kc);
	EVP_PKEY_free(params);
	return k;
}

/* ---- fake KM: a table of users ---- */

struct fake_gen {
	int		 generation;
	int		 state;
	EVP_PKEY	*key;
	X509		*cert;
	int		 enhanced;
};

struct fake_user {
	const char	*addr;
	struct fake_gen	 gens[3];
	int		 ngens;
	X509		*current;	/* what km_cert returns */
	uint32_t	 revcount;	/* what km_revcount returns */
};

static struct fake_user users[16];
static int nusers;

/* counters and switches of all the fakes */
struct fakes {
	int	 km_down;
	int	 km_refused;	/* the KM server says Permission Denied */
	int	 km_cert_calls, km_keys_calls, km_revc_calls;
	int	 l2_down;
	int	 l2_gets, l2_puts, l2_dels, l2_invalidates;
	int	 hook_calls, release_calls;
	enum hook_action hook_action, release_action;
	const char *hook_pw;
	int	 signer_calls;
	char	 sign_file_pw[64];	/* the signing key file: "" plain */
	int	 rewrap_calls;
	enum hook_key hook_key;		/* of the last unlock request */
	char	 hook_qid[32];
	int64_t	 now_ms;
};
static struct fakes F;

/* fake_user_add - a user with ngens generations (last one current) */
static struct fake_user *
fake_user_add(const char *addr, int ngens, int enhanced)
{
	struct fake_user *u = &users[nusers++];

	memset(u, 0, sizeof(*u));
	u->addr = addr;
	u->ngens = ngens;
	for (int i = 0; i < ngens; i++) {
		keymodel_keygen("ec-p256", &u->gens[i].key, NULL);
		u->gens[i].cert = mkcert(u->gens[i].key, addr, NULL, -60,
		    86400, "emailProtection");
		u->gens[i].generation = i + 1;
		u->gens[i].state = i == ngens - 1 ? KMIP_STATE_ACTIVE :
		    KMIP_STATE_DEACTIVATED;
		u->gens[i].enhanced = enhanced;
	}
	u->current = u->gens[ngens - 1].cert;
	return u;
}

/* fake_find - the user of addr */
static struct fake_user *
fake_find(const char *addr)
{
	/* the KM folds the whole address (keymodel_object_name) */
	for (int i = 0; i < nusers; i++)
		if (strcasecmp(users[i].addr, addr) == 0)
			return &users[i];
	return NULL;
}

/* fake_km_cert - KM certificate lookup over the table */
static enum km_status
fake_km_cert(void *arg, const char *addr, X509 **out, struct kmerr *err)
{
	struct fake_user *u;

	F.km_cert_calls++;
	if (F.km_down)
		return kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "fake KM down");
	if ((u = fake_find(addr)) == NULL || u->current == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no certificate for %s", addr);
	X509_up_ref(u->current);
	*out = u->current;
	return KM_OK;
}

/* fake_km_revcount - the user's revocation counter (0 if unknown) */
static enum km_status
fake_km_revcount(void *arg, const char *addr, uint32_t *count, struct kmerr *err)
{
	struct fake_user *u;

	F.km_revc_calls++;
	if (F.km_down)
		return kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "fake KM down");
	*count = (u = fake_find(addr)) != NULL ? u->revcount : 0;
	return KM_OK;
}

/* fake_km_keys - KM key lookup: PKCS#8 DER, encrypted when enhanced */
static enum km_status
fake_km_keys(void *arg, const char *addr, struct keymodel_gen **out,
    size_t *n, struct kmerr *err)
{
	struct fake_user *u;
	struct keymodel_gen *g;

	F.km_keys_calls++;
	if (F.km_down)
		return kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "fake KM down");
	if (F.km_refused)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED, "server A: "
		    "Locate: PERMISSION_DENIED: not yours");
	if ((u = fake_find(addr)) == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no keys for %s", addr);
	g = calloc(u->ngens, sizeof(*g));
	for (int i = 0; i < u->ngens; i++) {
		unsigned char *p8 = NULL, *w = NULL;
		size_t wl = 0;
		int l;
		PKCS8_PRIV_KEY_INFO *pi = EVP_PKEY2PKCS8(u->gens[i].key);

		l = i2d_PKCS8_PRIV_KEY_INFO(pi, &p8);
		PKCS8_PRIV_KEY_INFO_free(pi);
		g[i].generation = u->gens[i].generation;
		g[i].state = u->gens[i].state;
		X509_up_ref(u->gens[i].cert);
		g[i].cert = u->gens[i].cert;
		g[i].enhanced = u->gens[i].enhanced;
		if (g[i].enhanced) {
			pkcs8pw_wrap_der(p8, (size_t)l, PW, strlen(PW), 0, &w,
			    &wl, NULL);
			g[i].der = secmem_alloc(wl);
			memcpy(g[i].der, w, wl);
			g[i].derlen = wl;
			OPENSSL_free(w);
		} else {
			g[i].der = secmem_alloc((size_t)l);
			memcpy(g[i].der, p8, (size_t)l);
			g[i].derlen = (size_t)l;
			EVP_PKEY_up_ref(u->gens[i].key);
			g[i].key = u->gens[i].key;
		}
		OPENSSL_clear_free(p8, (size_t)l);
	}
	*out = g;
	*n = (size_t)u->ngens;
	return KM_OK;
}

/* fake_km_gens_free - free what fake_km_keys made */
static void
fake_km_gens_free(void *arg, struct keymodel_gen *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		X509_free(g[i].cert);
		EVP_PKEY_free(g[i].key);
		secmem_free(g[i].der, g[i].derlen);
	}
	free(g);
}

/* ---- fake L2: an in-memory map, no expiry ---- */

struct fake_entry {
	char		 kind[32];
	char		 addr[256];
	unsigned char	*buf;
	size_t		 len;
	int		 negative;
	int		 ttl;
};
static struct fake_entry l2[64];
static pthread_mutex_t l2_mtx = PTHREAD_MUTEX_INITIALIZER;

/* fake_l2_find - the entry of (kind, addr), or NULL */
static struct fake_entry *
fake_l2_find(const char *kind, const char *addr)
{
	for (int i = 0; i < 64; i++)
		if (l2[i].kind[0] && strcmp(l2[i].kind, kind) == 0 &&
		    strcmp(l2[i].addr, addr) == 0)
			return &l2[i];
	return NULL;
}

/* fake_l2_drop - delete one entry */
static void
fake_l2_drop(struct fake_entry *e)
{
	if (e == NULL)
		return;
	free(e->buf);
	memset(e, 0, sizeof(*e));
}

/* fake_l2_get - Redis GET in memory */
static enum km_status
fake_l2_get(void *arg, const char *kind, const char *addr,
    unsigned char **buf, size_t *len, int *negative)
{
	struct fake_entry *e;
	enum km_status st = KM_PERMFAIL;

	*buf = NULL;
	*len = 0;
	*negative = 0;
	pthread_mutex_lock(&l2_mtx);
	F.l2_gets++;
	if (F.l2_down)
		st = KM_TEMPFAIL;
	else if ((e = fake_l2_find(kind, addr)) != NULL) {
		*negative = e->negative;
		if (!e->negative) {
			*buf = secmem_alloc(e->len ? e->len : 1);
			memcpy(*buf, e->buf, e->len);
			*len = e->len;
		}
		st = KM_OK;
	}
	pthread_mutex_unlock(&l2_mtx);
	return st;
}

/* fake_l2_store - Redis SET EX in memory */
static enum km_status
fake_l2_store(const char *kind, const char *addr, const unsigned char *buf,
    size_t len, int negative, int ttl)
{
	struct fake_entry *e;
	enum km_status st = KM_OK;

	pthread_mutex_lock(&l2_mtx);
	F.l2_puts++;
	if (F.l2_down) {
		st = KM_TEMPFAIL;
		goto out;
	}
	if ((e = fake_l2_find(kind, addr)) == NULL)
		for (int i = 0; i < 64 && e == NULL; i++)
			if (!l2[i].kind[0])
				e = &l2[i];
	if (e == NULL) {
		st = KM_NOMEM;
		goto out;
	}
	fake_l2_drop(e);
	snprintf(e->kind, sizeof(e->kind), "%s", kind);
	snprintf(e->addr, sizeof(e->addr), "%s", addr);
	e->negative = negative;
	e->ttl = ttl;
	if (buf) {
		e->buf = malloc(len ? len : 1);
		memcpy(e->buf, buf, len);
		e->len = len;
	}
out:
	pthread_mutex_unlock(&l2_mtx);
	return st;
}

/* fake_l2_put - positive entry */
static enum km_status
fake_l2_put(void *arg, const char *kind, const char *addr,
    const unsigned char *buf, size_t len, int ttl)
{
	return fake_l2_store(kind, addr, buf, len, 0, ttl);
}

/* fake_l2_negative - is (kind, addr) a negative keystore entry? */
static int
fake_l2_negative(const char *kind, const char *addr)
{
	struct fake_entry *e = fake_l2_find(kind, addr);
	const unsigned char *b;
	size_t bl;
	uint32_t n;
	int neg = 0;

	return e != NULL && keystore_env_unwrap(e->buf, e->len, &n, &neg, &b,
	    &bl, NULL) == KM_OK && neg;
}

/* fake_l2_del - DEL */
static enum km_status
fake_l2_del(void *arg, const char *kind, const char *addr)
{
	pthread_mutex_lock(&l2_mtx);
	F.l2_dels++;
	fake_l2_drop(fake_l2_find(kind, addr));
	pthread_mutex_unlock(&l2_mtx);
	return KM_OK;
}

/* fake_l2_invalidate - delete every kind of addr */
static enum km_status
fake_l2_invalidate(void *arg, const char *addr)
{
	pthread_mutex_lock(&l2_mtx);
	F.l2_invalidates++;
	for (int i = 0; i < 64; i++)
		if (l2[i].kind[0] && strcmp(l2[i].addr, addr) == 0)
			fake_l2_drop(&l2[i]);
	pthread_mutex_unlock(&l2_mtx);
	return KM_OK;
}

/* fake_l2_count - entries in the fake L2 */
static int
fake_l2_count(void)
{
	int n = 0;

	for (int i = 0; i < 64; i++)
		n += l2[i].kind[0] != 0;
	return n;
}

/* ---- fake hook, signer, clock ---- */

/* fake_hook_ask - answers what F says */
static enum km_status
fake_hook_ask(void *arg, const struct hook_request *rq,
    struct hook_answer *a, struct kmerr *err)
{
	if (rq->event == HOOK_EVENT_RELEASE) {
		F.release_calls++;
		a->action = F.release_action;
		return KM_OK;
	}
	F.hook_calls++;
	F.hook_key = rq->key;
	snprintf(F.hook_qid, sizeof(F.hook_qid), "%s",
	    rq->queue_id != NULL ? rq->queue_id : "");
	a->action = F.hook_action;
	if (a->action == HOOK_ACTION_PASSWORD) {
		a->password = secmem_strdup(F.hook_pw);
		a->password_len = strlen(F.hook_pw);
	}
	if (a->action == HOOK_ACTION_KEEP_ENCRYPTED)
		snprintf(a->reason, sizeof(a->reason), "user decrypts");
	return KM_OK;
}

static EVP_PKEY *sign_key;
static X509 *sign_cert;

/* fake_signer - the signing store knows alice (escrow default) and sam
 * (escrow enhanced); the key file is protected by F.sign_file_pw unless
 * that is "" */
static enum km_status
fake_signer(void *arg, const char *addr, X509 **cert, EVP_PKEY **key,
    unsigned char **enc, size_t *enclen, STACK_OF(X509) **chain,
    struct kmerr *err)
{
	X509 *ca;
	EVP_PKEY *cakey;
	unsigned char *w = NULL;
	size_t wl = 0;

	F.signer_calls++;
	if (strcmp(addr, "alice@example.org") != 0 &&
	    strcmp(addr, "sam@example.org") != 0)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no signing key for %s here", addr);
	if (sign_key == NULL) {
		keymodel_keygen("ec-p256", &sign_key, NULL);
		sign_cert = mkcert(sign_key, addr, NULL, -60, 86400,
		    "emailProtection");
	}
	X509_up_ref(sign_cert);
	*cert = sign_cert;
	if (F.sign_file_pw[0] != '\0') {
		pkcs8pw_wrap(sign_key, F.sign_file_pw, strlen(F.sign_file_pw),
		    0, &w, &wl, NULL);
		*enc = malloc(wl);
		memcpy(*enc, w, wl);
		*enclen = wl;
		OPENSSL_free(w);
	} else {
		EVP_PKEY_up_ref(sign_key);
		*key = sign_key;
	}
	*chain = sk_X509_new_null();
	fixture_ca(&ca, &cakey);
	X509_up_ref(ca);
	sk_X509_push(*chain, ca);
	return KM_OK;
}

/* fake_signer_rewrap - the key file at another level: F.sign_file_pw */
static enum km_status
fake_signer_rewrap(void *arg, const char *addr, const char *oldpw,
    size_t oldlen, const char *newpw, size_t newlen, struct kmerr *err)
{
	F.rewrap_calls++;
	if (F.sign_file_pw[0] != '\0' && (oldpw == NULL ||
	    strlen(F.sign_file_pw) != oldlen ||
	    memcmp(F.sign_file_pw, oldpw, oldlen) != 0))
		return kmerr_set(err, KM_PERMFAIL, KMERR_BADPASSWORD,
		    "protected by another password");
	snprintf(F.sign_file_pw, sizeof(F.sign_file_pw), "%.*s",
	    (int)newlen, newpw != NULL ? newpw : "");
	return KM_OK;
}

/* fake_clock - the L1 clock, moved by the tests */
static int64_t
fake_clock(void *arg)
{
	return F.now_ms;
}

/* ---- set-up ---- */

static struct kmilter_conf conf;
static char seal_path[] = "/tmp/test_keystore.XXXXXX";

/* reset - empty fakes and a default configuration */
static void
reset(void)
{
	for (int i = 0; i < 64; i++)
		fake_l2_drop(&l2[i]);
	memset(&F, 0, sizeof(F));
	for (int i = 0; i < nusers; i++)
		users[i].revcount = 0;
	F.now_ms = 1000000;
	F.hook_action = HOOK_ACTION_PASSWORD;
	F.hook_pw = PW;
	F.release_action = HOOK_ACTION_ALLOW;
	memset(&conf, 0, sizeof(conf));
	conf.state_dir = (char *)"/nonexistent";
	conf.seal_key_file = (char *)"/nonexistent/seal.key";
	conf.memory_entries = 100;
	conf.memory_ttl = 60;
	conf.cert_ttl = 3600;
	conf.key_ttl = 600;
	conf.negative_ttl = 30;
	conf.hook_unlocked_key_ttl = 300;
	(void)seal_path;
}

/* mk - a keystore over every fake (km/l2 may be left out) */
static struct keystore *
mk(int with_km, int with_l2)
{
	struct keystore_backend be;
	struct kmerr err;
	struct keystore *ks;

	memset(&be, 0, sizeof(be));
	if (with_km) {
		be.km_cert = fake_km_cert;
		be.km_keys = fake_km_keys;
		be.km_gens_free = fake_km_gens_free;
		be.km_revcount = fake_km_revcount;
	}
	if (with_l2) {
		be.l2_get = fake_l2_get;
		be.l2_put = fake_l2_put;
		be.l2_del = fake_l2_del;
		be.l2_invalidate = fake_l2_invalidate;
	}
	be.hook_ask = fake_hook_ask;
	be.signer = fake_signer;
	be.signer_rewrap = fake_signer_rewrap;
	be.clock_ms = fake_clock;
	ks = keystore_new_backend(&conf, &be, &err);
	if (ks == NULL)
		printf("    keystore_new_backend: %s\n", err.msg);
	return ks;
}

/* setup_users - the users every test may use */
static void
setup_users(void)
{
	struct fake_user *u;
	EVP_PKEY *k;

	if (nusers > 0)
		return;
	fake_user_add("alice@example.org", 2, 0);
	fake_user_add("bob@example.org", 1, 1);
	fake_user_add("sam@example.org", 1, 1);	/* a signing key here */
	/* KM returns a certificate naming someone else */
	u = fake_user_add("carol@example.org", 1, 0);
	keymodel_keygen("ec-p256", &k, NULL);
	u->current = mkcert(k, "mallory@example.org", NULL, -60, 86400,
	    "emailProtection");
	/* expired */
	u = fake_user_add("dave@example.org", 1, 0);
	u->current = mkcert(k, "dave@example.org", NULL, -86400, -60,
	    "emailProtection");
	/* not valid before tomorrow */
	u = fake_user_add("jill@example.org", 1, 0);
	u->current = mkcert(k, "jill@example.org", NULL, 86400, 2 * 86400,
	    "emailProtection");
	/* TLS server certificate, not for e-mail */
	u = fake_user_add("erin@example.org", 1, 0);
	u->current = mkcert(k, "erin@example.org", NULL, -60, 86400,
	    "serverAuth");
	/* address only in the subject emailAddress */
	u = fake_user_add("frank@example.org", 1, 0);
	u->current = mkcert(k, NULL, "frank@EXAMPLE.ORG", -60, 86400,
	    "emailProtection");
	/* a DSA key whose certificate claims keyEncipherment */
	u = fake_user_add("hank@example.org", 1, 0);
	u->current = mkcert_ku(dsa_key(), "hank@example.org",
	    "digitalSignature,keyEncipherment");
	/* RSA, signing only */
	u = fake_user_add("ivy@example.org", 1, 0);
	u->current = mkcert_ku(EVP_RSA_gen(2048), "ivy@example.org",
	    "digitalSignature");
	/* an outside correspondent without a certificate (for now) */
	u = fake_user_add("gina@example.org", 1, 0);
	u->current = NULL;
	EVP_PKEY_free(k);
}

/* ---- tests ---- */

TEST(cert_miss_l2_l1_order)
{
	struct keystore *ks;
	struct keystore_stats s;
	X509 *c = NULL;
	struct kmerr err;

	reset();
	setup_users();
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(keystore_get_cert(ks, "alice@example.org", &c, &err), KM_OK);
	CHECK(X509_cmp(c, fake_find("alice@example.org")->current) == 0);
	X509_free(c);
	CHECK_EQ_INT(F.km_cert_calls, 1);
	CHECK(fake_l2_find("cert", "alice@example.org") != NULL);
	CHECK_EQ_INT(fake_l2_find("cert", "alice@example.org")->ttl, 3600);
	/* L1 hit: neither L2 nor KM asked */
	F.l2_gets = 0;
	CHECK_EQ_INT(keystore_get_cert(ks, "alice@example.org", &c, &err), KM_OK);
	X509_free(c);
	CHECK_EQ_INT(F.l2_gets, 0);
	CHECK_EQ_INT(F.km_cert_calls, 1);
	/* L1 expired: L2 hit */
	F.now_ms += 61 * 1000;
	CHECK_EQ_INT(keystore_get_cert(ks, "alice@example.org", &c, &err), KM_OK);
	X509_free(c);
	CHECK_EQ_INT(F.l2_gets, 1);
	CHECK_EQ_INT(F.km_cert_calls, 1);
	keystore_stats(ks, &s);
	CHECK_EQ_INT(s.km_fetches, 1);
	CHECK_EQ_INT(s.l1_hits, 1);
	CHECK_EQ_INT(s.l2_hits, 1);
	CHECK_EQ_INT(s.lookups, 3);
	keystore_free(ks);
}

TEST(cert_negative_cached)
{
	struct keystore *ks;
	struct keystore_stats s;
	X509 *c = NULL;
	struct kmerr err;

	reset();
	setup_users();
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(keystore_get_cert(ks, "nobody@example.org", &c, &err), KM_PERMFAIL);
	CHECK(c == NULL);
	CHECK(strstr(err.msg, "no certificate") != NULL);
	CHECK(fake_l2_negative("cert", "nobody@example.org"));
	CHECK_EQ_INT(fake_l2_find("cert", "nobody@example.org")->ttl, 30);
	CHECK_EQ_INT(keystore_get_cert(ks, "nobody@example.org", &c, &err), KM_PERMFAIL);
	CHECK(kmerr_is(&err, KMERR_NOTFOUND));		/* L1 negative */
	CHECK_EQ_INT(F.km_cert_calls, 1);
	/* L1 negative holds min(memory_ttl, negative_ttl) = 30 s */
	F.now_ms += 31 * 1000;
	F.l2_gets = 0;
	CHECK_EQ_INT(keystore_get_cert(ks, "nobody@example.org", &c, &err), KM_PERMFAIL);
	CHECK_EQ_INT(F.l2_gets, 1);
	CHECK(kmerr_is(&err, KMERR_NOTFOUND));		/* L2 negative */
	CHECK_EQ_INT(F.km_cert_calls, 1);
	keystore_stats(ks, &s);
	CHECK_EQ_INT(s.misses, 1);
	CHECK_EQ_INT(s.negative_hits, 2);
	keystore_free(ks);
}

TEST(km_down_tempfail_then_recovers)
{
	struct keystore *ks;
	struct keystore_stats s;
	X509 *c = NULL;
	struct kmerr err;

	reset();
	setup_users();
	CHECK((ks = mk(1, 1)) != NULL);
	F.km_down = 1;
	CHECK_EQ_INT(keystore_get_cert(ks, "alice@example.org", &c, &err), KM_TEMPFAIL);
	CHECK(fake_l2_count() == 0);	/* a failure is not cached */
	F.km_down = 0;
	CHECK_EQ_INT(keystore_get_cert(ks, "alice@example.org", &c, &err), KM_OK);
	X509_free(c);
	/* L1 and the revocation counter expired, KM down: the L2 entry
	 * cannot be checked against a revocation, so it is not used (and
	 * not deleted either) */
	F.km_down = 1;
	F.now_ms += 61 * 1000;
	CHECK_EQ_INT(keystore_get_cert(ks, "alice@example.org", &c, &err), KM_TEMPFAIL);
	CHECK(c == NULL);
	CHECK(fake_l2_find("cert", "alice@example.org") != NULL);
	keystore_stats(ks, &s);
	CHECK_EQ_INT(s.km_errors, 2);
	CHECK_EQ_INT(s.l2_hits, 0);
	keystore_free(ks);
}

TEST(km_down_l2_used_while_counter_known)
{
	struct keystore *ks;
	struct keystore_stats s;
	struct keystore_key *k = NULL;
	size_t n = 0;
	struct kmerr err;

	reset();
	setup_users();
	conf.memory_entries = 0;	/* no L1: every lookup goes to L2 */
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q1", &k, &n,
	    &err), KM_OK);
	keystore_keys_free(k, n);
	/* KM down, counter still in memory: L2 answers, checked */
	F.km_down = 1;
	F.now_ms += 30 * 1000;
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q2", &k, &n,
	    &err), KM_OK);
	CHECK_EQ_INT(n, 2);
	keystore_keys_free(k, n);
	/* the counter expired with memory_ttl: tempfail, like a KM outage */
	F.now_ms += 31 * 1000;
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q3", &k, &n,
	    &err), KM_TEMPFAIL);
	CHECK(fake_l2_find("enckey", "alice@example.org") != NULL);
	keystore_stats(ks, &s);
	CHECK_EQ_INT(s.l2_hits, 1);
	CHECK_EQ_INT(s.revc_fetches, 2);
	CHECK_EQ_INT(F.km_revc_calls, 2);
	keystore_free(ks);
}

/* l2_save - a copy of the fake L2 entry (kind, addr) */
static struct fake_entry
l2_save(const char *kind, const char *addr)
{
	struct fake_entry e, *f = fake_l2_find(kind, addr);

	memset(&e, 0, sizeof(e));
	if (f != NULL) {
		e = *f;
		e.buf = malloc(f->len ? f->len : 1);
		memcpy(e.buf, f->buf, f->len);
	}
	return e;
}

/* l2_restore - write a saved entry back under its name (RESTORE) */
static void
l2_restore(struct fake_entry *e)
{
	fake_l2_store(e->kind, e->addr, e->buf, e->len, e->negative, e->ttl);
	free(e->buf);
	e->buf = NULL;
}

TEST(replayed_entries_after_revocation_refused)
{
	struct keystore *ks;
	struct keystore_stats s;
	struct keystore_key *k = NULL;
	struct fake_user *u;
	struct fake_entry ce, ke, ne;
	size_t n = 0;
	X509 *c = NULL;
	struct kmerr err;

	reset();
	setup_users();
	u = fake_find("alice@example.org");
	CHECK((ks = mk(1, 1)) != NULL);
	/* warm L2, save alice's entries and a negative one */
	CHECK_EQ_INT(keystore_get_cert(ks, "alice@example.org", &c, &err), KM_OK);
	X509_free(c);
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q1", &k, &n,
	    &err), KM_OK);
	keystore_keys_free(k, n);
	CHECK_EQ_INT(keystore_get_cert(ks, "gina@example.org", &c, &err), KM_PERMFAIL);
	ce = l2_save("cert", "alice@example.org");
	ke = l2_save("enckey", "alice@example.org");
	ne = l2_save("cert", "gina@example.org");
	CHECK(ce.buf != NULL && ke.buf != NULL && ne.buf != NULL);
	/* kmctl revoke: the KM's counter goes up, caches invalidated */
	u->revcount = 4;
	u->current = NULL;
	keystore_invalidate(ks, "alice@example.org");
	/* gina: a certificate imported, revoked, imported again */
	fake_find("gina@example.org")->revcount = 2;
	fake_find("gina@example.org")->current =
	    fake_find("gina@example.org")->gens[0].cert;
	keystore_invalidate(ks, "gina@example.org");
	CHECK(fake_l2_find("cert", "alice@example.org") == NULL);
	/* the attacker writes the saved entries back */
	l2_restore(&ce);
	l2_restore(&ke);
	l2_restore(&ne);
	F.km_cert_calls = F.km_keys_calls = 0;
	/* refused: the KM is asked, and has no certificate any more */
	CHECK_EQ_INT(keystore_get_cert(ks, "alice@example.org", &c, &err), KM_PERMFAIL);
	CHECK(c == NULL);
	CHECK_EQ_INT(F.km_cert_calls, 1);
	CHECK(fake_l2_negative("cert", "alice@example.org"));
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q2", &k, &n,
	    &err), KM_OK);
	keystore_keys_free(k, n);
	CHECK_EQ_INT(F.km_keys_calls, 1);
	/* a negative entry from before is refused as well: it would hide
	 * the certificate imported since */
	CHECK_EQ_INT(keystore_get_cert(ks, "gina@example.org", &c, &err), KM_OK);
	X509_free(c);
	CHECK_EQ_INT(F.km_cert_calls, 2);
	fake_find("gina@example.org")->current = NULL;
	u->current = u->gens[u->ngens - 1].cert;
	keystore_stats(ks, &s);
	CHECK_EQ_INT(s.l2_stale, 3);
	keystore_free(ks);
}

TEST(outdated_counter_in_memory_rechecked)
{
	struct keystore *ks;
	struct keystore_stats s;
	struct keystore_key *k = NULL;
	struct fake_user *u;
	size_t n = 0;
	struct kmerr err;

	reset();
	setup_users();
	u = fake_find("alice@example.org");
	conf.memory_entries = 0;
	CHECK((ks = mk(1, 1)) != NULL);
	/* this gateway holds counter 0 in memory ... */
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q1", &k, &n,
	    &err), KM_OK);
	keystore_keys_free(k, n);
	/* ... when another gateway writes an entry with counter 1 (it
	 * saw a revocation whose message has not reached us yet) */
	u->revcount = 1;
	fake_l2_drop(fake_l2_find("enckey", "alice@example.org"));
	{
		struct keystore *other = mk(1, 1);

		CHECK(other != NULL);
		CHECK_EQ_INT(keystore_get_keys(other, "alice@example.org",
		    "Q2", &k, &n, &err), KM_OK);
		keystore_keys_free(k, n);
		keystore_free(other);
	}
	F.km_keys_calls = 0;
	/* our counter is re-read once, the entry is current: used */
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q3", &k, &n,
	    &err), KM_OK);
	keystore_keys_free(k, n);
	CHECK_EQ_INT(F.km_keys_calls, 0);
	keystore_stats(ks, &s);
	CHECK_EQ_INT(s.l2_stale, 0);
	CHECK_EQ_INT(s.l2_hits, 1);
	keystore_free(ks);
}

TEST(old_format_entries_are_a_miss)
{
	struct keystore *ks;
	struct keystore_stats s;
	struct keystore_key *k = NULL;
	size_t n = 0;
	X509 *c = NULL;
	struct kmerr err;
	static const unsigned char der[] = "KSG1\0\0\0\0";

	reset();
	setup_users();
	CHECK((ks = mk(1, 1)) != NULL);
	/* entries written before the envelope: a bare key set, a bare
	 * negative entry */
	fake_l2_store("enckey", "alice@example.org", der, sizeof(der) - 1, 0,
	    600);
	fake_l2_store("cert", "alice@example.org", NULL, 0, 1, 60);
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q1", &k, &n,
	    &err), KM_OK);
	CHECK_EQ_INT(n, 2);
	keystore_keys_free(k, n);
	CHECK_EQ_INT(keystore_get_cert(ks, "alice@example.org", &c, &err), KM_OK);
	X509_free(c);
	CHECK_EQ_INT(F.km_keys_calls, 1);
	CHECK_EQ_INT(F.km_cert_calls, 1);
	/* rewritten in the new format */
	CHECK(fake_l2_find("cert", "alice@example.org")->len >
	    KEYSTORE_ENV_LEN);
	CHECK(memcmp(fake_l2_find("enckey", "alice@example.org")->buf,
	    KEYSTORE_ENV_MAGIC, 4) == 0);
	keystore_stats(ks, &s);
	CHECK_EQ_INT(s.l2_hits, 0);
	keystore_free(ks);
}

TEST(envelope_strict)
{
	unsigned char *w = NULL;
	const unsigned char *b;
	size_t wl = 0, bl;
	uint32_t n;
	int neg;
	static const unsigned char body[] = "payload";

	CHECK_EQ_INT(keystore_env_wrap(0x01020304, 0, body, 7, &w, &wl),
	    KM_OK);
	CHECK_EQ_INT(wl, KEYSTORE_ENV_LEN + 7);
	CHECK_EQ_INT(keystore_env_unwrap(w, wl, &n, &neg, &b, &bl, NULL),
	    KM_OK);
	CHECK(n == 0x01020304 && neg == 0 && bl == 7 &&
	    memcmp(b, body, 7) == 0);
	/* every truncation into the header fails */
	for (size_t i = 0; i < KEYSTORE_ENV_LEN; i++)
		CHECK_EQ_INT(keystore_env_unwrap(w, i, &n, &neg, &b, &bl,
		    NULL), KM_PROTO);
	/* bad magic (an old KSG1 set), unknown flags */
	w[0] = 'X';
	CHECK_EQ_INT(keystore_env_unwrap(w, wl, &n, &neg, &b, &bl, NULL),
	    KM_PROTO);
	w[0] = 'K';
	w[8] = 0x02;
	CHECK_EQ_INT(keystore_env_unwrap(w, wl, &n, &neg, &b, &bl, NULL),
	    KM_PROTO);
	/* a negative entry has no body */
	w[8] = KEYSTORE_ENV_NEGATIVE;
	CHECK_EQ_INT(keystore_env_unwrap(w, wl, &n, &neg, &b, &bl, NULL),
	    KM_PROTO);
	secmem_free(w, wl);
	CHECK_EQ_INT(keystore_env_wrap(7, 1, NULL, 0, &w, &wl), KM_OK);
	CHECK_EQ_INT(keystore_env_unwrap(w, wl, &n, &neg, &b, &bl, NULL),
	    KM_OK);
	CHECK(n == 7 && neg == 1 && bl == 0);
	secmem_free(w, wl);
}

TEST(l2_down_goes_to_km)
{
	struct keystore *ks;
	struct keystore_stats s;
	struct keystore_key *k = NULL;
	size_t n = 0;
	X509 *c = NULL;
	struct kmerr err;

	reset();
	setup_users();
	F.l2_down = 1;
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(keystore_get_cert(ks, "alice@example.org", &c, &err), KM_OK);
	X509_free(c);
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q1", &k, &n,
	    &err), KM_OK);
	CHECK_EQ_INT(n, 2);
	keystore_keys_free(k, n);
	keystore_stats(ks, &s);
	CHECK_EQ_INT(s.l2_errors, 2);
	CHECK_EQ_INT(s.km_fetches, 2);
	keystore_free(ks);
}

TEST(no_km_configured)
{
	struct keystore *ks;
	struct keystore_key *k = NULL;
	size_t n = 0;
	X509 *c = NULL;
	struct kmerr err;

	reset();
	setup_users();
	CHECK((ks = mk(0, 0)) != NULL);
	CHECK_EQ_INT(keystore_get_cert(ks, "alice@example.org", &c, &err), KM_PERMFAIL);
	CHECK_EQ_STR(err.msg, "no KM configured");
	CHECK(!kmerr_is(&err, KMERR_NOTFOUND));
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", NULL, &k, &n,
	    &err), KM_PERMFAIL);
	CHECK_EQ_STR(err.msg, "no KM configured");
	keystore_free(ks);
}

TEST(cert_checks)
{
	struct keystore *ks;
	X509 *c = NULL;
	struct kmerr err;

	reset();
	setup_users();
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(keystore_get_cert(ks, "carol@example.org", &c, &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "does not name") != NULL);
	/* cached, but still checked on the L1 hit */
	CHECK_EQ_INT(keystore_get_cert(ks, "carol@example.org", &c, &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "does not name") != NULL);
	CHECK_EQ_INT(keystore_get_cert(ks, "dave@example.org", &c, &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "expired") != NULL);
	/* the L1 hit keeps the fixed checks' answer but checks the time
	 * again: a certificate that passes the fixed checks and is not yet
	 * valid is refused on the hit too */
	CHECK_EQ_INT(keystore_get_cert(ks, "dave@example.org", &c, &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "expired") != NULL);
	CHECK_EQ_INT(keystore_get_cert(ks, "jill@example.org", &c, &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "not yet valid") != NULL);
	CHECK_EQ_INT(keystore_get_cert(ks, "jill@example.org", &c, &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "not yet valid") != NULL);
	CHECK(c == NULL);
	CHECK_EQ_INT(keystore_get_cert(ks, "erin@example.org", &c, &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "emailProtection") != NULL);
	CHECK_EQ_INT(keystore_get_cert(ks, "erin@example.org", &c, &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "emailProtection") != NULL);
	/* subject emailAddress, domain compared case-insensitively */
	CHECK_EQ_INT(keystore_get_cert(ks, "frank@Example.Org", &c, &err), KM_OK);
	X509_free(c);
	CHECK(c != NULL);
	/* the local part too, as mail clients match certificates (issue
	 * 15: Bob@ against a certificate for bob@ went out unencrypted) */
	CHECK_EQ_INT(keystore_get_cert(ks, "Frank@example.org", &c, &err), KM_OK);
	X509_free(c);
	CHECK_EQ_INT(keystore_get_cert(ks, "ALICE@example.org", &c, &err), KM_OK);
	X509_free(c);
	/* a DSA certificate claiming keyEncipherment: no usable
	 * certificate (PERMFAIL), never a temporary failure */
	CHECK_EQ_INT(keystore_get_cert(ks, "hank@example.org", &c, &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "cannot encrypt") != NULL);
	CHECK(strstr(err.msg, "DSA") != NULL);
	/* an RSA certificate whose keyUsage forbids encryption */
	CHECK_EQ_INT(keystore_get_cert(ks, "ivy@example.org", &c, &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "lacks keyEncipherment") != NULL);
	keystore_free(ks);
}

TEST(malformed_address)
{
	struct keystore *ks;
	struct keystore_key *k = NULL;
	size_t n = 0;
	X509 *c = NULL;
	EVP_PKEY *pk = NULL;
	STACK_OF(X509) *ch = NULL;
	struct kmerr err;
	char big[600];

	reset();
	CHECK((ks = mk(1, 1)) != NULL);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK_EQ_INT(keystore_get_cert(ks, NULL, &c, &err),
	    KM_PROTO);
	CHECK_EQ_INT(keystore_get_cert(ks, "no-at-sign", &c, &err), KM_PROTO);
	CHECK_EQ_INT(keystore_get_cert(ks, "a@b@c", &c, &err),
	    KM_PROTO);
	CHECK_EQ_INT(keystore_get_cert(ks, big, &c, &err),
	    KM_PROTO);
	CHECK_EQ_INT(keystore_get_keys(ks, "x y@example.org", NULL, &k, &n,
	    &err), KM_PROTO);
	CHECK_EQ_INT(keystore_get_signer(ks, "\n@example.org", NULL, &c, &pk, &ch,
	    &err), KM_PROTO);
	CHECK_EQ_INT(F.km_cert_calls + F.km_keys_calls + F.l2_gets, 0);
	keystore_invalidate(ks, "garbage");	/* logged, no crash */
	keystore_free(ks);
}

TEST(keys_plain_order_and_cache)
{
	struct keystore *ks;
	struct keystore_key *k = NULL;
	size_t n = 0;
	struct kmerr err;

	reset();
	setup_users();
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q1", &k, &n,
	    &err), KM_OK);
	CHECK_EQ_INT(n, 2);
	CHECK_EQ_INT(k[0].generation, 2);
	CHECK_EQ_INT(k[0].current, 1);
	CHECK_EQ_INT(k[1].generation, 1);
	CHECK_EQ_INT(k[1].current, 0);
	CHECK(X509_check_private_key(k[0].cert, k[0].key) == 1);
	CHECK(X509_check_private_key(k[1].cert, k[1].key) == 1);
	CHECK(EVP_PKEY_eq(k[0].key, fake_find("alice@example.org")->
	    gens[1].key) == 1);
	keystore_keys_free(k, n);
	CHECK(fake_l2_find("enckey", "alice@example.org") != NULL);
	CHECK_EQ_INT(fake_l2_find("enckey", "alice@example.org")->ttl, 600);
	/* L1 then L2 */
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q2", &k, &n,
	    &err), KM_OK);
	keystore_keys_free(k, n);
	F.now_ms += 61 * 1000;
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q3", &k, &n,
	    &err), KM_OK);
	CHECK_EQ_INT(n, 2);
	CHECK(X509_check_private_key(k[0].cert, k[0].key) == 1);
	keystore_keys_free(k, n);
	CHECK_EQ_INT(F.km_keys_calls, 1);
	/* unknown user: negative-cached */
	CHECK_EQ_INT(keystore_get_keys(ks, "nobody@example.org", "Q4", &k, &n,
	    &err), KM_PERMFAIL);
	CHECK_EQ_INT(keystore_get_keys(ks, "nobody@example.org", "Q5", &k, &n,
	    &err), KM_PERMFAIL);
	CHECK_EQ_INT(F.km_keys_calls, 2);
	CHECK(fake_l2_negative("enckey", "nobody@example.org"));
	keystore_free(ks);
}

TEST(keys_bad_l2_entry_refetched)
{
	struct keystore *ks;
	struct keystore_key *k = NULL;
	size_t n = 0;
	struct kmerr err;
	static const unsigned char junk[] = "KSG1\0\0\0\1garbage";
	unsigned char *w = NULL;
	size_t wl = 0;

	reset();
	setup_users();
	CHECK((ks = mk(1, 1)) != NULL);
	/* a current envelope around a bad key set */
	CHECK_EQ_INT(keystore_env_wrap(0, 0, junk, sizeof(junk), &w, &wl),
	    KM_OK);
	fake_l2_put(NULL, "enckey", "alice@example.org", w, wl, 600);
	secmem_free(w, wl);
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q1", &k, &n,
	    &err), KM_OK);
	CHECK_EQ_INT(n, 2);
	keystore_keys_free(k, n);
	CHECK_EQ_INT(F.km_keys_calls, 1);
	CHECK(fake_l2_find("enckey", "alice@example.org")->len >
	    sizeof(junk));
	keystore_free(ks);
}

TEST(enhanced_password_unlocks_and_is_cached)
{
	struct keystore *ks;
	struct keystore_stats s;
	struct keystore_key *k = NULL;
	size_t n = 0;
	struct kmerr err;
	struct fake_entry *e;

	reset();
	setup_users();
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(keystore_get_keys(ks, "bob@example.org", "Q1", &k, &n,
	    &err), KM_OK);
	CHECK_EQ_INT(n, 1);
	CHECK(EVP_PKEY_eq(k[0].key, fake_find("bob@example.org")->
	    gens[0].key) == 1);
	keystore_keys_free(k, n);
	CHECK_EQ_INT(F.hook_calls, 1);
	/* L2 holds the key still encrypted, and the unlocked one apart */
	e = fake_l2_find("enckey", "bob@example.org");
	CHECK(e != NULL);
	CHECK((e = fake_l2_find("enckey-unl", "bob@example.org")) != NULL);
	CHECK_EQ_INT(e->ttl, 300);
	/* L1, then the unlocked L2 entry: the hook is not asked again */
	CHECK_EQ_INT(keystore_get_keys(ks, "bob@example.org", "Q2", &k, &n,
	    &err), KM_OK);
	keystore_keys_free(k, n);
	F.now_ms += 61 * 1000;
	CHECK_EQ_INT(keystore_get_keys(ks, "bob@example.org", "Q3", &k, &n,
	    &err), KM_OK);
	CHECK_EQ_INT(n, 1);
	CHECK(X509_check_private_key(k[0].cert, k[0].key) == 1);
	keystore_keys_free(k, n);
	CHECK_EQ_INT(F.hook_calls, 1);
	CHECK_EQ_INT(F.km_keys_calls, 1);
	/* the unlocked entry gone (expired): the hook is asked again */
	fake_l2_del(NULL, "enckey-unl", "bob@example.org");
	F.now_ms += 61 * 1000;
	CHECK_EQ_INT(keystore_get_keys(ks, "bob@example.org", "Q4", &k, &n,
	    &err), KM_OK);
	keystore_keys_free(k, n);
	CHECK_EQ_INT(F.hook_calls, 2);
	keystore_stats(ks, &s);
	CHECK_EQ_INT(s.hook_calls, 2);
	CHECK_EQ_INT(s.hook_unlocked, 2);
	keystore_free(ks);
}

TEST(enhanced_keep_encrypted_is_locked)
{
	struct keystore *ks;
	struct keystore_key *k = NULL;
	size_t n = 0;
	struct kmerr err;

	reset();
	setup_users();
	F.hook_action = HOOK_ACTION_KEEP_ENCRYPTED;
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(keystore_get_keys(ks, "bob@example.org", "Q1", &k, &n,
	    &err), KM_PERMFAIL);
	CHECK(k == NULL && n == 0);
	CHECK(strncmp(err.msg, "locked: keep-encrypted", 22) == 0);
	CHECK(kmerr_is(&err, KMERR_REFUSED));	/* the hook's own decision */
	CHECK(strstr(err.msg, "user decrypts") != NULL);
	CHECK(fake_l2_find("enckey-unl", "bob@example.org") == NULL);
	/* not cached: the hook decides for every message */
	CHECK_EQ_INT(keystore_get_keys(ks, "bob@example.org", "Q2", &k, &n,
	    &err), KM_PERMFAIL);
	CHECK_EQ_INT(F.hook_calls, 2);
	CHECK_EQ_INT(F.km_keys_calls, 1);	/* the set came from L2 */
	keystore_free(ks);
}

TEST(enhanced_wrong_password_negative_cached)
{
	struct keystore *ks;
	struct keystore_key *k = NULL;
	size_t n = 0;
	struct kmerr err;

	reset();
	setup_users();
	F.hook_pw = "wrong";
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(keystore_get_keys(ks, "bob@example.org", "Q1", &k, &n,
	    &err), KM_PERMFAIL);
	CHECK_EQ_STR(err.msg, "locked: wrong password");
	CHECK(kmerr_is(&err, KMERR_BADPASSWORD)); /* from the hook */
	CHECK(strstr(err.msg, "wrong\"") == NULL);
	CHECK_EQ_INT(fake_l2_find("enckey-lck", "bob@example.org")->ttl, 30);
	CHECK_EQ_INT(keystore_get_keys(ks, "bob@example.org", "Q2", &k, &n,
	    &err), KM_PERMFAIL);
	CHECK_EQ_STR(err.msg, "locked: wrong password");
	CHECK(kmerr_is(&err, KMERR_BADPASSWORD)); /* from L1 */
	F.now_ms += 61 * 1000;		/* L1 gone, L2 remembers */
	CHECK_EQ_INT(keystore_get_keys(ks, "bob@example.org", "Q3", &k, &n,
	    &err), KM_PERMFAIL);
	CHECK_EQ_STR(err.msg, "locked: wrong password");
	CHECK(kmerr_is(&err, KMERR_BADPASSWORD)); /* from L2 */
	CHECK_EQ_INT(F.hook_calls, 1);
	/* invalidation (e.g. the password was reset) clears it */
	F.hook_pw = PW;
	keystore_invalidate(ks, "bob@example.org");
	CHECK(fake_l2_find("enckey-lck", "bob@example.org") == NULL);
	CHECK_EQ_INT(keystore_get_keys(ks, "bob@example.org", "Q4", &k, &n,
	    &err), KM_OK);
	keystore_keys_free(k, n);
	CHECK_EQ_INT(F.hook_calls, 2);
	keystore_free(ks);
}

TEST(enhanced_hook_tempfail)
{
	struct keystore *ks;
	struct keystore_key *k = NULL;
	size_t n = 0;
	struct kmerr err;

	reset();
	setup_users();
	F.hook_action = HOOK_ACTION_TEMPFAIL;
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(keystore_get_keys(ks, "bob@example.org", "Q1", &k, &n,
	    &err), KM_TEMPFAIL);
	CHECK(strstr(err.msg, "tempfail") != NULL);
	keystore_free(ks);
}

/* KMERR_REFUSED from the key store is the hook's decision only: a KM
 * server's Permission Denied is passed on as a plain failure, its text kept
 * (inbound.c downgrades on it, where it keeps a hook's decision quiet) */
TEST(km_refusal_is_not_the_hooks)
{
	struct keystore *ks;
	struct keystore_key *k = NULL;
	size_t n = 0;
	struct kmerr err;

	reset();
	setup_users();
	F.km_refused = 1;
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q1", &k, &n,
	    &err), KM_PERMFAIL);
	CHECK_EQ_STR(err.msg, "server A: Locate: PERMISSION_DENIED: not yours");
	CHECK_EQ_INT(err.status, KM_PERMFAIL);
	CHECK(!kmerr_is(&err, KMERR_REFUSED));
	keystore_free(ks);
}

TEST(release_denied_and_allowed_once)
{
	struct keystore *ks;
	struct keystore_key *k = NULL;
	size_t n = 0;
	struct kmerr err;

	reset();
	setup_users();
	conf.hook_release = 1;
	F.release_action = HOOK_ACTION_DENY;
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q1", &k, &n,
	    &err), KM_PERMFAIL);
	CHECK(strncmp(err.msg, "release denied", 14) == 0);
	CHECK(kmerr_is(&err, KMERR_REFUSED));
	CHECK_EQ_INT(F.release_calls, 1);
	/* the denial is remembered: same answer, same reason, no new ask */
	CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q2", &k, &n,
	    &err), KM_PERMFAIL);
	CHECK_EQ_STR(err.msg, "release denied");
	CHECK(kmerr_is(&err, KMERR_REFUSED));
	CHECK_EQ_INT(F.release_calls, 1);
	keystore_free(ks);

	reset();
	conf.hook_release = 1;
	CHECK((ks = mk(1, 1)) != NULL);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ_INT(keystore_get_keys(ks, "alice@example.org", "Q",
		    &k, &n, &err), KM_OK);
		keystore_keys_free(k, n);
		F.now_ms += 61 * 1000;	/* past L1: from L2 each time */
	}
	CHECK_EQ_INT(F.release_calls, 1);
	/* certificates are public: never asked */
	keystore_free(ks);
}

TEST(invalidate_drops_l1_and_l2)
{
	struct keystore *ks;
	X509 *c = NULL;
	struct kmerr err;

	reset();
	setup_users();
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(keystore_get_cert(ks, "alice@example.org", &c, &err), KM_OK);
	X509_free(c);
	keystore_invalidate(ks, "alice@example.org");
	CHECK_EQ_INT(F.l2_invalidates, 1);
	CHECK(fake_l2_find("cert", "alice@example.org") == NULL);
	CHECK_EQ_INT(keystore_get_cert(ks, "alice@example.org", &c, &err), KM_OK);
	X509_free(c);
	CHECK_EQ_INT(F.km_cert_calls, 2);
	keystore_free(ks);
}

TEST(no_l1_goes_to_l2_each_time)
{
	struct keystore *ks;
	X509 *c = NULL;
	struct kmerr err;

	reset();
	setup_users();
	conf.memory_entries = 0;
	CHECK((ks = mk(1, 1)) != NULL);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ_INT(keystore_get_cert(ks, "alice@example.org", &c,
		    &err), KM_OK);
		X509_free(c);
	}
	CHECK_EQ_INT(F.l2_gets, 3);
	CHECK_EQ_INT(F.km_cert_calls, 1);
	keystore_free(ks);
}

TEST(signer_l1_never_l2)
{
	struct keystore *ks;
	X509 *c = NULL;
	EVP_PKEY *k = NULL;
	STACK_OF(X509) *ch = NULL;
	struct kmerr err;

	reset();
	setup_users();
	CHECK((ks = mk(1, 1)) != NULL);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ_INT(keystore_get_signer(ks, "alice@example.org", "Q1", &c,
		    &k, &ch, &err), KM_OK);
		CHECK(X509_check_private_key(c, k) == 1);
		CHECK_EQ_INT(sk_X509_num(ch), 1);
		X509_free(c);
		EVP_PKEY_free(k);
		sk_X509_pop_free(ch, X509_free);
	}
	CHECK_EQ_INT(F.signer_calls, 1);
	CHECK_EQ_INT(F.hook_calls, 0);	/* plain key, user at level default */
	CHECK_EQ_INT(F.rewrap_calls, 0);
	CHECK_EQ_INT(keystore_get_signer(ks, "bob@example.org", NULL, &c, &k, &ch,
	    &err), KM_PERMFAIL);
	CHECK_EQ_INT(keystore_get_signer(ks, "bob@example.org", NULL, &c, &k, &ch,
	    &err), KM_PERMFAIL);
	CHECK_EQ_INT(F.signer_calls, 2);
	/* L2 is read for the escrow's level only (alice's raw key set, as
	 * keystore_get_keys() caches it): no signing key ever goes there */
	CHECK_EQ_INT(fake_l2_count(), 1);
	CHECK(fake_l2_find("enckey", "alice@example.org") != NULL);
	keystore_free(ks);
}

/* get_signer - keystore_get_signer of addr: the status, the error in err, the key checked against its certificate when KM_OK */
static enum km_status
get_signer(struct keystore *ks, const char *addr, struct kmerr *err)
{
	X509 *c = NULL;
	EVP_PKEY *k = NULL;
	STACK_OF(X509) *ch = NULL;
	enum km_status st;

	kmerr_clear(err);
	st = keystore_get_signer(ks, addr, "Q9", &c, &k, &ch, err);
	if (st == KM_OK && X509_check_private_key(c, k) != 1)
		st = KM_PROTO;
	X509_free(c);
	EVP_PKEY_free(k);
	sk_X509_pop_free(ch, X509_free);
	return st;
}

TEST(signer_plain_of_enhanced_user_wrapped_lazily_ttl)
{
	struct keystore *ks;
	struct keystore_stats s;
	struct kmerr err;

	reset();
	setup_users();
	conf.hook_unlocked_key_ttl = 120;
	CHECK((ks = mk(1, 1)) != NULL);
	/* plain on disk, enhanced in the KM: the hook's password opens the
	 * escrowed key, then the key file is wrapped under it */
	CHECK_EQ_INT(get_signer(ks, "sam@example.org", &err), KM_OK);
	CHECK_EQ_INT(F.hook_calls, 1);
	CHECK_EQ_INT(F.hook_key, HOOK_KEY_SIGNING);
	CHECK_EQ_STR(F.hook_qid, "Q9");
	CHECK_EQ_INT(F.rewrap_calls, 1);
	CHECK_EQ_STR(F.sign_file_pw, PW);
	/* unlocked for hook.unlocked_key_ttl, even past memory_ttl */
	F.now_ms += 100 * 1000;
	CHECK_EQ_INT(get_signer(ks, "sam@example.org", &err), KM_OK);
	CHECK_EQ_INT(F.hook_calls, 1);
	/* then asked again: the key file is protected now */
	F.now_ms += 21 * 1000;
	CHECK_EQ_INT(get_signer(ks, "sam@example.org", &err), KM_OK);
	CHECK_EQ_INT(F.hook_calls, 2);
	CHECK_EQ_INT(F.rewrap_calls, 1);
	CHECK_EQ_INT(F.signer_calls, 2);
	keystore_stats(ks, &s);
	CHECK_EQ_INT(s.hook_unlocked, 2);
	keystore_free(ks);
}

TEST(signer_no_password_is_locked_not_remembered)
{
	struct keystore *ks;
	struct kmerr err;

	reset();
	setup_users();
	snprintf(F.sign_file_pw, sizeof(F.sign_file_pw), "%s", PW);
	F.hook_action = HOOK_ACTION_KEEP_ENCRYPTED;
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(get_signer(ks, "sam@example.org", &err), KM_PERMFAIL);
	CHECK(kmerr_is(&err, KMERR_LOCKED));
	CHECK(strstr(err.msg, "locked: keep-encrypted") != NULL);
	CHECK_EQ_INT(get_signer(ks, "sam@example.org", &err), KM_PERMFAIL);
	CHECK_EQ_INT(F.hook_calls, 2);
	/* a hook that answers tempfail: the message waits */
	F.hook_action = HOOK_ACTION_TEMPFAIL;
	CHECK_EQ_INT(get_signer(ks, "sam@example.org", &err), KM_TEMPFAIL);
	CHECK_EQ_INT(F.rewrap_calls, 0);
	keystore_free(ks);
}

TEST(signer_wrong_password_remembered)
{
	struct keystore *ks;
	struct keystore_stats s;
	struct kmerr err;

	reset();
	setup_users();
	snprintf(F.sign_file_pw, sizeof(F.sign_file_pw), "%s", PW);
	F.hook_pw = "not the password";
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(get_signer(ks, "sam@example.org", &err), KM_PERMFAIL);
	CHECK(kmerr_is(&err, KMERR_LOCKED));
	CHECK(strstr(err.msg, "wrong password") != NULL);
	CHECK_EQ_INT(get_signer(ks, "sam@example.org", &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "wrong password") != NULL);
	CHECK_EQ_INT(F.hook_calls, 1);
	F.now_ms += 31 * 1000;		/* negative_ttl */
	F.hook_pw = PW;
	CHECK_EQ_INT(get_signer(ks, "sam@example.org", &err), KM_OK);
	CHECK_EQ_INT(F.hook_calls, 2);
	keystore_stats(ks, &s);
	CHECK_EQ_INT(s.hook_locked, 1);
	/* a plain key of an enhanced user with a wrong password: locked,
	 * and the file stays as it is */
	reset();
	setup_users();
	F.hook_pw = "not the password";
	keystore_free(ks);
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(get_signer(ks, "sam@example.org", &err), KM_PERMFAIL);
	CHECK(kmerr_is(&err, KMERR_LOCKED));
	CHECK_EQ_INT(F.rewrap_calls, 0);
	CHECK_EQ_STR(F.sign_file_pw, "");
	keystore_free(ks);
}

TEST(signer_earlier_password_and_cleared_level)
{
	struct keystore *ks;
	struct kmerr err;

	reset();
	setup_users();
	/* protected by an earlier password; the hook's opens the escrow */
	snprintf(F.sign_file_pw, sizeof(F.sign_file_pw), "an older one");
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(get_signer(ks, "sam@example.org", &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "earlier password") != NULL);
	keystore_free(ks);
	/* alice is at level default (clear-password on another gateway):
	 * her protected key opens with the hook's password and is made
	 * plain again */
	reset();
	setup_users();
	snprintf(F.sign_file_pw, sizeof(F.sign_file_pw), "%s", PW);
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(get_signer(ks, "alice@example.org", &err), KM_OK);
	CHECK_EQ_INT(F.rewrap_calls, 1);
	CHECK_EQ_STR(F.sign_file_pw, "");
	keystore_free(ks);
	/* the KM down and nothing in L2: a plain key is used as it is */
	reset();
	setup_users();
	F.km_down = 1;
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(get_signer(ks, "sam@example.org", &err), KM_OK);
	CHECK_EQ_INT(F.hook_calls, 0);
	keystore_free(ks);
}

TEST(has_signer_never_asks_the_hook)
{
	struct keystore *ks;
	struct kmerr err;

	reset();
	setup_users();
	snprintf(F.sign_file_pw, sizeof(F.sign_file_pw), "%s", PW);
	CHECK((ks = mk(1, 1)) != NULL);
	CHECK_EQ_INT(keystore_has_signer(ks, "sam@example.org", &err), KM_OK);
	CHECK_EQ_INT(keystore_has_signer(ks, "bob@example.org", &err),
	    KM_PERMFAIL);
	CHECK(kmerr_is(&err, KMERR_NOTFOUND));
	CHECK_EQ_INT(F.hook_calls, 0);
	/* after a lookup that unlocked it (L1), still yes, still no hook */
	CHECK_EQ_INT(get_signer(ks, "sam@example.org", &err), KM_OK);
	CHECK_EQ_INT(keystore_has_signer(ks, "sam@example.org", &err), KM_OK);
	CHECK_EQ_INT(F.hook_calls, 1);
	keystore_free(ks);
}

struct thr {
	struct keystore	*ks;
	int		 bad;
};

/* hammer - one thread's share of the concurrent lookups */
static void *
hammer(void *p)
{
	struct thr *t = p;
	static const char *who[] = { "alice@example.org", "bob@example.org",
	    "nobody@example.org" };
	struct kmerr err;

	for (int i = 0; i < 300; i++) {
		X509 *c = NULL;
		struct keystore_key *k = NULL;
		size_t n = 0;
		const char *a = who[i % 3];
		enum km_status st = keystore_get_cert(t->ks, a, &c, &err);

		if ((st == KM_OK) != (i % 3 != 2))
			t->bad++;
		X509_free(c);
		if (i % 3 == 0) {
			if (keystore_get_keys(t->ks, a, "Q", &k, &n, &err) != KM_OK || n != 2)
				t->bad++;
			keystore_keys_free(k, n);
		}
		if (i % 50 == 0)
			keystore_invalidate(t->ks, a);
	}
	return NULL;
}

TEST(concurrent_lookups)
{
	struct keystore *ks;
	pthread_t th[6];
	struct thr t[6];
	int bad = 0;

	reset();
	setup_users();
	CHECK((ks = mk(1, 1)) != NULL);
	for (int i = 0; i < 6; i++) {
		t[i].ks = ks;
		t[i].bad = 0;
		pthread_create(&th[i], NULL, hammer, &t[i]);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(th[i], NULL);
		bad += t[i].bad;
	}
	CHECK_EQ_INT(bad, 0);
	keystore_free(ks);
}

static const struct test_case tests[] = {
	T(cert_miss_l2_l1_order),
	T(cert_negative_cached),
	T(km_down_tempfail_then_recovers),
	T(km_down_l2_used_while_counter_known),
	T(replayed_entries_after_revocation_refused),
	T(outdated_counter_in_memory_rechecked),
	T(old_format_entries_are_a_miss),
	T(envelope_strict),
	T(l2_down_goes_to_km),
	T(no_km_configured),
	T(cert_checks),
	T(malformed_address),
	T(keys_plain_order_and_cache),
	T(keys_bad_l2_entry_refetched),
	T(enhanced_password_unlocks_and_is_cached),
	T(enhanced_keep_encrypted_is_locked),
	T(enhanced_wrong_password_negative_cached),
	T(enhanced_hook_tempfail),
	T(km_refusal_is_not_the_hooks),
	T(release_denied_and_allowed_once),
	T(invalidate_drops_l1_and_l2),
	T(no_l1_goes_to_l2_each_time),
	T(signer_l1_never_l2),
	T(signer_plain_of_enhanced_user_wrapped_lazily_ttl),
	T(signer_no_password_is_locked_not_remembered),
	T(signer_wrong_password_remembered),
	T(signer_earlier_password_and_cleared_level),
	T(has_signer_never_asks_the_hook),
	T(concurrent_lookups),
	{ 0 }
};

int
main(int argc, char **argv)
{
	log_init("test_keystore", LOG_MAIL, 1, 0);
	return harness_main(argc, argv, tests);
}
