/*
 * fuzz_conf.c - libFuzzer target: the configuration loader on arbitrary text.
 * Built by `make FUZZ=1 fuzzers` (clang -fsanitize=fuzzer,address,undefined);
 * run by `make fuzz` with the seeds in tests/fuzz/corpus/conf/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

/* LLVMFuzzerTestOneInput - load one input as a kmilter.conf */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char err[4096], *text;
	struct kmilter_conf *c;

	if (len > 65536 || (text = malloc(len + 1)) == NULL)
		return 0;
	memcpy(text, data, len);
	text[len] = '\0';
	c = conf_load_string(text, "fuzz.conf", err, sizeof(err));
	if (c == NULL && err[0] == '\0')
		abort();	/* every refusal must say why */
	conf_unref(c);
	free(text);
	return 0;
}
