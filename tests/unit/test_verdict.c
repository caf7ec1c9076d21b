/*
 * test_verdict.c - unit tests for milter/verdict.c: init/clear, header
 * changes, drop_changes, and the codes and texts of reject, tempfail and
 * downgrade.
 */
#include <stdlib.h>

#include "harness.h"
#include "spool.h"
#include "verdict.h"

TEST(init_is_pass)
{
	struct verdict v;

	memset(&v, 0xa5, sizeof(v));		/* init must not trust what was there */
	verdict_init(&v);
	CHECK_EQ_INT(v.kind, VERDICT_PASS);
	CHECK_EQ_STR(v.action_name, "pass");
	CHECK_EQ_STR(v.result, "ok");
	CHECK_EQ_INT(v.downgraded, 0);
	CHECK_EQ_INT(v.nchanges, 0);
	CHECK(v.changes == NULL);
	CHECK(v.body == NULL);
	CHECK_EQ_INT(v.bodylen, 0);
	CHECK_EQ_STR(v.rcode, "");
	CHECK_EQ_STR(v.reply, "");
}

TEST(header_changes_in_order)
{
	struct verdict v;

	verdict_init(&v);
	CHECK_EQ_INT(verdict_header_change(&v, "Subject", 2, "new"), KM_OK);
	CHECK_EQ_INT(verdict_header_change(&v, "X-Forged", 1, NULL), KM_OK);
	CHECK_EQ_INT(verdict_header_add(&v, "X-Kmilter", "signed"), KM_OK);
	CHECK_EQ_INT(v.kind, VERDICT_REWRITE);
	CHECK_EQ_INT(v.nchanges, 3);
	CHECK_EQ_STR(v.changes[0].name, "Subject");
	CHECK_EQ_STR(v.changes[0].value, "new");
	CHECK_EQ_INT(v.changes[0].index, 2);
	CHECK_EQ_STR(v.changes[1].name, "X-Forged");
	CHECK(v.changes[1].value == NULL);		/* NULL deletes */
	CHECK_EQ_INT(v.changes[1].index, 1);
	CHECK_EQ_STR(v.changes[2].name, "X-Kmilter");
	CHECK_EQ_STR(v.changes[2].value, "signed");
	CHECK_EQ_INT(v.changes[2].index, 0);		/* 0 = add */
	verdict_clear(&v);
}

TEST(header_values_are_copies)
{
	struct verdict v;
	char name[16] = "Subject", value[16] = "hello";

	verdict_init(&v);
	CHECK_EQ_INT(verdict_header_change(&v, name, 1, value), KM_OK);
	strcpy(name, "XXXX");
	strcpy(value, "YYYY");
	CHECK_EQ_STR(v.changes[0].name, "Subject");
	CHECK_EQ_STR(v.changes[0].value, "hello");
	verdict_clear(&v);
}

TEST(set_body_takes_ownership)
{
	struct verdict v;
	unsigned char *b1 = malloc(4), *b2 = malloc(8);

	CHECK(b1 != NULL && b2 != NULL);
	memcpy(b1, "abc", 4);
	memcpy(b2, "defghij", 8);
	verdict_init(&v);
	verdict_set_body(&v, b1, 3);
	CHECK_EQ_INT(v.kind, VERDICT_REWRITE);
	verdict_set_body(&v, b2, 7);		/* frees b1 (ASan/valgrind would see a leak) */
	CHECK(v.body == b2);
	CHECK_EQ_INT(v.bodylen, 7);
	verdict_clear(&v);
}

TEST(set_body_spool_replaces_body)
{
	struct verdict v;
	struct spool *sp = spool_new("/tmp", 64);
	struct kmerr err = { 0 };
	unsigned char *body = malloc(4);

	CHECK(sp != NULL && body != NULL);
	CHECK_EQ_INT(spool_append(sp, "new body", 8, &err), KM_OK);
	verdict_init(&v);
	verdict_set_body(&v, body, 4);
	verdict_set_body_spool(&v, sp);		/* the memory body is freed, not leaked */
	CHECK_EQ_INT(v.kind, VERDICT_REWRITE);
	CHECK(v.body == NULL);
	CHECK(v.bodyspool == sp);
	verdict_drop_changes(&v);		/* frees the spool (ASan: no leak) */
	CHECK(v.bodyspool == NULL);
	CHECK_EQ_INT(v.kind, VERDICT_REWRITE);
	verdict_clear(&v);
}

TEST(drop_changes_keeps_decision)
{
	struct verdict v;
	unsigned char *b = malloc(5);

	CHECK(b != NULL);
	verdict_init(&v);
	v.action_name = "encrypt";
	CHECK_EQ_INT(verdict_header_add(&v, "X-A", "1"), KM_OK);
	verdict_set_body(&v, b, 5);
	verdict_tempfail(&v, "keystore down");
	verdict_drop_changes(&v);
	CHECK_EQ_INT(v.nchanges, 0);
	CHECK(v.changes == NULL);
	CHECK(v.body == NULL);
	CHECK_EQ_INT(v.bodylen, 0);
	CHECK_EQ_INT(v.kind, VERDICT_TEMPFAIL);		/* the decision stays */
	CHECK_EQ_STR(v.action_name, "encrypt");
	CHECK_EQ_STR(v.result, "keystore down");
	verdict_drop_changes(&v);			/* twice is harmless */
	CHECK_EQ_INT(v.nchanges, 0);
}

TEST(clear_makes_pass_again)
{
	struct verdict v;

	verdict_init(&v);
	v.action_name = "sign";
	CHECK_EQ_INT(verdict_header_add(&v, "X-A", "1"), KM_OK);
	verdict_set_body(&v, malloc(3), 3);
	verdict_reject(&v, "550", "5.7.1", "no certificate for %s", "bob@x");
	verdict_downgrade(&v, "whatever");
	verdict_clear(&v);
	CHECK_EQ_INT(v.kind, VERDICT_PASS);
	CHECK_EQ_STR(v.action_name, "pass");
	CHECK_EQ_STR(v.result, "ok");
	CHECK_EQ_INT(v.downgraded, 0);
	CHECK_EQ_INT(v.nchanges, 0);
	CHECK(v.body == NULL);
	CHECK_EQ_STR(v.rcode, "");
	CHECK_EQ_STR(v.xcode, "");
	CHECK_EQ_STR(v.reply, "");
}

TEST(reject_codes_and_text)
{
	struct verdict v;

	verdict_init(&v);
	verdict_reject(&v, "550", "5.7.1", "no certificate for %s (%d)", "bob@x", 2);
	CHECK_EQ_INT(v.kind, VERDICT_REJECT);
	CHECK_EQ_STR(v.rcode, "550");
	CHECK_EQ_STR(v.xcode, "5.7.1");
	CHECK_EQ_STR(v.reply, "no certificate for bob@x (2)");
	CHECK_EQ_STR(v.result, "no certificate for bob@x (2)");	/* the log says why */
	CHECK_EQ_INT(v.downgraded, 0);
	verdict_clear(&v);
}

TEST(reject_codes_truncated_safely)
{
	struct verdict v;
	char big[1000];

	memset(big, 'r', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	verdict_init(&v);
	verdict_reject(&v, "5500", "5.7.1.123456", "%s", big);
	CHECK_EQ_STR(v.rcode, "550");		/* 3 digits, NUL-terminated */
	CHECK_EQ_INT(strlen(v.xcode), sizeof(v.xcode) - 1);
	CHECK_EQ_INT(strlen(v.reply), sizeof(v.reply) - 1);
	CHECK_EQ_INT(strlen(v.result), sizeof(v.result) - 1);
	verdict_clear(&v);
}

TEST(tempfail_codes_and_text)
{
	struct verdict v;

	verdict_init(&v);
	verdict_tempfail(&v, "kmip %s: %s", "kmip1", "timeout");
	CHECK_EQ_INT(v.kind, VERDICT_TEMPFAIL);
	CHECK_EQ_STR(v.rcode, "451");
	CHECK_EQ_STR(v.xcode, "4.3.0");
	CHECK_EQ_STR(v.result, "kmip kmip1: timeout");	/* detail for the log ... */
	/* ... but not for the SMTP peer: the reply names no internal server */
	CHECK_EQ_STR(v.reply, "kmilter: temporary failure, try again later");
	CHECK(strstr(v.reply, "kmip1") == NULL);
	verdict_clear(&v);
}

TEST(downgrade_marks_and_keeps_kind)
{
	struct verdict v;

	verdict_init(&v);
	v.action_name = "sign";
	CHECK_EQ_INT(verdict_header_add(&v, "X-A", "1"), KM_OK);
	verdict_downgrade(&v, "no certificate for %s: signed only", "carol@x");
	CHECK_EQ_INT(v.downgraded, 1);
	CHECK_EQ_STR(v.result, "no certificate for carol@x: signed only");
	CHECK_EQ_INT(v.kind, VERDICT_REWRITE);		/* still delivered, as decided */
	CHECK_EQ_INT(v.nchanges, 1);
	CHECK_EQ_STR(v.rcode, "");			/* a downgrade is not a refusal */
	verdict_clear(&v);

	verdict_init(&v);
	verdict_downgrade(&v, "kept encrypted");
	CHECK_EQ_INT(v.kind, VERDICT_PASS);
	CHECK_EQ_INT(v.downgraded, 1);
	verdict_clear(&v);
}

static const struct test_case tests[] = {
	T(init_is_pass),
	T(header_changes_in_order),
	T(header_values_are_copies),
	T(set_body_takes_ownership),
	T(set_body_spool_replaces_body),
	T(drop_changes_keeps_decision),
	T(clear_makes_pass_again),
	T(reject_codes_and_text),
	T(reject_codes_truncated_safely),
	T(tempfail_codes_and_text),
	T(downgrade_marks_and_keeps_kind),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
