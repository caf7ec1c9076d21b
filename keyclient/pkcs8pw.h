#ifndef KMILTER_KEYCLIENT_PKCS8PW_H
#define KMILTER_KEYCLIENT_PKCS8PW_H
/*
 * NAME
 *	pkcs8pw - password-protected private keys (PKCS#8 + PBES2)
 * SUMMARY
 *	pkcs8pw_detect(), pkcs8pw_wrap(), pkcs8pw_wrap_der(),
 *	pkcs8pw_unwrap(), pkcs8pw_unwrap_pkey(), pkcs8pw_kind_name()
 * DESCRIPTION
 *	An "enhanced" key is held by the KM as a DER PKCS#8
 *	EncryptedPrivateKeyInfo under the user's protection password; a
 *	"default" key as a plain DER PKCS#8 PrivateKeyInfo.
 *
 *	pkcs8pw_detect() tells the two apart (the whole input must be one
 *	well-formed structure).
 *
 *	pkcs8pw_wrap() encrypts with PBES2: PBKDF2 with HMAC-SHA256, a
 *	random 16-byte salt and iter iterations (0 means
 *	PKCS8PW_ITER_DEFAULT; fewer than PKCS8PW_ITER_MIN is refused),
 *	and AES-256-CBC with a random IV.
 *
 *	pkcs8pw_unwrap() accepts only PBES2 with PBKDF2 (at most
 *	PKCS8PW_ITER_MAX iterations, so a hostile blob cannot pin a CPU)
 *	and returns the plain PrivateKeyInfo DER in secure memory.
 * OWNERSHIP
 *	pkcs8pw_wrap*() return *out allocated with OPENSSL_malloc (not
 *	secret: it is encrypted); free with OPENSSL_free().
 *	pkcs8pw_unwrap() returns *out from secmem_alloc(); the caller frees
 *	it with secmem_free(*out, *outlen).
 *	pkcs8pw_unwrap_pkey() returns a new EVP_PKEY; caller frees with
 *	EVP_PKEY_free().
 *	Passwords are borrowed (pointer + length, need not be NUL-ended).
 *	Every intermediate plaintext buffer is wiped before it is freed.
 * ERRORS
 *	KM_OK; KM_PERMFAIL "wrong password" (the decryption or the decoding
 *	of the decrypted key failed); KM_PROTO (input is not a well-formed
 *	EncryptedPrivateKeyInfo, unsupported algorithm, iteration count out
 *	of range, key cannot be encoded); KM_NOMEM.  The OpenSSL error queue
 *	is always left empty (drained into the log at debug level 2 or
 *	cleared).
 * THREADS
 *	Thread-safe.
 */
#include <stddef.h>

#include <openssl/evp.h>

#include "kmerr.h"
#include "status.h"

#define PKCS8PW_ITER_MIN	100000
#define PKCS8PW_ITER_DEFAULT	200000
#define PKCS8PW_ITER_MAX	10000000

enum pkcs8pw_kind {
	PKCS8PW_UNKNOWN = 0,	/* neither, or trailing garbage */
	PKCS8PW_PLAIN,		/* PrivateKeyInfo: level default */
	PKCS8PW_ENCRYPTED	/* EncryptedPrivateKeyInfo: level enhanced */
};

enum pkcs8pw_kind pkcs8pw_detect(const unsigned char *der, size_t len);
const char	*pkcs8pw_kind_name(enum pkcs8pw_kind);

enum km_status	 pkcs8pw_wrap(EVP_PKEY *key, const char *pw, size_t pwlen,
		    int iter, unsigned char **out, size_t *outlen,
		    struct kmerr *err);
enum km_status	 pkcs8pw_wrap_der(const unsigned char *p8, size_t p8len,
		    const char *pw, size_t pwlen, int iter,
		    unsigned char **out, size_t *outlen,
		    struct kmerr *err);
enum km_status	 pkcs8pw_unwrap(const unsigned char *der, size_t len,
		    const char *pw, size_t pwlen,
		    unsigned char **out, size_t *outlen,
		    struct kmerr *err);
enum km_status	 pkcs8pw_unwrap_pkey(const unsigned char *der, size_t len,
		    const char *pw, size_t pwlen, EVP_PKEY **out,
		    struct kmerr *err);

#endif
