/*
 * arena.c: bump allocation in blocks, freed all at once (QBE's alloc/freeall).
 *
 * Each compile owns one arena; the IR, diagnostics, the generated text and the result all live in it, so a
 * compile frees everything with one mfd_arena_free and repeated compiles do not grow memory. Allocations are
 * zeroed and aligned for any type. Small allocations share BLOCK_SIZE blocks; large ones get a block of their
 * own, linked behind the current block so its free space is not lost.
 *
 * Failure: without a catch an allocation returns NULL; with one (the driver installs it) it longjmps there.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define BLOCK_SIZE ((size_t)32 << 10)
#define ALIGN (_Alignof(max_align_t))

typedef struct Block {
	struct Block *next;
	size_t size;          /* bytes in data */
	size_t used;          /* bytes handed out */
	max_align_t data[];
} Block;

struct MfdArena {
	Block *head;     /* the block small allocations come from; NULL before the first one */
	jmp_buf *onfail; /* where a failed allocation longjmps, or NULL */
};

MfdArena *
mfd_arena_new(void)
{
	return calloc(1, sizeof(MfdArena));
}

void
mfd_arena_free(MfdArena *a)
{
	Block *b, *next;

	if (!a)
		return;
	for (b = a->head; b; b = next) {
		next = b->next;
		free(b);
	}
	free(a);
}

void
mfd_arena_catch(MfdArena *a, jmp_buf *onfail)
{
	a->onfail = onfail;
}

static void *
fail(MfdArena *a)
{
	if (a->onfail)
		longjmp(*a->onfail, 1);
	return NULL;
}

/*
 * Returns size zeroed bytes, or NULL (see fail) when size overflows or malloc fails. A zero size still yields a
 * distinct pointer.
 */
void *
mfd_alloc(MfdArena *a, size_t size)
{
	Block *b;
	void *p;
	size_t room;
	int big;

	if (size > SIZE_MAX - ALIGN - sizeof(Block))
		return fail(a);
	size = (size + ALIGN - 1) / ALIGN * ALIGN;
	if (size == 0)
		size = ALIGN;
	b = a->head;
	if (!b || b->size - b->used < size) {
		big = size > BLOCK_SIZE / 4;
		room = big ? size : BLOCK_SIZE;
		b = malloc(sizeof(Block) + room);
		if (!b)
			return fail(a);
		b->size = room;
		b->used = 0;
		if (big && a->head) {
			b->next = a->head->next;
			a->head->next = b;
		} else {
			b->next = a->head;
			a->head = b;
		}
	}
	p = (char *)b->data + b->used;
	b->used += size;
	memset(p, 0, size);
	return p;
}

/*
 * Grows p, an allocation of oldsize bytes, to newsize bytes; the new bytes are zeroed. Grows in place when p
 * is the last allocation of the current block and the block has room (the usual case for a growing StrBuf),
 * else copies. Returns the new pointer, or NULL (see fail) with p untouched.
 */
void *
mfd_realloc(MfdArena *a, void *p, size_t oldsize, size_t newsize)
{
	Block *b = a->head;
	size_t old, grown;
	void *q;

	if (!p)
		return mfd_alloc(a, newsize);
	if (newsize <= oldsize)
		return p;
	old = (oldsize + ALIGN - 1) / ALIGN * ALIGN;
	if (old == 0)
		old = ALIGN;
	if (b && (char *)p + old == (char *)b->data + b->used && newsize <= SIZE_MAX - ALIGN) {
		grown = (newsize + ALIGN - 1) / ALIGN * ALIGN;
		if (grown - old <= b->size - b->used) {
			memset((char *)p + oldsize, 0, grown - oldsize);
			b->used += grown - old;
			return p;
		}
	}
	q = mfd_alloc(a, newsize);
	if (q)
		memcpy(q, p, oldsize);
	return q;
}

char *
mfd_strndup(MfdArena *a, const char *s, size_t len)
{
	char *p;

	if (len == SIZE_MAX)
		return fail(a);
	p = mfd_alloc(a, len + 1);
	if (p && len)
		memcpy(p, s, len);
	return p;
}

char *
mfd_strdup(MfdArena *a, const char *s)
{
	return mfd_strndup(a, s, strlen(s));
}

/* Formats into a new arena string. Returns NULL (see fail) on failure, including a bad format. */
char *
mfd_vprintf(MfdArena *a, const char *fmt, va_list ap)
{
	va_list ap2;
	char *p;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return fail(a);
	p = mfd_alloc(a, (size_t)n + 1);
	if (p)
		vsnprintf(p, (size_t)n + 1, fmt, ap);
	return p;
}

char *
mfd_printf(MfdArena *a, const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	p = mfd_vprintf(a, fmt, ap);
	va_end(ap);
	return p;
}
