/*
 * fuzz_headers.c - libFuzzer target for the two parsers that decide
 * whether mail is treated as the gateway's own or as whom: the
 * Authentication-Results authserv-id reader (ar_authserv_is, forged.c)
 * and the envelope address normalization (policy_addr_normalize,
 * policy.c).
 *
 * Run: make fuzz (tests/fuzz/run), seeds in tests/fuzz/corpus/headers.
 *
 * The first byte chooses which parser; the rest is the input.  Besides
 * not crashing, the contracts are checked:
 *   - ar_authserv_is(v, id) agrees with ar_authserv_is("(c) " v, id) and
 *     with the value folded onto a new line ("\r\n\t" v): CFWS before the
 *     authserv-id never changes the answer;
 *   - a normalized address has no upper-case letter or trailing dot in
 *     its domain, and one in plain form (no brackets, route or blanks
 *     left at its ends) is normalized again to itself.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "forged.h"
#include "log.h"
#include "policy.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char our_id[] = "mx.example.com";

/* LLVMFuzzerInitialize - log to stderr, quietly */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("fuzz_headers", 0, 1, 0);
	return 0;
}

/* with_prefix - prefix + s in a new string */
static char *
with_prefix(const char *prefix, const char *s)
{
	size_t pl = strlen(prefix), sl = strlen(s);
	char *r = malloc(pl + sl + 1);

	if (r == NULL)
		abort();
	memcpy(r, prefix, pl);
	memcpy(r + pl, s, sl + 1);
	return r;
}

/* check_authserv - the answer does not depend on CFWS before the id */
static void
check_authserv(const char *v)
{
	int plain = ar_authserv_is(v, our_id);
	char *commented = with_prefix("(c) ", v), *folded = with_prefix("\r\n\t", v);

	if (ar_authserv_is(commented, our_id) != plain ||
	    ar_authserv_is(folded, our_id) != plain)
		abort();
	free(commented);
	free(folded);
}

/* check_normalize - idempotent, domain lower-case without a trailing dot */
static void
check_normalize(const char *a)
{
	char *n = policy_addr_normalize(a), *again;
	const char *at;
	size_t len;

	if (n == NULL)
		abort();
	if ((again = policy_addr_normalize(n)) == NULL)
		abort();
	if (strpbrk(n, "<>:") == NULL && *n != '\0' && !isspace((unsigned char)*n) &&
	    !isspace((unsigned char)n[strlen(n) - 1]) && strcmp(again, n) != 0)
		abort();
	if ((at = strrchr(n, '@')) != NULL && strchr(n, '"') == NULL) {
		for (const char *p = at + 1; *p; p++)
			if (isupper((unsigned char)*p))
				abort();
		len = strlen(at + 1);
		if (len > 0 && at[len] == '.')
			abort();
	}
	free(again);
	free(n);
}

/* LLVMFuzzerTestOneInput - one input through the parser its first byte names */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1 || size > 65536)
		return 0;
	if ((s = malloc(size)) == NULL)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	if (data[0] & 1)
		check_normalize(s);
	else
		check_authserv(s);
	free(s);
	return 0;
}
