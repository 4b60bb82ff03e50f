/*
 * Building and queueing delivery status notifications: a
 * multipart/report (RFC 6522) with a text part for people, a
 * message/delivery-status part (RFC 3464) with one block per failed
 * recipient, and the header of the original message as
 * text/rfc822-headers. The original body is never copied back.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "dsn.h"
#include "log.h"
#include "message.h"
#include "submit.h"
#include "util.h"

/* Most bytes of the original header copied into a notification. */
#define DSN_HEADER_MAX (64 * 1024)

/* The window of dsn.max_per_hour, in seconds. */
#define DSN_WINDOW 3600

static struct {
	int64_t *sent;		/* ring of the send times of the last max_per_hour */
	int size;
	int count;
	int next;
	int64_t suppressed;	/* notifications left out by the limit */
} dsn_rate;

void
dsn_free(void)
{
	free(dsn_rate.sent);
	memset(&dsn_rate, 0, sizeof(dsn_rate));
}

/* Take a slot of the hourly limit MAX at NOW; false when the limit is reached. */
static bool
dsn_rate_take(int max, int64_t now)
{
	if (max == 0)
		return true;
	if (max != dsn_rate.size) {
		free(dsn_rate.sent);
		dsn_rate.sent = xcalloc((size_t)max, sizeof(*dsn_rate.sent));
		dsn_rate.size = max;
		dsn_rate.count = 0;
		dsn_rate.next = 0;
	}
	/* When the ring is full, the next slot contains the oldest send time. */
	if (dsn_rate.count == max &&
	    dsn_rate.sent[dsn_rate.next] + DSN_WINDOW > now)
		return false;
	dsn_rate.sent[dsn_rate.next] = now;
	dsn_rate.next = (dsn_rate.next + 1) % max;
	if (dsn_rate.count < max)
		dsn_rate.count++;
	return true;
}

/* Append TEXT with control characters (line breaks included) turned into spaces. */
static void
dsn_add_clean(struct evbuffer *out, const char *text)
{
	const unsigned char *p;

	for (p = (const unsigned char *)text; *p != '\0'; p++) {
		if (*p == '\n')
			evbuffer_add(out, " / ", 3);
		else if (*p < 32 || *p == 127)
			evbuffer_add(out, " ", 1);
		else
			evbuffer_add(out, p, 1);
	}
}

/* The RFC 3463 status of a failed recipient: its own when it has one. */
static const char *
dsn_status(const struct queue_recipient *rcpt)
{
	if (rcpt->status[0] == '5')
		return rcpt->status;
	if (rcpt->text != NULL && strncmp(rcpt->text, "expired", 7) == 0)
		return "5.4.7";
	return "5.0.0";
}

static void
dsn_add_diagnostic(struct evbuffer *out, const struct queue_recipient *rcpt)
{
	const char *text = rcpt->text != NULL ? rcpt->text : "";

	if (rcpt->code != 0) {
		evbuffer_add_printf(out, "Diagnostic-Code: smtp; %d%s%s ", rcpt->code,
		    rcpt->status[0] != '\0' ? " " : "", rcpt->status);
		dsn_add_clean(out, text);
		evbuffer_add(out, "\r\n", 2);
		return;
	}
	evbuffer_add_printf(out, "Diagnostic-Code: X-relayq; ");
	dsn_add_clean(out, text);
	evbuffer_add(out, "\r\n", 2);
}

/* The text part: one line per failed recipient, for people. */
static void
dsn_add_text(struct evbuffer *out, const struct config *config,
    const struct queue_message *msg, const char *host)
{
	size_t i;

	evbuffer_add_printf(out, "This is the mail relay relayq on %s.\r\n\r\n",
	    host_fqdn());
	if (config->dsn.mode == DSN_MODE_ADMIN)
		evbuffer_add_printf(out, "A message from <%s> could not be "
		    "delivered to the recipients below.\r\n", msg->sender);
	else
		evbuffer_add_printf(out, "Your message could not be delivered to "
		    "the recipients below.\r\n");
	evbuffer_add_printf(out, "It was handed to the smart host %s. The header "
	    "of the message follows\r\nthe technical report.\r\n\r\n", host);

	for (i = 0; i < msg->rcpt_count; i++) {
		const struct queue_recipient *rcpt = &msg->rcpts[i];

		if (rcpt->state != RCPT_FAILED)
			continue;
		evbuffer_add_printf(out, "<%s>: ", rcpt->address);
		if (rcpt->code != 0)
			evbuffer_add_printf(out, "%d%s%s ", rcpt->code,
			    rcpt->status[0] != '\0' ? " " : "", rcpt->status);
		dsn_add_clean(out, rcpt->text != NULL ? rcpt->text : "");
		evbuffer_add(out, "\r\n", 2);
	}
}

/* The message/delivery-status part (RFC 3464 section 2). */
static void
dsn_add_status(struct evbuffer *out, const struct queue_message *msg,
    const char *host)
{
	char date[64], remote[256];
	const char *colon;
	size_t i;

	time_format_rfc5322(msg->created, date, sizeof(date));
	evbuffer_add_printf(out, "Reporting-MTA: dns; %s\r\n", host_fqdn());
	evbuffer_add_printf(out, "X-Relayq-Queue-ID: %" PRId64 "\r\n", msg->id);
	evbuffer_add_printf(out, "Arrival-Date: %s\r\n", date);

	/* "host:port" without the port, and without brackets for IPv6. */
	colon = strrchr(host, ':');
	snprintf(remote, sizeof(remote), "%.*s", colon != NULL ?
	    (int)(colon - host) : (int)strlen(host), host);
	if (remote[0] == '[' && remote[strlen(remote) - 1] == ']') {
		memmove(remote, remote + 1, strlen(remote));
		remote[strlen(remote) - 1] = '\0';
	}

	for (i = 0; i < msg->rcpt_count; i++) {
		const struct queue_recipient *rcpt = &msg->rcpts[i];

		if (rcpt->state != RCPT_FAILED)
			continue;
		evbuffer_add_printf(out, "\r\nFinal-Recipient: rfc822; %s\r\n"
		    "Action: failed\r\nStatus: %s\r\n", rcpt->address,
		    dsn_status(rcpt));
		if (rcpt->code != 0)
			evbuffer_add_printf(out, "Remote-MTA: dns; %s\r\n", remote);
		dsn_add_diagnostic(out, rcpt);
	}
}

/*
 * Append the header section of the stored message ID, without the empty
 * line that ends it, cut at a line end when it is larger than
 * DSN_HEADER_MAX.
 */
static int
dsn_add_headers(struct evbuffer *out, struct queue_store *qs, int64_t id,
    char **errstr)
{
	struct evbuffer *stored = evbuffer_new();
	struct evbuffer_ptr end;
	size_t len;
	int seq = 0, r = 1;
	char *text;

	if (stored == NULL)
		return set_error(errstr, "out of memory");
	for (;;) {
		end = evbuffer_search(stored, "\r\n\r\n", 4, NULL);
		if (end.pos != -1 || evbuffer_get_length(stored) > DSN_HEADER_MAX)
			break;
		r = queue_store_chunk_read(qs, id, seq++, stored, errstr);
		if (r != 1)
			break;
	}
	if (r == -1) {
		evbuffer_free(stored);
		return -1;
	}

	len = end.pos != -1 ? (size_t)end.pos + 2 : evbuffer_get_length(stored);
	if (len > DSN_HEADER_MAX)
		len = DSN_HEADER_MAX;
	text = xmalloc(len + 1);
	evbuffer_remove(stored, text, len);
	text[len] = '\0';
	/* A header cut short ends at its last complete line. */
	while (len >= 2 && !(text[len - 2] == '\r' && text[len - 1] == '\n'))
		len--;
	if (len < 2)
		len = 0;
	evbuffer_add(out, text, len);
	free(text);
	evbuffer_free(stored);
	return 0;
}

/* Build the whole notification into OUT. */
static int
dsn_build(struct evbuffer *out, struct queue_store *qs,
    const struct config *config, const struct queue_message *msg,
    const char *host, const char *to, char **errstr)
{
	char boundary[64], *message_id;

	message_id = message_id_generate(host_fqdn());
	snprintf(boundary, sizeof(boundary), "relayq-dsn-%" PRId64 "-%" PRIu64,
	    msg->id, random_below(UINT64_MAX));
	evbuffer_add_printf(out,
	    "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
	    "To: <%s>\r\n"
	    "Subject: Undelivered Mail Returned to Sender\r\n"
	    "Message-ID: %s\r\n"
	    "Auto-Submitted: auto-replied\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"%s\"\r\n"
	    "\r\n"
	    "This is a delivery status notification in MIME format.\r\n"
	    "\r\n"
	    "--%s\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "\r\n", host_fqdn(), to, message_id, boundary, boundary);
	free(message_id);
	dsn_add_text(out, config, msg, host);

	evbuffer_add_printf(out, "\r\n--%s\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n", boundary);
	dsn_add_status(out, msg, host);

	evbuffer_add_printf(out, "\r\n--%s\r\n"
	    "Content-Type: text/rfc822-headers\r\n\r\n", boundary);
	if (dsn_add_headers(out, qs, msg->id, errstr) == -1)
		return -1;
	evbuffer_add_printf(out, "\r\n--%s--\r\n", boundary);
	return 0;
}

/* Write OUT into the queue as a message from <> to TO. */
static int
dsn_submit(struct queue_store *qs, struct evbuffer *out, const char *to,
    int64_t about, int64_t *id, char **errstr)
{
	char *rcpts[1], *source, *text;
	struct submit *s;
	size_t len = evbuffer_get_length(out);
	int rc;

	rcpts[0] = (char *)to;
	source = xasprintf("delivery status notification for message %" PRId64,
	    about);
	s = submit_new(qs, "", rcpts, 1, source, errstr);
	free(source);
	if (s == NULL)
		return -1;

	text = (char *)evbuffer_pullup(out, -1);
	rc = submit_write(s, text, len, errstr);
	if (rc == 0)
		rc = submit_commit(s, id, NULL, errstr);
	submit_free(s);
	return rc;
}

static bool
dsn_has_failed(const struct queue_message *msg)
{
	size_t i;

	for (i = 0; i < msg->rcpt_count; i++)
		if (msg->rcpts[i].state == RCPT_FAILED)
			return true;
	return false;
}

int
dsn_notify(struct queue_store *qs, const struct config *config,
    const struct queue_message *msg, const char *host, char **errstr)
{
	const char *to;
	char *escaped;
	struct evbuffer *out;
	int64_t id = 0;
	int rc;

	if (!dsn_has_failed(msg) || config->dsn.mode == DSN_MODE_OFF)
		return 0;
	if (msg->sender[0] == '\0') {
		log_info("msg=%" PRId64 " event=dsn_skipped reason=\"the message "
		    "has the null sender\"", msg->id);
		return 0;
	}
	if (!dsn_rate_take(config->dsn.max_per_hour, now_seconds())) {
		dsn_rate.suppressed++;
		log_warning("msg=%" PRId64 " event=dsn_suppressed limit=%d/h "
		    "suppressed=%" PRId64, msg->id, config->dsn.max_per_hour,
		    dsn_rate.suppressed);
		return 0;
	}

	to = config->dsn.mode == DSN_MODE_ADMIN ? config->dsn.address :
	    msg->sender;
	out = evbuffer_new();
	if (out == NULL)
		return set_error(errstr, "out of memory");
	rc = dsn_build(out, qs, config, msg, host, to, errstr);
	if (rc == 0)
		rc = dsn_submit(qs, out, to, msg->id, &id, errstr);
	evbuffer_free(out);
	if (rc == -1)
		return -1;

	escaped = log_escape(to, strlen(to));
	log_info("msg=%" PRId64 " event=dsn_queued dsn=%" PRId64 " to=<%s>",
	    msg->id, id, escaped);
	free(escaped);
	return 1;
}
