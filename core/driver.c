/*
 * driver.c: mfd_compile and mfd_compile_many, a flat list of passes (QBE's main.c).
 *
 * Each flow goes through read, check and lower: each pass returns the number of errors so far, and the flow
 * stops after the first pass that leaves any (SQLite's nErr), so a later pass only ever sees input the earlier
 * ones accepted. Every flow is taken that far, so one compile reports the problems of all of them. A compile
 * of several flows then checks them against each other (check_many, lower_many), and emit writes the one
 * file only when no pass reported an error.
 *
 * Everything a compile allocates lives in one arena that the result owns and mfd_result_free releases. A
 * failed allocation in any pass longjmps back here through the arena's catch; the compile then frees its
 * arena and reports the single error "out of memory".
 */
#include <assert.h>
#include <string.h>

#include "internal.h"

/* The passes of one flow. */
static int (*const passes[])(Compile *) = {
	mfd_read_ir,
	mfd_check,
	mfd_lower,
};

/* The passes over all the flows of a file of several, once each flow passed alone. */
static int (*const passes_many[])(Compile *, size_t) = {
	mfd_check_many,
	mfd_lower_many,
};

static const MfdDiag oom_diag = {.severity = MFD_ERROR, .message = "out of memory"};

/* One call of mfd_compile_many: its flows and what the result is built from. */
typedef struct Batch {
	MfdArena *arena;
	Compile *units;      /* one per IR, in the caller's order */
	size_t n;
	Diags diags;         /* problems of the call itself (no IR at all) and of the output text */
	StrBuf out;          /* the generated module */
	jmp_buf oom;         /* where a failed allocation lands */
} Batch;

static int
out_of_memory(MfdResult *out)
{
	memset(out, 0, sizeof *out);
	out->diags = &oom_diag;
	out->ndiags = 1;
	out->nerrors = 1;
	return 1;
}

/*
 * The label the diagnostics of IR i carry in a compile of several flows: the flow's name when the IR gives
 * one as a string (escaped as a literal when it could not be printed as it is), else "#i" counting from 1, so
 * even an IR too broken to read is told apart.
 */
static const char *
label(MfdArena *a, const MfdValue *ir, size_t i)
{
	const MfdValue *flow = ir->kind == VAL_OBJECT ? mfd_object_get(ir, "flow") : NULL;
	const MfdValue *name = flow && flow->kind == VAL_OBJECT ? mfd_object_get(flow, "name") : NULL;

	const char *quoted;

	if (!name || name->kind != VAL_STRING || name->u.str.len == 0)
		return mfd_printf(a, "#%zu", i + 1);
	quoted = mfd_quote(a, name->u.str.s, name->u.str.len);
	return *quoted == '\'' ? mfd_strndup(a, name->u.str.s, name->u.str.len) : quoted;
}

/* The number of errors of every flow and of the call. */
static int
nerrors(const Batch *b)
{
	int n = b->diags.nerrors;
	size_t i;

	for (i = 0; i < b->n; i++)
		n += b->units[i].diags.nerrors;
	return n;
}

/* Runs the passes, stopping as the file comment says, then checks the output text was built whole. */
static void
run(Batch *b, const char *runtime)
{
	size_t i, k;

	if (b->n == 0) {
		mfd_diag(&b->diags, MFD_ERROR, NULL, NULL, 0, "no flow to compile");
		return;
	}
	for (i = 0; i < b->n; i++)
		for (k = 0; k < MFD_COUNT(passes); k++)
			if (passes[k](&b->units[i]) > 0)
				break;
	if (nerrors(b) > 0)
		return;
	if (b->n > 1)
		for (k = 0; k < MFD_COUNT(passes_many); k++)
			if (passes_many[k](b->units, b->n) > 0)
				return;
	mfd_emit(&b->out, b->units, b->n, runtime);
	if (mfd_sb_str(&b->out))
		return;
	if (b->out.err == SB_TOOBIG)
		mfd_diag(&b->diags, MFD_ERROR, NULL, NULL, 0, "the generated module would exceed %zu bytes", SB_MAX_LEN);
	else
		mfd_diag(&b->diags, MFD_ERROR, NULL, NULL, 0, "out of memory");
}

/* Fills out with the text and every diagnostic of b: the flows' in order, then the call's. */
static void
result(Batch *b, MfdResult *out)
{
	const Diags *d;
	MfdDiag *all;
	size_t i, n = b->diags.n;

	for (i = 0; i < b->n; i++)
		n += b->units[i].diags.n;
	all = mfd_alloc(b->arena, (n ? n : 1) * sizeof *all);
	out->ndiags = 0;
	for (i = 0; i <= b->n; i++) {
		d = i < b->n ? &b->units[i].diags : &b->diags;
		if (d->n)
			memcpy(all + out->ndiags, d->v, d->n * sizeof *all);
		out->ndiags += d->n;
	}
	out->diags = all;
	out->nerrors = nerrors(b);
	out->text = out->nerrors ? NULL : b->out.buf;
	out->len = out->text ? b->out.len : 0;
	out->arena = b->arena;
}

int
mfd_compile_many(const MfdValue *const *irs, size_t n, const char *runtime_src, MfdResult *out)
{
	MfdArena *a = mfd_arena_new();
	Compile *c;
	Batch *b;
	size_t i;

	assert((irs || n == 0) && out);
	if (!a || !(b = mfd_alloc(a, sizeof *b))) {
		mfd_arena_free(a);
		return out_of_memory(out);
	}
	b->arena = a;
	b->n = n;
	mfd_diags_init(&b->diags, a);
	mfd_sb_init(&b->out, a);
	if (setjmp(b->oom)) {
		mfd_arena_free(a);
		return out_of_memory(out);
	}
	mfd_arena_catch(a, &b->oom);
	b->units = mfd_alloc(a, (n ? n : 1) * sizeof *b->units);
	for (i = 0; i < n; i++) {
		assert(irs[i]);
		c = &b->units[i];
		c->arena = a;
		c->ir = irs[i];
		c->shared = n > 1;
		mfd_diags_init(&c->diags, a);
		if (c->shared)
			c->diags.flow = label(a, irs[i], i);
	}
	run(b, runtime_src ? runtime_src : "");
	result(b, out);
	mfd_arena_catch(a, NULL);
	return out->nerrors;
}

int
mfd_compile(const MfdValue *ir, const char *runtime_src, MfdResult *out)
{
	assert(ir);
	return mfd_compile_many(&ir, 1, runtime_src, out);
}

void
mfd_result_free(MfdResult *r)
{
	mfd_arena_free(r->arena);
	memset(r, 0, sizeof *r);
}
