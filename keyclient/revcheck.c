/*
 * revcheck.c - revocation status of outside certificates: configured CRL
 * files, then OCSP (the responder in the certificate's AIA), then the
 * CRLs of its distribution points over http://; answers kept until their
 * nextUpdate.  See revcheck.h.
 */
#include <sys/stat.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/http.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "conf.h"
#include "keymodel_cert.h"
#include "log.h"
#include "revcheck.h"
#include "revcheck_cache.h"
#include "revcheck_parse.h"

#define REV_MAX_CRLS	64		/* CRLs kept (files and URLs) */
#define REV_MAX_DOWN	64		/* sources remembered as not answering */
#define REV_MAX_RESP	(10 << 20)	/* largest answer read (a big CRL) */

struct crlent {
	char		 src[512];	/* URL or file name */
	X509_CRL	*crl;
	time_t		 until;		/* keep until (URLs) */
	time_t		 mtime;		/* of the file (files) */
};

struct downent {
	char		 src[512];
	time_t		 until;
};

struct revcheck {
	int		 mode;		/* enum conf_revcheck */
	int		 timeout_s;
	int		 cache_ttl;
	int		 backoff_s;
	char		**files;
	int		 nfiles;
	struct revcache	*cache;
	pthread_mutex_t	 mtx;		/* crls, down */
	struct crlent	 crls[REV_MAX_CRLS];
	struct downent	 down[REV_MAX_DOWN];
	unsigned long	 ocsp_asked, crl_fetched;
};

/* one check: what was learned so far */
struct revjob {
	struct revcheck	*rv;
	X509		*cert;
	X509		*issuer;
	enum revstatus	 status;
	time_t		 until;
	int		 sources;	/* places that could have told */
	char		 why[320];	/* the answer, or the last failure */
};

/* revcheck_new - the revocation settings of the configuration */
struct revcheck *
revcheck_new(const struct kmilter_conf *conf, struct kmerr *err)
{
	struct revcheck *rv;

	if ((rv = calloc(1, sizeof(*rv))) == NULL)
		goto nomem;
	rv->mode = conf->rev_check;
	rv->timeout_s = (conf->rev_timeout_ms + 999) / 1000;
	rv->cache_ttl = conf->rev_cache_ttl;
	rv->backoff_s = (conf->rev_backoff_ms + 999) / 1000;
	pthread_mutex_init(&rv->mtx, NULL);
	if (conf->rev_ncrl_files > 0 && (rv->files = calloc(
	    (size_t)conf->rev_ncrl_files, sizeof(*rv->files))) == NULL) {
		revcheck_free(rv);
		goto nomem;
	}
	for (; rv->nfiles < conf->rev_ncrl_files; rv->nfiles++)
		if ((rv->files[rv->nfiles] = strdup(
		    conf->rev_crl_files[rv->nfiles])) == NULL) {
			revcheck_free(rv);
			goto nomem;
		}
	if ((rv->cache = revcache_new((size_t)conf->rev_cache_entries)) ==
	    NULL) {
		revcheck_free(rv);
		goto nomem;
	}
	return rv;
nomem:
	kmerr_set(err, KM_NOMEM, KMERR_NONE, "revocation: out of memory");
	return NULL;
}

/* revcheck_free - free the handle */
struct revcheck *
revcheck_free(struct revcheck *rv)
{
	if (rv == NULL)
		return NULL;
	for (int i = 0; i < REV_MAX_CRLS; i++)
		X509_CRL_free(rv->crls[i].crl);
	for (int i = 0; i < rv->nfiles; i++)
		free(rv->files[i]);
	free(rv->files);
	revcache_free(rv->cache);
	pthread_mutex_destroy(&rv->mtx);
	free(rv);
	return NULL;
}

/* revcheck_stats - OCSP requests sent and CRLs fetched or read */
void
revcheck_stats(struct revcheck *rv, unsigned long *ocsp, unsigned long *crl)
{
	pthread_mutex_lock(&rv->mtx);
	*ocsp = rv->ocsp_asked;
	*crl = rv->crl_fetched;
	pthread_mutex_unlock(&rv->mtx);
}

/* ---- sources that do not answer: asked again after the back-off ---- */

/* is_down - did src fail less than backoff ago? */
static int
is_down(struct revcheck *rv, const char *src)
{
	time_t now = time(NULL);
	int down = 0;

	pthread_mutex_lock(&rv->mtx);
	for (int i = 0; i < REV_MAX_DOWN; i++)
		if (rv->down[i].until > now &&
		    strcmp(rv->down[i].src, src) == 0)
			down = 1;
	pthread_mutex_unlock(&rv->mtx);
	return down;
}

/* mark_down - src failed: warn (once per back-off period) */
static void
mark_down(struct revcheck *rv, const char *src, const char *why)
{
	time_t now = time(NULL);
	struct downent *v = &rv->down[0];

	pthread_mutex_lock(&rv->mtx);
	for (int i = 0; i < REV_MAX_DOWN; i++) {
		if (strcmp(rv->down[i].src, src) == 0) {
			v = &rv->down[i];
			break;
		}
		if (rv->down[i].until < v->until)
			v = &rv->down[i];
	}
	snprintf(v->src, sizeof(v->src), "%s", src);
	v->until = now + rv->backoff_s;
	pthread_mutex_unlock(&rv->mtx);
	log_warnx("revocation: %s: %s (not asked again for %ds)", src, why,
	    rv->backoff_s);
}

/* ---- HTTP ---- */

/*
 * read_all - the body of an answer OpenSSL hands out as a stream (not
 * ASN.1-checked, so that garbage gets to the parser and a PEM CRL is
 * read), in a memory BIO; NULL (why set) past the deadline or the size
 * limit
 */
static BIO *
read_all(BIO *in, time_t deadline, char *why, size_t whylen)
{
	BIO *out;
	char buf[4096];
	size_t total = 0;
	int n;

	if (BIO_method_type(in) == BIO_TYPE_MEM) {
		BIO_up_ref(in);
		return in;
	}
	if ((out = BIO_new(BIO_s_mem())) == NULL)
		return NULL;
	for (;;) {
		if ((n = BIO_read(in, buf, sizeof(buf))) > 0) {
			if ((total += (size_t)n) > REV_MAX_RESP ||
			    BIO_write(out, buf, n) != n) {
				snprintf(why, whylen, "answer larger than %d "
				    "bytes", REV_MAX_RESP);
				break;
			}
			continue;
		}
		if (!BIO_should_retry(in))
			return out;	/* end of the answer */
		if (BIO_wait(in, deadline, 50) <= 0) {
			snprintf(why, whylen, "answer not complete in time");
			break;
		}
	}
	BIO_free(out);
	return NULL;
}

/* http_fetch - GET url, or POST req to it; the answer in a memory BIO */
static BIO *
http_fetch(struct revcheck *rv, const char *url, BIO *req, char *why,
    size_t whylen)
{
	char *host = NULL, *port = NULL, *path = NULL;
	time_t deadline = time(NULL) + rv->timeout_s;
	unsigned long e;
	BIO *resp = NULL, *body = NULL;
	int ssl = 0;

	if (OSSL_HTTP_parse_url(url, &ssl, NULL, &host, &port, NULL, &path,
	    NULL, NULL) != 1 || ssl) {
		snprintf(why, whylen, "not an http:// URL");
		goto out;
	}
	/* proxy "" : never the environment's proxy */
	resp = OSSL_HTTP_transfer(NULL, host, port, path, 0, "", NULL,
	    NULL, NULL, NULL, NULL, 0, NULL,
	    req != NULL ? "application/ocsp-request" : NULL, req, NULL, 0,
	    REV_MAX_RESP, rv->timeout_s, 0);
	if (resp == NULL) {
		e = ERR_peek_last_error();
		snprintf(why, whylen, "no answer within %ds (%s)",
		    rv->timeout_s, e ? ERR_reason_error_string(e) : "?");
	} else
		body = read_all(resp, deadline, why, whylen);
out:
	BIO_free_all(resp);
	ERR_clear_error();
	OPENSSL_free(host);
	OPENSSL_free(port);
	OPENSSL_free(path);
	return body;
}

/* ---- CRLs ---- */

/* crl_cached - a reference to the kept CRL of src, if still good */
static X509_CRL *
crl_cached(struct revcheck *rv, const char *src, time_t mtime)
{
	time_t now = time(NULL);
	X509_CRL *crl = NULL;

	pthread_mutex_lock(&rv->mtx);
	for (int i = 0; i < REV_MAX_CRLS; i++) {
		struct crlent *c = &rv->crls[i];

		if (c->crl == NULL || strcmp(c->src, src) != 0)
			continue;
		if ((mtime != 0 && c->mtime == mtime) ||
		    (mtime == 0 && c->until > now)) {
			X509_CRL_up_ref(c->crl);
			crl = c->crl;
		}
		break;
	}
	pthread_mutex_unlock(&rv->mtx);
	return crl;
}

/* crl_keep - keep a reference to crl as src's */
static void
crl_keep(struct revcheck *rv, const char *src, X509_CRL *crl, time_t until,
    time_t mtime)
{
	struct crlent *v = &rv->crls[0];
	X509_CRL *old;

	pthread_mutex_lock(&rv->mtx);
	rv->crl_fetched++;
	for (int i = 0; i < REV_MAX_CRLS; i++) {
		if (strcmp(rv->crls[i].src, src) == 0) {
			v = &rv->crls[i];
			break;
		}
		if (rv->crls[i].until < v->until)
			v = &rv->crls[i];
	}
	old = v->crl;
	X509_CRL_up_ref(crl);
	snprintf(v->src, sizeof(v->src), "%s", src);
	v->crl = crl;
	v->until = until;
	v->mtime = mtime;
	pthread_mutex_unlock(&rv->mtx);
	X509_CRL_free(old);
}

/* crl_read - a CRL from bytes, kept; NULL (why set) when malformed */
static X509_CRL *
crl_read(struct revcheck *rv, const char *src, const unsigned char *p,
    size_t n, time_t mtime, char *why, size_t whylen)
{
	X509_CRL *crl = revparse_crl_load(p, n, why, whylen);
	time_t now = time(NULL), until, next;

	if (crl == NULL)
		return NULL;
	until = now + rv->cache_ttl;
	if ((next = keymodel_cert_time(X509_CRL_get0_nextUpdate(crl))) > now)
		until = next;
	crl_keep(rv, src, crl, until, mtime);
	return crl;
}

/* crl_from_file - the CRL in a configured file (read again when changed) */
static X509_CRL *
crl_from_file(struct revcheck *rv, const char *path, char *why,
    size_t whylen)
{
	unsigned char *buf = NULL;
	X509_CRL *crl;
	struct stat sb;
	size_t n = 0;
	FILE *f;

	if (stat(path, &sb) != 0) {
		snprintf(why, whylen, "cannot read the CRL file");
		return NULL;
	}
	if ((crl = crl_cached(rv, path, sb.st_mtime ? sb.st_mtime : 1)) !=
	    NULL)
		return crl;
	if (sb.st_size > REV_MAX_RESP || (f = fopen(path, "rb")) == NULL) {
		snprintf(why, whylen, "cannot read the CRL file");
		return NULL;
	}
	if ((buf = malloc((size_t)sb.st_size + 1)) != NULL)
		n = fread(buf, 1, (size_t)sb.st_size, f);
	fclose(f);
	crl = buf == NULL ? NULL : crl_read(rv, path, buf, n,
	    sb.st_mtime ? sb.st_mtime : 1, why, whylen);
	free(buf);
	return crl;
}

/* crl_from_url - the CRL at a distribution point, kept to nextUpdate */
static X509_CRL *
crl_from_url(struct revcheck *rv, const char *url, char *why, size_t whylen)
{
	X509_CRL *crl;
	char *p = NULL;
	long n;
	BIO *b;

	if ((crl = crl_cached(rv, url, 0)) != NULL)
		return crl;
	if ((b = http_fetch(rv, url, NULL, why, whylen)) == NULL)
		return NULL;
	n = BIO_get_mem_data(b, &p);
	crl = crl_read(rv, url, (unsigned char *)p, n > 0 ? (size_t)n : 0, 0,
	    why, whylen);
	BIO_free(b);
	return crl;
}

/* judge_crl - what crl (from src) says; 1 when it told */
static int
judge_crl(struct revjob *j, const char *src, X509_CRL *crl)
{
	char why[160];
	time_t until;
	enum revstatus rs;

	rs = revparse_crl(crl, j->cert, j->issuer, &until, why, sizeof(why));
	X509_CRL_free(crl);
	if (rs == REV_UNKNOWN) {
		if (!is_down(j->rv, src))
			mark_down(j->rv, src, why);
		snprintf(j->why, sizeof(j->why), "CRL %.100s: %s", src, why);
		return 0;
	}
	j->status = rs;
	j->until = until;
	snprintf(j->why, sizeof(j->why), "%s by CRL %.100s", why, src);
	return 1;
}

/* ask_files - the configured CRL files of the certificate's issuer */
static int
ask_files(struct revjob *j)
{
	struct revcheck *rv = j->rv;
	char why[160];
	X509_CRL *crl;

	for (int i = 0; i < rv->nfiles; i++) {
		if ((crl = crl_from_file(rv, rv->files[i], why,
		    sizeof(why))) == NULL) {
			if (!is_down(rv, rv->files[i]))
				mark_down(rv, rv->files[i], why);
			continue;
		}
		if (X509_NAME_cmp(X509_CRL_get_issuer(crl),
		    X509_get_issuer_name(j->cert)) != 0) {
			X509_CRL_free(crl);
			continue;
		}
		j->sources++;
		if (judge_crl(j, rv->files[i], crl))
			return 1;
	}
	return 0;
}

/* http_uri - the http:// URI of a GENERAL_NAME, or NULL */
static const char *
http_uri(GENERAL_NAME *gn)
{
	const char *u;

	if (gn == NULL || gn->type != GEN_URI)
		return NULL;
	u = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
	if (u == NULL || strncasecmp(u, "http://", 7) != 0 ||
	    strlen(u) != (size_t)ASN1_STRING_length(
	    gn->d.uniformResourceIdentifier))
		return NULL;
	return u;
}

/* ask_cdps - the CRLs of the certificate's distribution points */
static int
ask_cdps(struct revjob *j)
{
	STACK_OF(DIST_POINT) *dps;
	char why[160];
	int told = 0;

	dps = X509_get_ext_d2i(j->cert, NID_crl_distribution_points, NULL,
	    NULL);
	for (int i = 0; !told && i < sk_DIST_POINT_num(dps); i++) {
		DIST_POINT *dp = sk_DIST_POINT_value(dps, i);

		if (dp->distpoint == NULL || dp->distpoint->type != 0)
			continue;
		for (int k = 0; !told && k < sk_GENERAL_NAME_num(
		    dp->distpoint->name.fullname); k++) {
			const char *u = http_uri(sk_GENERAL_NAME_value(
			    dp->distpoint->name.fullname, k));
			X509_CRL *crl;

			if (u == NULL)
				continue;
			j->sources++;
			if (is_down(j->rv, u)) {
				snprintf(j->why, sizeof(j->why),
				    "CRL %.100s did not answer lately", u);
				continue;
			}
			if ((crl = crl_from_url(j->rv, u, why,
			    sizeof(why))) == NULL) {
				mark_down(j->rv, u, why);
				snprintf(j->why, sizeof(j->why), "CRL %.100s: "
				    "%s", u, why);
				continue;
			}
			told = judge_crl(j, u, crl);
		}
	}
	sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
	ERR_clear_error();
	return told;
}

/* ---- OCSP ---- */

/* ocsp_one - ask one responder; 1 when it told */
static int
ocsp_one(struct revjob *j, const char *url)
{
	OCSP_REQUEST *req = NULL;
	OCSP_CERTID *id = NULL, *rid;
	BIO *rb = NULL, *resp = NULL;
	char why[160] = "", *p = NULL;
	enum revstatus rs;
	time_t until = 0;
	long n;
	int told = 0;

	if ((id = OCSP_cert_to_id(NULL, j->cert, j->issuer)) == NULL ||
	    (rid = OCSP_CERTID_dup(id)) == NULL ||
	    (req = OCSP_REQUEST_new()) == NULL ||
	    OCSP_request_add0_id(req, rid) == NULL ||
	    (rb = BIO_new(BIO_s_mem())) == NULL ||
	    i2d_OCSP_REQUEST_bio(rb, req) != 1) {
		snprintf(j->why, sizeof(j->why), "cannot make an OCSP "
		    "request");
		goto out;
	}
	pthread_mutex_lock(&j->rv->mtx);
	j->rv->ocsp_asked++;
	pthread_mutex_unlock(&j->rv->mtx);
	if ((resp = http_fetch(j->rv, url, rb, why, sizeof(why))) == NULL)
		goto fail;
	n = BIO_get_mem_data(resp, &p);
	rs = revparse_ocsp((unsigned char *)p, n > 0 ? (size_t)n : 0, id,
	    j->issuer, &until, why, sizeof(why));
	if (rs == REV_UNKNOWN)
		goto fail;
	j->status = rs;
	j->until = until;
	snprintf(j->why, sizeof(j->why), "%s by OCSP %.100s", why, url);
	told = 1;
	goto out;
fail:
	mark_down(j->rv, url, why);
	snprintf(j->why, sizeof(j->why), "OCSP %.100s: %s", url, why);
out:
	BIO_free(resp);
	BIO_free(rb);
	OCSP_REQUEST_free(req);
	OCSP_CERTID_free(id);
	ERR_clear_error();
	return told;
}

/* ask_ocsp - the responders of the certificate's AIA */
static int
ask_ocsp(struct revjob *j)
{
	STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(j->cert);
	int told = 0;

	for (int i = 0; !told && i < sk_OPENSSL_STRING_num(urls); i++) {
		const char *u = sk_OPENSSL_STRING_value(urls, i);

		if (strncasecmp(u, "http://", 7) != 0)
			continue;
		j->sources++;
		if (is_down(j->rv, u)) {
			snprintf(j->why, sizeof(j->why), "OCSP %.100s did "
			    "not answer lately", u);
			continue;
		}
		told = ocsp_one(j, u);
	}
	X509_email_free(urls);
	return told;
}

/* ---- the check ---- */

/* find_issuer - cert's issuer, from the chain or the trust store */
static X509 *
find_issuer(X509 *cert, STACK_OF(X509) *chain, X509_STORE *trust)
{
	X509_STORE_CTX *ctx;
	X509 *iss = NULL;

	for (int i = 0; i < sk_X509_num(chain); i++) {
		X509 *c = sk_X509_value(chain, i);

		if (X509_cmp(c, cert) != 0 &&
		    X509_check_issued(c, cert) == X509_V_OK) {
			X509_up_ref(c);
			return c;
		}
	}
	if (trust != NULL && (ctx = X509_STORE_CTX_new()) != NULL) {
		if (X509_STORE_CTX_init(ctx, trust, cert, NULL) != 1 ||
		    X509_STORE_CTX_get1_issuer(&iss, ctx, cert) != 1)
			iss = NULL;
		X509_STORE_CTX_free(ctx);
	}
	ERR_clear_error();
	return iss;
}

/* cache_key - hex SHA-256 of the issuer's name and key and the serial */
static int
cache_key(X509 *cert, X509 *issuer, char *key, size_t keylen)
{
	unsigned char md[EVP_MAX_MD_SIZE], *der[3] = { NULL, NULL, NULL };
	int len[3], ok = 0;
	unsigned int mdlen = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	len[0] = i2d_X509_NAME(X509_get_issuer_name(cert), &der[0]);
	len[1] = i2d_PUBKEY(X509_get0_pubkey(issuer), &der[1]);
	len[2] = i2d_ASN1_INTEGER(X509_get0_serialNumber(cert), &der[2]);
	if (c != NULL && len[0] > 0 && len[1] > 0 && len[2] > 0 &&
	    EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(c, der[0], (size_t)len[0]) == 1 &&
	    EVP_DigestUpdate(c, der[1], (size_t)len[1]) == 1 &&
	    EVP_DigestUpdate(c, der[2], (size_t)len[2]) == 1 &&
	    EVP_DigestFinal_ex(c, md, &mdlen) == 1 && keylen > 2 * mdlen) {
		for (unsigned int i = 0; i < mdlen; i++)
			snprintf(key + 2 * i, 3, "%02x", md[i]);
		ok = 1;
	}
	for (int i = 0; i < 3; i++)
		OPENSSL_free(der[i]);
	EVP_MD_CTX_free(c);
	ERR_clear_error();
	return ok;
}

/* has_sources - does cert name an OCSP responder or a CRL place? */
static int
has_sources(X509 *cert)
{
	STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(cert);
	int n = sk_OPENSSL_STRING_num(urls) > 0;

	X509_email_free(urls);
	return n || X509_get_ext_by_NID(cert, NID_crl_distribution_points,
	    -1) >= 0;
}

/* subject_of - "CN=..., serial 0x..." for messages */
static void
subject_of(X509 *cert, char *buf, size_t len)
{
	char *s = X509_NAME_oneline(X509_get_subject_name(cert), NULL, 0);
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;

	snprintf(buf, len, "%.120s serial %s", s ? s : "?", hex ? hex : "?");
	OPENSSL_free(s);
	OPENSSL_free(hex);
	BN_free(bn);
}

/* verdict - the status as km_status, per the configured mode */
static enum km_status
verdict(struct revcheck *rv, X509 *cert, enum revstatus rs, const char *why,
    struct kmerr *err)
{
	char subj[200];

	if (rs == REV_GOOD)
		return KM_OK;
	subject_of(cert, subj, sizeof(subj));
	if (rs == REV_REVOKED)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "certificate %s %s", subj, why);
	if (rv->mode == REVCHECK_HARD)
		return kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE,
		    "revocation status unknown of certificate %s: %s", subj,
		    why);
	kmerr_set(err, KM_OK, KMERR_UNREACHABLE, "revocation status unknown "
	    "of certificate %s (soft-fail, used): %s", subj, why);
	return KM_OK;
}

/* ask - files, then OCSP, then distribution points */
static void
ask(struct revjob *j)
{
	if (ask_files(j) || ask_ocsp(j) || ask_cdps(j))
		return;
	j->status = REV_UNKNOWN;
}

/* revcheck_cert - KM_OK unless cert is known to be revoked */
enum km_status
revcheck_cert(struct revcheck *rv, X509 *cert, STACK_OF(X509) *chain,
    X509_STORE *trust, struct kmerr *err)
{
	struct revanswer ans;
	struct revjob j;
	char key[80] = "";
	time_t now = time(NULL);

	kmerr_clear(err);
	if (rv == NULL || rv->mode == REVCHECK_OFF || cert == NULL ||
	    X509_check_issued(cert, cert) == X509_V_OK)
		return KM_OK;	/* off, or self-signed: nobody to ask */
	memset(&j, 0, sizeof(j));
	j.rv = rv;
	j.cert = cert;
	j.status = REV_UNKNOWN;
	if ((j.issuer = find_issuer(cert, chain, trust)) == NULL) {
		if (!has_sources(cert) && rv->nfiles == 0)
			return KM_OK;
		return verdict(rv, cert, REV_UNKNOWN, "its issuer's "
		    "certificate is not known (policy.inbound.ca_file)", err);
	}
	if (cache_key(cert, j.issuer, key, sizeof(key)) &&
	    revcache_get(rv->cache, key, now, &ans)) {
		X509_free(j.issuer);
		return verdict(rv, cert, ans.status, ans.why, err);
	}
	ask(&j);
	X509_free(j.issuer);
	if (j.status == REV_UNKNOWN && j.sources == 0) {
		log_debug(1, "revocation: no CRL or OCSP responder for "
		    "this certificate: not revoked as far as we can tell");
		return KM_OK;
	}
	if (j.status != REV_UNKNOWN && key[0] != '\0') {
		memset(&ans, 0, sizeof(ans));
		ans.status = j.status;
		snprintf(ans.why, sizeof(ans.why), "%s", j.why);
		if (j.until <= now)
			j.until = now + rv->cache_ttl;
		revcache_put(rv->cache, key, &ans, j.until);
	}
	return verdict(rv, cert, j.status, j.why, err);
}
