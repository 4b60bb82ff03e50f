/*
 * relayq delete: remove messages with their recipients, attempts and
 * text. A message in any state but "sending" can be deleted, by id or
 * with --state; sent ones too, which removes them from the history.
 */
#include "cli.h"

static const struct cli_change cmd_delete_command = {
	"delete", QUEUE_ADMIN_DELETE, false, true,
};

int
cmd_delete(struct cli *cli, int argc, char **argv)
{
	return cli_change_main(cli, &cmd_delete_command, argc, argv);
}
