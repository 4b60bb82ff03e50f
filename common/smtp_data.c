/*
 * The DATA phase state machine; the rules are in smtp_data.h.
 * Output is batched in a small buffer so the sink sees few calls.
 */
#include <string.h>

#include "smtp_data.h"

void
smtp_data_init(struct smtp_data_parser *p, smtp_data_sink sink, void *arg)
{
	memset(p, 0, sizeof(*p));
	p->state = SMTP_DATA_BOL_CRLF;
	p->sink = sink;
	p->arg = arg;
}

static void
smtp_data_flush(struct smtp_data_parser *p)
{
	if (p->out_len > 0) {
		p->sink(p->arg, p->out, p->out_len);
		p->out_len = 0;
	}
}

static void
smtp_data_emit(struct smtp_data_parser *p, const char *data, size_t len)
{
	if (p->out_len + len > sizeof(p->out))
		smtp_data_flush(p);
	memcpy(p->out + p->out_len, data, len);
	p->out_len += len;
}

static void
smtp_data_byte(struct smtp_data_parser *p, char c)
{
	smtp_data_emit(p, &c, 1);
}

/* A byte at the start of a line that cannot end the data. */
static void
smtp_data_line_start(struct smtp_data_parser *p, char c)
{
	switch (c) {
	case '\r':
		p->state = SMTP_DATA_CR;
		break;
	case '\n':
		smtp_data_emit(p, "\r\n", 2);
		p->state = SMTP_DATA_BOL_OTHER;
		break;
	default:
		smtp_data_byte(p, c);
		p->state = SMTP_DATA_MID;
		break;
	}
}

static void
smtp_data_step(struct smtp_data_parser *p, char c)
{
	switch (p->state) {
	case SMTP_DATA_BOL_CRLF:
		if (c == '.')
			p->state = SMTP_DATA_DOT;
		else
			smtp_data_line_start(p, c);
		break;
	case SMTP_DATA_BOL_OTHER:
	case SMTP_DATA_MID:
		smtp_data_line_start(p, c);
		break;
	case SMTP_DATA_CR:
		smtp_data_emit(p, "\r\n", 2);
		if (c == '\n') {
			p->state = SMTP_DATA_BOL_CRLF;
		} else {
			/* The CR was bare: this byte starts a new line. */
			smtp_data_line_start(p, c);
		}
		break;
	case SMTP_DATA_DOT:
		if (c == '\r') {
			p->state = SMTP_DATA_DOT_CR;
		} else if (c == '\n') {
			/* ".<LF>" is a one-dot line ended by a bare LF. */
			smtp_data_emit(p, ".\r\n", 3);
			p->state = SMTP_DATA_BOL_OTHER;
		} else {
			/* The stuffed dot is removed; C is the line's first byte. */
			smtp_data_line_start(p, c);
		}
		break;
	case SMTP_DATA_DOT_CR:
		if (c == '\n') {
			p->state = SMTP_DATA_END;
		} else {
			smtp_data_emit(p, ".\r\n", 3);
			smtp_data_line_start(p, c);
		}
		break;
	case SMTP_DATA_END:
		break;
	}
}

size_t
smtp_data_feed(struct smtp_data_parser *p, const char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len && p->state != SMTP_DATA_END; i++) {
		char c = buf[i];

		/* Fast path: ordinary bytes inside a line. */
		if (p->state == SMTP_DATA_MID && c != '\r' && c != '\n') {
			size_t run = i;

			while (run < len && buf[run] != '\r' && buf[run] != '\n')
				run++;
			while (i < run) {
				size_t n = run - i;

				if (n > sizeof(p->out) - p->out_len)
					n = sizeof(p->out) - p->out_len;
				if (n == 0) {
					smtp_data_flush(p);
					continue;
				}
				memcpy(p->out + p->out_len, buf + i, n);
				p->out_len += n;
				i += n;
			}
			i--;
			continue;
		}
		smtp_data_step(p, c);
	}

	if (p->state == SMTP_DATA_END)
		smtp_data_flush(p);
	return i;
}

int
smtp_data_done(const struct smtp_data_parser *p)
{
	return p->state == SMTP_DATA_END;
}
