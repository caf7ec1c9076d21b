#ifndef KMILTER_MILTER_SMIME_H
#define KMILTER_MILTER_SMIME_H
/*
 * NAME
 *	smime - S/MIME sign, encrypt, decrypt and verify with OpenSSL 3 CMS
 * SUMMARY
 *	smime_sign(), smime_sign_publish(), smime_encrypt(),
 *	smime_sign_source(), smime_encrypt_source() in smime.c;
 *	smime_decrypt(),
 *	smime_envelope_open(), smime_envelope_count(), smime_envelope_rid(),
 *	smime_envelope_match(), smime_envelope_decrypt(),
 *	smime_envelope_decrypt_readers(), smime_envelope_free() in
 *	smime_envelope.c.  The family's other headers are included by the
 *	callers that use them: smime_verify.h (smime_verify()), smime_b64.h
 *	(the CRLF base64 output filter), smime_int.h (internals shared by the
 *	family: reading CMS inputs, smime_cms.c).
 * DESCRIPTION
 *	No libmilter here: bytes in, a MIME entity out, so that the module can
 *	be unit-tested and fuzzed.
 *
 *	Entities.  An "entity" is a MIME entity: its header block (the
 *	Content-* headers), an empty line, and its body.  Inputs that are
 *	S/MIME objects are given as (ctype, body, len): ctype is the value of
 *	the Content-Type header and body the body alone, which is what the
 *	milter holds for a whole message; pass ctype NULL when body is a full
 *	entity (headers included), e.g. one unwrapped by smime_decrypt(); a
 *	NULL ctype with a body that starts with a DER SEQUENCE (0x30) is read
 *	as raw DER CMS.
 *
 *	Line ends.  Everything is signed and encrypted with CRLF line ends:
 *	an input entity with bare LF is converted to CRLF first (otherwise it
 *	is used byte for byte).  Everything written is CRLF: the header lines,
 *	the multipart/signed delimiters, base64 in lines of 76 characters.
 *	The milter hands these CRLF bodies to the MTA as they are.
 *
 *	Output.  sign and encrypt write a complete entity to the caller's BIO
 *	(a memory BIO or a file BIO for big messages): Content-Type (and
 *	Content-Transfer-Encoding, Content-Disposition, Content-Description
 *	for the CMS part), an empty line, the body.  No MIME-Version header:
 *	the top-level message keeps its own.  Use mime_entity_split() to
 *	separate the headers from the body.  The CMS is streamed to the BIO
 *	(BER, indefinite lengths) through a CRLF base64 filter, so a big
 *	message costs the input plus the output, no DER copy.
 *
 *	smime_sign(): detached gives multipart/signed;
 *	protocol="application/pkcs7-signature"; micalg=sha-256 whose first
 *	part is the input entity unchanged, second part smime.p7s; opaque
 *	gives application/pkcs7-mime; smime-type=signed-data; name=smime.p7m.
 *	The SignerInfo has signing time and SMIMECapabilities (what kmilter
 *	decrypts, strongest first: AES-256-GCM, AES-256-CBC, AES-128-CBC,
 *	RSAES-OAEP with SHA-256); the signer certificate and the chain
 *	certificates are included.
 *
 *	smime_sign_publish() signs likewise and publishes the signer's
 *	encryption certificate (pub->enc, when not NULL): it and pub->chain
 *	go into the certificate set, and the signed attribute
 *	SMIMEEncryptionKeyPreference (RFC 8551 2.5.3) names it by issuer and
 *	serial, so that a correspondent's client knows what to encrypt to.
 *	smime_sign() is smime_sign_publish() with nothing to publish.
 *
 *	Streaming.  smime_sign_source() and smime_encrypt_source() take the
 *	entity from a struct smime_source: head bytes in memory, then a
 *	spool (spool.h) from an offset to its end.  The content is read in
 *	bounded chunks, put in CRLF form on the way and streamed through
 *	OpenSSL (CMS_STREAM, BER with indefinite lengths); a detached
 *	signature reads the source twice (digest, then the first part), so
 *	the working set is a few chunk buffers whatever the size.  Given
 *	the same entity, the output is the same as from the functions that
 *	take it in memory (those are the same code with a source of head
 *	bytes only), up to the random boundary and the signature.
 *	smime_verify_certs() (smime_verify.h) reads the attribute back.
 *
 *	smime_encrypt(): one EnvelopedData (AuthEnvelopedData for AES-GCM)
 *	for all recipients; RSA recipients get key transport (PKCS#1 v1.5 or
 *	OAEP with SHA-256), EC recipients key agreement (ECDH, OpenSSL's
 *	default KDF).  Output application/pkcs7-mime;
 *	smime-type=enveloped-data (or authEnveloped-data); name=smime.p7m.
 *
 *	smime_envelope_open() parses an enveloped message once; then
 *	smime_envelope_match() tells whether a certificate matches one of its
 *	RecipientInfos (issuer+serial or subjectKeyIdentifier, ktri or kari)
 *	without decrypting, and smime_envelope_decrypt() tries the candidate
 *	(cert, key) pairs whose certificate matches, in order, and writes the
 *	inner entity to out.  smime_decrypt() does open+decrypt+free.
 *	A matching RecipientInfo proves nothing: RecipientInfos are not
 *	protected, anyone can add one naming any certificate.  Whoever must
 *	decide who may read a message uses smime_envelope_decrypt_readers():
 *	each reader decrypts with its own keys alone and all must obtain the
 *	same content key (compared as identical plaintext digests, since
 *	OpenSSL has no getter for the content key); the cost is one content
 *	decryption per reader.
 *
 *	smime_verify() (smime_verify.h) checks signed entities.
 *
 *	Decryption: OpenSSL hides key-unwrap failures (MMA countermeasure), so
 *	a wrong key is reported as "decryption failed" once the content does
 *	not decrypt; with AES-CBC or AES-GCM, part of the (garbage or
 *	unauthenticated) plaintext may already be in out when that happens:
 *	on any failure discard out, never deliver it.
 * OWNERSHIP
 *	X509, EVP_PKEY and X509_STORE arguments are borrowed: the caller keeps
 *	ownership, they must stay valid during the call, and the functions
 *	only read them (OpenSSL up-references what it keeps inside a CMS,
 *	released before return).  Output BIOs are the caller's and are not
 *	freed or closed; on failure the BIO may hold a partial output: discard
 *	it.  A struct smime_envelope is the caller's: free it with
 *	smime_envelope_free(), which accepts NULL and returns NULL; strings
 *	from smime_envelope_rid() live as long as the envelope.  A
 *	struct smime_verify_result is filled in place (fixed arrays).
 *	Decrypted plaintext in temporary buffers is wiped before it is freed.
 * ERRORS
 *	KM_OK; KM_PROTO malformed input (MIME or CMS; err says which);
 *	KM_PERMFAIL the operation is impossible with what was given (no
 *	matching recipient, decryption failed, unusable key or certificate,
 *	unsupported algorithm); KM_NOMEM.  smime_verify() returns KM_OK when
 *	the signature could be checked at all: the verdict is in the result.
 *	Every failure fills err (last argument, may be NULL: base/kmerr.h;
 *	reason KMERR_BADINPUT for malformed input) and drains the OpenSSL
 *	error queue into it (first error) and into the log at debug level 1, so that no stale error is left for the next message.
 * THREADS
 *	Thread-safe: no static state; OpenSSL 3 objects given by the caller
 *	may be shared by threads since they are only read.
 */
#include <stddef.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "cms_stream.h"
#include "kmerr.h"

enum smime_digest {
	SMIME_MD_SHA256 = 0,
	SMIME_MD_SHA384,
	SMIME_MD_SHA512
};

enum smime_sign_mode {
	SMIME_MODE_DETACHED = 0,	/* multipart/signed */
	SMIME_MODE_OPAQUE		/* application/pkcs7-mime; smime-type=signed-data */
};

enum smime_cipher {
	SMIME_CIPHER_AES256_CBC = 0,	/* default */
	SMIME_CIPHER_AES128_CBC,
	SMIME_CIPHER_AES256_GCM	/* AuthEnvelopedData */
};

enum smime_padding {
	SMIME_PAD_PKCS1 = 0,	/* default; what gpgsm and NSS 3.87 read */
	SMIME_PAD_OAEP		/* RSAES-OAEP with SHA-256 */
};

/* A candidate for decryption: both borrowed. */
struct smime_keypair {
	X509		*cert;
	EVP_PKEY	*key;
};

/* One reader (an envelope recipient) and its own candidates, borrowed. */
struct smime_reader {
	const struct smime_keypair *cands;
	size_t		 ncands;
};

/* What a signature publishes besides the signer (borrowed). */
struct smime_publish {
	X509		*enc;	/* the signer's encryption certificate, or NULL */
	STACK_OF(X509)	*chain;	/* its chain, may be NULL */
};

/* An entity read in pieces: head bytes, then body from offset off to the end. */
struct spool;
struct smime_source {
	const char	*head;		/* borrowed, may be NULL with headlen 0 */
	size_t		 headlen;
	struct spool	*body;		/* borrowed, or NULL: head only */
	size_t		 off;
};

struct smime_envelope;

/* smime_sign - sign an entity: multipart/signed or opaque signed-data */
enum km_status	 smime_sign(const char *entity, size_t len, X509 *cert,
		    EVP_PKEY *key, STACK_OF(X509) *chain,
		    enum smime_digest digest, enum smime_sign_mode mode,
		    BIO *out, struct kmerr *err);

/* smime_sign_publish - sign, publishing the signer's encryption certificate */
enum km_status	 smime_sign_publish(const char *entity, size_t len, X509 *cert,
		    EVP_PKEY *key, STACK_OF(X509) *chain,
		    const struct smime_publish *pub, enum smime_digest digest,
		    enum smime_sign_mode mode, BIO *out, struct kmerr *err);

/* smime_sign_source, smime_encrypt_source - the same, the entity read from a source */
enum km_status	 smime_sign_source(const struct smime_source *, X509 *cert,
		    EVP_PKEY *key, STACK_OF(X509) *chain,
		    const struct smime_publish *pub, enum smime_digest digest,
		    enum smime_sign_mode mode, BIO *out, struct kmerr *err);
enum km_status	 smime_encrypt_source(const struct smime_source *,
		    X509 *const *rcpts, size_t nrcpts,
		    enum smime_cipher cipher, enum smime_padding padding,
		    BIO *out, struct kmerr *err);

/* smime_encrypt - encrypt an entity to every certificate in rcpts */
enum km_status	 smime_encrypt(const char *entity, size_t len,
		    X509 *const *rcpts, size_t nrcpts,
		    enum smime_cipher cipher, enum smime_padding padding,
		    BIO *out, struct kmerr *err);

/* smime_decrypt - decrypt with the first candidate that matches */
enum km_status	 smime_decrypt(const char *ctype, const char *body,
		    size_t len, const struct smime_keypair *cands,
		    size_t ncands, BIO *out, int *matched, struct kmerr *err);

enum km_status	 smime_envelope_open(const char *ctype, const char *body,
		    size_t len, struct smime_envelope **out, struct kmerr *err);
/* the same from a large input read as a stream (cms_stream.h): in (a
   spool reader) is read again for each decryption and must outlive the
   envelope; out of decrypt_readers may then be a spool writer */
enum km_status	 smime_envelope_open_stream(BIO *in, enum cms_in_mode,
		    struct smime_envelope **out, struct kmerr *err);
size_t		 smime_envelope_count(const struct smime_envelope *);
/* "issuer=<RFC 2253 DN>;serial=<hex>" or "ski=<hex>", with a "kari:"
   prefix for key agreement; NULL when i is out of range */
const char	*smime_envelope_rid(const struct smime_envelope *, size_t i);
/* 1 when the certificate matches one of the RecipientInfos, else 0 */
int		 smime_envelope_match(const struct smime_envelope *, X509 *);
/* *matched = index of the candidate that decrypted, or -1 when none
   matched a RecipientInfo (KM_PERMFAIL, KMERR_NOTFOUND, "no matching
   recipient"); a matching candidate whose key fails gives KM_PERMFAIL
   "decryption failed" with *matched = its index */
enum km_status	 smime_envelope_decrypt(struct smime_envelope *,
		    const struct smime_keypair *cands, size_t ncands,
		    BIO *out, int *matched, struct kmerr *err);
/* KM_OK when every reader, with its own candidates only, obtains the
   same content (so the same content key) through its own RecipientInfo;
   out gets the plaintext once and matched[r] (nreaders entries, may be
   NULL) the index of reader r's candidate that opened it.  KM_PERMFAIL
   with *failed = the first reader that cannot open it (no matching
   RecipientInfo, its wrapped key does not unwrap, or it yields another
   content key): discard out then */
enum km_status	 smime_envelope_decrypt_readers(struct smime_envelope *,
		    const struct smime_reader *readers, size_t nreaders,
		    BIO *out, int *failed, int *matched, struct kmerr *err);
int		 smime_envelope_is_auth(const struct smime_envelope *);
/* the content-encryption algorithm's OpenSSL short name (e.g.
   "AES-256-CBC", "DES-EDE3-CBC", "RC2-CBC") or dotted OID, in buf;
   NULL when the envelope cannot be read that far */
const char	*smime_envelope_cipher(struct smime_envelope *, char *buf,
		    size_t len);
struct smime_envelope *smime_envelope_free(struct smime_envelope *);

#endif
