/* The daemon's shared context: one instance, created in main.c. */
#ifndef RELAYQ_RELAYQD_H
#define RELAYQ_RELAYQD_H

#include <stdbool.h>

#include "config.h"
#include "queue_store.h"

struct event_base;
struct evdns_base;

struct relayqd {
	struct event_base *base;
	struct evdns_base *dns;
	struct config *config;
	struct queue_store *store;
	bool stopping;		/* SIGTERM seen: accept nothing new */
};

extern struct relayqd relayqd;

#endif
