/*
 * fuzz_hp.c - libFuzzer target for RFC 9788 header protection (hp.c): what
 * a sender writes inside encrypted or signed content, and the bodies
 * kmilter rewrites for the Legacy Display Element.
 *
 * Run: make fuzz (tests/fuzz/run), seeds in tests/fuzz/corpus/hp.
 *
 * The first byte chooses: even, the input is a decrypted entity given to
 * hp_apply() on a message with one From, To and Subject and no Cc; odd,
 * the input is the body of a multipart/mixed message given to hp_protect().
 * Besides not crashing, the contract of hp_apply() is checked: every
 * protected field that was outside once is there once afterwards (never
 * doubled, never lost), Cc at most once, and From is only ever set to a
 * value with the outer From's address.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hp.h"
#include "log.h"
#include "secmem.h"
#include "session.h"
#include "verdict.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct message msg;

/* LLVMFuzzerInitialize - log to stderr, quietly; the outer message */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("fuzz_hp", 0, 1, 0);
	if (message_add_header(&msg, "From", "Dave <dave@partner.example>") != KM_OK ||
	    message_add_header(&msg, "To", "bob@example.com") != KM_OK ||
	    message_add_header(&msg, "Subject", "[...]") != KM_OK ||
	    message_add_header(&msg, "Content-Type", "multipart/mixed; boundary=b") != KM_OK)
		abort();
	return 0;
}

/* count_after - how many of a header the message has once the verdict is applied */
static int
count_after(const struct verdict *v, const char *name, int before)
{
	int n = before;

	for (int i = 0; i < v->nchanges; i++)
		if (strcasecmp(v->changes[i].name, name) == 0)
			n += v->changes[i].index == 0 ? 1 : v->changes[i].value == NULL ? -1 : 0;
	return n;
}

/* check_apply - hp_apply() keeps each field once and the From's address */
static void
check_apply(const char *ent, size_t len)
{
	struct verdict v;
	struct hp_report r;
	struct kmerr err;

	verdict_init(&v);
	if (hp_apply(&v, &msg, ent, len, &r, &err) != KM_OK)
		abort();
	if (count_after(&v, "From", 1) != 1 || count_after(&v, "To", 1) != 1 ||
	    count_after(&v, "Subject", 1) != 1 || count_after(&v, "Cc", 0) > 1)
		abort();
	for (int i = 0; i < v.nchanges; i++)
		if (strcasecmp(v.changes[i].name, "From") == 0 && v.changes[i].value != NULL &&
		    strcasestr(v.changes[i].value, "dave@partner.example") == NULL)
			abort();
	verdict_clear(&v);
}

/* check_protect - hp_protect() on any multipart/mixed body */
static void
check_protect(const char *body, size_t len)
{
	struct hp_out o = { .cipher = 1, .hide_subject = 1, .subject = "the real one" };
	struct hp_report r;
	struct kmerr err;
	char *out = NULL;
	size_t outlen = 0;

	if (hp_protect(&msg, &o, (const unsigned char *)body, len, &out, &outlen, &r,
	    &err) != KM_OK)
		abort();
	secmem_free(out, outlen);
}

/* LLVMFuzzerTestOneInput - one input, as an entity or as a body */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1)
		return 0;
	if ((s = malloc(size)) == NULL)
		abort();
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	if (data[0] % 2 == 0)
		check_apply(s, size - 1);
	else
		check_protect(s, size - 1);
	free(s);
	return 0;
}
