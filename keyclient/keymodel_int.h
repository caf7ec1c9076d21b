#ifndef KMILTER_KEYCLIENT_KEYMODEL_INT_H
#define KMILTER_KEYCLIENT_KEYMODEL_INT_H
/*
 * NAME
 *	keymodel_int - internals shared by the keymodel module family
 * SUMMARY
 *	Private to keymodel.c, keymodel_admin.c, keymodel_protect.c and
 *	keymodel_harvest.c:
 *	nothing else includes this header (keymodel_cert.c and
 *	keymodel_name.c do not need it).
 *	Types: struct keymodel (the handle), struct kobj, struct scan,
 *	struct genrec, struct admin.
 *	Errors: struct kmerr (kmerr.h).
 *	Scanning (keymodel.c): keymodel_scan_server(), keymodel_scan_clear(),
 *	keymodel_fetch_cert(),
 *	keymodel_build_gens(), keymodel_usable(), keymodel_make_gen().
 *	Administration sessions (keymodel_admin.c): keymodel_admin_open(),
 *	keymodel_admin_close(), keymodel_admin_next_gen(),
 *	keymodel_admin_install() (also keymodel_harvest.c).
 *	Concurrent enrollments (keymodel_enroll_race.c):
 *	keymodel_uid_before(), keymodel_admin_contend() (an enrollment
 *	whose rival registered first yields before activating),
 *	keymodel_admin_yield() (that, and a renewal's election),
 *	keymodel_stale(), keymodel_admin_tidy() (what a crashed change left,
 *	finished or removed), keymodel_test_pause() (tests only),
 *	keymodel_admin_supersede() (older Active generations deactivated).
 *	Bans (keymodel_ban.c): keymodel_admin_refuse_banned().
 * DESCRIPTION
 *	A scan is every kmilter object of one Name on one server, with its
 *	type, state, generation and level (Get Attributes); build_gens groups
 *	the objects of both servers' scans by generation, newest first,
 *	ignoring Pre-Active shares.  An admin session holds one connection
 *	to each server and both scans, for the administration functions.
 * OWNERSHIP
 *	keymodel_scan_clear() wipes (secmem) and frees what
 *	keymodel_scan_server() filled in.  keymodel_build_gens() returns an
 *	array the caller frees with free(); its kobj pointers borrow from the
 *	scans.  keymodel_admin_close() releases what keymodel_admin_open()
 *	took (also after a failed open).  keymodel_make_gen() fills a
 *	struct keymodel_gen whose members the caller frees.
 * ERRORS
 *	enum km_status with one line in err, as in keymodel.h.
 * THREADS
 *	As keymodel.h: scans and admin sessions belong to one thread.
 */
#include <time.h>

#include "keymodel.h"
#include "kmerr.h"
#include "keymodel_name.h"
#include "kmip.h"

/* The handle: one connection pool per KM server. */
struct keymodel {
	struct kmip_pool	*pool[2];
	char			 name[2][64];
	int			 parallel;
};

/* One kmilter object seen on one server. */
struct kobj {
	char			 uid[KMIP_UID_MAX];
	enum kmip_object_type	 type;
	enum kmip_state		 state;
	enum keymodel_kind	 kind;
	int			 gen;
	int			 enhanced;
	int			 harvested;	/* Object Group ":harvested" */
	time_t			 created;	/* Initial Date (server clock),
						 * 0 if not returned */
	unsigned char		*data;		/* Get result (secmem) or NULL */
	size_t			 len;
};

struct scan {
	struct kobj	*v;
	size_t		 n;
};

/* One generation, gathered from both servers' scans. */
struct genrec {
	int		 gen;
	int		 state;		/* worst state of its objects */
	struct kobj	*cert[2];	/* first certificate per server */
	int		 ncert[2];
	struct kobj	*share[2];
	int		 nshare[2];
	int		 enhanced;
	int		 harvested;	/* its certificate was harvested */
	int		 revoked;	/* keymodel_revoke() changed it */
};

/* An administration session: a connection to each server, both scans
 * and the generations built from them. */
struct admin {
	struct keymodel		*km;
	struct kmip_conn	*c[2];
	char			 norm[KEYMODEL_ADDR_MAX + 1];
	char			 name[KEYMODEL_NAME_MAX];
	struct scan		 s[2];
	struct genrec		*recs;
	size_t			 nrecs;
	int			 elect;		/* install backs off when another
						 * process registered the same
						 * generation first */
	int			 contend;	/* enrollment: yield to a rival */
};

/* Scanning and lookups (keymodel.c). */
void		 keymodel_scan_clear(struct scan *);
/* The certificate object uid on c: KM_OK with *out, NULL when the object
 * is not an X.509 certificate; the KM's error otherwise. */
enum km_status	 keymodel_fetch_cert(struct kmip_conn *, const char *uid,
		    X509 **out, struct kmerr *err);
enum km_status	 keymodel_scan_server(struct kmip_conn *, const char *name,
		    struct scan *, struct kmerr *err);
int		 keymodel_usable(int state);
enum km_status	 keymodel_build_gens(struct scan s[2], struct genrec **out,
		    size_t *nout);
enum km_status	 keymodel_make_gen(struct keymodel *, const char *addr,
		    struct genrec *, struct keymodel_gen *, struct kmerr *err);

/* Administration sessions (keymodel_admin.c). */
enum km_status	 keymodel_admin_open(struct admin *, struct keymodel *,
		    const char *addr, struct kmerr *err);
void		 keymodel_admin_close(struct admin *);
int		 keymodel_admin_next_gen(const struct admin *);
/* Concurrent enrollments (keymodel_enroll_race.c). */
int		 keymodel_uid_before(const char *a, const char *b);
enum km_status	 keymodel_admin_contend(struct admin *, const char *uid,
		    struct kmerr *err);
enum km_status	 keymodel_admin_yield(struct admin *, int gen,
		    const char *uid, int nreg, struct kmerr *err);
/* Interrupted changes (keymodel_enroll_race.c): an object is stale when
 * made longer ago than keymodel_stale_after() seconds; keymodel_admin_tidy()
 * finishes or removes what a crashed change left (*what: a line for the
 * administrator, "" when nothing was done) and rescans; keymodel_test_pause()
 * stops the process at a named step when KMILTER_TEST_PAUSE says so. */
int		 keymodel_stale(const struct kobj *, time_t now);
enum km_status	 keymodel_admin_tidy(struct admin *, char *what,
		    size_t whatlen, struct kmerr *err);
void		 keymodel_test_pause(const char *step);
enum km_status	 keymodel_admin_supersede(struct admin *, int gen,
		    struct kmerr *err);
enum km_status	 keymodel_admin_install(struct admin *, int gen, X509 *cert,
		    const unsigned char *der, size_t derlen, int enhanced,
		    int harvested, struct kmerr *err);
/* Bans (keymodel_ban.c): KM_PERMFAIL/KMERR_REFUSED when the session's
 * address is banned on either server. */
enum km_status	 keymodel_admin_refuse_banned(struct admin *,
		    struct kmerr *err);

#endif
