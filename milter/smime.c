/*
 * smime.c - S/MIME with OpenSSL 3 CMS: sign, encrypt, decrypt, verify
 * (see smime.h).
 */
#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "mime.h"
#include "secmem.h"
#include "smime.h"

#define B64_IN_LINE	57	/* bytes per 76-character base64 line */
#define B64_BATCH	64	/* lines encoded per write to the next BIO */

struct smime_envelope {
	CMS_ContentInfo	*cms;
	char		**rid;
	size_t		 nrid;
	int		 auth;
};

/* seterr - format a reason into errstr when there is one */
static KM_PRINTF(3, 4) void
seterr(char *errstr, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errstr == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errstr, errlen, fmt, ap);
	va_end(ap);
}

/*
 * ossl_fail - drain the OpenSSL error queue into errstr and the log
 * Returns st.  The first (root-cause) error goes into errstr after what;
 * every error is logged at debug level 1.
 */
static enum km_status
ossl_fail(enum km_status st, char *errstr, size_t errlen, const char *what)
{
	const char *file, *func, *data;
	unsigned long e;
	int line, flags, first = 1;
	char buf[256];

	while ((e = ERR_get_error_all(&file, &line, &func, &data,
	    &flags)) != 0) {
		const char *r = ERR_reason_error_string(e);
		const char *d = (flags & ERR_TXT_STRING) && data ? data : "";

		if (first) {
			seterr(errstr, errlen, "%s: %s%s%s%s", what,
			    r ? r : "error", func && *func ? " in " : "",
			    func ? func : "", *d ? " " : "");
			if (*d && errstr != NULL) {
				size_t n = strlen(errstr);

				if (n < errlen)
					snprintf(errstr + n, errlen - n, "(%s)", d);
			}
			first = 0;
		}
		ERR_error_string_n(e, buf, sizeof(buf));
		log_debug(1, "smime: %s: %s", what, buf);
	}
	if (first)
		seterr(errstr, errlen, "%s", what);
	return st;
}

/* ossl_drain - forget queued OpenSSL errors after an expected failure */
static void
ossl_drain(const char *what)
{
	char buf[256];
	unsigned long e;

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		log_debug(2, "smime: %s: %s", what, buf);
	}
}

/*
 * The b64crlf filter BIO: base64 in lines of 76 characters ending in CRLF.
 * BIO_flush() passes through; b64_finish() writes the last, padded line.
 */
struct b64ctx {
	unsigned char	 in[B64_IN_LINE];
	size_t		 n;
	unsigned char	 out[B64_BATCH * 78 + 1];
};

static BIO_METHOD *b64_method;
static pthread_once_t b64_once = PTHREAD_ONCE_INIT;

/* b64_emit - write bytes to the next BIO completely */
static int
b64_emit(BIO *next, const unsigned char *p, size_t n)
{
	while (n > 0) {
		size_t w = 0;

		if (BIO_write_ex(next, p, n, &w) != 1 || w == 0)
			return 0;
		p += w;
		n -= w;
	}
	return 1;
}

/* b64_write - encode whole lines, keep the rest for later */
static int
b64_write(BIO *b, const char *data, size_t len, size_t *written)
{
	struct b64ctx *c = BIO_get_data(b);
	BIO *next = BIO_next(b);
	const unsigned char *p = (const unsigned char *)data;
	size_t left = len, o;

	*written = 0;
	if (c == NULL || next == NULL)
		return 0;
	/* Complete a pending line first. */
	if (c->n > 0) {
		size_t k = B64_IN_LINE - c->n;

		if (k > left)
			k = left;
		memcpy(c->in + c->n, p, k);
		c->n += k;
		p += k;
		left -= k;
		if (c->n < B64_IN_LINE) {
			*written = len;
			return 1;
		}
		o = (size_t)EVP_EncodeBlock(c->out, c->in, B64_IN_LINE);
		c->out[o++] = '\r';
		c->out[o++] = '\n';
		if (!b64_emit(next, c->out, o))
			return 0;
		c->n = 0;
	}
	while (left >= B64_IN_LINE) {
		size_t lines = left / B64_IN_LINE;

		if (lines > B64_BATCH)
			lines = B64_BATCH;
		o = 0;
		for (size_t i = 0; i < lines; i++) {
			o += (size_t)EVP_EncodeBlock(c->out + o, p,
			    B64_IN_LINE);
			c->out[o++] = '\r';
			c->out[o++] = '\n';
			p += B64_IN_LINE;
			left -= B64_IN_LINE;
		}
		if (!b64_emit(next, c->out, o))
			return 0;
	}
	memcpy(c->in, p, left);
	c->n = left;
	*written = len;
	return 1;
}

/* b64_ctrl - pass controls to the next BIO */
static long
b64_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	BIO *next = BIO_next(b);

	if (next == NULL)
		return 0;
	return BIO_ctrl(next, cmd, num, ptr);
}

/* b64_create - allocate the filter state */
static int
b64_create(BIO *b)
{
	struct b64ctx *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return 0;
	BIO_set_data(b, c);
	BIO_set_init(b, 1);
	return 1;
}

/* b64_destroy - free the filter state */
static int
b64_destroy(BIO *b)
{
	free(BIO_get_data(b));
	BIO_set_data(b, NULL);
	return 1;
}

/* b64_method_init - build the BIO_METHOD once */
static void
b64_method_init(void)
{
	BIO_METHOD *m;
	int type = BIO_get_new_index();

	if (type == -1)
		return;
	m = BIO_meth_new(type | BIO_TYPE_FILTER, "kmilter base64 crlf");
	if (m == NULL)
		return;
	if (!BIO_meth_set_write_ex(m, b64_write) ||
	    !BIO_meth_set_ctrl(m, b64_ctrl) ||
	    !BIO_meth_set_create(m, b64_create) ||
	    !BIO_meth_set_destroy(m, b64_destroy)) {
		BIO_meth_free(m);
		return;
	}
	b64_method = m;
}

/* b64_new - a new b64crlf filter pushed on next */
static BIO *
b64_new(BIO *next)
{
	BIO *b;

	if (pthread_once(&b64_once, b64_method_init) != 0 ||
	    b64_method == NULL)
		return NULL;
	if ((b = BIO_new(b64_method)) == NULL)
		return NULL;
	return BIO_push(b, next);
}

/* b64_finish - write the last line (padded) and flush */
static int
b64_finish(BIO *b)
{
	struct b64ctx *c = BIO_get_data(b);
	size_t o;

	if (c->n > 0) {
		o = (size_t)EVP_EncodeBlock(c->out, c->in, (int)c->n);
		c->out[o++] = '\r';
		c->out[o++] = '\n';
		if (!b64_emit(BIO_next(b), c->out, o))
			return 0;
		c->n = 0;
	}
	return BIO_flush(BIO_next(b)) == 1;
}

/* b64_free - pop the filter from its chain and free it */
static void
b64_free(BIO *b)
{
	if (b != NULL) {
		BIO_pop(b);
		BIO_free(b);
	}
}

/* puts_out - write a C string to a BIO completely */
static int
puts_out(BIO *out, const char *s)
{
	return b64_emit(out, (const unsigned char *)s, strlen(s));
}

/*
 * to_crlf - the entity with CRLF line ends
 * *copy is set to a new buffer when bare LFs had to be converted (the
 * caller frees it with secmem_free(*copy, *copylen)), else left NULL.
 */
static enum km_status
to_crlf(const char *in, size_t len, char **copy, size_t *copylen)
{
	size_t bare = 0, i, o = 0;
	const char *p = in, *nl;
	char *buf;

	*copy = NULL;
	*copylen = 0;
	while ((nl = memchr(p, '\n', len - (size_t)(p - in))) != NULL) {
		if (nl == in || nl[-1] != '\r')
			bare++;
		p = nl + 1;
	}
	if (bare == 0)
		return KM_OK;
	if ((buf = secmem_alloc(len + bare)) == NULL)
		return KM_NOMEM;
	for (i = 0; i < len; i++) {
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			buf[o++] = '\r';
		buf[o++] = in[i];
	}
	*copy = buf;
	*copylen = o;
	return KM_OK;
}

/* make_boundary - a random boundary that does not occur in the data */
static enum km_status
make_boundary(char *bd, size_t bdlen, const char *data, size_t len)
{
	unsigned char rnd[16];
	int tries;

	for (tries = 0; tries < 8; tries++) {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			return KM_TEMPFAIL;
		snprintf(bd, bdlen, "----=_km_%02x%02x%02x%02x%02x%02x%02x%02x"
		    "%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
		    rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], rnd[8],
		    rnd[9], rnd[10], rnd[11], rnd[12], rnd[13], rnd[14],
		    rnd[15]);
		if (memmem(data, len, bd, strlen(bd)) == NULL)
			return KM_OK;
	}
	return KM_TEMPFAIL;
}

/* smime_sign - sign an entity: multipart/signed or opaque signed-data */
enum km_status
smime_sign(const char *entity, size_t len, X509 *cert, EVP_PKEY *key,
    STACK_OF(X509) *chain, enum smime_digest digest,
    enum smime_sign_mode mode, BIO *out, char *errstr, size_t errlen)
{
	const EVP_MD *md;
	const char *micalg;
	CMS_ContentInfo *cms = NULL;
	BIO *in = NULL, *b64 = NULL;
	char *copy = NULL, bd[64], hdr[512];
	size_t copylen = 0;
	unsigned int flags = CMS_BINARY | CMS_PARTIAL;
	enum km_status st;
	int i;

	ERR_clear_error();
	switch (digest) {
	case SMIME_MD_SHA256: md = EVP_sha256(); micalg = "sha-256"; break;
	case SMIME_MD_SHA384: md = EVP_sha384(); micalg = "sha-384"; break;
	case SMIME_MD_SHA512: md = EVP_sha512(); micalg = "sha-512"; break;
	default:
		seterr(errstr, errlen, "sign: unknown digest %d", (int)digest);
		return KM_PERMFAIL;
	}
	if (cert == NULL || key == NULL || out == NULL) {
		seterr(errstr, errlen, "sign: no signer certificate or key");
		return KM_PERMFAIL;
	}
	if ((st = to_crlf(entity, len, &copy, &copylen)) != KM_OK) {
		seterr(errstr, errlen, "sign: out of memory");
		return st;
	}
	if (copy != NULL) {
		entity = copy;
		len = copylen;
	}
	if (len > INT_MAX) {
		seterr(errstr, errlen, "sign: entity too large");
		st = KM_PERMFAIL;
		goto out;
	}
	if ((in = BIO_new_mem_buf(entity, (int)len)) == NULL) {
		st = ossl_fail(KM_NOMEM, errstr, errlen, "sign: BIO");
		goto out;
	}
	if (mode == SMIME_MODE_DETACHED)
		flags |= CMS_DETACHED;
	else
		flags |= CMS_STREAM;
	if ((cms = CMS_sign(NULL, NULL, NULL, NULL, flags)) == NULL) {
		st = ossl_fail(KM_NOMEM, errstr, errlen, "sign: CMS_sign");
		goto out;
	}
	if (CMS_add1_signer(cms, cert, key, md, CMS_BINARY) == NULL) {
		st = ossl_fail(KM_PERMFAIL, errstr, errlen,
		    "sign: unusable signer certificate or key");
		goto out;
	}
	for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
		if (!CMS_add1_cert(cms, sk_X509_value(chain, i))) {
			/* Adding a certificate twice is not an error. */
			ossl_drain("sign: chain");
		}
	}
	if (mode == SMIME_MODE_DETACHED) {
		if (!CMS_final(cms, in, NULL, flags)) {
			st = ossl_fail(KM_PERMFAIL, errstr, errlen,
			    "sign: CMS_final");
			goto out;
		}
		if ((st = make_boundary(bd, sizeof(bd), entity, len)) !=
		    KM_OK) {
			seterr(errstr, errlen, "sign: no random boundary");
			goto out;
		}
		snprintf(hdr, sizeof(hdr),
		    "Content-Type: multipart/signed;\r\n"
		    "\tprotocol=\"application/pkcs7-signature\";\r\n"
		    "\tmicalg=%s; boundary=\"%s\"\r\n"
		    "\r\n"
		    "This is an S/MIME signed message\r\n"
		    "\r\n"
		    "--%s\r\n", micalg, bd, bd);
		if (!puts_out(out, hdr) ||
		    !b64_emit(out, (const unsigned char *)entity, len))
			goto write_fail;
		snprintf(hdr, sizeof(hdr),
		    "\r\n--%s\r\n"
		    "Content-Type: application/pkcs7-signature; "
		    "name=\"smime.p7s\"\r\n"
		    "Content-Transfer-Encoding: base64\r\n"
		    "Content-Disposition: attachment; "
		    "filename=\"smime.p7s\"\r\n"
		    "Content-Description: S/MIME Cryptographic Signature\r\n"
		    "\r\n", bd);
		if (!puts_out(out, hdr))
			goto write_fail;
		if ((b64 = b64_new(out)) == NULL) {
			st = ossl_fail(KM_NOMEM, errstr, errlen, "sign: BIO");
			goto out;
		}
		if (!i2d_CMS_bio(b64, cms) || !b64_finish(b64))
			goto write_fail;
		snprintf(hdr, sizeof(hdr), "\r\n--%s--\r\n", bd);
		if (!puts_out(out, hdr))
			goto write_fail;
	} else {
		if (!puts_out(out,
		    "Content-Type: application/pkcs7-mime; "
		    "smime-type=signed-data;\r\n\tname=\"smime.p7m\"\r\n"
		    "Content-Transfer-Encoding: base64\r\n"
		    "Content-Disposition: attachment; "
		    "filename=\"smime.p7m\"\r\n"
		    "Content-Description: S/MIME Signed Message\r\n"
		    "\r\n"))
			goto write_fail;
		if ((b64 = b64_new(out)) == NULL) {
			st = ossl_fail(KM_NOMEM, errstr, errlen, "sign: BIO");
			goto out;
		}
		if (!i2d_CMS_bio_stream(b64, cms, in, flags) ||
		    !b64_finish(b64))
			goto write_fail;
	}
	if (BIO_flush(out) != 1)
		goto write_fail;
	st = KM_OK;
	goto out;
write_fail:
	st = ossl_fail(KM_TEMPFAIL, errstr, errlen, "sign: writing output");
out:
	b64_free(b64);
	CMS_ContentInfo_free(cms);
	BIO_free(in);
	secmem_free(copy, copylen);
	return st;
}

/* smime_encrypt - encrypt an entity to every certificate in rcpts */
enum km_status
smime_encrypt(const char *entity, size_t len, X509 *const *rcpts,
    size_t nrcpts, enum smime_cipher cipher, enum smime_padding padding,
    BIO *out, char *errstr, size_t errlen)
{
	const EVP_CIPHER *ciph;
	const char *stype = "enveloped-data";
	CMS_ContentInfo *cms = NULL;
	BIO *in = NULL, *b64 = NULL;
	char *copy = NULL, hdr[512];
	size_t copylen = 0, i;
	unsigned int flags = CMS_BINARY | CMS_PARTIAL | CMS_STREAM;
	enum km_status st;

	ERR_clear_error();
	switch (cipher) {
	case SMIME_CIPHER_AES256_CBC: ciph = EVP_aes_256_cbc(); break;
	case SMIME_CIPHER_AES128_CBC: ciph = EVP_aes_128_cbc(); break;
	case SMIME_CIPHER_AES256_GCM:
		ciph = EVP_aes_256_gcm();
		stype = "authEnveloped-data";
		break;
	default:
		seterr(errstr, errlen, "encrypt: unknown cipher %d",
		    (int)cipher);
		return KM_PERMFAIL;
	}
	if (padding != SMIME_PAD_PKCS1 && padding != SMIME_PAD_OAEP) {
		seterr(errstr, errlen, "encrypt: unknown padding %d",
		    (int)padding);
		return KM_PERMFAIL;
	}
	if (nrcpts == 0 || rcpts == NULL || out == NULL) {
		seterr(errstr, errlen, "encrypt: no recipients");
		return KM_PERMFAIL;
	}
	if ((st = to_crlf(entity, len, &copy, &copylen)) != KM_OK) {
		seterr(errstr, errlen, "encrypt: out of memory");
		return st;
	}
	if (copy != NULL) {
		entity = copy;
		len = copylen;
	}
	if (len > INT_MAX) {
		seterr(errstr, errlen, "encrypt: entity too large");
		st = KM_PERMFAIL;
		goto out;
	}
	if ((in = BIO_new_mem_buf(entity, (int)len)) == NULL) {
		st = ossl_fail(KM_NOMEM, errstr, errlen, "encrypt: BIO");
		goto out;
	}
	if ((cms = CMS_encrypt(NULL, NULL, ciph, flags)) == NULL) {
		st = ossl_fail(KM_PERMFAIL, errstr, errlen,
		    "encrypt: CMS_encrypt");
		goto out;
	}
	for (i = 0; i < nrcpts; i++) {
		EVP_PKEY *pk = X509_get0_pubkey(rcpts[i]);
		CMS_RecipientInfo *ri;
		int oaep = padding == SMIME_PAD_OAEP && pk != NULL &&
		    EVP_PKEY_is_a(pk, "RSA");

		ri = CMS_add1_recipient_cert(cms, rcpts[i],
		    oaep ? CMS_KEY_PARAM : 0);
		if (ri == NULL) {
			char what[64];

			snprintf(what, sizeof(what), "encrypt: unusable "
			    "recipient certificate %zu", i);
			st = ossl_fail(KM_PERMFAIL, errstr, errlen, what);
			goto out;
		}
		if (oaep) {
			EVP_PKEY_CTX *pctx = CMS_RecipientInfo_get0_pkey_ctx(ri);

			if (pctx == NULL ||
			    EVP_PKEY_CTX_set_rsa_padding(pctx,
			    RSA_PKCS1_OAEP_PADDING) <= 0 ||
			    EVP_PKEY_CTX_set_rsa_oaep_md(pctx,
			    EVP_sha256()) <= 0) {
				st = ossl_fail(KM_PERMFAIL, errstr, errlen,
				    "encrypt: OAEP parameters");
				goto out;
			}
		}
	}
	snprintf(hdr, sizeof(hdr),
	    "Content-Type: application/pkcs7-mime; smime-type=%s;\r\n"
	    "\tname=\"smime.p7m\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "Content-Disposition: attachment; filename=\"smime.p7m\"\r\n"
	    "Content-Description: S/MIME Encrypted Message\r\n"
	    "\r\n", stype);
	if (!puts_out(out, hdr))
		goto write_fail;
	if ((b64 = b64_new(out)) == NULL) {
		st = ossl_fail(KM_NOMEM, errstr, errlen, "encrypt: BIO");
		goto out;
	}
	if (!i2d_CMS_bio_stream(b64, cms, in, flags) || !b64_finish(b64) ||
	    BIO_flush(out) != 1)
		goto write_fail;
	st = KM_OK;
	goto out;
write_fail:
	st = ossl_fail(KM_TEMPFAIL, errstr, errlen,
	    "encrypt: writing output");
out:
	b64_free(b64);
	CMS_ContentInfo_free(cms);
	BIO_free(in);
	secmem_free(copy, copylen);
	return st;
}

/* der_to_cms - parse DER (or BER) bytes as a CMS ContentInfo */
static enum km_status
der_to_cms(const unsigned char *der, size_t len, CMS_ContentInfo **out,
    char *errstr, size_t errlen)
{
	const unsigned char *p = der;

	*out = NULL;
	if (len == 0) {
		seterr(errstr, errlen, "malformed CMS: empty");
		return KM_PROTO;
	}
	if (len > INT_MAX) {
		seterr(errstr, errlen, "malformed CMS: too large");
		return KM_PROTO;
	}
	/* d2i straight from the buffer: d2i_CMS_bio() would copy it. */
	*out = d2i_CMS_ContentInfo(NULL, &p, (long)len);
	if (*out == NULL)
		return ossl_fail(KM_PROTO, errstr, errlen, "malformed CMS");
	return KM_OK;
}

/*
 * body_to_cms - decode a CMS body: base64 (white space allowed) or binary
 * cte is the Content-Transfer-Encoding or NULL when unknown (then base64
 * is tried first, raw DER second).
 */
static enum km_status
body_to_cms(const char *cte, const char *body, size_t len,
    CMS_ContentInfo **out, char *errstr, size_t errlen)
{
	unsigned char *der = NULL;
	size_t derlen = 0;
	enum km_status st;

	*out = NULL;
	if (cte != NULL && (strcasecmp(cte, "binary") == 0 ||
	    strcasecmp(cte, "8bit") == 0 || strcasecmp(cte, "7bit") == 0))
		return der_to_cms((const unsigned char *)body, len, out,
		    errstr, errlen);
	if (cte != NULL && strcasecmp(cte, "base64") != 0) {
		seterr(errstr, errlen, "malformed S/MIME: unsupported "
		    "Content-Transfer-Encoding \"%s\"", cte);
		return KM_PROTO;
	}
	st = mime_base64_decode(body, len, &der, &derlen, errstr, errlen);
	if (st == KM_PROTO && cte == NULL && len > 0 &&
	    (unsigned char)body[0] == 0x30)
		return der_to_cms((const unsigned char *)body, len, out,
		    errstr, errlen);
	if (st != KM_OK)
		return st;
	st = der_to_cms(der, derlen, out, errstr, errlen);
	free(der);
	return st;
}

/*
 * open_entity - the Content-Type, transfer encoding and body of an input
 * Given ctype, body is the body and the encoding is unknown (NULL); given
 * none, body is a full entity.  *hp (to free) holds the strings.
 */
static enum km_status
open_entity(const char *ctype, const char *body, size_t len,
    struct mime_ctype **ct, const char **cte, const char **b, size_t *blen,
    struct mime_headers **hp, char *errstr, size_t errlen)
{
	size_t hlen, boff;
	enum km_status st;
	char why[128];

	*ct = NULL;
	*hp = NULL;
	*cte = NULL;
	*b = body;
	*blen = len;
	if (ctype == NULL) {
		if ((st = mime_entity_split(body, len, &hlen, &boff, why,
		    sizeof(why))) != KM_OK) {
			seterr(errstr, errlen, "malformed MIME: %s", why);
			return st;
		}
		if ((st = mime_headers_parse(body, hlen, hp, why,
		    sizeof(why))) != KM_OK) {
			seterr(errstr, errlen, "malformed MIME: %s", why);
			return st;
		}
		if ((ctype = mime_headers_get(*hp, "Content-Type")) == NULL) {
			seterr(errstr, errlen, "malformed MIME: no "
			    "Content-Type");
			*hp = mime_headers_free(*hp);
			return KM_PROTO;
		}
		*cte = mime_headers_get(*hp, "Content-Transfer-Encoding");
		*b = body + boff;
		*blen = len - boff;
	}
	if ((st = mime_ctype_parse(ctype, ct, why, sizeof(why))) != KM_OK) {
		seterr(errstr, errlen, "malformed Content-Type: %s", why);
		*hp = mime_headers_free(*hp);
		return st;
	}
	return KM_OK;
}

/*
 * load_cms - an S/MIME input as a CMS ContentInfo
 * Accepts application/(x-)pkcs7-mime entities or raw DER (ctype NULL and a
 * leading SEQUENCE).
 */
static enum km_status
load_cms(const char *ctype, const char *body, size_t len,
    CMS_ContentInfo **cms, char *errstr, size_t errlen)
{
	struct mime_headers *h = NULL;
	struct mime_ctype *ct = NULL;
	const char *cte, *b;
	size_t blen;
	enum km_status st;
	enum mime_smime_kind k;

	*cms = NULL;
	if (ctype == NULL && len > 0 && (unsigned char)body[0] == 0x30)
		return der_to_cms((const unsigned char *)body, len, cms,
		    errstr, errlen);
	if ((st = open_entity(ctype, body, len, &ct, &cte, &b, &blen, &h,
	    errstr, errlen)) != KM_OK)
		return st;
	k = mime_smime_kind(ct);
	if (k != MIME_SMIME_ENVELOPED && k != MIME_SMIME_AUTH_ENVELOPED &&
	    k != MIME_SMIME_SIGNED_OPAQUE && k != MIME_SMIME_PKCS7_UNKNOWN) {
		seterr(errstr, errlen, "not an S/MIME pkcs7-mime entity "
		    "(%s/%s, %s)", mime_ctype_type(ct), mime_ctype_subtype(ct),
		    mime_smime_kind_name(k));
		st = KM_PROTO;
		goto out;
	}
	st = body_to_cms(cte, b, blen, cms, errstr, errlen);
out:
	mime_ctype_free(ct);
	mime_headers_free(h);
	return st;
}

/* hexstr - lower-case hex of bytes into a new string */
static char *
hexstr(const unsigned char *p, size_t n)
{
	char *s = malloc(n * 2 + 1);
	size_t i;

	if (s == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		snprintf(s + 2 * i, 3, "%02x", p[i]);
	s[2 * n] = '\0';
	return s;
}

/* rid_string - printable RecipientIdentifier */
static char *
rid_string(const char *prefix, const ASN1_OCTET_STRING *keyid,
    const X509_NAME *issuer, const ASN1_INTEGER *sno)
{
	char *s = NULL, *hex = NULL, name[256] = "";
	BIO *m = NULL;
	BIGNUM *bn = NULL;
	size_t n;

	if (keyid != NULL) {
		if ((hex = hexstr(ASN1_STRING_get0_data(keyid),
		    (size_t)ASN1_STRING_length(keyid))) == NULL)
			return NULL;
		n = strlen(prefix) + strlen(hex) + 8;
		if ((s = malloc(n)) != NULL)
			snprintf(s, n, "%sski=%s", prefix, hex);
		free(hex);
		return s;
	}
	if (issuer == NULL || sno == NULL)
		return strdup("unknown");
	if ((m = BIO_new(BIO_s_mem())) != NULL &&
	    X509_NAME_print_ex(m, issuer, 0, XN_FLAG_RFC2253) >= 0) {
		int r = BIO_read(m, name, sizeof(name) - 1);

		name[r > 0 ? r : 0] = '\0';
	}
	BIO_free(m);
	if ((bn = ASN1_INTEGER_to_BN(sno, NULL)) == NULL ||
	    (hex = BN_bn2hex(bn)) == NULL) {
		BN_free(bn);
		return NULL;
	}
	n = strlen(prefix) + strlen(name) + strlen(hex) + 24;
	if ((s = malloc(n)) != NULL)
		snprintf(s, n, "%sissuer=%s;serial=%s", prefix, name, hex);
	OPENSSL_free(hex);
	BN_free(bn);
	return s;
}

/* env_add_rid - append a printable recipient id */
static enum km_status
env_add_rid(struct smime_envelope *env, char *s)
{
	char **n;

	if (s == NULL)
		return KM_NOMEM;
	if ((n = reallocarray(env->rid, env->nrid + 1, sizeof(*n))) == NULL) {
		free(s);
		return KM_NOMEM;
	}
	env->rid = n;
	env->rid[env->nrid++] = s;
	return KM_OK;
}

/* smime_envelope_open - parse an enveloped message once */
enum km_status
smime_envelope_open(const char *ctype, const char *body, size_t len,
    struct smime_envelope **out, char *errstr, size_t errlen)
{
	struct smime_envelope *env;
	STACK_OF(CMS_RecipientInfo) *ris;
	enum km_status st;
	int nid, i, j;

	*out = NULL;
	ERR_clear_error();
	if ((env = calloc(1, sizeof(*env))) == NULL) {
		seterr(errstr, errlen, "out of memory");
		return KM_NOMEM;
	}
	if ((st = load_cms(ctype, body, len, &env->cms, errstr, errlen)) !=
	    KM_OK)
		goto fail;
	nid = OBJ_obj2nid(CMS_get0_type(env->cms));
	if (nid == NID_id_smime_ct_authEnvelopedData)
		env->auth = 1;
	else if (nid != NID_pkcs7_enveloped) {
		seterr(errstr, errlen, "not enveloped data: CMS content type "
		    "%s", OBJ_nid2sn(nid));
		st = KM_PROTO;
		goto fail;
	}
	if ((ris = CMS_get0_RecipientInfos(env->cms)) == NULL ||
	    sk_CMS_RecipientInfo_num(ris) <= 0) {
		ERR_clear_error();
		seterr(errstr, errlen, "malformed CMS: no RecipientInfos");
		st = KM_PROTO;
		goto fail;
	}
	for (i = 0; i < sk_CMS_RecipientInfo_num(ris); i++) {
		CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, i);
		ASN1_OCTET_STRING *keyid = NULL;
		X509_NAME *issuer = NULL;
		ASN1_INTEGER *sno = NULL;
		STACK_OF(CMS_RecipientEncryptedKey) *reks;
		char *s;

		switch (CMS_RecipientInfo_type(ri)) {
		case CMS_RECIPINFO_TRANS:
			if (!CMS_RecipientInfo_ktri_get0_signer_id(ri, &keyid,
			    &issuer, &sno))
				s = strdup("ktri:unknown");
			else
				s = rid_string("", keyid, issuer, sno);
			st = env_add_rid(env, s);
			break;
		case CMS_RECIPINFO_AGREE:
			reks = CMS_RecipientInfo_kari_get0_reks(ri);
			st = KM_OK;
			for (j = 0; st == KM_OK &&
			    j < sk_CMS_RecipientEncryptedKey_num(reks); j++) {
				CMS_RecipientEncryptedKey *rek =
				    sk_CMS_RecipientEncryptedKey_value(reks, j);
				ASN1_GENERALIZEDTIME *tm;
				CMS_OtherKeyAttribute *other;

				keyid = NULL;
				issuer = NULL;
				sno = NULL;
				if (!CMS_RecipientEncryptedKey_get0_id(rek,
				    &keyid, &tm, &other, &issuer, &sno))
					s = strdup("kari:unknown");
				else
					s = rid_string("kari:", keyid, issuer,
					    sno);
				st = env_add_rid(env, s);
			}
			break;
		case CMS_RECIPINFO_KEK:
			st = env_add_rid(env, strdup("kekri"));
			break;
		case CMS_RECIPINFO_PASS:
			st = env_add_rid(env, strdup("pwri"));
			break;
		default:
			st = env_add_rid(env, strdup("other"));
			break;
		}
		if (st != KM_OK) {
			seterr(errstr, errlen, "out of memory");
			goto fail;
		}
	}
	ERR_clear_error();
	*out = env;
	return KM_OK;
fail:
	if (st != KM_OK)
		ossl_drain("envelope");
	smime_envelope_free(env);
	return st;
}

/* smime_envelope_count - number of recipient identifiers */
size_t
smime_envelope_count(const struct smime_envelope *env)
{
	return env ? env->nrid : 0;
}

/* smime_envelope_rid - printable recipient identifier i */
const char *
smime_envelope_rid(const struct smime_envelope *env, size_t i)
{
	return (env && i < env->nrid) ? env->rid[i] : NULL;
}

/* smime_envelope_is_auth - 1 for AuthEnvelopedData */
int
smime_envelope_is_auth(const struct smime_envelope *env)
{
	return env ? env->auth : 0;
}

/* smime_envelope_match - 1 when cert matches one of the RecipientInfos */
int
smime_envelope_match(const struct smime_envelope *env, X509 *cert)
{
	STACK_OF(CMS_RecipientInfo) *ris;
	int i, j, found = 0;

	if (env == NULL || cert == NULL)
		return 0;
	ris = CMS_get0_RecipientInfos(env->cms);
	for (i = 0; !found && i < sk_CMS_RecipientInfo_num(ris); i++) {
		CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, i);
		STACK_OF(CMS_RecipientEncryptedKey) *reks;

		switch (CMS_RecipientInfo_type(ri)) {
		case CMS_RECIPINFO_TRANS:
			if (CMS_RecipientInfo_ktri_cert_cmp(ri, cert) == 0)
				found = 1;
			break;
		case CMS_RECIPINFO_AGREE:
			reks = CMS_RecipientInfo_kari_get0_reks(ri);
			for (j = 0; j < sk_CMS_RecipientEncryptedKey_num(reks);
			    j++)
				if (CMS_RecipientEncryptedKey_cert_cmp(
				    sk_CMS_RecipientEncryptedKey_value(reks, j),
				    cert) == 0)
					found = 1;
			break;
		default:
			break;
		}
	}
	ERR_clear_error();
	return found;
}

/* smime_envelope_decrypt - unwrap with the first matching candidate */
enum km_status
smime_envelope_decrypt(struct smime_envelope *env,
    const struct smime_keypair *cands, size_t ncands, BIO *out,
    int *matched, char *errstr, size_t errlen)
{
	size_t i;
	int any = 0, got = -1;
	char why[200] = "";

	if (matched != NULL)
		*matched = -1;
	ERR_clear_error();
	if (env == NULL || out == NULL) {
		seterr(errstr, errlen, "decrypt: no envelope or output");
		return KM_PERMFAIL;
	}
	/* Unwrap the content-encryption key first: no output until one
	   candidate works, so a failed try cannot leave junk in out. */
	for (i = 0; i < ncands && got < 0; i++) {
		if (cands[i].cert == NULL || cands[i].key == NULL ||
		    !smime_envelope_match(env, cands[i].cert))
			continue;
		any = 1;
		if (matched != NULL)
			*matched = (int)i;
		if (X509_check_private_key(cands[i].cert, cands[i].key) != 1) {
			ossl_fail(KM_PERMFAIL, why, sizeof(why),
			    "decryption failed: candidate key does not match "
			    "its certificate");
			continue;
		}
		/* Without CMS_DEBUG_DECRYPT OpenSSL hides key-unwrap errors
		   (MMA countermeasure): a wrong key shows up below as a
		   content decryption failure. */
		if (CMS_decrypt_set1_pkey(env->cms, cands[i].key,
		    cands[i].cert) == 1)
			got = (int)i;
		else
			ossl_fail(KM_PERMFAIL, why, sizeof(why),
			    "decryption failed");
	}
	if (!any) {
		seterr(errstr, errlen, "no matching recipient: none of %zu "
		    "candidate certificates matches the %zu RecipientInfos",
		    ncands, env->nrid);
		return KM_PERMFAIL;
	}
	if (got < 0) {
		seterr(errstr, errlen, "%s", why[0] ? why :
		    "decryption failed");
		return KM_PERMFAIL;
	}
	if (matched != NULL)
		*matched = got;
	if (CMS_decrypt(env->cms, NULL, NULL, NULL, out, CMS_BINARY) != 1)
		return ossl_fail(KM_PERMFAIL, errstr, errlen,
		    "decryption failed");
	if (BIO_flush(out) != 1)
		return ossl_fail(KM_TEMPFAIL, errstr, errlen,
		    "decrypt: writing output");
	return KM_OK;
}

/* smime_envelope_free - free an envelope; returns NULL */
struct smime_envelope *
smime_envelope_free(struct smime_envelope *env)
{
	size_t i;

	if (env == NULL)
		return NULL;
	for (i = 0; i < env->nrid; i++)
		free(env->rid[i]);
	free(env->rid);
	CMS_ContentInfo_free(env->cms);
	free(env);
	return NULL;
}

/* smime_decrypt - decrypt with the first candidate that matches */
enum km_status
smime_decrypt(const char *ctype, const char *body, size_t len,
    const struct smime_keypair *cands, size_t ncands, BIO *out,
    int *matched, char *errstr, size_t errlen)
{
	struct smime_envelope *env = NULL;
	enum km_status st;

	if (matched != NULL)
		*matched = -1;
	if ((st = smime_envelope_open(ctype, body, len, &env, errstr,
	    errlen)) != KM_OK)
		return st;
	st = smime_envelope_decrypt(env, cands, ncands, out, matched,
	    errstr, errlen);
	smime_envelope_free(env);
	return st;
}

/* addr_of - the addr-spec inside "Name <addr>" (or the whole string) */
static void
addr_of(const char *from, char *buf, size_t buflen)
{
	const char *lt = strrchr(from, '<'), *gt, *s = from, *e;

	if (lt != NULL && (gt = strchr(lt, '>')) != NULL) {
		s = lt + 1;
		e = gt;
	} else
		e = from + strlen(from);
	while (s < e && isspace((unsigned char)*s))
		s++;
	while (e > s && isspace((unsigned char)e[-1]))
		e--;
	snprintf(buf, buflen, "%.*s", (int)(e - s), s);
}

/* signer_details - fill subject, email, fingerprint, from_match */
static void
signer_details(X509 *signer, const char *from, struct smime_verify_result *r)
{
	STACK_OF(OPENSSL_STRING) *emails;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;
	char addr[256] = "";
	BIO *m;
	int k;

	if ((m = BIO_new(BIO_s_mem())) != NULL &&
	    X509_NAME_print_ex(m, X509_get_subject_name(signer), 0,
	    XN_FLAG_RFC2253) >= 0) {
		int n = BIO_read(m, r->subject, sizeof(r->subject) - 1);

		r->subject[n > 0 ? n : 0] = '\0';
	}
	BIO_free(m);
	if (X509_digest(signer, EVP_sha256(), md, &mdlen) == 1)
		for (i = 0; i < mdlen && i < 32; i++)
			snprintf(r->fingerprint + 2 * i, 3, "%02x", md[i]);
	if (from != NULL)
		addr_of(from, addr, sizeof(addr));
	emails = X509_get1_email(signer);
	for (k = 0; k < sk_OPENSSL_STRING_num(emails); k++) {
		const char *e = sk_OPENSSL_STRING_value(emails, k);

		if (k == 0)
			snprintf(r->email, sizeof(r->email), "%s", e);
		if (addr[0] != '\0' && strcasecmp(e, addr) == 0) {
			r->from_match = 1;
			snprintf(r->email, sizeof(r->email), "%s", e);
		}
	}
	X509_email_free(emails);
}

/* signing_time - the signingTime attribute of a SignerInfo, 0 if none */
static time_t
signing_time(CMS_SignerInfo *si)
{
	int idx = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1);
	X509_ATTRIBUTE *a;
	ASN1_TYPE *t;
	struct tm tm;

	if (idx < 0 || (a = CMS_signed_get_attr(si, idx)) == NULL ||
	    (t = X509_ATTRIBUTE_get0_type(a, 0)) == NULL)
		return 0;
	if (t->type != V_ASN1_UTCTIME && t->type != V_ASN1_GENERALIZEDTIME)
		return 0;
	memset(&tm, 0, sizeof(tm));
	if (ASN1_TIME_to_tm((const ASN1_TIME *)t->value.asn1_string,
	    &tm) != 1)
		return 0;
	return timegm(&tm);
}

/* verify_chain - check the signer's chain, purpose smimesign */
static void
verify_chain(CMS_ContentInfo *cms, X509 *signer, X509_STORE *store,
    struct smime_verify_result *r)
{
	X509_STORE_CTX *ctx = NULL;
	STACK_OF(X509) *certs = CMS_get1_certs(cms);

	if (store == NULL) {
		snprintf(r->chain_error, sizeof(r->chain_error),
		    "no trust store");
		goto out;
	}
	if ((ctx = X509_STORE_CTX_new()) == NULL ||
	    !X509_STORE_CTX_init(ctx, store, signer, certs) ||
	    !X509_STORE_CTX_set_default(ctx, "smime_sign")) {
		snprintf(r->chain_error, sizeof(r->chain_error),
		    "cannot set up chain verification");
		goto out;
	}
	if (X509_verify_cert(ctx) == 1)
		r->chain_ok = 1;
	else
		snprintf(r->chain_error, sizeof(r->chain_error), "%s",
		    X509_verify_cert_error_string(
		    X509_STORE_CTX_get_error(ctx)));
out:
	X509_STORE_CTX_free(ctx);
	sk_X509_pop_free(certs, X509_free);
	ossl_drain("verify chain");
}

/* smime_verify - check a signed entity */
enum km_status
smime_verify(const char *ctype, const char *body, size_t len,
    X509_STORE *store, const char *from, struct smime_verify_result *res,
    BIO *content_out, char *errstr, size_t errlen)
{
	struct mime_headers *h = NULL, *sh = NULL;
	struct mime_ctype *ct = NULL, *sct = NULL;
	struct mime_parts *parts = NULL;
	CMS_ContentInfo *cms = NULL;
	STACK_OF(CMS_SignerInfo) *sis;
	const char *cte, *b, *content = NULL;
	size_t blen, clen = 0, hlen, boff;
	BIO *dcont = NULL, *sink = NULL;
	enum km_status st;
	enum mime_smime_kind k;
	char why[160];

	memset(res, 0, sizeof(*res));
	ERR_clear_error();
	if (ctype == NULL && len > 0 && (unsigned char)body[0] == 0x30) {
		if ((st = der_to_cms((const unsigned char *)body, len, &cms,
		    errstr, errlen)) != KM_OK)
			goto out;
		res->opaque = 1;
	} else {
		if ((st = open_entity(ctype, body, len, &ct, &cte, &b, &blen,
		    &h, errstr, errlen)) != KM_OK)
			goto out;
		k = mime_smime_kind(ct);
		if (k == MIME_SMIME_SIGNED_DETACHED) {
			const char *sp, *stype, *scte;
			size_t splen;

			if ((st = mime_multipart_split(b, blen,
			    mime_ctype_param(ct, "boundary"), &parts, why,
			    sizeof(why))) != KM_OK) {
				seterr(errstr, errlen, "malformed "
				    "multipart/signed: %s", why);
				goto out;
			}
			if (parts->count != 2) {
				seterr(errstr, errlen, "malformed "
				    "multipart/signed: %zu parts, not 2",
				    parts->count);
				st = KM_PROTO;
				goto out;
			}
			content = b + parts->part[0].off;
			clen = parts->part[0].len;
			sp = b + parts->part[1].off;
			splen = parts->part[1].len;
			if ((st = mime_entity_split(sp, splen, &hlen, &boff,
			    why, sizeof(why))) != KM_OK ||
			    (st = mime_headers_parse(sp, hlen, &sh, why,
			    sizeof(why))) != KM_OK) {
				seterr(errstr, errlen, "malformed signature "
				    "part: %s", why);
				goto out;
			}
			if ((stype = mime_headers_get(sh, "Content-Type")) ==
			    NULL || (st = mime_ctype_parse(stype, &sct, why,
			    sizeof(why))) != KM_OK ||
			    strcmp(mime_ctype_type(sct), "application") != 0 ||
			    (strcmp(mime_ctype_subtype(sct),
			    "pkcs7-signature") != 0 &&
			    strcmp(mime_ctype_subtype(sct),
			    "x-pkcs7-signature") != 0)) {
				seterr(errstr, errlen, "malformed "
				    "multipart/signed: second part is not "
				    "application/pkcs7-signature");
				st = KM_PROTO;
				goto out;
			}
			scte = mime_headers_get(sh,
			    "Content-Transfer-Encoding");
			if ((st = body_to_cms(scte, sp + boff, splen - boff,
			    &cms, errstr, errlen)) != KM_OK)
				goto out;
		} else if (k == MIME_SMIME_SIGNED_OPAQUE ||
		    k == MIME_SMIME_PKCS7_UNKNOWN) {
			if ((st = body_to_cms(cte, b, blen, &cms, errstr,
			    errlen)) != KM_OK)
				goto out;
			res->opaque = 1;
		} else {
			seterr(errstr, errlen, "not a signed S/MIME entity "
			    "(%s/%s, %s)", mime_ctype_type(ct),
			    mime_ctype_subtype(ct), mime_smime_kind_name(k));
			st = KM_PROTO;
			goto out;
		}
	}
	if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
		seterr(errstr, errlen, "not signed data: CMS content type %s",
		    OBJ_nid2sn(OBJ_obj2nid(CMS_get0_type(cms))));
		st = KM_PROTO;
		goto out;
	}
	if (res->opaque) {
		ASN1_OCTET_STRING **pos = CMS_get0_content(cms);

		if (pos == NULL || *pos == NULL) {
			seterr(errstr, errlen, "malformed signed-data: no "
			    "encapsulated content");
			st = KM_PROTO;
			goto out;
		}
		content = (const char *)ASN1_STRING_get0_data(*pos);
		clen = (size_t)ASN1_STRING_length(*pos);
	} else if ((dcont = BIO_new_mem_buf(content, (int)clen)) == NULL) {
		st = ossl_fail(KM_NOMEM, errstr, errlen, "verify: BIO");
		goto out;
	}
	sis = CMS_get0_SignerInfos(cms);
	res->nsigners = sis ? sk_CMS_SignerInfo_num(sis) : 0;
	if (res->nsigners <= 0) {
		seterr(errstr, errlen, "signed data without SignerInfos");
		st = KM_PROTO;
		goto out;
	}
	/* Signature first, without the chain: the chain is judged apart. */
	if ((sink = BIO_new(BIO_s_null())) == NULL) {
		st = ossl_fail(KM_NOMEM, errstr, errlen, "verify: BIO");
		goto out;
	}
	if (CMS_verify(cms, NULL, NULL, dcont, sink,
	    CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) == 1)
		res->sig_ok = 1;
	else
		ossl_fail(KM_OK, errstr, errlen, "signature");
	{
		CMS_SignerInfo *si = sk_CMS_SignerInfo_value(sis, 0);
		X509 *signer = NULL;
		X509_ALGOR *dig = NULL, *sig = NULL;
		EVP_PKEY *pk = NULL;

		CMS_SignerInfo_get0_algs(si, &pk, &signer, &dig, &sig);
		if (signer == NULL) {
			STACK_OF(X509) *certs = CMS_get1_certs(cms);
			int i;

			for (i = 0; certs && i < sk_X509_num(certs); i++)
				if (CMS_SignerInfo_cert_cmp(si,
				    sk_X509_value(certs, i)) == 0) {
					CMS_SignerInfo_set1_signer_cert(si,
					    sk_X509_value(certs, i));
					break;
				}
			sk_X509_pop_free(certs, X509_free);
			CMS_SignerInfo_get0_algs(si, &pk, &signer, &dig, &sig);
		}
		if (dig != NULL)
			snprintf(res->digest, sizeof(res->digest), "%s",
			    OBJ_nid2sn(OBJ_obj2nid(dig->algorithm)));
		for (char *p = res->digest; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		res->signing_time = signing_time(si);
		if (signer != NULL) {
			signer_details(signer, from, res);
			verify_chain(cms, signer, store, res);
		} else {
			res->sig_ok = 0;
			snprintf(res->chain_error, sizeof(res->chain_error),
			    "signer certificate not in the message");
		}
	}
	if (content_out != NULL && clen > 0 &&
	    (!b64_emit(content_out, (const unsigned char *)content, clen) ||
	    BIO_flush(content_out) != 1)) {
		st = ossl_fail(KM_TEMPFAIL, errstr, errlen,
		    "verify: writing content");
		goto out;
	}
	ossl_drain("verify");
	st = KM_OK;
out:
	if (st != KM_OK)
		ossl_drain("verify");
	BIO_free(sink);
	BIO_free(dcont);
	CMS_ContentInfo_free(cms);
	mime_parts_free(parts);
	mime_ctype_free(sct);
	mime_headers_free(sh);
	mime_ctype_free(ct);
	mime_headers_free(h);
	return st;
}
