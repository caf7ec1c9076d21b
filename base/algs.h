#ifndef KMILTER_BASE_ALGS_H
#define KMILTER_BASE_ALGS_H
/*
 * NAME
 *	algs - the algorithms kmilter uses, fetched from OpenSSL once
 * SUMMARY
 *	algs_init(), algs_sha256(), algs_aes_256_cbc(), algs_aes_128_cbc(),
 *	algs_aes_256_gcm(), algs_hmac()
 * DESCRIPTION
 *	OpenSSL 3 looks an algorithm up in its provider store (a locked
 *	table) each time it is named: by EVP_sha256() and friends at every
 *	EVP_DigestInit_ex/EVP_CipherInit_ex, and by HMAC() and EVP_Q_mac()
 *	for the MAC and its digest at every call.  algs_init() fetches each
 *	algorithm kmilter uses once (EVP_MD_fetch, EVP_CIPHER_fetch,
 *	EVP_MAC_fetch from the default library context) and the accessors
 *	hand out those objects, which every thread may use.  algs_init() runs
 *	at start-up; an accessor called first runs it (pthread_once), so
 *	tools and unit tests need no set-up.  An algorithm the providers do
 *	not offer is logged once and its accessor returns the legacy
 *	constant (EVP_sha256() ...), which fails where it is used as before;
 *	algs_hmac() returns NULL then.
 * OWNERSHIP
 *	The objects belong to this module and live until exit: never free them.
 * ERRORS
 *	algs_init() returns 0, or -1 when an algorithm is missing (logged).
 * THREADS
 *	Thread-safe.
 */
#include <openssl/evp.h>

int			 algs_init(void);
const EVP_MD		*algs_sha256(void);
const EVP_CIPHER	*algs_aes_256_cbc(void);
const EVP_CIPHER	*algs_aes_128_cbc(void);
const EVP_CIPHER	*algs_aes_256_gcm(void);
EVP_MAC			*algs_hmac(void);

#endif
