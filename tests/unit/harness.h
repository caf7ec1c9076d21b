#ifndef KMILTER_TESTS_HARNESS_H
#define KMILTER_TESTS_HARNESS_H
/*
 * NAME
 *	harness - a plain unit-test harness: a table of named cases
 * SUMMARY
 *	TEST(name) { ... CHECK(cond); ... }
 *	static const struct test_case tests[] = { T(name), ..., { 0 } };
 *	int main(int argc, char **argv) { return harness_main(argc, argv, tests); }
 * DESCRIPTION
 *	Each case prints "PASS name", "FAIL name file:line: expr" or
 *	"SKIP name: why"; the program ends with "N passed, N failed, N skipped"
 *	and exits non-zero on any failure (and on any skip with
 *	--skips-as-fails).  A case that CHECKs false stops at that check.
 *	An argument that is not an option runs only the case of that name.
 * THREADS
 *	Cases run one after the other in one thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct test_case {
	const char *name;
	void (*fn)(int *state);
};

enum { T_PASS = 0, T_FAIL = 1, T_SKIP = 2 };

#define TEST(name) static void test_##name(int *t_state)
#define T(name) { #name, test_##name }

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		printf("    check failed %s:%d: %s\n", __FILE__, __LINE__, #cond); \
		*t_state = T_FAIL;					\
		return;							\
	}								\
} while (0)

#define CHECK_EQ_INT(a, b) do {						\
	long long ca_ = (long long)(a), cb_ = (long long)(b);		\
	if (ca_ != cb_) {						\
		printf("    check failed %s:%d: %s == %s (%lld != %lld)\n", \
		    __FILE__, __LINE__, #a, #b, ca_, cb_);		\
		*t_state = T_FAIL;					\
		return;							\
	}								\
} while (0)

#define CHECK_EQ_STR(a, b) do {						\
	const char *ca_ = (a), *cb_ = (b);				\
	if (ca_ == NULL || cb_ == NULL || strcmp(ca_, cb_) != 0) {	\
		printf("    check failed %s:%d: %s == %s (\"%s\" != \"%s\")\n", \
		    __FILE__, __LINE__, #a, #b, ca_ ? ca_ : "(null)",	\
		    cb_ ? cb_ : "(null)");				\
		*t_state = T_FAIL;					\
		return;							\
	}								\
} while (0)

/* The reason goes on the SKIP line: tests/run in CI accepts only
   "SKIP name: ci-unavailable: reason". */
static const char *t_skip_why;
#define SKIP(why) do { t_skip_why = (why); *t_state = T_SKIP; return; } while (0)

static inline int
harness_main(int argc, char **argv, const struct test_case *cases)
{
	int passed = 0, failed = 0, skipped = 0, skips_fail = 0;
	const char *only = NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--skips-as-fails") == 0)
			skips_fail = 1;
		else
			only = argv[i];
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (const struct test_case *c = cases; c->name; c++) {
		int st = T_PASS;

		if (only && strcmp(only, c->name) != 0)
			continue;
		c->fn(&st);
		if (st == T_PASS) {
			printf("PASS %s\n", c->name);
			passed++;
		} else if (st == T_SKIP) {
			printf("SKIP %s: %s\n", c->name, t_skip_why ? t_skip_why : "?");
			skipped++;
		} else {
			printf("FAIL %s\n", c->name);
			failed++;
		}
	}
	printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	return (failed || (skips_fail && skipped)) ? 1 : 0;
}

#endif
