/*
 * test_cms_stream.c - unit tests for milter/cms_stream.c through
 * smime_envelope_open_stream(): what "openssl cms -encrypt" writes (AES-CBC
 * and AES-GCM, with -stream: indefinite lengths and chunked OCTET STRINGs,
 * and without: DER) decrypts read as a stream, raw or in base64, to the
 * same plaintext as the in-memory path; truncated input, lying lengths,
 * data after the structure, bad base64 and a changed GCM tag or
 * ciphertext are refused with a clear reason (never a crash or output).
 */
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "cms_stream.h"
#include "harness.h"
#include "smime.h"
#include "smime_verify.h"
#include "spool.h"

#define PTLEN	150000

static char dir[64];
static X509 *cert;
static EVP_PKEY *key;
static unsigned char pt[PTLEN];

/* setup - a key, its self-signed certificate and a plaintext, once */
static int
setup(void)
{
	char cmd[512], path[128];
	FILE *f;

	if (cert != NULL)
		return 1;
	snprintf(dir, sizeof(dir), "/tmp/test_cms_stream.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 0;
	snprintf(cmd, sizeof(cmd), "cd %s && openssl req -x509 -newkey rsa:2048 "
	    "-nodes -keyout k.pem -out c.pem -subj /CN=stream -days 2 2>/dev/null",
	    dir);
	if (system(cmd) != 0)
		return 0;
	for (size_t i = 0; i < PTLEN; i++)
		pt[i] = (unsigned char)(i * 131 + (i >> 9));
	snprintf(path, sizeof(path), "%s/pt", dir);
	if ((f = fopen(path, "w")) == NULL || fwrite(pt, 1, PTLEN, f) != PTLEN)
		return 0;
	fclose(f);
	snprintf(path, sizeof(path), "%s/c.pem", dir);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	snprintf(path, sizeof(path), "%s/k.pem", dir);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return cert != NULL && key != NULL;
}

/* encrypt - openssl cms -encrypt of the plaintext, DER in *out (free) */
static int
encrypt(const char *cipher, int stream, unsigned char **out, size_t *len)
{
	char cmd[512], path[128];
	struct stat sb;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "cd %s && openssl cms -encrypt -binary -in pt "
	    "-outform DER %s -%s -out ct.der c.pem", dir, stream ? "-stream" : "",
	    cipher);
	snprintf(path, sizeof(path), "%s/ct.der", dir);
	if (system(cmd) != 0 || stat(path, &sb) != 0 || (f = fopen(path, "r")) == NULL)
		return 0;
	*len = (size_t)sb.st_size;
	*out = malloc(*len);
	if (*out == NULL || fread(*out, 1, *len, f) != *len) {
		fclose(f);
		return 0;
	}
	fclose(f);
	return 1;
}

/* b64 - base64 in CRLF lines of 76, as a mail body carries it (free) */
static char *
b64(const unsigned char *p, size_t n, size_t *outlen)
{
	char *s = malloc(n / 57 * 80 + 90);
	size_t o = 0;

	for (size_t i = 0; s != NULL && i < n; i += 57) {
		o += (size_t)EVP_EncodeBlock((unsigned char *)s + o, p + i,
		    (int)(n - i < 57 ? n - i : 57));
		s[o++] = '\r';
		s[o++] = '\n';
	}
	*outlen = o;
	return s;
}

/*
 * open_decrypt - open in as a stream and decrypt it with the key; the
 * status, and the plaintext in *pout (a memory BIO, freed by the caller)
 */
static enum km_status
open_decrypt(const void *in, size_t len, enum cms_in_mode mode, BIO **pout,
    struct kmerr *err)
{
	struct smime_keypair kp = { .cert = cert, .key = key };
	struct smime_envelope *env = NULL;
	BIO *src = BIO_new_mem_buf(in, (int)len);
	enum km_status st;
	int matched;

	*pout = BIO_new(BIO_s_mem());
	st = smime_envelope_open_stream(src, mode, &env, err);
	if (st == KM_OK)
		st = smime_envelope_decrypt(env, &kp, 1, *pout, &matched, err);
	smime_envelope_free(env);
	BIO_free(src);
	return st;
}

/* same_plaintext - the BIO holds exactly the plaintext */
static int
same_plaintext(BIO *b)
{
	char *data;
	long n = BIO_get_mem_data(b, &data);

	return n == PTLEN && memcmp(data, pt, PTLEN) == 0;
}

/* roundtrip - one cipher and form, raw and in base64 */
static int
roundtrip(const char *cipher, int stream)
{
	unsigned char *der = NULL;
	char *text = NULL;
	size_t len, tlen;
	BIO *out = NULL;
	struct kmerr err;
	int ok;

	if (!setup() || !encrypt(cipher, stream, &der, &len))
		return 0;
	ok = open_decrypt(der, len, CMS_IN_AUTO, &out, &err) == KM_OK &&
	    same_plaintext(out);
	BIO_free(out);
	if (!ok)
		printf("    raw: %s\n", err.msg);
	text = b64(der, len, &tlen);
	if (ok && text != NULL) {
		ok = open_decrypt(text, tlen, CMS_IN_AUTO, &out, &err) == KM_OK &&
		    same_plaintext(out);
		BIO_free(out);
		if (!ok)
			printf("    base64: %s\n", err.msg);
	}
	free(text);
	free(der);
	return ok;
}

TEST(cbc_stream) { CHECK(roundtrip("aes-256-cbc", 1)); }
TEST(cbc_der) { CHECK(roundtrip("aes-128-cbc", 0)); }
TEST(gcm_stream) { CHECK(roundtrip("aes-256-gcm", 1)); }
TEST(gcm_der) { CHECK(roundtrip("aes-128-gcm", 0)); }

/* refused - a changed input is refused as st (and says why) */
static int
refused(const void *in, size_t len, enum km_status want, const char *why)
{
	struct kmerr err = { 0 };
	BIO *out = NULL;
	enum km_status st = open_decrypt(in, len, CMS_IN_AUTO, &out, &err);
	char *data;
	long n = BIO_get_mem_data(out, &data);

	BIO_free(out);
	if (st != want || (why != NULL && strstr(err.msg, why) == NULL)) {
		printf("    got %d \"%s\", wanted %d \"%s\"\n", st, err.msg, want,
		    why ? why : "");
		return 0;
	}
	/* nothing decrypted is left for the caller on a refusal */
	return want != KM_PROTO || n == 0;
}

TEST(truncated)
{
	unsigned char *der;
	size_t len;

	CHECK(setup());
	CHECK(encrypt("aes-256-cbc", 1, &der, &len));
	/* cut inside the content, inside the tag, just before the last EOC */
	CHECK(refused(der, len / 2, KM_PROTO, "truncated"));
	CHECK(refused(der, len - 1, KM_PROTO, "truncated"));
	CHECK(refused(der, 300, KM_PROTO, "truncated"));
	free(der);
	CHECK(encrypt("aes-256-gcm", 0, &der, &len));
	CHECK(refused(der, len - 10, KM_PROTO, NULL));
	CHECK(refused(der, len - 100000, KM_PROTO, NULL));
	free(der);
}

/* the outer length of a DER ContentInfo (30 83 xx xx xx) changed by delta */
static int
lie(unsigned char *der, size_t len, int delta, const char *why)
{
	unsigned char *copy = malloc(len + 16);
	size_t n;
	int ok;

	if (copy == NULL || der[0] != 0x30 || der[1] != 0x83)
		return 0;
	memcpy(copy, der, len);
	n = ((size_t)der[2] << 16 | (size_t)der[3] << 8 | der[4]) + (size_t)delta;
	copy[2] = (unsigned char)(n >> 16);
	copy[3] = (unsigned char)(n >> 8);
	copy[4] = (unsigned char)n;
	ok = refused(copy, len, KM_PROTO, why);
	free(copy);
	return ok;
}

TEST(lying_lengths)
{
	unsigned char *der, *big;
	size_t len;

	CHECK(setup());
	CHECK(encrypt("aes-256-cbc", 0, &der, &len));
	CHECK(lie(der, len, 1, "a length says"));	/* says more than is there */
	CHECK(lie(der, len, -1, "remain in the value"));		/* says less */
	/* a message that goes on after its structure */
	CHECK((big = malloc(len + 40)) != NULL);
	memcpy(big, der, len);
	memset(big + len, 0x41, 40);
	CHECK(refused(big, len + 40, KM_PROTO, "data after the CMS structure"));
	free(big);
	/* the encrypted content's own length: primitive [0] 80 83 xx xx xx */
	for (size_t i = 0; i + 5 < len; i++)
		if (der[i] == 0x80 && der[i + 1] == 0x83) {
			der[i + 4] ^= 0x01;
			break;
		}
	CHECK(refused(der, len, KM_PROTO, NULL));
	free(der);
}

TEST(bad_chunks)
{
	unsigned char *der;
	size_t len, at = 0;

	CHECK(setup());
	CHECK(encrypt("aes-256-cbc", 1, &der, &len));
	/* the first chunk header (04 82 10 00 after A0 80) made a SEQUENCE */
	for (size_t i = 0; i + 3 < len; i++)
		if (der[i] == 0xa0 && der[i + 1] == 0x80 && der[i + 2] == 0x04) {
			at = i + 2;
			break;
		}
	CHECK(at > 0);
	der[at] = 0x30;
	CHECK(refused(der, len, KM_PROTO, "OCTET STRING"));
	/* an end-of-contents that is not one */
	der[at] = 0x04;
	der[len - 1] = 0x01;
	CHECK(refused(der, len, KM_PROTO, "end-of-contents"));
	free(der);
}

TEST(bad_base64)
{
	unsigned char *der;
	char *text;
	size_t len, tlen;

	CHECK(setup());
	CHECK(encrypt("aes-256-gcm", 1, &der, &len));
	CHECK((text = b64(der, len, &tlen)) != NULL);
	text[tlen / 2] = '*';
	CHECK(refused(text, tlen, KM_PROTO, "base64: invalid byte"));
	free(text);
	/* a base64 text cut inside a group */
	CHECK((text = b64(der, len, &tlen)) != NULL);
	CHECK(refused(text, tlen - 4, KM_PROTO, NULL));
	free(text);
	free(der);
}

TEST(gcm_tag_and_ciphertext)
{
	unsigned char *der;
	size_t len;

	CHECK(setup());
	CHECK(encrypt("aes-256-gcm", 1, &der, &len));
	/* the mac: the 16 octets before the last three EOCs */
	der[len - 6 - 1] ^= 0x80;
	CHECK(refused(der, len, KM_PERMFAIL, NULL));
	der[len - 6 - 1] ^= 0x80;
	/* a ciphertext octet in the middle */
	der[len / 2] ^= 0x01;
	CHECK(refused(der, len, KM_PERMFAIL, NULL));
	free(der);
}

/* the stream reader through a spool reader, as inbound uses it */
TEST(from_spool)
{
	struct smime_keypair kp;
	struct smime_envelope *env = NULL;
	struct spool *sp, *outsp;
	struct kmerr err;
	unsigned char *der, buf[4096];
	char *text;
	size_t len, tlen, got, off = 0;
	BIO *rd, *wr;
	int matched, same = 1;

	CHECK(setup());
	kp.cert = cert;
	kp.key = key;
	CHECK(encrypt("aes-256-cbc", 1, &der, &len));
	CHECK((text = b64(der, len, &tlen)) != NULL);
	CHECK((sp = spool_new(dir, 4096)) != NULL);
	CHECK((outsp = spool_new(dir, 4096)) != NULL);
	CHECK(spool_append(sp, text, tlen, &err) == KM_OK);
	CHECK((rd = spool_reader(sp)) != NULL && (wr = spool_writer(outsp)) != NULL);
	CHECK(smime_envelope_open_stream(rd, CMS_IN_BASE64, &env, &err) == KM_OK);
	CHECK(smime_envelope_decrypt(env, &kp, 1, wr, &matched, &err) == KM_OK);
	CHECK_EQ_INT(spool_size(outsp), PTLEN);
	while (spool_read(outsp, off, buf, sizeof(buf), &got, &err) == KM_OK && got > 0) {
		same &= memcmp(buf, pt + off, got) == 0;
		off += got;
	}
	CHECK(same && off == PTLEN);
	smime_envelope_free(env);
	BIO_free(rd);
	BIO_free(wr);
	spool_free(sp);
	spool_free(outsp);
	free(text);
	free(der);
}

/* the detached re-encoding names the same cipher the in-memory path reads */
TEST(same_cipher_as_memory)
{
	struct smime_envelope *m = NULL, *s = NULL;
	unsigned char *der;
	size_t len;
	struct kmerr err;
	char a[64], b[64];
	BIO *src;

	CHECK(setup());
	CHECK(encrypt("aes-192-cbc", 1, &der, &len));
	CHECK(smime_envelope_open(NULL, (char *)der, len, &m, &err) == KM_OK);
	CHECK((src = BIO_new_mem_buf(der, (int)len)) != NULL);
	CHECK(smime_envelope_open_stream(src, CMS_IN_DER, &s, &err) == KM_OK);
	CHECK(smime_envelope_cipher(m, a, sizeof(a)) != NULL);
	CHECK(smime_envelope_cipher(s, b, sizeof(b)) != NULL);
	CHECK_EQ_STR(a, b);
	CHECK_EQ_INT(smime_envelope_count(s), smime_envelope_count(m));
	CHECK_EQ_STR(smime_envelope_rid(s, 0), smime_envelope_rid(m, 0));
	CHECK(smime_envelope_match(s, cert));
	smime_envelope_free(m);
	smime_envelope_free(s);
	BIO_free(src);
	free(der);
}

/* sign - openssl cms -sign -nodetach of the plaintext, DER in *out (free) */
static int
sign(int stream, unsigned char **out, size_t *len)
{
	char cmd[512], path[128];
	struct stat sb;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "cd %s && openssl cms -sign -nodetach -binary -in pt "
	    "-outform DER %s -signer c.pem -inkey k.pem -out sd.der", dir,
	    stream ? "-stream" : "");
	snprintf(path, sizeof(path), "%s/sd.der", dir);
	if (system(cmd) != 0 || stat(path, &sb) != 0 || (f = fopen(path, "r")) == NULL)
		return 0;
	*len = (size_t)sb.st_size;
	if ((*out = malloc(*len)) == NULL || fread(*out, 1, *len, f) != *len) {
		fclose(f);
		return 0;
	}
	fclose(f);
	return 1;
}

/* verify_stream - smime_verify_stream over in; the content in *pout */
static enum km_status
verify_stream(const void *in, size_t len, struct smime_verify_result *res, BIO **pout,
    struct kmerr *err)
{
	X509_STORE *store = X509_STORE_new();
	BIO *src = BIO_new_mem_buf(in, (int)len);
	enum km_status st;

	*pout = BIO_new(BIO_s_mem());
	st = smime_verify_stream(src, CMS_IN_AUTO, store, NULL, "stream@example.com", res,
	    *pout, NULL, err);
	BIO_free(src);
	X509_STORE_free(store);
	return st;
}

/* signed-data, -stream (chunked, indefinite) and DER, raw and base64 */
TEST(signed_data_verified_as_stream)
{
	struct smime_verify_result res;
	unsigned char *der;
	char *text;
	size_t len, tlen;
	struct kmerr err;
	BIO *out;

	CHECK(setup());
	for (int stream = 0; stream < 2; stream++) {
		CHECK(sign(stream, &der, &len));
		CHECK(verify_stream(der, len, &res, &out, &err) == KM_OK);
		CHECK(res.sig_ok && res.opaque);
		CHECK(!res.chain_ok);		/* an empty trust store */
		CHECK(same_plaintext(out));
		BIO_free(out);
		CHECK((text = b64(der, len, &tlen)) != NULL);
		CHECK(verify_stream(text, tlen, &res, &out, &err) == KM_OK);
		CHECK(res.sig_ok && same_plaintext(out));
		BIO_free(out);
		free(text);
		/* a changed content octet: the signature fails */
		der[len / 2] ^= 0x01;
		CHECK(verify_stream(der, len, &res, &out, &err) == KM_OK);
		CHECK(!res.sig_ok);
		BIO_free(out);
		/* cut short: malformed, nothing checked */
		CHECK(verify_stream(der, len / 3, &res, &out, &err) == KM_PROTO);
		CHECK(strstr(err.msg, "truncated") != NULL);
		CHECK(!res.sig_ok);
		BIO_free(out);
		free(der);
	}
}

TEST(cleanup)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(dir[0] == '\0' || system(cmd) == 0);
}

static const struct test_case tests[] = {
	T(cbc_stream),
	T(cbc_der),
	T(gcm_stream),
	T(gcm_der),
	T(truncated),
	T(lying_lengths),
	T(bad_chunks),
	T(bad_base64),
	T(gcm_tag_and_ciphertext),
	T(from_spool),
	T(same_cipher_as_memory),
	T(signed_data_verified_as_stream),
	T(cleanup),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
