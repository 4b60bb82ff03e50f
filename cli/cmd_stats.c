/*
 * relayq stats: counts per state, the oldest waiting message, deliveries
 * in the last hour and day, the smart host status and the last error,
 * as text or as one JSON object.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "exit_codes.h"
#include "util.h"

/* Width of the labels in text output, colon included. */
#define CMD_STATS_LABEL_WIDTH 16

static const struct option cmd_stats_options[] = {
	{ "json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* The configured smart host as "host:port" ("[::1]:25" for IPv6). */
static char *
cmd_stats_host(const struct config *config)
{
	const struct config_smarthost *sh = &config->smarthost;
	const char *host = sh->host != NULL ? sh->host : "(none)";

	if (strchr(host, ':') != NULL)
		return xasprintf("[%s]:%d", host, sh->port);
	return xasprintf("%s:%d", host, sh->port);
}

static int64_t
cmd_stats_total(const struct queue_admin_stats *stats)
{
	int64_t total = 0;
	int s;

	for (s = 0; s < MSG_STATE_COUNT; s++)
		total += stats->states[s];
	return total;
}

/* --- JSON --- */

static void
cmd_stats_json_time(struct json_writer *w, int64_t t)
{
	char text[CLI_TIME_SIZE];

	time_format_rfc3339(t, text, sizeof(text));
	json_string(w, text);
}

static void
cmd_stats_json_counts(struct json_writer *w, const struct queue_admin_stats *stats,
    int64_t now)
{
	int s;

	json_key(w, "states");
	json_object_begin(w);
	for (s = 0; s < MSG_STATE_COUNT; s++) {
		if (s == MSG_RECEIVING)
			continue;
		json_key(w, msg_state_name((enum msg_state)s));
		json_int(w, stats->states[s]);
	}
	json_object_end(w);
	json_key(w, "total");
	json_int(w, cmd_stats_total(stats));

	json_key(w, "oldest_queued_age");
	if (stats->has_oldest)
		json_int(w, now > stats->oldest_created ?
		    now - stats->oldest_created : 0);
	else
		json_null(w);
	json_key(w, "oldest_queued_id");
	if (stats->has_oldest)
		json_int(w, stats->oldest_id);
	else
		json_null(w);

	json_key(w, "sent_last_hour");
	json_int(w, stats->sent_last_hour);
	json_key(w, "sent_last_day");
	json_int(w, stats->sent_last_day);
}

static void
cmd_stats_json_status(struct json_writer *w, const struct queue_admin_stats *stats,
    const char *host)
{
	json_key(w, "last_error");
	if (stats->has_last_error) {
		json_object_begin(w);
		json_key(w, "time");
		cmd_stats_json_time(w, stats->last_error_time);
		json_key(w, "message");
		json_int(w, stats->last_error_message);
		json_key(w, "host");
		json_string(w, stats->last_error_host);
		json_key(w, "text");
		json_string(w, stats->last_error_text);
		json_object_end(w);
	} else {
		json_null(w);
	}

	json_key(w, "smarthost");
	json_object_begin(w);
	json_key(w, "host");
	json_string(w, host);
	json_key(w, "status");
	json_string(w, stats->relay_status);
	json_key(w, "since");
	if (stats->has_relay_since)
		cmd_stats_json_time(w, stats->relay_since);
	else
		json_null(w);
	json_key(w, "error");
	json_string(w, stats->relay_error);
	json_object_end(w);
}

static void
cmd_stats_json(const struct queue_admin_stats *stats, const char *host,
    int64_t now)
{
	struct json_writer *w = json_writer_new(stdout, JSON_PRETTY);

	json_object_begin(w);
	cmd_stats_json_counts(w, stats, now);
	cmd_stats_json_status(w, stats, host);
	json_object_end(w);
	json_writer_free(w);
}

/* --- text --- */

static void
cmd_stats_label(const char *label)
{
	printf("%s:%*s", label, (int)(CMD_STATS_LABEL_WIDTH - strlen(label) - 1),
	    "");
}

/* Print "TIME (AGE ago)" for T. */
static void
cmd_stats_print_when(int64_t t, int64_t now)
{
	char time[CLI_TIME_SIZE], age[CLI_TIME_SIZE];

	time_format_rfc3339(t, time, sizeof(time));
	cli_format_age(t, now, age, sizeof(age));
	printf("%s (%s ago)", time, age);
}

/* Print untrusted TEXT escaped for the terminal. */
static void
cmd_stats_print_text(const char *text)
{
	char *escaped = cli_escape(text, strlen(text), 0, NULL);

	fputs(escaped, stdout);
	free(escaped);
}

static void
cmd_stats_print_counts(const struct queue_admin_stats *stats, int64_t now)
{
	char age[CLI_TIME_SIZE];
	int s;

	printf("Messages:\n");
	for (s = 0; s < MSG_STATE_COUNT; s++)
		if (s != MSG_RECEIVING)
			printf("  %-10s %10" PRId64 "\n",
			    msg_state_name((enum msg_state)s), stats->states[s]);
	printf("  %-10s %10" PRId64 "\n\n", "total", cmd_stats_total(stats));

	cmd_stats_label("Oldest waiting");
	if (stats->has_oldest) {
		cli_format_age(stats->oldest_created, now, age, sizeof(age));
		printf("message %" PRId64 ", %s old\n", stats->oldest_id, age);
	} else {
		printf("none\n");
	}
	cmd_stats_label("Sent");
	printf("%" PRId64 " in the last hour, %" PRId64 " in the last day\n",
	    stats->sent_last_hour, stats->sent_last_day);
}

static void
cmd_stats_print_status(const struct queue_admin_stats *stats, const char *host,
    int64_t now)
{
	cmd_stats_label("Smart host");
	printf("%s %s", host, stats->relay_status);
	if (stats->has_relay_since) {
		printf(" since ");
		cmd_stats_print_when(stats->relay_since, now);
	}
	putchar('\n');
	if (stats->relay_error != NULL) {
		printf("%*s", CMD_STATS_LABEL_WIDTH, "");
		cmd_stats_print_text(stats->relay_error);
		putchar('\n');
	}

	cmd_stats_label("Last error");
	if (!stats->has_last_error) {
		printf("none\n");
		return;
	}
	cmd_stats_print_when(stats->last_error_time, now);
	printf(", message %" PRId64 " via ", stats->last_error_message);
	cmd_stats_print_text(stats->last_error_host != NULL ?
	    stats->last_error_host : "-");
	printf("\n%*s", CMD_STATS_LABEL_WIDTH, "");
	cmd_stats_print_text(stats->last_error_text);
	putchar('\n');
}

/* --- command --- */

int
cmd_stats(struct cli *cli, int argc, char **argv)
{
	struct queue_admin_stats stats;
	int64_t now = now_seconds();
	char *errstr = NULL, *host;
	bool json = false;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, ":h", cmd_stats_options,
	    NULL)) != -1) {
		switch (opt) {
		case 'j':
			json = true;
			break;
		case 'h':
			return cli_usage(cli, "stats");
		default:
			return cli_option_error(cli, "stats", opt, argv);
		}
	}
	if (optind < argc)
		return cli_unexpected_argument(cli, "stats", argv[optind]);

	rc = cli_open_store(cli, QUEUE_STORE_READONLY);
	if (rc != EX_OK)
		return rc;
	rc = queue_admin_stats(cli->store, now, &stats, &errstr);
	if (rc != 0)
		return cli_admin_error(cli, rc, errstr);

	host = cmd_stats_host(cli->config);
	if (json) {
		cmd_stats_json(&stats, host, now);
	} else {
		cmd_stats_print_counts(&stats, now);
		cmd_stats_print_status(&stats, host, now);
	}
	free(host);
	queue_admin_stats_clear(&stats);
	return EX_OK;
}
