/*
 * keystore_entry.c - the L2 (Redis) form of a set of key generations:
 * encode, strict decode, free.  See keystore_entry.h.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "keymodel_name.h"
#include "keystore_entry.h"
#include "keystore_int.h"
#include "pkcs8pw.h"
#include "secmem.h"

#define SET_MAGIC	"KSG1"
#define SET_MAX		1000		/* generations in one set */

/* keystore_gens_free - free generations made here (der in secmem) */
void
keystore_gens_free(struct keymodel_gen *g, size_t n)
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
 * keystore_entry_encode - serialize generations for L2
 * Format: "KSG1" n(4) then per generation: generation(4) state(4)
 * enhanced(1) certlen(4) cert-DER derlen(4) der.  The buffer is secmem
 * (a plain PKCS#8 key is secret); free with secmem_free(*out, *outlen).
 */
enum km_status
keystore_entry_encode(const struct keymodel_gen *g, size_t n,
    unsigned char **out, size_t *outlen)
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

/* keystore_parse_plain - parse a plain PKCS#8 key and check it against cert */
enum km_status
keystore_parse_plain(const unsigned char *der, size_t len, X509 *cert,
    EVP_PKEY **out, struct kmerr *err)
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
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "private key does not parse");
	}
	PKCS8_PRIV_KEY_INFO_free(p8);
	if (cert != NULL && X509_check_private_key(cert, k) != 1) {
		EVP_PKEY_free(k);
		ERR_clear_error();
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "private key does not match certificate");
	}
	*out = k;
	return KM_OK;
}

/* keystore_entry_decode - strict parse of an L2 set; plain keys are parsed
 * too */
enum km_status
keystore_entry_decode(const unsigned char *buf, size_t len,
    struct keymodel_gen **out, size_t *nout, struct kmerr *err)
{
	const unsigned char *p = buf, *end = buf + len;
	struct keymodel_gen *g = NULL;
	uint32_t n, v;
	size_t i = 0;
	enum km_status st = KM_PROTO;

	*out = NULL;
	*nout = 0;
	if (len < 8 || memcmp(buf, SET_MAGIC, 4) != 0)
		return kmerr_set(err, KM_PROTO, KMERR_NONE, "bad set header");
	p += 4;
	if (get32(&p, end, &n) < 0 || n == 0 || n > SET_MAX)
		return kmerr_set(err, KM_PROTO, KMERR_NONE, "bad set count");
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
		if (!g[i].enhanced && (st = keystore_parse_plain(g[i].der,
		    g[i].derlen, g[i].cert, &g[i].key, err)) != KM_OK)
			goto fail;
	}
	if (p != end)
		goto bad;
	*out = g;
	*nout = n;
	return KM_OK;
bad:
	st = kmerr_set(err, KM_PROTO, KMERR_NONE,
	    "malformed generation %zu", i + 1);
fail:
	ERR_clear_error();
	keystore_gens_free(g, n);
	return st;
}

/*
 * keystore_env_wrap - the envelope of every L2 value the keystore writes:
 * "KSE1" revcount(4) flags(1) body; flags KEYSTORE_ENV_NEGATIVE marks "the
 * KM has none" (no body).  secmem: secmem_free(*out, *outlen).
 */
enum km_status
keystore_env_wrap(uint32_t revcount, int negative, const unsigned char *body,
    size_t len, unsigned char **out, size_t *outlen)
{
	unsigned char *buf;

	*out = NULL;
	*outlen = 0;
	if (negative)
		len = 0;
	if (len > SIZE_MAX - KEYSTORE_ENV_LEN || (len > 0 && body == NULL))
		return KM_PROTO;
	if ((buf = secmem_alloc(KEYSTORE_ENV_LEN + len)) == NULL)
		return KM_NOMEM;
	memcpy(buf, KEYSTORE_ENV_MAGIC, 4);
	put32(buf + 4, revcount);
	buf[8] = negative ? KEYSTORE_ENV_NEGATIVE : 0;
	if (len > 0)
		memcpy(buf + KEYSTORE_ENV_LEN, body, len);
	*out = buf;
	*outlen = KEYSTORE_ENV_LEN + len;
	return KM_OK;
}

/*
 * keystore_env_unwrap - check an envelope strictly and point into it:
 * the magic (an entry written before envelopes existed has none), known
 * flags only, and no body on a negative entry.
 */
enum km_status
keystore_env_unwrap(const unsigned char *buf, size_t len, uint32_t *revcount,
    int *negative, const unsigned char **body, size_t *bodylen,
    struct kmerr *err)
{
	const unsigned char *p = buf + 4;

	*revcount = 0;
	*negative = 0;
	*body = NULL;
	*bodylen = 0;
	if (buf == NULL || len < KEYSTORE_ENV_LEN ||
	    memcmp(buf, KEYSTORE_ENV_MAGIC, 4) != 0)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "old format or not a keystore entry");
	if (buf[8] & ~KEYSTORE_ENV_NEGATIVE)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "unknown entry flags 0x%02x", buf[8]);
	if ((buf[8] & KEYSTORE_ENV_NEGATIVE) && len != KEYSTORE_ENV_LEN)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "negative entry with a body");
	(void)get32(&p, buf + len, revcount);
	*negative = (buf[8] & KEYSTORE_ENV_NEGATIVE) != 0;
	*body = buf + KEYSTORE_ENV_LEN;
	*bodylen = len - KEYSTORE_ENV_LEN;
	return KM_OK;
}
