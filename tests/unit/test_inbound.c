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
#include "fixture.h"
#include "freewatch.h"
#include "harness.h"
#include "inbound.h"
#include "keymodel.h"
#include "keystore.h"
#include "revcheck.h"
#include "kmip.h"
#include "runtime.h"
#include "secmem.h"
#include "session.h"
#include "smime.h"
#include "verdict.h"

#define SECRET "inbound-plaintext-marker-0815"

/* ---- FAKE key store: each internal user holds one key generation ---- */

static struct fixture_id ids[] = {
	{ "bob@example.com", NULL, NULL },
	{ "erin@example.com", NULL, NULL },
	{ NULL, NULL, NULL }
};
static struct keystore *fake_ks;

/*
 * runtime_keystore, runtime_trust - FAKE: replace milter/runtime.c's at
 * link time (runtime.o is then not taken from libkm.a): the key store over
 * the fixture's fakes, and an empty trust store (nothing here is signed).
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

/* runtime_revcheck - FAKE likewise: no revocation checker (harvest.c
 * asks it only for a signature that verified) */
struct revcheck *
runtime_revcheck(void)
{
	return NULL;
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
	struct kmerr kerr;

	if (fake_ks != NULL)
		return 1;
	if ((conf = conf_load_string(CONF, "t.conf", err, sizeof(err))) == NULL) {
		printf("    conf: %s\n", err);
		return 0;
	}
	if (!fixture_ids_make(ids))
		return 0;
	fixture_backend(&be, ids);
	be.signer = NULL;		/* nothing is signed here */
	if ((fake_ks = keystore_new_backend(conf, &be, &kerr)) == NULL)
		printf("    keystore_new_backend: %s\n", kerr.msg);
	return fake_ks != NULL;
}

/*
 * mkmsg - a session with one message from outside to rcpts, encrypted
 * (smime_encrypt) to the certificates of the ids named in to
 */
static struct session *
mkmsg_inner(const char **rcpts, const char **to, const char *inner)
{
	struct session *s = NULL;
	X509 *certs[4];
	size_t nc = 0;
	BIO *out = BIO_new(BIO_s_mem());
	struct kmerr err = { 0 };
	char *ent = NULL, *sep;
	long n;

	for (int i = 0; to[i] && nc < 4; i++)
		certs[nc++] = fixture_find(ids, to[i])->cert;
	if (out == NULL || smime_encrypt(inner, strlen(inner), certs, nc,
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

static struct session *
mkmsg(const char **rcpts, const char **to)
{
	return mkmsg_inner(rcpts, to, "Content-Type: text/plain\r\n\r\nhello " SECRET "\r\n");
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

TEST(protected_headers_replace_outer)
{
	/* RFC 9788: the decrypted entity's Subject replaces the outer "[...]"
	   (once), the outer value stays as HP-Outer, the result header says so */
	const char *rc[] = { "bob@example.com", NULL };
	static const char inner[] = "Content-Type: text/plain; hp=\"cipher\"\r\n"
	    "From: zed@partner.example\r\nSubject: the real one\r\n\r\nhello\r\n";
	struct session *s;
	struct verdict v;
	int subj = 0;

	CHECK(setup());
	CHECK((s = mkmsg_inner(rc, rc, inner)) != NULL);
	CHECK(message_add_header(s->msg, "Subject", "[...]") == KM_OK);
	verdict_init(&v);
	inbound_eom(s, &v);
	CHECK_EQ_STR(v.action_name, "decrypt");
	CHECK(fixture_has_change(&v, "Subject", 1, "the real one"));
	CHECK(fixture_has_change(&v, "HP-Outer", 0, "Subject: [...]"));
	CHECK(fixture_has_change(&v, "X-Kmilter-Header-Protection", 0,
	    "hp=cipher; applied=From,Subject; hp-outer=Subject"));
	for (int i = 0; i < v.nchanges; i++)
		subj += strcasecmp(v.changes[i].name, "Subject") == 0;
	CHECK_EQ_INT(subj, 1);
	verdict_clear(&v);
	session_free(s);
}

static const struct test_case tests[] = {
	T(every_rcpt_internal_and_able_decrypted),
	T(protected_headers_replace_outer),
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
