/*
 * revcheck_parse.c - what an OCSP response or a CRL says about one
 * certificate.  See revcheck_parse.h.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "keymodel_cert.h"
#include "revcheck_parse.h"

#define SKEW	300	/* seconds of clock difference allowed */

/* revoked_why - "revoked at TIME (reason)" */
static void
revoked_why(const ASN1_TIME *when, int reason, char *why, size_t whylen)
{
	char ts[40] = "?";
	time_t t = keymodel_cert_time(when);
	struct tm tm;

	if (t != 0 && gmtime_r(&t, &tm) != NULL)
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(why, whylen, "revoked at %s (%s)", ts, reason >= 0 ?
	    OCSP_crl_reason_str(reason) : "no reason given");
}

/* issuer_store - a store that trusts only issuer, for the responder */
static X509_STORE *
issuer_store(X509 *issuer)
{
	X509_STORE *st = X509_STORE_new();

	if (st == NULL)
		return NULL;
	if (X509_STORE_add_cert(st, issuer) != 1) {
		X509_STORE_free(st);
		return NULL;
	}
	/* the issuer may be an intermediate: it is the anchor here */
	X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
	return st;
}

/* basic_of - the verified basic response inside a DER OCSP response */
static OCSP_BASICRESP *
basic_of(const unsigned char *der, size_t len, X509 *issuer, char *why,
    size_t whylen)
{
	const unsigned char *p = der;
	OCSP_RESPONSE *resp;
	OCSP_BASICRESP *bs = NULL;
	X509_STORE *st = NULL;
	int rs;

	resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
	if (resp == NULL || p != der + len) {
		snprintf(why, whylen, "malformed OCSP response (%zu bytes)",
		    len);
		goto out;
	}
	if ((rs = OCSP_response_status(resp)) !=
	    OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		snprintf(why, whylen, "OCSP responder said %s",
		    OCSP_response_status_str(rs));
		goto out;
	}
	if ((bs = OCSP_response_get1_basic(resp)) == NULL) {
		snprintf(why, whylen, "malformed OCSP response (no basic "
		    "response)");
		goto out;
	}
	if ((st = issuer_store(issuer)) == NULL ||
	    OCSP_basic_verify(bs, NULL, st, 0) != 1) {
		snprintf(why, whylen, "OCSP response not signed by the "
		    "issuer or its delegated responder");
		OCSP_BASICRESP_free(bs);
		bs = NULL;
	}
out:
	X509_STORE_free(st);
	OCSP_RESPONSE_free(resp);
	ERR_clear_error();
	return bs;
}

/* revparse_ocsp - what a DER OCSP response says about id */
enum revstatus
revparse_ocsp(const unsigned char *der, size_t len, OCSP_CERTID *id,
    X509 *issuer, time_t *until, char *why, size_t whylen)
{
	ASN1_GENERALIZEDTIME *rev = NULL, *thisupd = NULL, *nextupd = NULL;
	OCSP_BASICRESP *bs;
	enum revstatus rs = REV_UNKNOWN;
	int status, reason = -1;

	*until = 0;
	if ((bs = basic_of(der, len, issuer, why, whylen)) == NULL)
		return REV_UNKNOWN;
	if (OCSP_resp_find_status(bs, id, &status, &reason, &rev, &thisupd,
	    &nextupd) != 1)
		snprintf(why, whylen, "OCSP response without the status of "
		    "the certificate asked about");
	else if (OCSP_check_validity(thisupd, nextupd, SKEW, -1) != 1)
		snprintf(why, whylen, "OCSP response not current (expired "
		    "or from the future)");
	else if (status == V_OCSP_CERTSTATUS_GOOD) {
		rs = REV_GOOD;
		*until = keymodel_cert_time(nextupd);
		snprintf(why, whylen, "good");
	} else if (status == V_OCSP_CERTSTATUS_REVOKED) {
		rs = REV_REVOKED;
		*until = keymodel_cert_time(nextupd);
		revoked_why(rev, reason, why, whylen);
	} else
		snprintf(why, whylen, "OCSP responder does not know the "
		    "certificate");
	OCSP_BASICRESP_free(bs);
	ERR_clear_error();
	return rs;
}

/* revparse_crl_load - a CRL in DER or PEM */
X509_CRL *
revparse_crl_load(const unsigned char *buf, size_t len, char *why,
    size_t whylen)
{
	const unsigned char *p = buf;
	X509_CRL *crl;
	BIO *b;

	if ((crl = d2i_X509_CRL(NULL, &p, (long)len)) != NULL &&
	    p == buf + len)
		goto out;
	X509_CRL_free(crl);
	crl = NULL;
	if ((b = BIO_new_mem_buf(buf, (int)len)) != NULL) {
		crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL);
		BIO_free(b);
	}
	if (crl == NULL)
		snprintf(why, whylen, "malformed CRL (%zu bytes, neither DER "
		    "nor PEM)", len);
out:
	ERR_clear_error();
	return crl;
}

/* revparse_crl - is cert on issuer's crl? */
enum revstatus
revparse_crl(X509_CRL *crl, X509 *cert, X509 *issuer, time_t *until,
    char *why, size_t whylen)
{
	X509_REVOKED *r = NULL;
	EVP_PKEY *pk = X509_get0_pubkey(issuer);
	const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
	time_t now = time(NULL);
	enum revstatus rs = REV_UNKNOWN;
	int reason = -1, crit = 0;
	ASN1_ENUMERATED *re;

	*until = keymodel_cert_time(next);
	if (X509_NAME_cmp(X509_CRL_get_issuer(crl),
	    X509_get_issuer_name(cert)) != 0)
		snprintf(why, whylen, "CRL of another issuer");
	else if (pk == NULL || X509_CRL_verify(crl, pk) != 1)
		snprintf(why, whylen, "CRL signature does not verify with "
		    "the issuer's key");
	else if (keymodel_cert_time(X509_CRL_get0_lastUpdate(crl)) > now + SKEW)
		snprintf(why, whylen, "CRL from the future");
	else if (next != NULL && *until + SKEW < now)
		snprintf(why, whylen, "CRL expired (nextUpdate passed)");
	else if (X509_CRL_get0_by_cert(crl, &r, cert) == 1 && r != NULL) {
		rs = REV_REVOKED;
		if ((re = X509_REVOKED_get_ext_d2i(r, NID_crl_reason, &crit,
		    NULL)) != NULL) {
			reason = (int)ASN1_ENUMERATED_get(re);
			ASN1_ENUMERATED_free(re);
		}
		revoked_why(X509_REVOKED_get0_revocationDate(r), reason, why,
		    whylen);
	} else {
		rs = REV_GOOD;
		snprintf(why, whylen, "good");
	}
	ERR_clear_error();
	return rs;
}
