/*
 * list.h - the intrusive containers every part of crt uses: crt_container_of,
 * a doubly-linked list (crt_list of crt_link: O(1) push at either end, pop and
 * removal of any member) and a singly-linked FIFO (crt_fifo of crt_snode:
 * push at the tail, pop at the head).
 *
 * Header only, no locking: a list belongs to whoever owns the struct that
 * holds it (a channel's mutex, the loop thread, a pool's lock). A node is in
 * at most one list at a time; a removed node has NULL links, so
 * crt_list_linked tells whether it is in a list (when it is the only member
 * check with the list: head == node).
 *
 *   typedef struct job { crt_link link; ... } job;
 *   crt_list q = CRT_LIST_INIT;
 *   crt_list_push(&q, &j->link);
 *   job *first = crt_container_of(crt_list_pop(&q), job, link);
 */
#ifndef CRT_LIST_H
#define CRT_LIST_H

#include <stddef.h>

/* The struct of type `type` whose member `member` is at ptr; ptr is
 * evaluated once and may be NULL (then the result is NULL), so
 * crt_container_of(crt_list_pop(&q), job, link) is safe. */
static inline void *crt_container_of_(void *ptr, size_t offset) {
  return ptr ? (void *)((char *)ptr - offset) : NULL;
}
#define crt_container_of(ptr, type, member)                                                        \
  ((type *)crt_container_of_((void *)(ptr), offsetof(type, member)))

/* ---- doubly-linked list ------------------------------------------------- */

typedef struct crt_link {
  struct crt_link *prev, *next;
} crt_link;

typedef struct crt_list {
  crt_link *head, *tail;
} crt_list;

#define CRT_LIST_INIT                                                                              \
  { NULL, NULL }

static inline int crt_list_empty(const crt_list *l) { return l->head == NULL; }

/* Whether n is in l (O(1); n must be in l or in no list). */
static inline int crt_list_contains(const crt_list *l, const crt_link *n) {
  return n->prev != NULL || l->head == n;
}

/* Append n at the tail. */
static inline void crt_list_push(crt_list *l, crt_link *n) {
  n->next = NULL;
  n->prev = l->tail;
  if (l->tail)
    l->tail->next = n;
  else
    l->head = n;
  l->tail = n;
}

/* Insert n at the head. */
static inline void crt_list_push_front(crt_list *l, crt_link *n) {
  n->prev = NULL;
  n->next = l->head;
  if (l->head)
    l->head->prev = n;
  else
    l->tail = n;
  l->head = n;
}

/* Unlink n, which must be in l. */
static inline void crt_list_remove(crt_list *l, crt_link *n) {
  if (n->prev)
    n->prev->next = n->next;
  else
    l->head = n->next;
  if (n->next)
    n->next->prev = n->prev;
  else
    l->tail = n->prev;
  n->prev = n->next = NULL;
}

/* Unlink and return the head, or NULL when l is empty. */
static inline crt_link *crt_list_pop(crt_list *l) {
  crt_link *n = l->head;
  if (n)
    crt_list_remove(l, n);
  return n;
}

/* for (crt_link *it = l.head, *nx; it && (nx = it->next, 1); it = nx): safe
 * against removing `it` inside the body. */
#define crt_list_each_safe(l, it, nx)                                                              \
  for (crt_link *it = (l)->head, *nx = it ? it->next : NULL; it; it = nx, nx = it ? it->next : NULL)

/* ---- singly-linked FIFO ------------------------------------------------- */

typedef struct crt_snode {
  struct crt_snode *next;
} crt_snode;

typedef struct crt_fifo {
  crt_snode *head, *tail;
} crt_fifo;

#define CRT_FIFO_INIT                                                                              \
  { NULL, NULL }

static inline int crt_fifo_empty(const crt_fifo *q) { return q->head == NULL; }

static inline void crt_fifo_push(crt_fifo *q, crt_snode *n) {
  n->next = NULL;
  if (q->tail)
    q->tail->next = n;
  else
    q->head = n;
  q->tail = n;
}

/* Pop the head, or NULL when q is empty. */
static inline crt_snode *crt_fifo_pop(crt_fifo *q) {
  crt_snode *n = q->head;
  if (n) {
    q->head = n->next;
    if (!q->head)
      q->tail = NULL;
    n->next = NULL;
  }
  return n;
}

/* Take the whole FIFO at once (a batch to run outside a lock): returns the
 * head of a NULL-terminated chain and leaves q empty. */
static inline crt_snode *crt_fifo_take(crt_fifo *q) {
  crt_snode *n = q->head;
  q->head = q->tail = NULL;
  return n;
}

#endif
