/*
 * sign-keypref - sign a MIME entity as opaque signed-data carrying extra
 * certificates and an SMIMEEncryptionKeyPreference attribute (RFC 8551
 * 2.5.3), which openssl cms cannot add; for the harvest tests.
 *
 * usage: sign-keypref SIGNER.pem KEY.pem [-c CERT.pem]... [-p PREF.pem]
 *		reads the entity on stdin, writes the DER signed-data on
 *		stdout; each -c adds a certificate to the set; -p adds one
 *		too and names it in encKeyPref by issuer and serial
 *
 * Exit 0 on success, 1 with a message on stderr otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define ENCKEYPREF	"1.2.840.113549.1.9.16.2.11"

/* die - print why and the OpenSSL errors, exit 1 */
static void
die(const char *what)
{
	fprintf(stderr, "sign-keypref: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

/* load_cert - a PEM certificate from a file */
static X509 *
load_cert(const char *path)
{
	FILE *fp = fopen(path, "r");
	X509 *x = fp != NULL ? PEM_read_X509(fp, NULL, NULL, NULL) : NULL;

	if (fp != NULL)
		fclose(fp);
	if (x == NULL)
		die(path);
	return x;
}

/*
 * pref_value - the encKeyPref value [0] IMPLICIT IssuerAndSerialNumber
 * (its SEQUENCE tag 0x30 becomes 0xA0), DER in *out
 */
static int
pref_value(X509 *x, unsigned char **out)
{
	unsigned char *nm = NULL, *sn = NULL, *v, *p;
	int nl = i2d_X509_NAME(X509_get_issuer_name(x), &nm);
	int sl = i2d_ASN1_INTEGER(X509_get_serialNumber(x), &sn);
	int cl = nl + sl, hl = cl < 128 ? 2 : cl < 256 ? 3 : 4;

	if (nl <= 0 || sl <= 0 || cl > 65535 ||
	    (v = malloc((size_t)(hl + cl))) == NULL)
		die("encKeyPref value");
	p = v;
	*p++ = 0xA0;
	if (hl == 3)
		*p++ = 0x81;
	else if (hl == 4) {
		*p++ = 0x82;
		*p++ = (unsigned char)(cl >> 8);
	}
	*p++ = (unsigned char)(cl & 0xff);
	memcpy(p, nm, (size_t)nl);
	memcpy(p + nl, sn, (size_t)sl);
	OPENSSL_free(nm);
	OPENSSL_free(sn);
	*out = v;
	return hl + cl;
}

int
main(int argc, char **argv)
{
	STACK_OF(X509) *certs = sk_X509_new_null();
	X509 *signer, *pref = NULL;
	EVP_PKEY *key;
	CMS_ContentInfo *cms;
	CMS_SignerInfo *si;
	BIO *in, *out;
	FILE *fp;
	int i;

	if (argc < 3)
		die("usage: sign-keypref SIGNER.pem KEY.pem [-c CERT]... "
		    "[-p PREF]");
	signer = load_cert(argv[1]);
	if ((fp = fopen(argv[2], "r")) == NULL ||
	    (key = PEM_read_PrivateKey(fp, NULL, NULL, NULL)) == NULL)
		die(argv[2]);
	fclose(fp);
	for (i = 3; i + 1 < argc; i += 2) {
		X509 *x = load_cert(argv[i + 1]);

		if (strcmp(argv[i], "-p") == 0)
			pref = x;
		else if (strcmp(argv[i], "-c") != 0)
			die("unknown option");
		sk_X509_push(certs, x);
	}
	in = BIO_new_fp(stdin, BIO_NOCLOSE);
	if ((cms = CMS_sign(signer, key, certs, NULL,
	    CMS_PARTIAL | CMS_BINARY)) == NULL ||
	    (si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0)) ==
	    NULL)
		die("CMS_sign");
	if (pref != NULL) {
		unsigned char *v;
		int vl = pref_value(pref, &v);

		/* a SEQUENCE-typed value is written as it stands, tag and all */
		if (!CMS_signed_add1_attr_by_txt(si, ENCKEYPREF,
		    V_ASN1_SEQUENCE, v, vl))
			die("encKeyPref attribute");
		free(v);
	}
	out = BIO_new_fp(stdout, BIO_NOCLOSE);
	if (!CMS_final(cms, in, NULL, CMS_BINARY) ||
	    i2d_CMS_bio(out, cms) != 1 || BIO_flush(out) != 1)
		die("CMS_final");
	BIO_free(out);
	BIO_free(in);
	CMS_ContentInfo_free(cms);
	sk_X509_pop_free(certs, X509_free);
	X509_free(signer);
	EVP_PKEY_free(key);
	return 0;
}
