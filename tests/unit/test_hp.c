/*
 * test_hp - RFC 9788 header protection (milter/hp.c): the protected
 * headers of a decrypted or unwrapped entity replace the outer ones, each
 * field once, with HP-Outer for what differed; malformed protection
 * (duplicates, a foreign From, a bad header block, an unknown hp value)
 * applies nothing it should not; the entity kmilter signs or encrypts
 * carries the protected fields, hp="cipher"/"clear", HP-Outer and the
 * Legacy Display Element where they belong.
 */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "harness.h"
#include "hp.h"
#include "log.h"
#include "secmem.h"
#include "session.h"
#include "verdict.h"

#define OUTER_HEADERS \
	"From", "Dave <dave@partner.example>", \
	"To", "Bob <bob@example.com>", \
	"Subject", "[...]", \
	"Date", "Mon, 23 Nov 2026 10:00:00 +0000", \
	"Message-ID", "<1@partner.example>", \
	"MIME-Version", "1.0", \
	"Content-Type", "application/pkcs7-mime; smime-type=enveloped-data"

#define INNER_HEADERS \
	"From: Dave <dave@partner.example>\r\n" \
	"To: Bob <bob@example.com>\r\n" \
	"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n" \
	"Message-ID: <1@partner.example>\r\n"

/* count_changes - how many changes name this header */
static int
count_changes(const struct verdict *v, const char *name)
{
	int n = 0;

	for (int i = 0; i < v->nchanges; i++)
		n += strcmp(v->changes[i].name, name) == 0;
	return n;
}

/* apply - hp_apply() of ent on a message with these outer headers */
static int
apply(const char *const *hv, const char *ent, struct verdict *v, struct hp_report *r)
{
	struct message *m = fixture_message(hv);
	struct kmerr err;
	enum km_status st;

	verdict_init(v);
	st = hp_apply(v, m, ent, strlen(ent), r, &err);
	fixture_message_free(m);
	return st == KM_OK;
}

TEST(protected_replace_outer)
{
	static const char *const hv[] = { OUTER_HEADERS, NULL };
	static const char ent[] =
	    "Content-Type: text/plain; charset=us-ascii; hp=\"cipher\"\r\n"
	    INNER_HEADERS
	    "Subject: The real subject\r\n"
	    "Cc: Erin <erin@example.com>\r\n"
	    "HP-Outer: Subject: [...]\r\n"
	    "Received: from inside.example\r\n"
	    "Authentication-Results: mx.example.com; smime=pass\r\n"
	    "X-Kmilter-Decrypted: forged\r\n"
	    "\r\nhello\r\n";
	struct verdict v;
	struct hp_report r;

	CHECK(apply(hv, ent, &v, &r));
	CHECK_EQ_STR(r.hp, "cipher");
	/* Subject: the outer one changed once, its old value kept as HP-Outer */
	CHECK(fixture_has_change(&v, "Subject", 1, "The real subject"));
	CHECK_EQ_INT(count_changes(&v, "Subject"), 1);
	CHECK(fixture_has_change(&v, "HP-Outer", 0, "Subject: [...]"));
	CHECK_EQ_INT(count_changes(&v, "HP-Outer"), 1);
	/* Cc was not outside: added once */
	CHECK(fixture_has_change(&v, "Cc", 0, "Erin <erin@example.com>"));
	/* equal fields are left alone; nothing else is lifted */
	CHECK_EQ_INT(v.nchanges, 3);
	CHECK_EQ_STR(r.applied, "From,To,Cc,Subject,Date,Message-ID");
	CHECK_EQ_STR(r.skipped, "");
	CHECK_EQ_STR(r.outer, "Subject");
	verdict_clear(&v);
}

TEST(outer_duplicates_and_arrived_records)
{
	static const char *const hv[] = { OUTER_HEADERS, "Subject", "second outer",
	    "HP-Outer", "Subject: planted", "HP-Outer", "From: planted", NULL };
	static const char ent[] =
	    "Content-Type: text/plain; hp=clear\r\n" INNER_HEADERS
	    "Subject: real\r\n\r\nhello\r\n";
	struct verdict v;
	struct hp_report r;

	CHECK(apply(hv, ent, &v, &r));
	CHECK_EQ_STR(r.hp, "clear");
	/* two outer Subjects: the second deleted, the first changed, both recorded */
	CHECK(fixture_has_change(&v, "Subject", 2, NULL));
	CHECK(fixture_has_change(&v, "Subject", 1, "real"));
	CHECK(fixture_has_change(&v, "HP-Outer", 0, "Subject: second outer"));
	CHECK(fixture_has_change(&v, "HP-Outer", 0, "Subject: [...]"));
	/* the HP-Outer fields that came from outside are gone, last first */
	CHECK(fixture_has_change(&v, "HP-Outer", 2, NULL));
	CHECK(fixture_has_change(&v, "HP-Outer", 1, NULL));
	CHECK(v.changes[0].index == 2 && strcmp(v.changes[0].name, "HP-Outer") == 0);
	CHECK_EQ_INT(v.nchanges, 6);
	verdict_clear(&v);
}

TEST(duplicate_protected_not_applied)
{
	static const char *const hv[] = { OUTER_HEADERS, NULL };
	static const char ent[] =
	    "Content-Type: text/plain; hp=\"cipher\"\r\n" INNER_HEADERS
	    "Subject: one\r\nSubject: two\r\n\r\nhello\r\n";
	struct verdict v;
	struct hp_report r;

	CHECK(apply(hv, ent, &v, &r));
	CHECK_EQ_INT(count_changes(&v, "Subject"), 0);
	CHECK_EQ_INT(count_changes(&v, "HP-Outer"), 0);
	CHECK_EQ_STR(r.skipped, "Subject (duplicate)");
	CHECK_EQ_STR(r.applied, "From,To,Date,Message-ID");
	verdict_clear(&v);
}

TEST(foreign_from_not_applied)
{
	static const char *const hv[] = { OUTER_HEADERS, NULL };
	static const char ent[] =
	    "Content-Type: text/plain; hp=\"cipher\"\r\n"
	    "From: CEO <ceo@example.com>\r\nSubject: pay now\r\n\r\nhello\r\n";
	static const char same[] =
	    "Content-Type: text/plain; hp=\"cipher\"\r\n"
	    "From: \"Dave D.\" <DAVE@Partner.Example>\r\n\r\nhello\r\n";
	static const char *const nofrom[] = { "Subject", "x", NULL };
	struct verdict v;
	struct hp_report r;
	char buf[400];

	CHECK(apply(hv, ent, &v, &r));
	CHECK_EQ_INT(count_changes(&v, "From"), 0);
	CHECK(fixture_has_change(&v, "Subject", 1, "pay now"));
	CHECK_EQ_STR(r.skipped, "From (differs from the outer From)");
	hp_report_value(&r, buf, sizeof(buf));
	CHECK_EQ_STR(buf, "hp=cipher; applied=Subject; not-applied=From (differs from the "
	    "outer From); hp-outer=Subject");
	verdict_clear(&v);
	/* the same address (case aside) under another display name is applied */
	CHECK(apply(hv, same, &v, &r));
	CHECK(fixture_has_change(&v, "From", 1, "\"Dave D.\" <DAVE@Partner.Example>"));
	CHECK(fixture_has_change(&v, "HP-Outer", 0, "From: Dave <dave@partner.example>"));
	verdict_clear(&v);
	/* no outer From and no envelope sender: nothing to check it by */
	CHECK(apply(nofrom, same, &v, &r));
	CHECK_EQ_INT(count_changes(&v, "From"), 0);
	CHECK_EQ_STR(r.skipped, "From (differs from the outer From)");
	verdict_clear(&v);
}

TEST(malformed_protection_applies_nothing)
{
	static const char *const hv[] = { OUTER_HEADERS, NULL };
	static const char unknown[] =
	    "Content-Type: text/plain; hp=\"maybe\"\r\nSubject: x\r\n\r\nhello\r\n";
	static const char none[] =
	    "Content-Type: text/plain\r\nSubject: x\r\n\r\nhello\r\n";
	static const char badpart[] =
	    "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; "
	    "micalg=sha-256; boundary=\"b1\"\r\n\r\n"
	    "--b1\r\nContent-Type: text/plain; hp=\"cipher\"\r\nSubject: x\r\n"
	    "this line is no header\r\n\r\nhello\r\n"
	    "--b1\r\nContent-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--b1--\r\n";
	static const char toolong_fmt[] = "Content-Type: text/plain; hp=\"cipher\"\r\n"
	    "Subject: %s\r\n\r\nhello\r\n";
	char *toolong, big[1200];
	struct verdict v;
	struct hp_report r;

	CHECK(apply(hv, unknown, &v, &r));
	CHECK_EQ_STR(r.hp, "invalid");
	CHECK_EQ_INT(v.nchanges, 0);
	verdict_clear(&v);
	CHECK(apply(hv, none, &v, &r));
	CHECK_EQ_STR(r.hp, "");
	CHECK_EQ_INT(v.nchanges, 0);
	verdict_clear(&v);
	CHECK(apply(hv, badpart, &v, &r));
	CHECK_EQ_STR(r.hp, "invalid");
	CHECK(strncmp(r.skipped, "all (", 5) == 0);
	CHECK_EQ_INT(v.nchanges, 0);
	verdict_clear(&v);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK((toolong = malloc(sizeof(toolong_fmt) + sizeof(big))) != NULL);
	snprintf(toolong, sizeof(toolong_fmt) + sizeof(big), toolong_fmt, big);
	CHECK(apply(hv, toolong, &v, &r));
	free(toolong);
	CHECK_EQ_INT(v.nchanges, 0);
	CHECK_EQ_STR(r.skipped, "Subject (invalid value)");
	verdict_clear(&v);
}

TEST(signed_inside_uses_signed_part)
{
	static const char *const hv[] = { OUTER_HEADERS, NULL };
	static const char ent[] =
	    "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; "
	    "micalg=sha-256; boundary=\"b1\"\r\n\r\n"
	    "--b1\r\nContent-Type: text/plain; hp=\"cipher\"\r\n" INNER_HEADERS
	    "Subject: signed and sealed\r\n\r\nhello\r\n"
	    "--b1\r\nContent-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--b1--\r\n";
	struct verdict v;
	struct hp_report r;

	CHECK(apply(hv, ent, &v, &r));
	CHECK_EQ_STR(r.hp, "cipher");
	CHECK(fixture_has_change(&v, "Subject", 1, "signed and sealed"));
	CHECK_EQ_INT(v.nchanges, 2);
	verdict_clear(&v);
}

/* protect - hp_protect() of body on a message with these headers, NUL-terminated */
static char *
protect(const char *const *hv, const struct hp_out *o, const char *body, struct hp_report *r,
    size_t *len)
{
	struct message *m = fixture_message(hv);
	struct kmerr err;
	char *out = NULL, *copy = NULL;

	if (hp_protect(m, o, (const unsigned char *)body, strlen(body), &out, len, r,
	    &err) == KM_OK && (copy = malloc(*len + 1)) != NULL) {
		memcpy(copy, out, *len);
		copy[*len] = '\0';
	}
	if (out != NULL)
		secmem_free(out, *len);
	fixture_message_free(m);
	return copy;
}

TEST(outbound_encrypted_hides_subject)
{
	static const char *const hv[] = {
		"Received", "from client", "From", "Alice <alice@example.com>",
		"To", "Dave <dave@partner.example>", "Subject", "[SECURE] the plan",
		"Date", "Mon, 23 Nov 2026 10:00:00 +0000", "Message-ID", "<2@example.com>",
		"X-Mailer", "mua", "Content-Type", "text/plain; charset=us-ascii", NULL };
	struct hp_out o = { .cipher = 1, .hide_subject = 1, .subject = "the plan" };
	struct hp_report r;
	struct message *m;
	struct verdict v;
	struct kmerr err;
	size_t len;
	char *e;

	CHECK((e = protect(hv, &o, "body\r\n", &r, &len)) != NULL);
	CHECK_EQ_STR(e,
	    "Content-Type: text/plain; charset=us-ascii; hp=\"cipher\"; "
	    "hp-legacy-display=\"1\"\r\n"
	    "From: Alice <alice@example.com>\r\n"
	    "To: Dave <dave@partner.example>\r\n"
	    "Subject: the plan\r\n"
	    "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
	    "Message-ID: <2@example.com>\r\n"
	    "HP-Outer: From: Alice <alice@example.com>\r\n"
	    "HP-Outer: To: Dave <dave@partner.example>\r\n"
	    "HP-Outer: Subject: [...]\r\n"
	    "HP-Outer: Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
	    "HP-Outer: Message-ID: <2@example.com>\r\n"
	    "\r\n"
	    "Subject: the plan\r\n\r\nbody\r\n");
	CHECK_EQ_INT(r.legacy, 1);
	free(e);
	/* and the outer Subject becomes "[...]" */
	m = fixture_message(hv);
	verdict_init(&v);
	CHECK(hp_hide_outer(&v, m, &err) == KM_OK);
	CHECK(fixture_has_change(&v, "Subject", 1, "[...]"));
	CHECK_EQ_INT(v.nchanges, 1);
	verdict_clear(&v);
	fixture_message_free(m);
}

TEST(outbound_signed_only_clear)
{
	static const char *const hv[] = { "From", "alice@example.com", "Subject", "hi",
	    "Cc", "erin@example.com", "Reply-To", "team@example.com", NULL };
	struct hp_out o = { .cipher = 0, .hide_subject = 0 };
	struct hp_report r;
	size_t len;
	char *e;

	CHECK((e = protect(hv, &o, "body\r\n", &r, &len)) != NULL);
	CHECK_EQ_STR(e,
	    "Content-Type: text/plain; charset=us-ascii; hp=\"clear\"\r\n"
	    "From: alice@example.com\r\nSubject: hi\r\nCc: erin@example.com\r\n"
	    "Reply-To: team@example.com\r\n\r\nbody\r\n");
	CHECK_EQ_INT(r.legacy, 0);
	free(e);
}

TEST(outbound_no_legacy_display_where_unsafe)
{
	static const char *const multi[] = { "Subject", "s",
	    "Content-Type", "multipart/mixed; boundary=x", NULL };
	static const char *const b64[] = { "Subject", "s", "Content-Type", "text/plain",
	    "Content-Transfer-Encoding", "base64", NULL };
	static const char *const encoded[] = { "Subject", "=?utf-8?q?caf=C3=A9?=", NULL };
	static const char *const client[] = { "Subject", "s",
	    "Content-Type", "text/plain; hp=\"clear\"", NULL };
	struct hp_out o = { .cipher = 1, .hide_subject = 1 };
	struct hp_report r;
	size_t len;
	char *e;

	CHECK((e = protect(multi, &o, "--x--\r\n", &r, &len)) != NULL);
	CHECK(strstr(e, "multipart/mixed; boundary=x; hp=\"cipher\"\r\n") != NULL);
	CHECK(strstr(e, "legacy") == NULL && strstr(e, "\r\n\r\n--x--\r\n") != NULL);
	free(e);
	CHECK((e = protect(b64, &o, "Ym9keQ==\r\n", &r, &len)) != NULL);
	CHECK(strstr(e, "legacy") == NULL && strstr(e, "\r\n\r\nYm9keQ==\r\n") != NULL);
	free(e);
	CHECK((e = protect(encoded, &o, "body\r\n", &r, &len)) != NULL);
	CHECK_EQ_INT(r.legacy, 0);
	free(e);
	/* a client that protected its headers itself: nothing added */
	CHECK((e = protect(client, &o, "body\r\n", &r, &len)) != NULL);
	CHECK_EQ_STR(e, "Content-Type: text/plain; hp=\"clear\"\r\n\r\nbody\r\n");
	CHECK_EQ_STR(r.hp, "");
	free(e);
}

TEST(outbound_legacy_display_in_first_part)
{
	static const char *const mixed[] = { "Subject", "with attachment",
	    "Content-Type", "multipart/mixed; boundary=\"b\"", NULL };
	static const char body[] =
	    "preamble\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\nthe text\r\n"
	    "--b\r\nContent-Type: application/octet-stream\r\n"
	    "Content-Transfer-Encoding: binary\r\n\r\nA\0B\r\n--b--\r\n";
	static const char want[] =
	    "Content-Type: multipart/mixed; boundary=\"b\"; hp=\"cipher\"\r\n"
	    "Subject: with attachment\r\nHP-Outer: Subject: [...]\r\n\r\n"
	    "preamble\r\n--b\r\n"
	    "Content-Type: text/plain; charset=utf-8; hp-legacy-display=\"1\"\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n"
	    "Subject: with attachment\r\n\r\nthe text\r\n"
	    "--b\r\nContent-Type: application/octet-stream\r\n"
	    "Content-Transfer-Encoding: binary\r\n\r\nA\0B\r\n--b--\r\n";
	static const char html[] =
	    "--b\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--b--\r\n";
	struct hp_out o = { .cipher = 1, .hide_subject = 1 };
	struct message *m = fixture_message(mixed);
	struct hp_report r;
	struct kmerr err;
	char *out = NULL;
	size_t len = 0;

	CHECK(hp_protect(m, &o, (const unsigned char *)body, sizeof(body) - 1, &out, &len, &r,
	    &err) == KM_OK);
	CHECK_EQ_INT(r.legacy, 1);
	CHECK(len == sizeof(want) - 1 && memcmp(out, want, len) == 0);
	secmem_free(out, len);
	/* a first part that is not text/plain: no element, the body as it was */
	CHECK(hp_protect(m, &o, (const unsigned char *)html, sizeof(html) - 1, &out, &len, &r,
	    &err) == KM_OK);
	CHECK_EQ_INT(r.legacy, 0);
	CHECK(len > sizeof(html) - 1 && memcmp(out + len - (sizeof(html) - 1), html,
	    sizeof(html) - 1) == 0);
	secmem_free(out, len);
	fixture_message_free(m);
}

TEST(round_trip)
{
	/* what kmilter protects outbound, kmilter restores inbound */
	static const char *const sent[] = { "From", "Alice <alice@example.com>",
	    "Subject", "quarterly figures", "Content-Type", "text/plain", NULL };
	static const char *const arrived[] = { "From", "Alice <alice@example.com>",
	    "Subject", "[...]", "Content-Type", "application/pkcs7-mime", NULL };
	struct hp_out o = { .cipher = 1, .hide_subject = 1 };
	struct hp_report r;
	struct verdict v;
	size_t len;
	char *e;

	CHECK((e = protect(sent, &o, "body\r\n", &r, &len)) != NULL);
	CHECK(apply(arrived, e, &v, &r));
	free(e);
	CHECK(fixture_has_change(&v, "Subject", 1, "quarterly figures"));
	CHECK(fixture_has_change(&v, "HP-Outer", 0, "Subject: [...]"));
	CHECK_EQ_INT(v.nchanges, 2);
	verdict_clear(&v);
}

static const struct test_case tests[] = {
	T(protected_replace_outer), T(outer_duplicates_and_arrived_records),
	T(duplicate_protected_not_applied), T(foreign_from_not_applied),
	T(malformed_protection_applies_nothing), T(signed_inside_uses_signed_part),
	T(outbound_encrypted_hides_subject), T(outbound_signed_only_clear),
	T(outbound_no_legacy_display_where_unsafe), T(outbound_legacy_display_in_first_part),
	T(round_trip),
	{ 0 }
};

int
main(int argc, char **argv)
{
	log_init("test_hp", 0, 1, 0);
	return harness_main(argc, argv, tests);
}
