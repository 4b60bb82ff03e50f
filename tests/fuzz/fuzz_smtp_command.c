/* Fuzz target: SMTP command lines and MAIL/RCPT arguments as the server parses them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_proto.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_command cmd;
	struct smtp_path_command path;
	char *line, *error = NULL;

	if (size > SMTP_COMMAND_LINE_MAX)
		return 0;
	line = malloc(size + 1);
	memcpy(line, data, size);
	line[size] = '\0';

	smtp_command_parse(line, &cmd);
	if (cmd.verb == SMTP_VERB_MAIL || cmd.verb == SMTP_VERB_RCPT) {
		if (smtp_path_command_parse(cmd.arg, cmd.verb == SMTP_VERB_MAIL, &path,
		    &error) == 0) {
			if (path.address == NULL)
				abort();
			smtp_path_command_clear(&path);
		} else if (error == NULL || strlen(error) < 4) {
			abort();
		}
		free(error);
	}
	free(line);
	return 0;
}
