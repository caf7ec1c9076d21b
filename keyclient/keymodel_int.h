#ifndef KMILTER_KEYCLIENT_KEYMODEL_INT_H
#define KMILTER_KEYCLIENT_KEYMODEL_INT_H
/*
 * NAME
 *	keymodel_int - internals shared by the keymodel module family
 * SUMMARY
 *	Private to keymodel.c, keymodel_cert.c, keymodel_admin.c and
 *	keymodel_protect.c: nothing else includes this header.
 *	Types: struct keymodel (the handle), struct kobj, struct scan,
 *	struct genrec, struct admin.
 *	Error helpers: seterr(), ossl_fail() (static inline).
 *	Scanning (keymodel.c): keymodel_scan_server(), keymodel_scan_clear(),
 *	keymodel_build_gens(), keymodel_usable(), keymodel_make_gen().
 *	Keys (keymodel_cert.c): keymodel_pkey_to_der(),
 *	keymodel_der_to_pkey(), keymodel_keytype_of(),
 *	keymodel_key_type_name().
 *	Administration sessions (keymodel_admin.c): keymodel_admin_open(),
 *	keymodel_admin_close(), keymodel_admin_next_gen().
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
 *	keymodel_pkey_to_der() returns secmem: secmem_free(*out, *outlen).
 * ERRORS
 *	enum km_status with one line in errstr, as in keymodel.h.
 *	keymodel_der_to_pkey() and keymodel_keytype_of() return NULL.
 * THREADS
 *	As keymodel.h: scans and admin sessions belong to one thread.
 */
#include <stdarg.h>
#include <stdio.h>

#include "keymodel.h"
#include "kmip.h"
#include "log.h"

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
};

/* seterr - format one error line into errstr, if there is one */
static inline void KM_PRINTF(3, 4)
seterr(char *errstr, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errstr == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errstr, errlen, fmt, ap);
	va_end(ap);
}

/* ossl_fail - drain the OpenSSL error queue and set a message */
static inline enum km_status
ossl_fail(enum km_status st, char *errstr, size_t errlen, const char *what)
{
	log_openssl(what);
	seterr(errstr, errlen, "%s failed", what);
	return st;
}

/* Scanning and lookups (keymodel.c). */
void		 keymodel_scan_clear(struct scan *);
enum km_status	 keymodel_scan_server(struct kmip_conn *, const char *name,
		    struct scan *, char *errstr, size_t errlen);
int		 keymodel_usable(int state);
enum km_status	 keymodel_build_gens(struct scan s[2], struct genrec **out,
		    size_t *nout);
enum km_status	 keymodel_make_gen(struct keymodel *, const char *addr,
		    struct genrec *, struct keymodel_gen *, char *errstr,
		    size_t errlen);

/* Keys (keymodel_cert.c). */
enum km_status	 keymodel_pkey_to_der(EVP_PKEY *, unsigned char **out,
		    size_t *outlen, char *errstr, size_t errlen);
EVP_PKEY	*keymodel_der_to_pkey(const unsigned char *der, size_t len);
const char	*keymodel_keytype_of(X509 *cert);
void		 keymodel_key_type_name(EVP_PKEY *, char *out, size_t outlen);

/* Administration sessions (keymodel_admin.c). */
enum km_status	 keymodel_admin_open(struct admin *, struct keymodel *,
		    const char *addr, char *errstr, size_t errlen);
void		 keymodel_admin_close(struct admin *);
int		 keymodel_admin_next_gen(const struct admin *);

#endif
