/*
 * seal.c - the gateway seal key: AEAD sealing and keyed names (see seal.h).
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "algs.h"
#include "log.h"
#include "secmem.h"
#include "seal.h"

#define SEAL_SALT	"kmilter-seal-v1"

#define NAME_SLOTS	512	/* names kept per key (direct-mapped) */
#define NAME_MSG_MAX	(SEAL_KIND_MAX + 1 + SEAL_ADDR_MAX)

/* One computed name: what was hashed (kind, 0, lower(addr)) and its hex. */
struct name_slot {
	size_t		 n;		/* 0: empty */
	unsigned char	 msg[NAME_MSG_MAX];
	char		 hex[SEAL_HASH_HEXLEN + 1];
};

/* The last names a key computed: the same few addresses come in every message. */
struct name_table {
	pthread_mutex_t	 mtx;
	struct name_slot slot[NAME_SLOTS];
};

struct seal_key {
	unsigned char	aead[32];
	unsigned char	name[32];
	EVP_MAC_CTX	*name_mac;	/* HMAC-SHA256 keyed with name, never
					 * used itself: keyed_hex() dups it */
	struct name_table *names;
};

/* name_mac_new - an HMAC-SHA256 context keyed with key, for copies */
static EVP_MAC_CTX *
name_mac_new(const unsigned char *key, size_t len)
{
	OSSL_PARAM params[2];
	EVP_MAC_CTX *ctx;

	if (algs_hmac() == NULL || (ctx = EVP_MAC_CTX_new(algs_hmac())) == NULL)
		return NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_MAC_init(ctx, key, len, params) != 1) {
		EVP_MAC_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* hkdf - derive len bytes from ikm with HKDF-SHA256 and the given info */
static int
hkdf(const unsigned char *ikm, size_t ikmlen, const char *info,
    unsigned char *out, size_t len)
{
	EVP_KDF *kdf = NULL;
	EVP_KDF_CTX *kctx = NULL;
	OSSL_PARAM params[5], *p = params;
	int ok = 0;

	if ((kdf = EVP_KDF_fetch(NULL, "HKDF", NULL)) == NULL)
		goto out;
	if ((kctx = EVP_KDF_CTX_new(kdf)) == NULL)
		goto out;
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
	    (void *)ikm, ikmlen);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
	    (void *)SEAL_SALT, strlen(SEAL_SALT));
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
	    (void *)info, strlen(info));
	*p = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, out, len, params) != 1)
		goto out;
	ok = 1;
out:
	if (!ok)
		log_openssl("seal: HKDF");
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return ok;
}

/* seal_key_from_bytes - derive the two subkeys from raw key bytes */
struct seal_key *
seal_key_from_bytes(const unsigned char *ikm, size_t len, struct kmerr *err)
{
	struct seal_key *key;

	if (ikm == NULL || len != SEAL_KEY_LEN) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "seal key must be %d bytes, not %zu",
		    SEAL_KEY_LEN, len);
		return NULL;
	}
	if ((key = secmem_alloc(sizeof(*key))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return NULL;
	}
	if (!hkdf(ikm, len, "aead", key->aead, sizeof(key->aead)) ||
	    !hkdf(ikm, len, "name", key->name, sizeof(key->name))) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "HKDF-SHA256 failed");
		return seal_key_free(key);
	}
	if ((key->name_mac = name_mac_new(key->name, sizeof(key->name))) ==
	    NULL) {
		log_openssl("seal: HMAC");
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "HMAC-SHA256 failed");
		return seal_key_free(key);
	}
	if ((key->names = calloc(1, sizeof(*key->names))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return seal_key_free(key);
	}
	pthread_mutex_init(&key->names->mtx, NULL);
	return key;
}

/* seal_key_free - wipe and free a seal key; returns NULL */
struct seal_key *
seal_key_free(struct seal_key *key)
{
	if (key != NULL) {
		EVP_MAC_CTX_free(key->name_mac);	/* wipes its key copy */
		if (key->names != NULL)
			pthread_mutex_destroy(&key->names->mtx);
		free(key->names);
	}
	return secmem_free(key, sizeof(*key));
}

/* seal_key_create - write a new random seal key file, mode 0600, O_EXCL */
enum km_status
seal_key_create(const char *path, struct kmerr *err)
{
	unsigned char raw[SEAL_KEY_LEN];
	enum km_status st = KM_PERMFAIL;
	size_t off = 0;
	int fd = -1, saved;

	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		log_openssl("seal: RAND_bytes");
		return kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
		    "no randomness for the seal key");
	}
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600)) == -1) {
		kmerr_set(err, KM_PERMFAIL,
		    errno == EEXIST ? KMERR_EXISTS : KMERR_NONE, "%s: %s", path,
		    strerror(errno));
		goto out;
	}
	/* The umask may only narrow the mode; make it exact anyway. */
	if (fchmod(fd, 0600) == -1) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: chmod: %s", path, strerror(errno));
		goto fail;
	}
	while (off < sizeof(raw)) {
		ssize_t n = write(fd, raw + off, sizeof(raw) - off);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
			    "%s: write: %s", path,
			    n == 0 ? "short write" : strerror(errno));
			goto fail;
		}
		off += (size_t)n;
	}
	if (fsync(fd) == -1 || close(fd) == -1) {
		fd = -1;
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: %s", path, strerror(errno));
		goto fail;
	}
	fd = -1;
	st = KM_OK;
	goto out;
fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	fd = -1;
	unlink(path);
	errno = saved;
out:
	secmem_wipe(raw, sizeof(raw));
	return st;
}

/* seal_key_load - read a seal key file, refusing unsafe modes and owners */
struct seal_key *
seal_key_load(const char *path, struct kmerr *err)
{
	unsigned char raw[SEAL_KEY_LEN + 1];
	struct seal_key *key = NULL;
	struct stat sb;
	size_t off = 0;
	int fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1) {
		kmerr_set(err, KM_PERMFAIL,
		    errno == ENOENT ? KMERR_NOTFOUND : KMERR_NONE, "%s: %s", path,
		    strerror(errno));
		return NULL;
	}
	if (fstat(fd, &sb) == -1) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: not a regular file", path);
		goto out;
	}
	/* Root loads the key at start-up, before dropping to the user
	 * that owns it; anyone else must own it (or root must). */
	if (geteuid() != 0 && sb.st_uid != geteuid() && sb.st_uid != 0) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: owned by uid %lu, not by the "
		    "running user (uid %lu) or root", path, (unsigned long)sb.st_uid,
		    (unsigned long)geteuid());
		goto out;
	}
	if (sb.st_mode & 077) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: mode %04o is group or world "
		    "accessible (must be 0600 or stricter)", path,
		    (unsigned)(sb.st_mode & 07777));
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, raw + off, sizeof(raw) - off);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
			    "%s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		off += (size_t)n;
		if (off == sizeof(raw))
			break;
	}
	if (off != SEAL_KEY_LEN) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: a seal key is exactly %d bytes, "
		    "this file has %s%zu", path, SEAL_KEY_LEN,
		    off == sizeof(raw) ? "more than " : "", off);
		goto out;
	}
	key = seal_key_from_bytes(raw, SEAL_KEY_LEN, err);
out:
	saved = errno;
	secmem_wipe(raw, sizeof(raw));
	close(fd);
	errno = saved;
	return key;
}

/* valid_kind - 1 if kind is 1..SEAL_KIND_MAX of [a-z0-9_.-] */
static int
valid_kind(const char *kind)
{
	size_t n;

	if (kind == NULL)
		return 0;
	for (n = 0; kind[n] != '\0'; n++) {
		unsigned char ch = (unsigned char)kind[n];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		    ch == '_' || ch == '.' || ch == '-'))
			return 0;
	}
	return n >= 1 && n <= SEAL_KIND_MAX;
}

/* name_slot_of - the slot a hashed message belongs in (FNV-1a) */
static struct name_slot *
name_slot_of(struct name_table *t, const unsigned char *msg, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ msg[i]) * 16777619u;
	return &t->slot[h % NAME_SLOTS];
}

/* name_kept - the hex of msg into out if it was computed lately; 1 if so */
static int
name_kept(struct name_table *t, const unsigned char *msg, size_t n, char *out)
{
	struct name_slot *sl = name_slot_of(t, msg, n);
	int hit;

	pthread_mutex_lock(&t->mtx);
	if ((hit = sl->n == n && memcmp(sl->msg, msg, n) == 0))
		memcpy(out, sl->hex, sizeof(sl->hex));
	pthread_mutex_unlock(&t->mtx);
	return hit;
}

/* name_keep - remember the hex of msg, in place of its slot's last one */
static void
name_keep(struct name_table *t, const unsigned char *msg, size_t n, const char *hex)
{
	struct name_slot *sl = name_slot_of(t, msg, n);

	pthread_mutex_lock(&t->mtx);
	sl->n = n;
	memcpy(sl->msg, msg, n);
	memcpy(sl->hex, hex, sizeof(sl->hex));
	pthread_mutex_unlock(&t->mtx);
}

/* keyed_hex - hex(HMAC(namekey, kind || 0 || lower(addr))) into out */
static enum km_status
keyed_hex(const struct seal_key *key, const char *kind, const char *addr,
    char *out)
{
	static const char hexd[] = "0123456789abcdef";
	unsigned char msg[SEAL_KIND_MAX + 1 + SEAL_ADDR_MAX];
	unsigned char mac[EVP_MAX_MD_SIZE];
	EVP_MAC_CTX *ctx;
	size_t maclen = 0, klen, alen, i, n = 0;
	int ok;

	if (key == NULL || addr == NULL)
		return KM_PROTO;
	klen = strlen(kind);
	alen = strlen(addr);
	if (klen > SEAL_KIND_MAX || alen == 0 || alen > SEAL_ADDR_MAX)
		return KM_PROTO;
	memcpy(msg, kind, klen);
	n = klen;
	msg[n++] = 0;
	for (i = 0; i < alen; i++) {
		unsigned char ch = (unsigned char)addr[i];

		if (ch < 0x21 || ch == 0x7f)	/* no controls, no spaces */
			return KM_PROTO;
		msg[n++] = (unsigned char)tolower(ch);
	}
	if (name_kept(key->names, msg, n, out))
		return KM_OK;
	/* a copy of the keyed context: no fetch, no key schedule per call */
	ok = (ctx = EVP_MAC_CTX_dup(key->name_mac)) != NULL &&
	    EVP_MAC_update(ctx, msg, n) == 1 &&
	    EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)) == 1 && maclen == 32;
	EVP_MAC_CTX_free(ctx);
	if (!ok) {
		log_openssl("seal: HMAC");
		return KM_NOMEM;
	}
	for (i = 0; i < maclen; i++) {
		out[2 * i] = hexd[mac[i] >> 4];
		out[2 * i + 1] = hexd[mac[i] & 0xf];
	}
	out[2 * maclen] = '\0';
	name_keep(key->names, msg, n, out);
	return KM_OK;
}

/* seal_name_hash - the keyed hash of an address (64 hex digits) */
enum km_status
seal_name_hash(const struct seal_key *key, const char *addr,
    char out[SEAL_HASH_HEXLEN + 1])
{
	return keyed_hex(key, "", addr, out);
}

/* seal_entry_name - the Redis key "km:<hex>" of (kind, addr) */
enum km_status
seal_entry_name(const struct seal_key *key, const char *kind,
    const char *addr, char out[SEAL_NAME_MAX])
{
	if (!valid_kind(kind))
		return KM_PROTO;
	memcpy(out, "km:", 3);
	return keyed_hex(key, kind, addr, out + 3);
}

/* put_be64 - store v big-endian */
static void
put_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

/* get_be64 - load a big-endian 64-bit value */
static uint64_t
get_be64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* aead_init - set up an AES-256-GCM context with key, nonce and AAD */
static EVP_CIPHER_CTX *
aead_init(const struct seal_key *key, const unsigned char *nonce,
    const char *name, int enc)
{
	EVP_CIPHER_CTX *ctx;
	unsigned char ver = SEAL_VERSION;
	int outl;

	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		return NULL;
	if (EVP_CipherInit_ex(ctx, algs_aes_256_gcm(), NULL, NULL, NULL,
	    enc) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE_LEN,
	    NULL) != 1 ||
	    EVP_CipherInit_ex(ctx, NULL, NULL, key->aead, nonce, enc) != 1 ||
	    EVP_CipherUpdate(ctx, NULL, &outl, &ver, 1) != 1 ||
	    EVP_CipherUpdate(ctx, NULL, &outl, (const unsigned char *)name,
	    (int)strlen(name)) != 1) {
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* seal_seal - seal payload under name with an expiry and flags */
enum km_status
seal_seal(const struct seal_key *key, const char *name,
    const unsigned char *payload, size_t len, int64_t expires,
    unsigned flags, unsigned char **out, size_t *outlen, struct kmerr *err)
{
	EVP_CIPHER_CTX *ctx = NULL;
	unsigned char inner[SEAL_INNER_LEN], *buf = NULL, *ct;
	enum km_status st = KM_NOMEM;
	size_t total;
	int n1, n2, n3;

	*out = NULL;
	*outlen = 0;
	if (key == NULL || name == NULL || *name == '\0' ||
	    (payload == NULL && len > 0) || len > (1u << 30))
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "bad arguments to seal");
	total = SEAL_OVERHEAD + len;
	if ((buf = malloc(total)) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	buf[0] = SEAL_VERSION;
	if (RAND_bytes(buf + 1, SEAL_NONCE_LEN) != 1) {
		log_openssl("seal: RAND_bytes");
		st = kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
		    "no randomness for the nonce");
		goto fail;
	}
	put_be64(inner, (uint64_t)expires);
	inner[8] = (unsigned char)flags;
	ct = buf + SEAL_HEADER_LEN;
	if ((ctx = aead_init(key, buf + 1, name, 1)) == NULL ||
	    EVP_EncryptUpdate(ctx, ct, &n1, inner, sizeof(inner)) != 1 ||
	    EVP_EncryptUpdate(ctx, ct + n1, &n2, payload, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(ctx, ct + n1 + n2, &n3) != 1 ||
	    (size_t)(n1 + n2 + n3) != SEAL_INNER_LEN + len ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN,
	    ct + n1 + n2 + n3) != 1) {
		log_openssl("seal: AES-256-GCM encrypt");
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "AES-256-GCM encryption failed");
		goto fail;
	}
	EVP_CIPHER_CTX_free(ctx);
	secmem_wipe(inner, sizeof(inner));
	*out = buf;
	*outlen = total;
	return KM_OK;
fail:
	EVP_CIPHER_CTX_free(ctx);
	free(buf);
	return st;
}

/* seal_open - authenticate and decrypt a sealed value stored under name */
enum km_status
seal_open(const struct seal_key *key, const char *name,
    const unsigned char *in, size_t inlen, int64_t now, unsigned char **out,
    size_t *outlen, unsigned *flags, int64_t *expires, struct kmerr *err)
{
	EVP_CIPHER_CTX *ctx = NULL;
	unsigned char *plain = NULL, tag[SEAL_TAG_LEN];
	const unsigned char *ct;
	enum km_status st = KM_PROTO;
	size_t ctlen, plen = 0;
	int64_t exp;
	int n1 = 0, n2 = 0;

	*out = NULL;
	*outlen = 0;
	if (key == NULL || name == NULL || *name == '\0' ||
	    (in == NULL && inlen > 0))
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "bad arguments to open");
	if (inlen < 1)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "empty sealed value");
	if (in[0] != SEAL_VERSION)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "unknown seal version %u", in[0]);
	if (inlen < SEAL_OVERHEAD)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "truncated sealed value (%zu bytes, "
		    "at least %d needed)", inlen, SEAL_OVERHEAD);
	if (inlen - SEAL_OVERHEAD > (1u << 30))
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "sealed value too large");
	ct = in + SEAL_HEADER_LEN;
	ctlen = inlen - SEAL_HEADER_LEN - SEAL_TAG_LEN;
	memcpy(tag, in + inlen - SEAL_TAG_LEN, SEAL_TAG_LEN);
	if ((plain = secmem_alloc(ctlen)) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	if ((ctx = aead_init(key, in + 1, name, 0)) == NULL ||
	    EVP_DecryptUpdate(ctx, plain, &n1, ct, (int)ctlen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN,
	    tag) != 1) {
		log_openssl("seal: AES-256-GCM decrypt");
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "AES-256-GCM setup failed");
		goto fail;
	}
	if (EVP_DecryptFinal_ex(ctx, plain + n1, &n2) != 1) {
		/* A tag mismatch queues no useful error; drop any anyway. */
		ERR_clear_error();
		kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "authentication failed (tampered value, "
		    "entry copied under another name, or another seal key)");
		goto fail;
	}
	plen = (size_t)(n1 + n2);
	if (plen != ctlen)
		log_panic("seal: GCM returned %zu bytes for %zu", plen, ctlen);
	exp = (int64_t)get_be64(plain);
	if (flags != NULL)
		*flags = plain[8];
	if (expires != NULL)
		*expires = exp;
	if (exp <= now) {
		st = kmerr_set(err, KM_PERMFAIL, KMERR_NONE, "expired");
		goto fail;
	}
	/* Move the payload to the front; the header bytes are not secret
	 * but wipe them so that secmem_free(out, outlen) covers all. */
	memmove(plain, plain + SEAL_INNER_LEN, plen - SEAL_INNER_LEN);
	secmem_wipe(plain + plen - SEAL_INNER_LEN, SEAL_INNER_LEN);
	EVP_CIPHER_CTX_free(ctx);
	*out = plain;
	*outlen = plen - SEAL_INNER_LEN;
	return KM_OK;
fail:
	EVP_CIPHER_CTX_free(ctx);
	secmem_free(plain, ctlen);
	return st;
}
