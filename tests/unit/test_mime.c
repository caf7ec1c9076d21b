/*
 * test_mime.c - unit tests for the header, Content-Type, multipart and
 * base64 parsers of milter/mime.c, mime_ctype.c and mime_body.c.
 */
#include <time.h>

#include "harness.h"

#include "mime.h"

#define S(x) x, sizeof(x) - 1

TEST(headers_basic_order_and_case)
{
	struct mime_headers *h = NULL;
	struct kmerr err = { 0 };
	const char blk[] = "From: a@example.org\r\nTo: b@example.org\r\n"
	    "Subject: hi\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\nbody";

	CHECK_EQ_INT(mime_headers_parse(S(blk), &h, &err), KM_OK);
	CHECK_EQ_INT(mime_headers_count(h), 5);
	CHECK_EQ_STR(mime_headers_name(h, 0), "From");
	CHECK_EQ_STR(mime_headers_value(h, 1), "b@example.org");
	CHECK_EQ_STR(mime_headers_get(h, "SUBJECT"), "hi");
	CHECK_EQ_STR(mime_headers_get(h, "X-DUP"), "1");
	CHECK_EQ_STR(mime_headers_value(h, 4), "2");
	CHECK(mime_headers_get(h, "Cc") == NULL);
	CHECK(mime_headers_name(h, 5) == NULL);
	h = mime_headers_free(h);
	CHECK(h == NULL);
}

TEST(headers_folded_lf_and_crlf)
{
	struct mime_headers *h = NULL;
	struct kmerr err = { 0 };
	const char crlf[] = "Content-Type: multipart/signed;\r\n"
	    "\tprotocol=\"application/pkcs7-signature\";\r\n"
	    "  boundary=x  \r\nSubject: one\r\n two\r\n";
	const char lf[] = "Subject:   a\n\tb\nX: y\n";

	CHECK_EQ_INT(mime_headers_parse(S(crlf), &h, &err), KM_OK);
	CHECK_EQ_INT(mime_headers_count(h), 2);
	CHECK_EQ_STR(mime_headers_value(h, 0), "multipart/signed;"
	    "\tprotocol=\"application/pkcs7-signature\";  boundary=x");
	CHECK_EQ_STR(mime_headers_get(h, "subject"), "one two");
	mime_headers_free(h);
	CHECK_EQ_INT(mime_headers_parse(S(lf), &h, &err), KM_OK);
	CHECK_EQ_STR(mime_headers_get(h, "subject"), "a\tb");
	CHECK_EQ_STR(mime_headers_get(h, "x"), "y");
	mime_headers_free(h);
}

TEST(headers_no_final_newline_and_empty_value)
{
	struct mime_headers *h = NULL;
	struct kmerr err = { 0 };

	CHECK_EQ_INT(mime_headers_parse(S("A:\r\nB: last"), &h, &err), KM_OK);
	CHECK_EQ_INT(mime_headers_count(h), 2);
	CHECK_EQ_STR(mime_headers_get(h, "a"), "");
	CHECK_EQ_STR(mime_headers_get(h, "b"), "last");
	mime_headers_free(h);
	/* Obsolete white space before the colon. */
	CHECK_EQ_INT(mime_headers_parse(S("Subject : x\r\n"), &h, &err), KM_OK);
	CHECK_EQ_STR(mime_headers_get(h, "subject"), "x");
	mime_headers_free(h);
}

TEST(headers_malformed)
{
	struct mime_headers *h = (struct mime_headers *)1;
	struct kmerr err = { 0 };

	CHECK_EQ_INT(mime_headers_parse(S("From: a\r\nno colon here\r\n"), &h,
	    &err), KM_PROTO);
	CHECK(h == NULL);
	/* the error object says the same as the return, and why */
	CHECK_EQ_INT(err.status, KM_PROTO);
	CHECK(kmerr_is(&err, KMERR_BADINPUT));
	CHECK(strstr(err.msg, "line 2") != NULL);
	CHECK(strstr(err.msg, "colon") != NULL);
	CHECK_EQ_INT(mime_headers_parse(S("NoColon\r\n"), &h, &err), KM_PROTO);
	CHECK(strstr(err.msg, "no colon") != NULL);
	CHECK_EQ_INT(mime_headers_parse(S(" folded: first\r\n"), &h, &err), KM_PROTO);
	CHECK(strstr(err.msg, "continuation") != NULL);
	CHECK_EQ_INT(mime_headers_parse(S("Na\xe9me: v\r\n"), &h, &err), KM_PROTO);
	CHECK(strstr(err.msg, "0xe9") != NULL);
	CHECK_EQ_INT(mime_headers_parse(S("A: b\0c\r\n"), &h, &err), KM_PROTO);
	CHECK(strstr(err.msg, "NUL") != NULL);
	CHECK_EQ_INT(mime_headers_parse(S(": empty name\r\n"), &h, &err), KM_PROTO);
	/* 8-bit in a value is fine (RFC 6532). */
	CHECK_EQ_INT(mime_headers_parse(S("Subject: caf\xc3\xa9\r\n"), &h,
	    &err), KM_OK);
	CHECK_EQ_STR(mime_headers_get(h, "subject"), "caf\xc3\xa9");
	mime_headers_free(h);
	/* NULL err must not crash. */
	CHECK_EQ_INT(mime_headers_parse(S("bad\r\n"), &h, NULL), KM_PROTO);
}

TEST(entity_split)
{
	size_t hl = 0, bo = 0;
	struct kmerr err = { 0 };
	const char e1[] = "A: b\r\nC: d\r\n\r\nbody\r\n";
	const char e2[] = "A: b\n\nbody";
	const char e3[] = "\r\nonly body";

	CHECK_EQ_INT(mime_entity_split(S(e1), &hl, &bo, &err),
	    KM_OK);
	CHECK_EQ_INT(hl, 12);
	CHECK_EQ_STR(e1 + bo, "body\r\n");
	CHECK_EQ_INT(mime_entity_split(S(e2), &hl, &bo, &err),
	    KM_OK);
	CHECK_EQ_INT(hl, 5);
	CHECK_EQ_STR(e2 + bo, "body");
	CHECK_EQ_INT(mime_entity_split(S(e3), &hl, &bo, &err),
	    KM_OK);
	CHECK_EQ_INT(hl, 0);
	CHECK_EQ_INT(bo, 2);
	CHECK_EQ_INT(mime_entity_split(S("A: b\r\nC: d\r\n"), &hl, &bo, &err), KM_PROTO);
	CHECK(strstr(err.msg, "empty line") != NULL);
}

TEST(ctype_params_quotes_comments)
{
	struct mime_ctype *ct = NULL;
	struct kmerr err = { 0 };

	CHECK_EQ_INT(mime_ctype_parse("Multipart/Signed (a (nested) "
	    "comment); Protocol=\"application/pkcs7-signature\"; "
	    "micalg=sha-256;\r\n\tboundary=\"----=_Part \\\"q\\\" 1\"; ",
	    &ct, &err), KM_OK);
	CHECK_EQ_STR(mime_ctype_type(ct), "multipart");
	CHECK_EQ_STR(mime_ctype_subtype(ct), "signed");
	CHECK_EQ_STR(mime_ctype_param(ct, "protocol"),
	    "application/pkcs7-signature");
	CHECK_EQ_STR(mime_ctype_param(ct, "MICALG"), "sha-256");
	CHECK_EQ_STR(mime_ctype_param(ct, "boundary"), "----=_Part \"q\" 1");
	CHECK(mime_ctype_param(ct, "charset") == NULL);
	CHECK_EQ_INT(mime_smime_kind(ct), MIME_SMIME_SIGNED_DETACHED);
	mime_ctype_free(ct);

	CHECK_EQ_INT(mime_ctype_parse("text/plain; charset=UTF-8; "
	    "name=a.txt; charset=latin1", &ct, &err), KM_OK);
	CHECK_EQ_STR(mime_ctype_param(ct, "charset"), "UTF-8");
	CHECK_EQ_STR(mime_ctype_param(ct, "name"), "a.txt");
	CHECK_EQ_INT(mime_smime_kind(ct), MIME_SMIME_NONE);
	mime_ctype_free(ct);
}

TEST(ctype_malformed)
{
	struct mime_ctype *ct = (struct mime_ctype *)1;
	struct kmerr err = { 0 };

	CHECK_EQ_INT(mime_ctype_parse("text", &ct, &err),
	    KM_PROTO);
	CHECK(ct == NULL);
	CHECK(strstr(err.msg, "'/'") != NULL);
	CHECK_EQ_INT(mime_ctype_parse("text/", &ct, &err),
	    KM_PROTO);
	CHECK(strstr(err.msg, "subtype") != NULL);
	CHECK_EQ_INT(mime_ctype_parse("multipart/mixed; boundary=\"abc",
	    &ct, &err), KM_PROTO);
	CHECK(strstr(err.msg, "unterminated quoted") != NULL);
	CHECK_EQ_INT(mime_ctype_parse("text/plain (oops", &ct, &err), KM_PROTO);
	CHECK(strstr(err.msg, "unterminated comment") != NULL);
	CHECK_EQ_INT(mime_ctype_parse("text/plain; charset", &ct, &err), KM_PROTO);
	CHECK(strstr(err.msg, "without '='") != NULL);
	CHECK_EQ_INT(mime_ctype_parse("text/plain junk", &ct, &err), KM_PROTO);
	CHECK_EQ_INT(mime_ctype_parse("te\xffxt/plain", &ct, &err), KM_PROTO);
	CHECK_EQ_INT(mime_ctype_parse("", &ct, &err), KM_PROTO);
	CHECK_EQ_INT(mime_ctype_parse("text/plain; a=\"x\\", &ct, &err), KM_PROTO);
	CHECK_EQ_INT(mime_ctype_parse("text/plain; a=", &ct, NULL),
	    KM_PROTO);
}

TEST(smime_kinds)
{
	static const struct { const char *ct; enum mime_smime_kind k; } v[] = {
		{ "application/pkcs7-mime; smime-type=enveloped-data; "
		  "name=smime.p7m", MIME_SMIME_ENVELOPED },
		{ "application/x-pkcs7-mime; smime-type=\"enveloped-data\"",
		  MIME_SMIME_ENVELOPED },
		{ "application/pkcs7-mime; smime-type=authEnveloped-data",
		  MIME_SMIME_AUTH_ENVELOPED },
		{ "application/pkcs7-mime; smime-type=AUTHENVELOPED-DATA",
		  MIME_SMIME_AUTH_ENVELOPED },
		{ "application/pkcs7-mime; smime-type=signed-data",
		  MIME_SMIME_SIGNED_OPAQUE },
		{ "application/pkcs7-mime; smime-type=certs-only",
		  MIME_SMIME_CERTS_ONLY },
		{ "application/pkcs7-mime; smime-type=compressed-data",
		  MIME_SMIME_COMPRESSED },
		{ "application/pkcs7-mime; name=smime.p7m",
		  MIME_SMIME_PKCS7_UNKNOWN },
		{ "multipart/signed; protocol=\"application/x-pkcs7-signature\";"
		  " boundary=b", MIME_SMIME_SIGNED_DETACHED },
		{ "multipart/signed; protocol=\"application/pgp-signature\"; "
		  "boundary=b", MIME_SMIME_NONE },
		{ "multipart/signed; boundary=b", MIME_SMIME_NONE },
		{ "application/pkcs7-signature", MIME_SMIME_NONE },
		{ "text/plain", MIME_SMIME_NONE },
	};
	struct kmerr err = { 0 };

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct mime_ctype *ct = NULL;

		CHECK_EQ_INT(mime_ctype_parse(v[i].ct, &ct, &err),
		    KM_OK);
		CHECK_EQ_INT(mime_smime_kind(ct), v[i].k);
		mime_ctype_free(ct);
	}
	CHECK_EQ_INT(mime_smime_kind(NULL), MIME_SMIME_NONE);
	CHECK_EQ_STR(mime_smime_kind_name(MIME_SMIME_AUTH_ENVELOPED),
	    "authEnveloped-data");
}

TEST(multipart_crlf)
{
	struct mime_parts *ps = NULL;
	struct kmerr err = { 0 };
	const char b[] = "preamble\r\n--xyz\r\nA: 1\r\n\r\npart one\r\n"
	    "--xyz  \r\nB: 2\r\n\r\npart two\r\n\r\n--xyz--\r\nepilogue\r\n";

	CHECK_EQ_INT(mime_multipart_split(S(b), "xyz", &ps, &err), KM_OK);
	CHECK_EQ_INT(ps->count, 2);
	CHECK_EQ_INT(ps->preamble_len, 10);
	CHECK_EQ_INT(ps->part[0].len, strlen("A: 1\r\n\r\npart one"));
	CHECK(memcmp(b + ps->part[0].off, "A: 1\r\n\r\npart one",
	    ps->part[0].len) == 0);
	/* The line break before the delimiter is not content; an empty
	   line before it is. */
	CHECK_EQ_INT(ps->part[1].len, strlen("B: 2\r\n\r\npart two\r\n"));
	CHECK(memcmp(b + ps->part[1].off, "B: 2\r\n\r\npart two\r\n",
	    ps->part[1].len) == 0);
	CHECK_EQ_STR(b + ps->end, "epilogue\r\n");
	mime_parts_free(ps);
}

TEST(multipart_lf_and_prefix_boundaries)
{
	struct mime_parts *ps = NULL;
	struct kmerr err = { 0 };
	/* "--ab" is a prefix of "--abc": must not split there; "--ab" in
	   the middle of a line is not a delimiter either. */
	const char b[] = "--ab\nx --ab y\n--abc\nnot a delimiter\n--ab\n\n"
	    "--ab--";

	CHECK_EQ_INT(mime_multipart_split(S(b), "ab", &ps, &err),
	    KM_OK);
	CHECK_EQ_INT(ps->count, 2);
	CHECK_EQ_INT(ps->preamble_len, 0);
	CHECK(memcmp(b + ps->part[0].off, "x --ab y\n--abc\nnot a delimiter",
	    ps->part[0].len) == 0);
	CHECK_EQ_INT(ps->part[0].len, strlen("x --ab y\n--abc\nnot a "
	    "delimiter"));
	CHECK_EQ_INT(ps->part[1].len, 0);
	CHECK_EQ_INT(ps->end, sizeof(b) - 1);
	mime_parts_free(ps);
}

TEST(multipart_malformed)
{
	struct mime_parts *ps = (struct mime_parts *)1;
	struct kmerr err = { 0 };

	CHECK_EQ_INT(mime_multipart_split(S("--a\r\nx\r\n--a--\r\n"), NULL,
	    &ps, &err), KM_PROTO);
	CHECK(ps == NULL);
	CHECK(strstr(err.msg, "without a boundary") != NULL);
	CHECK_EQ_INT(mime_multipart_split(S("no delimiters at all\r\n"), "a",
	    &ps, &err), KM_PROTO);
	CHECK(strstr(err.msg, "no delimiter") != NULL);
	CHECK_EQ_INT(mime_multipart_split(S("--a\r\npart\r\n--a\r\nmore"),
	    "a", &ps, &err), KM_PROTO);
	CHECK(strstr(err.msg, "truncated") != NULL);
	CHECK_EQ_INT(mime_multipart_split(S("--a\r\npart"), "a", &ps, &err), KM_PROTO);
	CHECK_EQ_INT(mime_multipart_split(S("--a--\r\n"), "a", &ps, &err), KM_PROTO);
	CHECK_EQ_INT(mime_multipart_split(S("--a"), "a", &ps, &err), KM_PROTO);
	CHECK_EQ_INT(mime_multipart_split("", 0, "a", &ps, &err),
	    KM_PROTO);
	{
		char longb[80];

		memset(longb, 'b', 75);
		longb[75] = '\0';
		CHECK_EQ_INT(mime_multipart_split(S("x"), longb, &ps, &err), KM_PROTO);
	}
}

/* cpu_now - CPU seconds used by this process (not wall time: the machine is shared) */
static double
cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* near_delims - n bytes of lines that start with "--B" but are not the
   boundary, framed by a real opening and closing delimiter */
static char *
near_delims(size_t n, size_t *len)
{
	char *b = malloc(n + 64);
	size_t off;

	if (b == NULL)
		return NULL;
	off = (size_t)sprintf(b, "--B\r\n");
	while (off + 8 < n) {
		memcpy(b + off, "--Bx\r\n--", 8);
		off += 8;
	}
	off += (size_t)sprintf(b + off, "\r\n--B--\r\n");
	*len = off;
	return b;
}

/* split_cpu - least CPU time of 3 splits of b (the least is the least disturbed) */
static double
split_cpu(const char *b, size_t len, int *ok)
{
	double best = 1e9;
	struct kmerr err = { 0 };

	*ok = 1;
	for (int r = 0; r < 3; r++) {
		struct mime_parts *ps = NULL;
		double t0 = cpu_now(), t;

		if (mime_multipart_split(b, len, "B", &ps, &err) != KM_OK ||
		    ps->count != 1)
			*ok = 0;
		t = cpu_now() - t0;
		mime_parts_free(ps);
		if (t < best)
			best = t;
	}
	return best;
}

TEST(multipart_large_linear)
{
	/* Lines that start with "--" but are not the boundary, at 2 MB and
	   at 8 MB: the 4 times larger body must cost less than 8 times the
	   CPU.  Linear code measures a ratio of about 4 (2.7-4.1 here, least
	   of 3 runs); a rescan from the start of the body per line (quadratic)
	   gives about 16.  8 sits between the two with room for noise on
	   either side.  Each run is also timed absolutely: 8 MB takes about
	   7 ms (20 ms under ASan), so 1 s is a wide but real ceiling. */
	size_t n = 2u << 20, l1, l4;
	char *b1 = near_delims(n, &l1), *b4 = near_delims(4 * n, &l4);
	double c1, c4;
	int ok1, ok4;

	CHECK(b1 != NULL && b4 != NULL);
	c1 = split_cpu(b1, l1, &ok1);
	c4 = split_cpu(b4, l4, &ok4);
	free(b1);
	free(b4);
	CHECK(ok1 && ok4);
	printf("    FIGURE multipart split CPU: %.2f ms at 2 MB, %.2f ms at 8 MB, ratio %.2f\n",
	    c1 * 1e3, c4 * 1e3, c1 > 0 ? c4 / c1 : 0.0);
	CHECK(c4 < 1.0);
	CHECK(c4 < 8 * c1);
}

TEST(base64_ok)
{
	unsigned char *out = NULL;
	size_t n = 0;
	struct kmerr err = { 0 };

	CHECK_EQ_INT(mime_base64_decode(S("aGVsbG8g\r\nd29y bGQ=\r\n"), &out,
	    &n, &err), KM_OK);
	CHECK_EQ_INT(n, 11);
	CHECK(memcmp(out, "hello world", 11) == 0);
	free(out);
	CHECK_EQ_INT(mime_base64_decode(S("YQ=="), &out, &n, &err), KM_OK);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(out[0], 'a');
	free(out);
	CHECK_EQ_INT(mime_base64_decode(S(""), &out, &n, &err),
	    KM_OK);
	CHECK_EQ_INT(n, 0);
	free(out);
	CHECK_EQ_INT(mime_base64_decode(S("+/+/"), &out, &n, &err), KM_OK);
	CHECK_EQ_INT(n, 3);
	CHECK_EQ_INT(out[0], 0xfb);
	CHECK_EQ_INT(out[2], 0xbf);
	free(out);
}

TEST(base64_malformed)
{
	unsigned char *out = (unsigned char *)1;
	size_t n = 7;
	struct kmerr err = { 0 };

	CHECK_EQ_INT(mime_base64_decode(S("aGVsbG8"), &out, &n, &err), KM_PROTO);
	CHECK(out == NULL);
	CHECK_EQ_INT(n, 0);
	CHECK(strstr(err.msg, "truncated") != NULL);
	CHECK_EQ_INT(mime_base64_decode(S("aGVs*G8="), &out, &n, &err), KM_PROTO);
	CHECK(strstr(err.msg, "invalid byte 0x2a at offset 4") != NULL);
	CHECK_EQ_INT(mime_base64_decode(S("YQ==YQ=="), &out, &n, &err), KM_PROTO);
	CHECK(strstr(err.msg, "after the padding") != NULL);
	CHECK_EQ_INT(mime_base64_decode(S("Y==="), &out, &n, &err), KM_PROTO);
	CHECK_EQ_INT(mime_base64_decode(S("YQ=a"), &out, &n, &err), KM_PROTO);
	CHECK_EQ_INT(mime_base64_decode(S("YQ="), &out, &n, &err), KM_PROTO);
	CHECK_EQ_INT(mime_base64_decode(S("\xc3\xa9QQQ"), &out, &n, NULL),
	    KM_PROTO);
}

static const struct test_case tests[] = {
	T(headers_basic_order_and_case),
	T(headers_folded_lf_and_crlf),
	T(headers_no_final_newline_and_empty_value),
	T(headers_malformed),
	T(entity_split),
	T(ctype_params_quotes_comments),
	T(ctype_malformed),
	T(smime_kinds),
	T(multipart_crlf),
	T(multipart_lf_and_prefix_boundaries),
	T(multipart_malformed),
	T(multipart_large_linear),
	T(base64_ok),
	T(base64_malformed),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
