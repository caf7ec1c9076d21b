/*
 * algs.c - the algorithms kmilter uses, fetched once (see algs.h).
 */
#include <pthread.h>

#include "algs.h"
#include "log.h"

static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static int algs_status;
static EVP_MD *sha256;
static EVP_CIPHER *aes_256_cbc, *aes_128_cbc, *aes_256_gcm;
static EVP_MAC *hmac;

/* missing - log an algorithm the providers do not offer */
static void
missing(const char *what, const void *got)
{
	if (got != NULL)
		return;
	log_openssl("algs: fetch");
	log_warnx("algs: OpenSSL offers no %s; its uses will fail", what);
	algs_status = -1;
}

/* fetch_all - the fetches, once per process */
static void
fetch_all(void)
{
	missing("SHA256", sha256 = EVP_MD_fetch(NULL, "SHA256", NULL));
	missing("AES-256-CBC", aes_256_cbc = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL));
	missing("AES-128-CBC", aes_128_cbc = EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL));
	missing("AES-256-GCM", aes_256_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL));
	missing("HMAC", hmac = EVP_MAC_fetch(NULL, "HMAC", NULL));
}

/* algs_init - fetch every algorithm (again a no-op) */
int
algs_init(void)
{
	pthread_once(&algs_once, fetch_all);
	return algs_status;
}

/* algs_sha256 - SHA-256 */
const EVP_MD *
algs_sha256(void)
{
	algs_init();
	return sha256 != NULL ? sha256 : EVP_sha256();
}

/* algs_aes_256_cbc - AES-256-CBC */
const EVP_CIPHER *
algs_aes_256_cbc(void)
{
	algs_init();
	return aes_256_cbc != NULL ? aes_256_cbc : EVP_aes_256_cbc();
}

/* algs_aes_128_cbc - AES-128-CBC */
const EVP_CIPHER *
algs_aes_128_cbc(void)
{
	algs_init();
	return aes_128_cbc != NULL ? aes_128_cbc : EVP_aes_128_cbc();
}

/* algs_aes_256_gcm - AES-256-GCM */
const EVP_CIPHER *
algs_aes_256_gcm(void)
{
	algs_init();
	return aes_256_gcm != NULL ? aes_256_gcm : EVP_aes_256_gcm();
}

/* algs_hmac - HMAC (NULL when missing) */
EVP_MAC *
algs_hmac(void)
{
	algs_init();
	return hmac;
}
