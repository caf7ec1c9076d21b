/*
 * signstore.c - the gateway's own per-user signing keys, sealed on local
 * disk under STATE_DIR/signing.  See signstore.h.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "conf.h"
#include "keymodel_cert.h"
#include "keymodel_name.h"
#include "log.h"
#include "pkcs8pw.h"
#include "privfile.h"
#include "seal.h"
#include "secmem.h"
#include "signstore.h"

#define SIGN_DIR	"signing"
#define FILE_MAX	(SEAL_HASH_HEXLEN + 8)
#define SEALED_MAX	(64 * 1024)
#define CERTS_MAX	(256 * 1024)
#define NEVER		INT64_C(253402300799)	/* 9999-12-31: the
						   certificate's dates rule */

/* signstore_seal_key_path - where the gateway seal key file is */
enum km_status
signstore_seal_key_path(const struct kmilter_conf *conf, char *out,
    size_t outlen)
{
	int n;

	if (conf->seal_key_file != NULL && conf->seal_key_file[0] != '\0')
		n = snprintf(out, outlen, "%s", conf->seal_key_file);
	else if (conf->state_dir != NULL && conf->state_dir[0] != '\0')
		n = snprintf(out, outlen, "%s/gateway.key", conf->state_dir);
	else
		return KM_PERMFAIL;
	return n < 0 || (size_t)n >= outlen ? KM_PROTO : KM_OK;
}

/* paths - the directory and the two file names of an address */
static enum km_status
paths(const char *state_dir, const struct seal_key *sk, const char *addr,
    char *norm, char *dir, char *crt, char *key, char *keyname,
    struct kmerr *err)
{
	char h[SEAL_HASH_HEXLEN + 1];
	enum km_status st;

	if ((st = keymodel_addr_normalize(addr, norm, KEYMODEL_ADDR_MAX + 1,
	    err)) != KM_OK)
		return st;
	if (state_dir == NULL || *state_dir == '\0' || sk == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "no state directory or seal key");
	if ((st = seal_name_hash(sk, norm, h)) != KM_OK) {
		kmerr_set(err, st, KMERR_NONE, "cannot hash the address");
		return st;
	}
	snprintf(keyname, FILE_MAX, "%s.key", h);
	if (snprintf(dir, PATH_MAX, "%s/%s", state_dir, SIGN_DIR) >= PATH_MAX ||
	    snprintf(crt, PATH_MAX, "%s/%s.crt", dir, h) >= PATH_MAX ||
	    snprintf(key, PATH_MAX, "%s/%s", dir, keyname) >= PATH_MAX)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "state directory path too long");
	return KM_OK;
}

/* read_file - read a whole private file (regular, not group/world readable) */
static enum km_status
read_file(const char *path, size_t max, unsigned char **out, size_t *outlen,
    struct kmerr *err)
{
	struct stat sb;
	unsigned char *buf = NULL;
	size_t off = 0;
	ssize_t r;
	int fd;

	*out = NULL;
	*outlen = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1) {
		/* KMERR_NOTFOUND: the caller words it */
		return kmerr_set(err, KM_PERMFAIL, errno == ENOENT ?
		    KMERR_NOTFOUND : KMERR_NONE, "%s: %s", path,
		    strerror(errno));
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: not a regular file", path);
	}
	if ((sb.st_mode & 077) != 0) {
		close(fd);
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: mode %03o is too open (0600 "
		    "needed)", path, (unsigned)(sb.st_mode & 0777));
	}
	if (sb.st_size <= 0 || (uintmax_t)sb.st_size > max) {
		close(fd);
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "%s: bad size", path);
	}
	if ((buf = secmem_alloc((size_t)sb.st_size)) == NULL) {
		close(fd);
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	}
	while (off < (size_t)sb.st_size) {
		r = read(fd, buf + off, (size_t)sb.st_size - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			close(fd);
			secmem_free(buf, (size_t)sb.st_size);
			return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
			    "%s: short read", path);
		}
		off += (size_t)r;
	}
	close(fd);
	*out = buf;
	*outlen = off;
	return KM_OK;
}

/* cert_pem - the certificate then the CA certificate, PEM, malloc'd */
static enum km_status
cert_pem(X509 *cert, X509 *ca, unsigned char **out, size_t *outlen,
    struct kmerr *err)
{
	BIO *b;
	char *p;
	long n;

	*out = NULL;
	if ((b = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_X509(b, cert) != 1 ||
	    PEM_write_bio_X509(b, ca) != 1 ||
	    (n = BIO_get_mem_data(b, &p)) <= 0 ||
	    (*out = malloc((size_t)n)) == NULL) {
		BIO_free(b);
		ERR_clear_error();
		return kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "cannot encode the certificate");
	}
	memcpy(*out, p, (size_t)n);
	*outlen = (size_t)n;
	BIO_free(b);
	return KM_OK;
}

/* seal_key_file - seal a PKCS#8 DER (plain or encrypted) into H.key */
static enum km_status
seal_key_file(const struct seal_key *sk, const char *keyp, const char *keyname,
    const unsigned char *der, size_t derlen, struct kmerr *err)
{
	unsigned char *sealed = NULL;
	size_t sealedlen = 0;
	enum km_status st;

	if ((st = seal_seal(sk, keyname, der, derlen, NEVER, 0, &sealed,
	    &sealedlen, err)) == KM_OK)
		st = privfile_write(keyp, sealed, sealedlen, err);
	free(sealed);
	return st;
}

/* signstore_enroll - make, certify and store a signing key for addr */
enum km_status
signstore_enroll(const char *state_dir, const struct seal_key *sk,
    const char *addr, X509 *ca_cert, EVP_PKEY *ca_key, const char *keytype,
    int days, struct kmerr *err)
{
	return signstore_enroll_protected(state_dir, sk, addr, ca_cert, ca_key,
	    keytype, days, NULL, 0, err);
}

/* signstore_enroll_protected - signstore_enroll, the key wrapped under pw
 * (an EncryptedPrivateKeyInfo) when pw is not NULL */
enum km_status
signstore_enroll_protected(const char *state_dir, const struct seal_key *sk,
    const char *addr, X509 *ca_cert, EVP_PKEY *ca_key, const char *keytype,
    int days, const char *pw, size_t pwlen, struct kmerr *err)
{
	char norm[KEYMODEL_ADDR_MAX + 1], dir[PATH_MAX], crt[PATH_MAX];
	char keyp[PATH_MAX], keyname[FILE_MAX];
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	unsigned char *der = NULL, *p, *wrapped = NULL, *pem = NULL;
	size_t wlen = 0, pemlen = 0, derlen = 0;
	enum km_status st;
	int n;

	if ((st = paths(state_dir, sk, addr, norm, dir, crt, keyp, keyname,
	    err)) != KM_OK)
		return st;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: %s", dir, strerror(errno));
	if (chmod(dir, 0700) != 0)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: %s", dir, strerror(errno));
	if ((st = keymodel_keygen(keytype, &key, err)) != KM_OK ||
	    (st = keymodel_issue_cert(key, norm, ca_cert, ca_key,
	    days > 0 ? days : KEYMODEL_DAYS_SIGN, KEYMODEL_USE_SIGN, &cert,
	    err)) != KM_OK)
		goto out;
	if ((p8 = EVP_PKEY2PKCS8(key)) == NULL ||
	    (n = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL)) <= 0 ||
	    (der = secmem_alloc((size_t)n)) == NULL) {
		ERR_clear_error();
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "cannot encode the signing key");
		goto out;
	}
	derlen = (size_t)n;
	p = der;
	i2d_PKCS8_PRIV_KEY_INFO(p8, &p);
	if (pw != NULL && (st = pkcs8pw_wrap_der(der, derlen, pw, pwlen, 0,
	    &wrapped, &wlen, err)) != KM_OK)
		goto out;
	if ((st = cert_pem(cert, ca_cert, &pem, &pemlen, err)) != KM_OK)
		goto out;
	/* key first: a certificate is never there without its key */
	if ((st = seal_key_file(sk, keyp, keyname, wrapped != NULL ? wrapped :
	    der, wrapped != NULL ? wlen : derlen, err)) != KM_OK ||
	    (st = privfile_write(crt, pem, pemlen, err)) != KM_OK)
		goto out;
	log_info("signstore: signing key for %s enrolled%s", norm,
	    pw != NULL ? ", protected by the user's password" : "");
out:
	free(pem);
	OPENSSL_free(wrapped);
	secmem_free(der, derlen);
	PKCS8_PRIV_KEY_INFO_free(p8);
	X509_free(cert);
	EVP_PKEY_free(key);
	return st;
}

/* signstore_load - the signing certificate, key and chain of addr; a
 * protected key is KMERR_LOCKED */
enum km_status
signstore_load(const char *state_dir, const struct seal_key *sk,
    const char *addr, X509 **cert, EVP_PKEY **key, STACK_OF(X509) **chain,
    struct kmerr *err)
{
	return signstore_open(state_dir, sk, addr, cert, key, NULL, NULL, chain,
	    err);
}

/* keep_protected - a password-protected key handed back as it is (encrypted: not secret) */
static enum km_status
keep_protected(const unsigned char *der, size_t derlen, const char *norm,
    unsigned char **enc, size_t *enclen, struct kmerr *err)
{
	if (enc == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_LOCKED,
		    "signing key for %s is protected by the user's password", norm);
	if ((*enc = malloc(derlen)) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	memcpy(*enc, der, derlen);
	*enclen = derlen;
	return KM_OK;
}

/* read_chain - the certificates after the first in a PEM file: the chain */
static enum km_status
read_chain(BIO *b, STACK_OF(X509) **chain, struct kmerr *err)
{
	STACK_OF(X509) *ch = sk_X509_new_null();
	X509 *c;

	while (ch != NULL && (c = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		if (sk_X509_push(ch, c) <= 0) {
			X509_free(c);
			sk_X509_pop_free(ch, X509_free);
			ch = NULL;
		}
	if (ch == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	*chain = ch;
	return KM_OK;
}

/* signstore_open - signstore_load; a protected key comes back as it is
 * (*enc, key NULL) when enc is not NULL */
enum km_status
signstore_open(const char *state_dir, const struct seal_key *sk,
    const char *addr, X509 **cert, EVP_PKEY **key, unsigned char **enc,
    size_t *enclen, STACK_OF(X509) **chain, struct kmerr *err)
{
	char norm[KEYMODEL_ADDR_MAX + 1], dir[PATH_MAX], crt[PATH_MAX];
	char keyp[PATH_MAX], keyname[FILE_MAX];
	struct kmerr e;
	unsigned char *sealed = NULL, *der = NULL, *pem = NULL;
	const unsigned char *p;
	size_t sealedlen = 0, derlen = 0, pemlen = 0;
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	X509 *x = NULL;
	EVP_PKEY *k = NULL;
	BIO *b = NULL;
	enum km_status st;

	*cert = NULL;
	*key = NULL;
	if (enc != NULL) {
		*enc = NULL;
		*enclen = 0;
	}
	if (chain != NULL)
		*chain = NULL;
	if ((st = paths(state_dir, sk, addr, norm, dir, crt, keyp, keyname,
	    err)) != KM_OK)
		return st;
	if ((st = read_file(keyp, SEALED_MAX, &sealed, &sealedlen, &e)) !=
	    KM_OK ||
	    (st = read_file(crt, CERTS_MAX, &pem, &pemlen, &e)) != KM_OK) {
		if (kmerr_is(&e, KMERR_NOTFOUND))
			kmerr_set(err, st, KMERR_NOTFOUND,
			    "no signing key for %s here", norm);
		else
			kmerr_set(err, st, e.reason, "signing key for %s: %s",
			    norm, e.msg);
		goto out;
	}
	if ((st = seal_open(sk, keyname, sealed, sealedlen, (int64_t)time(NULL), &der, &derlen,
	    NULL, NULL, &e)) != KM_OK) {
		st = kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "signing key for %s does not open: %s",
		    norm, e.msg);
		goto out;
	}
	if (pkcs8pw_detect(der, derlen) == PKCS8PW_ENCRYPTED &&
	    (st = keep_protected(der, derlen, norm, enc, enclen, err)) != KM_OK)
		goto out;
	p = der;
	/* a protected key is checked against cert once unlocked */
	if ((enc == NULL || *enc == NULL) && (derlen > LONG_MAX ||
	    (p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)derlen)) == NULL ||
	    (k = EVP_PKCS82PKEY(p8)) == NULL)) {
		st = kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "signing key for %s does not parse",
		    norm);
		goto out;
	}
	if ((b = BIO_new_mem_buf(pem, (int)pemlen)) == NULL ||
	    (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL) {
		st = kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "signing certificate for %s does not "
		    "parse", norm);
		goto out;
	}
	if (k != NULL && (st = keymodel_check_pair(x, k, &e)) != KM_OK) {
		kmerr_set(err, st, e.reason, "signing key for %s: %s", norm,
		    e.msg);
		goto out;
	}
	if (chain != NULL && (st = read_chain(b, chain, err)) != KM_OK)
		goto out;
	*cert = x;
	*key = k;
	x = NULL;
	k = NULL;
	st = KM_OK;
out:
	if (st != KM_OK && enc != NULL) {
		free(*enc);
		*enc = NULL;
		*enclen = 0;
	}
	ERR_clear_error();
	BIO_free(b);
	X509_free(x);
	EVP_PKEY_free(k);
	PKCS8_PRIV_KEY_INFO_free(p8);
	secmem_free(der, derlen);
	secmem_free(sealed, sealedlen);
	secmem_free(pem, pemlen);
	return st;
}

/* signstore_remove - delete addr's signing key and certificate */
enum km_status
signstore_remove(const char *state_dir, const struct seal_key *sk,
    const char *addr, struct kmerr *err)
{
	char norm[KEYMODEL_ADDR_MAX + 1], dir[PATH_MAX], crt[PATH_MAX];
	char keyp[PATH_MAX], keyname[FILE_MAX];
	enum km_status st;
	int gone = 0;

	if ((st = paths(state_dir, sk, addr, norm, dir, crt, keyp, keyname,
	    err)) != KM_OK)
		return st;
	if (unlink(crt) == 0)
		gone++;
	if (unlink(keyp) == 0)
		gone++;
	if (gone == 0)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no signing key for %s here", norm);
	return KM_OK;
}

/* rewrap_der - der converted to the level newpw says (NULL: plain), with
 * oldpw when it is protected; *out NULL when it is already there */
static enum km_status
rewrap_der(X509 *cert, const unsigned char *der, size_t len,
    const char *oldpw, size_t oldlen, const char *newpw, size_t newlen,
    unsigned char **out, size_t *outlen, struct kmerr *err)
{
	int enc = pkcs8pw_detect(der, len) == PKCS8PW_ENCRYPTED;
	unsigned char *tmp = NULL;
	size_t tlen = 0;
	struct kmerr e;
	enum km_status st;

	*out = NULL;
	*outlen = 0;
	if (!enc && newpw == NULL)
		return KM_OK;
	if (!enc)
		return keymodel_rewrap(cert, der, len, NULL, 0, newpw, newlen,
		    0, out, outlen, err);
	/* protected: by newpw already? */
	if (newpw != NULL && pkcs8pw_unwrap(der, len, newpw, newlen, &tmp,
	    &tlen, &e) == KM_OK) {
		secmem_free(tmp, tlen);
		return KM_OK;
	}
	if (oldpw == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_BADPASSWORD,
		    "protected by another password");
	st = keymodel_rewrap(cert, der, len, oldpw, oldlen, newpw, newlen, 0,
	    out, outlen, &e);
	if (st == KM_PERMFAIL)
		return kmerr_set(err, st, KMERR_BADPASSWORD,
		    "protected by another password");
	if (st != KM_OK)
		kmerr_set(err, st, e.reason, "%s", e.msg);
	return st;
}

/* signstore_rewrap - addr's signing key at the level newpw says (NULL:
 * plain; else protected by newpw), opened with oldpw when it is
 * protected by another password; *changed says whether it was rewritten */
enum km_status
signstore_rewrap(const char *state_dir, const struct seal_key *sk,
    const char *addr, const char *oldpw, size_t oldlen, const char *newpw,
    size_t newlen, int *changed, struct kmerr *err)
{
	char norm[KEYMODEL_ADDR_MAX + 1], dir[PATH_MAX], crt[PATH_MAX];
	char keyp[PATH_MAX], keyname[FILE_MAX];
	unsigned char *sealed = NULL, *der = NULL, *nder = NULL;
	size_t sealedlen = 0, derlen = 0, nlen = 0;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	unsigned char *enc = NULL;
	size_t enclen = 0;
	struct kmerr e;
	enum km_status st;

	*changed = 0;
	if ((st = paths(state_dir, sk, addr, norm, dir, crt, keyp, keyname,
	    err)) != KM_OK)
		return st;
	/* the whole pair, checked as a lookup checks it */
	if ((st = signstore_open(state_dir, sk, norm, &cert, &key, &enc,
	    &enclen, NULL, err)) != KM_OK)
		return st;
	if ((st = read_file(keyp, SEALED_MAX, &sealed, &sealedlen, &e)) !=
	    KM_OK || (st = seal_open(sk, keyname, sealed, sealedlen,
	    (int64_t)time(NULL), &der, &derlen, NULL, NULL, &e)) != KM_OK) {
		kmerr_set(err, st, e.reason, "signing key for %s: %s", norm,
		    e.msg);
		goto out;
	}
	if ((st = rewrap_der(cert, der, derlen, oldpw, oldlen, newpw, newlen,
	    &nder, &nlen, &e)) != KM_OK) {
		kmerr_set(err, st, e.reason, "signing key for %s: %s", norm,
		    e.msg);
		goto out;
	}
	if (nder == NULL)
		goto out;		/* already at that level */
	if ((st = seal_key_file(sk, keyp, keyname, nder, nlen, err)) != KM_OK)
		goto out;
	*changed = 1;
	log_info("signstore: signing key for %s is now %s", norm,
	    newpw != NULL ? "protected by the user's password" : "plain");
out:
	secmem_free(nder, nlen);
	secmem_free(der, derlen);
	secmem_free(sealed, sealedlen);
	free(enc);
	X509_free(cert);
	EVP_PKEY_free(key);
	return st;
}
