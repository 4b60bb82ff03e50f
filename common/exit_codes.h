/*
 * Process exit codes, with the values of BSD <sysexits.h>, which scripts
 * and mail programs expect from a sendmail-compatible tool. relayq
 * defines them itself because Windows has no <sysexits.h>.
 */
#ifndef RELAYQ_EXIT_CODES_H
#define RELAYQ_EXIT_CODES_H

#define EX_OK		0	/* success */
#define EX_USAGE	64	/* invalid command line */
#define EX_DATAERR	65	/* invalid input data */
#define EX_NOINPUT	66	/* an input file is missing or unreadable */
#define EX_NOUSER	67	/* unknown user or address */
#define EX_NOHOST	68	/* unknown host */
#define EX_UNAVAILABLE	69	/* a service is unavailable */
#define EX_SOFTWARE	70	/* internal error */
#define EX_OSERR	71	/* an operating system call failed */
#define EX_OSFILE	72	/* a system file is missing or invalid */
#define EX_CANTCREAT	73	/* an output file cannot be created */
#define EX_IOERR	74	/* input or output failed */
#define EX_TEMPFAIL	75	/* temporary failure: try again later */
#define EX_PROTOCOL	76	/* the peer broke the protocol */
#define EX_NOPERM	77	/* permission denied */
#define EX_CONFIG	78	/* invalid configuration */

#endif
