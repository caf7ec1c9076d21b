#ifndef KMILTER_KEYCLIENT_KEYMODEL_PROTECT_H
#define KMILTER_KEYCLIENT_KEYMODEL_PROTECT_H
/*
 * NAME
 *	keymodel_protect - change of an address's protection level: set and
 *	clear the password that protects its escrowed keys
 * SUMMARY
 *	keymodel_set_password(), keymodel_clear_password(),
 *	keymodel_password_opens().
 *	Included by keymodel.h: callers include keymodel.h.
 * DESCRIPTION
 *	Protection level.  keymodel_enroll_protected() with a password
 *	escrows the new key as an EncryptedPrivateKeyInfo (PBES2: PBKDF2
 *	HMAC-SHA256, AES-256-CBC, pkcs8pw.h) and marks its shares
 *	"enhanced".  keymodel_set_password() re-escrows every usable
 *	(Active or Deactivated) generation that way; keymodel_clear_password()
 *	needs the current password and goes back to plain PKCS#8 (level
 *	default).  Both first fetch, combine, convert and check (against the
 *	certificate) every generation, and only then change the KM, one
 *	generation at a time: register the two new shares (Pre-Active: a
 *	Pre-Active share is ignored by every scan), activate them, revoke
 *	(Cessation of Operation) and destroy the old ones.  A failure before
 *	the new shares are active removes them and leaves the generation as
 *	it was.  Generations already at the wanted level are skipped (with
 *	set, only if the same password opens them), so running an
 *	interrupted change again completes it.  keymodel_renew() refuses an
 *	enhanced current generation (a plain new one would lower the level).
 *	The KM holds no signing keys: the user's signing keys on each
 *	gateway follow the level on their own (signstore_rewrap(): kmctl
 *	does this gateway's at once, the milter the others' lazily, see
 *	docs/keymodel.md).
 *
 *	keymodel_password_opens() tells whether pw is the password of
 *	record: 1 when it opens one of the enhanced generations g (as
 *	keymodel_decryption_keys() or the keystore's raw set gives them),
 *	0 when it opens none, -1 when none is enhanced.
 *
 *	Pre-Active shares that an interrupted change left behind are
 *	destroyed first.
 * OWNERSHIP
 *	Passwords are borrowed and never copied outside secmem.
 * ERRORS
 *	enum km_status with one line in err (never a password):
 *	KM_PROTO empty password or a generation that does not convert;
 *	KM_PERMFAIL "wrong password ...", "... already protected by another
 *	password ...", "no keys for ADDR", or a refused operation (a
 *	generation whose new shares are in place but whose old share could
 *	not be removed says so); KM_TEMPFAIL, KM_NOMEM.
 * THREADS
 *	Meant for one process (kmctl) at a time per address.
 */
#include "keymodel.h"

/* *nchanged receives the number of generations re-escrowed (those
 * already at the wanted level are not counted). */
enum km_status	 keymodel_set_password(struct keymodel *, const char *addr,
		    const char *pw, size_t pwlen, int *nchanged,
		    struct kmerr *err);
enum km_status	 keymodel_clear_password(struct keymodel *,
		    const char *addr, const char *pw, size_t pwlen,
		    int *nchanged, struct kmerr *err);
int		 keymodel_password_opens(const struct keymodel_gen *,
		    size_t n, const char *pw, size_t pwlen);

#endif
