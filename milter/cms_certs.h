#ifndef KMILTER_MILTER_CMS_CERTS_H
#define KMILTER_MILTER_CMS_CERTS_H
/*
 * NAME
 *	cms_certs - parse a SignedData without decoding its certificates again
 * SUMMARY
 *	cms_certs_d2i(), cms_certs_flush()
 * DESCRIPTION
 *	OpenSSL 3.0 builds a key decoder for every certificate it parses
 *	(OSSL_DECODER_CTX_new_for_pkey): about 0.1 ms each, most of what
 *	reading a signature costs.  A sender's certificates are the same in
 *	every message, so cms_certs_d2i() keeps them: given the DER of a
 *	ContentInfo holding a SignedData with definite lengths and a
 *	certificates field of plain certificates, it parses the ContentInfo
 *	without that field and adds the certificates, parsed once and kept
 *	under the SHA-256 of the field, with CMS_add1_cert() in their order.
 *	The result is the CMS that d2i_CMS_ContentInfo() would give (the
 *	same certificates, the same signer infos, the same DER re-encoded).
 *	At most CMS_CERTS_SLOTS certificate fields are kept (one per slot of
 *	a direct-mapped table: a new one replaces the old); certificates are
 *	public, so nothing is wiped but the stripped copy (an opaque
 *	signed-data holds its content).
 *	cms_certs_flush() empties the table (tests, shutdown).
 * RETURNS
 *	cms_certs_d2i(): 1 and *out set, or 0 when the fast path does not
 *	apply or failed (BER, no certificates, another content type, other
 *	certificate choices, anything malformed, out of memory): then the
 *	caller parses der as usual and reports its errors.
 * THREADS
 *	Safe: the table has a lock; the kept X509s are shared read-only
 *	(up-referenced into each CMS).
 */
#include <stddef.h>

#include <openssl/cms.h>

#define CMS_CERTS_SLOTS	256

int	cms_certs_d2i(const unsigned char *der, size_t len, CMS_ContentInfo **out);
void	cms_certs_flush(void);

#endif
