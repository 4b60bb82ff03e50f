/*
 * The DATA phase of an SMTP server session as a byte-level state machine.
 * It finds the end of data, removes dot-stuffing and normalises line ends.
 *
 * Rules: only <CRLF>.<CRLF> ends the data, where the first CRLF is the one
 * that ended the previous line (or the DATA command itself). A bare LF or
 * a bare CR ends a line too, and is written out as CRLF, but a line that
 * follows a bare line end can never end the data and is not unstuffed:
 * this closes the "SMTP smuggling" hole where "<LF>.<CR><LF>" ends DATA
 * early on some servers and not on others. A leading dot is removed from
 * a line that follows a CRLF (RFC 5321 section 4.5.2). NUL bytes and long
 * lines pass through unchanged.
 */
#ifndef RELAYQ_SMTP_DATA_H
#define RELAYQ_SMTP_DATA_H

#include <stddef.h>

enum smtp_data_state {
	SMTP_DATA_BOL_CRLF,	/* start of a line after CRLF: a dot here is special */
	SMTP_DATA_BOL_OTHER,	/* start of a line after a bare CR or LF */
	SMTP_DATA_MID,		/* inside a line */
	SMTP_DATA_CR,		/* after a CR, waiting to see whether LF follows */
	SMTP_DATA_DOT,		/* after a dot at SMTP_DATA_BOL_CRLF */
	SMTP_DATA_DOT_CR,	/* after ".<CR>" at SMTP_DATA_BOL_CRLF */
	SMTP_DATA_END,		/* <CRLF>.<CRLF> seen */
};

/* Sink for the unstuffed, CRLF-normalised message bytes. */
typedef void (*smtp_data_sink)(void *arg, const char *data, size_t len);

struct smtp_data_parser {
	enum smtp_data_state state;
	smtp_data_sink sink;
	void *arg;
	char out[4096];		/* bytes not yet handed to the sink */
	size_t out_len;
};

void smtp_data_init(struct smtp_data_parser *p, smtp_data_sink sink, void *arg);

/*
 * Feed LEN bytes. Returns the number of bytes consumed: all of them, or
 * fewer when the end of data was reached (the rest belongs to the next
 * command). After the end, smtp_data_done() is true and every message
 * byte has been passed to the sink.
 */
size_t smtp_data_feed(struct smtp_data_parser *p, const char *buf, size_t len);

int smtp_data_done(const struct smtp_data_parser *p);

#endif
