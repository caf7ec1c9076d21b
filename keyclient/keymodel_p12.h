#ifndef KMILTER_KEYCLIENT_KEYMODEL_P12_H
#define KMILTER_KEYCLIENT_KEYMODEL_P12_H
/*
 * NAME
 *	keymodel_p12 - read a PKCS#12 key file as real exporters write it;
 *	write one as importers read it
 * SUMMARY
 *	keymodel_p12_sniff(), keymodel_p12_parse(), keymodel_p12_build(),
 *	keymodel_read_chain()
 * DESCRIPTION
 *	A PKCS#12 file comes as DER or base64-armored ("-----BEGIN
 *	PKCS12-----", as some tools and mail clients save it).
 *	keymodel_p12_sniff() tells whether a buffer is either form;
 *	keymodel_p12_parse() opens it with a password and hands out the
 *	private key and its certificate.
 *
 *	It tells a wrong password from a file it cannot decrypt: the
 *	password is checked against the file's integrity check (MAC)
 *	first, so "wrong password" is said only when the MAC does not
 *	match; when the MAC matches but the contents do not decrypt, the
 *	message names the encryption algorithm (Windows and older NSS use
 *	RC2-40 or 3DES for the certificates, which OpenSSL 3 decrypts only
 *	with its legacy provider loaded: kmctl loads it, the daemon does
 *	not need it).  A file without MAC opens only without a password
 *	(OpenSSL's PKCS12_parse); with one, the message says the MAC is
 *	missing.
 *
 *	keymodel_p12_build() writes a key, its certificate and a chain
 *	(kmctl export): key and certificate bags encrypted with AES-256-CBC
 *	(PBES2, PBKDF2 with HMAC-SHA256, 200000 iterations, random salt and
 *	IV), MAC HMAC-SHA256, the friendly name given.  OpenSSL 3 and NSS
 *	read it; gpgsm from GnuPG 2.2.42/2.4.1 on (2.2.40, Debian 12's,
 *	stops at the PBES2 parameters).  With legacy, for such a gpgsm: the
 *	key bag AES-128-CBC with PBKDF2-HMAC-SHA1 (200000 iterations), the
 *	certificates unencrypted (they are public), MAC still HMAC-SHA256.  keymodel_read_chain() reads every
 *	certificate of a PEM file (the organization chain, km.org_ca_cert).
 * OWNERSHIP
 *	The buffer and password are borrowed; *key and *cert are new
 *	references (EVP_PKEY_free, X509_free), set only on success.
 *	keymodel_p12_build() borrows everything and returns *out freed with
 *	OPENSSL_free() (encrypted: not secret).  keymodel_read_chain()
 *	returns a stack freed with sk_X509_pop_free(sk, X509_free).
 * ERRORS
 *	KM_PROTO/KMERR_BADINPUT: not PKCS#12 (or armor that does not
 *	decode); KM_PERMFAIL/KMERR_BADPASSWORD: wrong password;
 *	KM_PERMFAIL/KMERR_BADINPUT: an algorithm this OpenSSL cannot use;
 *	KM_PROTO/KMERR_BADINPUT: no key or no certificate in it; KM_NOMEM.
 *	keymodel_p12_build(): KM_PROTO/KMERR_BADINPUT an empty password or
 *	one with a NUL byte; KM_NOMEM.  keymodel_read_chain(): NULL with
 *	KM_PERMFAIL/KMERR_BADINPUT (no file, no certificate) or KM_NOMEM.
 * THREADS
 *	Thread-safe.
 */
#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kmerr.h"

int		 keymodel_p12_sniff(const unsigned char *buf, size_t len);
enum km_status	 keymodel_p12_parse(const unsigned char *buf, size_t len,
		    const char *pw, size_t pwlen, EVP_PKEY **key, X509 **cert,
		    struct kmerr *err);
enum km_status	 keymodel_p12_build(EVP_PKEY *key, X509 *cert,
		    STACK_OF(X509) *chain, const char *friendly, int legacy,
		    const char *pw, size_t pwlen, unsigned char **out,
		    size_t *outlen, struct kmerr *err);
STACK_OF(X509)	*keymodel_read_chain(const char *path, struct kmerr *err);

#endif
