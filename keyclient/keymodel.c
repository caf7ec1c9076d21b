/*
 * keymodel.c - kmilter's key model in KMIP: object naming, XOR-split
 * private keys, certificate issuance, lookups and administration.
 * See keymodel.h and docs/keymodel.md.
 */
#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "conf.h"
#include "keymodel.h"
#include "kmip.h"
#include "log.h"
#include "pkcs8pw.h"
#include "secmem.h"

#define GROUP_PREFIX	"kmilter:gen:"

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

static void seterr(char *, size_t, const char *, ...) KM_PRINTF(3, 4);

/* seterr - format one error line into errstr, if there is one */
static void
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
static enum km_status
ossl_fail(enum km_status st, char *errstr, size_t errlen, const char *what)
{
	log_openssl(what);
	seterr(errstr, errlen, "%s failed", what);
	return st;
}

/* --- pure parts ------------------------------------------------------ */

/* keymodel_addr_normalize - check an address; keep the local part, lower-case the domain */
enum km_status
keymodel_addr_normalize(const char *addr, char *out, size_t outlen,
    char *errstr, size_t errlen)
{
	const char *at = NULL, *p;
	size_t len, i;
	int label = 0;

	if (addr == NULL || *addr == '\0') {
		seterr(errstr, errlen, "empty address");
		return KM_PROTO;
	}
	len = strlen(addr);
	if (len > KEYMODEL_ADDR_MAX) {
		seterr(errstr, errlen, "address too long (%zu characters, at "
		    "most %d)", len, KEYMODEL_ADDR_MAX);
		return KM_PROTO;
	}
	for (p = addr; *p != '\0'; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch <= 0x20 || ch >= 0x7f) {
			seterr(errstr, errlen, "malformed address: space, "
			    "control or non-ASCII character at offset %td",
			    p - addr);
			return KM_PROTO;
		}
		if (strchr("()<>[]\\,;:\"", ch) != NULL) {
			seterr(errstr, errlen, "malformed address: character "
			    "'%c' not allowed", ch);
			return KM_PROTO;
		}
		if (ch == '@') {
			if (at != NULL) {
				seterr(errstr, errlen, "malformed address: "
				    "more than one '@'");
				return KM_PROTO;
			}
			at = p;
		}
	}
	if (at == NULL) {
		seterr(errstr, errlen, "malformed address: no '@'");
		return KM_PROTO;
	}
	if (at == addr) {
		seterr(errstr, errlen, "malformed address: empty local part");
		return KM_PROTO;
	}
	if (at[1] == '\0') {
		seterr(errstr, errlen, "malformed address: empty domain");
		return KM_PROTO;
	}
	for (p = at + 1; ; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || p[-1] == '-') {
				seterr(errstr, errlen, "malformed address: "
				    "bad domain label");
				return KM_PROTO;
			}
			if (*p == '\0')
				break;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)*p) && *p != '-') {
			seterr(errstr, errlen, "malformed address: character "
			    "'%c' not allowed in the domain", *p);
			return KM_PROTO;
		}
		if (label == 0 && *p == '-') {
			seterr(errstr, errlen, "malformed address: bad "
			    "domain label");
			return KM_PROTO;
		}
		label++;
	}
	if (outlen < len + 1) {
		seterr(errstr, errlen, "address buffer too small");
		return KM_PROTO;
	}
	for (i = 0; i < len; i++)
		out[i] = addr + i > at ? (char)tolower((unsigned char)addr[i]) :
		    addr[i];
	out[len] = '\0';
	return KM_OK;
}

/* keymodel_object_name - the KMIP Name of an address's objects */
enum km_status
keymodel_object_name(const char *addr, char *out, size_t outlen,
    char *errstr, size_t errlen)
{
	char norm[KEYMODEL_ADDR_MAX + 1];
	enum km_status st;

	if ((st = keymodel_addr_normalize(addr, norm, sizeof(norm), errstr,
	    errlen)) != KM_OK)
		return st;
	if ((size_t)snprintf(out, outlen, "%s%s", KEYMODEL_NAME_PREFIX,
	    norm) >= outlen) {
		seterr(errstr, errlen, "name buffer too small");
		return KM_PROTO;
	}
	/* lookups fold the whole address, as seal_name_hash() does */
	for (; *out != '\0'; out++)
		*out = (char)tolower((unsigned char)*out);
	return KM_OK;
}

/* keymodel_group_format - the Object Group of a generation's object */
enum km_status
keymodel_group_format(enum keymodel_kind kind, int generation, int enhanced,
    char *out, size_t outlen)
{
	int n;

	if (generation < 1 || generation > KEYMODEL_GEN_MAX)
		return KM_PROTO;
	if (kind == KEYMODEL_CERT)
		n = snprintf(out, outlen, GROUP_PREFIX "%d", generation);
	else
		n = snprintf(out, outlen, GROUP_PREFIX "%d:%s", generation,
		    enhanced ? "enhanced" : "default");
	return n < 0 || (size_t)n >= outlen ? KM_PROTO : KM_OK;
}

/* keymodel_group_parse - read kind, generation and level from an Object Group */
enum km_status
keymodel_group_parse(const char *group, enum keymodel_kind *kind,
    int *generation, int *enhanced)
{
	const char *p;
	long g = 0;

	if (group == NULL || strncmp(group, GROUP_PREFIX,
	    sizeof(GROUP_PREFIX) - 1) != 0)
		return KM_PROTO;
	p = group + sizeof(GROUP_PREFIX) - 1;
	if (*p < '1' || *p > '9')
		return KM_PROTO;
	while (isdigit((unsigned char)*p)) {
		g = g * 10 + (*p++ - '0');
		if (g > KEYMODEL_GEN_MAX)
			return KM_PROTO;
	}
	*generation = (int)g;
	*enhanced = 0;
	if (*p == '\0') {
		*kind = KEYMODEL_CERT;
		return KM_OK;
	}
	*kind = KEYMODEL_SHARE;
	if (strcmp(p, ":default") == 0)
		return KM_OK;
	if (strcmp(p, ":enhanced") == 0) {
		*enhanced = 1;
		return KM_OK;
	}
	return KM_PROTO;
}

/* keymodel_split - split key into a random share A and B = key xor A */
enum km_status
keymodel_split(const unsigned char *key, size_t len, unsigned char **share_a,
    unsigned char **share_b, char *errstr, size_t errlen)
{
	unsigned char *a, *b;
	size_t i;

	*share_a = *share_b = NULL;
	if (key == NULL || len == 0 || len > INT32_MAX) {
		seterr(errstr, errlen, "nothing to split");
		return KM_PROTO;
	}
	a = secmem_alloc(len);
	b = secmem_alloc(len);
	if (a == NULL || b == NULL) {
		secmem_free(a, len);
		secmem_free(b, len);
		seterr(errstr, errlen, "out of memory");
		return KM_NOMEM;
	}
	if (RAND_priv_bytes(a, (int)len) != 1) {
		secmem_free(a, len);
		secmem_free(b, len);
		return ossl_fail(KM_TEMPFAIL, errstr, errlen, "RAND_priv_bytes");
	}
	for (i = 0; i < len; i++)
		b[i] = key[i] ^ a[i];
	*share_a = a;
	*share_b = b;
	return KM_OK;
}

/* keymodel_combine - xor two shares of equal length back into the key */
enum km_status
keymodel_combine(const unsigned char *a, size_t alen, const unsigned char *b,
    size_t blen, unsigned char **out, size_t *outlen, char *errstr,
    size_t errlen)
{
	unsigned char *k;
	size_t i;

	*out = NULL;
	*outlen = 0;
	if (a == NULL || b == NULL || alen == 0 || alen != blen) {
		seterr(errstr, errlen, "key shares differ in length (%zu and "
		    "%zu bytes)", alen, blen);
		return KM_PROTO;
	}
	if ((k = secmem_alloc(alen)) == NULL) {
		seterr(errstr, errlen, "out of memory");
		return KM_NOMEM;
	}
	for (i = 0; i < alen; i++)
		k[i] = a[i] ^ b[i];
	*out = k;
	*outlen = alen;
	return KM_OK;
}

/* keymodel_check_pair - is key the private half of cert's public key? */
enum km_status
keymodel_check_pair(X509 *cert, EVP_PKEY *key, char *errstr, size_t errlen)
{
	EVP_PKEY *pub;

	if (cert == NULL || key == NULL ||
	    (pub = X509_get0_pubkey(cert)) == NULL) {
		ERR_clear_error();
		seterr(errstr, errlen, "no key or certificate to compare");
		return KM_PROTO;
	}
	if (EVP_PKEY_eq(pub, key) != 1) {
		ERR_clear_error();
		seterr(errstr, errlen, "private key does not match the "
		    "certificate");
		return KM_PROTO;
	}
	return KM_OK;
}

/* keymodel_keygen - generate a key pair of a named type */
enum km_status
keymodel_keygen(const char *type, EVP_PKEY **out, char *errstr,
    size_t errlen)
{
	EVP_PKEY *k = NULL;

	*out = NULL;
	if (type == NULL || strcmp(type, "rsa2048") == 0)
		k = EVP_RSA_gen(2048);
	else if (strcmp(type, "rsa3072") == 0)
		k = EVP_RSA_gen(3072);
	else if (strcmp(type, "ec-p256") == 0)
		k = EVP_EC_gen("P-256");
	else {
		seterr(errstr, errlen, "unknown key type \"%.32s\" (rsa2048, "
		    "rsa3072 or ec-p256)", type);
		return KM_PROTO;
	}
	if (k == NULL)
		return ossl_fail(KM_NOMEM, errstr, errlen, "key generation");
	*out = k;
	return KM_OK;
}

/* add_ext - add one extension given in OpenSSL's config syntax */
static int
add_ext(X509 *x, X509 *ca, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL)
		return 0;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok;
}

/* keymodel_issue_cert - have the organization's CA certify key for addr */
enum km_status
keymodel_issue_cert(EVP_PKEY *key, const char *addr, X509 *ca_cert,
    EVP_PKEY *ca_key, int days, enum keymodel_usage usage, X509 **out,
    char *errstr, size_t errlen)
{
	char norm[KEYMODEL_ADDR_MAX + 1], san[KEYMODEL_ADDR_MAX + 8];
	unsigned char rnd[20];
	const char *ku;
	X509 *x = NULL;
	X509_NAME *subj;
	BIGNUM *bn = NULL;
	enum km_status st;

	*out = NULL;
	if ((st = keymodel_addr_normalize(addr, norm, sizeof(norm), errstr,
	    errlen)) != KM_OK)
		return st;
	if (key == NULL || ca_cert == NULL || ca_key == NULL) {
		seterr(errstr, errlen, "no key or CA to issue a certificate");
		return KM_PROTO;
	}
	if (X509_check_private_key(ca_cert, ca_key) != 1) {
		ERR_clear_error();
		seterr(errstr, errlen, "the organization CA key does not "
		    "match the CA certificate");
		return KM_PERMFAIL;
	}
	if (days <= 0)
		days = usage == KEYMODEL_USE_SIGN ? KEYMODEL_DAYS_SIGN :
		    KEYMODEL_DAYS_ENC;
	if (usage == KEYMODEL_USE_SIGN)
		ku = "critical,digitalSignature,nonRepudiation";
	else if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC)
		ku = "critical,keyAgreement";
	else
		ku = "critical,keyEncipherment";
	snprintf(san, sizeof(san), "email:%s", norm);
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return ossl_fail(KM_TEMPFAIL, errstr, errlen, "RAND_bytes");
	rnd[0] = (rnd[0] & 0x7f) | 0x40;	/* positive, 159 bits */
	if ((x = X509_new()) == NULL ||
	    (bn = BN_bin2bn(rnd, sizeof(rnd), NULL)) == NULL ||
	    X509_set_version(x, X509_VERSION_3) != 1 ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -300) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) == NULL ||
	    X509_set_issuer_name(x, X509_get_subject_name(ca_cert)) != 1 ||
	    X509_set_pubkey(x, key) != 1) {
		st = ossl_fail(KM_NOMEM, errstr, errlen, "certificate setup");
		goto fail;
	}
	subj = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC,
	    (const unsigned char *)norm, -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_txt(subj, "emailAddress", MBSTRING_ASC,
	    (const unsigned char *)norm, -1, -1, 0) != 1 ||
	    !add_ext(x, ca_cert, NID_basic_constraints, "critical,CA:FALSE") ||
	    !add_ext(x, ca_cert, NID_key_usage, ku) ||
	    !add_ext(x, ca_cert, NID_ext_key_usage, "emailProtection") ||
	    !add_ext(x, ca_cert, NID_subject_alt_name, san) ||
	    !add_ext(x, ca_cert, NID_subject_key_identifier, "hash") ||
	    !add_ext(x, ca_cert, NID_authority_key_identifier,
	    "keyid,issuer")) {
		st = ossl_fail(KM_PROTO, errstr, errlen, "certificate "
		    "extensions");
		goto fail;
	}
	if (X509_sign(x, ca_key, EVP_sha256()) <= 0) {
		st = ossl_fail(KM_PERMFAIL, errstr, errlen, "certificate "
		    "signature");
		goto fail;
	}
	BN_free(bn);
	*out = x;
	return KM_OK;
fail:
	BN_free(bn);
	X509_free(x);
	return st;
}

/* keymodel_cert_fingerprint - "AB:CD:..." SHA-256 of a certificate */
void
keymodel_cert_fingerprint(X509 *cert, char *out, size_t outlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;
	size_t o = 0;

	if (outlen == 0)
		return;
	out[0] = '\0';
	if (cert == NULL || X509_digest(cert, EVP_sha256(), md, &n) != 1)
		return;
	for (i = 0; i < n && o + 4 <= outlen; i++)
		o += (size_t)snprintf(out + o, outlen - o, "%s%02X",
		    i ? ":" : "", md[i]);
}

/* key_type_name - "RSA-2048", "EC-prime256v1" */
static void
key_type_name(EVP_PKEY *k, char *out, size_t outlen)
{
	char grp[24];

	if (k == NULL) {
		snprintf(out, outlen, "?");
	} else if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC &&
	    EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, grp,
	    sizeof(grp), NULL) == 1) {
		snprintf(out, outlen, "EC-%s", grp);
	} else {
		snprintf(out, outlen, "%s-%d",
		    EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA ? "RSA" :
		    OBJ_nid2sn(EVP_PKEY_get_base_id(k)), EVP_PKEY_get_bits(k));
	}
	ERR_clear_error();
}

/* keytype_of - the keymodel_keygen() type of a certificate's key, or NULL */
static const char *
keytype_of(X509 *cert)
{
	EVP_PKEY *k = X509_get0_pubkey(cert);

	if (k == NULL)
		return NULL;
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC)
		return "ec-p256";
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA)
		return EVP_PKEY_get_bits(k) >= 3072 ? "rsa3072" : "rsa2048";
	return NULL;
}

/* pkey_to_der - PKCS#8 PrivateKeyInfo DER of a key, in secmem */
static enum km_status
pkey_to_der(EVP_PKEY *key, unsigned char **out, size_t *outlen,
    char *errstr, size_t errlen)
{
	PKCS8_PRIV_KEY_INFO *p8;
	unsigned char *buf, *p;
	int n;

	*out = NULL;
	*outlen = 0;
	if ((p8 = EVP_PKEY2PKCS8(key)) == NULL ||
	    (n = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL)) <= 0) {
		PKCS8_PRIV_KEY_INFO_free(p8);
		return ossl_fail(KM_PROTO, errstr, errlen, "PKCS#8 encoding");
	}
	if ((buf = secmem_alloc((size_t)n)) == NULL) {
		PKCS8_PRIV_KEY_INFO_free(p8);
		seterr(errstr, errlen, "out of memory");
		return KM_NOMEM;
	}
	p = buf;
	if (i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != n) {
		PKCS8_PRIV_KEY_INFO_free(p8);
		secmem_free(buf, (size_t)n);
		return ossl_fail(KM_PROTO, errstr, errlen, "PKCS#8 encoding");
	}
	PKCS8_PRIV_KEY_INFO_free(p8);
	*out = buf;
	*outlen = (size_t)n;
	return KM_OK;
}

/* der_to_pkey - parse a plain PKCS#8 PrivateKeyInfo DER (whole input) */
static EVP_PKEY *
der_to_pkey(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	PKCS8_PRIV_KEY_INFO *p8;
	EVP_PKEY *k = NULL;

	if (len > LONG_MAX)
		return NULL;
	p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
	if (p8 != NULL && p == der + len)
		k = EVP_PKCS82PKEY(p8);
	PKCS8_PRIV_KEY_INFO_free(p8);
	ERR_clear_error();
	return k;
}

/* --- handle ---------------------------------------------------------- */

/* keymodel_new - open connection pools to both KM servers */
struct keymodel *
keymodel_new(const struct kmilter_conf *conf, char *errstr, size_t errlen)
{
	struct keymodel *km;
	struct kmip_server_opts o;
	int i;

	if (conf == NULL || conf->km_nservers != 2) {
		seterr(errstr, errlen, "the key model needs exactly two KM "
		    "servers in km.servers");
		return NULL;
	}
	if ((km = calloc(1, sizeof(*km))) == NULL) {
		seterr(errstr, errlen, "out of memory");
		return NULL;
	}
	km->parallel = 1;
	for (i = 0; i < 2; i++) {
		memset(&o, 0, sizeof(o));
		o.name = conf->km_servers[i].name;
		o.host = conf->km_servers[i].host;
		o.port = conf->km_servers[i].port;
		o.ca_file = conf->km_ca_file;
		o.cert_file = conf->km_client_cert;
		o.key_file = conf->km_client_key;
		o.connect_timeout_ms = conf->km_connect_timeout_ms;
		o.io_timeout_ms = conf->km_io_timeout_ms;
		snprintf(km->name[i], sizeof(km->name[i]), "%s",
		    o.name != NULL ? o.name : (i == 0 ? "A" : "B"));
		km->pool[i] = kmip_pool_new(&o, conf->km_pool_size > 0 ?
		    conf->km_pool_size : 4, errstr, errlen);
		if (km->pool[i] == NULL)
			return keymodel_free(km);
	}
	return km;
}

/* keymodel_free - close both pools */
struct keymodel *
keymodel_free(struct keymodel *km)
{
	if (km == NULL)
		return NULL;
	kmip_pool_free(km->pool[0]);
	kmip_pool_free(km->pool[1]);
	free(km);
	return NULL;
}

/* keymodel_set_parallel - ask both servers at once (1) or in turn (0) */
void
keymodel_set_parallel(struct keymodel *km, int parallel)
{
	km->parallel = parallel;
}

/* keymodel_server_name - the configured name of server 0 or 1 */
const char *
keymodel_server_name(const struct keymodel *km, int server)
{
	return server == 0 || server == 1 ? km->name[server] : "?";
}

/* keymodel_notfound - does this error mean "nothing for that address"? */
int
keymodel_notfound(const char *errstr)
{
	return errstr != NULL && strncmp(errstr, "no ", 3) == 0;
}

/* keymodel_ping - Discover Versions on one server, timed */
enum km_status
keymodel_ping(struct keymodel *km, int server, double *ms, char *version,
    size_t versionlen, char *errstr, size_t errlen)
{
	struct kmip_conn *c = NULL;
	struct kmip_version v[8];
	struct timespec t0, t1;
	enum km_status st;
	size_t n = 0;

	*ms = 0;
	if (versionlen > 0)
		version[0] = '\0';
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((st = kmip_pool_get(km->pool[server], &c, errstr, errlen)) !=
	    KM_OK)
		return st;
	st = kmip_discover_versions(c, v, 8, &n, errstr, errlen);
	kmip_pool_put(km->pool[server], c);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	*ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	if (st == KM_OK && n > 0 && versionlen > 0)
		snprintf(version, versionlen, "%d.%d", v[0].major, v[0].minor);
	return st;
}

/* --- scanning a server ----------------------------------------------- */

/* scan_clear - wipe fetched bytes and free a scan */
static void
scan_clear(struct scan *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		secmem_free(s->v[i].data, s->v[i].len);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* scan_server - Locate every object of name, with type, state, generation */
static enum km_status
scan_server(struct kmip_conn *c, const char *name, struct scan *s,
    char *errstr, size_t errlen)
{
	struct kmip_locate_req q;
	struct kmip_uid_list *l = NULL;
	struct kmip_attrs a;
	enum km_status st;
	size_t i;

	memset(&q, 0, sizeof(q));
	q.name = name;
	s->v = NULL;
	s->n = 0;
	if ((st = kmip_locate(c, &q, &l, errstr, errlen)) != KM_OK)
		return st;
	if (l->count > 0 && (s->v = calloc(l->count, sizeof(*s->v))) ==
	    NULL) {
		kmip_uid_list_free(l);
		seterr(errstr, errlen, "out of memory");
		return KM_NOMEM;
	}
	for (i = 0; i < l->count; i++) {
		struct kobj *o = &s->v[s->n];

		if ((st = kmip_get_attributes(c, l->uids[i], &a, errstr,
		    errlen)) != KM_OK) {
			kmip_uid_list_free(l);
			scan_clear(s);
			return st;
		}
		if (keymodel_group_parse(a.group, &o->kind, &o->gen,
		    &o->enhanced) != KM_OK ||
		    (o->kind == KEYMODEL_CERT &&
		    a.type != KMIP_OBJ_CERTIFICATE) ||
		    (o->kind == KEYMODEL_SHARE &&
		    a.type != KMIP_OBJ_SECRET_DATA)) {
			log_warnx("keymodel: %s: object %s of %s has an "
			    "unexpected type or group; ignored",
			    kmip_conn_name(c), l->uids[i], name);
			continue;
		}
		snprintf(o->uid, sizeof(o->uid), "%s", l->uids[i]);
		o->type = a.type;
		o->state = a.state;
		s->n++;
	}
	kmip_uid_list_free(l);
	return KM_OK;
}

/* usable - may an object in this state be used to decrypt? */
static int
usable(int state)
{
	return state == KMIP_STATE_ACTIVE || state == KMIP_STATE_DEACTIVATED;
}

/* badness - rank of a state: the worst state of a generation wins */
static int
badness(int state)
{
	switch (state) {
	case KMIP_STATE_ACTIVE:
		return 0;
	case KMIP_STATE_DEACTIVATED:
		return 1;
	case KMIP_STATE_PRE_ACTIVE:
		return 2;
	case KMIP_STATE_COMPROMISED:
		return 4;
	case KMIP_STATE_DESTROYED:
	case KMIP_STATE_DESTROYED_COMPROMISED:
		return 5;
	default:
		return 3;
	}
}

/* gen_cmp - qsort: newest generation first */
static int
gen_cmp(const void *a, const void *b)
{
	const struct genrec *x = a, *y = b;

	return (y->gen > x->gen) - (y->gen < x->gen);
}

/* build_gens - group the objects of both scans by generation */
static enum km_status
build_gens(struct scan s[2], struct genrec **out, size_t *nout)
{
	struct genrec *g;
	size_t n = 0, i, j;
	int srv;

	*out = NULL;
	*nout = 0;
	if (s[0].n + s[1].n == 0)
		return KM_OK;
	if ((g = calloc(s[0].n + s[1].n, sizeof(*g))) == NULL)
		return KM_NOMEM;
	for (srv = 0; srv < 2; srv++) {
		for (i = 0; i < s[srv].n; i++) {
			struct kobj *o = &s[srv].v[i];

			/* a Pre-Active share is being made (a new generation,
			 * whose certificate is Pre-Active too, or new shares of
			 * an existing one during a change of protection level):
			 * it neither counts nor changes the generation's state */
			if (o->kind == KEYMODEL_SHARE &&
			    o->state == KMIP_STATE_PRE_ACTIVE)
				continue;
			for (j = 0; j < n && g[j].gen != o->gen; j++)
				;
			if (j == n) {
				g[n].gen = o->gen;
				g[n].state = o->state;
				n++;
			} else if (badness(o->state) > badness(g[j].state))
				g[j].state = o->state;
			if (o->kind == KEYMODEL_CERT) {
				if (g[j].ncert[srv]++ == 0)
					g[j].cert[srv] = o;
			} else {
				if (g[j].nshare[srv]++ == 0)
					g[j].share[srv] = o;
				g[j].enhanced |= o->enhanced;
			}
		}
	}
	qsort(g, n, sizeof(*g), gen_cmp);
	*out = g;
	*nout = n;
	return KM_OK;
}

/* --- lookups --------------------------------------------------------- */

/* cert_from - the Active certificate of name on one server */
static enum km_status
cert_from(struct keymodel *km, int srv, const char *name, const char *addr,
    X509 **out, char *errstr, size_t errlen)
{
	struct kmip_conn *c = NULL;
	struct kmip_locate_req q;
	struct kmip_uid_list *l = NULL;
	struct kmip_attrs a;
	enum kmip_object_type type;
	enum keymodel_kind kind;
	unsigned char *data = NULL;
	const unsigned char *p;
	const char *uid;
	size_t len = 0, i;
	int gen, best = -1, enh;
	enum km_status st;

	if ((st = kmip_pool_get(km->pool[srv], &c, errstr, errlen)) != KM_OK)
		return st;
	memset(&q, 0, sizeof(q));
	q.name = name;
	q.type = KMIP_OBJ_CERTIFICATE;
	q.state = KMIP_STATE_ACTIVE;
	if ((st = kmip_locate(c, &q, &l, errstr, errlen)) != KM_OK)
		goto out;
	if (l->count == 0) {
		seterr(errstr, errlen, "no certificate for %s", addr);
		st = KM_PERMFAIL;
		goto out;
	}
	uid = l->uids[0];
	if (l->count > 1) {		/* renewal in progress: newest wins */
		for (i = 0; i < l->count; i++) {
			if ((st = kmip_get_attributes(c, l->uids[i], &a,
			    errstr, errlen)) != KM_OK)
				goto out;
			if (keymodel_group_parse(a.group, &kind, &gen, &enh) ==
			    KM_OK && kind == KEYMODEL_CERT && gen > best) {
				best = gen;
				uid = l->uids[i];
			}
		}
	}
	if ((st = kmip_get(c, uid, &type, &data, &len, errstr, errlen)) !=
	    KM_OK)
		goto out;
	p = data;
	if (type != KMIP_OBJ_CERTIFICATE || len > LONG_MAX ||
	    (*out = d2i_X509(NULL, &p, (long)len)) == NULL) {
		ERR_clear_error();
		seterr(errstr, errlen, "server %s: object %s of %s is not an "
		    "X.509 certificate", km->name[srv], uid, addr);
		st = KM_PROTO;
	}
out:
	secmem_free(data, len);
	kmip_uid_list_free(l);
	kmip_pool_put(km->pool[srv], c);
	return st;
}

/* keymodel_current_cert - the Active generation's certificate (A, then B) */
enum km_status
keymodel_current_cert(struct keymodel *km, const char *addr, X509 **out,
    char *errstr, size_t errlen)
{
	char name[KEYMODEL_NAME_MAX], norm[KEYMODEL_ADDR_MAX + 1];
	char err0[256];
	enum km_status st;

	*out = NULL;
	if ((st = keymodel_addr_normalize(addr, norm, sizeof(norm), errstr,
	    errlen)) != KM_OK ||
	    (st = keymodel_object_name(norm, name, sizeof(name), errstr,
	    errlen)) != KM_OK)
		return st;
	err0[0] = '\0';
	st = cert_from(km, 0, name, norm, out, err0, sizeof(err0));
	if (st == KM_OK || st == KM_PERMFAIL || st == KM_NOMEM) {
		seterr(errstr, errlen, "%s", err0);
		return st;
	}
	log_warnx("keymodel: %s; asking server %s", err0, km->name[1]);
	st = cert_from(km, 1, name, norm, out, errstr, errlen);
	if (st == KM_TEMPFAIL || st == KM_PROTO)
		seterr(errstr, errlen, "%s (and %s)", err0, "server B failed "
		    "too");
	return st;
}

struct fetch {
	struct keymodel	*km;
	int		 srv;
	const char	*name;
	int		 want;		/* fetch bytes of usable objects */
	struct scan	 scan;
	enum km_status	 st;
	char		 err[256];
};

/* fetch_run - scan one server and Get the bytes of its usable objects */
static void *
fetch_run(void *arg)
{
	struct fetch *f = arg;
	struct kmip_conn *c = NULL;
	enum kmip_object_type type;
	size_t i;

	f->st = kmip_pool_get(f->km->pool[f->srv], &c, f->err, sizeof(f->err));
	if (f->st != KM_OK)
		return NULL;
	f->st = scan_server(c, f->name, &f->scan, f->err, sizeof(f->err));
	for (i = 0; f->st == KM_OK && f->want && i < f->scan.n; i++) {
		struct kobj *o = &f->scan.v[i];

		if (!usable(o->state))
			continue;
		if (o->kind == KEYMODEL_CERT && f->srv != 0)
			continue;	/* certificates come from server A */
		f->st = kmip_get(c, o->uid, &type, &o->data, &o->len, f->err,
		    sizeof(f->err));
		if (f->st == KM_OK && type != o->type) {
			snprintf(f->err, sizeof(f->err), "server %s: object "
			    "%s changed type", f->km->name[f->srv], o->uid);
			f->st = KM_PROTO;
		}
	}
	if (f->st != KM_OK)
		scan_clear(&f->scan);
	kmip_pool_put(f->km->pool[f->srv], c);
	return NULL;
}

/* fetch_both - run fetch_run on both servers, in parallel if allowed */
static enum km_status
fetch_both(struct keymodel *km, const char *name, int want, int parallel,
    struct scan s[2], char *errstr, size_t errlen)
{
	struct fetch f[2];
	pthread_t th;
	int i, threaded = 0;

	memset(f, 0, sizeof(f));
	for (i = 0; i < 2; i++) {
		f[i].km = km;
		f[i].srv = i;
		f[i].name = name;
		f[i].want = want;
	}
	if (parallel && pthread_create(&th, NULL, fetch_run, &f[1]) == 0)
		threaded = 1;
	fetch_run(&f[0]);
	if (threaded)
		pthread_join(th, NULL);
	else
		fetch_run(&f[1]);
	for (i = 0; i < 2; i++) {
		if (f[i].st != KM_OK) {
			seterr(errstr, errlen, "%s", f[i].err);
			scan_clear(&f[0].scan);
			scan_clear(&f[1].scan);
			return f[i].st;
		}
	}
	s[0] = f[0].scan;
	s[1] = f[1].scan;
	return KM_OK;
}

/* make_gen - combine one generation's shares and check them */
static enum km_status
make_gen(struct keymodel *km, const char *addr, struct genrec *r,
    struct keymodel_gen *g, char *errstr, size_t errlen)
{
	const unsigned char *p;
	enum pkcs8pw_kind kind;
	char e[160];
	enum km_status st;

	memset(g, 0, sizeof(*g));
	g->generation = r->gen;
	g->state = r->state;
	if (r->nshare[0] != 1 || r->nshare[1] != 1) {
		seterr(errstr, errlen, "generation %d of %s: expected one key "
		    "share on each server, found %d on %s and %d on %s",
		    r->gen, addr, r->nshare[0], km->name[0], r->nshare[1],
		    km->name[1]);
		return KM_PROTO;
	}
	if (r->ncert[0] != 1 || r->cert[0]->data == NULL) {
		seterr(errstr, errlen, "generation %d of %s: expected one "
		    "certificate on server %s, found %d", r->gen, addr,
		    km->name[0], r->ncert[0]);
		return KM_PROTO;
	}
	p = r->cert[0]->data;
	if (r->cert[0]->len > LONG_MAX ||
	    (g->cert = d2i_X509(NULL, &p, (long)r->cert[0]->len)) == NULL) {
		ERR_clear_error();
		seterr(errstr, errlen, "generation %d of %s: the certificate "
		    "does not parse", r->gen, addr);
		return KM_PROTO;
	}
	if ((st = keymodel_combine(r->share[0]->data, r->share[0]->len,
	    r->share[1]->data, r->share[1]->len, &g->der, &g->derlen, e,
	    sizeof(e))) != KM_OK) {
		seterr(errstr, errlen, "generation %d of %s: %s", r->gen, addr,
		    e);
		return st;
	}
	kind = pkcs8pw_detect(g->der, g->derlen);
	if (kind == PKCS8PW_ENCRYPTED) {
		g->enhanced = 1;
		return KM_OK;
	}
	if (kind != PKCS8PW_PLAIN || (g->key = der_to_pkey(g->der,
	    g->derlen)) == NULL) {
		seterr(errstr, errlen, "generation %d of %s: the key shares do "
		    "not combine into a PKCS#8 key", r->gen, addr);
		return KM_PROTO;
	}
	if (keymodel_check_pair(g->cert, g->key, NULL, 0) != KM_OK) {
		seterr(errstr, errlen, "generation %d of %s: the combined key "
		    "does not match the certificate", r->gen, addr);
		return KM_PROTO;
	}
	return KM_OK;
}

/* keymodel_decryption_keys - every usable generation's key, both servers */
enum km_status
keymodel_decryption_keys(struct keymodel *km, const char *addr,
    struct keymodel_gen **out, size_t *n, char *errstr, size_t errlen)
{
	char name[KEYMODEL_NAME_MAX], norm[KEYMODEL_ADDR_MAX + 1];
	struct scan s[2];
	struct genrec *recs = NULL;
	struct keymodel_gen *gens = NULL;
	size_t nrecs = 0, ng = 0, i;
	enum km_status st;

	*out = NULL;
	*n = 0;
	if ((st = keymodel_addr_normalize(addr, norm, sizeof(norm), errstr,
	    errlen)) != KM_OK ||
	    (st = keymodel_object_name(norm, name, sizeof(name), errstr,
	    errlen)) != KM_OK)
		return st;
	if ((st = fetch_both(km, name, 1, km->parallel, s, errstr, errlen)) !=
	    KM_OK)
		return st;
	if ((st = build_gens(s, &recs, &nrecs)) != KM_OK) {
		seterr(errstr, errlen, "out of memory");
		goto out;
	}
	if (nrecs > 0 && (gens = calloc(nrecs, sizeof(*gens))) == NULL) {
		st = KM_NOMEM;
		seterr(errstr, errlen, "out of memory");
		goto out;
	}
	for (i = 0; i < nrecs; i++) {
		if (!usable(recs[i].state) ||
		    recs[i].nshare[0] + recs[i].nshare[1] == 0)
			continue;	/* revoked, half-made, or cert only */
		if ((st = make_gen(km, norm, &recs[i], &gens[ng], errstr,
		    errlen)) != KM_OK) {
			keymodel_gens_free(gens, ng + 1);
			gens = NULL;
			ng = 0;
			goto out;
		}
		ng++;
	}
	if (ng == 0) {
		seterr(errstr, errlen, "no keys for %s", norm);
		st = KM_PERMFAIL;
		free(gens);
		gens = NULL;
		goto out;
	}
	*out = gens;
	*n = ng;
	st = KM_OK;
out:
	free(recs);
	scan_clear(&s[0]);
	scan_clear(&s[1]);
	return st;
}

/* keymodel_gens_free - wipe and free what keymodel_decryption_keys gave */
void
keymodel_gens_free(struct keymodel_gen *g, size_t n)
{
	size_t i;

	if (g == NULL)
		return;
	for (i = 0; i < n; i++) {
		X509_free(g[i].cert);
		EVP_PKEY_free(g[i].key);
		secmem_free(g[i].der, g[i].derlen);
	}
	free(g);
}

/* --- administration -------------------------------------------------- */

struct admin {
	struct keymodel		*km;
	struct kmip_conn	*c[2];
	char			 norm[KEYMODEL_ADDR_MAX + 1];
	char			 name[KEYMODEL_NAME_MAX];
	struct scan		 s[2];
	struct genrec		*recs;
	size_t			 nrecs;
};

/* admin_close - give the connections back and free the scans */
static void
admin_close(struct admin *a)
{
	int i;

	for (i = 0; i < 2; i++) {
		scan_clear(&a->s[i]);
		if (a->c[i] != NULL)
			kmip_pool_put(a->km->pool[i], a->c[i]);
		a->c[i] = NULL;
	}
	free(a->recs);
	a->recs = NULL;
}

/* admin_open - check addr, take a connection to each server and scan both */
static enum km_status
admin_open(struct admin *a, struct keymodel *km, const char *addr,
    char *errstr, size_t errlen)
{
	enum km_status st;
	int i;

	memset(a, 0, sizeof(*a));
	a->km = km;
	if ((st = keymodel_addr_normalize(addr, a->norm, sizeof(a->norm),
	    errstr, errlen)) != KM_OK ||
	    (st = keymodel_object_name(a->norm, a->name, sizeof(a->name),
	    errstr, errlen)) != KM_OK)
		return st;
	for (i = 0; i < 2; i++) {
		if ((st = kmip_pool_get(km->pool[i], &a->c[i], errstr,
		    errlen)) != KM_OK ||
		    (st = scan_server(a->c[i], a->name, &a->s[i], errstr,
		    errlen)) != KM_OK) {
			admin_close(a);
			return st;
		}
	}
	if (build_gens(a->s, &a->recs, &a->nrecs) != KM_OK) {
		admin_close(a);
		seterr(errstr, errlen, "out of memory");
		return KM_NOMEM;
	}
	return KM_OK;
}

/* admin_next_gen - one more than the highest generation on either server */
static int
admin_next_gen(const struct admin *a)
{
	return a->nrecs > 0 ? a->recs[0].gen + 1 : 1;
}

/* admin_active - the newest Active generation with a certificate, or NULL */
static struct genrec *
admin_active(struct admin *a)
{
	size_t i;

	for (i = 0; i < a->nrecs; i++)
		if (a->recs[i].state == KMIP_STATE_ACTIVE &&
		    a->recs[i].ncert[0] + a->recs[i].ncert[1] > 0)
			return &a->recs[i];
	return NULL;
}

/* install - register a new generation on both servers, activate it, then
 * deactivate the older Active objects.  Registered objects stay Pre-Active
 * (invisible to lookups) until all four exist; on failure they are
 * destroyed again. */
static enum km_status
install(struct admin *a, int gen, X509 *cert, const unsigned char *der,
    size_t derlen, int enhanced, char *errstr, size_t errlen)
{
	struct kmip_register_req q;
	char uids[4][KMIP_UID_MAX], group[KEYMODEL_GROUP_MAX];
	unsigned char *cder = NULL, *p, *sh[2] = { NULL, NULL };
	int clen, nreg = 0, i, srv;
	size_t j;
	enum km_status st;

	if ((clen = i2d_X509(cert, NULL)) <= 0 ||
	    (cder = malloc((size_t)clen)) == NULL) {
		ERR_clear_error();
		seterr(errstr, errlen, "cannot encode the certificate");
		return KM_NOMEM;
	}
	p = cder;
	i2d_X509(cert, &p);
	if (der != NULL && (st = keymodel_split(der, derlen, &sh[0], &sh[1],
	    errstr, errlen)) != KM_OK)
		goto fail;
	for (i = 0; i < 4; i++) {
		srv = i % 2;
		memset(&q, 0, sizeof(q));
		q.name = a->name;
		q.group = group;
		if (i < 2) {
			q.type = KMIP_OBJ_CERTIFICATE;
			q.data = cder;
			q.len = (size_t)clen;
			keymodel_group_format(KEYMODEL_CERT, gen, 0, group,
			    sizeof(group));
		} else {
			if (der == NULL)
				break;
			q.type = KMIP_OBJ_SECRET_DATA;
			q.secret_type = KMIP_SECRET_SEED;
			q.data = sh[srv];
			q.len = derlen;
			keymodel_group_format(KEYMODEL_SHARE, gen, enhanced,
			    group, sizeof(group));
		}
		if ((st = kmip_register(a->c[srv], &q, uids[i], errstr,
		    errlen)) != KM_OK)
			goto fail;
		nreg++;
	}
	for (i = 0; i < nreg; i++)
		if ((st = kmip_activate(a->c[i % 2], uids[i], errstr,
		    errlen)) != KM_OK)
			goto fail;
	for (srv = 0; srv < 2; srv++) {
		for (j = 0; j < a->s[srv].n; j++) {
			struct kobj *o = &a->s[srv].v[j];

			if (o->state != KMIP_STATE_ACTIVE || o->gen >= gen)
				continue;
			if ((st = kmip_revoke(a->c[srv], o->uid,
			    KMIP_REVOKE_CESSATION_OF_OPERATION,
			    "superseded by a new generation", errstr,
			    errlen)) != KM_OK) {
				log_warnx("keymodel: %s: generation %d stays "
				    "Active: %s", a->norm, o->gen, errstr);
				goto out;
			}
			o->state = KMIP_STATE_DEACTIVATED;
		}
	}
	st = KM_OK;
	goto out;
fail:
	for (i = 0; i < nreg; i++) {
		char e[256];

		/* a Pre-Active object can be destroyed; an activated one
		 * is revoked first */
		if (kmip_destroy(a->c[i % 2], uids[i], e, sizeof(e)) != KM_OK &&
		    (kmip_revoke(a->c[i % 2], uids[i],
		    KMIP_REVOKE_KEY_COMPROMISE, "enrollment failed", e,
		    sizeof(e)) != KM_OK ||
		    kmip_destroy(a->c[i % 2], uids[i], e, sizeof(e)) != KM_OK))
			log_warnx("keymodel: %s: cannot remove half-made "
			    "object %s: %s", a->norm, uids[i], e);
	}
out:
	free(cder);
	secmem_free(sh[0], derlen);
	secmem_free(sh[1], derlen);
	return st;
}

/* new_generation - make a key and certificate and install them; with pw
 * the key is escrowed as an EncryptedPrivateKeyInfo (level enhanced) */
static enum km_status
new_generation(struct admin *a, X509 *ca_cert, EVP_PKEY *ca_key,
    const char *keytype, int days, const char *pw, size_t pwlen,
    int *generation, char *errstr, size_t errlen)
{
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	unsigned char *der = NULL, *wrapped = NULL;
	size_t derlen = 0, wlen = 0;
	enum km_status st;
	int gen = admin_next_gen(a);

	if ((st = keymodel_keygen(keytype, &key, errstr, errlen)) != KM_OK ||
	    (st = keymodel_issue_cert(key, a->norm, ca_cert, ca_key, days,
	    KEYMODEL_USE_ENCRYPT, &cert, errstr, errlen)) != KM_OK ||
	    (st = pkey_to_der(key, &der, &derlen, errstr, errlen)) != KM_OK)
		goto out;
	EVP_PKEY_free(key);		/* wipes the key: only shares remain */
	key = NULL;
	if (pw != NULL) {
		if ((st = pkcs8pw_wrap_der(der, derlen, pw, pwlen, 0, &wrapped,
		    &wlen, errstr, errlen)) != KM_OK)
			goto out;
		secmem_free(der, derlen);
		der = NULL;
		derlen = 0;
	}
	if ((st = install(a, gen, cert, pw != NULL ? wrapped : der,
	    pw != NULL ? wlen : derlen, pw != NULL, errstr, errlen)) ==
	    KM_OK && generation != NULL)
		*generation = gen;
out:
	OPENSSL_free(wrapped);
	secmem_free(der, derlen);
	EVP_PKEY_free(key);
	X509_free(cert);
	return st;
}

/* keymodel_enroll - first generation of an address's encryption key pair */
enum km_status
keymodel_enroll(struct keymodel *km, const char *addr, X509 *ca_cert,
    EVP_PKEY *ca_key, const char *keytype, int days, int *generation,
    char *errstr, size_t errlen)
{
	return keymodel_enroll_protected(km, addr, ca_cert, ca_key, keytype,
	    days, NULL, 0, generation, errstr, errlen);
}

/* keymodel_enroll_protected - enroll; with pw at protection level enhanced */
enum km_status
keymodel_enroll_protected(struct keymodel *km, const char *addr,
    X509 *ca_cert, EVP_PKEY *ca_key, const char *keytype, int days,
    const char *pw, size_t pwlen, int *generation, char *errstr,
    size_t errlen)
{
	struct admin a;
	struct genrec *cur;
	enum km_status st;

	if ((st = admin_open(&a, km, addr, errstr, errlen)) != KM_OK)
		return st;
	if ((cur = admin_active(&a)) != NULL) {
		seterr(errstr, errlen, "%s is already enrolled (generation %d "
		    "is Active): use renew", a.norm, cur->gen);
		st = KM_PERMFAIL;
	} else
		st = new_generation(&a, ca_cert, ca_key, keytype, days, pw,
		    pwlen, generation, errstr, errlen);
	admin_close(&a);
	return st;
}

/* keymodel_renew - a new generation; the current one becomes Deactivated */
enum km_status
keymodel_renew(struct keymodel *km, const char *addr, X509 *ca_cert,
    EVP_PKEY *ca_key, const char *keytype, int days, int *generation,
    char *errstr, size_t errlen)
{
	struct admin a;
	struct genrec *cur;
	X509 *old = NULL;
	enum km_status st;

	if ((st = admin_open(&a, km, addr, errstr, errlen)) != KM_OK)
		return st;
	if ((cur = admin_active(&a)) == NULL) {
		seterr(errstr, errlen, "no Active generation for %s: enroll "
		    "first", a.norm);
		st = KM_PERMFAIL;
		goto out;
	}
	if (cur->enhanced) {
		/* a plain new generation would silently lower the level */
		seterr(errstr, errlen, "%s's key is protected by a password "
		    "(level enhanced): clear-password, renew, then "
		    "set-password again", a.norm);
		st = KM_PERMFAIL;
		goto out;
	}
	if (keytype == NULL && cur->ncert[0] > 0) {
		enum kmip_object_type t;
		unsigned char *d = NULL;
		const unsigned char *p;
		size_t l = 0;

		if ((st = kmip_get(a.c[0], cur->cert[0]->uid, &t, &d, &l,
		    errstr, errlen)) != KM_OK)
			goto out;
		p = d;
		if (l <= LONG_MAX && (old = d2i_X509(NULL, &p, (long)l)) !=
		    NULL)
			keytype = keytype_of(old);
		ERR_clear_error();
		secmem_free(d, l);
	}
	st = new_generation(&a, ca_cert, ca_key, keytype, days, NULL, 0,
	    generation, errstr, errlen);
out:
	X509_free(old);
	admin_close(&a);
	return st;
}

/* keymodel_revoke - mark one generation (or all) Compromised everywhere */
enum km_status
keymodel_revoke(struct keymodel *km, const char *addr, int generation,
    int *nrevoked, char *errstr, size_t errlen)
{
	struct admin a;
	enum km_status st;
	int srv, found = 0, done = 0;
	size_t j, k;

	if (nrevoked != NULL)
		*nrevoked = 0;
	if ((st = admin_open(&a, km, addr, errstr, errlen)) != KM_OK)
		return st;
	for (srv = 0; srv < 2; srv++) {
		for (j = 0; j < a.s[srv].n; j++) {
			struct kobj *o = &a.s[srv].v[j];

			if (generation != 0 && o->gen != generation)
				continue;
			found = 1;
			if (o->state == KMIP_STATE_COMPROMISED ||
			    o->state == KMIP_STATE_DESTROYED_COMPROMISED)
				continue;
			if ((st = kmip_revoke(a.c[srv], o->uid,
			    KMIP_REVOKE_KEY_COMPROMISE, "revoked by kmctl",
			    errstr, errlen)) != KM_OK)
				goto out;
			o->state = KMIP_STATE_COMPROMISED;
			for (k = 0; k < a.nrecs; k++)
				if (a.recs[k].gen == o->gen &&
				    !a.recs[k].revoked) {
					a.recs[k].revoked = 1;
					done++;
				}
		}
	}
	if (!found) {
		if (generation != 0)
			seterr(errstr, errlen, "no generation %d for %s",
			    generation, a.norm);
		else
			seterr(errstr, errlen, "no keys or certificates for %s",
			    a.norm);
		st = KM_PERMFAIL;
	}
out:
	if (nrevoked != NULL)
		*nrevoked = done;
	admin_close(&a);
	return st;
}

/* --- protection level (set-password, clear-password) ------------------ */

/* keymodel_rewrap - one generation's PKCS#8 DER from one protection level
 * to the other: oldpw NULL takes a plain PrivateKeyInfo, else an
 * EncryptedPrivateKeyInfo that oldpw opens; newpw NULL gives a plain one,
 * else one encrypted under newpw.  The key is checked against cert (when
 * not NULL).  *out is secmem: secmem_free(*out, *outlen). */
enum km_status
keymodel_rewrap(X509 *cert, const unsigned char *der, size_t len,
    const char *oldpw, size_t oldlen, const char *newpw, size_t newlen,
    int iter, unsigned char **out, size_t *outlen, char *errstr,
    size_t errlen)
{
	enum pkcs8pw_kind kind = pkcs8pw_detect(der, len);
	unsigned char *plain = NULL, *wrapped = NULL;
	size_t plainlen = 0, wlen = 0;
	EVP_PKEY *key = NULL;
	enum km_status st;

	*out = NULL;
	*outlen = 0;
	if (kind != (oldpw != NULL ? PKCS8PW_ENCRYPTED : PKCS8PW_PLAIN)) {
		seterr(errstr, errlen, "the key is %s, expected %s",
		    pkcs8pw_kind_name(kind), oldpw != NULL ?
		    pkcs8pw_kind_name(PKCS8PW_ENCRYPTED) :
		    pkcs8pw_kind_name(PKCS8PW_PLAIN));
		return KM_PROTO;
	}
	if (oldpw != NULL) {
		if ((st = pkcs8pw_unwrap(der, len, oldpw, oldlen, &plain,
		    &plainlen, errstr, errlen)) != KM_OK)
			return st;
	} else {
		if ((plain = secmem_alloc(len)) == NULL) {
			seterr(errstr, errlen, "out of memory");
			return KM_NOMEM;
		}
		memcpy(plain, der, len);
		plainlen = len;
	}
	if ((key = der_to_pkey(plain, plainlen)) == NULL) {
		seterr(errstr, errlen, "the key does not parse");
		st = KM_PROTO;
		goto out;
	}
	if (cert != NULL && keymodel_check_pair(cert, key, NULL, 0) != KM_OK) {
		seterr(errstr, errlen, "the key does not match its "
		    "certificate");
		st = KM_PROTO;
		goto out;
	}
	if (newpw == NULL) {
		*out = plain;
		*outlen = plainlen;
		plain = NULL;
		st = KM_OK;
		goto out;
	}
	if ((st = pkcs8pw_wrap_der(plain, plainlen, newpw, newlen, iter,
	    &wrapped, &wlen, errstr, errlen)) != KM_OK)
		goto out;
	if ((*out = secmem_alloc(wlen)) == NULL) {
		seterr(errstr, errlen, "out of memory");
		st = KM_NOMEM;
		goto out;
	}
	memcpy(*out, wrapped, wlen);
	*outlen = wlen;
	st = KM_OK;
out:
	OPENSSL_free(wrapped);
	EVP_PKEY_free(key);
	secmem_free(plain, plainlen);
	return st;
}

/* remove_obj - take one object out of use: revoke it (Cessation of
 * Operation) when it is Active, then Destroy it */
static enum km_status
remove_obj(struct kmip_conn *c, const char *uid, int active, char *errstr,
    size_t errlen)
{
	enum km_status st;

	if (active && (st = kmip_revoke(c, uid,
	    KMIP_REVOKE_CESSATION_OF_OPERATION, "replaced by kmctl", errstr,
	    errlen)) != KM_OK)
		return st;
	return kmip_destroy(c, uid, errstr, errlen);
}

/* reshare - replace one generation's two shares by shares of der: register
 * them (Pre-Active: lookups ignore them), activate them (and deactivate
 * them again for a Deactivated generation), then remove the old ones.
 * Until the new shares are active nothing visible changed, and a failure
 * removes them again. */
static enum km_status
reshare(struct admin *a, struct genrec *r, const unsigned char *der,
    size_t len, int enhanced, char *errstr, size_t errlen)
{
	struct kmip_register_req q;
	char uids[2][KMIP_UID_MAX], group[KEYMODEL_GROUP_MAX], e[256];
	unsigned char *sh[2] = { NULL, NULL };
	int srv, nreg = 0, active = 0;
	enum km_status st;

	if ((st = keymodel_split(der, len, &sh[0], &sh[1], errstr, errlen)) !=
	    KM_OK)
		return st;
	keymodel_group_format(KEYMODEL_SHARE, r->gen, enhanced, group,
	    sizeof(group));
	for (srv = 0; srv < 2; srv++) {
		memset(&q, 0, sizeof(q));
		q.name = a->name;
		q.group = group;
		q.type = KMIP_OBJ_SECRET_DATA;
		q.secret_type = KMIP_SECRET_SEED;
		q.data = sh[srv];
		q.len = len;
		if ((st = kmip_register(a->c[srv], &q, uids[srv], errstr,
		    errlen)) != KM_OK)
			goto fail;
		nreg++;
	}
	for (srv = 0; srv < 2; srv++) {
		if ((st = kmip_activate(a->c[srv], uids[srv], errstr,
		    errlen)) != KM_OK)
			goto fail;
		active = srv + 1;
	}
	if (r->state == KMIP_STATE_DEACTIVATED)
		for (srv = 0; srv < 2; srv++)
			if (kmip_revoke(a->c[srv], uids[srv],
			    KMIP_REVOKE_CESSATION_OF_OPERATION,
			    "earlier generation", e, sizeof(e)) != KM_OK)
				log_warnx("keymodel: %s: new share %s of "
				    "generation %d stays Active: %s", a->norm,
				    uids[srv], r->gen, e);
	for (srv = 0; srv < 2; srv++) {
		struct kobj *o = r->share[srv];

		if ((st = remove_obj(a->c[srv], o->uid, o->state ==
		    KMIP_STATE_ACTIVE, e, sizeof(e))) != KM_OK) {
			seterr(errstr, errlen, "generation %d: new key shares "
			    "are in place, but the old share %s on %s could "
			    "not be removed (%s): remove it by hand", r->gen,
			    o->uid, a->km->name[srv], e);
			log_warnx("keymodel: %s: %s", a->norm, errstr);
			goto out;
		}
	}
	st = KM_OK;
	goto out;
fail:
	for (srv = 0; srv < nreg; srv++)
		if (remove_obj(a->c[srv], uids[srv], srv < active, e,
		    sizeof(e)) != KM_OK)
			log_warnx("keymodel: %s: cannot remove half-made "
			    "share %s: %s", a->norm, uids[srv], e);
out:
	secmem_free(sh[0], len);
	secmem_free(sh[1], len);
	return st;
}

/* fetch_gen - Get one generation's certificate (A) and shares (A, B) */
static enum km_status
fetch_gen(struct admin *a, struct genrec *r, char *errstr, size_t errlen)
{
	struct kobj *objs[3];
	enum kmip_object_type t;
	int i, srv;
	enum km_status st;

	if (r->nshare[0] != 1 || r->nshare[1] != 1 || r->ncert[0] != 1) {
		seterr(errstr, errlen, "generation %d of %s: expected one "
		    "certificate on %s and one key share on each server, "
		    "found %d, %d and %d", r->gen, a->norm, a->km->name[0],
		    r->ncert[0], r->nshare[0], r->nshare[1]);
		return KM_PROTO;
	}
	objs[0] = r->cert[0];
	objs[1] = r->share[0];
	objs[2] = r->share[1];
	for (i = 0; i < 3; i++) {
		srv = i == 2 ? 1 : 0;
		if (objs[i]->data != NULL)
			continue;
		if ((st = kmip_get(a->c[srv], objs[i]->uid, &t,
		    &objs[i]->data, &objs[i]->len, errstr, errlen)) != KM_OK)
			return st;
		if (t != objs[i]->type) {
			seterr(errstr, errlen, "server %s: object %s changed "
			    "type", a->km->name[srv], objs[i]->uid);
			return KM_PROTO;
		}
	}
	return KM_OK;
}

/* drop_leftovers - destroy Pre-Active shares of usable generations: what an
 * interrupted change of protection level left behind */
static void
drop_leftovers(struct admin *a)
{
	char e[256];
	size_t i, k;
	int srv;

	for (srv = 0; srv < 2; srv++) {
		for (i = 0; i < a->s[srv].n; i++) {
			struct kobj *o = &a->s[srv].v[i];

			if (o->kind != KEYMODEL_SHARE ||
			    o->state != KMIP_STATE_PRE_ACTIVE)
				continue;
			for (k = 0; k < a->nrecs; k++)
				if (a->recs[k].gen == o->gen)
					break;
			if (k == a->nrecs || !usable(a->recs[k].state))
				continue;
			if (kmip_destroy(a->c[srv], o->uid, e, sizeof(e)) ==
			    KM_OK)
				log_info("keymodel: %s: removed left-over share "
				    "%s of generation %d", a->norm, o->uid,
				    o->gen);
			else
				log_warnx("keymodel: %s: cannot remove "
				    "left-over share %s: %s", a->norm, o->uid,
				    e);
		}
	}
}

/* gen_clear - free what make_gen put into one struct keymodel_gen */
static void
gen_clear(struct keymodel_gen *g)
{
	X509_free(g->cert);
	EVP_PKEY_free(g->key);
	secmem_free(g->der, g->derlen);
	memset(g, 0, sizeof(*g));
}

/* change_level - re-escrow every usable generation's key: oldpw NULL
 * protects it under newpw, newpw NULL removes oldpw's protection.  Every
 * generation is checked and converted before anything changes in the KM;
 * generations already at the wanted level are left alone (so running an
 * interrupted change again finishes it). */
static enum km_status
change_level(struct keymodel *km, const char *addr, const char *oldpw,
    size_t oldlen, const char *newpw, size_t newlen, int *nchanged,
    char *errstr, size_t errlen)
{
	struct admin a;
	struct keymodel_gen g;
	unsigned char **nder = NULL;
	size_t *nlen = NULL, i, nkeys = 0;
	char e[256];
	enum km_status st;
	int done = 0;

	if (nchanged != NULL)
		*nchanged = 0;
	if ((st = admin_open(&a, km, addr, errstr, errlen)) != KM_OK)
		return st;
	if (a.nrecs > 0 && ((nder = calloc(a.nrecs, sizeof(*nder))) == NULL ||
	    (nlen = calloc(a.nrecs, sizeof(*nlen))) == NULL)) {
		seterr(errstr, errlen, "out of memory");
		st = KM_NOMEM;
		goto out;
	}
	drop_leftovers(&a);
	for (i = 0; i < a.nrecs; i++) {
		struct genrec *r = &a.recs[i];

		if (!usable(r->state) || r->nshare[0] + r->nshare[1] == 0)
			continue;	/* revoked, half-made, or cert only */
		nkeys++;
		memset(&g, 0, sizeof(g));
		if ((st = fetch_gen(&a, r, errstr, errlen)) != KM_OK ||
		    (st = make_gen(km, a.norm, r, &g, errstr, errlen)) !=
		    KM_OK) {
			gen_clear(&g);
			goto out;
		}
		if (g.enhanced == (newpw != NULL)) {
			/* already at the wanted level: with the same
			 * password? */
			st = newpw != NULL ? keymodel_rewrap(g.cert, g.der,
			    g.derlen, newpw, newlen, NULL, 0, 0, &nder[i],
			    &nlen[i], e, sizeof(e)) : KM_OK;
			secmem_free(nder[i], nlen[i]);
			nder[i] = NULL;
			nlen[i] = 0;
			if (st == KM_PERMFAIL)
				seterr(errstr, errlen, "generation %d of %s is "
				    "already protected by another password: "
				    "clear-password first", r->gen, a.norm);
			else if (st != KM_OK)
				seterr(errstr, errlen, "generation %d of %s: "
				    "%s", r->gen, a.norm, e);
		} else {
			st = keymodel_rewrap(g.cert, g.der, g.derlen, oldpw,
			    oldlen, newpw, newlen, 0, &nder[i], &nlen[i], e,
			    sizeof(e));
			if (st == KM_PERMFAIL)
				seterr(errstr, errlen, "wrong password for "
				    "generation %d of %s", r->gen, a.norm);
			else if (st != KM_OK)
				seterr(errstr, errlen, "generation %d of %s: "
				    "%s", r->gen, a.norm, e);
		}
		gen_clear(&g);
		if (st != KM_OK)
			goto out;
	}
	if (nkeys == 0) {
		seterr(errstr, errlen, "no keys for %s", a.norm);
		st = KM_PERMFAIL;
		goto out;
	}
	for (i = 0; i < a.nrecs; i++) {
		if (nder[i] == NULL)
			continue;
		if ((st = reshare(&a, &a.recs[i], nder[i], nlen[i],
		    newpw != NULL, errstr, errlen)) != KM_OK)
			goto out;
		done++;
		log_info("keymodel: %s: generation %d is now at protection "
		    "level %s", a.norm, a.recs[i].gen, newpw != NULL ?
		    "enhanced" : "default");
	}
	st = KM_OK;
out:
	for (i = 0; nder != NULL && i < a.nrecs; i++)
		secmem_free(nder[i], nlen[i]);
	free(nder);
	free(nlen);
	if (nchanged != NULL)
		*nchanged = done;
	admin_close(&a);
	return st;
}

/* keymodel_set_password - protect every usable generation's escrowed key
 * under pw (level enhanced) */
enum km_status
keymodel_set_password(struct keymodel *km, const char *addr, const char *pw,
    size_t pwlen, int *nchanged, char *errstr, size_t errlen)
{
	if (pw == NULL || pwlen == 0) {
		seterr(errstr, errlen, "empty password");
		return KM_PROTO;
	}
	return change_level(km, addr, NULL, 0, pw, pwlen, nchanged, errstr,
	    errlen);
}

/* keymodel_clear_password - back to level default; pw must be the current
 * protection password */
enum km_status
keymodel_clear_password(struct keymodel *km, const char *addr,
    const char *pw, size_t pwlen, int *nchanged, char *errstr,
    size_t errlen)
{
	if (pw == NULL || pwlen == 0) {
		seterr(errstr, errlen, "empty password");
		return KM_PROTO;
	}
	return change_level(km, addr, pw, pwlen, NULL, 0, nchanged, errstr,
	    errlen);
}

/* check_for_addr - refuse a certificate that is not for addr */
static enum km_status
check_for_addr(X509 *cert, const char *addr, char *errstr, size_t errlen)
{
	char low[KEYMODEL_ADDR_MAX + 1];
	size_t i;

	for (i = 0; addr[i] != '\0' && i < KEYMODEL_ADDR_MAX; i++)
		low[i] = (char)tolower((unsigned char)addr[i]);
	low[i] = '\0';
	if (X509_check_email(cert, addr, 0, 0) != 1 &&
	    X509_check_email(cert, low, 0, 0) != 1) {
		ERR_clear_error();
		seterr(errstr, errlen, "the certificate is not issued to %s",
		    addr);
		return KM_PROTO;
	}
	return KM_OK;
}

/* keymodel_import_p12 - a key and certificate from elsewhere, as a new
 * generation (the current one, if any, becomes Deactivated) */
enum km_status
keymodel_import_p12(struct keymodel *km, const char *addr,
    const unsigned char *buf, size_t len, const char *pw, size_t pwlen,
    int *generation, char *errstr, size_t errlen)
{
	struct admin a;
	const unsigned char *p = buf;
	PKCS12 *p12 = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	STACK_OF(X509) *ca = NULL;
	unsigned char *der = NULL;
	size_t derlen = 0;
	char *pwz = NULL;
	enum km_status st;
	int gen;

	memset(&a, 0, sizeof(a));
	if (len > LONG_MAX ||
	    (p12 = d2i_PKCS12(NULL, &p, (long)len)) == NULL) {
		ERR_clear_error();
		seterr(errstr, errlen, "not a PKCS#12 file");
		return KM_PROTO;
	}
	if ((pwz = secmem_alloc(pwlen + 1)) == NULL) {
		st = KM_NOMEM;
		seterr(errstr, errlen, "out of memory");
		goto out;
	}
	if (pwlen > 0)
		memcpy(pwz, pw, pwlen);
	if (PKCS12_parse(p12, pwz, &key, &cert, &ca) != 1) {
		ERR_clear_error();
		seterr(errstr, errlen, "cannot open the PKCS#12 file (wrong "
		    "password?)");
		st = KM_PERMFAIL;
		goto out;
	}
	if (key == NULL || cert == NULL) {
		seterr(errstr, errlen, "the PKCS#12 file needs both a private "
		    "key and its certificate");
		st = KM_PROTO;
		goto out;
	}
	if ((st = keymodel_check_pair(cert, key, errstr, errlen)) != KM_OK ||
	    (st = admin_open(&a, km, addr, errstr, errlen)) != KM_OK ||
	    (st = check_for_addr(cert, a.norm, errstr, errlen)) != KM_OK ||
	    (st = pkey_to_der(key, &der, &derlen, errstr, errlen)) != KM_OK)
		goto out;
	gen = admin_next_gen(&a);
	if ((st = install(&a, gen, cert, der, derlen, 0, errstr, errlen)) ==
	    KM_OK && generation != NULL)
		*generation = gen;
out:
	admin_close(&a);
	secmem_free(der, derlen);
	secmem_free(pwz, pwlen + 1);
	EVP_PKEY_free(key);
	X509_free(cert);
	sk_X509_pop_free(ca, X509_free);
	PKCS12_free(p12);
	return st;
}

/* keymodel_import_cert - an outside correspondent's certificate (PEM or
 * DER), on both servers, no key */
enum km_status
keymodel_import_cert(struct keymodel *km, const char *addr,
    const unsigned char *data, size_t len, int *generation, char *errstr,
    size_t errlen)
{
	struct admin a;
	const unsigned char *p = data;
	X509 *cert = NULL;
	BIO *b;
	enum km_status st;
	int gen;

	memset(&a, 0, sizeof(a));
	if (len > INT32_MAX) {
		seterr(errstr, errlen, "certificate file too large");
		return KM_PROTO;
	}
	if ((b = BIO_new_mem_buf(data, (int)len)) != NULL) {
		cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
		BIO_free(b);
	}
	if (cert == NULL) {
		p = data;
		cert = d2i_X509(NULL, &p, (long)len);
		if (cert != NULL && p != data + len) {
			X509_free(cert);
			cert = NULL;
		}
	}
	ERR_clear_error();
	if (cert == NULL) {
		seterr(errstr, errlen, "not an X.509 certificate (PEM or DER)");
		return KM_PROTO;
	}
	if ((st = admin_open(&a, km, addr, errstr, errlen)) != KM_OK ||
	    (st = check_for_addr(cert, a.norm, errstr, errlen)) != KM_OK)
		goto out;
	gen = admin_next_gen(&a);
	if ((st = install(&a, gen, cert, NULL, 0, 0, errstr, errlen)) ==
	    KM_OK && generation != NULL)
		*generation = gen;
out:
	admin_close(&a);
	X509_free(cert);
	return st;
}

/* fill_info - describe one generation's certificate */
static void
fill_info(struct keymodel_info *in, X509 *x)
{
	const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
	BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
	char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
	struct tm tm;

	keymodel_cert_fingerprint(x, in->sha256, sizeof(in->sha256));
	X509_NAME_oneline(X509_get_subject_name(x), in->subject,
	    sizeof(in->subject));
	X509_NAME_oneline(X509_get_issuer_name(x), in->issuer,
	    sizeof(in->issuer));
	snprintf(in->serial, sizeof(in->serial), "%s", hex ? hex : "?");
	if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm) == 1)
		in->not_before = timegm(&tm);
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		in->not_after = timegm(&tm);
	key_type_name(X509_get0_pubkey(x), in->key_type, sizeof(in->key_type));
	OPENSSL_free(hex);
	BN_free(bn);
	ERR_clear_error();
}

/* keymodel_show - every generation of an address, without key material */
enum km_status
keymodel_show(struct keymodel *km, const char *addr,
    struct keymodel_info **out, size_t *n, char *errstr, size_t errlen)
{
	struct admin a;
	struct keymodel_info *v = NULL;
	enum kmip_object_type t;
	enum km_status st;
	size_t i;

	*out = NULL;
	*n = 0;
	if ((st = admin_open(&a, km, addr, errstr, errlen)) != KM_OK)
		return st;
	if (a.nrecs == 0) {
		seterr(errstr, errlen, "no keys or certificates for %s",
		    a.norm);
		st = KM_PERMFAIL;
		goto out;
	}
	if ((v = calloc(a.nrecs, sizeof(*v))) == NULL) {
		seterr(errstr, errlen, "out of memory");
		st = KM_NOMEM;
		goto out;
	}
	for (i = 0; i < a.nrecs; i++) {
		struct genrec *r = &a.recs[i];
		int srv = r->ncert[0] > 0 ? 0 : 1;
		unsigned char *d = NULL;
		const unsigned char *p;
		size_t l = 0;
		X509 *x;

		v[i].generation = r->gen;
		v[i].state = r->state;
		v[i].has_key = r->nshare[0] > 0 && r->nshare[1] > 0;
		v[i].enhanced = r->enhanced;
		if (r->ncert[srv] == 0)
			continue;
		if ((st = kmip_get(a.c[srv], r->cert[srv]->uid, &t, &d, &l,
		    errstr, errlen)) != KM_OK)
			goto out;
		p = d;
		if (l <= LONG_MAX && (x = d2i_X509(NULL, &p, (long)l)) !=
		    NULL) {
			fill_info(&v[i], x);
			X509_free(x);
		}
		ERR_clear_error();
		secmem_free(d, l);
	}
	*out = v;
	*n = a.nrecs;
	v = NULL;
	st = KM_OK;
out:
	free(v);
	admin_close(&a);
	return st;
}

/* keymodel_infos_free - free what keymodel_show gave */
struct keymodel_info *
keymodel_infos_free(struct keymodel_info *v)
{
	free(v);
	return NULL;
}
