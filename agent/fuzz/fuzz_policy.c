//needs: collector baseline
/* A baseline policy file (the SCA-style checks a user adds under
 * Baseline_PolicyDirectory): parsed, then freed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/baseline_eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = 0;
	struct bl_policy p;
	char err[512];
	if (bl_policy_parse("fuzz.yml", text, &p, err, sizeof(err)) == 0)
		bl_policy_free(&p);
	free(text);
	return 0;
}
