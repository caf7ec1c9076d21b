/*
 * cms-splice - forge RecipientInfos of an enveloped CMS, for the tests
 * that check kmilter decrypts only for who may read a message.
 *
 * usage: cms-splice add-ri IN.der DONOR.der OUT.der
 *		append DONOR's RecipientInfos (which wrap DONOR's content
 *		key, not IN's) to IN's
 *	  cms-splice set-rid IN.der INDEX CERT.pem OUT.der
 *		make key-transport RecipientInfo INDEX name CERT (its serial;
 *		CERT must have the same issuer), keeping its encryptedKey
 *
 * RecipientInfos are not integrity protected: both forgeries produce a
 * message that still parses, with a RecipientInfo naming CERT's owner
 * that does not give that owner the content key.  Exit 0 on success,
 * 1 with a message on stderr otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* die - print why and the OpenSSL errors, exit 1 */
static void
die(const char *what)
{
	fprintf(stderr, "cms-splice: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

/* read_cms - a DER CMS from a file */
static CMS_ContentInfo *
read_cms(const char *path)
{
	BIO *b = BIO_new_file(path, "rb");
	CMS_ContentInfo *cms;

	if (b == NULL)
		die(path);
	if ((cms = d2i_CMS_bio(b, NULL)) == NULL)
		die("not a DER CMS");
	BIO_free(b);
	return cms;
}

/* write_cms - a CMS as DER into a file */
static void
write_cms(CMS_ContentInfo *cms, const char *path)
{
	BIO *b = BIO_new_file(path, "wb");

	if (b == NULL || i2d_CMS_bio(b, cms) != 1 || BIO_flush(b) != 1)
		die(path);
	BIO_free(b);
}

/* add_ri - move the donor's RecipientInfos into cms */
static void
add_ri(CMS_ContentInfo *cms, CMS_ContentInfo *donor)
{
	STACK_OF(CMS_RecipientInfo) *to = CMS_get0_RecipientInfos(cms);
	STACK_OF(CMS_RecipientInfo) *from = CMS_get0_RecipientInfos(donor);

	if (to == NULL || from == NULL)
		die("not enveloped data");
	while (sk_CMS_RecipientInfo_num(from) > 0)
		if (!sk_CMS_RecipientInfo_push(to, sk_CMS_RecipientInfo_shift(from)))
			die("out of memory");
}

/* set_rid - RecipientInfo i names cert (same issuer, its serial) */
static void
set_rid(CMS_ContentInfo *cms, int i, X509 *cert)
{
	STACK_OF(CMS_RecipientInfo) *ris = CMS_get0_RecipientInfos(cms);
	CMS_RecipientInfo *ri;
	ASN1_OCTET_STRING *keyid = NULL;
	X509_NAME *issuer = NULL;
	ASN1_INTEGER *sno = NULL;

	if (ris == NULL || i < 0 || i >= sk_CMS_RecipientInfo_num(ris))
		die("no such RecipientInfo");
	ri = sk_CMS_RecipientInfo_value(ris, i);
	if (CMS_RecipientInfo_type(ri) != CMS_RECIPINFO_TRANS ||
	    !CMS_RecipientInfo_ktri_get0_signer_id(ri, &keyid, &issuer, &sno) ||
	    issuer == NULL || sno == NULL)
		die("RecipientInfo is not key transport by issuer and serial");
	if (X509_NAME_cmp(issuer, X509_get_issuer_name(cert)) != 0)
		die("the certificate has another issuer");
	if (!ASN1_STRING_copy(sno, X509_get0_serialNumber(cert)))
		die("out of memory");
}

int
main(int argc, char **argv)
{
	CMS_ContentInfo *cms, *donor;
	X509 *cert;
	FILE *fp;

	if (argc == 5 && strcmp(argv[1], "add-ri") == 0) {
		cms = read_cms(argv[2]);
		donor = read_cms(argv[3]);
		add_ri(cms, donor);
		write_cms(cms, argv[4]);
		CMS_ContentInfo_free(donor);
	} else if (argc == 6 && strcmp(argv[1], "set-rid") == 0) {
		cms = read_cms(argv[2]);
		if ((fp = fopen(argv[4], "r")) == NULL)
			die(argv[4]);
		if ((cert = PEM_read_X509(fp, NULL, NULL, NULL)) == NULL)
			die("not a PEM certificate");
		fclose(fp);
		set_rid(cms, atoi(argv[3]), cert);
		write_cms(cms, argv[5]);
		X509_free(cert);
	} else {
		fprintf(stderr, "usage: cms-splice add-ri IN.der DONOR.der OUT.der\n"
		    "       cms-splice set-rid IN.der INDEX CERT.pem OUT.der\n");
		return 2;
	}
	CMS_ContentInfo_free(cms);
	return 0;
}
