#ifndef KMILTER_KEYCLIENT_SIGNSTORE_H
#define KMILTER_KEYCLIENT_SIGNSTORE_H
/*
 * NAME
 *	signstore - the gateway's own per-user signing keys, on local disk
 * SUMMARY
 *	signstore_enroll(), signstore_enroll_protected(), signstore_load(),
 *	signstore_open(), signstore_rewrap(), signstore_remove(),
 *	signstore_seal_key_path()
 * DESCRIPTION
 *	A signing key is born on the gateway host and never leaves it: it is
 *	never sent to the KM and never put in Redis.  Each gateway of a farm
 *	enrolls its own (several certificates with the same identity).
 *
 *	signstore_enroll() generates a key pair ("rsa2048", "rsa3072" or
 *	"ec-p256"), has the organization's CA issue a certificate (subject
 *	CN=ADDR, SAN rfc822Name, keyUsage digitalSignature+nonRepudiation,
 *	extendedKeyUsage emailProtection, days of validity, 0 = 13 months)
 *	and stores under STATE_DIR/signing/ (directory mode 0700):
 *	    H.crt   the certificate then the CA certificate, PEM, mode 0600
 *	    H.key   the PKCS#8 DER private key sealed with the gateway seal
 *	            key (seal_seal, AAD = the file name "H.key"), mode 0600
 *	where H = seal_name_hash(seal key, ADDR) (64 hex digits): the file
 *	names do not reveal the address.  Files are written to a temporary
 *	name and renamed, so a reader never sees half a file; enrolling
 *	again replaces the pair.
 *
 *	signstore_load() reads them back, checks that the key matches the
 *	certificate, and returns the chain (the certificates after the
 *	first, i.e. the CA).
 *
 *	Protection level.  For a user with a protection password (level
 *	enhanced, keymodel_protect.h) the sealed PKCS#8 is an
 *	EncryptedPrivateKeyInfo under that password (pkcs8pw.h): the file
 *	format is the same, only what is sealed differs.
 *	signstore_enroll_protected() makes such a key (pw NULL: plain, as
 *	signstore_enroll()).  signstore_load() refuses a protected key
 *	(KMERR_LOCKED); signstore_open() returns it as it is in *enc (then
 *	*key is NULL; the caller unlocks it and checks it against *cert),
 *	a plain key as signstore_load() does.  signstore_rewrap() rewrites
 *	the key file at another level: newpw NULL makes it plain, else
 *	protected by newpw; a key protected by another password is opened
 *	with oldpw.  Already at that level (protected: newpw opens it) is
 *	not a change (*changed 0).  The certificate file is not touched.
 *
 *	signstore_seal_key_path() tells where the seal key lives:
 *	conf->seal_key_file, or STATE_DIR/gateway.key when that is empty.
 * OWNERSHIP
 *	signstore_load() gives new references: X509_free(*cert),
 *	EVP_PKEY_free(*key), sk_X509_pop_free(*chain, X509_free).  chain may be
 *	NULL when the caller does not want it.  signstore_open()'s *enc is
 *	malloc'd (free(); encrypted, so not secret).  Passwords (pointer and
 *	length) and everything else borrowed; every plaintext key buffer is
 *	wiped.
 * ERRORS
 *	KM_OK; KM_PERMFAIL "no signing key for ADDR here" (no files) or a
 *	file that cannot be written / has a wrong mode; KM_PROTO malformed
 *	address, a sealed key that does not open (other seal key, tampered),
 *	a certificate file that does not parse, a key that does not match
 *	its certificate; KM_NOMEM.  KMERR_LOCKED: signstore_load() of a
 *	protected key.  signstore_rewrap(): KM_PERMFAIL KMERR_BADPASSWORD
 *	"protected by another password" when neither password opens it.
 *	Messages never contain key bytes or passwords.
 * THREADS
 *	signstore_load() is thread-safe (it only reads files).
 *	signstore_enroll() and signstore_rewrap() for the same address must
 *	not run concurrently (the last rename wins; each file stays whole).
 */
#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kmerr.h"
#include "status.h"

struct seal_key;
struct kmilter_conf;

enum km_status	 signstore_enroll(const char *state_dir,
		    const struct seal_key *, const char *addr, X509 *ca_cert,
		    EVP_PKEY *ca_key, const char *keytype, int days,
		    struct kmerr *err);
enum km_status	 signstore_enroll_protected(const char *state_dir,
		    const struct seal_key *, const char *addr, X509 *ca_cert,
		    EVP_PKEY *ca_key, const char *keytype, int days,
		    const char *pw, size_t pwlen, struct kmerr *err);
enum km_status	 signstore_open(const char *state_dir,
		    const struct seal_key *, const char *addr, X509 **cert,
		    EVP_PKEY **key, unsigned char **enc, size_t *enclen,
		    STACK_OF(X509) **chain, struct kmerr *err);
enum km_status	 signstore_rewrap(const char *state_dir,
		    const struct seal_key *, const char *addr,
		    const char *oldpw, size_t oldlen, const char *newpw,
		    size_t newlen, int *changed, struct kmerr *err);
enum km_status	 signstore_load(const char *state_dir,
		    const struct seal_key *, const char *addr, X509 **cert,
		    EVP_PKEY **key, STACK_OF(X509) **chain, struct kmerr *err);
enum km_status	 signstore_remove(const char *state_dir,
		    const struct seal_key *, const char *addr,
		    struct kmerr *err);
enum km_status	 signstore_seal_key_path(const struct kmilter_conf *,
		    char *out, size_t outlen);

#endif
