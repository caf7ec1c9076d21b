#ifndef KMILTER_KEYCLIENT_SEAL_H
#define KMILTER_KEYCLIENT_SEAL_H
/*
 * NAME
 *	seal - the gateway seal key: AEAD sealing and keyed names for Redis
 * SUMMARY
 *	seal_key_create(), seal_key_load(), seal_key_from_bytes(),
 *	seal_key_free(), seal_name_hash(), seal_entry_name(), seal_seal(),
 *	seal_open()
 * DESCRIPTION
 *	Every gateway of a farm holds the same 32-byte seal key in a file
 *	(mode 0600 or stricter, owned by the user that runs kmilter).  Two
 *	subkeys are derived from it with HKDF-SHA256 (salt "kmilter-seal-v1"):
 *	info "aead" gives the AES-256-GCM key, info "name" the HMAC-SHA256
 *	key for entry names.
 *
 *	seal_name_hash(key, addr) is hex(HMAC(namekey, 0x00 || lower(addr))):
 *	the keyed hash of an address, 64 hex digits.  It is what the
 *	invalidation channel carries and what the L1 cache is keyed by.
 *
 *	seal_entry_name(key, kind, addr) is
 *	"km:" || hex(HMAC(namekey, kind || 0x00 || lower(addr))): the Redis
 *	key of one entry.  kind is a short label ([a-z0-9_.-], 1 to 32
 *	characters, e.g. "cert", "enckey"); Redis never sees an address.
 *
 *	A sealed value is
 *	    version (1 byte, 0x01) || nonce (12 random bytes)
 *	    || ciphertext || tag (16 bytes)
 *	with AAD = version || entry name.  The plaintext is
 *	    expiry (8 bytes, big-endian unix seconds) || flags (1 byte)
 *	    || payload
 *	so an entry carries its own expiry even if Redis keeps it longer.
 *	Flag SEAL_NEGATIVE marks a negative entry ("this address has none").
 * OWNERSHIP
 *	seal_key_load()/seal_key_from_bytes() return a key the caller frees
 *	with seal_key_free(), which wipes both subkeys and returns NULL.
 *	seal_seal() returns a malloc'd buffer the caller frees with free().
 *	seal_open() returns the payload in secmem: the caller frees it with
 *	secmem_free(out, outlen).  A zero-length payload is still a non-NULL
 *	buffer.  The raw key bytes are wiped as soon as the subkeys exist.
 * ERRORS
 *	seal_key_create(): KM_OK, KM_PERMFAIL (file exists, cannot write),
 *	KM_TEMPFAIL (no randomness).
 *	seal_key_load(): NULL with a reason in err (missing file, wrong
 *	size, mode wider than 0600, wrong owner).
 *	seal_name_hash()/seal_entry_name(): KM_PROTO on a bad kind or
 *	address, KM_NOMEM.
 *	seal_seal(): KM_PROTO (bad name), KM_NOMEM, KM_TEMPFAIL (RNG).
 *	seal_open(): KM_OK; KM_PROTO with a reason on a truncated value, an
 *	unknown version, or a failed tag check (tampered bytes, entry copied
 *	under another name, or another seal key); KM_PERMFAIL "expired" when
 *	expiry <= now.  A failure never returns partial plaintext.
 * THREADS
 *	A struct seal_key is immutable after loading: any number of threads
 *	may use it at once.
 */
#include <stddef.h>
#include <stdint.h>

#include "kmerr.h"
#include "status.h"

#define SEAL_KEY_LEN		32
#define SEAL_HASH_HEXLEN	64	/* hex digits of an HMAC-SHA256 */
#define SEAL_NAME_MAX		(3 + SEAL_HASH_HEXLEN + 1)	/* "km:" hex NUL */
#define SEAL_KIND_MAX		32
#define SEAL_ADDR_MAX		320
#define SEAL_VERSION		0x01
#define SEAL_NONCE_LEN		12
#define SEAL_TAG_LEN		16
#define SEAL_HEADER_LEN		(1 + SEAL_NONCE_LEN)
#define SEAL_INNER_LEN		9	/* expiry + flags */
#define SEAL_OVERHEAD		(SEAL_HEADER_LEN + SEAL_INNER_LEN + SEAL_TAG_LEN)

#define SEAL_NEGATIVE		0x01

struct seal_key;

enum km_status	 seal_key_create(const char *path, struct kmerr *err);
struct seal_key	*seal_key_load(const char *path, struct kmerr *err);
struct seal_key	*seal_key_from_bytes(const unsigned char *ikm, size_t len,
		    struct kmerr *err);
struct seal_key	*seal_key_free(struct seal_key *key);

enum km_status	 seal_name_hash(const struct seal_key *key, const char *addr,
		    char out[SEAL_HASH_HEXLEN + 1]);
enum km_status	 seal_entry_name(const struct seal_key *key, const char *kind,
		    const char *addr, char out[SEAL_NAME_MAX]);

enum km_status	 seal_seal(const struct seal_key *key, const char *name,
		    const unsigned char *payload, size_t len, int64_t expires,
		    unsigned flags, unsigned char **out, size_t *outlen,
		    struct kmerr *err);
enum km_status	 seal_open(const struct seal_key *key, const char *name,
		    const unsigned char *in, size_t inlen, int64_t now,
		    unsigned char **out, size_t *outlen, unsigned *flags,
		    int64_t *expires, struct kmerr *err);

#endif
