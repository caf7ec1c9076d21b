/*
 * fixture.c - the unit tests' shared PKI and fake key store (see fixture.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>

#include "fixture.h"
#include "keymodel.h"
#include "keystore.h"
#include "kmip.h"
#include "secmem.h"
#include "session.h"
#include "verdict.h"

/* add_ext - add one X509v3 extension from its config string; 0 on failure */
static int
add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ex;

	if (value == NULL)
		return 1;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	if ((ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL)
		return 0;
	X509_add_ext(x, ex, -1);
	X509_EXTENSION_free(ex);
	return 1;
}

/* add_name - one subject entry when value is set */
static void
add_name(X509_NAME *n, int nid, const char *value)
{
	if (value != NULL)
		X509_NAME_add_entry_by_NID(n, nid, MBSTRING_ASC,
		    (const unsigned char *)value, -1, -1, 0);
}

/* fixture_cert - a certificate for key as spec says, signed by issuer (or itself) */
X509 *
fixture_cert(EVP_PKEY *key, const struct fixture_cert *spec, X509 *issuer,
    EVP_PKEY *issuer_key)
{
	X509 *x = X509_new();
	X509_NAME *n;
	char san[400];
	int ok;

	if (x == NULL)
		return NULL;
	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), spec->serial ? spec->serial : 1);
	X509_gmtime_adj(X509_getm_notBefore(x),
	    spec->notbefore || spec->notafter ? spec->notbefore : -3600);
	X509_gmtime_adj(X509_getm_notAfter(x),
	    spec->notbefore || spec->notafter ? spec->notafter : 86400);
	X509_set_pubkey(x, key);
	n = X509_get_subject_name(x);
	add_name(n, NID_organizationName, spec->org);
	add_name(n, NID_commonName, spec->cn);
	add_name(n, NID_pkcs9_emailAddress, spec->email);
	if (issuer == NULL) {
		issuer = x;
		issuer_key = key;
	}
	X509_set_issuer_name(x, X509_get_subject_name(issuer));
	snprintf(san, sizeof(san), "email:%s", spec->san ? spec->san : "");
	ok = (!spec->keyids || add_ext(x, issuer, NID_subject_key_identifier, "hash")) &&
	    add_ext(x, issuer, NID_basic_constraints, spec->bc) &&
	    add_ext(x, issuer, NID_key_usage, spec->ku) &&
	    add_ext(x, issuer, NID_ext_key_usage, spec->eku) &&
	    add_ext(x, issuer, NID_subject_alt_name, spec->san ? san : NULL) &&
	    (!spec->keyids || issuer == x ||
	    add_ext(x, issuer, NID_authority_key_identifier, "keyid")) &&
	    X509_sign(x, issuer_key, EVP_sha256()) > 0;
	if (!ok) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* fixture_ca - the shared test CA, made once; 0 on failure */
int
fixture_ca(X509 **cert, EVP_PKEY **key)
{
	static const struct fixture_cert spec = { .cn = "test CA" };
	static X509 *ca;
	static EVP_PKEY *cakey;

	if (ca == NULL && (cakey = EVP_EC_gen("P-256")) != NULL)
		ca = fixture_cert(cakey, &spec, NULL, NULL);
	*cert = ca;
	*key = cakey;
	return ca != NULL;
}

/* ---- the fake key store over a table of identities ---- */

/* fixture_find - the table entry of addr, or NULL */
struct fixture_id *
fixture_find(struct fixture_id *ids, const char *addr)
{
	for (struct fixture_id *f = ids; f->addr; f++)
		if (strcmp(f->addr, addr) == 0)
			return f;
	return NULL;
}

/* fixture_ids_make - a P-256 key and a self-signed S/MIME certificate for each id */
int
fixture_ids_make(struct fixture_id *ids)
{
	struct fixture_cert spec = { .eku = "emailProtection",
	    .ku = "digitalSignature,keyAgreement" };

	for (struct fixture_id *f = ids; f->addr; f++) {
		spec.cn = spec.san = f->addr;
		if ((f->key = EVP_EC_gen("P-256")) == NULL ||
		    (f->cert = fixture_cert(f->key, &spec, NULL, NULL)) == NULL)
			return 0;
	}
	return 1;
}

/* fake_km_cert - FAKE KM: the table's certificate, else "no certificate" */
static enum km_status
fake_km_cert(void *arg, const char *addr, X509 **out, struct kmerr *err)
{
	struct fixture_id *f = fixture_find(arg, addr);

	if (f == NULL || f->cert == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no certificate in KM");
	X509_up_ref(f->cert);
	*out = f->cert;
	return KM_OK;
}

/* fake_km_keys - FAKE KM: one active, plain (not enhanced) generation */
static enum km_status
fake_km_keys(void *arg, const char *addr, struct keymodel_gen **out, size_t *n,
    struct kmerr *err)
{
	struct fixture_id *f = fixture_find(arg, addr);
	struct keymodel_gen *g;
	PKCS8_PRIV_KEY_INFO *pi;
	unsigned char *p8 = NULL;
	int l;

	if (f == NULL || f->cert == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND, "no keys in KM");
	if ((g = calloc(1, sizeof(*g))) == NULL || (pi = EVP_PKEY2PKCS8(f->key)) == NULL) {
		free(g);
		return KM_NOMEM;
	}
	l = i2d_PKCS8_PRIV_KEY_INFO(pi, &p8);
	PKCS8_PRIV_KEY_INFO_free(pi);
	if (l <= 0 || (g->der = secmem_alloc((size_t)l)) == NULL) {
		OPENSSL_free(p8);
		free(g);
		return KM_NOMEM;
	}
	memcpy(g->der, p8, (size_t)l);
	g->derlen = (size_t)l;
	OPENSSL_clear_free(p8, (size_t)l);
	g->generation = 1;
	g->state = KMIP_STATE_ACTIVE;
	X509_up_ref(f->cert);
	g->cert = f->cert;
	EVP_PKEY_up_ref(f->key);
	g->key = f->key;
	*out = g;
	*n = 1;
	return KM_OK;
}

/* fake_km_gens_free - free what fake_km_keys made */
static void
fake_km_gens_free(void *arg, struct keymodel_gen *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		X509_free(g[i].cert);
		EVP_PKEY_free(g[i].key);
		secmem_free(g[i].der, g[i].derlen);
	}
	free(g);
}

/* fake_km_revcount - FAKE KM: nothing was ever revoked */
static enum km_status
fake_km_revcount(void *arg, const char *addr, uint32_t *count, struct kmerr *err)
{
	*count = 0;
	return KM_OK;
}

/* fake_signer - FAKE signing store: the table's key for its addresses */
static enum km_status
fake_signer(void *arg, const char *addr, X509 **cert, EVP_PKEY **key,
    unsigned char **enc, size_t *enclen, STACK_OF(X509) **chain,
    struct kmerr *err)
{
	struct fixture_id *f = fixture_find(arg, addr);

	if (f == NULL || f->cert == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND, "no signing key");
	X509_up_ref(f->cert);
	EVP_PKEY_up_ref(f->key);
	*cert = f->cert;
	*key = f->key;
	*chain = NULL;
	return KM_OK;
}

/* fixture_backend - a key store back end answering from ids */
void
fixture_backend(struct keystore_backend *be, struct fixture_id *ids)
{
	memset(be, 0, sizeof(*be));
	be->arg = ids;
	be->km_cert = fake_km_cert;
	be->km_keys = fake_km_keys;
	be->km_gens_free = fake_km_gens_free;
	be->km_revcount = fake_km_revcount;
	be->signer = fake_signer;
}

/* fixture_message - a message with these headers (name, value pairs, NULL-terminated) */
struct message *
fixture_message(const char *const *hv)
{
	struct message *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	for (; hv[0] != NULL; hv += 2)
		if (message_add_header(m, hv[0], hv[1]) != KM_OK)
			abort();
	return m;
}

/* fixture_message_free - free what fixture_message() made */
void
fixture_message_free(struct message *m)
{
	for (int i = 0; i < m->nheaders; i++) {
		free(m->headers[i].name);
		free(m->headers[i].value);
	}
	free(m->headers);
	free(m);
}

/* fixture_has_change - is there a change (name, index, value or NULL) in the verdict? */
int
fixture_has_change(const struct verdict *v, const char *name, int index, const char *value)
{
	for (int i = 0; i < v->nchanges; i++) {
		const struct header_change *c = &v->changes[i];

		if (strcmp(c->name, name) == 0 && c->index == index &&
		    (value == NULL ? c->value == NULL : c->value && strcmp(c->value, value) == 0))
			return 1;
	}
	return 0;
}
