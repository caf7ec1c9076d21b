/*
 * test_smime.c - unit tests for milter/smime.c: round trips of every
 * option, RSA and EC (P-256) recipients, wrong keys, tampering, malformed
 * input, nested messages and concurrent use; the signed attributes
 * (SMIMECapabilities, SMIMEEncryptionKeyPreference) and the published
 * encryption certificate, checked against DER written out by hand.  The PKI (a CA, an untrusted
 * CA and users) is generated at test time with OpenSSL's C API.
 */
#include <pthread.h>
#include <time.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "fixture.h"
#include "harness.h"

#include "mime.h"
#include "smime.h"
#include "smime_verify.h"

struct ident {
	X509		*cert;
	EVP_PKEY	*key;
};

static struct ident ca, other_ca, alice_rsa, alice_ec, bob_rsa, bob_ec,
    mallory, alice_enc;
static X509_STORE *store;
static int pki_ready = -1;

static const char entity[] =
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "\r\n"
    "Hello Bob,\r\n"
    "this is the secret plan.\r\n"
    "-- \r\n"
    "Alice\r\n";

/* make_ident - a key pair and a certificate (self-signed when no issuer) */
static int
make_ident(struct ident *id, const char *cn, const char *email, int ec,
    const struct ident *issuer)
{
	static long serial = 100;
	struct fixture_cert spec = { .org = "kmilter unit", .cn = cn,
	    .keyids = 1, .notbefore = -3600, .notafter = 86400L * 365 };

	spec.serial = serial++;
	if (issuer == NULL) {
		spec.bc = "critical,CA:TRUE";
		spec.ku = "critical,keyCertSign,cRLSign";
	} else {
		spec.bc = "CA:FALSE";
		spec.ku = ec ? "critical,digitalSignature,keyAgreement" :
		    "critical,digitalSignature,keyEncipherment";
		spec.eku = "emailProtection";
		spec.san = email;
	}
	id->key = ec ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048);
	if (id->key == NULL)
		return 0;
	id->cert = fixture_cert(id->key, &spec, issuer ? issuer->cert : NULL,
	    issuer ? issuer->key : NULL);
	return id->cert != NULL;
}

/* pki - build the test PKI once; 1 when ready (a case CHECKs it: no skip) */
static int
pki(void)
{
	if (pki_ready != -1)
		return pki_ready;
	pki_ready = make_ident(&ca, "unit CA", NULL, 0, NULL) &&
	    make_ident(&other_ca, "other CA", NULL, 0, NULL) &&
	    make_ident(&alice_rsa, "alice-rsa", "alice@example.org", 0, &ca) &&
	    make_ident(&alice_ec, "alice-ec", "alice@example.org", 1, &ca) &&
	    make_ident(&bob_rsa, "bob-rsa", "bob@example.org", 0, &ca) &&
	    make_ident(&bob_ec, "bob-ec", "bob@example.org", 1, &ca) &&
	    make_ident(&mallory, "mallory", "mallory@example.org", 0,
	    &other_ca) && make_ident(&alice_enc, "alice-enc",
	    "alice@example.org", 0, &ca) && (store = X509_STORE_new()) != NULL &&
	    X509_STORE_add_cert(store, ca.cert) == 1;
	if (!pki_ready)
		ERR_print_errors_fp(stdout);
	return pki_ready;
}

/* mem - the bytes of a memory BIO as a NUL-terminated copy */
static char *
mem(BIO *b, size_t *len)
{
	char *p, *c;
	long n = BIO_get_mem_data(b, &p);

	if ((c = malloc((size_t)n + 1)) == NULL)
		return NULL;
	memcpy(c, p, (size_t)n);
	c[n] = '\0';
	*len = (size_t)n;
	return c;
}

/* do_sign - sign entity, return the output entity */
static char *
do_sign(const char *in, size_t inlen, struct ident *id,
    enum smime_digest md, enum smime_sign_mode mode, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());
	struct kmerr err = { 0 };
	char *r = NULL;

	if (smime_sign(in, inlen, id->cert, id->key, NULL, md, mode, b, &err) == KM_OK)
		r = mem(b, len);
	else
		printf("    sign: %s\n", err.msg);
	BIO_free(b);
	return r;
}

/* do_encrypt - encrypt entity to the given certificates */
static char *
do_encrypt(const char *in, size_t inlen, X509 **rc, size_t n,
    enum smime_cipher c, enum smime_padding p, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());
	struct kmerr err = { 0 };
	char *r = NULL;

	if (smime_encrypt(in, inlen, rc, n, c, p, b, &err) ==
	    KM_OK)
		r = mem(b, len);
	else
		printf("    encrypt: %s\n", err.msg);
	BIO_free(b);
	return r;
}

/* do_decrypt - decrypt with one candidate, returns status and output */
static enum km_status
do_decrypt(const char *in, size_t inlen, struct ident *id, char **out,
    size_t *outlen, struct kmerr *err)
{
	struct smime_keypair kp = { id->cert, id->key };
	BIO *b = BIO_new(BIO_s_mem());
	enum km_status st;
	int matched = -2;

	*out = NULL;
	st = smime_decrypt(NULL, in, inlen, &kp, 1, b, &matched, err);
	if (st == KM_OK && matched == 0)
		*out = mem(b, outlen);
	BIO_free(b);
	return st;
}

TEST(sign_detached_roundtrip_all_digests)
{
	static const enum smime_digest mds[] = { SMIME_MD_SHA256,
	    SMIME_MD_SHA384, SMIME_MD_SHA512 };
	static const char *micalg[] = { "micalg=sha-256", "micalg=sha-384",
	    "micalg=sha-512" };
	static const char *dname[] = { "sha256", "sha384", "sha512" };

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	for (int i = 0; i < 3; i++) {
		struct smime_verify_result r;
		size_t len = 0, clen = 0;
		struct kmerr err = { 0 };
		char *c;
		char *s = do_sign(entity, sizeof(entity) - 1, &alice_rsa,
		    mds[i], SMIME_MODE_DETACHED, &len);
		BIO *cb = BIO_new(BIO_s_mem());

		CHECK(s != NULL);
		CHECK(strncmp(s, "Content-Type: multipart/signed;", 31) == 0);
		CHECK(strstr(s, micalg[i]) != NULL);
		CHECK(strstr(s, "protocol=\"application/pkcs7-signature\"") !=
		    NULL);
		/* The signed entity appears unchanged, byte for byte. */
		CHECK(strstr(s, entity) != NULL);
		CHECK(strstr(s, "name=\"smime.p7s\"") != NULL);
		CHECK_EQ_INT(smime_verify(NULL, s, len, store,
		    "Alice <ALICE@example.org>", &r, cb, &err),
		    KM_OK);
		CHECK_EQ_INT(r.sig_ok, 1);
		CHECK_EQ_INT(r.chain_ok, 1);
		CHECK_EQ_INT(r.from_match, 1);
		CHECK_EQ_INT(r.opaque, 0);
		CHECK_EQ_INT(r.nsigners, 1);
		CHECK_EQ_STR(r.email, "alice@example.org");
		CHECK_EQ_STR(r.digest, dname[i]);
		CHECK(strstr(r.subject, "CN=alice-rsa") != NULL);
		CHECK_EQ_INT(strlen(r.fingerprint), 64);
		CHECK(r.signing_time > time(NULL) - 600 &&
		    r.signing_time <= time(NULL) + 5);
		c = mem(cb, &clen);
		CHECK_EQ_INT(clen, sizeof(entity) - 1);
		CHECK(memcmp(c, entity, clen) == 0);
		free(c);
		free(s);
		BIO_free(cb);
	}
}

TEST(sign_opaque_roundtrip_ec)
{
	struct smime_verify_result r;
	size_t len = 0, clen = 0;
	struct kmerr err = { 0 };
	char *c, *s;
	BIO *cb = BIO_new(BIO_s_mem());

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	s = do_sign(entity, sizeof(entity) - 1, &bob_ec, SMIME_MD_SHA256,
	    SMIME_MODE_OPAQUE, &len);
	CHECK(s != NULL);
	CHECK(strstr(s, "smime-type=signed-data") != NULL);
	CHECK(strstr(s, "Hello Bob") == NULL);	/* inside the CMS */
	CHECK_EQ_INT(smime_verify(NULL, s, len, store, "alice@example.org",
	    &r, cb, &err), KM_OK);
	CHECK_EQ_INT(r.sig_ok, 1);
	CHECK_EQ_INT(r.chain_ok, 1);
	CHECK_EQ_INT(r.opaque, 1);
	CHECK_EQ_INT(r.from_match, 0);		/* bob signed, From is alice */
	CHECK_EQ_STR(r.email, "bob@example.org");
	c = mem(cb, &clen);
	CHECK_EQ_INT(clen, sizeof(entity) - 1);
	CHECK(memcmp(c, entity, clen) == 0);
	free(c);
	free(s);
	BIO_free(cb);
}

/*
 * signed_cms - the CMS of a signed entity (multipart/signed or opaque),
 * parsed by OpenSSL itself, not by kmilter's reader
 */
static CMS_ContentInfo *
signed_cms(const char *s, size_t len)
{
	BIO *in = BIO_new_mem_buf(s, (int)len), *cont = NULL;
	CMS_ContentInfo *cms = in ? SMIME_read_CMS(in, &cont) : NULL;

	BIO_free(cont);
	BIO_free(in);
	return cms;
}

/* attr_der - the DER of the first value of the signer's attribute nid */
static int
attr_der(CMS_ContentInfo *cms, int nid, unsigned char **der)
{
	CMS_SignerInfo *si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
	int i = si ? CMS_signed_get_attr_by_NID(si, nid, -1) : -1;
	X509_ATTRIBUTE *a = i >= 0 ? CMS_signed_get_attr(si, i) : NULL;

	*der = NULL;
	if (a == NULL || X509_ATTRIBUTE_count(a) != 1)
		return -1;
	return i2d_ASN1_TYPE(X509_ATTRIBUTE_get0_type(a, 0), der);
}

/* has_cert - is x in the CMS's certificate set? */
static int
has_cert(CMS_ContentInfo *cms, X509 *x)
{
	STACK_OF(X509) *certs = CMS_get1_certs(cms);
	int found = 0;

	for (int i = 0; certs != NULL && i < sk_X509_num(certs); i++)
		found |= X509_cmp(sk_X509_value(certs, i), x) == 0;
	sk_X509_pop_free(certs, X509_free);
	return found;
}

/*
 * SMIMECapabilities as RFC 8551 2.5.2 and RFC 3565/5084/4055 spell them,
 * written out by hand: aes256-GCM, aes256-CBC, aes128-CBC (parameters
 * absent), then rSAES-OAEP with SHA-256 and MGF1-SHA-256.
 */
static const unsigned char caps_der[] = {
	0x30, 0x61,
	0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2e,
	0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a,
	0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02,
	0x30, 0x38, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07,
	0x30, 0x2b,
	0xa0, 0x0d, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
	0x02, 0x01,
	0xa1, 0x1a, 0x30, 0x18, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
	0x01, 0x08, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
	0x02, 0x01,
};

/* enckeypref_expected - [0] IMPLICIT IssuerAndSerialNumber of x, by hand */
static size_t
enckeypref_expected(X509 *x, unsigned char *buf, size_t size)
{
	unsigned char *name = NULL, *serial = NULL;
	int nlen = i2d_X509_NAME(X509_get_issuer_name(x), &name);
	int slen = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &serial);
	size_t n = 0, body = (size_t)nlen + (size_t)slen;

	if (nlen > 0 && slen > 0 && body < 0x80 && body + 2 <= size) {
		buf[n++] = 0xa0;
		buf[n++] = (unsigned char)body;
	} else if (nlen > 0 && slen > 0 && body < 0x100 && body + 3 <= size) {
		buf[n++] = 0xa0;
		buf[n++] = 0x81;
		buf[n++] = (unsigned char)body;
	}
	if (n > 0) {
		memcpy(buf + n, name, (size_t)nlen);
		memcpy(buf + n + nlen, serial, (size_t)slen);
		n += body;
	}
	OPENSSL_free(name);
	OPENSSL_free(serial);
	return n;
}

TEST(sign_publishes_encryption_certificate)
{
	STACK_OF(X509) *chain = sk_X509_new_null();
	struct smime_publish pub = { NULL, chain };
	static const enum smime_sign_mode modes[] = { SMIME_MODE_DETACHED,
	    SMIME_MODE_OPAQUE };

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	CHECK(chain != NULL && sk_X509_push(chain, ca.cert));
	pub.enc = alice_enc.cert;
	for (int m = 0; m < 2; m++) {
		BIO *b = BIO_new(BIO_s_mem()), *cb = BIO_new(BIO_s_mem());
		struct smime_verify_result r;
		struct kmerr err = { 0 };
		struct smime_signer_certs sc;
		CMS_ContentInfo *cms;
		unsigned char *der, want[512];
		size_t len = 0, wlen;
		char *s;
		int n;

		CHECK_EQ_INT(smime_sign_publish(entity, sizeof(entity) - 1,
		    alice_rsa.cert, alice_rsa.key, NULL, &pub, SMIME_MD_SHA256,
		    modes[m], b, &err), KM_OK);
		CHECK((s = mem(b, &len)) != NULL);
		/* Still a good signature with the new attributes. */
		CHECK_EQ_INT(smime_verify(NULL, s, len, store, "alice@example.org",
		    &r, cb, &err), KM_OK);
		CHECK_EQ_INT(r.sig_ok, 1);
		CHECK_EQ_INT(r.chain_ok, 1);
		CHECK_EQ_STR(r.email, "alice@example.org");
		CHECK((cms = signed_cms(s, len)) != NULL);
		/* The set: the signer, the encryption certificate, the CA. */
		CHECK(has_cert(cms, alice_rsa.cert));
		CHECK(has_cert(cms, alice_enc.cert));
		CHECK(has_cert(cms, ca.cert));
		/* encKeyPref names the encryption certificate, DER as by hand. */
		n = attr_der(cms, NID_id_smime_aa_encrypKeyPref, &der);
		wlen = enckeypref_expected(alice_enc.cert, want, sizeof(want));
		CHECK(wlen > 0);
		CHECK_EQ_INT(n, (int)wlen);
		CHECK(der != NULL && memcmp(der, want, wlen) == 0);
		OPENSSL_free(der);
		/* kmilter's own reader (harvesting) finds it by that name. */
		CHECK_EQ_INT(smime_verify_certs(NULL, s, len, store, NULL, &r,
		    NULL, &sc, &err), KM_OK);
		CHECK(sc.has_pref && sc.pref != NULL &&
		    X509_cmp(sc.pref, alice_enc.cert) == 0);
		smime_signer_certs_clear(&sc);
		/* SMIMECapabilities: ours, strongest first, DER as by hand. */
		n = attr_der(cms, NID_SMIMECapabilities, &der);
		CHECK_EQ_INT(n, (int)sizeof(caps_der));
		CHECK(der != NULL && memcmp(der, caps_der, sizeof(caps_der)) == 0);
		OPENSSL_free(der);
		CMS_ContentInfo_free(cms);
		free(s);
		BIO_free(b);
		BIO_free(cb);
	}
	sk_X509_free(chain);
}

TEST(sign_without_publish_has_caps_only)
{
	unsigned char *der;
	size_t len = 0;
	CMS_ContentInfo *cms;
	char *s;

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	s = do_sign(entity, sizeof(entity) - 1, &alice_rsa, SMIME_MD_SHA256,
	    SMIME_MODE_DETACHED, &len);
	CHECK(s != NULL);
	CHECK((cms = signed_cms(s, len)) != NULL);
	CHECK(has_cert(cms, alice_rsa.cert));
	CHECK(!has_cert(cms, alice_enc.cert));
	CHECK_EQ_INT(attr_der(cms, NID_id_smime_aa_encrypKeyPref, &der), -1);
	CHECK_EQ_INT(attr_der(cms, NID_SMIMECapabilities, &der),
	    (int)sizeof(caps_der));
	CHECK(der != NULL && memcmp(der, caps_der, sizeof(caps_der)) == 0);
	OPENSSL_free(der);
	CMS_ContentInfo_free(cms);
	free(s);
}

/*
 * signed_with_pref - raw DER opaque signed-data by alice, carrying
 * alice_enc, whose encKeyPref value is the bytes v as they stand
 */
static unsigned char *
signed_with_pref(const char *v, int vlen, int *len)
{
	STACK_OF(X509) *certs = sk_X509_new_null();
	BIO *in = BIO_new_mem_buf("hello\r\n", 7);
	CMS_ContentInfo *cms = NULL;
	CMS_SignerInfo *si;
	unsigned char *der = NULL;

	*len = 0;
	if (certs != NULL && in != NULL && sk_X509_push(certs, alice_enc.cert) &&
	    (cms = CMS_sign(alice_rsa.cert, alice_rsa.key, certs, NULL,
	    CMS_PARTIAL | CMS_BINARY)) != NULL &&
	    (si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0)) != NULL &&
	    CMS_signed_add1_attr_by_NID(si, NID_id_smime_aa_encrypKeyPref,
	    V_ASN1_SEQUENCE, v, vlen) && CMS_final(cms, in, NULL, CMS_BINARY))
		*len = i2d_CMS_ContentInfo(cms, &der);
	ERR_clear_error();
	CMS_ContentInfo_free(cms);
	BIO_free(in);
	sk_X509_free(certs);
	return der;
}

/* Garbage where the encKeyPref value should be: never a preference, no crash. */
TEST(enckeypref_malformed_values)
{
	static const struct {
		const char	*what;
		const char	*der;
		int		 len;
	} bad[] = {
		{ "a SEQUENCE, not [0]", "\x30\x03\x02\x01\x01", 5 },
		{ "the [1] choice", "\xa1\x03\x04\x01\x01", 5 },
		{ "[0] longer than the value", "\xa0\x20\x30\x00", 4 },
		{ "[0] without a serial", "\xa0\x02\x30\x00", 4 },
		{ "[0] naming another serial", "\xa0\x05\x30\x00\x02\x01\x01", 7 },
		{ "[2] empty key identifier", "\x82\x00", 2 },
		{ "a lone tag", "\xa0", 1 },
	};

	int read = 0;

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct smime_signer_certs sc;
		struct smime_verify_result r;
		struct kmerr err = { 0 };
		enum km_status st;
		unsigned char *der;
		int len;

		/* OpenSSL may refuse to write some: then nothing to read. */
		if ((der = signed_with_pref(bad[i].der, bad[i].len, &len)) == NULL)
			continue;
		st = smime_verify_certs(NULL, (const char *)der, (size_t)len,
		    store, NULL, &r, NULL, &sc, &err);
		if (sc.pref != NULL)
			printf("    taken as a preference: %s\n", bad[i].what);
		CHECK(st == KM_OK || st == KM_PROTO);
		CHECK(sc.pref == NULL);
		CHECK(ERR_peek_error() == 0);
		read += st == KM_OK && sc.has_pref;
		smime_signer_certs_clear(&sc);
		OPENSSL_free(der);
	}
	CHECK(read >= 4);	/* most were signatures with the attribute */
}

TEST(sign_canonicalises_lf_and_lines_are_crlf)
{
	const char lf[] = "Content-Type: text/plain\n\nline one\nline two\n";
	const char crlf[] = "Content-Type: text/plain\r\n\r\nline one\r\n"
	    "line two\r\n";
	struct smime_verify_result r;
	size_t len = 0, clen = 0, i;
	struct kmerr err = { 0 };
	char *s, *c;
	BIO *cb = BIO_new(BIO_s_mem());

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	s = do_sign(lf, sizeof(lf) - 1, &alice_rsa, SMIME_MD_SHA256,
	    SMIME_MODE_DETACHED, &len);
	CHECK(s != NULL);
	CHECK(strstr(s, crlf) != NULL);
	/* Every LF of the output is part of a CRLF; base64 lines <= 76. */
	for (i = 0; i < len; i++)
		if (s[i] == '\n')
			CHECK(i > 0 && s[i - 1] == '\r');
	{
		const char *p = strstr(s, "smime.p7s\"\r\nContent-Description");
		size_t col = 0;

		CHECK(p != NULL);
		for (; *p; p++) {
			if (*p == '\r')
				col = 0;
			else if (*p != '\n')
				col++;
			CHECK(col <= 76);
		}
	}
	CHECK_EQ_INT(smime_verify(NULL, s, len, store, NULL, &r, cb, &err), KM_OK);
	CHECK_EQ_INT(r.sig_ok, 1);
	c = mem(cb, &clen);
	CHECK_EQ_INT(clen, sizeof(crlf) - 1);
	CHECK(memcmp(c, crlf, clen) == 0);
	free(c);
	free(s);
	BIO_free(cb);
}

TEST(verify_with_ctype_and_body_apart)
{
	struct smime_verify_result r;
	size_t len = 0, hl = 0, bo = 0;
	struct mime_headers *h = NULL;
	struct kmerr err = { 0 };
	char *s;

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	s = do_sign(entity, sizeof(entity) - 1, &alice_ec, SMIME_MD_SHA256,
	    SMIME_MODE_DETACHED, &len);
	CHECK(s != NULL);
	CHECK_EQ_INT(mime_entity_split(s, len, &hl, &bo, &err),
	    KM_OK);
	CHECK_EQ_INT(mime_headers_parse(s, hl, &h, &err), KM_OK);
	CHECK_EQ_INT(smime_verify(mime_headers_get(h, "content-type"), s + bo,
	    len - bo, store, "alice@example.org", &r, NULL, &err),
	    KM_OK);
	CHECK_EQ_INT(r.sig_ok, 1);
	CHECK_EQ_INT(r.chain_ok, 1);
	CHECK_EQ_INT(r.from_match, 1);
	mime_headers_free(h);
	free(s);
}

/*
 * tampered_fails - change "secret plan" to "Secret plan" in a signed
 * entity: 1 when the signature is then checked and found bad, with a reason
 */
static int
tampered_fails(char *s, size_t len, struct smime_verify_result *r)
{
	struct kmerr err = { 0 };
	char *p = strstr(s, "secret plan");

	if (p == NULL)
		return 0;
	p[0] = 'S';
	return smime_verify(NULL, s, len, store, NULL, r, NULL, &err) == KM_OK &&
	    r->sig_ok == 0 && err.msg[0] != '\0';
}

TEST(verify_tampered_content_and_signature)
{
	struct smime_verify_result r;
	size_t len = 0;
	struct kmerr err = { 0 };
	char *s, *p;

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	s = do_sign(entity, sizeof(entity) - 1, &alice_rsa, SMIME_MD_SHA256,
	    SMIME_MODE_DETACHED, &len);
	CHECK(s != NULL);
	CHECK(tampered_fails(s, len, &r));
	p = strstr(s, "Secret plan");
	CHECK(p != NULL);
	p[0] = 's';
	CHECK_EQ_INT(smime_verify(NULL, s, len, store, NULL, &r, NULL, &err), KM_OK);
	CHECK_EQ_INT(r.sig_ok, 1);
	free(s);

	/* Opaque: flip a byte well inside the signed content's base64. */
	s = do_sign(entity, sizeof(entity) - 1, &alice_rsa, SMIME_MD_SHA256,
	    SMIME_MODE_OPAQUE, &len);
	CHECK(s != NULL);
	p = strstr(s, "\r\n\r\n");
	CHECK(p != NULL);
	p += 4 + 120;
	*p = (*p == 'A') ? 'B' : 'A';
	CHECK(smime_verify(NULL, s, len, store, NULL, &r, NULL, &err) != KM_OK || r.sig_ok == 0);
	CHECK(ERR_peek_error() == 0);	/* queue drained */
	free(s);
}

/* to_lf - every CRLF of s becomes LF, in place; the new length */
static size_t
to_lf(char *s, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++)
		if (!(s[i] == '\r' && i + 1 < len && s[i + 1] == '\n'))
			s[o++] = s[i];
	s[o] = '\0';
	return o;
}

/*
 * A multipart/signed whose line ends became bare LF (as NSS leaves it
 * inside an envelope) verifies in canonical form (RFC 8551 3.1.1); a
 * tampered one still fails; CRLF input verifies byte for byte.
 */
TEST(verify_lf_only_detached_in_canonical_form)
{
	struct smime_verify_result r;
	size_t len = 0, clen = 0;
	struct kmerr err = { 0 };
	char *s, *c;
	BIO *cb = BIO_new(BIO_s_mem());

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	s = do_sign(entity, sizeof(entity) - 1, &alice_rsa, SMIME_MD_SHA256,
	    SMIME_MODE_DETACHED, &len);
	CHECK(s != NULL);
	CHECK_EQ_INT(smime_verify(NULL, s, len, store, "alice@example.org", &r,
	    NULL, &err), KM_OK);
	CHECK_EQ_INT(r.sig_ok, 1);
	CHECK_EQ_INT(r.canonical, 0);
	len = to_lf(s, len);
	CHECK(strstr(s, "\r") == NULL);
	CHECK_EQ_INT(smime_verify(NULL, s, len, store, "alice@example.org", &r,
	    cb, &err), KM_OK);
	CHECK_EQ_INT(r.sig_ok, 1);
	CHECK_EQ_INT(r.canonical, 1);
	CHECK_EQ_INT(r.chain_ok, 1);
	CHECK_EQ_INT(r.from_match, 1);
	/* The content handed on is the bytes as they came. */
	c = mem(cb, &clen);
	CHECK(c != NULL && strstr(c, "secret plan.\n--") != NULL);
	free(c);
	CHECK(tampered_fails(s, len, &r));
	CHECK_EQ_INT(r.canonical, 0);
	CHECK(ERR_peek_error() == 0);	/* queue drained */
	free(s);
	BIO_free(cb);
}

TEST(verify_untrusted_chain)
{
	struct smime_verify_result r;
	size_t len = 0;
	struct kmerr err = { 0 };
	char *s;

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	s = do_sign(entity, sizeof(entity) - 1, &mallory, SMIME_MD_SHA256,
	    SMIME_MODE_DETACHED, &len);
	CHECK(s != NULL);
	CHECK_EQ_INT(smime_verify(NULL, s, len, store, "mallory@example.org",
	    &r, NULL, &err), KM_OK);
	CHECK_EQ_INT(r.sig_ok, 1);
	CHECK_EQ_INT(r.chain_ok, 0);
	CHECK(r.chain_error[0] != '\0');
	CHECK_EQ_INT(r.from_match, 1);
	/* No trust store at all: never trusted. */
	CHECK_EQ_INT(smime_verify(NULL, s, len, NULL, NULL, &r, NULL, &err), KM_OK);
	CHECK_EQ_INT(r.chain_ok, 0);
	free(s);
}

TEST(encrypt_decrypt_every_option)
{
	static const enum smime_cipher ciphers[] = { SMIME_CIPHER_AES256_CBC,
	    SMIME_CIPHER_AES128_CBC, SMIME_CIPHER_AES256_GCM };
	static const enum smime_padding pads[] = { SMIME_PAD_PKCS1,
	    SMIME_PAD_OAEP };
	X509 *rc[3];
	struct ident *ids[3] = { &alice_rsa, &bob_ec, &alice_ec };

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	rc[0] = alice_rsa.cert;
	rc[1] = bob_ec.cert;
	rc[2] = alice_ec.cert;
	for (int c = 0; c < 3; c++)
		for (int p = 0; p < 2; p++) {
			size_t len = 0, olen = 0;
			struct kmerr err = { 0 };
			char *out;
			char *e = do_encrypt(entity, sizeof(entity) - 1, rc, 3,
			    ciphers[c], pads[p], &len);

			CHECK(e != NULL);
			CHECK(strstr(e, c == 2 ?
			    "smime-type=authEnveloped-data" :
			    "smime-type=enveloped-data") != NULL);
			CHECK(strstr(e, "name=\"smime.p7m\"") != NULL);
			CHECK(strstr(e, "secret") == NULL);
			for (int k = 0; k < 3; k++) {
				CHECK_EQ_INT(do_decrypt(e, len, ids[k], &out,
				    &olen, &err), KM_OK);
				CHECK(out != NULL);
				CHECK_EQ_INT(olen, sizeof(entity) - 1);
				CHECK(memcmp(out, entity, olen) == 0);
				free(out);
			}
			free(e);
		}
}

TEST(envelope_recipients_and_matching)
{
	struct smime_envelope *env = NULL;
	struct smime_keypair kp[3];
	X509 *rc[2];
	size_t len = 0;
	struct kmerr err = { 0 };
	char *e;
	BIO *b = BIO_new(BIO_s_mem());
	int matched = -2;

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	rc[0] = bob_rsa.cert;
	rc[1] = alice_ec.cert;
	e = do_encrypt(entity, sizeof(entity) - 1, rc, 2,
	    SMIME_CIPHER_AES256_CBC, SMIME_PAD_PKCS1, &len);
	CHECK(e != NULL);
	CHECK_EQ_INT(smime_envelope_open(NULL, e, len, &env, &err),
	    KM_OK);
	CHECK_EQ_INT(smime_envelope_count(env), 2);
	CHECK(strncmp(smime_envelope_rid(env, 0), "issuer=", 7) == 0);
	CHECK(strstr(smime_envelope_rid(env, 0), "CN=unit CA") != NULL);
	CHECK(strncmp(smime_envelope_rid(env, 1), "kari:", 5) == 0);
	CHECK(smime_envelope_rid(env, 2) == NULL);
	CHECK_EQ_INT(smime_envelope_is_auth(env), 0);
	CHECK_EQ_INT(smime_envelope_match(env, bob_rsa.cert), 1);
	CHECK_EQ_INT(smime_envelope_match(env, alice_ec.cert), 1);
	CHECK_EQ_INT(smime_envelope_match(env, alice_rsa.cert), 0);
	CHECK_EQ_INT(smime_envelope_match(env, bob_ec.cert), 0);
	/* Candidates that do not match are skipped; the matching one is
	   reported by index. */
	kp[0].cert = alice_rsa.cert; kp[0].key = alice_rsa.key;
	kp[1].cert = mallory.cert; kp[1].key = mallory.key;
	kp[2].cert = alice_ec.cert; kp[2].key = alice_ec.key;
	CHECK_EQ_INT(smime_envelope_decrypt(env, kp, 3, b, &matched, &err), KM_OK);
	CHECK_EQ_INT(matched, 2);
	CHECK_EQ_INT(BIO_pending(b), sizeof(entity) - 1);
	smime_envelope_free(env);
	BIO_free(b);
	free(e);
}

TEST(decrypt_wrong_key_fails_cleanly)
{
	struct smime_keypair kp;
	X509 *rc[1];
	size_t len = 0, olen;
	struct kmerr err = { 0 };
	char *e, *out;
	BIO *b = BIO_new(BIO_s_mem());
	int matched = -2;

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	rc[0] = alice_rsa.cert;
	e = do_encrypt(entity, sizeof(entity) - 1, rc, 1,
	    SMIME_CIPHER_AES256_CBC, SMIME_PAD_PKCS1, &len);
	CHECK(e != NULL);
	CHECK_EQ_INT(do_decrypt(e, len, &bob_rsa, &out, &olen, &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "no matching recipient") != NULL);
	CHECK(kmerr_is(&err, KMERR_NOTFOUND));
	/* Right certificate, wrong key. */
	kp.cert = alice_rsa.cert;
	kp.key = bob_rsa.key;
	CHECK_EQ_INT(smime_decrypt(NULL, e, len, &kp, 1, b, &matched, &err), KM_PERMFAIL);
	CHECK_EQ_INT(matched, 0);
	CHECK(strstr(err.msg, "decryption failed") != NULL);
	CHECK_EQ_INT(BIO_pending(b), 0);
	CHECK(ERR_peek_error() == 0);
	/* No candidates at all. */
	CHECK_EQ_INT(smime_decrypt(NULL, e, len, NULL, 0, b, &matched, &err), KM_PERMFAIL);
	CHECK_EQ_INT(matched, -1);
	BIO_free(b);
	free(e);
}

TEST(decrypt_tampered_ciphertext)
{
	X509 *rc[1];

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	rc[0] = alice_rsa.cert;
	for (int gcm = 0; gcm < 2; gcm++) {
		size_t len = 0, olen = 0;
		struct kmerr err = { 0 };
		char *e, *out, *p, *end;
		enum km_status st;

		e = do_encrypt(entity, sizeof(entity) - 1, rc, 1, gcm ?
		    SMIME_CIPHER_AES256_GCM : SMIME_CIPHER_AES256_CBC,
		    SMIME_PAD_PKCS1, &len);
		CHECK(e != NULL);
		/* The encrypted content is near the end of the DER; flip a
		   character of the last full base64 line. */
		end = e + len - 2;
		while (end > e && end[-1] != '\n')
			end--;
		p = end - 40;
		*p = (*p == 'A') ? 'B' : 'A';
		st = do_decrypt(e, len, &alice_rsa, &out, &olen, &err);
		if (st == KM_OK) {
			/* CBC can decrypt to changed bytes; it must not be
			   the original then. */
			CHECK(!gcm);
			CHECK(olen != sizeof(entity) - 1 ||
			    memcmp(out, entity, olen) != 0);
			free(out);
		} else
			CHECK(st == KM_PERMFAIL || st == KM_PROTO);
		if (gcm)
			CHECK(st != KM_OK);
		CHECK(ERR_peek_error() == 0);
		free(e);
	}
}

TEST(malformed_inputs)
{
	struct smime_verify_result r;
	struct smime_envelope *env = NULL;
	X509 *rc[1];
	size_t len = 0, olen;
	struct kmerr err = { 0 };
	char *e, *out, *body;
	static const char notsmime[] = "Content-Type: text/plain\r\n\r\nhi\r\n";
	static const char garbage[] = "Content-Type: application/pkcs7-mime; "
	    "smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64"
	    "\r\n\r\nMIIBAAAAAAAAAAAA\r\n";
	static const char badb64[] = "Content-Type: application/pkcs7-mime; "
	    "smime-type=enveloped-data\r\n\r\nMIIB!!!!\r\n";
	static const char nobd[] = "Content-Type: multipart/signed; "
	    "protocol=\"application/pkcs7-signature\"\r\n\r\n--x\r\na\r\n";

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	CHECK_EQ_INT(smime_envelope_open(NULL, notsmime, sizeof(notsmime) - 1,
	    &env, &err), KM_PROTO);
	CHECK(strstr(err.msg, "not an S/MIME") != NULL);
	CHECK_EQ_INT(smime_envelope_open(NULL, garbage, sizeof(garbage) - 1,
	    &env, &err), KM_PROTO);
	CHECK(kmerr_is(&err, KMERR_BADINPUT));
	CHECK(strstr(err.msg, "malformed CMS") != NULL);
	CHECK_EQ_INT(smime_envelope_open(NULL, badb64, sizeof(badb64) - 1,
	    &env, &err), KM_PROTO);
	CHECK(strstr(err.msg, "base64") != NULL);
	CHECK_EQ_INT(smime_envelope_open(NULL, "", 0, &env, &err),
	    KM_PROTO);
	CHECK_EQ_INT(smime_envelope_open(NULL, "\x30\x03\x02\x01", 4, &env,
	    &err), KM_PROTO);
	CHECK_EQ_INT(smime_verify(NULL, nobd, sizeof(nobd) - 1, store, NULL,
	    &r, NULL, &err), KM_PROTO);
	CHECK(strstr(err.msg, "boundary") != NULL);
	CHECK_EQ_INT(smime_verify(NULL, notsmime, sizeof(notsmime) - 1, store,
	    NULL, &r, NULL, &err), KM_PROTO);

	/* Truncated base64 of a real message. */
	rc[0] = alice_rsa.cert;
	e = do_encrypt(entity, sizeof(entity) - 1, rc, 1,
	    SMIME_CIPHER_AES256_CBC, SMIME_PAD_PKCS1, &len);
	CHECK(e != NULL);
	CHECK_EQ_INT(do_decrypt(e, len - 5, &alice_rsa, &out, &olen, &err), KM_PROTO);
	/* Cut at a whole base64 group: valid base64, truncated DER. */
	body = strstr(e, "\r\n\r\n") + 4;
	CHECK_EQ_INT(do_decrypt(e, (size_t)(body - e) + 154, &alice_rsa,
	    &out, &olen, &err), KM_PROTO);
	CHECK(strstr(err.msg, "malformed CMS") != NULL);
	/* Wrong content types: an enveloped message is not signed data, a
	   signed one cannot be decrypted. */
	CHECK_EQ_INT(smime_verify(NULL, e, len, store, NULL, &r, NULL, &err), KM_PROTO);
	free(e);
	e = do_sign(entity, sizeof(entity) - 1, &alice_rsa, SMIME_MD_SHA256,
	    SMIME_MODE_OPAQUE, &len);
	CHECK(e != NULL);
	CHECK_EQ_INT(smime_envelope_open(NULL, e, len, &env, &err), KM_PROTO);
	CHECK(strstr(err.msg, "not enveloped") != NULL);
	free(e);
	CHECK(ERR_peek_error() == 0);
}

TEST(sign_then_encrypt_nested)
{
	struct smime_verify_result r;
	X509 *rc[2];
	size_t slen = 0, elen = 0, dlen = 0, clen = 0;
	struct kmerr err = { 0 };
	char *s, *e, *d, *c;
	BIO *cb = BIO_new(BIO_s_mem());

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	s = do_sign(entity, sizeof(entity) - 1, &alice_rsa, SMIME_MD_SHA256,
	    SMIME_MODE_DETACHED, &slen);
	CHECK(s != NULL);
	rc[0] = bob_rsa.cert;
	rc[1] = alice_rsa.cert;
	e = do_encrypt(s, slen, rc, 2, SMIME_CIPHER_AES256_CBC,
	    SMIME_PAD_PKCS1, &elen);
	CHECK(e != NULL);
	CHECK_EQ_INT(do_decrypt(e, elen, &bob_rsa, &d, &dlen, &err), KM_OK);
	CHECK_EQ_INT(dlen, slen);
	CHECK(memcmp(d, s, slen) == 0);
	CHECK_EQ_INT(smime_verify(NULL, d, dlen, store, "alice@example.org",
	    &r, cb, &err), KM_OK);
	CHECK_EQ_INT(r.sig_ok, 1);
	CHECK_EQ_INT(r.chain_ok, 1);
	CHECK_EQ_INT(r.from_match, 1);
	c = mem(cb, &clen);
	CHECK_EQ_INT(clen, sizeof(entity) - 1);
	CHECK(memcmp(c, entity, clen) == 0);
	free(c);
	free(d);
	free(e);
	free(s);
	BIO_free(cb);
}

TEST(bad_arguments)
{
	BIO *b = BIO_new(BIO_s_mem());
	struct kmerr err = { 0 };

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	CHECK_EQ_INT(smime_encrypt(entity, sizeof(entity) - 1, NULL, 0,
	    SMIME_CIPHER_AES256_CBC, SMIME_PAD_PKCS1, b, &err),
	    KM_PERMFAIL);
	CHECK_EQ_INT(smime_sign(entity, sizeof(entity) - 1, alice_rsa.cert,
	    NULL, NULL, SMIME_MD_SHA256, SMIME_MODE_DETACHED, b, &err), KM_PERMFAIL);
	CHECK_EQ_INT(smime_sign(entity, sizeof(entity) - 1, alice_rsa.cert,
	    alice_rsa.key, NULL, (enum smime_digest)9, SMIME_MODE_DETACHED, b,
	    &err), KM_PERMFAIL);
	/* A key that does not belong to the certificate. */
	CHECK_EQ_INT(smime_sign(entity, sizeof(entity) - 1, alice_rsa.cert,
	    bob_rsa.key, NULL, SMIME_MD_SHA256, SMIME_MODE_DETACHED, b, &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "unusable signer") != NULL);
	CHECK(ERR_peek_error() == 0);
	BIO_free(b);
}

struct thr {
	int	 ok;
};

/* worker - sign, encrypt, decrypt and verify in a loop */
static void *
worker(void *arg)
{
	struct thr *t = arg;
	X509 *rc[2] = { bob_rsa.cert, alice_ec.cert };

	t->ok = 1;
	for (int i = 0; i < 20 && t->ok; i++) {
		struct smime_verify_result r;
		size_t sl = 0, el = 0, dl = 0;
		struct kmerr err = { 0 };
		char *s, *e, *d = NULL;

		s = do_sign(entity, sizeof(entity) - 1, &alice_rsa,
		    SMIME_MD_SHA256, i % 2 ? SMIME_MODE_OPAQUE :
		    SMIME_MODE_DETACHED, &sl);
		e = s ? do_encrypt(s, sl, rc, 2, SMIME_CIPHER_AES256_GCM,
		    SMIME_PAD_OAEP, &el) : NULL;
		if (e == NULL || do_decrypt(e, el, i % 2 ? &alice_ec :
		    &bob_rsa, &d, &dl, &err) != KM_OK ||
		    dl != sl || memcmp(d, s, sl) != 0 ||
		    smime_verify(NULL, d, dl, store, NULL, &r, NULL, &err) != KM_OK || !r.sig_ok || !r.chain_ok)
			t->ok = 0;
		free(s);
		free(e);
		free(d);
	}
	return NULL;
}

TEST(threads_concurrent)
{
	pthread_t th[4];
	struct thr t[4];

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	for (int i = 0; i < 4; i++)
		CHECK(pthread_create(&th[i], NULL, worker, &t[i]) == 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 4; i++)
		CHECK_EQ_INT(t[i].ok, 1);
}

/* cpu_now - CPU seconds used by this process (not wall time: the machine is shared) */
static double
cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* roundtrip_cpu - CPU seconds for sign+encrypt+decrypt+verify of an n-byte
   text entity; *ok is cleared when any step fails or the result differs */
static double
roundtrip_cpu(size_t n, int *ok)
{
	size_t off, sl = 0, el = 0, dl = 0;
	char *in = malloc(n + 64), *s = NULL, *e = NULL, *d = NULL;
	struct kmerr err = { 0 };
	struct smime_verify_result r;
	X509 *rc[1] = { bob_rsa.cert };
	double t0, t;

	*ok = 0;
	if (in == NULL)
		return 0;
	off = (size_t)sprintf(in, "Content-Type: text/plain\r\n\r\n");
	while (off + 80 < n) {
		memset(in + off, 'x', 78);
		in[off + 78] = '\r';
		in[off + 79] = '\n';
		off += 80;
	}
	t0 = cpu_now();
	if ((s = do_sign(in, off, &alice_rsa, SMIME_MD_SHA256,
	    SMIME_MODE_DETACHED, &sl)) != NULL &&
	    (e = do_encrypt(s, sl, rc, 1, SMIME_CIPHER_AES256_CBC,
	    SMIME_PAD_PKCS1, &el)) != NULL &&
	    do_decrypt(e, el, &bob_rsa, &d, &dl, &err) == KM_OK &&
	    d != NULL && dl == sl && memcmp(d, s, sl) == 0 &&
	    smime_verify(NULL, d, dl, store, NULL, &r, NULL, &err) == KM_OK && r.sig_ok == 1)
		*ok = 1;
	t = cpu_now() - t0;
	free(in);
	free(s);
	free(e);
	free(d);
	return t;
}

TEST(large_body_linear)
{
	/* sign+encrypt+decrypt+verify at 1 MB and at 4 MB (least CPU time
	   of 3 runs each): the 4 times larger body must cost less than 8
	   times the CPU.  Linear code measures about 4 (3.9-4.5 here); one
	   pass over what was already processed per chunk (quadratic) gives
	   about 16, so 8 leaves room for noise either way.  And 4 MB must
	   take under 2 s of CPU: it takes about 70 ms here, so 2 s allows
	   a slow or sanitized build and still fails on a hang-like slowdown. */
	double c1 = 1e9, c4 = 1e9, t;
	int ok;

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	for (int i = 0; i < 3; i++) {
		t = roundtrip_cpu(1u << 20, &ok);
		CHECK(ok);
		if (t < c1)
			c1 = t;
		t = roundtrip_cpu(4u << 20, &ok);
		CHECK(ok);
		if (t < c4)
			c4 = t;
	}
	printf("    FIGURE smime round trip CPU: %.1f ms at 1 MB, %.1f ms at 4 MB, ratio %.2f\n",
	    c1 * 1e3, c4 * 1e3, c1 > 0 ? c4 / c1 : 0.0);
	CHECK(c4 < 2.0);
	CHECK(c4 < 8 * c1);
}

/* cms_to - raw CMS_encrypt of entity to the certificates (DER kept as CMS) */
static CMS_ContentInfo *
cms_to(X509 **rc, size_t n, const EVP_CIPHER *cipher)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	BIO *in = BIO_new_mem_buf(entity, sizeof(entity) - 1);
	CMS_ContentInfo *cms = NULL;

	for (size_t i = 0; sk != NULL && i < n; i++)
		sk_X509_push(sk, rc[i]);
	if (sk != NULL && in != NULL)
		cms = CMS_encrypt(sk, in, cipher, CMS_BINARY);
	sk_X509_free(sk);
	BIO_free(in);
	return cms;
}

/* cms_der - a CMS as a malloc'ed DER copy */
static char *
cms_der(CMS_ContentInfo *cms, size_t *len)
{
	unsigned char *der = NULL;
	int n = i2d_CMS_ContentInfo(cms, &der);
	char *c;

	if (n <= 0 || (c = malloc((size_t)n)) == NULL) {
		OPENSSL_free(der);
		return NULL;
	}
	memcpy(c, der, (size_t)n);
	*len = (size_t)n;
	OPENSSL_free(der);
	return c;
}

/* readers_try - decrypt_readers over DER with one keypair per reader */
static enum km_status
readers_try(const char *der, size_t len, struct ident **ids, size_t n,
    int *failed, size_t *outlen)
{
	struct smime_envelope *env = NULL;
	struct smime_keypair kp[4];
	struct smime_reader rd[4];
	int matched[4];
	struct kmerr err = { 0 };
	BIO *b = BIO_new(BIO_s_mem());
	enum km_status st;

	for (size_t i = 0; i < n; i++) {
		kp[i].cert = ids[i]->cert;
		kp[i].key = ids[i]->key;
		rd[i].cands = &kp[i];
		rd[i].ncands = 1;
	}
	st = smime_envelope_open(NULL, der, len, &env, &err);
	if (st == KM_OK)
		st = smime_envelope_decrypt_readers(env, rd, n, b, failed,
		    matched, &err);
	*outlen = (size_t)BIO_pending(b);
	if (st == KM_OK && (*outlen != sizeof(entity) - 1 ||
	    matched[n - 1] != 0))
		st = KM_PROTO;
	smime_envelope_free(env);
	BIO_free(b);
	return st;
}

/*
 * A RecipientInfo naming bob proves nothing: spliced ones (bob's
 * RecipientInfo of another message, or alice's encryptedKey under bob's
 * serial) match bob's certificate but do not give him the content key.
 */
TEST(readers_spliced_recipientinfo)
{
	struct ident *ab[2] = { &alice_rsa, &bob_rsa }, *b1[1] = { &bob_rsa };
	struct smime_envelope *env = NULL;
	CMS_ContentInfo *cms, *donor;
	STACK_OF(CMS_RecipientInfo) *ris;
	ASN1_OCTET_STRING *kid;
	X509_NAME *iss;
	ASN1_INTEGER *sno;
	X509 *rc[2];
	char *der;
	struct kmerr err = { 0 };
	size_t len, olen;
	int failed = -2;

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	/* Both genuine readers: decrypted once, same content key. */
	rc[0] = alice_rsa.cert;
	rc[1] = bob_rsa.cert;
	CHECK((cms = cms_to(rc, 2, EVP_aes_256_cbc())) != NULL);
	CHECK((der = cms_der(cms, &len)) != NULL);
	CHECK_EQ_INT(readers_try(der, len, ab, 2, &failed, &olen), KM_OK);
	CHECK_EQ_INT(failed, -1);
	CMS_ContentInfo_free(cms);
	free(der);

	/* 1. bob's RecipientInfo from another message spliced in. */
	rc[0] = alice_rsa.cert;
	CHECK((cms = cms_to(rc, 1, EVP_aes_256_cbc())) != NULL);
	rc[0] = bob_rsa.cert;
	CHECK((donor = cms_to(rc, 1, EVP_aes_256_cbc())) != NULL);
	ris = CMS_get0_RecipientInfos(donor);
	CHECK(sk_CMS_RecipientInfo_push(CMS_get0_RecipientInfos(cms),
	    sk_CMS_RecipientInfo_shift(ris)) > 0);
	CMS_ContentInfo_free(donor);
	CHECK((der = cms_der(cms, &len)) != NULL);
	CMS_ContentInfo_free(cms);
	CHECK_EQ_INT(smime_envelope_open(NULL, der, len, &env, &err), KM_OK);
	/* What kmilter used to trust: bob's certificate matches. */
	CHECK_EQ_INT(smime_envelope_match(env, bob_rsa.cert), 1);
	smime_envelope_free(env);
	env = NULL;
	CHECK_EQ_INT(readers_try(der, len, ab, 2, &failed, &olen),
	    KM_PERMFAIL);
	CHECK_EQ_INT(failed, 1);
	free(der);

	/* 1b. The same with AES-256-OFB: no padding, so bob's wrong content
	   key decrypts "successfully" to other bytes; only the digest
	   comparison tells. */
	rc[0] = alice_rsa.cert;
	CHECK((cms = cms_to(rc, 1, EVP_aes_256_ofb())) != NULL);
	rc[0] = bob_rsa.cert;
	CHECK((donor = cms_to(rc, 1, EVP_aes_256_ofb())) != NULL);
	CHECK(sk_CMS_RecipientInfo_push(CMS_get0_RecipientInfos(cms),
	    sk_CMS_RecipientInfo_shift(CMS_get0_RecipientInfos(donor))) > 0);
	CMS_ContentInfo_free(donor);
	CHECK((der = cms_der(cms, &len)) != NULL);
	CMS_ContentInfo_free(cms);
	CHECK_EQ_INT(readers_try(der, len, ab, 2, &failed, &olen),
	    KM_PERMFAIL);
	CHECK_EQ_INT(failed, 1);
	free(der);

	/* 2. alice's encryptedKey copied under bob's serial (same issuer). */
	rc[0] = rc[1] = alice_rsa.cert;
	CHECK((cms = cms_to(rc, 2, EVP_aes_256_cbc())) != NULL);
	ris = CMS_get0_RecipientInfos(cms);
	CHECK(CMS_RecipientInfo_ktri_get0_signer_id(sk_CMS_RecipientInfo_value(
	    ris, 1), &kid, &iss, &sno) == 1 && sno != NULL);
	CHECK(ASN1_STRING_copy(sno, X509_get0_serialNumber(bob_rsa.cert)));
	CHECK((der = cms_der(cms, &len)) != NULL);
	CMS_ContentInfo_free(cms);
	CHECK_EQ_INT(readers_try(der, len, ab, 2, &failed, &olen),
	    KM_PERMFAIL);
	CHECK_EQ_INT(failed, 1);
	/* Order does not matter: bob first is refused too.  Usually as
	   reader 0 with out left empty; but RSA's implicit rejection hands
	   bob a random content key, and one time in 256 that passes the CBC
	   padding: then bob's "plaintext" is the reference and alice, the
	   genuine reader, differs from it (reader 1).  Either way: refused. */
	ab[0] = &bob_rsa;
	ab[1] = &alice_rsa;
	CHECK_EQ_INT(readers_try(der, len, ab, 2, &failed, &olen),
	    KM_PERMFAIL);
	CHECK(failed == 0 || failed == 1);
	if (failed == 0)
		CHECK_EQ_INT(olen, 0);
	free(der);

	/* 3. bob alone with a spliced RecipientInfo, AES-GCM: the tag
	   fails for any wrong key, so no "plaintext" comes out at all. */
	rc[0] = alice_rsa.cert;
	CHECK((cms = cms_to(rc, 1, EVP_aes_256_gcm())) != NULL);
	rc[0] = bob_rsa.cert;
	CHECK((donor = cms_to(rc, 1, EVP_aes_256_gcm())) != NULL);
	CHECK(sk_CMS_RecipientInfo_push(CMS_get0_RecipientInfos(cms),
	    sk_CMS_RecipientInfo_shift(CMS_get0_RecipientInfos(donor))) > 0);
	CMS_ContentInfo_free(donor);
	CHECK((der = cms_der(cms, &len)) != NULL);
	CMS_ContentInfo_free(cms);
	CHECK_EQ_INT(readers_try(der, len, b1, 1, &failed, &olen),
	    KM_PERMFAIL);
	CHECK_EQ_INT(failed, 0);
	CHECK_EQ_INT(olen, 0);
	CHECK(ERR_peek_error() == 0);
	free(der);
}

/*
 * patch_oid - replace every copy of the DER OID from with to (same length);
 * returns how many were patched
 */
static int
patch_oid(unsigned char *der, size_t len, const unsigned char *from,
    const unsigned char *to, size_t n)
{
	int count = 0;

	for (size_t i = 0; i + n <= len; i++)
		if (memcmp(der + i, from, n) == 0) {
			memcpy(der + i, to, n);
			count++;
		}
	return count;
}

/*
 * An unknown digest algorithm is refused before CMS_verify (which leaks
 * inside OpenSSL on that path: LeakSanitizer catches it under ASan).
 */
TEST(verify_unknown_digest_is_permerror)
{
	/* id-sha256 2.16.840.1.101.3.4.2.1, and the unassigned ...2.127 */
	static const unsigned char sha256[] = { 0x06, 0x09, 0x60, 0x86, 0x48,
	    0x01, 0x65, 0x03, 0x04, 0x02, 0x01 };
	static const unsigned char bogus[] = { 0x06, 0x09, 0x60, 0x86, 0x48,
	    0x01, 0x65, 0x03, 0x04, 0x02, 0x7f };
	struct smime_verify_result r;
	CMS_ContentInfo *cms;
	unsigned char *der = NULL;
	struct kmerr err = { 0 };
	BIO *in;
	int dlen;

	CHECK(pki());	/* a test PKI that cannot be made is a failure */
	in = BIO_new_mem_buf(entity, (int)sizeof(entity) - 1);
	cms = CMS_sign(alice_rsa.cert, alice_rsa.key, NULL, in, CMS_BINARY);
	CHECK(cms != NULL);
	dlen = i2d_CMS_ContentInfo(cms, &der);
	CHECK(dlen > 0);
	/* Sound before the patch. */
	CHECK_EQ_INT(smime_verify(NULL, (const char *)der, (size_t)dlen,
	    store, NULL, &r, NULL, &err), KM_OK);
	CHECK_EQ_INT(r.sig_ok, 1);
	/* digestAlgorithms and the SignerInfo's digestAlgorithm. */
	CHECK(patch_oid(der, (size_t)dlen, sha256, bogus, sizeof(sha256)) >= 2);
	for (int i = 0; i < 3; i++) {
		err.msg[0] = '\0';
		CHECK_EQ_INT(smime_verify(NULL, (const char *)der,
		    (size_t)dlen, store, NULL, &r, NULL, &err),
		    KM_PROTO);
		CHECK_EQ_INT(r.sig_ok, 0);
		CHECK(strstr(err.msg, "unsupported digest algorithm OID "
		    "2.16.840.1.101.3.4.2.127") != NULL);
	}
	CHECK(ERR_peek_error() == 0);
	OPENSSL_free(der);
	CMS_ContentInfo_free(cms);
	BIO_free(in);
}

static const struct test_case tests[] = {
	T(sign_detached_roundtrip_all_digests),
	T(sign_opaque_roundtrip_ec),
	T(sign_publishes_encryption_certificate),
	T(sign_without_publish_has_caps_only),
	T(enckeypref_malformed_values),
	T(sign_canonicalises_lf_and_lines_are_crlf),
	T(verify_with_ctype_and_body_apart),
	T(verify_tampered_content_and_signature),
	T(verify_lf_only_detached_in_canonical_form),
	T(verify_untrusted_chain),
	T(verify_unknown_digest_is_permerror),
	T(encrypt_decrypt_every_option),
	T(envelope_recipients_and_matching),
	T(decrypt_wrong_key_fails_cleanly),
	T(decrypt_tampered_ciphertext),
	T(readers_spliced_recipientinfo),
	T(malformed_inputs),
	T(sign_then_encrypt_nested),
	T(bad_arguments),
	T(threads_concurrent),
	T(large_body_linear),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
