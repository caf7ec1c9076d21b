/*
 * fuzz_hook.c - libFuzzer target for hook_answer_parse() (hook_proto.c).
 *
 * Build and run (from the repository root):
 *   make FUZZ=1 fuzzers
 *   build-fuzz/fuzz/fuzz_hook -max_total_time=30 -max_len=5000 \
 *     tests/fuzz/corpus/hook
 *
 * The first byte picks the event (even: unlock, odd: release); the rest is
 * the answer.  Besides not crashing, the parser's contract is checked: on
 * KM_OK the action is valid for the event and a password is present exactly
 * for action=password; otherwise no action and no password are left.  The
 * line scanner finds at least as many unknown keys as the parser counted
 * (the caller logs them from it).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hook.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* LLVMFuzzerInitialize - log to stderr, quietly */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("fuzz_hook", 0, 1, 0);
	return 0;
}

/* unknown_seen - unknown keys the scanner finds before the end or an error */
static int
unknown_seen(const char *buf, size_t len)
{
	struct hook_proto_scan sc;
	struct hook_proto_line l;
	int n = 0;

	hook_proto_scan_init(&sc, buf, len);
	while (hook_proto_scan_next(&sc, &l, NULL) == 1)
		if (!hook_proto_key_known(&l))
			n++;
	return n;
}

/* LLVMFuzzerTestOneInput - parse one answer and check the contract */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hook_answer a;
	enum hook_event ev;
	enum km_status st;
	struct kmerr err;

	if (size < 1)
		return 0;
	memset(&a, 0, sizeof(a));
	ev = (data[0] & 1) ? HOOK_EVENT_RELEASE : HOOK_EVENT_UNLOCK;
	st = hook_answer_parse((const char *)data + 1, size - 1, ev, &a, &err);
	if (st == KM_OK) {
		if (!hook_action_valid(ev, a.action))
			abort();
		if ((a.password != NULL) != (a.action == HOOK_ACTION_PASSWORD))
			abort();
		if (a.password && strlen(a.password) != a.password_len)
			abort();
		if (memchr(a.reason, '\0', sizeof(a.reason)) == NULL)
			abort();
	} else if (st != KM_PROTO || a.password != NULL ||
	    a.action != HOOK_ACTION_NONE || err.status != st ||
	    !kmerr_is(&err, KMERR_BADINPUT) ||
	    memchr(err.msg, '\0', sizeof(err.msg)) == NULL)
		abort();
	if (a.unknown_keys < 0 ||
	    a.unknown_keys > unknown_seen((const char *)data + 1, size - 1))
		abort();
	hook_answer_clear(&a);
	return 0;
}
