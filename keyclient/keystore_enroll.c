/*
 * keystore_enroll.c - automatic enrollment through the key store: the
 * hook's "enroll" question, the escrowed encryption key and this
 * gateway's signing key.  See keystore.h.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "hook.h"
#include "keymodel.h"
#include "keymodel_admin.h"
#include "keymodel_ban.h"
#include "keymodel_cert.h"
#include "keystore.h"
#include "keystore_int.h"
#include "log.h"
#include "signstore.h"

/* keystore_enroll_allowed - hook event enroll: KM_OK when the hook says
 * allow; a deny, a failure or no hook is KM_PERMFAIL (KMERR_REFUSED) */
enum km_status
keystore_enroll_allowed(struct keystore *ks, const char *addr,
    const char *queue_id, struct kmerr *err)
{
	struct hook_answer a;
	struct kmerr why;
	enum km_status st;

	if (ks->be.hook_ask == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "enrollment denied: no hook configured (hook.path)");
	kmerr_clear(&why);
	keystore_hook_call(ks, HOOK_EVENT_ENROLL, addr, HOOK_LEVEL_DEFAULT,
	    queue_id, &a, &why);
	if (a.action == HOOK_ACTION_ALLOW && a.failure == HOOK_FAIL_NONE)
		st = KM_OK;
	else if (a.failure != HOOK_FAIL_NONE)
		st = kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "enrollment denied: %s%s%s", a.reason,
		    why.msg[0] ? ": " : "", why.msg);
	else
		st = kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "enrollment denied by hook%s%s", a.reason[0] ? ": " : "",
		    a.reason);
	hook_answer_clear(&a);
	return st;
}

/* keystore_enroll_key - first generation of addr's escrowed encryption
 * key (keymodel_enroll); *generation and fp (its certificate's SHA-256)
 * filled on KM_OK */
enum km_status
keystore_enroll_key(struct keystore *ks, const char *addr, X509 *ca_cert,
    EVP_PKEY *ca_key, int *generation, char *fp, size_t fplen,
    struct kmerr *err)
{
	enum km_status st;
	X509 *cert = NULL;
	struct kmerr e2;

	*generation = 0;
	if (fplen > 0)
		fp[0] = '\0';
	if (!ks->has_km)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "no KM configured");
	st = keymodel_enroll(ks->km, addr, ca_cert, ca_key, NULL, 0,
	    generation, err);
	keystore_invalidate(ks, addr);	/* the negative answers go */
	if (st == KM_OK && keystore_get_cert(ks, addr, &cert, &e2) == KM_OK) {
		keymodel_cert_fingerprint(cert, fp, fplen);
		X509_free(cert);
	}
	return st;
}

/* keystore_enroll_signer - this gateway's signing key for addr, unless
 * it has one (KM_OK either way; *made says which) */
enum km_status
keystore_enroll_signer(struct keystore *ks, const char *addr, X509 *ca_cert,
    EVP_PKEY *ca_key, int *made, struct kmerr *err)
{
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	unsigned char *enc = NULL;
	size_t enclen = 0;
	struct kmerr e2;
	enum km_status st;

	*made = 0;
	if (ks->seal == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "no seal key: %s", ks->seal_err);
	/* a key protected by the user's password is a key too */
	if (signstore_open(ks->state_dir, ks->seal, addr, &cert, &key, &enc,
	    &enclen, NULL, &e2) == KM_OK) {
		X509_free(cert);
		EVP_PKEY_free(key);
		free(enc);
		return KM_OK;
	}
	/* refused for a retired gateway or a banned address, recorded in
	 * the KM for kmctl retire-gateway (keymodel_ban.h) */
	st = keymodel_signing_enroll(ks->has_km && ks->gateway != NULL ?
	    ks->km : NULL, ks->gateway, ks->state_dir, ks->seal, addr, ca_cert,
	    ca_key, NULL, 0, NULL, 0, made, err);
	if (st != KM_OK && *made) {
		log_warnx("keystore: %s: %s", addr, err->msg);
		st = KM_OK;
	}
	keystore_invalidate(ks, addr);
	return st;
}
