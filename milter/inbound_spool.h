#ifndef KMILTER_MILTER_INBOUND_SPOOL_H
#define KMILTER_MILTER_INBOUND_SPOOL_H
/*
 * NAME
 *	inbound_spool - check a large signed entity from its spool
 * SUMMARY
 *	inbound_spool_verify(), inbound_spool_part0_head(),
 *	inbound_split_new(), inbound_split_head()
 * DESCRIPTION
 *	A decrypted entity larger than milter.spool_memory_max stays in a
 *	spool (inbound.c).  When it is multipart/signed (ctype, its header
 *	block ending at octet bo of sp), inbound_spool_verify() finds its
 *	two parts by reading the spool in bounded pieces (the delimiter
 *	lines as mime_multipart_split() reads them: a line starting with
 *	"--boundary", then "--" for the last, transport padding, the line
 *	end; the line break before a delimiter is not content), reads the
 *	signature part (at most 1 MiB) into memory and has
 *	smime_verify_detached() check the signature over the signed part
 *	read from the spool through a BIO, so the signed content is never
 *	all in memory.  Opaque signed-data (application/pkcs7-mime) is read
 *	as a stream from bo on (smime_verify_stream), its content written to
 *	content_out (NULL: nowhere) as the signature is checked.
 *	inbound_spool_part0_head() gives the header block
 *	of the signed part (with the empty line after it), what header
 *	protection (hp.h) reads of a multipart/signed payload.
 *
 *	inbound_split_new() pushes a filter BIO in front of next (a spool
 *	writer): an entity written through it reaches next without its
 *	header block, which the filter keeps (at most SPLIT_HEAD_MAX octets)
 *	for inbound_split_head().  So a large decrypted or unwrapped entity
 *	is spooled once, its body alone, ready for verdict_set_body_spool().
 * OWNERSHIP
 *	sp and store are borrowed; sc as in smime_verify.h.
 *	inbound_spool_part0_head() returns a secmem_alloc'ed, NUL-terminated
 *	copy (secmem_free(p, *len + 1)), or NULL when the parts or the end
 *	of that header block (in its first 64 KiB) cannot be found.  The
 *	splitter is freed with BIO_free() (next is left alone: BIO_pop()
 *	first, or BIO_free_all() both); inbound_split_head() returns a copy
 *	as inbound_spool_part0_head() does.
 * ERRORS
 *	As smime_verify_rev(): KM_OK when the signature could be checked
 *	(the verdict in res); KM_PROTO malformed (no boundary, not two
 *	parts, no closing delimiter, a signature part too large); KM_NOMEM;
 *	KM_TEMPFAIL when the spool cannot be read.
 * THREADS
 *	One message per call; the BIO method is built once (pthread_once).
 */
#include <stddef.h>

#include <openssl/x509_vfy.h>

#include "kmerr.h"
#include "smime_verify.h"
#include "spool.h"

enum km_status	inbound_spool_verify(struct spool *sp, size_t bo, const char *ctype,
		    X509_STORE *store, struct revcheck *rv, const char *from,
		    struct smime_verify_result *res, struct smime_signer_certs *sc,
		    BIO *content_out, struct kmerr *err);
char		*inbound_spool_part0_head(struct spool *sp, size_t bo, const char *ctype,
		    size_t *len);

#define SPLIT_HEAD_MAX	65536	/* a spooled entity's header block, at most */

BIO		*inbound_split_new(BIO *next);
char		*inbound_split_head(BIO *, size_t *len);

#endif
