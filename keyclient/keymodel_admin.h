#ifndef KMILTER_KEYCLIENT_KEYMODEL_ADMIN_H
#define KMILTER_KEYCLIENT_KEYMODEL_ADMIN_H
/*
 * NAME
 *	keymodel_admin - administration of an address's generations in the
 *	KM: enroll, renew, revoke, import, show
 * SUMMARY
 *	keymodel_enroll(), keymodel_enroll_protected(), keymodel_renew(),
 *	keymodel_revoke(), keymodel_import_p12(), keymodel_import_cert(),
 *	keymodel_show(), keymodel_infos_free(), keymodel_list(),
 *	keymodel_list_unfinished(), keymodel_finish(), keymodel_export_key().
 *	Included by keymodel.h: callers include keymodel.h.
 * DESCRIPTION
 *	Each function opens an administration session (a connection to each
 *	server and a scan of both, keymodel_int.h), acts, and closes it.
 *	A new generation (enroll, renew, import) is registered on both
 *	servers Pre-Active (invisible to lookups), activated once all of its
 *	objects exist, and only then are the older Active objects
 *	deactivated (Cessation of Operation); on failure the half-made
 *	objects are destroyed again.  Shares are activated before
 *	certificates.  A change that died half-way (a crash, SIGKILL) is
 *	finished or removed by the next enrollment, renewal or
 *	keymodel_finish() of the address once its objects are stale (older
 *	than 600 s; KMILTER_TEST_STALE_S overrides that, for tests only):
 *	see keymodel_enroll_race.c.  Enrollment refuses an address with an
 *	Active generation (KMERR_EXISTS); renewal refuses one without, and one whose
 *	current generation is at level enhanced (keymodel_protect.h).
 *	keymodel_revoke() marks one generation (or all) Compromised.
 *	keymodel_import_p12() takes a key and certificate from elsewhere,
 *	keymodel_import_cert() an outside correspondent's certificate (no
 *	key); both refuse a certificate not issued to the address.
 *	keymodel_show() describes every generation, without key material.
 *	keymodel_export_key() hands the current key and certificate to
 *	kmctl export (an enhanced key only with its protection password).
 *	Enrollment and import refuse a banned address (keymodel_ban.h).
 *	keymodel_list() gives every address that has an Active certificate
 *	or Active key shares (Locate by type and state, then each object's
 *	Name, and each certificate's expiry) from the first server that
 *	answers, sorted.
 * OWNERSHIP
 *	keymodel_show() returns an array freed with keymodel_infos_free()
 *	(NULL-safe, returns NULL).  keymodel_list() returns an array (NULL
 *	when empty) freed with free().  The CA certificate and key, input files
 *	and passwords are borrowed; a password is copied only into secmem.
 * ERRORS
 *	enum km_status with err set, as in keymodel.h: KM_PERMFAIL for
 *	"no ..." (reason KMERR_NOTFOUND), already enrolled (KMERR_EXISTS), a refused
 *	operation or a wrong PKCS#12 password; KM_PROTO for a malformed file
 *	or address; KM_TEMPFAIL, KM_NOMEM.
 * THREADS
 *	Meant for one process (kmctl) at a time per address; two
 *	enrollments of one address at once (threads, gateways) end with one
 *	Active generation: the later one yields with KM_TEMPFAIL, reason
 *	KMERR_REFUSED (keymodel_enroll_race.c).
 */
#include "keymodel.h"
#include "keymodel_name.h"

/* Administration.  *generation receives the generation made. */
enum km_status	 keymodel_enroll(struct keymodel *, const char *addr,
		    X509 *ca_cert, EVP_PKEY *ca_key, const char *keytype,
		    int days, int *generation, struct kmerr *err);
/* pw NULL: level default, as keymodel_enroll(); else level enhanced. */
enum km_status	 keymodel_enroll_protected(struct keymodel *,
		    const char *addr, X509 *ca_cert, EVP_PKEY *ca_key,
		    const char *keytype, int days, const char *pw,
		    size_t pwlen, int *generation, struct kmerr *err);
enum km_status	 keymodel_renew(struct keymodel *, const char *addr,
		    X509 *ca_cert, EVP_PKEY *ca_key, const char *keytype,
		    int days, int *generation, struct kmerr *err);
/* Renew only while the current certificate expires before due_before
 * (re-read in the session; 0 = always, as keymodel_renew()) and no newer
 * generation is being made; KM_OK with *generation = 0 when skipped.  Of
 * two that race past that check, the one that registered first goes on,
 * the other fails with KMERR_EXISTS (its objects removed). */
enum km_status	 keymodel_renew_due(struct keymodel *, const char *addr,
		    X509 *ca_cert, EVP_PKEY *ca_key, const char *keytype,
		    int days, time_t due_before, int *generation,
		    struct kmerr *err);
/* generation 0 = every generation. */
enum km_status	 keymodel_revoke(struct keymodel *, const char *addr,
		    int generation, int *nrevoked, struct kmerr *err);
enum km_status	 keymodel_import_p12(struct keymodel *, const char *addr,
		    const unsigned char *p12, size_t len, const char *pw,
		    size_t pwlen, int *generation, struct kmerr *err);
enum km_status	 keymodel_import_cert(struct keymodel *, const char *addr,
		    const unsigned char *data, size_t len, int *generation,
		    struct kmerr *err);
/* The current (newest Active) generation's key and certificate for kmctl
 * export: the key reassembled from its two shares as for decryption; an
 * enhanced key needs protpw (none or a wrong one: KM_PERMFAIL,
 * KMERR_BADPASSWORD).  New references on KM_OK. */
enum km_status	 keymodel_export_key(struct keymodel *, const char *addr,
		    const char *protpw, size_t protlen, EVP_PKEY **key,
		    X509 **cert, int *generation, struct kmerr *err);
enum km_status	 keymodel_show(struct keymodel *, const char *addr,
		    struct keymodel_info **out, size_t *n, struct kmerr *err);
struct keymodel_info *keymodel_infos_free(struct keymodel_info *);

/* One address of keymodel_list(). */
struct keymodel_user {
	char	 addr[KEYMODEL_ADDR_MAX + 1];
	int	 has_cert;		/* an Active certificate */
	int	 has_key;		/* Active key shares */
	int	 ncert;			/* its Active certificates (more than
					 * one: an interrupted renewal) */
	time_t	 not_after;		/* the latest expiry of its Active
					 * certificates, 0 if none parses */
};
enum km_status	 keymodel_list(struct keymodel *, struct keymodel_user **out,
		    size_t *n, struct kmerr *err);
/* Addresses with Pre-Active objects on either server (keymodel_list()'s
 * form: has_cert, has_key say which Pre-Active objects it has). */
enum km_status	 keymodel_list_unfinished(struct keymodel *,
		    struct keymodel_user **out, size_t *n, struct kmerr *err);
/* Finish or remove what an interrupted change of addr left; what: one line
 * for the administrator, "" when nothing was done. */
enum km_status	 keymodel_finish(struct keymodel *, const char *addr,
		    char *what, size_t whatlen, struct kmerr *err);

#endif
