/*
 * NAME
 *	smime-tool - drive kmilter's smime/mime API from the command line
 * SUMMARY
 *	smime-tool sign -c cert -k key [-C chain.pem] [-d sha256|sha384|sha512]
 *	    [-m detached|opaque] [-P enc.crt] [-i in] [-o out]
 *	    (-P publishes enc.crt: in the set with the -C chain, named by
 *	    an SMIMEEncryptionKeyPreference attribute)
 *	smime-tool encrypt -r cert [-r cert ...] [-a aes256|aes128|gcm]
 *	    [-p pkcs1|oaep] [-i in] [-o out]
 *	smime-tool decrypt -c cert -k key [-c cert -k key ...] [-i in] [-o out]
 *	smime-tool verify [-A cafile] [-f from] [-i in] [-o content]
 *	smime-tool recipients [-c cert ...] [-i in]
 *	smime-tool bench -c cert -k key -r cert [-r cert ...] [-s size] [-n count]
 *	smime-tool part -n N [-i in] [-o out]
 *	smime-tool unwrap [-i in] [-o out]
 * DESCRIPTION
 *	The input is a MIME entity (headers, empty line, body) or raw DER CMS
 *	("-" or no -i: stdin).  sign/encrypt write an entity; decrypt writes
 *	the inner entity; verify writes the signed content and prints the
 *	result as key=value lines on stderr.  recipients prints the
 *	RecipientInfo identifiers and, per -c certificate, "match N 0|1".
 *	bench times sign+encrypt of a size-byte entity count times.
 *	part writes part N (0-based, bytes as they are) of a multipart entity;
 *	unwrap writes the base64-decoded body of an entity (its raw CMS).
 *	Both use the mime module, so the interop tests can hand raw DER to
 *	gpgsm and cmsutil.
 *	-v raises the log verbosity (OpenSSL errors are logged at 1).
 * OWNERSHIP
 *	Everything is freed before exit.
 * ERRORS
 *	Exit 0 on success; 1 when the operation failed (verify: signature
 *	bad); 2 when verify found a good signature with an untrusted chain;
 *	3 for usage or I/O errors; the reason goes to stderr.
 * THREADS
 *	Single-threaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "log.h"
#include "mime.h"
#include "smime.h"
#include "smime_verify.h"

#define MAXC 16

/* usage - print the synopsis and exit */
static void
usage(void)
{
	fprintf(stderr, "usage: smime-tool sign|encrypt|decrypt|verify|"
	    "recipients|bench [options] (see the source header)\n");
	exit(3);
}

/* read_all - read a file ("-" for stdin) into memory */
static char *
read_all(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char *buf = NULL, *n;
	size_t cap = 0, got = 0, r;

	if (f == NULL) {
		perror(path);
		exit(3);
	}
	for (;;) {
		if (cap - got < 65536) {
			cap = cap ? cap * 2 : 1 << 20;
			if ((n = realloc(buf, cap)) == NULL) {
				fprintf(stderr, "out of memory\n");
				exit(3);
			}
			buf = n;
		}
		r = fread(buf + got, 1, cap - got, f);
		got += r;
		if (r == 0)
			break;
	}
	if (f != stdin)
		fclose(f);
	*len = got;
	return buf;
}

/* load_cert - read one PEM certificate */
static X509 *
load_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;

	if (f == NULL) {
		perror(path);
		exit(3);
	}
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x == NULL) {
		fprintf(stderr, "%s: not a PEM certificate\n", path);
		exit(3);
	}
	return x;
}

/* load_key - read one PEM private key */
static EVP_PKEY *
load_key(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k;

	if (f == NULL) {
		perror(path);
		exit(3);
	}
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (k == NULL) {
		fprintf(stderr, "%s: not a PEM private key\n", path);
		exit(3);
	}
	return k;
}

/* load_chain - read every PEM certificate of a file */
static STACK_OF(X509) *
load_chain(const char *path)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	FILE *f = fopen(path, "r");
	X509 *x;

	if (f == NULL || sk == NULL) {
		perror(path);
		exit(3);
	}
	while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL)
		sk_X509_push(sk, x);
	ERR_clear_error();
	fclose(f);
	return sk;
}

/* write_out - write a memory BIO's content to a file ("-" for stdout) */
static int
write_out(BIO *mem, const char *path)
{
	char *p;
	long n = BIO_get_mem_data(mem, &p);
	FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "wb");

	if (f == NULL) {
		perror(path);
		return 3;
	}
	if (n > 0 && fwrite(p, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		return 3;
	}
	if (f != stdout)
		fclose(f);
	else
		fflush(f);
	return 0;
}

/* now_sec - a monotonic clock in seconds */
static double
now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* bench - time sign(detached) + encrypt of a generated entity */
static int
bench(X509 *cert, EVP_PKEY *key, X509 **rc, size_t nr, size_t size,
    int count)
{
	char *ent = malloc(size + 128);
	struct kmerr err = { 0 };
	size_t off, i;
	double t0, t1;
	int n;

	if (ent == NULL)
		return 3;
	off = (size_t)snprintf(ent, 128, "Content-Type: text/plain; "
	    "charset=us-ascii\r\n\r\n");
	for (i = 0; off + i < size; i++)
		ent[off + i] = ((i % 72) == 70) ? '\r' : ((i % 72) == 71) ?
		    '\n' : (char)('a' + i % 26);
	size = off + i;
	t0 = now_sec();
	for (n = 0; n < count; n++) {
		BIO *s = BIO_new(BIO_s_mem()), *e = BIO_new(BIO_s_mem());
		char *p;
		long sl;

		if (smime_sign(ent, size, cert, key, NULL, SMIME_MD_SHA256,
		    SMIME_MODE_DETACHED, s, &err) != KM_OK) {
			fprintf(stderr, "sign: %s\n", err.msg);
			return 1;
		}
		sl = BIO_get_mem_data(s, &p);
		if (smime_encrypt(p, (size_t)sl, rc, nr,
		    SMIME_CIPHER_AES256_CBC, SMIME_PAD_PKCS1, e, &err) != KM_OK) {
			fprintf(stderr, "encrypt: %s\n", err.msg);
			return 1;
		}
		BIO_free(s);
		BIO_free(e);
	}
	t1 = now_sec();
	printf("bench size=%zu recipients=%zu count=%d total=%.3fs "
	    "per_message=%.3fms\n", size, nr, count, t1 - t0,
	    (t1 - t0) * 1000.0 / count);
	free(ent);
	return 0;
}

/* mimecmd - the part and unwrap commands */
static enum km_status
mimecmd(const char *cmd, const char *in, size_t len, int n, BIO *out,
    struct kmerr *err)
{
	struct mime_headers *h = NULL;
	struct mime_ctype *ct = NULL;
	struct mime_parts *ps = NULL;
	unsigned char *der = NULL;
	size_t hl, bo, dl = 0;
	enum km_status st;

	if ((st = mime_entity_split(in, len, &hl, &bo, err)) != KM_OK ||
	    (st = mime_headers_parse(in, hl, &h, err)) != KM_OK)
		goto out;
	if (strcmp(cmd, "unwrap") == 0) {
		if ((st = mime_base64_decode(in + bo, len - bo, &der, &dl, err)) == KM_OK)
			BIO_write(out, der, (int)dl);
		goto out;
	}
	if (mime_headers_get(h, "content-type") == NULL) {
		st = kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "no Content-Type");
		goto out;
	}
	if ((st = mime_ctype_parse(mime_headers_get(h, "content-type"), &ct,
	    err)) != KM_OK ||
	    (st = mime_multipart_split(in + bo, len - bo,
	    mime_ctype_param(ct, "boundary"), &ps, err)) != KM_OK)
		goto out;
	if (n < 0 || (size_t)n >= ps->count) {
		st = kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "no part %d (%zu parts)", n, ps->count);
		goto out;
	}
	BIO_write(out, in + bo + ps->part[n].off, (int)ps->part[n].len);
out:
	free(der);
	mime_parts_free(ps);
	mime_ctype_free(ct);
	mime_headers_free(h);
	return st;
}

/* main - parse the command and run it */
int
main(int argc, char **argv)
{
	const char *cmd, *inpath = "-", *outpath = "-", *cafile = NULL;
	const char *from = NULL, *chainpath = NULL;
	struct smime_publish pub = { NULL, NULL };
	X509 *certs[MAXC], *rcpts[MAXC];
	EVP_PKEY *keys[MAXC];
	size_t ncert = 0, nkey = 0, nrcpt = 0, len = 0, size = 20000, i;
	enum smime_digest md = SMIME_MD_SHA256;
	enum smime_sign_mode mode = SMIME_MODE_DETACHED;
	enum smime_cipher ciph = SMIME_CIPHER_AES256_CBC;
	enum smime_padding pad = SMIME_PAD_PKCS1;
	STACK_OF(X509) *chain = NULL;
	enum km_status st = KM_OK;
	struct kmerr err = { 0 };
	char *in = NULL;
	int c, verbose = 0, rc = 0, count = 1000;
	BIO *out;

	if (argc < 2)
		usage();
	cmd = argv[1];
	optind = 2;
	while ((c = getopt(argc, argv, "A:a:C:c:d:f:i:k:m:n:o:P:p:r:s:v")) !=
	    -1) {
		switch (c) {
		case 'A': cafile = optarg; break;
		case 'a':
			if (strcmp(optarg, "aes256") == 0)
				ciph = SMIME_CIPHER_AES256_CBC;
			else if (strcmp(optarg, "aes128") == 0)
				ciph = SMIME_CIPHER_AES128_CBC;
			else if (strcmp(optarg, "gcm") == 0)
				ciph = SMIME_CIPHER_AES256_GCM;
			else
				usage();
			break;
		case 'C': chainpath = optarg; break;
		case 'c':
			if (ncert == MAXC)
				usage();
			certs[ncert++] = load_cert(optarg);
			break;
		case 'd':
			if (strcmp(optarg, "sha256") == 0)
				md = SMIME_MD_SHA256;
			else if (strcmp(optarg, "sha384") == 0)
				md = SMIME_MD_SHA384;
			else if (strcmp(optarg, "sha512") == 0)
				md = SMIME_MD_SHA512;
			else
				usage();
			break;
		case 'f': from = optarg; break;
		case 'i': inpath = optarg; break;
		case 'k':
			if (nkey == MAXC)
				usage();
			keys[nkey++] = load_key(optarg);
			break;
		case 'm':
			if (strcmp(optarg, "detached") == 0)
				mode = SMIME_MODE_DETACHED;
			else if (strcmp(optarg, "opaque") == 0)
				mode = SMIME_MODE_OPAQUE;
			else
				usage();
			break;
		case 'n': count = atoi(optarg); break;
		case 'o': outpath = optarg; break;
		case 'P': pub.enc = load_cert(optarg); break;
		case 'p':
			if (strcmp(optarg, "pkcs1") == 0)
				pad = SMIME_PAD_PKCS1;
			else if (strcmp(optarg, "oaep") == 0)
				pad = SMIME_PAD_OAEP;
			else
				usage();
			break;
		case 'r':
			if (nrcpt == MAXC)
				usage();
			rcpts[nrcpt++] = load_cert(optarg);
			break;
		case 's': size = (size_t)strtoul(optarg, NULL, 10); break;
		case 'v': verbose++; break;
		default: usage();
		}
	}
	log_init("smime-tool", 0, 1, verbose);
	if (chainpath != NULL)
		chain = load_chain(chainpath);
	if ((out = BIO_new(BIO_s_mem())) == NULL)
		return 3;
	if (strcmp(cmd, "bench") == 0) {
		if (ncert < 1 || nkey < 1 || nrcpt < 1 || count < 1)
			usage();
		rc = bench(certs[0], keys[0], rcpts, nrcpt, size, count);
		goto done;
	}
	in = read_all(inpath, &len);
	if (strcmp(cmd, "sign") == 0) {
		if (ncert < 1 || nkey < 1)
			usage();
		pub.chain = chain;
		st = smime_sign_publish(in, len, certs[0], keys[0], chain, &pub,
		    md, mode, out, &err);
	} else if (strcmp(cmd, "encrypt") == 0) {
		if (nrcpt < 1)
			usage();
		st = smime_encrypt(in, len, rcpts, nrcpt, ciph, pad, out, &err);
	} else if (strcmp(cmd, "decrypt") == 0) {
		struct smime_keypair kp[MAXC];
		int matched = -1;

		if (ncert < 1 || ncert != nkey)
			usage();
		for (i = 0; i < ncert; i++) {
			kp[i].cert = certs[i];
			kp[i].key = keys[i];
		}
		st = smime_decrypt(NULL, in, len, kp, ncert, out, &matched,
		    &err);
		fprintf(stderr, "matched=%d\n", matched);
	} else if (strcmp(cmd, "verify") == 0) {
		struct smime_verify_result r;
		X509_STORE *store = NULL;

		if (cafile != NULL) {
			store = X509_STORE_new();
			if (store == NULL ||
			    X509_STORE_load_file(store, cafile) != 1) {
				fprintf(stderr, "%s: cannot load\n", cafile);
				return 3;
			}
		}
		st = smime_verify(NULL, in, len, store, from, &r, out, &err);
		X509_STORE_free(store);
		if (st == KM_OK) {
			fprintf(stderr, "opaque=%d\nsig_ok=%d\nchain_ok=%d\n"
			    "chain_error=%s\nfrom_match=%d\nnsigners=%d\n"
			    "subject=%s\nemail=%s\nfingerprint=%s\n"
			    "signing_time=%lld\ndigest=%s\ncanonical=%d\n", r.opaque,
			    r.sig_ok, r.chain_ok, r.chain_error, r.from_match,
			    r.nsigners, r.subject, r.email, r.fingerprint,
			    (long long)r.signing_time, r.digest, r.canonical);
			if (!r.sig_ok)
				fprintf(stderr, "reason=%s\n", err.msg);
			rc = !r.sig_ok ? 1 : !r.chain_ok ? 2 : 0;
		}
	} else if (strcmp(cmd, "recipients") == 0) {
		struct smime_envelope *env = NULL;

		st = smime_envelope_open(NULL, in, len, &env, &err);
		if (st == KM_OK) {
			char cb[64];
			const char *cn = smime_envelope_cipher(env, cb, sizeof(cb));

			printf("auth=%d\ncipher=%s\n", smime_envelope_is_auth(env),
			    cn ? cn : "(unreadable)");
			for (i = 0; i < smime_envelope_count(env); i++)
				printf("rid %s\n", smime_envelope_rid(env, i));
			for (i = 0; i < ncert; i++)
				printf("match %zu %d\n", i,
				    smime_envelope_match(env, certs[i]));
		}
		smime_envelope_free(env);
		goto done;
	} else if (strcmp(cmd, "part") == 0 || strcmp(cmd, "unwrap") == 0) {
		st = mimecmd(cmd, in, len, count, out, &err);
	} else
		usage();
	if (st != KM_OK) {
		fprintf(stderr, "smime-tool %s: %s: %s\n", cmd,
		    km_status_name(st), err.msg);
		rc = st == KM_PROTO ? 1 : 1;
	} else if (write_out(out, outpath) != 0)
		rc = 3;
done:
	free(in);
	BIO_free(out);
	for (i = 0; i < ncert; i++)
		X509_free(certs[i]);
	for (i = 0; i < nrcpt; i++)
		X509_free(rcpts[i]);
	for (i = 0; i < nkey; i++)
		EVP_PKEY_free(keys[i]);
	sk_X509_pop_free(chain, X509_free);
	return rc;
}
