/*
 * fuzz_hook.c - libFuzzer target for hook_answer_parse().
 *
 * Build (from the repository root):
 *   clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
 *     -Imilter -Ikeyclient -Iconf tests/fuzz/fuzz_hook.c keyclient/hook.c \
 *     base/log.c base/secmem.c -o build/fuzz_hook -lcrypto -lpthread
 * Run:
 *   build/fuzz_hook -max_total_time=30 -max_len=5000 tests/fuzz/corpus/hook
 *
 * The first byte picks the event (even: unlock, odd: release); the rest is
 * the answer.  Besides not crashing, the parser's contract is checked: on
 * KM_OK the action is valid for the event and a password is present exactly
 * for action=password; otherwise no action and no password are left.
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

/* LLVMFuzzerTestOneInput - parse one answer and check the contract */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hook_answer a;
	enum hook_event ev;
	enum km_status st;
	char err[256];

	if (size < 1)
		return 0;
	memset(&a, 0, sizeof(a));
	ev = (data[0] & 1) ? HOOK_EVENT_RELEASE : HOOK_EVENT_UNLOCK;
	st = hook_answer_parse((const char *)data + 1, size - 1, ev, &a, err,
	    sizeof(err));
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
	    a.action != HOOK_ACTION_NONE || memchr(err, '\0', sizeof(err)) == NULL)
		abort();
	hook_answer_clear(&a);
	return 0;
}
