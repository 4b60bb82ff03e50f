/*
 * The BSD <sys/queue.h> lists that relayq uses. POSIX systems have the
 * header. mingw-w64 lacks it, so for Windows this file defines the same
 * macros with the same layout: libevent's headers define TAILQ_ENTRY
 * themselves only when it is missing, and a different layout would change
 * the size of libevent's structures.
 */
#ifndef RELAYQ_LIST_H
#define RELAYQ_LIST_H

#ifndef _WIN32
#include <sys/queue.h>
#else

#include <stddef.h>

/* Doubly linked list with a head that points to the first element. */
#define LIST_HEAD(name, type)						\
struct name {								\
	struct type *lh_first;						\
}

#define LIST_ENTRY(type)						\
struct {								\
	struct type *le_next;						\
	struct type **le_prev;						\
}

#define LIST_INIT(head)		((head)->lh_first = NULL)
#define LIST_FIRST(head)	((head)->lh_first)
#define LIST_NEXT(elm, field)	((elm)->field.le_next)

#define LIST_FOREACH(var, head, field)					\
	for ((var) = LIST_FIRST(head); (var) != NULL;			\
	    (var) = LIST_NEXT(var, field))

#define LIST_INSERT_HEAD(head, elm, field) do {				\
	if (((elm)->field.le_next = (head)->lh_first) != NULL)		\
		(head)->lh_first->field.le_prev = &(elm)->field.le_next;\
	(head)->lh_first = (elm);					\
	(elm)->field.le_prev = &(head)->lh_first;			\
} while (0)

#define LIST_REMOVE(elm, field) do {					\
	if ((elm)->field.le_next != NULL)				\
		(elm)->field.le_next->field.le_prev =			\
		    (elm)->field.le_prev;				\
	*(elm)->field.le_prev = (elm)->field.le_next;			\
} while (0)

/* Doubly linked tail queue with a head that points to the first and last elements. */
#define TAILQ_HEAD(name, type)						\
struct name {								\
	struct type *tqh_first;						\
	struct type **tqh_last;						\
}

#define TAILQ_HEAD_INITIALIZER(head)	{ NULL, &(head).tqh_first }

#define TAILQ_ENTRY(type)						\
struct {								\
	struct type *tqe_next;						\
	struct type **tqe_prev;						\
}

#define TAILQ_INIT(head) do {						\
	(head)->tqh_first = NULL;					\
	(head)->tqh_last = &(head)->tqh_first;				\
} while (0)

#define TAILQ_FIRST(head)		((head)->tqh_first)
#define TAILQ_NEXT(elm, field)		((elm)->field.tqe_next)
#define TAILQ_EMPTY(head)		((head)->tqh_first == NULL)

#define TAILQ_FOREACH(var, head, field)					\
	for ((var) = TAILQ_FIRST(head); (var) != NULL;			\
	    (var) = TAILQ_NEXT(var, field))

#define TAILQ_INSERT_HEAD(head, elm, field) do {			\
	if (((elm)->field.tqe_next = (head)->tqh_first) != NULL)	\
		(head)->tqh_first->field.tqe_prev =			\
		    &(elm)->field.tqe_next;				\
	else								\
		(head)->tqh_last = &(elm)->field.tqe_next;		\
	(head)->tqh_first = (elm);					\
	(elm)->field.tqe_prev = &(head)->tqh_first;			\
} while (0)

#define TAILQ_INSERT_TAIL(head, elm, field) do {			\
	(elm)->field.tqe_next = NULL;					\
	(elm)->field.tqe_prev = (head)->tqh_last;			\
	*(head)->tqh_last = (elm);					\
	(head)->tqh_last = &(elm)->field.tqe_next;			\
} while (0)

#define TAILQ_REMOVE(head, elm, field) do {				\
	if ((elm)->field.tqe_next != NULL)				\
		(elm)->field.tqe_next->field.tqe_prev =			\
		    (elm)->field.tqe_prev;				\
	else								\
		(head)->tqh_last = (elm)->field.tqe_prev;		\
	*(elm)->field.tqe_prev = (elm)->field.tqe_next;			\
} while (0)

/* Move every element of HEAD2 to the end of HEAD1, leaving HEAD2 empty. */
#define TAILQ_CONCAT(head1, head2, field) do {				\
	if (!TAILQ_EMPTY(head2)) {					\
		*(head1)->tqh_last = (head2)->tqh_first;		\
		(head2)->tqh_first->field.tqe_prev = (head1)->tqh_last;	\
		(head1)->tqh_last = (head2)->tqh_last;			\
		TAILQ_INIT(head2);					\
	}								\
} while (0)

#endif /* _WIN32 */

#endif
