/*
 * test_inbound.c - inbound_eom() decryption decisions (milter/inbound.c)
 * over a FAKE key store: decrypted only when every envelope recipient is
 * internal and can read the message with its own key; an outside
 * recipient, or an internal one the sender did not encrypt to (a Bcc, a
 * forward), keeps it encrypted for all and marks the verdict downgraded;
 * no buffer that held the decrypted plaintext (the memory BIO, the entity,
 * the new body) is freed without being wiped first.
 */
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "conf.h"
#include "freewatch.h"
#include "harness.h"
#include "inbound.h"
#include "keymodel.h"
#include "keystore.h"
#include "kmip.h"
#include "runtime.h"
#include "secmem.h"
#include "session.h"
#include "smime.h"
#include "verdict.h"

#define SECRET "inbound-plaintext-marker-0815"

/* ---- FAKE key store: each internal user holds one key generation ---- */

struct fake_id {
	const char	*addr;
	EVP_PKEY	*key;
	X509		*cert;
};

static struct fake_id ids[] = {
	{ "bob@example.com", NULL, NULL },
	{ "erin@example.com", NULL, NULL },
	{ NULL, NULL, NULL }
};
static struct keystore *fake_ks;

/* fake_mkcert - a self-signed EC P-256 S/MIME certificate naming addr */
static X509 *
fake_mkcert(EVP_PKEY *k, const char *addr)
{
	X509 *x = X509_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	char san[128];

	if (x == NULL)
		return NULL;
	snprintf(san, sizeof(san), "email:%s", addr);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)addr, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_set_pubkey(x, k);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san)) != NULL) {
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_ext_key_usage,
	    "emailProtection")) != NULL) {
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	if (X509_sign(x, k, EVP_sha256()) == 0) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* fake_find - the table entry of addr, or NULL */
static struct fake_id *
fake_find(const char *addr)
{
	for (struct fake_id *f = ids; f->addr; f++)
		if (strcmp(f->addr, addr) == 0)
			return f;
	return NULL;
}

/* fake_km_cert - FAKE KM: the table's certificate */
static enum km_status
fake_km_cert(void *arg, const char *addr, X509 **out, char *errstr, size_t errlen)
{
	struct fake_id *f = fake_find(addr);

	if (f == NULL) {
		snprintf(errstr, errlen, "no certificate in KM");
		return KM_PERMFAIL;
	}
	X509_up_ref(f->cert);
	*out = f->cert;
	return KM_OK;
}

/* fake_km_keys - FAKE KM: one active, plain (not enhanced) generation */
static enum km_status
fake_km_keys(void *arg, const char *addr, struct keymodel_gen **out, size_t *n,
    char *errstr, size_t errlen)
{
	struct fake_id *f = fake_find(addr);
	struct keymodel_gen *g;
	PKCS8_PRIV_KEY_INFO *pi;
	unsigned char *p8 = NULL;
	int l;

	if (f == NULL) {
		snprintf(errstr, errlen, "no keys in KM");
		return KM_PERMFAIL;
	}
	if ((g = calloc(1, sizeof(*g))) == NULL || (pi = EVP_PKEY2PKCS8(f->key)) == NULL) {
		free(g);
		return KM_NOMEM;
	}
	l = i2d_PKCS8_PRIV_KEY_INFO(pi, &p8);
	PKCS8_PRIV_KEY_INFO_free(pi);
	if (l <= 0 || (g->der = secmem_alloc((size_t)l)) == NULL) {
		OPENSSL_free(p8);
		free(g);
		return KM_NOMEM;
	}
	memcpy(g->der, p8, (size_t)l);
	g->derlen = (size_t)l;
	OPENSSL_clear_free(p8, (size_t)l);
	g->generation = 1;
	g->state = KMIP_STATE_ACTIVE;
	X509_up_ref(f->cert);
	g->cert = f->cert;
	EVP_PKEY_up_ref(f->key);
	g->key = f->key;
	*out = g;
	*n = 1;
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

/* fake_km_revcount - FAKE KM: nothing was ever revoked */
static enum km_status
fake_km_revcount(void *arg, const char *addr, uint32_t *count, char *errstr, size_t errlen)
{
	*count = 0;
	return KM_OK;
}

/*
 * runtime_keystore, runtime_trust - FAKE: replace milter/runtime.c's at
 * link time (runtime.o is then not taken from libkm.a): the key store over
 * the fakes above, and an empty trust store (nothing here is signed).
 */
struct keystore *
runtime_keystore(void)
{
	return fake_ks;
}

X509_STORE *
runtime_trust(void)
{
	return X509_STORE_new();
}

/* ---- set-up ---- */

#define CONF "milter: { socket = \"unix:/tmp/x.sock\"; };\n" \
	"policy: { internal_domains = [ \"example.com\" ]; };\n"

static struct kmilter_conf *conf;

/* setup - the configuration, identities and the key store; 0 on failure */
static int
setup(void)
{
	struct keystore_backend be;
	char err[8192];

	if (fake_ks != NULL)
		return 1;
	if ((conf = conf_load_string(CONF, "t.conf", err, sizeof(err))) == NULL) {
		printf("    conf: %s\n", err);
		return 0;
	}
	for (struct fake_id *f = ids; f->addr; f++)
		if ((f->key = EVP_EC_gen("P-256")) == NULL ||
		    (f->cert = fake_mkcert(f->key, f->addr)) == NULL)
			return 0;
	memset(&be, 0, sizeof(be));
	be.km_cert = fake_km_cert;
	be.km_keys = fake_km_keys;
	be.km_gens_free = fake_km_gens_free;
	be.km_revcount = fake_km_revcount;
	if ((fake_ks = keystore_new_backend(conf, &be, err, sizeof(err))) == NULL)
		printf("    keystore_new_backend: %s\n", err);
	return fake_ks != NULL;
}

/*
 * mkmsg - a session with one message from outside to rcpts, encrypted
 * (smime_encrypt) to the certificates of the ids named in to
 */
static struct session *
mkmsg(const char **rcpts, const char **to)
{
	static const char inner[] = "Content-Type: text/plain\r\n\r\nhello " SECRET "\r\n";
	struct session *s = NULL;
	X509 *certs[4];
	size_t nc = 0;
	BIO *out = BIO_new(BIO_s_mem());
	struct kmerr err = { 0 };
	char *ent = NULL, *sep;
	long n;

	for (int i = 0; to[i] && nc < 4; i++)
		certs[nc++] = fake_find(to[i])->cert;
	if (out == NULL || smime_encrypt(inner, sizeof(inner) - 1, certs, nc,
	    SMIME_CIPHER_AES256_CBC, SMIME_PAD_PKCS1, out, &err) != KM_OK)
		goto fail;
	if ((n = BIO_get_mem_data(out, &ent)) <= 0 ||
	    (sep = memmem(ent, (size_t)n, "\r\n\r\n", 4)) == NULL)
		goto fail;
	sep += 4;
	if ((s = session_new(conf, NULL, "mx.partner.example")) == NULL ||
	    session_message_begin(s, "<zed@partner.example>", NULL) != KM_OK)
		goto fail;
	message_set_queue_id(s->msg, "TESTQ2");
	for (int i = 0; rcpts[i]; i++)
		if (message_add_rcpt(s->msg, rcpts[i]) != KM_OK)
			goto fail;
	if (message_add_header(s->msg, "From", "zed@partner.example") != KM_OK ||
	    message_add_header(s->msg, "MIME-Version", "1.0") != KM_OK ||
	    message_add_header(s->msg, "Content-Type", "application/pkcs7-mime; "
	    "smime-type=enveloped-data; name=smime.p7m") != KM_OK ||
	    message_add_header(s->msg, "Content-Transfer-Encoding", "base64") != KM_OK ||
	    message_append_body(s->msg, (const unsigned char *)sep,
	    (size_t)n - (size_t)(sep - ent), &err) != KM_OK)
		goto fail;
	BIO_free(out);
	return s;
fail:
	printf("    mkmsg: %s\n", err.msg);
	BIO_free(out);
	return session_free(s);
}

/* body_has - whether the verdict's new body contains text */
static int
body_has(const struct verdict *v, const char *text)
{
	return v->body != NULL && memmem(v->body, v->bodylen, text, strlen(text)) != NULL;
}

TEST(every_rcpt_internal_and_able_decrypted)
{
	const char *rc[] = { "bob@example.com", "erin@example.com", NULL };
	const char *to[] = { "bob@example.com", "erin@example.com", NULL };
	struct session *s;
	struct verdict v;

	CHECK(setup());	/* a fake key store that cannot be made is a failure */
	CHECK((s = mkmsg(rc, to)) != NULL);
	verdict_init(&v);
	inbound_eom(s, &v);
	CHECK_EQ_STR(v.action_name, "decrypt");
	CHECK_EQ_INT(v.kind, VERDICT_REWRITE);
	CHECK_EQ_INT(v.downgraded, 0);
	CHECK(body_has(&v, SECRET));
	verdict_clear(&v);
	session_free(s);
}

TEST(outside_rcpt_kept_encrypted)
{
	/* Encrypted to bob only, but one body also reaches an outside
	   address: it must stay encrypted for all. */
	const char *rc[] = { "bob@example.com", "zoe@elsewhere.example", NULL };
	const char *to[] = { "bob@example.com", NULL };
	struct session *s;
	struct verdict v;

	CHECK(setup());	/* a fake key store that cannot be made is a failure */
	CHECK((s = mkmsg(rc, to)) != NULL);
	verdict_init(&v);
	inbound_eom(s, &v);
	CHECK(strcmp(v.action_name, "decrypt") != 0);
	CHECK(!body_has(&v, SECRET));
	CHECK(v.body == NULL);
	CHECK_EQ_INT(v.downgraded, 1);
	CHECK(strstr(v.result, "zoe@elsewhere.example") != NULL);
	CHECK(strstr(v.result, "not internal") != NULL);
	verdict_clear(&v);
	session_free(s);
}

TEST(internal_rcpt_not_encrypted_to_kept_encrypted)
{
	/* erin is internal and has a key, but the sender encrypted to bob
	   only (erin is a Bcc or a forward): decrypting would hand erin
	   what the sender did not address to her. */
	const char *rc[] = { "bob@example.com", "erin@example.com", NULL };
	const char *to[] = { "bob@example.com", NULL };
	struct session *s;
	struct verdict v;

	CHECK(setup());	/* a fake key store that cannot be made is a failure */
	CHECK((s = mkmsg(rc, to)) != NULL);
	verdict_init(&v);
	inbound_eom(s, &v);
	CHECK(strcmp(v.action_name, "decrypt") != 0);
	CHECK(v.body == NULL);
	CHECK_EQ_INT(v.downgraded, 1);
	CHECK(strstr(v.result, "erin@example.com") != NULL);
	CHECK(strstr(v.result, "holds no key") != NULL);
	verdict_clear(&v);
	session_free(s);
}

TEST(internal_rcpt_without_keys_kept_encrypted)
{
	/* An internal address the KM holds no key for. */
	const char *rc[] = { "bob@example.com", "nokey@example.com", NULL };
	const char *to[] = { "bob@example.com", NULL };
	struct session *s;
	struct verdict v;

	CHECK(setup());	/* a fake key store that cannot be made is a failure */
	CHECK((s = mkmsg(rc, to)) != NULL);
	verdict_init(&v);
	inbound_eom(s, &v);
	CHECK(strcmp(v.action_name, "decrypt") != 0);
	CHECK(v.body == NULL);
	CHECK_EQ_INT(v.downgraded, 1);
	CHECK(strstr(v.result, "nokey@example.com") != NULL);
	verdict_clear(&v);
	session_free(s);
}

TEST(plaintext_wiped_before_free)
{
#if FREEWATCH
	const char *rc[] = { "bob@example.com", NULL };
	const char *to[] = { "bob@example.com", NULL };
	struct session *s;
	struct verdict v;
	int decrypted;

	CHECK(setup());	/* a fake key store that cannot be made is a failure */
	CHECK((s = mkmsg(rc, to)) != NULL);
	verdict_init(&v);
	freewatch_start(SECRET);
	inbound_eom(s, &v);
	decrypted = body_has(&v, SECRET);
	verdict_clear(&v);
	CHECK_EQ_INT(freewatch_stop(), 0);
	CHECK(decrypted);
	session_free(s);
#else
	SKIP(FREEWATCH_SKIP);
#endif
}

static const struct test_case tests[] = {
	T(every_rcpt_internal_and_able_decrypted),
	T(outside_rcpt_kept_encrypted),
	T(internal_rcpt_not_encrypted_to_kept_encrypted),
	T(internal_rcpt_without_keys_kept_encrypted),
	T(plaintext_wiped_before_free),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
