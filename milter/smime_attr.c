/*
 * smime_attr.c - the signed attributes kmilter adds to its signatures
 * (see smime_int.h): SMIMECapabilities (what kmilter decrypts, strongest
 * first) and SMIMEEncryptionKeyPreference (RFC 8551 2.5.3, the
 * IssuerAndSerialNumber choice) naming the certificate to encrypt to.
 */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/cms.h>
#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "smime.h"
#include "smime_int.h"

/* algor_nid - an AlgorithmIdentifier with absent parameters, or NULL */
static X509_ALGOR *
algor_nid(int nid)
{
	X509_ALGOR *a = X509_ALGOR_new();

	if (a != NULL && !X509_ALGOR_set0(a, OBJ_nid2obj(nid), V_ASN1_UNDEF, NULL)) {
		X509_ALGOR_free(a);
		return NULL;
	}
	return a;
}

/*
 * oaep_sha256 - rSAES-OAEP with SHA-256 and MGF1-SHA-256 (RFC 4055), the
 * parameters kmilter itself encrypts with; NULL on failure
 */
static X509_ALGOR *
oaep_sha256(void)
{
	RSA_OAEP_PARAMS *p = RSA_OAEP_PARAMS_new();
	X509_ALGOR *a = NULL, *md = NULL;
	ASN1_TYPE *mgfparam = NULL, *param = NULL;

	if (p == NULL || (p->hashFunc = X509_ALGOR_new()) == NULL ||
	    (p->maskGenFunc = X509_ALGOR_new()) == NULL ||
	    (md = X509_ALGOR_new()) == NULL)
		goto out;
	X509_ALGOR_set_md(p->hashFunc, EVP_sha256());
	X509_ALGOR_set_md(md, EVP_sha256());
	if ((mgfparam = ASN1_TYPE_pack_sequence(ASN1_ITEM_rptr(X509_ALGOR), md,
	    NULL)) == NULL ||
	    !X509_ALGOR_set0(p->maskGenFunc, OBJ_nid2obj(NID_mgf1),
	    V_ASN1_SEQUENCE, mgfparam->value.sequence))
		goto out;
	mgfparam->value.sequence = NULL;	/* now p's */
	if ((param = ASN1_TYPE_pack_sequence(ASN1_ITEM_rptr(RSA_OAEP_PARAMS), p,
	    NULL)) == NULL || (a = X509_ALGOR_new()) == NULL)
		goto out;
	if (!X509_ALGOR_set0(a, OBJ_nid2obj(NID_rsaesOaep), V_ASN1_SEQUENCE,
	    param->value.sequence)) {
		X509_ALGOR_free(a);
		a = NULL;
		goto out;
	}
	param->value.sequence = NULL;	/* now a's */
out:
	ASN1_TYPE_free(mgfparam);
	ASN1_TYPE_free(param);
	X509_ALGOR_free(md);
	RSA_OAEP_PARAMS_free(p);
	return a;
}

/* caps_der - the SMIMECapabilities value, DER: AES-256-GCM, AES-256-CBC,
   AES-128-CBC, then RSAES-OAEP (SHA-256); *len 0 on failure */
static unsigned char *
caps_der(int *len)
{
	static const int ciphers[] = { NID_aes_256_gcm, NID_aes_256_cbc,
	    NID_aes_128_cbc };
	STACK_OF(X509_ALGOR) *caps = sk_X509_ALGOR_new_null();
	unsigned char *der = NULL;
	X509_ALGOR *a;
	size_t i;

	*len = 0;
	if (caps == NULL)
		return NULL;
	for (i = 0; i < sizeof(ciphers) / sizeof(ciphers[0]); i++) {
		if ((a = algor_nid(ciphers[i])) == NULL ||
		    !sk_X509_ALGOR_push(caps, a)) {
			X509_ALGOR_free(a);
			goto out;
		}
	}
	if ((a = oaep_sha256()) == NULL || !sk_X509_ALGOR_push(caps, a)) {
		X509_ALGOR_free(a);
		goto out;
	}
	if ((*len = i2d_X509_ALGORS(caps, &der)) <= 0)
		*len = 0;
out:
	sk_X509_ALGOR_pop_free(caps, X509_ALGOR_free);
	return der;
}

static unsigned char *caps_value;	/* caps_der(), made once, kept */
static int caps_len;
static pthread_once_t caps_once = PTHREAD_ONCE_INIT;

/* caps_init - make the SMIMECapabilities value once */
static void
caps_init(void)
{
	caps_value = caps_der(&caps_len);
}

/*
 * smime_add_caps - SMIMECapabilities (caps_der(), encoded once: what
 * CMS_add_smimecap() would build each time); 1, or 0 with OpenSSL's error
 * queued
 */
int
smime_add_caps(CMS_SignerInfo *si)
{
	pthread_once(&caps_once, caps_init);
	return caps_len > 0 && CMS_signed_add1_attr_by_NID(si, NID_SMIMECapabilities,
	    V_ASN1_SEQUENCE, caps_value, caps_len);
}

/*
 * enckeypref_der - [0] IMPLICIT IssuerAndSerialNumber of cert: the tag
 * 0xA0 and the SEQUENCE's contents (issuer Name, serial INTEGER); a
 * malloc'ed buffer in *der, or 0
 */
static int
enckeypref_der(X509 *cert, unsigned char **der, size_t *len)
{
	unsigned char *name = NULL, *serial = NULL, *p;
	int nlen, slen;
	size_t body, hdr, n;

	*der = NULL;
	nlen = i2d_X509_NAME(X509_get_issuer_name(cert), &name);
	slen = i2d_ASN1_INTEGER(X509_get0_serialNumber(cert), &serial);
	if (nlen <= 0 || slen <= 0)
		goto out;
	body = (size_t)nlen + (size_t)slen;
	hdr = body < 0x80 ? 2 : body < 0x100 ? 3 : body < 0x10000 ? 4 : 0;
	if (hdr == 0 || (*der = malloc(hdr + body)) == NULL)
		goto out;
	p = *der;
	*p++ = 0xa0;	/* [0], constructed */
	if (hdr == 3)
		*p++ = 0x81;
	else if (hdr == 4)
		*p++ = 0x82;
	for (n = hdr - 1; n > 1; n--)
		*p++ = (unsigned char)(body >> (8 * (n - 2)));
	*p++ = (unsigned char)(body & 0xff);
	memcpy(p, name, (size_t)nlen);
	memcpy(p + nlen, serial, (size_t)slen);
	*len = hdr + body;
out:
	OPENSSL_free(name);
	OPENSSL_free(serial);
	return *der != NULL;
}

/*
 * smime_add_enckeypref - SMIMEEncryptionKeyPreference naming enc by
 * issuer and serial; 1, or 0 (OpenSSL's error queued, or none when the
 * issuer name is too long for the encoder)
 */
int
smime_add_enckeypref(CMS_SignerInfo *si, X509 *enc)
{
	unsigned char *der;
	size_t len;
	int ok;

	if (!enckeypref_der(enc, &der, &len))
		return 0;
	/* V_ASN1_SEQUENCE: the bytes are written as they are, tag included. */
	ok = CMS_signed_add1_attr_by_NID(si, NID_id_smime_aa_encrypKeyPref,
	    V_ASN1_SEQUENCE, der, (int)len);
	free(der);
	return ok;
}
