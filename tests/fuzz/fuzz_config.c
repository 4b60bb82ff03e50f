/*
 * Fuzz target: the YAML config loader. config_load() reads a file, so
 * each input is written to one scratch file under /dev/shm (or /tmp).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char scratch_path[64];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *config = NULL;
	char *error = NULL;
	FILE *f;

	if (scratch_path[0] == '\0') {
		const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

		snprintf(scratch_path, sizeof(scratch_path), "%s/relayq-fuzz-%ld.yaml",
		    dir, (long)getpid());
	}
	f = fopen(scratch_path, "wb");
	if (f == NULL)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);

	if (config_load(scratch_path, &config, &error) == 0) {
		if (config->smarthost.host == NULL || config->queue_path == NULL)
			abort();
		config_free(config);
	} else {
		/* Every error names the file. */
		if (error == NULL || strncmp(error, scratch_path, strlen(scratch_path)) != 0)
			abort();
		free(error);
	}
	return 0;
}
