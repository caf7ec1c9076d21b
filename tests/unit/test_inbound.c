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
#include "inbound_spool.h"
#include "keymodel.h"
#include "keystore.h"
#include "mime.h"
#include "revcheck.h"
#include "kmip.h"
#include "runtime.h"
#include "secmem.h"
#include "session.h"
#include "smime.h"
#include "spool.h"
#include "verdict.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

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
static struct kmilter_conf *msgconf;	/* the messages' own, when not conf */

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
	if ((s = session_new(msgconf != NULL ? msgconf : conf, NULL,
	    "mx.partner.example")) == NULL ||
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

/* ---- large messages: the envelope read as a stream from the spool ---- */

static char bigdir[64];

/* bigconf - spool_memory_max 4096, so a body past it is on disk */
static struct kmilter_conf *
bigconf(void)
{
	static struct kmilter_conf *c;
	char text[512], err[8192];

	if (c != NULL)
		return c;
	snprintf(bigdir, sizeof(bigdir), "/tmp/test_inbound.XXXXXX");
	if (mkdtemp(bigdir) == NULL)
		return NULL;
	snprintf(text, sizeof(text), "milter: { socket = \"unix:/tmp/x.sock\"; "
	    "spool_dir = \"%s\"; spool_memory_max = 4096; };\n"
	    "policy: { internal_domains = [ \"example.com\" ]; };\n", bigdir);
	if ((c = conf_load_string(text, "big.conf", err, sizeof(err))) == NULL)
		printf("    conf: %s\n", err);
	return c;
}

/* files_in_spool - entries in the spool directory (spool files are unlinked) */
static int
files_in_spool(void)
{
	DIR *d = opendir(bigdir);
	struct dirent *e;
	int n = 0;

	while (d != NULL && (e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	if (d != NULL)
		closedir(d);
	return d == NULL ? -1 : n;
}

/* big_inner - a text entity of about n octets ending in the secret (free) */
static char *
big_inner(size_t n)
{
	const char *head = "Content-Type: text/plain\r\n\r\n";
	char *e = malloc(n + 100);
	size_t o;

	if (e == NULL)
		return NULL;
	o = (size_t)snprintf(e, n + 100, "%s", head);
	while (o + 80 < n) {
		memset(e + o, 'a' + (char)(o / 78 % 26), 78);
		o += 78;
		e[o++] = '\r';
		e[o++] = '\n';
	}
	snprintf(e + o, n + 100 - o, "end " SECRET "\r\n");
	return e;
}

/* spool_has - the verdict's body spool ends with text, size near n */
static int
spool_has(const struct verdict *v, const char *text, size_t n)
{
	char tail[200];
	size_t got, len;
	struct kmerr err;

	if (v->bodyspool == NULL || (len = spool_size(v->bodyspool)) < n - 200 ||
	    len < sizeof(tail) - 1)
		return 0;
	if (spool_read(v->bodyspool, len - (sizeof(tail) - 1), tail, sizeof(tail) - 1,
	    &got, &err) != KM_OK)
		return 0;
	tail[got] = '\0';
	return strstr(tail, text) != NULL;
}

/* header_added - the verdict adds a header of that name */
static int
header_added(const struct verdict *v, const char *name)
{
	for (int i = 0; i < v->nchanges; i++)
		if (strcmp(v->changes[i].name, name) == 0 && v->changes[i].value != NULL)
			return 1;
	return 0;
}

/* big_run - a large message to rcpts encrypted to to, through inbound_eom */
static struct session *
big_run(const char **rc, const char **to, size_t n, struct verdict *v)
{
	struct session *s;
	char *inner;

	if (!setup() || (msgconf = bigconf()) == NULL || (inner = big_inner(n)) == NULL)
		return NULL;
	s = mkmsg_inner(rc, to, inner);
	free(inner);
	msgconf = NULL;
	if (s == NULL || !spool_on_disk(s->msg->body))
		return session_free(s);
	verdict_init(v);
	inbound_eom(s, v);
	return s;
}

TEST(large_decrypted_from_spool)
{
	const char *rc[] = { "bob@example.com", NULL };
	struct session *s;
	struct verdict v;

	CHECK((s = big_run(rc, rc, 300000, &v)) != NULL);
	CHECK_EQ_STR(v.action_name, "decrypt");
	CHECK_EQ_INT(v.kind, VERDICT_REWRITE);
	CHECK_EQ_INT(v.downgraded, 0);
	CHECK(v.body == NULL);			/* never all in memory */
	CHECK(spool_has(&v, SECRET, 300000));
	CHECK(header_added(&v, "X-Kmilter-Decrypted"));
	CHECK(header_added(&v, "Content-Type"));
	verdict_clear(&v);
	session_free(s);
	CHECK_EQ_INT(files_in_spool(), 0);
}

TEST(large_two_readers_from_spool)
{
	/* two readers: each proven with its own key, the plaintext written
	   to the spool once, from the proven key */
	const char *rc[] = { "bob@example.com", "erin@example.com", NULL };
	struct session *s;
	struct verdict v;

	CHECK((s = big_run(rc, rc, 200000, &v)) != NULL);
	CHECK_EQ_STR(v.action_name, "decrypt");
	CHECK(spool_has(&v, SECRET, 200000));
	verdict_clear(&v);
	session_free(s);
}

TEST(large_small_plaintext_opened_in_memory)
{
	/* the envelope is past spool_memory_max, what is inside is not */
	const char *rc[] = { "bob@example.com", NULL };
	struct session *s;
	struct verdict v;

	CHECK((s = big_run(rc, rc, 3500, &v)) != NULL);
	CHECK_EQ_STR(v.action_name, "decrypt");
	CHECK(body_has(&v, SECRET));
	verdict_clear(&v);
	session_free(s);
}

TEST(large_bcc_kept_encrypted)
{
	const char *rc[] = { "bob@example.com", "erin@example.com", NULL };
	const char *to[] = { "bob@example.com", NULL };
	struct session *s;
	struct verdict v;

	CHECK((s = big_run(rc, to, 100000, &v)) != NULL);
	CHECK(strcmp(v.action_name, "decrypt") != 0);
	CHECK(v.body == NULL && v.bodyspool == NULL);
	CHECK_EQ_INT(v.downgraded, 1);
	CHECK(strstr(v.result, "holds no key") != NULL);
	verdict_clear(&v);
	session_free(s);
}

TEST(large_truncated_is_malformed)
{
	/* the base64 body cut short: a 300 kB message whose DER says more
	   than is there.  policy.on_malformed (pass) applies: nothing
	   changed, nothing half-replaced, no spool file left. */
	const char *rc[] = { "bob@example.com", NULL };
	struct session *s = NULL, *t = NULL;
	struct verdict v;
	unsigned char *cut = NULL;
	size_t n, got;
	struct kmerr err;

	CHECK(setup() && (msgconf = bigconf()) != NULL);
	{
		char *inner = big_inner(300000);

		s = inner ? mkmsg_inner(rc, rc, inner) : NULL;
		free(inner);
	}
	CHECK(s != NULL);
	/* the same headers, the first 60% of the body */
	CHECK((t = session_new(msgconf, NULL, "mx.partner.example")) != NULL);
	msgconf = NULL;
	CHECK(session_message_begin(t, "<zed@partner.example>", NULL) == KM_OK);
	CHECK(message_add_rcpt(t->msg, "bob@example.com") == KM_OK);
	for (int i = 0; i < s->msg->nheaders; i++)
		CHECK(message_add_header(t->msg, s->msg->headers[i].name,
		    s->msg->headers[i].value) == KM_OK);
	n = spool_size(s->msg->body) * 6 / 10;
	CHECK((cut = malloc(n)) != NULL);
	CHECK(spool_read(s->msg->body, 0, cut, n, &got, &err) == KM_OK && got == n);
	CHECK(message_append_body(t->msg, cut, n, &err) == KM_OK);
	verdict_init(&v);
	inbound_eom(t, &v);
	CHECK(v.body == NULL && v.bodyspool == NULL);
	CHECK(strstr(v.result, "malformed") != NULL);
	CHECK(strstr(v.result, "truncated") != NULL);
	verdict_clear(&v);
	free(cut);
	session_free(t);
	session_free(s);
	CHECK_EQ_INT(files_in_spool(), 0);
}

/*
 * big_signed - a large entity signed by erin (multipart/signed), part 0
 * changed after signing when tamper; then encrypted to bob (free)
 */
static char *
big_signed_mode(size_t n, int tamper, enum smime_sign_mode mode)
{
	struct fixture_id *erin = fixture_find(ids, "erin@example.com");
	char *inner = big_inner(n), *r = NULL, *data, *hit;
	BIO *out = BIO_new(BIO_s_mem());
	struct kmerr err;
	long len;

	if (inner != NULL && out != NULL && smime_sign(inner, strlen(inner), erin->cert,
	    erin->key, NULL, SMIME_MD_SHA256, mode, out, &err) == KM_OK &&
	    (len = BIO_get_mem_data(out, &data)) > 0 && (r = malloc((size_t)len + 1)) != NULL) {
		memcpy(r, data, (size_t)len);
		r[len] = '\0';
		if (tamper && mode == SMIME_MODE_DETACHED && (hit = strstr(r, "aaaa")) != NULL)
			hit[1] = 'b';
		/* opaque: a base64 character in the middle, inside the content */
		for (hit = r + len / 2; *hit == '\r' || *hit == '\n'; hit++)
			;
		if (tamper && mode == SMIME_MODE_OPAQUE)
			*hit = *hit == 'A' ? 'B' : 'A';
	}
	free(inner);
	BIO_free(out);
	return r;
}

static char *
big_signed(size_t n, int tamper)
{
	return big_signed_mode(n, tamper, SMIME_MODE_DETACHED);
}

/* ar_has - the Authentication-Results the verdict adds says text */
static int
ar_has(const struct verdict *v, const char *text)
{
	for (int i = 0; i < v->nchanges; i++)
		if (strcmp(v->changes[i].name, "Authentication-Results") == 0 &&
		    v->changes[i].value != NULL && strstr(v->changes[i].value, text) != NULL)
			return 1;
	return 0;
}

/* signed_run - big_signed through inbound_eom from the spool */
static struct session *
signed_run(int tamper, struct verdict *v)
{
	const char *rc[] = { "bob@example.com", NULL };
	struct session *s;
	char *inner;

	if (!setup() || (msgconf = bigconf()) == NULL ||
	    (inner = big_signed(400000, tamper)) == NULL)
		return NULL;
	s = mkmsg_inner(rc, rc, inner);
	free(inner);
	msgconf = NULL;
	if (s == NULL || !spool_on_disk(s->msg->body))
		return session_free(s);
	verdict_init(v);
	inbound_eom(s, v);
	return s;
}

TEST(large_signed_verified_from_spool)
{
	struct session *s;
	struct verdict v;

	CHECK((s = signed_run(0, &v)) != NULL);
	CHECK_EQ_STR(v.action_name, "decrypt+verify");
	CHECK(v.bodyspool != NULL && v.body == NULL);
	/* the signature verified; the (empty) trust store does not know erin */
	CHECK(ar_has(&v, "untrusted signer"));
	CHECK(ar_has(&v, "erin@example.com"));
	CHECK(!ar_has(&v, "bad signature"));
	CHECK_EQ_INT(v.downgraded, 0);
	verdict_clear(&v);
	session_free(s);
}

TEST(large_signed_tampered_fails)
{
	struct session *s;
	struct verdict v;

	CHECK((s = signed_run(1, &v)) != NULL);
	CHECK_EQ_STR(v.action_name, "decrypt+verify");
	CHECK(ar_has(&v, "bad signature"));
	verdict_clear(&v);
	session_free(s);
	CHECK_EQ_INT(files_in_spool(), 0);
}

/* plain_signed_run - a large multipart/signed message, not encrypted */
static struct session *
plain_signed_mode(int tamper, enum smime_sign_mode mode, struct verdict *v)
{
	struct mime_headers *h = NULL;
	struct session *s = NULL;
	const char *ct;
	char *ent, *sep;
	struct kmerr err;

	if (!setup() || bigconf() == NULL ||
	    (ent = big_signed_mode(400000, tamper, mode)) == NULL)
		return NULL;
	if ((sep = strstr(ent, "\r\n\r\n")) == NULL ||
	    mime_headers_parse(ent, (size_t)(sep - ent) + 2, &h, NULL) != KM_OK ||
	    (ct = mime_headers_get(h, "Content-Type")) == NULL)
		goto out;
	if ((s = session_new(bigconf(), NULL, "mx.partner.example")) == NULL ||
	    session_message_begin(s, "<erin@example.com>", NULL) != KM_OK ||
	    message_add_rcpt(s->msg, "bob@example.com") != KM_OK ||
	    message_add_header(s->msg, "From", "erin@example.com") != KM_OK ||
	    message_add_header(s->msg, "MIME-Version", "1.0") != KM_OK ||
	    message_add_header(s->msg, "Content-Type", ct) != KM_OK ||
	    message_append_body(s->msg, (const unsigned char *)sep + 4, strlen(sep + 4),
	    &err) != KM_OK) {
		s = session_free(s);
		goto out;
	}
	message_set_queue_id(s->msg, "TESTQ3");
	verdict_init(v);
	inbound_eom(s, v);
out:
	mime_headers_free(h);
	free(ent);
	return s;
}

static struct session *
plain_signed_run(int tamper, struct verdict *v)
{
	return plain_signed_mode(tamper, SMIME_MODE_DETACHED, v);
}

TEST(large_signed_only_verified_from_spool)
{
	struct session *s;
	struct verdict v;

	CHECK((s = plain_signed_run(0, &v)) != NULL);
	CHECK(spool_on_disk(s->msg->body));
	CHECK_EQ_STR(v.action_name, "verify");
	CHECK(v.body == NULL && v.bodyspool == NULL);	/* delivered as it came */
	CHECK(ar_has(&v, "untrusted signer"));
	CHECK(!ar_has(&v, "bad signature"));
	verdict_clear(&v);
	session_free(s);
	CHECK((s = plain_signed_run(1, &v)) != NULL);
	CHECK(ar_has(&v, "bad signature"));
	verdict_clear(&v);
	session_free(s);
}

/* spool_head_has - the verdict's body spool starts near text (first 200) */
static int
spool_tail_has(const struct verdict *v, const char *text)
{
	return v->bodyspool != NULL && spool_has(v, text, 200);
}

TEST(large_opaque_unwrapped_from_spool)
{
	struct session *s;
	struct verdict v;

	/* not encrypted: verified as a stream, unwrapped into a spool */
	CHECK((s = plain_signed_mode(0, SMIME_MODE_OPAQUE, &v)) != NULL);
	CHECK(spool_on_disk(s->msg->body));
	CHECK_EQ_STR(v.action_name, "unwrap+verify");
	CHECK(v.body == NULL && spool_tail_has(&v, SECRET));
	CHECK(header_added(&v, "Content-Type"));
	CHECK(ar_has(&v, "untrusted signer") && !ar_has(&v, "bad signature"));
	verdict_clear(&v);
	session_free(s);
	/* a changed octet: the signature fails */
	CHECK((s = plain_signed_mode(1, SMIME_MODE_OPAQUE, &v)) != NULL);
	CHECK(ar_has(&v, "bad signature"));
	verdict_clear(&v);
	session_free(s);
	CHECK_EQ_INT(files_in_spool(), 0);
}

TEST(large_encrypted_opaque_unwrapped_from_spool)
{
	const char *rc[] = { "bob@example.com", NULL };
	struct session *s;
	struct verdict v;
	char *inner;

	CHECK(setup() && (msgconf = bigconf()) != NULL);
	CHECK((inner = big_signed_mode(400000, 0, SMIME_MODE_OPAQUE)) != NULL);
	s = mkmsg_inner(rc, rc, inner);
	free(inner);
	msgconf = NULL;
	CHECK(s != NULL && spool_on_disk(s->msg->body));
	verdict_init(&v);
	inbound_eom(s, &v);
	CHECK_EQ_STR(v.action_name, "decrypt+verify");
	CHECK(v.body == NULL && spool_tail_has(&v, SECRET));
	CHECK(ar_has(&v, "untrusted signer") && !ar_has(&v, "bad signature"));
	verdict_clear(&v);
	session_free(s);
	CHECK_EQ_INT(files_in_spool(), 0);
}

/* split_through - write text through a splitter in pieces of step octets */
static char *
split_through(const char *text, size_t len, size_t step, size_t *hlen, char *body,
    size_t *blen)
{
	BIO *mem = BIO_new(BIO_s_mem()), *sp = inbound_split_new(mem);
	char *head = NULL, *data;
	long n;

	for (size_t o = 0; sp != NULL && o < len; o += step)
		if (BIO_write(sp, text + o, (int)(len - o < step ? len - o : step)) <= 0)
			break;
	if (sp != NULL)
		head = inbound_split_head(sp, hlen);
	n = BIO_get_mem_data(mem, &data);
	*blen = n > 0 ? (size_t)n : 0;
	if (*blen > 0)
		memcpy(body, data, *blen);
	BIO_free(sp);
	BIO_free(mem);
	return head;
}

TEST(splitter_edges)
{
	static char big[70000], body[70000];
	const char *crlf = "Content-Type: text/plain\r\nX-A: 1\r\n\r\nbody\r\nline\r\n";
	const char *lf = "Content-Type: text/plain\n\nbody\n";
	size_t hlen, blen;
	char *h;

	/* CRLF, one octet at a time: the empty line across writes */
	for (size_t step = 1; step <= 7; step++) {
		CHECK((h = split_through(crlf, strlen(crlf), step, &hlen, body, &blen)) != NULL);
		CHECK_EQ_INT(hlen, strstr(crlf, "body") - crlf);
		CHECK(blen == strlen("body\r\nline\r\n") && memcmp(body, "body\r\nline\r\n",
		    blen) == 0);
		secmem_free(h, hlen + 1);
	}
	CHECK((h = split_through(lf, strlen(lf), 3, &hlen, body, &blen)) != NULL);
	CHECK(hlen == strlen("Content-Type: text/plain\n\n") && blen == 5);
	secmem_free(h, hlen + 1);
	/* no empty line in the first 64 KiB: no header block */
	memset(big, 'x', sizeof(big));
	CHECK(split_through(big, sizeof(big), 4096, &hlen, body, &blen) == NULL);
	/* no empty line at all */
	CHECK(split_through("X-A: 1\r\n", 8, 2, &hlen, body, &blen) == NULL);
}

/* large_cleanup - the spool directory of the large cases, empty, removed */
TEST(large_cleanup)
{
	CHECK(bigdir[0] == '\0' || rmdir(bigdir) == 0);
}

static const struct test_case tests[] = {
	T(every_rcpt_internal_and_able_decrypted),
	T(protected_headers_replace_outer),
	T(outside_rcpt_kept_encrypted),
	T(internal_rcpt_not_encrypted_to_kept_encrypted),
	T(internal_rcpt_without_keys_kept_encrypted),
	T(plaintext_wiped_before_free),
	T(large_decrypted_from_spool),
	T(large_two_readers_from_spool),
	T(large_small_plaintext_opened_in_memory),
	T(large_bcc_kept_encrypted),
	T(large_truncated_is_malformed),
	T(large_signed_verified_from_spool),
	T(large_signed_tampered_fails),
	T(large_signed_only_verified_from_spool),
	T(large_opaque_unwrapped_from_spool),
	T(large_encrypted_opaque_unwrapped_from_spool),
	T(splitter_edges),
	T(large_cleanup),
	{ 0 }
};

int
main(int argc, char **argv)
{
	int rc = harness_main(argc, argv, tests);

	keystore_free(fake_ks);		/* its seal key sits in secmem, which LSan does not scan */
	return rc;
}
