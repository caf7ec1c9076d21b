/*
 * test_outbound.c - outbound_eom() decisions (milter/outbound.c) over a
 * FAKE key store: a mandatory recipient without a certificate rejects the
 * message (550 5.7.1 naming who); an opportunistic one leaves it signed
 * only and marked downgraded; a plaintext body labelled as enveloped data
 * is encrypted anyway; every recipient with a certificate gives an
 * encrypted, not downgraded, message whose body no longer holds the text;
 * no buffer that held the plaintext (the entity, the signed entity, the
 * memory BIOs, the new body) is freed without being wiped first; a
 * signature publishes the sender's certificate unless publish_cert is off.
 * outbound_rcpt() with missing_cert = "split": a recipient whose
 * protection (encrypted: a usable certificate and a policy that encrypts;
 * else signed only) differs from the first accepted one's gets 452 4.5.3
 * and is dropped, whichever group comes first; a rule "never" is signed
 * only; mandatory without a certificate is still 550; with sign-only, or
 * encrypt = never, nobody is split; the transaction that stays is
 * encrypted (no downgrade) or signed for all.
 */
#include <strings.h>
#include <time.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "conf.h"
#include "fixture.h"
#include "freewatch.h"
#include "harness.h"
#include "keystore.h"
#include "outbound.h"
#include "runtime.h"
#include "session.h"
#include "smime.h"
#include "smime_verify.h"
#include "spool.h"
#include "verdict.h"

#define SECRET "the-plaintext-marker-4711"

/* ---- FAKE key store: certificates from a table, one signing key ---- */

static struct fixture_id ids[] = {
	{ "alice@example.com", NULL, NULL },	/* the internal sender */
	{ "carol@partner.example", NULL, NULL },
	{ "dave@secure.example", NULL, NULL },
	{ NULL, NULL, NULL }
};
static struct keystore *fake_ks;

/*
 * runtime_keystore - FAKE: replaces milter/runtime.c's at link time (this
 * program defines it, so runtime.o is not taken from libkm.a) and hands
 * outbound.c the key store over the fixture's fakes.
 */
struct keystore *
runtime_keystore(void)
{
	return fake_ks;
}

/* runtime_revcheck, runtime_trust - FAKE: no revocation checker (off) */
struct revcheck *
runtime_revcheck(void)
{
	return NULL;
}

X509_STORE *
runtime_trust(void)
{
	return X509_STORE_new();
}

/* ---- set-up ---- */

#define CONF "milter: { socket = \"unix:/tmp/x.sock\"; };\n" \
	"policy: { internal_domains = [ \"example.com\" ];\n" \
	"  rules = ( { match = \"secure.example\"; encrypt = \"mandatory\"; } ); };\n"

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
	be.km_keys = NULL;		/* nothing is decrypted here */
	be.km_gens_free = NULL;
	if ((fake_ks = keystore_new_backend(conf, &be, &kerr)) == NULL)
		printf("    keystore_new_backend: %s\n", kerr.msg);
	return fake_ks != NULL;
}

/* mkmsg - a session with one message from alice to rcpts, with ctype and body */
static struct session *
mkmsg(const char **rcpts, const char *ctype, const char *body)
{
	struct session *s = session_new(conf, NULL, "localhost");
	struct kmerr err;

	if (s == NULL || session_message_begin(s, "<alice@example.com>", NULL) != KM_OK)
		return session_free(s);
	message_set_queue_id(s->msg, "TESTQ1");
	for (int i = 0; rcpts[i]; i++)
		if (message_add_rcpt(s->msg, rcpts[i]) != KM_OK)
			return session_free(s);
	if (message_add_header(s->msg, "From", "alice@example.com") != KM_OK ||
	    message_add_header(s->msg, "Subject", "test") != KM_OK ||
	    message_add_header(s->msg, "MIME-Version", "1.0") != KM_OK ||
	    message_add_header(s->msg, "Content-Type", ctype) != KM_OK ||
	    message_append_body(s->msg, (const unsigned char *)body, strlen(body),
	    &err) != KM_OK)
		return session_free(s);
	return s;
}

/*
 * reader_gets_secret - can addr's key open the verdict's enveloped body,
 * and does what it opens hold the plaintext?  (CMS_decrypt with the key
 * and certificate of that recipient only: a message encrypted to anyone
 * else does not open.)
 */
static int
reader_gets(const struct verdict *v, const char *addr, const char *text)
{
	struct fixture_id *id = fixture_find(ids, addr);
	BIO *in, *b64, *out;
	CMS_ContentInfo *cms;
	BUF_MEM *got;
	int ok = 0;

	if (id == NULL || v->body == NULL ||
	    (in = BIO_new_mem_buf(v->body, (int)v->bodylen)) == NULL)
		return 0;
	if ((b64 = BIO_new(BIO_f_base64())) == NULL) {
		BIO_free(in);
		return 0;
	}
	in = BIO_push(b64, in);
	cms = d2i_CMS_bio(in, NULL);
	BIO_free_all(in);
	if (cms == NULL || (out = BIO_new(BIO_s_mem())) == NULL) {
		CMS_ContentInfo_free(cms);
		return 0;
	}
	if (CMS_decrypt(cms, id->key, id->cert, NULL, out, 0) == 1) {
		BIO_get_mem_ptr(out, &got);
		ok = memmem(got->data, got->length, text, strlen(text)) != NULL;
	}
	ERR_clear_error();
	BIO_free(out);
	CMS_ContentInfo_free(cms);
	return ok;
}

static int
reader_gets_secret(const struct verdict *v, const char *addr)
{
	return reader_gets(v, addr, SECRET);
}

/* body_has - whether the verdict's new body contains text */
static int
body_has(const struct verdict *v, const char *text)
{
	return v->body != NULL && memmem(v->body, v->bodylen, text, strlen(text)) != NULL;
}

/* ctype_change - the Content-Type the verdict sets (the old one is deleted, a new one added) */
static const char *
ctype_change(const struct verdict *v)
{
	const char *val = NULL;

	for (int i = 0; i < v->nchanges; i++)
		if (strcasecmp(v->changes[i].name, "Content-Type") == 0 &&
		    v->changes[i].value != NULL)
			val = v->changes[i].value;
	return val;
}

TEST(mandatory_without_cert_rejects)
{
	const char *rc[] = { "carol@partner.example", "nocert@secure.example", NULL };
	struct session *s;
	struct verdict v;

	CHECK(setup());	/* a fake key store that cannot be made is a failure */
	CHECK((s = mkmsg(rc, "text/plain", "hello " SECRET "\r\n")) != NULL);
	verdict_init(&v);
	outbound_eom(s, &v);
	CHECK_EQ_INT(v.kind, VERDICT_REJECT);
	CHECK_EQ_STR(v.rcode, "550");
	CHECK_EQ_STR(v.xcode, "5.7.1");
	CHECK(strstr(v.reply, "nocert@secure.example") != NULL);
	CHECK(strstr(v.reply, "carol@") == NULL);	/* carol has a certificate */
	CHECK_EQ_INT(v.nchanges, 0);			/* nothing partial */
	CHECK(v.body == NULL);
	verdict_clear(&v);
	session_free(s);
}

TEST(opportunistic_without_cert_downgraded)
{
	const char *rc[] = { "carol@partner.example", "bob@partner.example", NULL };
	struct session *s;
	struct verdict v;

	CHECK(setup());	/* a fake key store that cannot be made is a failure */
	CHECK((s = mkmsg(rc, "text/plain", "hello " SECRET "\r\n")) != NULL);
	verdict_init(&v);
	outbound_eom(s, &v);
	CHECK_EQ_INT(v.kind, VERDICT_REWRITE);		/* delivered, signed only */
	CHECK_EQ_STR(v.action_name, "sign");
	CHECK_EQ_INT(v.downgraded, 1);			/* never in silence */
	CHECK_EQ_INT(v.downgrade_kinds, VERDICT_DG_UNENCRYPTED);	/* counted */
	CHECK(strstr(v.result, "not encrypted") != NULL);
	CHECK(strstr(v.result, "bob@partner.example") != NULL);
	CHECK(strstr(v.result, "carol@") == NULL);
	verdict_clear(&v);
	session_free(s);
}

TEST(every_rcpt_with_cert_encrypted)
{
	const char *rc[] = { "carol@partner.example", "dave@secure.example", NULL };
	struct session *s;
	struct verdict v;
	const char *ct;

	CHECK(setup());	/* a fake key store that cannot be made is a failure */
	CHECK((s = mkmsg(rc, "text/plain", "hello " SECRET "\r\n")) != NULL);
	verdict_init(&v);
	outbound_eom(s, &v);
	CHECK_EQ_INT(v.kind, VERDICT_REWRITE);
	CHECK_EQ_STR(v.action_name, "sign+encrypt");
	CHECK_EQ_INT(v.downgraded, 0);
	CHECK_EQ_STR(v.result, "ok");
	CHECK(v.body != NULL);
	CHECK(!body_has(&v, SECRET));
	CHECK((ct = ctype_change(&v)) != NULL);
	CHECK(strstr(ct, "enveloped-data") != NULL);
	/* each recipient, with its own key, reads it */
	CHECK(reader_gets_secret(&v, "carol@partner.example"));
	CHECK(reader_gets_secret(&v, "dave@secure.example"));
	verdict_clear(&v);
	session_free(s);
}

TEST(enveloped_label_on_plaintext_encrypted_anyway)
{
	/* A client labels plain text as encrypted to slip it out in clear:
	   the label proves nothing, the body is not CMS, so it is encrypted. */
	const char *rc[] = { "carol@partner.example", NULL };
	struct session *s;
	struct verdict v;
	const char *ct;

	CHECK(setup());	/* a fake key store that cannot be made is a failure */
	CHECK((s = mkmsg(rc, "application/pkcs7-mime; smime-type=enveloped-data; "
	    "name=smime.p7m", "hello " SECRET "\r\n")) != NULL);
	verdict_init(&v);
	outbound_eom(s, &v);
	CHECK_EQ_INT(v.kind, VERDICT_REWRITE);
	CHECK(strstr(v.action_name, "encrypt") != NULL);
	CHECK(strstr(v.result, "already encrypted") == NULL);
	CHECK(v.body != NULL);
	CHECK(!body_has(&v, SECRET));
	CHECK((ct = ctype_change(&v)) != NULL);
	CHECK(strstr(ct, "enveloped-data") != NULL);
	verdict_clear(&v);
	session_free(s);
}

static char *big_body(const char *, size_t);

#if FREEWATCH
/*
 * wipe_case - one outbound_eom (and the verdict's release) under the
 * watch: the number of blocks freed while still holding SECRET, -1 when
 * the message was not rewritten as action says
 */
static int
wipe_case(const char **rc, const char *body, const char *action)
{
	struct session *s;
	struct verdict v;
	int unwiped, ok;

	if ((s = mkmsg(rc, "text/plain", body)) == NULL)
		return -1;
	verdict_init(&v);
	freewatch_start(SECRET);
	outbound_eom(s, &v);
	ok = strcmp(v.action_name, action) == 0 && (v.body != NULL || v.bodyspool != NULL);
	verdict_clear(&v);
	unwiped = freewatch_stop();
	session_free(s);
	return ok ? unwiped : -1;
}
#endif

TEST(plaintext_wiped_before_free)
{
#if FREEWATCH
	const char *signonly[] = { "carol@partner.example", "bob@partner.example", NULL };
	const char *both[] = { "carol@partner.example", "dave@secure.example", NULL };

	CHECK(setup());	/* a fake key store that cannot be made is a failure */
	/* signed only: the signed entity is plaintext all the way;
	   8-bit content is signed as opaque signed-data (streamed) */
	CHECK_EQ_INT(wipe_case(signonly, "hello " SECRET "\r\n", "sign"), 0);
	CHECK_EQ_INT(wipe_case(signonly, "h\xc3\xa9llo " SECRET "\r\n", "sign"), 0);
	CHECK_EQ_INT(wipe_case(both, "hello " SECRET "\r\n", "sign+encrypt"), 0);
	/* streamed from a spool file: the head piece, the chunk buffers, the
	   result spools' memory (signed only: 8-bit, so opaque) */
	{
		int memmax = conf->spool_memory_max;
		char *big = big_body("big " SECRET "\r\n", 200 * 1024);

		CHECK(big != NULL);
		free(conf->spool_dir);
		CHECK((conf->spool_dir = strdup("/tmp")) != NULL);
		conf->spool_memory_max = 4096;
		CHECK_EQ_INT(wipe_case(signonly, big, "sign"), 0);
		CHECK_EQ_INT(wipe_case(both, big, "sign+encrypt"), 0);
		conf->spool_memory_max = memmax;
		free(big);
	}
#else
	SKIP(FREEWATCH_SKIP);
#endif
}

/* README: a rule's sign = yes signs over policy.outbound.sign = no */
TEST(rule_sign_yes_over_outbound_sign_no)
{
	const char *both[] = { "carol@partner.example", "dave@secure.example", NULL };
	const char *carol[] = { "carol@partner.example", NULL };
	struct kmilter_conf *saved, *c2;
	struct session *s1, *s2;
	struct verdict v;
	char err[512];

	CHECK(setup());
	c2 = conf_load_string("milter: { socket = \"unix:/tmp/x.sock\"; };\n"
	    "policy: { internal_domains = [ \"example.com\" ]; outbound: { sign = \"no\"; };\n"
	    "  rules = ( { match = \"partner.example\"; sign = \"yes\"; } ); };\n",
	    "t2.conf", err, sizeof(err));
	CHECK(c2 != NULL);
	saved = conf;
	conf = c2;			/* mkmsg's sessions use it */
	s1 = mkmsg(carol, "text/plain", "hello " SECRET "\r\n");
	s2 = mkmsg(both, "text/plain", "hello " SECRET "\r\n");
	conf = saved;
	CHECK(s1 != NULL && s2 != NULL);
	verdict_init(&v);
	outbound_eom(s1, &v);
	CHECK_EQ_STR(v.action_name, "sign+encrypt");
	verdict_clear(&v);
	verdict_init(&v);		/* dave has no rule: outbound.sign = no */
	outbound_eom(s2, &v);
	CHECK_EQ_STR(v.action_name, "encrypt");
	CHECK_EQ_INT(v.downgraded, 0);
	verdict_clear(&v);
	session_free(s1);
	session_free(s2);
	conf_unref(c2);
}

/* count_subject_changes - how many changes name Subject (value or NULL for any) */
static int
count_subject_changes(const struct verdict *v, const char *value)
{
	int n = 0;

	for (int i = 0; i < v->nchanges; i++)
		n += strcasecmp(v->changes[i].name, "Subject") == 0 && (value == NULL ||
		    (v->changes[i].value && strcmp(v->changes[i].value, value) == 0));
	return n;
}

/* mkmsg_conf - mkmsg() under another configuration, kept in *c (conf_unref) */
static struct session *
mkmsg_conf(const char *text, struct kmilter_conf **c, const char **rcpts)
{
	struct kmilter_conf *saved = conf;
	struct session *s;
	char err[512];

	if ((*c = conf_load_string(text, "t-conf", err, sizeof(err))) == NULL) {
		printf("    conf: %s\n", err);
		return NULL;
	}
	conf = *c;
	s = mkmsg(rcpts, "text/plain", "hello " SECRET "\r\n");
	conf = saved;
	return s;
}

/* RFC 9788: encrypted mail carries its headers inside, the Subject hidden outside */
TEST(encrypted_headers_protected_subject_hidden)
{
	const char *carol[] = { "carol@partner.example", NULL };
	const char *bob[] = { "bob@partner.example", NULL };
	struct kmilter_conf *c2 = NULL;
	struct session *s;
	struct verdict v;

	CHECK(setup());
	CHECK((s = mkmsg(carol, "text/plain", "hello " SECRET "\r\n")) != NULL);
	verdict_init(&v);
	outbound_eom(s, &v);
	CHECK_EQ_STR(v.action_name, "sign+encrypt");
	CHECK_EQ_INT(count_subject_changes(&v, "[...]"), 1);
	CHECK_EQ_INT(count_subject_changes(&v, NULL), 1);
	CHECK(reader_gets(&v, "carol@partner.example", "hp=\"cipher\"; hp-legacy-display=\"1\""));
	CHECK(reader_gets(&v, "carol@partner.example", "\r\nSubject: test\r\n"));
	CHECK(reader_gets(&v, "carol@partner.example", "\r\nHP-Outer: Subject: [...]\r\n"));
	CHECK(reader_gets(&v, "carol@partner.example", "\r\n\r\nSubject: test\r\n\r\nhello"));
	verdict_clear(&v);
	session_free(s);
	/* signed only: hp="clear", the Subject stays */
	CHECK((s = mkmsg(bob, "text/plain", "hello " SECRET "\r\n")) != NULL);
	verdict_init(&v);
	outbound_eom(s, &v);
	CHECK_EQ_STR(v.action_name, "sign");
	CHECK_EQ_INT(count_subject_changes(&v, NULL), 0);
	CHECK(body_has(&v, "hp=\"clear\"\r\nFrom: alice@example.com\r\nSubject: test\r\n"));
	CHECK(!body_has(&v, "HP-Outer"));
	verdict_clear(&v);
	session_free(s);
	/* a rule's hide_subject = "no" keeps it in clear, protected all the same */
	s = mkmsg_conf("milter: { socket = \"unix:/tmp/x.sock\"; };\n"
	    "policy: { internal_domains = [ \"example.com\" ];\n"
	    "  rules = ( { match = \"partner.example\"; hide_subject = \"no\"; } ); };\n",
	    &c2, carol);
	CHECK(s != NULL);
	verdict_init(&v);
	outbound_eom(s, &v);
	CHECK_EQ_STR(v.action_name, "sign+encrypt");
	CHECK_EQ_INT(count_subject_changes(&v, NULL), 0);
	CHECK(reader_gets(&v, "carol@partner.example", "\r\nHP-Outer: Subject: test\r\n"));
	verdict_clear(&v);
	session_free(s);
	conf_unref(c2);
}

/* a subject tag is removed from the protected Subject too; outside it is "[...]" */
TEST(subject_tag_removed_inside)
{
	const char *carol[] = { "carol@partner.example", NULL };
	struct kmilter_conf *c2 = NULL;
	struct session *s;
	struct verdict v;

	CHECK(setup());
	s = mkmsg_conf("milter: { socket = \"unix:/tmp/x.sock\"; };\n"
	    "policy: { internal_domains = [ \"example.com\" ];\n"
	    "  outbound: { subject_tag = \"[secure]\"; }; };\n", &c2, carol);
	CHECK(s != NULL);
	for (int i = 0; i < s->msg->nheaders; i++)
		if (strcmp(s->msg->headers[i].name, "Subject") == 0) {
			free(s->msg->headers[i].value);
			CHECK((s->msg->headers[i].value = strdup("[secure] plans")) != NULL);
		}
	verdict_init(&v);
	outbound_eom(s, &v);
	CHECK_EQ_STR(v.action_name, "sign+encrypt");
	CHECK(reader_gets(&v, "carol@partner.example", "\r\nSubject: plans\r\n"));
	CHECK(!reader_gets(&v, "carol@partner.example", "[secure]"));
	/* the tag's removal, then "[...]": the last change of Subject 1 wins */
	CHECK_EQ_STR(v.changes[v.nchanges - 1].name, "Subject");
	CHECK_EQ_STR(v.changes[v.nchanges - 1].value, "[...]");
	verdict_clear(&v);
	session_free(s);
	conf_unref(c2);
}

/*
 * signed_cms - the CMS of a signed-only verdict: its new Content-Type
 * and body read back by OpenSSL
 */
static CMS_ContentInfo *
signed_cms(const struct verdict *v)
{
	const char *ct = ctype_change(v);
	BIO *in, *cont = NULL;
	CMS_ContentInfo *cms = NULL;

	if (ct == NULL || v->body == NULL || (in = BIO_new(BIO_s_mem())) == NULL)
		return NULL;
	if (BIO_printf(in, "Content-Type: %s\r\n\r\n", ct) > 0 &&
	    BIO_write(in, v->body, (int)v->bodylen) == (int)v->bodylen)
		cms = SMIME_read_CMS(in, &cont);
	BIO_free(cont);
	BIO_free(in);
	return cms;
}

/* enckeypref - does the verdict's signature name cert as its encKeyPref? 1, 0, -1 none */
static int
enckeypref(const struct verdict *v, X509 *cert)
{
	struct smime_signer_certs sc;
	struct smime_verify_result r;
	struct kmerr err;
	int named = -1;

	if (ctype_change(v) == NULL || v->body == NULL)
		return -2;
	if (smime_verify_certs(ctype_change(v), (const char *)v->body, v->bodylen,
	    NULL, NULL, &r, NULL, &sc, &err) == KM_OK && sc.has_pref)
		named = sc.pref != NULL && X509_cmp(sc.pref, cert) == 0;
	smime_signer_certs_clear(&sc);
	return named;
}

/* policy.outbound.publish_cert: the sender's certificate named in its signature, or not */
TEST(signature_publishes_sender_cert)
{
	const char *bob[] = { "bob@partner.example", NULL };
	struct fixture_id *alice;
	struct kmilter_conf *c2 = NULL;
	CMS_ContentInfo *cms;
	struct session *s;
	struct verdict v;

	CHECK(setup());	/* a fake key store that cannot be made is a failure */
	alice = fixture_find(ids, "alice@example.com");
	CHECK(alice != NULL);
	CHECK((s = mkmsg(bob, "text/plain", "hello " SECRET "\r\n")) != NULL);
	verdict_init(&v);
	outbound_eom(s, &v);
	CHECK_EQ_STR(v.action_name, "sign");
	CHECK((cms = signed_cms(&v)) != NULL);
	CHECK_EQ_INT(enckeypref(&v, alice->cert), 1);
	CMS_ContentInfo_free(cms);
	verdict_clear(&v);
	session_free(s);

	s = mkmsg_conf("milter: { socket = \"unix:/tmp/x.sock\"; };\n"
	    "policy: { internal_domains = [ \"example.com\" ];\n"
	    "  outbound: { publish_cert = false; }; };\n", &c2, bob);
	CHECK(s != NULL);
	verdict_init(&v);
	outbound_eom(s, &v);
	CHECK_EQ_STR(v.action_name, "sign");
	CHECK_EQ_INT(v.downgraded, 1);	/* bob has no certificate, as above */
	CHECK((cms = signed_cms(&v)) != NULL);
	CHECK_EQ_INT(enckeypref(&v, alice->cert), -1);
	CMS_ContentInfo_free(cms);
	verdict_clear(&v);
	session_free(s);
	conf_unref(c2);
}

/* ---- missing_cert = "split" at RCPT ---- */

#define SPLIT_CONF(outbound) "milter: { socket = \"unix:/tmp/x.sock\"; };\n" \
	"policy: { internal_domains = [ \"example.com\" ];\n" \
	"  outbound: { " outbound " };\n" \
	"  rules = ( { match = \"secure.example\"; encrypt = \"mandatory\"; },\n" \
	"    { match = \"plain.example\"; encrypt = \"never\"; },\n" \
	"    { match = \"partner.example\"; encrypt = \"opportunistic\"; } ); };\n"

/*
 * rcpt_codes - a session under conf text ctext; alice's message gets
 * rcpts one RCPT at a time, each answered by outbound_rcpt() ("250" for
 * accepted; a refused one is dropped, as callbacks.c does).  codes gets
 * "code xcode" per recipient; returns the session (its message holds the
 * accepted recipients), or NULL.
 */
static struct session *
rcpt_codes(const char *ctext, const char **rcpts, char codes[][16], char *lastreply,
    size_t replylen)
{
	struct kmilter_conf *c;
	struct session *s;
	char err[512];

	if ((c = conf_load_string(ctext, "split.conf", err, sizeof(err))) == NULL) {
		printf("    conf: %s\n", err);
		return NULL;
	}
	s = session_new(c, NULL, "localhost");
	conf_unref(c);
	if (s == NULL || session_message_begin(s, "<alice@example.com>", NULL) != KM_OK)
		return session_free(s);
	message_set_queue_id(s->msg, "TESTSPLIT");
	for (int i = 0; rcpts[i]; i++) {
		const char *rcode = NULL, *xcode = NULL;
		char reply[512];

		if (message_add_rcpt(s->msg, rcpts[i]) != KM_OK)
			return session_free(s);
		if (outbound_rcpt(s, s->msg->nrcpts - 1, reply, sizeof(reply), &rcode,
		    &xcode) == KM_OK) {
			snprintf(codes[i], 16, "250");
			continue;
		}
		snprintf(codes[i], 16, "%s %s", rcode ? rcode : "?", xcode ? xcode : "?");
		snprintf(lastreply, replylen, "%s", reply);
		message_drop_last_rcpt(s->msg);
	}
	return s;
}

TEST(split_cert_first_then_nocert_452)
{
	const char *rc[] = { "carol@partner.example", "bob@partner.example",
	    "dave@secure.example", "x@plain.example", NULL };
	char codes[4][16], reply[512] = "";
	struct session *s;
	struct verdict v;

	CHECK(setup());
	CHECK((s = rcpt_codes(SPLIT_CONF("missing_cert = \"split\";"), rc, codes, reply,
	    sizeof(reply))) != NULL);
	CHECK_EQ_STR(codes[0], "250");
	CHECK_EQ_STR(codes[1], "452 4.5.3");	/* no certificate */
	CHECK_EQ_STR(codes[2], "250");		/* mandatory with a certificate */
	CHECK_EQ_STR(codes[3], "452 4.5.3");	/* rule never: signed only */
	CHECK(strstr(reply, "<x@plain.example>") != NULL);
	CHECK(strstr(reply, "send it separately") != NULL);
	CHECK_EQ_INT(s->msg->nrcpts, 2);
	/* what stays is encrypted to everyone in it, not a downgrade */
	CHECK(message_add_header(s->msg, "From", "alice@example.com") == KM_OK);
	CHECK(message_add_header(s->msg, "Content-Type", "text/plain") == KM_OK);
	CHECK(message_append_body(s->msg, (const unsigned char *)SECRET "\r\n",
	    strlen(SECRET) + 2, &(struct kmerr){ 0 }) == KM_OK);
	verdict_init(&v);
	outbound_eom(s, &v);
	CHECK_EQ_STR(v.action_name, "sign+encrypt");
	CHECK_EQ_INT(v.downgraded, 0);
	CHECK(reader_gets_secret(&v, "carol@partner.example"));
	CHECK(reader_gets_secret(&v, "dave@secure.example"));
	verdict_clear(&v);
	session_free(s);
}

TEST(split_nocert_first_then_cert_452)
{
	const char *rc[] = { "bob@partner.example", "carol@partner.example",
	    "x@plain.example", "nocert@secure.example", NULL };
	char codes[4][16], reply[512] = "";
	struct session *s;
	struct verdict v;

	CHECK(setup());
	CHECK((s = rcpt_codes(SPLIT_CONF("missing_cert = \"split\";"), rc, codes, reply,
	    sizeof(reply))) != NULL);
	CHECK_EQ_STR(codes[0], "250");
	CHECK_EQ_STR(codes[1], "452 4.5.3");	/* carol could be encrypted to */
	CHECK_EQ_STR(codes[2], "250");		/* never: signed only, like bob */
	CHECK_EQ_STR(codes[3], "550 5.7.1");	/* mandatory without: refused, not split */
	CHECK_EQ_INT(s->msg->nrcpts, 2);
	CHECK(message_add_header(s->msg, "From", "alice@example.com") == KM_OK);
	CHECK(message_add_header(s->msg, "Content-Type", "text/plain") == KM_OK);
	CHECK(message_append_body(s->msg, (const unsigned char *)SECRET "\r\n",
	    strlen(SECRET) + 2, &(struct kmerr){ 0 }) == KM_OK);
	verdict_init(&v);
	outbound_eom(s, &v);
	CHECK_EQ_STR(v.action_name, "sign");
	verdict_clear(&v);
	session_free(s);
}

TEST(split_only_when_it_matters)
{
	const char *rc[] = { "carol@partner.example", "bob@partner.example",
	    "x@plain.example", NULL };
	const char *settings[] = { "missing_cert = \"sign-only\";",
	    "missing_cert = \"split\"; encrypt = \"never\";", NULL };
	char codes[3][16], reply[512];
	struct session *s;

	CHECK(setup());
	for (int k = 0; settings[k]; k++) {
		char ctext[1024];

		snprintf(ctext, sizeof(ctext), SPLIT_CONF("%s"), settings[k]);
		CHECK((s = rcpt_codes(ctext, rc, codes, reply, sizeof(reply))) != NULL);
		/* encrypt = never: a rule's opportunistic does not encrypt (outbound_eom) */
		for (int i = 0; i < 3; i++)
			CHECK_EQ_STR(codes[i], "250");
		session_free(s);
	}
}

/* a first recipient accepted before the message was outbound is classified later */
TEST(split_first_rcpt_classified_late)
{
	const char *none[] = { NULL };
	const char *rcode = NULL, *xcode = NULL;
	char codes[1][16], reply[512];
	struct session *s;

	CHECK(setup());
	CHECK((s = rcpt_codes(SPLIT_CONF("missing_cert = \"split\";"), none, codes, reply,
	    sizeof(reply))) != NULL);
	CHECK(message_add_rcpt(s->msg, "bob@partner.example") == KM_OK);	/* not asked */
	CHECK(message_add_rcpt(s->msg, "carol@partner.example") == KM_OK);
	CHECK_EQ_INT(outbound_rcpt(s, 1, reply, sizeof(reply), &rcode, &xcode), KM_TEMPFAIL);
	CHECK_EQ_STR(rcode, "452");
	CHECK_EQ_STR(xcode, "4.5.3");
	session_free(s);
}

/* ---- streaming: a body in a spool file gives the same entity as one in memory ---- */

/* verdict_body - the verdict's new body, from memory or its spool (malloc'd) */
static unsigned char *
verdict_body(const struct verdict *v, size_t *len)
{
	unsigned char *p;
	size_t got, off = 0;
	struct kmerr err;

	if (v->body != NULL) {
		*len = v->bodylen;
		if ((p = malloc(v->bodylen + 1)) != NULL)
			memcpy(p, v->body, v->bodylen);
		return p;
	}
	if (v->bodyspool == NULL)
		return NULL;
	*len = spool_size(v->bodyspool);
	if ((p = malloc(*len + 1)) == NULL)
		return NULL;
	while (off < *len && spool_read(v->bodyspool, off, p + off, *len - off, &got,
	    &err) == KM_OK && got > 0)
		off += got;
	return off == *len ? p : (free(p), NULL);
}

/*
 * opened - what carol reads: the verdict's body decrypted with her key,
 * then its signature checked (signer's certificate as found in it, no
 * chain check: only the content matters here); the signed content, or NULL
 */
static BUF_MEM *
opened(const struct verdict *v)
{
	struct fixture_id *id = fixture_find(ids, "carol@partner.example");
	BIO *in = NULL, *b64, *plain = NULL, *content = NULL, *out = NULL;
	CMS_ContentInfo *cms = NULL, *sig = NULL;
	unsigned char *body;
	BUF_MEM *got = NULL, *res = NULL;
	size_t len;

	if ((body = verdict_body(v, &len)) == NULL)
		return NULL;
	in = BIO_new_mem_buf(body, (int)len);
	b64 = BIO_new(BIO_f_base64());
	in = BIO_push(b64, in);
	if ((cms = d2i_CMS_bio(in, NULL)) == NULL || (plain = BIO_new(BIO_s_mem())) == NULL ||
	    CMS_decrypt(cms, id->key, id->cert, NULL, plain, 0) != 1) {
		printf("    cannot decrypt\n");
		ERR_print_errors_fp(stdout);
		goto out;
	}
	BIO_set_mem_eof_return(plain, 0);	/* end of data, not "retry" (opaque BER) */
	if ((sig = SMIME_read_CMS(plain, &content)) == NULL ||
	    (out = BIO_new(BIO_s_mem())) == NULL ||
	    CMS_verify(sig, NULL, NULL, content, out, CMS_NO_SIGNER_CERT_VERIFY |
	    CMS_BINARY) != 1) {
		printf("    cannot verify\n");
		ERR_print_errors_fp(stdout);
		goto out;
	}
	BIO_get_mem_ptr(out, &got);
	if ((res = BUF_MEM_new()) != NULL && BUF_MEM_grow(res, got->length) > 0)
		memcpy(res->data, got->data, got->length);
out:
	ERR_clear_error();
	BIO_free_all(in);
	BIO_free(plain);
	BIO_free(content);
	BIO_free(out);
	CMS_ContentInfo_free(cms);
	CMS_ContentInfo_free(sig);
	free(body);
	return res;
}

/* big_body - a body of about n bytes: lines with bare LF and 8-bit bytes, SECRET at the end */
static char *
big_body(const char *first, size_t n)
{
	char *b = malloc(n + 256);
	size_t o = strlen(first);

	if (b == NULL)
		return NULL;
	memcpy(b, first, o);
	for (int i = 0; o < n; i++)
		o += (size_t)sprintf(b + o, i % 3 ? "line %d of the big body\r\n" :
		    "line %d, bare LF, caf\xc3\xa9\n", i);
	strcpy(b + o, "\r\n--XyZ--\r\n" + (strncmp(first, "--XyZ", 5) ? 11 : 0));
	o = strlen(b);
	snprintf(b + o, 256, "%s\r\n", SECRET);
	return b;
}

/* one_way - outbound_eom over body, spooled in memory or to a file; what carol reads */
static BUF_MEM *
one_way(const char *ctype, const char *body, int on_disk, int *was_disk, const char *stype)
{
	const char *rc[] = { "carol@partner.example", NULL };
	int memmax = conf->spool_memory_max;
	struct session *s;
	struct verdict v;
	BUF_MEM *r = NULL;

	conf->spool_memory_max = on_disk ? 4096 : 64 << 20;
	s = mkmsg(rc, ctype, body);
	conf->spool_memory_max = memmax;
	if (s == NULL)
		return NULL;
	*was_disk = spool_on_disk(s->msg->body);
	verdict_init(&v);
	outbound_eom(s, &v);
	if (v.kind == VERDICT_REWRITE && strcmp(v.action_name, "sign+encrypt") == 0 &&
	    (v.bodyspool != NULL) == on_disk && ctype_change(&v) != NULL &&
	    strstr(ctype_change(&v), stype) != NULL)
		r = opened(&v);
	else
		printf("    kind %d action %s result %s\n", v.kind, v.action_name, v.result);
	verdict_clear(&v);
	session_free(s);
	return r;
}

TEST(streamed_same_as_memory)
{
	static const char *mixed_first =
	    "--XyZ\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nthe text part\r\n"
	    "--XyZ\r\nContent-Type: application/octet-stream\r\n\r\n";
	static const struct { const char *ctype, *first; int cipher, sigform; } cases[] = {
		{ "text/plain; charset=utf-8", "plain text start\n", CIPHER_AES256_CBC,
		    SIGFORM_DETACHED },
		{ "multipart/mixed; boundary=\"XyZ\"", NULL, CIPHER_AES256_CBC,
		    SIGFORM_DETACHED },
		{ "text/plain; charset=utf-8", "GCM, opaque\n", CIPHER_AES256_GCM,
		    SIGFORM_OPAQUE },
	};
	int cipher, sigform;

	CHECK(setup());	/* a fake key store that cannot be made is a failure */
	cipher = conf->out_cipher;
	sigform = conf->out_signature;
	free(conf->spool_dir);
	CHECK((conf->spool_dir = strdup("/tmp")) != NULL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *body = big_body(cases[i].first ? cases[i].first : mixed_first,
		    300 * 1024);
		BUF_MEM *mem, *disk;
		const char *stype;
		int d_mem = -1, d_disk = -1;

		CHECK(body != NULL);
		conf->out_cipher = cases[i].cipher;
		conf->out_signature = cases[i].sigform;
		stype = cases[i].cipher == CIPHER_AES256_GCM ? "smime-type=authEnveloped-data" :
		    "smime-type=enveloped-data";
		mem = one_way(cases[i].ctype, body, 0, &d_mem, stype);
		disk = one_way(cases[i].ctype, body, 1, &d_disk, stype);
		conf->out_cipher = cipher;
		conf->out_signature = sigform;
		CHECK_EQ_INT(d_mem, 0);
		CHECK_EQ_INT(d_disk, 1);	/* the streaming path was taken */
		CHECK(mem != NULL && disk != NULL);
		/* the same entity, byte for byte: headers protected, CRLF, SECRET at the end */
		CHECK_EQ_INT((int)disk->length, (int)mem->length);
		CHECK(memcmp(disk->data, mem->data, mem->length) == 0);
		CHECK(memmem(disk->data, disk->length, SECRET "\r\n", strlen(SECRET) + 2) != NULL);
		CHECK(memmem(disk->data, disk->length, "hp=\"cipher\"", 11) != NULL);
		/* the Legacy Display Element: in front of the text, or in the first part */
		CHECK(memmem(disk->data, disk->length, "hp-legacy-display=\"1\"", 21) != NULL);
		CHECK(memmem(disk->data, disk->length, "bare LF, caf\xc3\xa9\r\n", 16) != NULL);
		BUF_MEM_free(mem);
		BUF_MEM_free(disk);
		free(body);
	}
}

/* cpu_ms - process CPU time in ms */
static double
cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* eom_ms - CPU ms per outbound_eom of body (sign + encrypt to carol), n times */
static double
eom_ms(const char *body, int on_disk, int n)
{
	const char *rc[] = { "carol@partner.example", NULL };
	int memmax = conf->spool_memory_max, ok = 1;
	double t = 0;

	for (int i = 0; i < n && ok; i++) {
		struct session *s;
		struct verdict v;
		double t0;

		conf->spool_memory_max = on_disk ? 4096 : 64 << 20;
		s = mkmsg(rc, "text/plain", body);
		conf->spool_memory_max = memmax;
		if (s == NULL)
			return -1;
		verdict_init(&v);
		t0 = cpu_ms();
		outbound_eom(s, &v);
		t += cpu_ms() - t0;
		ok = v.kind == VERDICT_REWRITE && (v.bodyspool != NULL) == on_disk;
		verdict_clear(&v);
		session_free(s);
	}
	return ok ? t / n : -1;
}

/*
 * A 20 KB message costs about as much streamed as in memory: the
 * figure that decides which path small messages take (outbound.c keeps
 * bodies in memory below milter.spool_memory_max).
 */
TEST(small_message_cost_figure)
{
	char *body = big_body("20 KB\r\n", 20 * 1024);
	double mem, disk;

	CHECK(setup());	/* a fake key store that cannot be made is a failure */
	free(conf->spool_dir);
	CHECK((conf->spool_dir = strdup("/tmp")) != NULL);
	CHECK(body != NULL);
	eom_ms(body, 0, 5);	/* warm up */
	mem = eom_ms(body, 0, 100);
	disk = eom_ms(body, 1, 100);
	CHECK(mem > 0 && disk > 0);
	printf("    FIGURE outbound_eom CPU for 20 KB sign+encrypt: in memory %.3f ms, "
	    "streamed from a spool file %.3f ms (ratio %.2f)\n", mem, disk, disk / mem);
	free(body);
}

static const struct test_case tests[] = {
	T(mandatory_without_cert_rejects),
	T(encrypted_headers_protected_subject_hidden),
	T(subject_tag_removed_inside),
	T(opportunistic_without_cert_downgraded),
	T(every_rcpt_with_cert_encrypted),
	T(enveloped_label_on_plaintext_encrypted_anyway),
	T(plaintext_wiped_before_free),
	T(rule_sign_yes_over_outbound_sign_no),
	T(signature_publishes_sender_cert),
	T(split_cert_first_then_nocert_452),
	T(split_nocert_first_then_cert_452),
	T(split_only_when_it_matters),
	T(split_first_rcpt_classified_late),
	T(streamed_same_as_memory),
	T(small_message_cost_figure),
	{ 0 }
};

int
main(int argc, char **argv)
{
	int rc = harness_main(argc, argv, tests);

	keystore_free(fake_ks);		/* its seal key sits in secmem, which LSan does not scan */
	return rc;
}
