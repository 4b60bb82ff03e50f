/*
 * Incoming SMTP sessions. Commands are read line by line and answered in
 * order, so pipelined commands work without special cases. During DATA
 * the bytes go through three stages: smtp_data (end of data, unstuffing,
 * line ends), message_writer (Received:, Date:, Message-ID:) and the
 * session's chunk buffer, which is written to the queue every
 * QUEUE_CHUNK_SIZE bytes. Reading is paused while a message waits for its
 * group commit, and resumes with whatever the client pipelined after it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "intake.h"
#include "log.h"
#include "message.h"
#include "relayqd.h"
#include "smtp_data.h"
#include "smtp_proto.h"
#include "smtp_server.h"
#include "util.h"

/* Errors tolerated before the session is closed, against scanners and loops. */
#define SMTP_SERVER_MAX_ERRORS 20

/*
 * Session states. COMMAND -> DATA (after 354) -> COMMIT (data complete,
 * reading paused) -> COMMAND; any state -> CLOSING (reply queued, closing
 * once it is written).
 */
enum smtp_server_state {
	SMTP_SERVER_COMMAND,
	SMTP_SERVER_DATA,
	SMTP_SERVER_COMMIT,
	SMTP_SERVER_CLOSING,
};

/* The transaction from MAIL to the end of DATA. */
struct smtp_transaction {
	char *sender;
	char **rcpts;
	size_t rcpt_count;
	bool body_8bitmime;
	int64_t msg_id;			/* 0 until DATA creates the queue entry */
	struct smtp_data_parser data;
	struct message_writer writer;
	char *chunk;			/* QUEUE_CHUNK_SIZE bytes */
	size_t chunk_len;
	int chunk_seq;
	uint64_t size;			/* message bytes after unstuffing */
	bool too_big;
	char *store_error;		/* first failure writing the body */
	bool store_error_space;
	struct intake_request *commit;
};

struct smtp_session {
	TAILQ_ENTRY(smtp_session) entry;
	uint64_t id;
	struct bufferevent *bev;
	char peer[INET6_ADDRSTRLEN];
	enum smtp_server_state state;
	char *helo;			/* escaped for logs and Received: */
	bool esmtp;
	bool discard_line;		/* skipping the rest of an over-long line */
	int errors;
	int messages;
	struct smtp_transaction *tx;
};

static TAILQ_HEAD(, smtp_session) smtp_sessions =
    TAILQ_HEAD_INITIALIZER(smtp_sessions);
static int smtp_session_count;
static uint64_t smtp_session_next_id = 1;

static void smtp_server_read(struct bufferevent *bev, void *arg);

static const char *
smtp_server_hostname(void)
{
	const char *name = relayqd.config->smtpd.hostname;

	return name != NULL ? name : host_fqdn();
}

static void
smtp_server_reply(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
smtp_server_reply(struct smtp_session *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

static void
smtp_transaction_free(struct smtp_transaction *tx)
{
	size_t i;

	if (tx == NULL)
		return;
	if (tx->commit != NULL)
		intake_cancel(tx->commit);
	else if (tx->msg_id != 0)
		queue_store_message_delete(relayqd.store, tx->msg_id, NULL);
	for (i = 0; i < tx->rcpt_count; i++)
		free(tx->rcpts[i]);
	free(tx->rcpts);
	free(tx->sender);
	free(tx->chunk);
	free(tx->store_error);
	message_writer_clear(&tx->writer);
	free(tx);
}

static void
smtp_session_reset(struct smtp_session *s)
{
	smtp_transaction_free(s->tx);
	s->tx = NULL;
}

static void
smtp_session_free(struct smtp_session *s)
{
	log_info("session=s%llu event=disconnect messages=%d",
	    (unsigned long long)s->id, s->messages);
	smtp_session_reset(s);
	TAILQ_REMOVE(&smtp_sessions, s, entry);
	smtp_session_count--;
	bufferevent_free(s->bev);
	free(s->helo);
	free(s);
}

static void
smtp_server_written(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->state == SMTP_SERVER_CLOSING)
		smtp_session_free(s);
}

/* Send a final reply and close once it has been written. */
static void
smtp_session_close(struct smtp_session *s, const char *reply)
{
	if (reply != NULL)
		smtp_server_reply(s, "%s", reply);
	s->state = SMTP_SERVER_CLOSING;
	bufferevent_disable(s->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		smtp_session_free(s);
}

static void
smtp_server_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;

	if (what & BEV_EVENT_TIMEOUT) {
		log_info("session=s%llu event=timeout", (unsigned long long)s->id);
		if (s->state == SMTP_SERVER_CLOSING) {
			smtp_session_free(s);
			return;
		}
		smtp_session_close(s, "421 4.4.2 Timeout waiting for input, closing");
		return;
	}
	if (s->state == SMTP_SERVER_COMMIT) {
		/* The commit goes ahead; only the reply has nowhere to go. */
		log_info("session=s%llu event=lost_during_commit",
		    (unsigned long long)s->id);
	}
	smtp_session_free(s);
}

/* Count a protocol error; too many close the session. Returns -1 when closed. */
static int
smtp_session_error(struct smtp_session *s, const char *reply)
{
	if (++s->errors >= SMTP_SERVER_MAX_ERRORS) {
		smtp_session_close(s, "421 4.7.0 Too many errors, closing");
		return -1;
	}
	smtp_server_reply(s, "%s", reply);
	return 0;
}

/* --- message data --- */

static void
smtp_chunk_flush(struct smtp_transaction *tx)
{
	char *error = NULL;

	if (tx->chunk_len == 0 || tx->store_error != NULL)
		return;
	if (queue_store_chunk_append(relayqd.store, tx->msg_id, tx->chunk_seq,
	    tx->chunk, tx->chunk_len, &error) == -1) {
		tx->store_error = error;
		tx->store_error_space = queue_store_error_is_space(relayqd.store);
	}
	tx->chunk_seq++;
	tx->chunk_len = 0;
}

/* Sink of the message writer: fill the chunk buffer, write it when full. */
static void
smtp_chunk_sink(void *arg, const char *data, size_t len)
{
	struct smtp_transaction *tx = arg;
	uint64_t max = relayqd.config->smtpd.max_message_size;

	tx->size += len;
	if (max > 0 && tx->size > max)
		tx->too_big = true;
	if (tx->too_big || tx->store_error != NULL)
		return;

	while (len > 0) {
		size_t room = QUEUE_CHUNK_SIZE - tx->chunk_len;
		size_t n = len < room ? len : room;

		memcpy(tx->chunk + tx->chunk_len, data, n);
		tx->chunk_len += n;
		data += n;
		len -= n;
		if (tx->chunk_len == QUEUE_CHUNK_SIZE)
			smtp_chunk_flush(tx);
	}
}

/* Sink of the DATA parser: message text goes through the header writer. */
static void
smtp_data_sink_cb(void *arg, const char *data, size_t len)
{
	struct smtp_transaction *tx = arg;

	message_writer_write(&tx->writer, data, len);
}

static char *
smtp_received_header(struct smtp_session *s, int64_t id)
{
	char date[64];
	const char *for_clause = "";
	char *for_text = NULL, *header;

	time_format_rfc5322(now_seconds(), date, sizeof(date));
	if (s->tx->rcpt_count == 1) {
		char *escaped = log_escape(s->tx->rcpts[0], strlen(s->tx->rcpts[0]));

		for_text = xasprintf("\r\n\tfor <%s>", escaped);
		for_clause = for_text;
		free(escaped);
	}
	header = xasprintf("Received: from %s ([%s])\r\n\tby %s (relayq) with %s "
	    "id %lld%s;\r\n\t%s\r\n", s->helo != NULL ? s->helo : "unknown", s->peer,
	    smtp_server_hostname(), s->esmtp ? "ESMTP" : "SMTP", (long long)id,
	    for_clause, date);
	free(for_text);
	return header;
}

static void
smtp_commit_done(void *arg, int64_t id, const char *error, int space)
{
	struct smtp_session *s = arg;
	struct smtp_transaction *tx = s->tx;

	tx->commit = NULL;
	if (error != NULL) {
		tx->msg_id = 0;		/* intake deletes the entry itself */
		smtp_server_reply(s, "%s Message not accepted: %s",
		    space ? "452 4.3.1" : "451 4.3.0", error);
	} else {
		char *sender = log_escape(tx->sender, strlen(tx->sender));

		log_info("msg=%lld event=accepted session=s%llu from=<%s> rcpts=%zu "
		    "size=%llu", (long long)id, (unsigned long long)s->id, sender,
		    tx->rcpt_count, (unsigned long long)tx->size);
		free(sender);
		tx->msg_id = 0;		/* now owned by the queue */
		s->messages++;
		smtp_server_reply(s, "250 2.0.0 Ok: queued as %lld", (long long)id);
	}
	smtp_session_reset(s);
	s->state = SMTP_SERVER_COMMAND;
	bufferevent_enable(s->bev, EV_READ);
	/* Commands pipelined behind the data are already buffered. */
	smtp_server_read(s->bev, s);
}

/* The final dot arrived: reject, or hand the message to the group commit. */
static void
smtp_data_finished(struct smtp_session *s)
{
	struct smtp_transaction *tx = s->tx;

	message_writer_finish(&tx->writer);
	smtp_chunk_flush(tx);

	if (tx->too_big) {
		smtp_server_reply(s, "552 5.3.4 Message too big: the limit is %llu bytes",
		    (unsigned long long)relayqd.config->smtpd.max_message_size);
		smtp_session_reset(s);
		s->state = SMTP_SERVER_COMMAND;
		return;
	}
	if (tx->store_error != NULL) {
		log_error("session=s%llu event=spool_failed error=\"%s\"",
		    (unsigned long long)s->id, tx->store_error);
		smtp_server_reply(s, "%s Message not accepted: %s",
		    tx->store_error_space ? "452 4.3.1" : "451 4.3.0", tx->store_error);
		smtp_session_reset(s);
		s->state = SMTP_SERVER_COMMAND;
		return;
	}

	s->state = SMTP_SERVER_COMMIT;
	bufferevent_disable(s->bev, EV_READ);
	tx->commit = intake_submit(tx->msg_id, tx->size,
	    message_writer_message_id(&tx->writer), smtp_commit_done, s);
}

/* Feed buffered input to the DATA parser without copying it. */
static void
smtp_server_read_data(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec vec[8];
	int n, i;
	size_t consumed = 0;

	n = evbuffer_peek(in, -1, NULL, vec, 8);
	for (i = 0; i < n && i < 8; i++) {
		size_t used = smtp_data_feed(&s->tx->data, vec[i].iov_base,
		    vec[i].iov_len);

		consumed += used;
		if (smtp_data_done(&s->tx->data))
			break;
	}
	evbuffer_drain(in, consumed);
	if (smtp_data_done(&s->tx->data))
		smtp_data_finished(s);
}

/* --- commands --- */

static void
smtp_cmd_helo(struct smtp_session *s, const char *arg, bool esmtp)
{
	const char *host = smtp_server_hostname();

	if (arg[0] == '\0') {
		smtp_session_error(s, esmtp ? "501 5.5.4 Syntax: EHLO hostname" :
		    "501 5.5.4 Syntax: HELO hostname");
		return;
	}
	smtp_session_reset(s);
	free(s->helo);
	s->helo = log_escape(arg, strlen(arg) > 255 ? 255 : strlen(arg));
	s->esmtp = esmtp;
	if (!esmtp) {
		smtp_server_reply(s, "250 %s", host);
		return;
	}
	smtp_server_reply(s, "250-%s", host);
	smtp_server_reply(s, "250-PIPELINING");
	smtp_server_reply(s, "250-SIZE %llu",
	    (unsigned long long)relayqd.config->smtpd.max_message_size);
	smtp_server_reply(s, "250-8BITMIME");
	smtp_server_reply(s, "250-ENHANCEDSTATUSCODES");
	smtp_server_reply(s, "250 HELP");
}

static void
smtp_cmd_mail(struct smtp_session *s, const char *arg)
{
	struct smtp_path_command cmd;
	uint64_t max = relayqd.config->smtpd.max_message_size;
	char *error = NULL;

	if (s->helo == NULL) {
		smtp_session_error(s, "503 5.5.1 Send HELO or EHLO first");
		return;
	}
	if (s->tx != NULL) {
		smtp_session_error(s, "503 5.5.1 Sender already specified");
		return;
	}
	if (smtp_path_command_parse(arg, true, &cmd, &error) == -1) {
		smtp_session_error(s, error);
		free(error);
		return;
	}
	if (max > 0 && cmd.size > max) {
		smtp_server_reply(s, "552 5.3.4 Message too big: the limit is %llu bytes",
		    (unsigned long long)max);
		smtp_path_command_clear(&cmd);
		return;
	}

	s->tx = xcalloc(1, sizeof(*s->tx));
	s->tx->sender = cmd.address;
	s->tx->body_8bitmime = cmd.body_8bitmime;
	cmd.address = NULL;
	smtp_path_command_clear(&cmd);
	smtp_server_reply(s, "250 2.1.0 Ok");
}

static void
smtp_cmd_rcpt(struct smtp_session *s, const char *arg)
{
	struct smtp_path_command cmd;
	struct smtp_transaction *tx = s->tx;
	char *error = NULL;

	if (tx == NULL) {
		smtp_session_error(s, "503 5.5.1 Need MAIL before RCPT");
		return;
	}
	if (smtp_path_command_parse(arg, false, &cmd, &error) == -1) {
		smtp_session_error(s, error);
		free(error);
		return;
	}
	if (tx->rcpt_count >= (size_t)relayqd.config->smtpd.max_recipients) {
		/* RFC 5321 4.5.3.1.10: 452 lets the client send the rest later. */
		smtp_server_reply(s, "452 4.5.3 Too many recipients");
		smtp_path_command_clear(&cmd);
		return;
	}
	tx->rcpts = xrealloc(tx->rcpts, (tx->rcpt_count + 1) * sizeof(*tx->rcpts));
	tx->rcpts[tx->rcpt_count++] = cmd.address;
	cmd.address = NULL;
	smtp_path_command_clear(&cmd);
	smtp_server_reply(s, "250 2.1.5 Ok");
}

static void
smtp_cmd_data(struct smtp_session *s, const char *arg)
{
	struct smtp_transaction *tx = s->tx;
	char *error = NULL, *received;

	if (tx == NULL || tx->rcpt_count == 0) {
		smtp_session_error(s, tx == NULL ? "503 5.5.1 Need MAIL before DATA" :
		    "503 5.5.1 Need RCPT before DATA");
		return;
	}
	if (arg[0] != '\0') {
		smtp_session_error(s, "501 5.5.4 DATA takes no arguments");
		return;
	}
	if (queue_store_message_create(relayqd.store, tx->sender, tx->rcpts,
	    tx->rcpt_count, s->peer, now_seconds(), &tx->msg_id, &error) == -1) {
		log_error("session=s%llu event=spool_failed error=\"%s\"",
		    (unsigned long long)s->id, error);
		smtp_server_reply(s, "%s Cannot queue the message now: %s",
		    queue_store_error_is_space(relayqd.store) ? "452 4.3.1" : "451 4.3.0",
		    error);
		free(error);
		tx->msg_id = 0;
		return;
	}

	tx->chunk = xmalloc(QUEUE_CHUNK_SIZE);
	received = smtp_received_header(s, tx->msg_id);
	message_writer_init(&tx->writer, received, smtp_server_hostname(),
	    smtp_chunk_sink, tx);
	free(received);
	smtp_data_init(&tx->data, smtp_data_sink_cb, tx);
	s->state = SMTP_SERVER_DATA;
	smtp_server_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void
smtp_server_command(struct smtp_session *s, char *line)
{
	struct smtp_command cmd;

	if (relayqd.stopping) {
		smtp_session_close(s, "421 4.3.2 Service shutting down, try again later");
		return;
	}
	smtp_command_parse(line, &cmd);
	switch (cmd.verb) {
	case SMTP_VERB_EHLO:
	case SMTP_VERB_HELO:
		smtp_cmd_helo(s, cmd.arg, cmd.verb == SMTP_VERB_EHLO);
		break;
	case SMTP_VERB_MAIL:
		smtp_cmd_mail(s, cmd.arg);
		break;
	case SMTP_VERB_RCPT:
		smtp_cmd_rcpt(s, cmd.arg);
		break;
	case SMTP_VERB_DATA:
		smtp_cmd_data(s, cmd.arg);
		break;
	case SMTP_VERB_RSET:
		smtp_session_reset(s);
		smtp_server_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_NOOP:
		smtp_server_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_QUIT:
		smtp_session_close(s, "221 2.0.0 Bye");
		break;
	case SMTP_VERB_HELP:
		smtp_server_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA "
		    "RSET NOOP QUIT HELP VRFY");
		break;
	case SMTP_VERB_VRFY:
		smtp_server_reply(s, "252 2.5.2 Cannot VRFY users, but will accept "
		    "the message for delivery");
		break;
	case SMTP_VERB_EXPN:
	case SMTP_VERB_STARTTLS:
	case SMTP_VERB_AUTH:
	case SMTP_VERB_BDAT:
		smtp_session_error(s, "502 5.5.1 Command not implemented");
		break;
	case SMTP_VERB_UNKNOWN:
	default:
		smtp_session_error(s, "500 5.5.2 Command not recognized");
		break;
	}
}

/* True when LINE (LEN bytes, CRLF removed) holds a control character other than tab. */
static bool
smtp_line_has_control(const char *line, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return true;
	}
	return false;
}

/* Read one command line. Returns 1 when one was handled, 0 when more input is needed. */
static int
smtp_server_read_command(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_ptr eol;
	char line[SMTP_COMMAND_LINE_MAX + 1];
	size_t len;

	eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
	if (eol.pos == -1) {
		if (evbuffer_get_length(in) > SMTP_COMMAND_LINE_MAX) {
			/* Drop what we have and the rest of the line when it arrives. */
			evbuffer_drain(in, evbuffer_get_length(in));
			if (!s->discard_line) {
				s->discard_line = true;
				return smtp_session_error(s, "500 5.5.2 Line too long") == 0;
			}
		}
		return 0;
	}

	len = (size_t)eol.pos;
	if (s->discard_line || len > SMTP_COMMAND_LINE_MAX) {
		evbuffer_drain(in, len + 1);
		if (s->discard_line) {
			s->discard_line = false;
			return 1;
		}
		return smtp_session_error(s, "500 5.5.2 Line too long") == 0;
	}
	evbuffer_remove(in, line, len + 1);
	line[len] = '\0';
	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';

	if (smtp_line_has_control(line, len))
		return smtp_session_error(s, "500 5.5.2 Invalid character in command") == 0;
	smtp_server_command(s, line);
	return 1;
}

static void
smtp_server_read(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (evbuffer_get_length(in) > 0) {
		if (s->state == SMTP_SERVER_DATA) {
			smtp_server_read_data(s, in);
			if (s->state == SMTP_SERVER_DATA)
				break;
		} else if (s->state == SMTP_SERVER_COMMAND) {
			if (smtp_server_read_command(s, in) == 0)
				break;
		} else {
			break;
		}
	}
}

void
smtp_server_accept(evutil_socket_t fd, const struct sockaddr *addr,
    socklen_t addrlen)
{
	struct smtp_session *s;
	struct timeval tv;
	int port = 0;

	s = xcalloc(1, sizeof(*s));
	s->id = smtp_session_next_id++;
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;

		inet_ntop(AF_INET, &sin->sin_addr, s->peer, sizeof(s->peer));
		port = ntohs(sin->sin_port);
	} else if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;

		inet_ntop(AF_INET6, &sin6->sin6_addr, s->peer, sizeof(s->peer));
		port = ntohs(sin6->sin6_port);
	} else {
		snprintf(s->peer, sizeof(s->peer), "local");
	}

	s->bev = bufferevent_socket_new(relayqd.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		evutil_closesocket(fd);
		free(s);
		return;
	}
	TAILQ_INSERT_TAIL(&smtp_sessions, s, entry);
	smtp_session_count++;
	bufferevent_setcb(s->bev, smtp_server_read, smtp_server_written,
	    smtp_server_event, s);
	tv.tv_sec = (time_t)relayqd.config->smtpd.timeout;
	tv.tv_usec = 0;
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);

	log_info("session=s%llu event=connect client=%s port=%d",
	    (unsigned long long)s->id, s->peer, port);
	if (smtp_session_count > relayqd.config->smtpd.max_connections) {
		smtp_session_close(s, "421 4.7.0 Too many connections, try again later");
		return;
	}
	if (relayqd.stopping) {
		smtp_session_close(s, "421 4.3.2 Service shutting down, try again later");
		return;
	}
	smtp_server_reply(s, "220 %s ESMTP relayq", smtp_server_hostname());
}

void
smtp_server_shutdown(void)
{
	struct smtp_session *s, *next;

	for (s = TAILQ_FIRST(&smtp_sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (s->state == SMTP_SERVER_COMMAND && s->tx == NULL)
			smtp_session_close(s, "421 4.3.2 Service shutting down, try again later");
	}
}

void
smtp_server_abort_all(void)
{
	struct smtp_session *s;

	while ((s = TAILQ_FIRST(&smtp_sessions)) != NULL)
		smtp_session_free(s);
}

int
smtp_server_sessions(void)
{
	return smtp_session_count;
}
