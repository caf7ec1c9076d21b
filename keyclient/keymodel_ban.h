#ifndef KMILTER_KEYCLIENT_KEYMODEL_BAN_H
#define KMILTER_KEYCLIENT_KEYMODEL_BAN_H
/*
 * NAME
 *	keymodel_ban - marks the key model keeps in the KM: banned
 *	addresses, retired gateways and the signing certificates each
 *	gateway issued
 * SUMMARY
 *	keymodel_ban(), keymodel_unban(), keymodel_banned(),
 *	keymodel_retire_gateway(), keymodel_gateway_retired(),
 *	keymodel_gateway_record_cert(), keymodel_gateway_name_ok(),
 *	keymodel_may_sign(), keymodel_signing_enroll().
 * DESCRIPTION
 *	A mark is a small SecretData object (its bytes say what it is, no
 *	secret) with one Name, registered and activated on BOTH servers,
 *	like every other piece of key-model state (never only in Redis):
 *	    kmilter:ban:ADDR         ADDR (lower-cased) may not be enrolled
 *	    kmilter:retired:GATEWAY  GATEWAY's signing keys are never used
 *	A mark holds while an Active object of that Name is on EITHER
 *	server: a ban or a retirement that reached one server only is
 *	already in force (fail safe); setting one again completes it.
 *	Lifting a ban removes the objects on both servers (Revoke, Cessation
 *	of Operation, then Destroy); until both are gone the ban holds.
 *	A retirement is not lifted.
 *
 *	keymodel_enroll_protected() and keymodel_import_p12() (hence kmctl
 *	enroll, kmctl import and automatic enrollment) refuse a banned
 *	address with KM_PERMFAIL, reason KMERR_REFUSED ("ADDR is banned").
 *
 *	Gateways.  keymodel_gateway_record_cert() registers a signing
 *	certificate a gateway issued (public: the key never leaves the
 *	gateway, signstore.h) as an Active Certificate named
 *	    kmilter:gwcert:GATEWAY
 *	on both servers, so that the gateway's certificates can be revoked
 *	from anywhere when its host is lost.  keymodel_retire_gateway() sets
 *	the retired mark first (no certificate is recorded for it after
 *	that) and then revokes (Key Compromise) every recorded certificate
 *	of the gateway on both servers.  keymodel_gateway_retired() says
 *	whether the mark is there.
 *
 *	Gateway names (milter.gateway_name): 1 to 200 printable ASCII
 *	characters without spaces; compared case-insensitively (the Name is
 *	lower-cased).
 * OWNERSHIP
 *	Everything is borrowed.
 * ERRORS
 *	enum km_status with one line in err: KM_PROTO a malformed address
 *	or gateway name; KM_PERMFAIL a server refused an operation;
 *	KM_TEMPFAIL a server unreachable (keymodel_banned() and
 *	keymodel_gateway_retired() answer from the other server when one
 *	is unreachable, and fail only when neither answers); KM_NOMEM.
 * THREADS
 *	Thread-safe (the handle's connection pools).
 */
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "keymodel.h"

#define KEYMODEL_GATEWAY_MAX	200

/* *changed: 1 when a server got (ban) or lost (unban) its mark. */
enum km_status	 keymodel_ban(struct keymodel *, const char *addr,
		    int *changed, struct kmerr *err);
enum km_status	 keymodel_unban(struct keymodel *, const char *addr,
		    int *changed, struct kmerr *err);
enum km_status	 keymodel_banned(struct keymodel *, const char *addr,
		    int *banned, struct kmerr *err);

int		 keymodel_gateway_name_ok(const char *gateway);
/* *nrevoked: the certificates newly revoked (counted on the server that
 * has most of them); each (may be NULL) gets the address of each one
 * newly revoked on the first server. */
enum km_status	 keymodel_retire_gateway(struct keymodel *,
		    const char *gateway, int *nrevoked,
		    void (*each)(const char *addr, void *arg), void *arg,
		    struct kmerr *err);
/* KM_OK when gateway may have a signing key for addr: the gateway is not
 * retired and addr not banned; else KM_PERMFAIL, KMERR_REFUSED. */
enum km_status	 keymodel_may_sign(struct keymodel *, const char *gateway,
		    const char *addr, struct kmerr *err);
/* signstore_enroll_protected() of gateway's signing key for addr (pw NULL:
 * plain), after
 * keymodel_may_sign(), then keymodel_gateway_record_cert() of the new
 * certificate; with km NULL neither (no KM).  *made: the key was made
 * (also when only the record failed: that error says so). */
struct seal_key;
enum km_status	 keymodel_signing_enroll(struct keymodel *,
		    const char *gateway, const char *state_dir,
		    const struct seal_key *, const char *addr, X509 *ca,
		    EVP_PKEY *ca_key, const char *keytype, int days,
		    const char *pw, size_t pwlen, int *made, struct kmerr *err);
enum km_status	 keymodel_gateway_retired(struct keymodel *,
		    const char *gateway, int *retired, struct kmerr *err);
enum km_status	 keymodel_gateway_record_cert(struct keymodel *,
		    const char *gateway, X509 *cert, struct kmerr *err);

#endif
