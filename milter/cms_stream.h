#ifndef KMILTER_MILTER_CMS_STREAM_H
#define KMILTER_MILTER_CMS_STREAM_H
/*
 * NAME
 *	cms_stream - read a large CMS EnvelopedData or AuthEnvelopedData as
 *	a stream, in bounded memory
 * SUMMARY
 *	cms_stream_open(), cms_stream_der(), cms_stream_is_auth(),
 *	cms_stream_is_signed(),
 *	cms_stream_content_length(), cms_stream_content(),
 *	cms_stream_error(), cms_stream_free()
 * DESCRIPTION
 *	The input is a read BIO that can be rewound (BIO_reset: a spool
 *	reader, a memory BIO) holding the ContentInfo in base64 (white space
 *	ignored, strict otherwise) or as raw DER/BER.  cms_stream_open()
 *	reads it once from end to end through a small window: it checks
 *	every length (definite lengths must match what they hold, indefinite
 *	ones must end with end-of-contents, nothing may follow the
 *	structure), keeps the small fields (version, originatorInfo,
 *	RecipientInfos, the content type and algorithm, the attributes, the
 *	GCM tag) and skips the encrypted content, which is either one
 *	primitive [0] or a constructed [0] of primitive OCTET STRING chunks
 *	(what "openssl cms -encrypt -stream" writes).  SignedData is read
 *	the same way: its encapsulated content (an OCTET STRING, primitive
 *	or in chunks, inside the [0]) is the part left out, so the re-encoded
 *	ContentInfo is a detached signature of it; certificates, CRLs and
 *	SignerInfos are kept.  cms_stream_der() is
 *	then the same ContentInfo re-encoded without its encrypted content
 *	(detached, a few KiB): OpenSSL's CMS code parses it and unwraps the
 *	content-encryption key from it.  cms_stream_content() rewinds the
 *	input and gives a read BIO of the ciphertext alone (the chunks
 *	joined), to pass as the detached content to CMS_decrypt(), which
 *	then decrypts in bounded buffers; call it again for another pass.
 *	mode says how the input is encoded: CMS_IN_BASE64, CMS_IN_DER, or
 *	CMS_IN_AUTO (raw DER when it starts with a SEQUENCE of long or
 *	indefinite length, else base64).
 * OWNERSHIP
 *	The input BIO is borrowed and must outlive the stream; so must the
 *	spool under it.  The content BIO is the stream's (valid until the
 *	next cms_stream_content() or cms_stream_free()); do not free it.
 *	cms_stream_free() accepts NULL and returns NULL.
 * ERRORS
 *	cms_stream_open(): KM_OK; KM_PROTO (not enveloped or signed data, malformed,
 *	truncated, a lying length, bad base64: why in err, reason
 *	KMERR_BADINPUT); KM_TEMPFAIL (the input could not be read);
 *	KM_NOMEM.  cms_stream_content() returns NULL with err set.  A read
 *	of the content BIO that fails returns -1; cms_stream_error() says
 *	why.
 * THREADS
 *	One stream per thread; the BIO method is built once (pthread_once).
 */
#include <stddef.h>
#include <stdint.h>

#include <openssl/bio.h>

#include "kmerr.h"

enum cms_in_mode { CMS_IN_AUTO, CMS_IN_BASE64, CMS_IN_DER };

struct cms_stream;

enum km_status	 cms_stream_open(BIO *in, enum cms_in_mode, struct cms_stream **out,
		    struct kmerr *err);
const unsigned char *cms_stream_der(const struct cms_stream *, size_t *len);
int		 cms_stream_is_auth(const struct cms_stream *);
int		 cms_stream_is_signed(const struct cms_stream *);
uint64_t	 cms_stream_content_length(const struct cms_stream *);
BIO		*cms_stream_content(struct cms_stream *, struct kmerr *err);
const struct kmerr *cms_stream_error(const struct cms_stream *);
struct cms_stream *cms_stream_free(struct cms_stream *);

#endif
