#ifndef KMILTER_KEYCLIENT_KEYMODEL_CERT_H
#define KMILTER_KEYCLIENT_KEYMODEL_CERT_H
/*
 * NAME
 *	keymodel_cert - key generation, certificate issuance by the
 *	organization's CA, and PKCS#8 encodings for the key model
 * SUMMARY
 *	keymodel_keygen(), keymodel_issue_cert(), keymodel_check_pair(),
 *	keymodel_cert_fingerprint(), keymodel_cert_time(), keymodel_rewrap().
 *	For the keymodel family (keymodel.c, keymodel_admin.c):
 *	keymodel_pkey_to_der(), keymodel_der_to_pkey(),
 *	keymodel_keytype_of(), keymodel_key_type_name().
 * DESCRIPTION
 *	Pure functions: no KM, no connection.
 *	keymodel_keygen() makes a key pair of a named type ("rsa2048",
 *	"rsa3072", "ec-p256"); keymodel_check_pair() tells whether a key is
 *	the private half of a certificate's public key.
 *
 *	Certificates issued by keymodel_issue_cert(): subject CN=ADDR,
 *	emailAddress=ADDR, SAN rfc822Name ADDR, a random 159-bit serial,
 *	SKI/AKI, basicConstraints CA:FALSE, extendedKeyUsage
 *	emailProtection, keyUsage keyEncipherment (RSA) or keyAgreement (EC)
 *	for encryption, digitalSignature (+nonRepudiation) for signing,
 *	SHA-256 signature by the organization's CA.
 *
 *	keymodel_rewrap() converts one generation's PKCS#8 DER between the
 *	protection levels (plain PrivateKeyInfo, EncryptedPrivateKeyInfo
 *	under a password: pkcs8pw.h), checking the key against its
 *	certificate.
 *
 *	keymodel_pkey_to_der() encodes a key as a plain PKCS#8
 *	PrivateKeyInfo, keymodel_der_to_pkey() parses one back;
 *	keymodel_keytype_of() names the keymodel_keygen() type of a
 *	certificate's key, keymodel_key_type_name() describes a key for
 *	people ("RSA-2048", "EC-prime256v1").
 *
 *	This module needs only keymodel_name.c (and pkcs8pw.c): the rest of
 *	the keymodel family calls it, never the other way round.
 * OWNERSHIP
 *	Out-pointers (X509 **, EVP_PKEY **) receive new references the caller
 *	frees (X509_free, EVP_PKEY_free).  keymodel_rewrap()'s *out is secmem:
 *	secmem_free(*out, *outlen), and so is keymodel_pkey_to_der()'s.
 *	Inputs and passwords are borrowed.
 * ERRORS
 *	enum km_status with one line in err: KM_PROTO (unknown key type,
 *	malformed address or key, a key that does not match its
 *	certificate), KM_PERMFAIL (CA key does not match the CA certificate,
 *	signing failed, a password that does not open the key), KM_TEMPFAIL
 *	(no randomness), KM_NOMEM.  keymodel_der_to_pkey() and
 *	keymodel_keytype_of() return NULL.
 * THREADS
 *	Thread-safe.
 */
#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kmerr.h"
#include "status.h"

/* validity of an issued certificate when days is 0 */
#define KEYMODEL_DAYS_ENC	1186		/* 39 months */
#define KEYMODEL_DAYS_SIGN	396		/* 13 months */

enum keymodel_usage {
	KEYMODEL_USE_ENCRYPT = 0,	/* keyEncipherment / keyAgreement */
	KEYMODEL_USE_SIGN		/* digitalSignature, nonRepudiation */
};

enum km_status	 keymodel_check_pair(X509 *cert, EVP_PKEY *key,
		    struct kmerr *err);
/* type: "rsa2048", "rsa3072" or "ec-p256" (NULL = "rsa2048") */
enum km_status	 keymodel_keygen(const char *type, EVP_PKEY **out,
		    struct kmerr *err);
enum km_status	 keymodel_issue_cert(EVP_PKEY *key, const char *addr,
		    X509 *ca_cert, EVP_PKEY *ca_key, int days,
		    enum keymodel_usage, X509 **out, struct kmerr *err);
void		 keymodel_cert_fingerprint(X509 *cert, char *out,
		    size_t outlen);
/* An ASN1_TIME (notBefore, notAfter, nextUpdate...) as time_t; 0 when t
 * is NULL or unreadable. */
time_t		 keymodel_cert_time(const ASN1_TIME *t);
/* One PKCS#8 DER from one level to the other: oldpw NULL = der is plain,
 * newpw NULL = *out is plain; iter 0 = PKCS8PW_ITER_DEFAULT; cert (may be
 * NULL) must match the key.  *out: secmem_free(*out, *outlen).
 * KM_PERMFAIL when oldpw does not open der. */
enum km_status	 keymodel_rewrap(X509 *cert, const unsigned char *der,
		    size_t len, const char *oldpw, size_t oldlen,
		    const char *newpw, size_t newlen, int iter,
		    unsigned char **out, size_t *outlen, struct kmerr *err);

/* For the keymodel family. */
enum km_status	 keymodel_pkey_to_der(EVP_PKEY *, unsigned char **out,
		    size_t *outlen, struct kmerr *err);
EVP_PKEY	*keymodel_der_to_pkey(const unsigned char *der, size_t len);
const char	*keymodel_keytype_of(X509 *cert);
void		 keymodel_key_type_name(EVP_PKEY *, char *out, size_t outlen);

#endif
