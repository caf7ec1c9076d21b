/*
 * keymodel_export.c - keymodel_export_key(): a user's current encryption
 * key and certificate for kmctl export (see keymodel_admin.h).
 */
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "keymodel.h"
#include "keymodel_admin.h"
#include "keymodel_cert.h"
#include "keymodel_int.h"
#include "kmip.h"
#include "pkcs8pw.h"

/* keymodel_export_key - the current generation's key (its shares
 * combined as keymodel_decryption_keys does for the milter, an enhanced
 * key opened with protpw) and certificate */
enum km_status
keymodel_export_key(struct keymodel *km, const char *addr, const char *protpw,
    size_t protlen, EVP_PKEY **key, X509 **cert, int *generation,
    struct kmerr *err)
{
	struct keymodel_gen *v = NULL, *cur = NULL;
	size_t n = 0, i;
	enum km_status st;

	*key = NULL;
	*cert = NULL;
	if ((st = keymodel_decryption_keys(km, addr, &v, &n, err)) != KM_OK)
		return st;
	for (i = 0; i < n; i++)
		if (v[i].state == KMIP_STATE_ACTIVE && (cur == NULL ||
		    v[i].generation > cur->generation))
			cur = &v[i];
	if (cur == NULL) {
		st = kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no current encryption key for %s", addr);
		goto out;
	}
	if (cur->enhanced && protpw == NULL) {
		st = kmerr_set(err, KM_PERMFAIL, KMERR_BADPASSWORD,
		    "%s's key is protected by a password (level enhanced): "
		    "the protection password is needed", addr);
		goto out;
	}
	if (cur->enhanced) {
		if ((st = pkcs8pw_unwrap_pkey(cur->der, cur->derlen, protpw,
		    protlen, key, err)) != KM_OK) {
			if (st == KM_PERMFAIL)
				kmerr_set(err, KM_PERMFAIL, KMERR_BADPASSWORD,
				    "wrong protection password for %s", addr);
			goto out;
		}
		if ((st = keymodel_check_pair(cur->cert, *key, err)) != KM_OK)
			goto out;
	} else {
		*key = cur->key;	/* checked against cur->cert already */
		cur->key = NULL;
	}
	*cert = cur->cert;
	cur->cert = NULL;
	if (generation != NULL)
		*generation = cur->generation;
out:
	if (st != KM_OK) {
		EVP_PKEY_free(*key);
		*key = NULL;
	}
	keymodel_gens_free(v, n);
	return st;
}
