#ifndef KMILTER_KEYCLIENT_KEYSTORE_ENTRY_H
#define KMILTER_KEYCLIENT_KEYSTORE_ENTRY_H
/*
 * NAME
 *	keystore_entry - the L2 (Redis) form of a set of key generations
 * SUMMARY
 *	keystore_entry_encode(), keystore_entry_decode(),
 *	keystore_gens_free(), keystore_parse_plain(), keystore_env_wrap(),
 *	keystore_env_unwrap().
 *	Part of the keystore family (keystore_int.h); not for other callers.
 * DESCRIPTION
 *	Format: "KSG1" n(4) then per generation: generation(4) state(4)
 *	enhanced(1) certlen(4) cert-DER derlen(4) der, numbers big-endian,
 *	1 to 1000 generations.  keystore_entry_decode() is strict (every
 *	length checked, nothing left over, the key kind must match the
 *	enhanced flag) and parses plain keys too, checking each against its
 *	certificate (keystore_parse_plain()).
 *
 *	Envelope.  Every value the keystore puts in L2 (key sets,
 *	certificates, unlocked keys, "wrong password", and negative answers
 *	alike) is "KSE1" revcount(4) flags(1) body: revcount is the user's
 *	revocation counter in the KM (keymodel_revocation_count()) read
 *	before the body was fetched, flag KEYSTORE_ENV_NEGATIVE marks "none"
 *	(then no body).  The whole is sealed under the entry's name (seal.h),
 *	so neither part can be changed; an entry whose counter is not the
 *	KM's current one was saved before a revocation (or replayed) and is
 *	refused by the keystore.  keystore_env_unwrap() is strict: a value
 *	without the magic (written before envelopes existed), unknown flags,
 *	or a negative entry with a body is KM_PROTO.
 * OWNERSHIP
 *	keystore_env_wrap()'s buffer is secmem too; keystore_env_unwrap()'s
 *	body points into the buffer given.
 *	keystore_entry_encode()'s buffer is secmem (a plain PKCS#8 key is
 *	secret): secmem_free(*out, *outlen).  keystore_entry_decode()
 *	returns generations the caller frees with keystore_gens_free(g, n)
 *	(NULL-safe; wipes der).  keystore_parse_plain() gives a new
 *	reference (EVP_PKEY_free).
 * ERRORS
 *	KM_OK; KM_PROTO malformed entry, a key that does not parse or does
 *	not match its certificate (reason in err); KM_NOMEM.
 * THREADS
 *	Thread-safe.
 */
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "keymodel.h"
#include "kmerr.h"
#include "status.h"

enum km_status	 keystore_entry_encode(const struct keymodel_gen *, size_t n,
		    unsigned char **out, size_t *outlen);
enum km_status	 keystore_entry_decode(const unsigned char *buf, size_t len,
		    struct keymodel_gen **out, size_t *nout, struct kmerr *err);
void		 keystore_gens_free(struct keymodel_gen *, size_t n);
enum km_status	 keystore_parse_plain(const unsigned char *der, size_t len,
		    X509 *cert, EVP_PKEY **out, struct kmerr *err);

#define KEYSTORE_ENV_MAGIC	"KSE1"
#define KEYSTORE_ENV_LEN	9	/* magic(4) revcount(4) flags(1) */
#define KEYSTORE_ENV_NEGATIVE	0x01

enum km_status	 keystore_env_wrap(uint32_t revcount, int negative,
		    const unsigned char *body, size_t len, unsigned char **out,
		    size_t *outlen);
enum km_status	 keystore_env_unwrap(const unsigned char *buf, size_t len,
		    uint32_t *revcount, int *negative,
		    const unsigned char **body, size_t *bodylen,
		    struct kmerr *err);

#endif
