#ifndef KMILTER_KEYCLIENT_KEYMODEL_H
#define KMILTER_KEYCLIENT_KEYMODEL_H
/*
 * NAME
 *	keymodel - kmilter's key model in KMIP: naming, split keys, lookups,
 *	enrollment and administration
 * SUMMARY
 *	The handle and the lookups; the rest of the family has headers of
 *	its own, and each caller includes what it uses.
 *	keymodel.c (here): split keys: keymodel_split(), keymodel_combine();
 *	lookups (milter): keymodel_new(), keymodel_free(),
 *	keymodel_current_cert(), keymodel_decryption_keys(),
 *	keymodel_gens_free(), keymodel_revocation_count(),
 *	keymodel_set_parallel(), keymodel_ping(), keymodel_server_name().
 *	keymodel_name.h: addresses and names: keymodel_addr_normalize(),
 *	keymodel_object_name(), keymodel_group_format(),
 *	keymodel_group_parse(), KEYMODEL_ADDR_MAX and the other limits.
 *	keymodel_cert.h: keymodel_check_pair(), keymodel_keygen(),
 *	keymodel_issue_cert(), keymodel_cert_fingerprint(),
 *	keymodel_rewrap().
 *	keymodel_admin.h (kmctl): keymodel_enroll(),
 *	keymodel_enroll_protected(), keymodel_renew(), keymodel_revoke(),
 *	keymodel_import_p12(), keymodel_import_cert(), keymodel_show(),
 *	keymodel_infos_free().
 *	keymodel_protect.h (kmctl): keymodel_set_password(),
 *	keymodel_clear_password().
 *	keymodel_int.h: internals shared by the family only.
 *	The files depend one way: keymodel_admin.c and keymodel_protect.c
 *	on keymodel.c, keymodel.c on keymodel_cert.c, keymodel_cert.c on
 *	keymodel_name.c.
 * DESCRIPTION
 *	Addresses.  An address is normalized before it is used anywhere:
 *	the local part is kept as given, the domain is lower-cased (domains
 *	compare case-insensitively, local parts are the mailbox owner's
 *	business).  Refused with KM_PROTO: no '@' or more than one, an empty
 *	local part or domain, a space, control or non-ASCII byte, one of
 *	the RFC 5322 specials ()<>[]\,;:" (quoted local parts are not
 *	supported), a domain that is not dot-separated LDH labels, or more
 *	than 254 characters in all.
 *
 *	Lookups fold case: the KMIP Name (and the cache's seal_name_hash())
 *	use the whole address lower-cased, so Alice@EXAMPLE.COM finds
 *	alice@example.com's keys; the local part as given is kept only in
 *	what enrollment writes into certificates.
 *
 *	Objects.  Every KMIP object kmilter makes for the address ADDR
 *	carries exactly one Name:
 *	    kmilter:enc:addr          (addr = ADDR lower-cased whole)
 *	whatever its type and generation, so ONE Locate by Name returns all
 *	of a user's encryption objects on a server (Locate is exact-match
 *	and costs one scan of the server's database: ~6 ms on PyKMIP).
 *	The generation and protection level travel in the Object Group:
 *	    kmilter:gen:N            on certificates
 *	    kmilter:gen:N:harvested  on an outside correspondent's
 *	                             certificate taken from a verified
 *	                             signature (keymodel_harvest.h), not
 *	                             imported by an administrator
 *	    kmilter:gen:N:default    on shares of a plain PKCS#8 key
 *	    kmilter:gen:N:enhanced   on shares of an EncryptedPrivateKeyInfo
 *	(N = 1, 2, ... per address) and is read back with Get Attributes
 *	(~2 ms).  Custom attributes are refused by PyKMIP and Application
 *	Specific Information is not portable to every KM, Object Group is.
 *
 *	For each generation N of a user's encryption key pair:
 *	  - the X.509 certificate (DER, Object Type Certificate) is
 *	    registered on BOTH servers, so either can answer a certificate
 *	    lookup;
 *	  - the PKCS#8 DER private key K (PrivateKeyInfo, or an
 *	    EncryptedPrivateKeyInfo under the user's password) is split into
 *	    two XOR shares of the same length: A random (RAND_priv_bytes) is
 *	    registered on server A (the first km.server), B = K xor A on
 *	    server B, each as a SecretData object (Secret Data Type Seed,
 *	    Key Format Opaque).  Neither share alone says anything about K.
 *	    SecretData is used rather than PrivateKey or Split Key objects
 *	    because a share is not a key: a KM would try to parse a
 *	    PrivateKey, and Split Key support and semantics vary between KM
 *	    products; opaque SecretData is portable.
 *	The pairing certificate <-> shares is the generation number.  An
 *	outside correspondent's certificate (keymodel_import_cert) is a
 *	generation with a certificate and no shares.
 *
 *	States.  KMIP State is the generation's life cycle, set on all of
 *	its objects alike:
 *	  Active       the current generation: used to encrypt and decrypt;
 *	  Deactivated  an earlier generation (renewal revokes it with reason
 *	               Cessation of Operation): still used to decrypt;
 *	  Compromised  revoked (Key Compromise): never used again.  PyKMIP's
 *	               Get still returns such an object's bytes, so the state
 *	               is always read and checked here;
 *	  Pre-Active   half-made (enrollment in progress or interrupted):
 *	               ignored by lookups.
 *	When the certificate and the shares of one generation disagree, the
 *	worst state wins (Compromised > Pre-Active > Deactivated > Active).
 *
 *	Lookups.  keymodel_current_cert(): Locate(Name, Certificate,
 *	Active) then Get on server A; on a transient failure of A, the same
 *	on server B.  An answer from A (even "none") is authoritative.
 *	keymodel_decryption_keys(): on each server, in parallel (one extra
 *	thread per call): Locate(Name) -> Get Attributes of each uid ->
 *	Get of each usable share (and, on A, each usable certificate).  The
 *	shares of a generation are combined (same length, else KM_PROTO),
 *	and a plain key is parsed and checked against the certificate's
 *	public key (mismatch: KM_PROTO).  Either server failing is
 *	KM_TEMPFAIL: never a partial key.
 *	keymodel_revocation_count(): Locate(Name, State Compromised) on
 *	server A (B on a transient failure of A) and the number of uids
 *	found: the user's revocation counter.  Every kmctl revoke of a
 *	generation that was not yet revoked raises it (its objects become
 *	Compromised); nothing kmctl does lowers it (Compromised objects are
 *	only destroyed when an enrollment is rolled back, and those were
 *	revoked moments before).  The keystore seals it into every L2 entry
 *	so that an entry saved before a revocation is refused afterwards.
 *
 *	Certificate issuance: keymodel_cert.h.  Protection level (passwords):
 *	keymodel_protect.h.
 * OWNERSHIP
 *	keymodel_new() returns a handle the caller frees with
 *	keymodel_free() (NULL-safe, returns NULL); it keeps no pointer into
 *	the configuration.  Out-pointers (X509 **, EVP_PKEY **) receive new
 *	references the caller frees (X509_free, EVP_PKEY_free).
 *	keymodel_decryption_keys() returns an array the caller frees with
 *	keymodel_gens_free(), which wipes every der buffer (secmem).
 *	keymodel_show() returns an array freed with keymodel_infos_free().
 *	keymodel_split()/keymodel_combine() return secmem buffers: free with
 *	secmem_free(p, len).  Passwords are borrowed and never copied
 *	outside secmem.
 * ERRORS
 *	enum km_status; unless KM_OK, the same status, a reason and one line
 *	in err (kmerr.h; never key bytes, never a password):
 *	  KM_PROTO     malformed address or input file, shares that do not
 *	               combine, a key that does not match its certificate;
 *	  KM_PERMFAIL  (set/clear-password, rewrap) "wrong password ...",
 *	               "... already protected by another password ..."
 *	               (reason KMERR_BADPASSWORD);
 *	               "no certificate for ADDR", "no keys for ADDR" (nothing
 *	               usable), "no generation N for ADDR": every not-found
 *	               has the reason KMERR_NOTFOUND (kmctl exits 3);
 *	               otherwise a server refused an operation, bad CA,
 *	               already enrolled;
 *	  KM_TEMPFAIL  a KM server unreachable or timed out;
 *	  KM_NOMEM     allocation failed.
 *	keymodel_new() returns NULL with the reason in err.
 * THREADS
 *	A struct keymodel is thread-safe for lookups: it holds two
 *	thread-safe kmip pools and nothing mutable (keymodel_set_parallel()
 *	is meant to be called before threads start).  The administration
 *	functions are meant for one process (kmctl) at a time per address.
 *	The pure functions are thread-safe.
 */
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kmerr.h"
#include "status.h"

struct kmilter_conf;

/* One usable generation, as kmilter decrypts with it. */
struct keymodel_gen {
	int		 generation;
	int		 state;		/* enum kmip_state: ACTIVE/DEACTIVATED */
	X509		*cert;
	unsigned char	*der;		/* combined PKCS#8 (plain or
					   encrypted), secmem */
	size_t		 derlen;
	int		 enhanced;	/* der is an EncryptedPrivateKeyInfo */
	EVP_PKEY	*key;		/* parsed when plain and checked against
					   cert, else NULL */
};

/* One generation as an administrator sees it: never key material. */
struct keymodel_info {
	int	 generation;
	int	 state;			/* enum kmip_state (worst of objects) */
	int	 has_key;		/* shares exist on both servers */
	int	 enhanced;		/* from the shares' Object Group */
	time_t	 not_before, not_after;
	char	 sha256[96];		/* "AB:CD:..." certificate fingerprint */
	char	 subject[256];
	char	 issuer[256];
	char	 serial[96];		/* hex */
	char	 key_type[32];		/* "RSA-2048", "EC-prime256v1" */
	char	 unusable[KMERR_MSG_MAX]; /* why no mail can be encrypted to
					 * it (certenc.h), or "" */
	int	 harvested;		/* taken from a signature (Object
					   Group ":harvested"), not imported */
};

struct keymodel;

/* Split keys (pure, no KM). */
enum km_status	 keymodel_split(const unsigned char *key, size_t len,
		    unsigned char **share_a, unsigned char **share_b,
		    struct kmerr *err);
enum km_status	 keymodel_combine(const unsigned char *a, size_t alen,
		    const unsigned char *b, size_t blen, unsigned char **out,
		    size_t *outlen, struct kmerr *err);

/* Lookups. */
struct keymodel	*keymodel_new(const struct kmilter_conf *,
		    struct kmerr *err);
struct keymodel	*keymodel_free(struct keymodel *);
/* 1 (default): both servers in parallel; 0: one after the other. */
void		 keymodel_set_parallel(struct keymodel *, int parallel);
enum km_status	 keymodel_current_cert(struct keymodel *, const char *addr,
		    X509 **out, struct kmerr *err);
enum km_status	 keymodel_decryption_keys(struct keymodel *,
		    const char *addr, struct keymodel_gen **out, size_t *n,
		    struct kmerr *err);
void		 keymodel_gens_free(struct keymodel_gen *, size_t n);
/* How many of addr's objects are Compromised (revoked): one Locate on
 * server A (B if A fails transiently).  kmctl revoke raises it. */
enum km_status	 keymodel_revocation_count(struct keymodel *,
		    const char *addr, uint32_t *count, struct kmerr *err);
/* Discover Versions on server 0 (A) or 1 (B); *ms = round trip. */
enum km_status	 keymodel_ping(struct keymodel *, int server, double *ms,
		    char *version, size_t versionlen, struct kmerr *err);
const char	*keymodel_server_name(const struct keymodel *, int server);

#endif
