//needs: transport iothub
/* A connection string file's content. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/connstr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = 0;
	struct connstr cs;
	char err[256];
	connstr_parse(text, &cs, err, sizeof(err));
	free(text);
	return 0;
}
