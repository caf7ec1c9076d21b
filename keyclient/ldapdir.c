/*
 * ldapdir.c - certificates of an address from the LDAP directories of
 * directory.ldap.  See ldapdir.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <ldap.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "cache_conn.h"
#include "clock.h"
#include "conf.h"
#include "keymodel_cert.h"
#include "keystore_certcheck.h"
#include "ldapdir.h"
#include "log.h"

#define LDAPDIR_FILTER_MAX	1024	/* "(mail=" escaped address ")" */
#define LDAPDIR_VALUE_MAX	65536	/* bytes of one attribute value */
#define LDAPDIR_CERTS_MAX	32	/* certificates looked at per lookup */
#define LDAPDIR_VALUES_MAX	64	/* values looked at per lookup */

struct ldapsrv {
	char		**domains;
	int		  ndomains;
	char		 *uri;
	char		 *base;
	char		 *bind_dn;	/* NULL: anonymous */
	char		 *password;	/* wiped at free */
	size_t		  pwlen;
	char		 *ca_file;	/* NULL: the system's */
	int		  starttls;
	int		  timeout_ms;
	int		  size_limit;
	pthread_mutex_t	  mu;		/* guards the two below */
	int64_t		  quiet_until;	/* not asked before (clock_ms) */
	int		  down;		/* last attempt failed */
};

struct ldapdir {
	struct ldapsrv	*srv;
	int		 nsrv;
	int		 backoff_ms;
};

static const char *const cert_attrs[] = {
	"userSMIMECertificate", "userCertificate;binary", NULL
};


/* ---- configuration ---- */

/* dupnull - a copy of s, NULL for "" */
static char *
dupnull(const char *s)
{
	return s == NULL || *s == '\0' ? NULL : strdup(s);
}

/* read_password - the first line of a password file */
static int
read_password(struct ldapsrv *s, const char *path, struct kmerr *err)
{
	char buf[512];
	FILE *f;
	size_t n;

	if ((f = fopen(path, "r")) == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "directory %s: password_file %s: %s", s->uri, path,
		    strerror(errno)), -1;
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = '\0';
	fclose(f);
	n = strcspn(buf, "\r\n");
	buf[n] = '\0';
	s->password = strdup(buf);
	s->pwlen = n;
	OPENSSL_cleanse(buf, sizeof(buf));
	if (s->password == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "out of memory"), -1;
	return 0;
}

/* check_uri - an ldap:// or ldaps:// URL libldap can parse */
static int
check_uri(const struct conf_ldap *c, struct kmerr *err)
{
	LDAPURLDesc *u = NULL;
	int tls;

	if (ldap_url_parse(c->uri, &u) != LDAP_URL_SUCCESS)
		return kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "directory.ldap: uri \"%s\" is not an LDAP URL", c->uri),
		    -1;
	tls = strcasecmp(u->lud_scheme, "ldaps") == 0;
	if (!tls && strcasecmp(u->lud_scheme, "ldap") != 0) {
		ldap_free_urldesc(u);
		return kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "directory.ldap: uri \"%s\": not ldap:// or ldaps://",
		    c->uri), -1;
	}
	ldap_free_urldesc(u);
	if (tls && c->starttls)
		return kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "directory.ldap: uri \"%s\": starttls on ldaps://",
		    c->uri), -1;
	return 0;
}

/* srv_init - one directory of the configuration */
static int
srv_init(struct ldapsrv *s, const struct conf_ldap *c, struct kmerr *err)
{
	if (check_uri(c, err) == -1)
		return -1;
	pthread_mutex_init(&s->mu, NULL);
	if ((s->domains = calloc((size_t)c->ndomains + 1,
	    sizeof(*s->domains))) == NULL)
		goto nomem;
	for (int i = 0; i < c->ndomains; i++) {
		if ((s->domains[i] = strdup(c->domains[i])) == NULL)
			goto nomem;
		s->ndomains++;
	}
	s->uri = strdup(c->uri);
	s->base = strdup(c->base);
	s->bind_dn = dupnull(c->bind_dn);
	s->ca_file = dupnull(c->ca_file);
	if (s->uri == NULL || s->base == NULL ||
	    (c->bind_dn[0] != '\0' && s->bind_dn == NULL) ||
	    (c->ca_file[0] != '\0' && s->ca_file == NULL))
		goto nomem;
	s->starttls = c->starttls;
	s->timeout_ms = c->timeout_ms;
	s->size_limit = c->size_limit;
	if (c->password_file[0] != '\0')
		return read_password(s, c->password_file, err);
	return 0;
nomem:
	return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory"), -1;
}

/* srv_fini - free one directory */
static void
srv_fini(struct ldapsrv *s)
{
	for (int i = 0; i < s->ndomains; i++)
		free(s->domains[i]);
	free(s->domains);
	free(s->uri);
	free(s->base);
	free(s->bind_dn);
	free(s->ca_file);
	if (s->password != NULL) {
		OPENSSL_cleanse(s->password, s->pwlen);
		free(s->password);
	}
	pthread_mutex_destroy(&s->mu);
}

/* ldapdir_new - the directories of the configuration */
struct ldapdir *
ldapdir_new(const struct kmilter_conf *conf, struct kmerr *err)
{
	struct ldapdir *ld;
	int v;

	if ((ld = calloc(1, sizeof(*ld))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return NULL;
	}
	if (conf == NULL || conf->nldap == 0)
		return ld;
	ld->backoff_ms = conf->dir_backoff_ms;
	/* libldap's global state, set up here once, not by racing threads */
	(void)ldap_get_option(NULL, LDAP_OPT_PROTOCOL_VERSION, &v);
	if ((ld->srv = calloc((size_t)conf->nldap, sizeof(*ld->srv))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return ldapdir_free(ld);
	}
	for (int i = 0; i < conf->nldap; i++) {
		if (srv_init(&ld->srv[i], &conf->ldap[i], err) == -1) {
			srv_fini(&ld->srv[i]);
			return ldapdir_free(ld);
		}
		ld->nsrv++;
	}
	return ld;
}

/* ldapdir_free - free the handle, wiping the passwords */
struct ldapdir *
ldapdir_free(struct ldapdir *ld)
{
	if (ld == NULL)
		return NULL;
	for (int i = 0; i < ld->nsrv; i++)
		srv_fini(&ld->srv[i]);
	free(ld->srv);
	free(ld);
	return NULL;
}

/* ldapdir_count - how many directories are configured */
int
ldapdir_count(const struct ldapdir *ld)
{
	return ld != NULL ? ld->nsrv : 0;
}


/* ---- values and certificates ---- */

/* ldapdir_escape - an RFC 4515 assertion value */
int
ldapdir_escape(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		if (strchr("*()\\", *p) != NULL || *p < 0x20 || *p == 0x7f) {
			if (o + 4 >= outlen)
				return -1;
			snprintf(out + o, outlen - o, "\\%02x", *p);
			o += 3;
		} else {
			if (o + 1 >= outlen)
				return -1;
			out[o++] = (char)*p;
		}
	}
	if (outlen == 0)
		return -1;
	out[o] = '\0';
	return 0;
}

/* parse_pkcs7 - the certificates of a whole-value PKCS#7 SignedData,
 * -1 when the value is not one */
static int
parse_pkcs7(const unsigned char *val, size_t len, STACK_OF(X509) *out)
{
	const unsigned char *p = val;
	STACK_OF(X509) *certs;
	PKCS7 *p7;
	int n = 0;

	p7 = d2i_PKCS7(NULL, &p, (long)len);
	if (p7 == NULL || p != val + len || !PKCS7_type_is_signed(p7) ||
	    p7->d.sign == NULL) {
		PKCS7_free(p7);
		return -1;
	}
	certs = p7->d.sign->cert;
	for (int i = 0; certs != NULL && i < sk_X509_num(certs); i++) {
		X509 *c = sk_X509_value(certs, i);

		if (sk_X509_num(out) >= LDAPDIR_CERTS_MAX)
			break;
		X509_up_ref(c);
		if (!sk_X509_push(out, c)) {
			X509_free(c);
			break;
		}
		n++;
	}
	PKCS7_free(p7);
	return n;
}

/* ldapdir_parse_value - the certificates of one attribute value */
int
ldapdir_parse_value(const unsigned char *val, size_t len,
    STACK_OF(X509) *out)
{
	const unsigned char *p = val;
	X509 *c;
	int n;

	if (val == NULL || len == 0 || len > LDAPDIR_VALUE_MAX)
		return -1;
	if ((c = d2i_X509(NULL, &p, (long)len)) != NULL && p == val + len) {
		if (sk_X509_num(out) >= LDAPDIR_CERTS_MAX ||
		    !sk_X509_push(out, c)) {
			X509_free(c);
			return 0;
		}
		return 1;
	}
	X509_free(c);
	ERR_clear_error();
	n = parse_pkcs7(val, len, out);
	ERR_clear_error();
	return n;
}

/* newer - whether a became valid after b */
static int
newer(X509 *a, X509 *b)
{
	return ASN1_TIME_compare(X509_get0_notBefore(a),
	    X509_get0_notBefore(b)) > 0;
}

/* ldapdir_pick - the usable certificate for addr with the newest
 * notBefore; the others are logged with the reason */
enum km_status
ldapdir_pick(STACK_OF(X509) *certs, const char *addr, const char *where,
    X509 **cert)
{
	X509 *best = NULL;
	struct kmerr e;
	char fp[100];

	*cert = NULL;
	for (int i = 0; i < sk_X509_num(certs); i++) {
		X509 *c = sk_X509_value(certs, i);

		kmerr_clear(&e);
		switch (keystore_cert_check(c, addr, &e)) {
		case KM_OK:
			if (best == NULL || newer(c, best))
				best = c;
			break;
		case KM_NOMEM:
			return KM_NOMEM;
		default:
			keymodel_cert_fingerprint(c, fp, sizeof(fp));
			log_warnx("ldapdir: %s: %s: certificate %.23s... "
			    "not used: %s", where, addr, fp, e.msg);
			break;
		}
	}
	if (best == NULL)
		return KM_PERMFAIL;
	X509_up_ref(best);
	*cert = best;
	return KM_OK;
}


/* ---- one directory ---- */

/* covers - whether the directory is for addr's domain */
static int
covers(const struct ldapsrv *s, const char *domain)
{
	size_t dl = strlen(domain);

	for (int i = 0; i < s->ndomains; i++) {
		const char *d = s->domains[i];
		size_t n = strlen(d);

		if (strcmp(d, "*") == 0 || strcasecmp(d, domain) == 0)
			return 1;
		if (d[0] == '.' && dl > n &&
		    strcasecmp(domain + dl - n, d) == 0)
			return 1;
	}
	return 0;
}

/* srv_may_ask - 1 unless the directory is in its back-off period; the
 * first thread after the period claims the attempt (the others keep
 * being told "not now" while it runs) */
static int
srv_may_ask(struct ldapsrv *s, int64_t *left)
{
	int64_t now = clock_ms();
	int ok;

	pthread_mutex_lock(&s->mu);
	ok = now >= s->quiet_until;
	*left = ok ? 0 : s->quiet_until - now;
	if (ok && s->down)
		s->quiet_until = now + 2 * (int64_t)s->timeout_ms + 1000;
	pthread_mutex_unlock(&s->mu);
	return ok;
}

/* srv_outcome - remember whether the directory answered */
static void
srv_outcome(struct ldapsrv *s, int answered, int backoff_ms,
    const char *why)
{
	int was;

	pthread_mutex_lock(&s->mu);
	was = s->down;
	s->down = !answered;
	s->quiet_until = answered ? 0 : clock_ms() + backoff_ms;
	pthread_mutex_unlock(&s->mu);
	if (!answered)
		log_warnx("ldapdir: %s: %s; not asked again for %d ms",
		    s->uri, why, backoff_ms);
	else if (was)
		log_info("ldapdir: %s: answers again", s->uri);
}

/* set_timeouts - what is left of the lookup's time, for the next step;
 * 0 when none is */
static int
set_timeouts(LDAP *ld, int64_t deadline, struct timeval *tv)
{
	int64_t left = deadline - clock_ms();

	if (left <= 0)
		return 0;
	tv->tv_sec = (time_t)(left / 1000);
	tv->tv_usec = (suseconds_t)(left % 1000) * 1000;
	(void)ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, tv);
	(void)ldap_set_option(ld, LDAP_OPT_TIMEOUT, tv);
	return 1;
}

/* srv_open - a handle for the directory, TLS options set */
static int
srv_open(const struct ldapsrv *s, LDAP **out)
{
	int v3 = LDAP_VERSION3, demand = LDAP_OPT_X_TLS_DEMAND, zero = 0;
	int rc;
	LDAP *ld = NULL;

	if ((rc = ldap_initialize(&ld, s->uri)) != LDAP_SUCCESS)
		return rc;
	(void)ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
	(void)ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	/* libldap waits for a TLS handshake with the network timeout only
	 * on an asynchronous connection; otherwise it spins without one */
	(void)ldap_set_option(ld, LDAP_OPT_CONNECT_ASYNC, LDAP_OPT_ON);
	(void)ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
	if (s->ca_file != NULL)
		(void)ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE,
		    s->ca_file);
	if ((rc = ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &zero)) !=
	    LDAP_OPT_SUCCESS) {
		ldap_unbind_ext_s(ld, NULL, NULL);
		return LDAP_LOCAL_ERROR;
	}
	*out = ld;
	return LDAP_SUCCESS;
}

/* srv_connect - StartTLS and bind as configured, within the deadline */
static int
srv_connect(const struct ldapsrv *s, LDAP *ld, int64_t deadline,
    const char **step)
{
	struct berval cred;
	struct timeval tv;
	int rc;

	*step = "starttls";
	if (s->starttls) {
		if (!set_timeouts(ld, deadline, &tv))
			return LDAP_TIMEOUT;
		if ((rc = ldap_start_tls_s(ld, NULL, NULL)) != LDAP_SUCCESS)
			return rc;
	}
	*step = "bind";
	if (s->bind_dn == NULL)
		return LDAP_SUCCESS;
	if (!set_timeouts(ld, deadline, &tv))
		return LDAP_TIMEOUT;
	cred.bv_val = s->password != NULL ? s->password : (char *)"";
	cred.bv_len = s->password != NULL ? s->pwlen : 0;
	return ldap_sasl_bind_s(ld, s->bind_dn, LDAP_SASL_SIMPLE, &cred,
	    NULL, NULL, NULL);
}

/* add_values - the certificates of one attribute of one entry */
static void
add_values(LDAP *ld, LDAPMessage *e, const char *attr, const char *dn,
    const char *where, STACK_OF(X509) *found, int *nvals)
{
	struct berval **vals;
	int n;

	if ((vals = ldap_get_values_len(ld, e, attr)) == NULL)
		return;
	for (int i = 0; vals[i] != NULL; i++) {
		if (sk_X509_num(found) >= LDAPDIR_CERTS_MAX ||
		    ++*nvals > LDAPDIR_VALUES_MAX)
			break;
		n = ldapdir_parse_value((const unsigned char *)
		    vals[i]->bv_val, vals[i]->bv_len, found);
		if (n <= 0)
			log_warnx("ldapdir: %s: %s value %d of \"%s\" "
			    "(%lu bytes) not used: %s", where, attr, i + 1,
			    dn, (unsigned long)vals[i]->bv_len, n == 0 ?
			    "no certificate in it" : "not a certificate "
			    "nor a certs-only PKCS#7");
	}
	ldap_value_free_len(vals);
}

/* is_cert_attr - whether an attribute returned is one of ours (a
 * directory may name userCertificate without ";binary") */
static int
is_cert_attr(const char *a)
{
	return strncasecmp(a, "userSMIMECertificate", 20) == 0 ||
	    strncasecmp(a, "userCertificate", 15) == 0;
}

/* collect - the certificates of every entry of a search result */
static int
collect(LDAP *ld, LDAPMessage *res, const char *where,
    STACK_OF(X509) *found)
{
	int nent = 0, nvals = 0;

	for (LDAPMessage *e = ldap_first_entry(ld, res); e != NULL;
	    e = ldap_next_entry(ld, e)) {
		BerElement *ber = NULL;
		char *dn = ldap_get_dn(ld, e);

		nent++;
		for (char *a = ldap_first_attribute(ld, e, &ber); a != NULL;
		    a = ldap_next_attribute(ld, e, ber)) {
			if (is_cert_attr(a))
				add_values(ld, e, a, dn != NULL ? dn : "?",
				    where, found, &nvals);
			ldap_memfree(a);
		}
		ber_free(ber, 0);
		ldap_memfree(dn);
	}
	if (nvals > LDAPDIR_VALUES_MAX || sk_X509_num(found) >=
	    LDAPDIR_CERTS_MAX)
		log_warnx("ldapdir: %s: more than %d values or %d "
		    "certificates: the rest not looked at", where,
		    LDAPDIR_VALUES_MAX, LDAPDIR_CERTS_MAX);
	return nent;
}

/* srv_search - ask one directory: LDAP_SUCCESS when it answered (found
 * holds what it had), else the libldap error and the step it failed at */
static int
srv_search(const struct ldapsrv *s, const char *filter,
    STACK_OF(X509) *found, const char **step)
{
	int64_t deadline = clock_ms() + s->timeout_ms;
	LDAPMessage *res = NULL;
	struct timeval tv;
	LDAP *ld = NULL;
	int rc, nent;

	*step = "connect";
	if ((rc = srv_open(s, &ld)) != LDAP_SUCCESS)
		return rc;
	if ((rc = srv_connect(s, ld, deadline, step)) != LDAP_SUCCESS)
		goto out;
	*step = "search";
	if (!set_timeouts(ld, deadline, &tv)) {
		rc = LDAP_TIMEOUT;
		goto out;
	}
	rc = ldap_search_ext_s(ld, s->base, LDAP_SCOPE_SUBTREE, filter,
	    (char **)cert_attrs, 0, NULL, NULL, &tv, s->size_limit, &res);
	if (rc == LDAP_SUCCESS || rc == LDAP_SIZELIMIT_EXCEEDED) {
		nent = collect(ld, res, s->uri, found);
		log_debug(1, "ldapdir: %s: %s: %d entries, %d certificates%s",
		    s->uri, filter, nent, sk_X509_num(found),
		    rc == LDAP_SIZELIMIT_EXCEEDED ? " (size limit)" : "");
		rc = LDAP_SUCCESS;
	} else if (rc == LDAP_NO_SUCH_OBJECT)
		rc = LDAP_SUCCESS;	/* no base: nobody there */
out:
	if (rc != LDAP_SUCCESS && clock_ms() >= deadline)
		rc = LDAP_TIMEOUT;	/* libldap says "can't contact" */
	ldap_msgfree(res);
	ldap_unbind_ext_s(ld, NULL, NULL);
	return rc;
}

/* srv_lookup - addr's certificate from one directory */
static enum km_status
srv_lookup(struct ldapdir *ldd, struct ldapsrv *s, const char *addr,
    const char *filter, X509 **cert, struct kmerr *err)
{
	struct cache_conn_guard guard;
	STACK_OF(X509) *found;
	const char *step;
	enum km_status st;
	int64_t left;
	int rc;

	if (!srv_may_ask(s, &left))
		return kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE,
		    "%s: did not answer, not asked for %lld ms more",
		    s->uri, (long long)left);
	if ((found = sk_X509_new_null()) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	/* libldap writes with write(2): a reset connection raises SIGPIPE */
	cache_conn_guard_begin(&guard);
	rc = srv_search(s, filter, found, &step);
	cache_conn_guard_end(&guard);
	if (rc != LDAP_SUCCESS) {
		char why[200];

		snprintf(why, sizeof(why), "%s: %s", step,
		    ldap_err2string(rc));
		srv_outcome(s, 0, ldd->backoff_ms, why);
		sk_X509_pop_free(found, X509_free);
		return kmerr_set(err, KM_TEMPFAIL, rc == LDAP_TIMEOUT ?
		    KMERR_TIMEOUT : KMERR_UNREACHABLE, "%s: %s", s->uri, why);
	}
	srv_outcome(s, 1, ldd->backoff_ms, NULL);
	st = ldapdir_pick(found, addr, s->uri, cert);
	sk_X509_pop_free(found, X509_free);
	if (st == KM_NOMEM)
		return kmerr_set(err, st, KMERR_NONE, "out of memory");
	if (st != KM_OK)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "%s: no usable certificate for %s", s->uri, addr);
	log_info("ldapdir: %s: certificate for %s found", s->uri, addr);
	return KM_OK;
}


/* ---- the lookup ---- */

/* ldapdir_lookup - addr's certificate from the directories of its domain */
enum km_status
ldapdir_lookup(struct ldapdir *ldd, const char *addr, X509 **cert,
    struct kmerr *err)
{
	char esc[LDAPDIR_FILTER_MAX], filter[LDAPDIR_FILTER_MAX + 16];
	const char *domain = strrchr(addr, '@');
	struct kmerr one, down;
	enum km_status st;

	*cert = NULL;
	kmerr_clear(&down);
	if (domain == NULL || ldapdir_escape(addr, esc, sizeof(esc)) == -1)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no directory lookup for \"%.100s\"", addr);
	snprintf(filter, sizeof(filter), "(mail=%s)", esc);
	for (int i = 0; ldd != NULL && i < ldd->nsrv; i++) {
		if (!covers(&ldd->srv[i], domain + 1))
			continue;
		kmerr_clear(&one);
		st = srv_lookup(ldd, &ldd->srv[i], addr, filter, cert, &one);
		if (st == KM_OK)
			return KM_OK;
		if (st == KM_NOMEM)
			return kmerr_set(err, st, KMERR_NONE, "%s", one.msg);
		if (st == KM_TEMPFAIL && down.status == KM_OK)
			down = one;
	}
	if (down.status != KM_OK)
		return kmerr_set(err, KM_TEMPFAIL, down.reason, "%s",
		    down.msg);
	return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
	    "no LDAP directory has a certificate for %s", addr);
}
