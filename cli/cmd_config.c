/*
 * relayq config check: load and validate the config file the way relayqd
 * does at start, without touching the queue.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "exit_codes.h"
#include "util.h"

static const struct option cmd_config_options[] = {
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int
cmd_config_check(struct cli *cli)
{
	struct config *config = NULL;
	char *errstr = NULL;

	if (config_load(cli->config_path, &config, &errstr) == -1) {
		cli_warn(cli, "%s", errstr);
		free(errstr);
		return EX_CONFIG;
	}
	config_free(config);
	printf("%s: configuration is valid\n", cli->config_path);
	return EX_OK;
}

int
cmd_config(struct cli *cli, int argc, char **argv)
{
	int opt;

	while ((opt = getopt_long(argc, argv, ":h", cmd_config_options,
	    NULL)) != -1) {
		if (opt == 'h')
			return cli_usage(cli, "config");
		return cli_option_error(cli, "config", opt, argv);
	}

	if (optind >= argc)
		return cli_usage_error(cli, "config", "missing subcommand: check");
	if (strcmp(argv[optind], "check") != 0)
		return cli_unexpected_argument(cli, "config", argv[optind]);
	if (optind + 1 < argc)
		return cli_unexpected_argument(cli, "config", argv[optind + 1]);
	return cmd_config_check(cli);
}
