/*
 * driver.c: mfd_compile, a flat list of passes over one Compile (QBE's main.c).
 *
 * read, check, lower, emit: each pass returns the number of errors so far, and the driver stops after the
 * first pass that leaves any (SQLite's nErr), so a later pass only ever sees input the earlier ones accepted.
 * Everything a compile allocates lives in one arena that the result owns and mfd_result_free releases. A
 * failed allocation in any pass longjmps back here through the arena's catch; the compile then frees its
 * arena and reports the single error "out of memory".
 */
#include <assert.h>
#include <string.h>

#include "internal.h"

static int (*const passes[])(Compile *) = {
	mfd_read_ir,
	mfd_check,
	mfd_lower,
	mfd_emit,
};

static const MfdDiag oom_diag = {MFD_ERROR, NULL, NULL, 0, "out of memory"};

static int
out_of_memory(MfdResult *out)
{
	memset(out, 0, sizeof *out);
	out->diags = &oom_diag;
	out->ndiags = 1;
	out->nerrors = 1;
	return 1;
}

/* Runs the passes, stopping after the first that leaves errors, then checks the output text was built whole. */
static void
run(Compile *c)
{
	size_t i;

	for (i = 0; i < MFD_COUNT(passes); i++)
		if (passes[i](c) > 0)
			return;
	if (mfd_sb_str(&c->out))
		return;
	if (c->out.err == SB_TOOBIG)
		mfd_diag(&c->diags, MFD_ERROR, NULL, NULL, 0, "the generated module would exceed %zu bytes", SB_MAX_LEN);
	else
		mfd_diag(&c->diags, MFD_ERROR, NULL, NULL, 0, "out of memory");
}

int
mfd_compile(const MfdValue *ir, const char *runtime_src, MfdResult *out)
{
	MfdArena *a = mfd_arena_new();
	Compile *c;

	assert(ir && out);
	if (!a || !(c = mfd_alloc(a, sizeof *c))) {
		mfd_arena_free(a);
		return out_of_memory(out);
	}
	c->arena = a;
	c->ir = ir;
	c->runtime = runtime_src ? runtime_src : "";
	mfd_diags_init(&c->diags, a);
	mfd_sb_init(&c->out, a);
	if (setjmp(c->oom)) {
		mfd_arena_free(a);
		return out_of_memory(out);
	}
	mfd_arena_catch(a, &c->oom);
	run(c);
	mfd_arena_catch(a, NULL);
	out->text = c->diags.nerrors ? NULL : c->out.buf;
	out->len = out->text ? c->out.len : 0;
	out->diags = c->diags.v;
	out->ndiags = c->diags.n;
	out->nerrors = c->diags.nerrors;
	out->arena = a;
	return out->nerrors;
}

void
mfd_result_free(MfdResult *r)
{
	mfd_arena_free(r->arena);
	memset(r, 0, sizeof *r);
}
