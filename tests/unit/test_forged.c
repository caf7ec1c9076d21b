/*
 * test_forged - the Authentication-Results authserv-id parser, which
 * headers count as imitating kmilter's, forged_remove() on a message, and
 * entity_replace() lifting only Content-* headers out of a new entity.
 */
#include <stdlib.h>
#include <string.h>

#include "entity.h"
#include "forged.h"
#include "log.h"
#include "harness.h"

#define ID "mx.example.com"

TEST(plain_and_case)
{
	CHECK(ar_authserv_is(ID "; smime=pass", ID));
	CHECK(ar_authserv_is("MX.Example.COM; smime=pass", ID));
	CHECK(ar_authserv_is(ID, ID));
	CHECK(ar_authserv_is(" \t" ID " ; smime=pass", ID));
	CHECK(ar_authserv_is(ID "; none", ID));
}

TEST(folded)
{
	/* Postfix hands the value over with the fold kept as LF and the
	 * blank (seen in the lab: "\n\tmx.example.com; ..."); CRLF too. */
	CHECK(ar_authserv_is("\r\n\t" ID "; smime=pass", ID));
	CHECK(ar_authserv_is("\n\t" ID "; smime=pass", ID));
	CHECK(ar_authserv_is("\r\n " ID "\r\n\t; smime=pass", ID));
	CHECK(ar_authserv_is(ID "\r\n\t1; smime=pass", ID));
}

TEST(comments)
{
	CHECK(ar_authserv_is("(comment) " ID "; smime=pass", ID));
	CHECK(ar_authserv_is("(comment)" ID "; smime=pass", ID));
	CHECK(ar_authserv_is("(a (nested (deeper)) comment) " ID "; x=y", ID));
	CHECK(ar_authserv_is("(a \\) quoted paren) " ID "; x=y", ID));
	CHECK(ar_authserv_is("(one)\r\n\t(two) " ID "(after); x=y", ID));
	CHECK(ar_authserv_is("(" ID ") " ID "; x=y", ID));
	/* the id inside a comment is no id */
	CHECK(!ar_authserv_is("(" ID ") other.example; x=y", ID));
	/* unclosed comments: no authserv-id at all */
	CHECK(!ar_authserv_is("(unclosed " ID "; smime=pass", ID));
	CHECK(!ar_authserv_is("(a (b) " ID "; smime=pass", ID));
	CHECK(!ar_authserv_is("(trailing backslash \\", ID));
}

TEST(quoted_string)
{
	CHECK(ar_authserv_is("\"" ID "\"; smime=pass", ID));
	CHECK(ar_authserv_is("\"MX.example.com\" 1; smime=pass", ID));
	CHECK(ar_authserv_is("\"mx.exa\\mple.com\"; smime=pass", ID));
	CHECK(ar_authserv_is("\r\n\t\"" ID "\"\r\n\t; x", ID));
	/* unfolding drops the CRLF, not the blank after it */
	CHECK(!ar_authserv_is("\"mx.example\r\n\t.com\"; x", ID));
	CHECK(!ar_authserv_is("\"" ID ".evil\"; smime=pass", ID));
	CHECK(!ar_authserv_is("\"mx.example\"; smime=pass", ID));
	CHECK(!ar_authserv_is("\"\"; smime=pass", ID));
}

TEST(version)
{
	CHECK(ar_authserv_is(ID " 1; smime=pass", ID));
	CHECK(ar_authserv_is(ID " (v) 1 (c); smime=pass", ID));
	CHECK(ar_authserv_is(ID "(c)1; smime=pass", ID));
}

TEST(other_ids)
{
	CHECK(!ar_authserv_is("other.example; spf=pass", ID));
	CHECK(!ar_authserv_is(ID ".evil.example; smime=pass", ID));
	CHECK(!ar_authserv_is(ID "x; smime=pass", ID));
	CHECK(!ar_authserv_is("x" ID "; smime=pass", ID));
	CHECK(!ar_authserv_is("mx.example.co; smime=pass", ID));
	CHECK(!ar_authserv_is(ID "\xc2\xa0; smime=pass", ID));
	CHECK(!ar_authserv_is("smime=pass " ID ";", ID));
}

TEST(tspecial_ends_token)
{
	/* a token ends at a tspecial: removing more than needed is safe */
	CHECK(ar_authserv_is(ID "/x; smime=pass", ID));
	CHECK(ar_authserv_is(ID "\"; smime=pass", ID));
	CHECK(ar_authserv_is(ID "=pass", ID));
}

TEST(empty_and_garbage)
{
	CHECK(!ar_authserv_is("", ID));
	CHECK(!ar_authserv_is("   \r\n\t ", ID));
	CHECK(!ar_authserv_is("()", ID));
	CHECK(!ar_authserv_is(";;;;", ID));
	CHECK(!ar_authserv_is("\x01\x02\x03", ID));
	CHECK(!ar_authserv_is(")(" ID, ID));
	CHECK(!ar_authserv_is(NULL, ID));
	CHECK(!ar_authserv_is(ID "; x", ""));
	CHECK(!ar_authserv_is(ID "; x", NULL));
	CHECK(!ar_authserv_is("\"", ID));
	CHECK(!ar_authserv_is("\"\\", ID));
	/* an unclosed quoted-string that says the id is taken as the id */
	CHECK(ar_authserv_is("\"" ID, ID));
}

TEST(very_long)
{
	size_t n = 1 << 20;
	char *v = malloc(n + sizeof(ID) + 16);
	size_t o = 0;

	CHECK(v != NULL);
	/* deeply nested comments, then the id */
	for (size_t i = 0; i < n / 2; i++)
		v[o++] = '(';
	for (size_t i = 0; i < n / 2; i++)
		v[o++] = ')';
	strcpy(v + o, " " ID "; smime=pass");
	CHECK(ar_authserv_is(v, ID));
	/* the same, never closed */
	v[n - 1] = 'x';
	CHECK(!ar_authserv_is(v, ID));
	/* a megabyte of folding white space */
	for (o = 0; o < n; o++)
		v[o] = "\r\n\t "[o % 4];
	strcpy(v + o, ID ";");
	CHECK(ar_authserv_is(v, ID));
	/* a megabyte-long token that starts with the id */
	memset(v, 'a', n);
	memcpy(v, ID, sizeof(ID) - 1);
	v[n] = '\0';
	CHECK(!ar_authserv_is(v, ID));
	free(v);
}

TEST(is_ours)
{
	CHECK(forged_is_ours("X-Kmilter-Decrypted", "yes", ID));
	CHECK(forged_is_ours("x-kmilter-anything", "", ID));
	CHECK(forged_is_ours("X-KMILTER", "", ID));
	CHECK(forged_is_ours("Authentication-Results", ID "; smime=pass", ID));
	CHECK(forged_is_ours("authentication-results", "\r\n\t" ID "; smime=pass", ID));
	CHECK(forged_is_ours("Authentication-Results ", ID "; smime=pass", ID));
	CHECK(!forged_is_ours("Authentication-Results", "other.example; spf=pass", ID));
	CHECK(!forged_is_ours("Authentication-Results-X", ID "; smime=pass", ID));
	CHECK(!forged_is_ours("ARC-Authentication-Results", "i=1; " ID "; x", ID));
	CHECK(!forged_is_ours("X-Other", ID "; smime=pass", ID));
	CHECK(!forged_is_ours("From", ID, ID));
}

/* a message with these headers (name, value pairs, NULL-terminated) */
static struct message *
make_message(const char *const *hv)
{
	struct message *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	for (; hv[0] != NULL; hv += 2)
		if (message_add_header(m, hv[0], hv[1]) != KM_OK)
			abort();
	return m;
}

static void
free_message(struct message *m)
{
	for (int i = 0; i < m->nheaders; i++) {
		free(m->headers[i].name);
		free(m->headers[i].value);
	}
	free(m->headers);
	free(m);
}

/* has_change - is there a change (name, index, value or NULL) in the verdict? */
static int
has_change(const struct verdict *v, const char *name, int index, const char *value)
{
	for (int i = 0; i < v->nchanges; i++) {
		const struct header_change *c = &v->changes[i];

		if (strcmp(c->name, name) == 0 && c->index == index &&
		    (value == NULL ? c->value == NULL : c->value && strcmp(c->value, value) == 0))
			return 1;
	}
	return 0;
}

TEST(remove_in_order)
{
	static const char *const hv[] = {
		"Received", "from outside",
		"Authentication-Results", "other.example; spf=pass",
		"Authentication-Results", "\r\n\t" ID "; smime=pass",
		"X-Kmilter-Decrypted", "yes",
		"Authentication-Results", "(c) " ID "; smime=pass",
		"Subject", "hi",
		"Authentication-Results", "another.example; dkim=pass",
		"x-kmilter-decrypted", "again",
		NULL
	};
	struct kmilter_conf conf;
	struct session s;
	struct verdict v;
	struct message *m = make_message(hv);

	CHECK(m != NULL);
	memset(&conf, 0, sizeof(conf));
	memset(&s, 0, sizeof(s));
	conf.in_authserv_id = (char *)ID;
	s.conf = &conf;
	s.msg = m;
	verdict_init(&v);
	CHECK_EQ_INT(forged_remove(&s, &v), 4);
	CHECK_EQ_INT(v.nchanges, 4);
	CHECK(v.kind == VERDICT_REWRITE);
	CHECK(v.body == NULL);
	/* last first, each index among headers of that very name */
	CHECK_EQ_STR(v.changes[0].name, "x-kmilter-decrypted");
	CHECK_EQ_INT(v.changes[0].index, 2);
	CHECK(has_change(&v, "Authentication-Results", 3, NULL));
	CHECK(has_change(&v, "X-Kmilter-Decrypted", 1, NULL));
	CHECK(has_change(&v, "Authentication-Results", 2, NULL));
	CHECK(!has_change(&v, "Authentication-Results", 1, NULL));
	CHECK(!has_change(&v, "Authentication-Results", 4, NULL));
	CHECK_EQ_INT(v.changes[1].index, 3);
	CHECK_EQ_INT(v.changes[3].index, 2);
	verdict_clear(&v);

	/* nothing to remove: the verdict stays a pass */
	free_message(m);
	m = make_message((const char *const[]){ "Authentication-Results",
	    "other.example; spf=pass", "Subject", "x", NULL });
	s.msg = m;
	CHECK_EQ_INT(forged_remove(&s, &v), 0);
	CHECK(v.kind == VERDICT_PASS);
	CHECK_EQ_INT(v.nchanges, 0);
	free_message(m);
}

TEST(entity_lifts_only_content_headers)
{
	static const char *const hv[] = {
		"From", "Dave <dave@outside.example>",
		"MIME-Version", "1.0",
		"Content-Type", "application/pkcs7-mime; smime-type=enveloped-data",
		"Content-Transfer-Encoding", "base64",
		NULL
	};
	static const char ent[] =
	    "Content-Type: text/plain; charset=us-ascii; hp=\"cipher\"\r\n"
	    "From: CEO <ceo@example.com>\r\n"
	    "Authentication-Results: " ID "; smime=pass\r\n"
	    "X-Kmilter-Decrypted: yes\r\n"
	    "Received: from nowhere\r\n"
	    "Subject: the real subject\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Transfer-Encoding: 7bit\r\n"
	    "\r\n"
	    "hello\r\n";
	struct message *m = make_message(hv);
	struct verdict v;
	struct kmerr err = { 0 };

	CHECK(m != NULL);
	verdict_init(&v);
	CHECK(entity_replace(&v, m, ent, sizeof(ent) - 1, &err) == KM_OK);
	/* the old Content-* deleted, the new Content-* added, nothing else */
	CHECK(has_change(&v, "Content-Type", 1, NULL));
	CHECK(has_change(&v, "Content-Transfer-Encoding", 1, NULL));
	CHECK(has_change(&v, "Content-Type", 0, "text/plain; charset=us-ascii; hp=\"cipher\""));
	CHECK(has_change(&v, "Content-Transfer-Encoding", 0, "7bit"));
	CHECK_EQ_INT(v.nchanges, 4);
	for (int i = 0; i < v.nchanges; i++)
		CHECK(strncmp(v.changes[i].name, "Content-", 8) == 0);
	CHECK(v.body != NULL && v.bodylen == 7 && memcmp(v.body, "hello\r\n", 7) == 0);
	verdict_clear(&v);
	free_message(m);
}

static const struct test_case tests[] = {
	T(plain_and_case), T(folded), T(comments), T(quoted_string), T(version),
	T(other_ids), T(tspecial_ends_token), T(empty_and_garbage), T(very_long), T(is_ours),
	T(remove_in_order), T(entity_lifts_only_content_headers),
	{ 0 }
};

int
main(int argc, char **argv)
{
	log_init("test_forged", 0, 1, 0);
	return harness_main(argc, argv, tests);
}
