/*
 * fuzz_ir.c: a libFuzzer target over the IR reader and the whole compile (jq's shape).
 *
 * Each input is parsed as JSON by jansson, converted to a value tree and compiled: a top-level array as the IRs
 * of one file of several flows (mfd_compile_many), anything else as one IR. An input that is not JSON is the
 * runtime source instead, pasted into the file of a small fixed flow, so the emitter's reading of the runtime
 * (its imports go to the top of the file) sees arbitrary text too. Beyond what the sanitizers catch, it checks
 * the result contract: there is text exactly when there is no error, the text is NUL-terminated at len, and
 * every diagnostic formats.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define RUNTIME "\"\"\"The runtime.\"\"\"\n\nimport json\nfrom os import (\n    path,\n)\n\n# <runtime>\n"

/* A valid IR of one step, compiled with a fuzzed runtime source. */
static const char fixed_ir[] =
	"{\"ir_version\": 1, \"flow\": {\"name\": \"F\", \"file\": \"/f.py\", \"file_sha256\": \"0\", \"code_package\": null,"
	" \"job_name\": \"F\", \"start_step\": \"end\", \"end_step\": \"end\", \"doc\": \"\", \"project\": null,"
	" \"decorators\": [], \"triggers\": null, \"trigger_on_finish\": null, \"schedule\": null},"
	" \"steps\": [{\"name\": \"end\", \"type\": \"end\", \"file\": \"/f.py\", \"line\": 1, \"next\": [], \"in_funcs\": [],"
	" \"split_parents\": [], \"matching_join\": null, \"foreach_var\": null, \"parallel\": false, \"num_parallel\": 0,"
	" \"switch\": null, \"decorators\": [], \"retries\": {\"user\": 0, \"error\": 0, \"minutes_between\": 2},"
	" \"timeout_seconds\": 0, \"env\": {}, \"resources\": {}}], \"parameters\": [], \"configs\": [],"
	" \"settings\": {\"datastore\": \"local\", \"datastore_root\": \"/d\", \"metadata\": \"local\", \"environment\": \"local\","
	" \"event_logger\": \"n\", \"monitor\": \"n\", \"python\": \"p\", \"username\": \"u\", \"env_allowlist\": []},"
	" \"options\": {\"tags\": [], \"namespace\": null, \"max_workers\": 1, \"workflow_timeout\": 0, \"with\": [],"
	" \"branch\": null, \"production\": false, \"emit_step_events\": false}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts unless r keeps the result contract. */
static void
check(const MfdResult *r)
{
	char err[512];
	size_t i;

	if ((r->nerrors == 0) != (r->text != NULL) || (r->text && strlen(r->text) != r->len))
		abort();
	for (i = 0; i < r->ndiags; i++)
		if (mfd_diag_format(&r->diags[i], err, sizeof err) == 0 || !r->diags[i].message)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MfdArena *a = mfd_arena_new();
	char err[512], *runtime;
	MfdResult r;
	MfdValue *ir;

	if (!a)
		return 0;
	ir = mfd_json_parse(a, "fuzz", (const char *)data, size, err, sizeof err);
	if (ir) {
		if (ir->kind == VAL_ARRAY)
			mfd_compile_many((const MfdValue *const *)ir->u.arr.v, ir->u.arr.n, RUNTIME, &r);
		else
			mfd_compile(ir, RUNTIME, &r);
		check(&r);
		mfd_result_free(&r);
	} else if ((runtime = mfd_strndup(a, (const char *)data, size)) &&
	           (ir = mfd_json_parse(a, "fixed", fixed_ir, sizeof fixed_ir - 1, err, sizeof err))) {
		if (mfd_compile(ir, runtime, &r) != 0)
			abort();
		check(&r);
		mfd_result_free(&r);
	}
	mfd_arena_free(a);
	return 0;
}
