/*
 * fuzz_ir.c: a libFuzzer target over the IR reader and the whole compile (jq's shape).
 *
 * Each input is parsed as JSON by jansson, converted to a value tree and compiled: a top-level array as the IRs
 * of one file of several flows (mfd_compile_many), anything else as one IR. Beyond what the sanitizers
 * catch, it checks the result contract: there is text exactly when there is no error, the text is
 * NUL-terminated at len, and every diagnostic formats.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MfdArena *a = mfd_arena_new();
	char err[512];
	MfdResult r;
	MfdValue *ir;
	size_t i;

	if (!a)
		return 0;
	ir = mfd_json_parse(a, "fuzz", (const char *)data, size, err, sizeof err);
	if (ir) {
		if (ir->kind == VAL_ARRAY)
			mfd_compile_many((const MfdValue *const *)ir->u.arr.v, ir->u.arr.n, "# <runtime>\n", &r);
		else
			mfd_compile(ir, "# <runtime>\n", &r);
		if ((r.nerrors == 0) != (r.text != NULL) || (r.text && strlen(r.text) != r.len))
			abort();
		for (i = 0; i < r.ndiags; i++)
			if (mfd_diag_format(&r.diags[i], err, sizeof err) == 0 || !r.diags[i].message)
				abort();
		mfd_result_free(&r);
	}
	mfd_arena_free(a);
	return 0;
}
