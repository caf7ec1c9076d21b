#ifndef KMILTER_MILTER_SMIME_VERIFY_H
#define KMILTER_MILTER_SMIME_VERIFY_H
/*
 * NAME
 *	smime_verify - check an S/MIME signature with OpenSSL 3 CMS
 * SUMMARY
 *	smime_verify(), smime_verify_detached(), smime_verify_stream(),
 *	struct smime_verify_result;
 *	for harvesting
 *	smime_verify_certs(), struct smime_signer_certs,
 *	smime_signer_certs_clear().
 *	Callers include smime.h (the types) and this header.
 * DESCRIPTION
 *	Inputs are given as in smime.h (ctype, body, len).
 *
 *	smime_verify() checks a multipart/signed entity or opaque signed-data:
 *	the signature (digest and signature value), then the signer's chain
 *	against the trust store with purpose smimesign at the current time,
 *	and compares the signer's e-mail addresses (subject emailAddress and
 *	rfc822Name SANs) with the From address.  The signed content (part 0
 *	of multipart/signed byte for byte, or the unwrapped entity of opaque)
 *	is written to content_out if it is not NULL, even when the signature
 *	is bad (the caller decides what to deliver); when sig_ok is 0, err
 *	holds the reason OpenSSL gave.  Detached content is checked as it
 *	stands and, when that fails and it holds bare LFs, again in the
 *	canonical CRLF form RFC 8551 3.1.1 says was signed (canonical = 1
 *	then; content_out still gets the bytes as they stand).  Only the
 *	first SignerInfo is reported
 *	in detail (nsigners counts them all); sig_ok needs all to verify.
 *	smime_verify_certs() does the same and, when the signature could be
 *	checked, gives the signature's certificate set and the certificate
 *	the first SignerInfo's SMIMEEncryptionKeyPreference attribute
 *	(RFC 8551 2.5.3, OID 1.2.840.113549.1.9.16.2.11) names by issuer and
 *	serial or by subject key identifier, if the set holds it (has_pref
 *	says whether the attribute is there at all).  Nothing in it is
 *	checked: that is the caller's business (milter/harvest.c).
 *
 *	smime_verify_rev() is smime_verify_certs() (sc may be NULL) that
 *	also asks revcheck (revcheck.h) about a signer whose chain verified,
 *	with the verified chain: revoked is set when its CA revoked it
 *	(chain_ok stays 1: the chain itself is sound), rev_unknown when its
 *	status could not be learned and hard-fail is configured; rev_error
 *	says what revcheck said.
 * OWNERSHIP
 *	The trust store is borrowed and only read.  content_out is the
 *	caller's and is not freed.  The struct smime_verify_result is filled
 *	in place (fixed arrays).  A struct smime_signer_certs is cleared on
 *	entry and holds new references (pref borrows from certs): free with
 *	smime_signer_certs_clear(), also after an error.
 * ERRORS
 *	KM_OK when the signature could be checked at all: the verdict is in
 *	the result (sig_ok, chain_ok, from_match); KM_PROTO malformed MIME or
 *	CMS, or not signed data, or a SignerInfo whose digest algorithm no
 *	provider implements ("unsupported digest algorithm OID x.y.z": the
 *	signature is not checked, a permerror for the caller); KM_NOMEM; KM_TEMPFAIL when content_out
 *	cannot be written.  The OpenSSL error queue is drained (err, log).
 * THREADS
 *	Thread-safe: no static state; the store may be shared, it is only
 *	read.
 */
#include <stddef.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/x509_vfy.h>

#include "cms_stream.h"
#include "kmerr.h"

struct revcheck;

struct smime_verify_result {
	int	 opaque;		/* 1 signed-data, 0 multipart/signed */
	int	 sig_ok;		/* digest and signature value correct */
	int	 chain_ok;		/* signer chains to the trust store, smimesign */
	int	 from_match;		/* signer address == From address */
	int	 nsigners;		/* SignerInfos in the message */
	char	 chain_error[128];	/* X509 verify error text when !chain_ok */
	char	 subject[256];		/* signer subject, RFC 2253 */
	char	 email[256];		/* first signer e-mail address */
	char	 fingerprint[65];	/* SHA-256 of signer certificate, hex */
	time_t	 signing_time;		/* 0 when absent */
	char	 digest[16];		/* "sha256", ... */
	int	 canonical;		/* verified only once bare LFs became CRLF */
	int	 revoked;		/* the signer's CA revoked its certificate */
	int	 rev_unknown;		/* its status unknown, hard-fail configured */
	char	 rev_error[160];	/* what revcheck said, when either is set */
};

#define SMIME_OID_ENCKEYPREF	"1.2.840.113549.1.9.16.2.11"

/* What harvesting needs of a signature (smime_verify_certs). */
struct smime_signer_certs {
	STACK_OF(X509)	*certs;		/* the certificate set, or NULL */
	X509		*pref;		/* the one encKeyPref names, or NULL */
	int		 has_pref;	/* the attribute is there */
};

/* smime_verify - check a signed entity; from may be NULL or
   "Name <addr>" or a bare addr-spec */
enum km_status	 smime_verify(const char *ctype, const char *body,
		    size_t len, X509_STORE *store, const char *from,
		    struct smime_verify_result *res, BIO *content_out,
		    struct kmerr *err);
enum km_status	 smime_verify_certs(const char *ctype, const char *body,
		    size_t len, X509_STORE *store, const char *from,
		    struct smime_verify_result *res, BIO *content_out,
		    struct smime_signer_certs *sc, struct kmerr *err);
void		 smime_signer_certs_clear(struct smime_signer_certs *);
/* smime_verify_rev - smime_verify_certs, then the revocation status of a
   signer whose chain verified (rv NULL: not checked; sc may be NULL) */
enum km_status	 smime_verify_rev(const char *ctype, const char *body,
		    size_t len, X509_STORE *store, struct revcheck *rv,
		    const char *from, struct smime_verify_result *res,
		    BIO *content_out, struct smime_signer_certs *sc,
		    struct kmerr *err);
/* smime_verify_detached - the same for a multipart/signed too large for
   memory: its signature part (an entity: headers, body) and its signed
   part read from content (a BIO over the spool), byte for byte (no
   canonical CRLF retry); content is borrowed */
enum km_status	 smime_verify_detached(const char *sigpart, size_t splen,
		    BIO *content, X509_STORE *store, struct revcheck *rv,
		    const char *from, struct smime_verify_result *res,
		    struct smime_signer_certs *sc, struct kmerr *err);
/* smime_verify_stream - the same for opaque signed-data too large for
   memory, read from in (rewindable, cms_stream.h); content_out (may be
   NULL) gets the encapsulated content as it is read, even when the
   signature is bad */
enum km_status	 smime_verify_stream(BIO *in, enum cms_in_mode mode,
		    X509_STORE *store, struct revcheck *rv, const char *from,
		    struct smime_verify_result *res, BIO *content_out,
		    struct smime_signer_certs *sc, struct kmerr *err);

#endif
