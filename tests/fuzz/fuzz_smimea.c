/*
 * fuzz_smimea.c - libFuzzer target for what a DNS answer hands to
 * keyclient/smimea.c: SMIMEA rdata (usage, selector, matching type, a
 * certificate) and, as a string, an address to make an owner name of.
 *
 * Build and run (from the repository root):
 *   make FUZZ=1 build-fuzz/fuzz/fuzz_smimea
 *   tests/fuzz/run smimea
 *
 * Each input is parsed as rdata and judged for a fixed address, with and
 * without a CA store for usage 1 (PKIX-EE); a certificate that comes out
 * must be for that address.  The same bytes, cut at the first NUL, are
 * made an owner name.  Nothing may crash or leak, and the OpenSSL error
 * queue must be empty afterwards.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "certenc.h"
#include "smimea.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define ADDR	"carol@smimea.example"

static X509_STORE *store;

/* judge - one pass of smimea_rr_cert over the record */
static void
judge(const struct smimea_rr *rr, X509_STORE *pkix)
{
	struct kmerr err;
	X509 *c = NULL;

	kmerr_clear(&err);
	if (smimea_rr_cert(rr, ADDR, pkix, &c, &err) == KM_OK) {
		if (c == NULL || !certenc_names(c, ADDR))
			abort();
		X509_free(c);
	} else if (c != NULL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char owner[SMIMEA_OWNER_MAX], *s;
	struct smimea_rr rr;
	struct kmerr err;

	if (store == NULL && (store = X509_STORE_new()) == NULL)
		abort();
	kmerr_clear(&err);
	if (smimea_rdata(data, len, &rr, &err) == KM_OK) {
		judge(&rr, NULL);
		judge(&rr, store);
	}
	if ((s = malloc(len + 1)) != NULL) {
		memcpy(s, data, len);
		s[len] = '\0';
		(void)smimea_owner(s, owner, sizeof(owner));
		free(s);
	}
	if (ERR_peek_error() != 0)
		abort();
	return 0;
}
