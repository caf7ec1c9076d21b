#ifndef KMILTER_KEYCLIENT_KEYMODEL_P12_H
#define KMILTER_KEYCLIENT_KEYMODEL_P12_H
/*
 * NAME
 *	keymodel_p12 - read a PKCS#12 key file as real exporters write it
 * SUMMARY
 *	keymodel_p12_sniff(), keymodel_p12_parse()
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
 * OWNERSHIP
 *	The buffer and password are borrowed; *key and *cert are new
 *	references (EVP_PKEY_free, X509_free), set only on success.
 * ERRORS
 *	KM_PROTO/KMERR_BADINPUT: not PKCS#12 (or armor that does not
 *	decode); KM_PERMFAIL/KMERR_BADPASSWORD: wrong password;
 *	KM_PERMFAIL/KMERR_BADINPUT: an algorithm this OpenSSL cannot use;
 *	KM_PROTO/KMERR_BADINPUT: no key or no certificate in it; KM_NOMEM.
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

#endif
