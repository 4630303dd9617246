/*
 * unit.c: unit tests of the core, file by file: arena, strbuf (Python literals and float repr included), value,
 * json, diag, names, the IR reader's errors, the checks, the foreach depths, the lowering (order, segments,
 * inputs, name collisions) and the compile as a whole.
 *
 * Test IRs are built with the value constructors from a table of steps (StepSpec), then patched at a dotted
 * path with set and del, so each test states only what it changes. Diagnostics are compared as the text
 * mfd_diag_format gives, one per line.
 */
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "test.h"

static MfdArena *A; /* every tree the tests build; freed at exit */

/* Builders */

typedef struct StepSpec {
	const char *name;
	const char *type;
	const char *next;        /* space-separated step names */
	const char *in;          /* in_funcs, space-separated */
	const char *parents;     /* split_parents, space-separated */
	const char *join;        /* matching_join, or NULL */
	const char *foreach_var; /* or NULL */
	const char *cases;       /* switch cases as "value:step ...", or NULL when not a switch */
} StepSpec;

static MfdValue *
S(const char *s)
{
	return mfd_string(A, s, strlen(s));
}

static MfdValue *
J(const char *json)
{
	char err[256];
	MfdValue *v = mfd_json_parse(A, "test", json, strlen(json), err, sizeof err);

	if (!v)
		fprintf(stderr, "%s\n", err);
	return v;
}

static void
put(MfdValue *obj, const char *key, MfdValue *v)
{
	mfd_object_put(A, obj, key, strlen(key), v);
}

/* An array of the space-separated words of list; "value:step" words become [value, step] pairs when pairs. */
static MfdValue *
words(const char *list, int pairs)
{
	MfdValue *arr = mfd_array(A), *pair;
	const char *p = list, *end, *colon;

	while (*p) {
		end = p + strcspn(p, " ");
		colon = memchr(p, ':', (size_t)(end - p));
		if (pairs && colon) {
			pair = mfd_array(A);
			mfd_array_push(A, pair, mfd_string(A, p, (size_t)(colon - p)));
			mfd_array_push(A, pair, mfd_string(A, colon + 1, (size_t)(end - colon - 1)));
			mfd_array_push(A, arr, pair);
		} else {
			mfd_array_push(A, arr, mfd_string(A, p, (size_t)(end - p)));
		}
		p = *end ? end + 1 : end;
	}
	return arr;
}

static MfdValue *
opt(const char *s)
{
	return s ? S(s) : mfd_null(A);
}

/* A valid IR with the n steps of spec, in that order; the first is start_step and the last end_step. */
static MfdValue *
build(const StepSpec *spec, size_t n)
{
	MfdValue *ir = mfd_object(A), *flow, *steps = mfd_array(A), *st, *sw;
	size_t i;

	flow = J("{\"name\": \"TFlow\", \"file\": \"/src/t.py\", \"file_sha256\": \"00\", \"job_name\": \"TFlow\","
		" \"doc\": \"\", \"project\": null, \"decorators\": [], \"triggers\": null, \"trigger_on_finish\": null, \"schedule\": null,"
		" \"code_package\": null}");
	put(flow, "start_step", S(spec[0].name));
	put(flow, "end_step", S(spec[n - 1].name));
	for (i = 0; i < n; i++) {
		st = mfd_object(A);
		put(st, "name", S(spec[i].name));
		put(st, "type", S(spec[i].type));
		put(st, "file", S("/src/t.py"));
		put(st, "line", mfd_int(A, 10 + (long long)i));
		put(st, "next", words(spec[i].next, 0));
		put(st, "in_funcs", words(spec[i].in, 0));
		put(st, "split_parents", words(spec[i].parents, 0));
		put(st, "matching_join", opt(spec[i].join));
		put(st, "foreach_var", opt(spec[i].foreach_var));
		put(st, "parallel", mfd_bool(A, 0));
		put(st, "num_parallel", mfd_int(A, 0));
		sw = mfd_null(A);
		if (spec[i].cases) {
			sw = mfd_object(A);
			put(sw, "condition", S("choice"));
			put(sw, "cases", words(spec[i].cases, 1));
		}
		put(st, "switch", sw);
		put(st, "decorators", mfd_array(A));
		put(st, "retries", J("{\"user\": 0, \"error\": 0, \"minutes_between\": 2}"));
		put(st, "timeout_seconds", mfd_int(A, 0));
		put(st, "env", mfd_object(A));
		put(st, "resources", mfd_object(A));
		mfd_array_push(A, steps, st);
	}
	put(ir, "ir_version", mfd_int(A, 1));
	put(ir, "flow", flow);
	put(ir, "steps", steps);
	put(ir, "parameters", J("[{\"name\": \"alpha\", \"var\": \"alpha\", \"type\": \"float\", \"default\": 0.5,"
		" \"required\": false, \"help\": \"\"}]"));
	put(ir, "configs", J("[]"));
	put(ir, "settings", J("{\"datastore\": \"local\", \"datastore_root\": \"/src/.metaflow\", \"metadata\": \"local\","
		" \"environment\": \"local\", \"event_logger\": \"nullSidecarLogger\", \"monitor\": \"nullSidecarMonitor\","
		" \"python\": \"/usr/bin/python3\", \"username\": \"alice\", \"env_allowlist\": [\"PATH\"]}"));
	put(ir, "options", J("{\"tags\": [], \"namespace\": null, \"max_workers\": 16, \"workflow_timeout\": 0,"
		" \"with\": [], \"branch\": null, \"production\": false, \"emit_step_events\": false}"));
	return ir;
}

#define BUILD(spec) build(spec, MFD_COUNT(spec))

static const StepSpec linear[] = {
	{"start", "start", "a", "", "", NULL, NULL, NULL},
	{"a", "linear", "end", "start", "", NULL, NULL, NULL},
	{"end", "end", "", "a", "", NULL, NULL, NULL},
};

/*
 * The slot holding the value at path ("steps.1.next": members by name, elements by index) in *root, or NULL.
 * When add is set, a missing last member is added first.
 */
static MfdValue **
slot(MfdValue **root, const char *path, int add)
{
	MfdValue **v = root;
	char seg[64];
	size_t n, i;

	while (*path) {
		n = strcspn(path, ".");
		memcpy(seg, path, n);
		seg[n] = '\0';
		path += n + (path[n] == '.');
		if ((*v)->kind == VAL_ARRAY) {
			i = strtoul(seg, NULL, 10);
			if (i >= (*v)->u.arr.n)
				return NULL;
			v = &(*v)->u.arr.v[i];
		} else if ((*v)->kind == VAL_OBJECT) {
			for (i = 0; i < (*v)->u.obj.n && strcmp((*v)->u.obj.v[i].key, seg) != 0; i++)
				;
			if (i == (*v)->u.obj.n && !(add && !*path))
				return NULL;
			if (i == (*v)->u.obj.n)
				put(*v, seg, mfd_null(A));
			v = &(*v)->u.obj.v[i].value;
		} else {
			return NULL;
		}
	}
	return v;
}

static void
set(MfdValue *root, const char *path, MfdValue *value)
{
	MfdValue **v = slot(&root, path, 1);

	ASSERT(v != NULL);
	if (v)
		*v = value;
}

static void
del(MfdValue *root, const char *path)
{
	const char *dot = strrchr(path, '.');
	char parent[128] = "";
	MfdValue **obj = &root;
	size_t i;

	if (dot) {
		memcpy(parent, path, (size_t)(dot - path));
		parent[dot - path] = '\0';
		obj = slot(&root, parent, 0);
	}
	ASSERT(obj && (*obj)->kind == VAL_OBJECT);
	for (i = 0; i < (*obj)->u.obj.n; i++)
		if (strcmp((*obj)->u.obj.v[i].key, dot ? dot + 1 : path) == 0) {
			memmove(&(*obj)->u.obj.v[i], &(*obj)->u.obj.v[i + 1], ((*obj)->u.obj.n - i - 1) * sizeof(Member));
			(*obj)->u.obj.n--;
			return;
		}
	ASSERT(!"no such member");
}

/* Compiles ir and returns its diagnostics, formatted one per line, or "" when there are none. */
static const char *
diags(const MfdValue *ir)
{
	MfdResult r;
	StrBuf sb;
	char line[1024];
	size_t i;

	mfd_compile(ir, "", &r);
	mfd_sb_init(&sb, A);
	for (i = 0; i < r.ndiags; i++) {
		mfd_diag_format(&r.diags[i], line, sizeof line);
		mfd_sb_printf(&sb, "%s%s", i ? "\n" : "", line);
	}
	ASSERT((r.nerrors == 0) == (r.text != NULL));
	mfd_result_free(&r);
	return mfd_sb_str(&sb);
}

/* Reads and checks ir with the passes themselves, as the driver would, for tests that look at the Flow. */
static Flow *
checked(const MfdValue *ir, Compile *c)
{
	memset(c, 0, sizeof *c);
	c->arena = A;
	c->ir = ir;
	mfd_diags_init(&c->diags, A);
	if (mfd_read_ir(c) || mfd_check(c))
		return NULL;
	return c->flow;
}

/* arena.c */

static void
test_arena(void)
{
	MfdArena *a = mfd_arena_new();
	char *p, *q, *big;

	ASSERT(a != NULL);
	p = mfd_alloc(a, 3);
	ASSERT(p && (uintptr_t)p % _Alignof(max_align_t) == 0 && p[0] == 0 && p[2] == 0);
	q = mfd_realloc(a, p, 3, 100);
	ASSERT(q == p && q[99] == 0);
	strcpy(q, "kept");
	big = mfd_realloc(a, q, 100, (size_t)1 << 20);
	ASSERT(big && big != q && strcmp(big, "kept") == 0 && big[((size_t)1 << 20) - 1] == 0);
	p = mfd_alloc(a, 16);
	ASSERT(p && p != big && p[15] == 0);
	ASSERT(mfd_alloc(a, 0) != mfd_alloc(a, 0));
	ASSERT_STREQ(mfd_strndup(a, "abcdef", 3), "abc");
	ASSERT_STREQ(mfd_printf(a, "%s-%d", "x", 42), "x-42");
	ASSERT(mfd_alloc(a, SIZE_MAX) == NULL);
	mfd_arena_free(a);
	mfd_arena_free(NULL);
}

static void
test_arena_catch(void)
{
	MfdArena *a = mfd_arena_new();
	volatile int caught = 0;
	jmp_buf jb;

	mfd_arena_catch(a, &jb);
	if (setjmp(jb) == 0)
		mfd_alloc(a, SIZE_MAX - 1);
	else
		caught = 1;
	ASSERT(caught);
	mfd_arena_free(a);
}

/* strbuf.c */

static void
test_strbuf_indent(void)
{
	StrBuf sb;
	char wide[301];

	mfd_sb_init(&sb, A);
	mfd_sb_puts(&sb, "def f():\n");
	mfd_sb_indent(&sb, 1);
	mfd_sb_puts(&sb, "x = 1\n\nif x:\n");
	mfd_sb_indent(&sb, 1);
	mfd_sb_printf(&sb, "return %d\n", 2);
	mfd_sb_indent(&sb, -2);
	mfd_sb_puts(&sb, "y = 2\n");
	ASSERT_STREQ(mfd_sb_str(&sb), "def f():\n    x = 1\n\n    if x:\n        return 2\ny = 2\n");

	memset(wide, 'w', 300);
	wide[300] = '\0';
	mfd_sb_init(&sb, A);
	mfd_sb_indent(&sb, 1);
	mfd_sb_printf(&sb, "%s|", wide);
	ASSERT(sb.len == 305 && sb.buf[4] == 'w' && sb.buf[304] == '|' && sb.buf[305] == '\0');
}

static void
test_strbuf_sticky(void)
{
	StrBuf sb;

	mfd_sb_init(&sb, A);
	ASSERT_STREQ(mfd_sb_str(&sb), "");
	mfd_sb_puts(&sb, "ok");
	sb.err = SB_NOMEM;
	mfd_sb_puts(&sb, "more");
	mfd_sb_printf(&sb, "%d", 1);
	ASSERT(sb.len == 2 && mfd_sb_str(&sb) == NULL);

	mfd_sb_init(&sb, A);
	sb.len = SB_MAX_LEN;
	mfd_sb_puts(&sb, "x");
	ASSERT(sb.err == SB_TOOBIG && mfd_sb_str(&sb) == NULL);
}

static void
test_pystr(void)
{
	static const struct {
		const char *in;
		size_t n;
		const char *want;
	} cases[] = {
		{"plain", 5, "\"plain\""},
		{"", 0, "\"\""},
		{"a\"b\\c'", 6, "\"a\\\"b\\\\c'\""},
		{"l1\nl2\r\t", 7, "\"l1\\nl2\\r\\t\""},
		{"\x01\x1f\x7f", 3, "\"\\x01\\x1f\\x7f\""},
		{"nul\0x", 5, "\"nul\\x00x\""},
		{"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""},
		{"\xff\xc3", 2, "\"\\xff\\xc3\""},
		{"\xed\xa0\x80", 3, "\"\\xed\\xa0\\x80\""},
		{"\xc0\xaf", 2, "\"\\xc0\\xaf\""},
		{"\xf4\x90\x80\x80", 4, "\"\\xf4\\x90\\x80\\x80\""},
	};
	StrBuf sb;
	size_t i;

	for (i = 0; i < MFD_COUNT(cases); i++) {
		mfd_sb_init(&sb, A);
		mfd_sb_pystr(&sb, cases[i].in, cases[i].n);
		ASSERT_STREQ(mfd_sb_str(&sb), cases[i].want);
	}
	ASSERT_STREQ(mfd_quote(A, "step_1", 6), "'step_1'");
	ASSERT_STREQ(mfd_quote(A, "it's", 4), "\"it's\"");
	ASSERT_STREQ(mfd_quote(A, "a\nb", 3), "\"a\\nb\"");
}

static void
test_pyvalue(void)
{
	static const struct {
		double d;
		const char *want;
	} floats[] = {
		{0.1, "0.1"}, {1.0, "1.0"}, {-2.5, "-2.5"}, {1e16, "1e+16"}, {1.5e-7, "1.5e-07"}, {-0.0, "-0.0"},
		{123456789.0, "123456789.0"}, {0.1 + 0.2, "0.30000000000000004"}, {1e300, "1e+300"},
	};
	StrBuf sb;
	size_t i;

	mfd_sb_init(&sb, A);
	mfd_sb_pyvalue(&sb, J("{\"b\": [1, -2, 9223372036854775807, true, false, null], \"a\": {\"k\": \"v\\n\"},"
		" \"\": [], \"o\": {}}"));
	ASSERT_STREQ(mfd_sb_str(&sb),
		"{\"b\": [1, -2, 9223372036854775807, True, False, None], \"a\": {\"k\": \"v\\n\"}, \"\": [], \"o\": {}}");
	for (i = 0; i < MFD_COUNT(floats); i++) {
		mfd_sb_init(&sb, A);
		mfd_sb_pyvalue(&sb, mfd_float(A, floats[i].d));
		ASSERT_STREQ(mfd_sb_str(&sb), floats[i].want);
	}
	mfd_sb_init(&sb, A);
	mfd_sb_pyvalue(&sb, mfd_float(A, NAN));
	mfd_sb_pyvalue(&sb, mfd_float(A, INFINITY));
	mfd_sb_pyvalue(&sb, mfd_float(A, -INFINITY));
	ASSERT_STREQ(mfd_sb_str(&sb), "float(\"nan\")float(\"inf\")-float(\"inf\")");
}

/* JSON text as Python's json.dumps writes it (the launchpad default of a json Parameter). */
static void
test_json_text(void)
{
	MfdValue *arr = mfd_array(A);
	StrBuf sb;

	mfd_sb_init(&sb, A);
	mfd_sb_json(&sb, J("{\"b\": [1, -2.5, 1e16, true, null, 0.1], \"s\": \"q\\\"\\\\/\\n\\t\\b\\f\\r\\u0001\\u007f "
		"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\", \"\": {}, \"l\": []}"));
	ASSERT_STREQ(mfd_sb_str(&sb), "{\"b\": [1, -2.5, 1e+16, true, null, 0.1], \"s\": \"q\\\"\\\\/\\n\\t\\b\\f\\r\\u0001"
		"\\u007f \\u00e9 \\u20ac \\ud83d\\ude00\", \"\": {}, \"l\": []}");
	mfd_array_push(A, arr, mfd_float(A, NAN));
	mfd_array_push(A, arr, mfd_float(A, INFINITY));
	mfd_array_push(A, arr, mfd_float(A, -INFINITY));
	mfd_array_push(A, arr, mfd_string(A, "a\0\xff", 3));
	mfd_sb_init(&sb, A);
	mfd_sb_json(&sb, arr);
	ASSERT_STREQ(mfd_sb_str(&sb), "[NaN, Infinity, -Infinity, \"a\\u0000\\u00ff\"]");
}

/* Python's repr of floats: the shortest digits that read back, and its switch to exponent form. */
static void
test_float_repr(void)
{
	static const struct {
		double d;
		const char *want;
	} cases[] = {
		{0.0, "0.0"}, {-0.0, "-0.0"}, {0.5, "0.5"}, {2.0, "2.0"}, {100.0, "100.0"}, {-1.25e-5, "-1.25e-05"},
		{1e-07, "1e-07"}, {0.0001, "0.0001"}, {0.00001, "1e-05"}, {0.00012345, "0.00012345"},
		{1e15, "1000000000000000.0"}, {1e16, "1e+16"}, {123456789012345678.0, "1.2345678901234568e+17"},
		{9007199254740993.0, "9007199254740992.0"}, {1e22, "1e+22"}, {1e23, "1e+23"}, {1.5e300, "1.5e+300"},
		{5e-324, "5e-324"}, {2.2250738585072014e-308, "2.2250738585072014e-308"},
		{1.7976931348623157e308, "1.7976931348623157e+308"}, {0.1 + 0.2, "0.30000000000000004"},
		{1.0 / 3, "0.3333333333333333"}, {4.35, "4.35"}, {-123.456, "-123.456"},
	};
	/* Powers of two where the nearest decimal of the shortest length does not read back, but the one above does. */
	static const struct {
		int exp;
		const char *want;
	} powers[] = {
		{-1017, "7.120236347223045e-307"}, {-957, "8.209073602596753e-289"}, {863, "6.150157786156811e+259"},
		{976, "6.386688990511104e+293"},
	};
	StrBuf sb;
	size_t i;

	for (i = 0; i < MFD_COUNT(cases); i++) {
		mfd_sb_init(&sb, A);
		mfd_sb_pyvalue(&sb, mfd_float(A, cases[i].d));
		ASSERT_STREQ(mfd_sb_str(&sb), cases[i].want);
	}
	for (i = 0; i < MFD_COUNT(powers); i++) {
		mfd_sb_init(&sb, A);
		mfd_sb_pyvalue(&sb, mfd_float(A, ldexp(1.0, powers[i].exp)));
		ASSERT_STREQ(mfd_sb_str(&sb), powers[i].want);
	}
}

/* value.c and json.c */

static void
test_value(void)
{
	MfdValue *o = mfd_object(A), *arr = mfd_array(A), *s;
	long long i;

	ASSERT(mfd_object_put(A, o, "k", 1, mfd_int(A, 1)) == 0);
	ASSERT(mfd_object_put(A, o, "k", 1, mfd_int(A, 2)) == 0);
	ASSERT(o->u.obj.n == 2 && mfd_object_get(o, "k")->u.i == 1);
	ASSERT(mfd_object_get(o, "missing") == NULL);
	ASSERT(mfd_array_push(A, o, mfd_null(A)) == -1);
	ASSERT(mfd_object_put(A, arr, "k", 1, mfd_null(A)) == -1);
	ASSERT(mfd_array_push(A, arr, NULL) == -1);
	for (i = 0; i < 100; i++)
		ASSERT(mfd_array_push(A, arr, mfd_int(A, i)) == 0);
	ASSERT(arr->u.arr.n == 100 && arr->u.arr.v[99]->u.i == 99);
	s = mfd_string(A, "a\0b", 3);
	ASSERT(s->kind == VAL_STRING && s->u.str.len == 3 && s->u.str.s[1] == '\0' && s->u.str.s[3] == '\0');
	ASSERT(mfd_bool(A, 5)->u.b == 1);
	ASSERT(mfd_float(A, 2.5)->u.f == 2.5);
	ASSERT_STREQ(mfd_value_kind_name(VAL_FLOAT), "float");
	ASSERT_STREQ(mfd_value_kind_name(VAL_OBJECT), "object");
}

static void
test_json(void)
{
	MfdValue *v = J("{\"z\": 1, \"a\": [2.5, \"x\\u0000y\"], \"m\": null}");
	char err[256];

	ASSERT(v && v->kind == VAL_OBJECT && v->u.obj.n == 3);
	ASSERT_STREQ(v->u.obj.v[0].key, "z");
	ASSERT_STREQ(v->u.obj.v[1].key, "a");
	ASSERT_STREQ(v->u.obj.v[2].key, "m");
	ASSERT(v->u.obj.v[1].value->u.arr.v[0]->kind == VAL_FLOAT);
	ASSERT(v->u.obj.v[1].value->u.arr.v[1]->u.str.len == 3);
	ASSERT(mfd_json_parse(A, "in.json", "{\"a\": 1,\n \"a\": 2}", 17, err, sizeof err) == NULL);
	ASSERT(strncmp(err, "in.json:2:", 10) == 0 && strstr(err, "error: invalid JSON: ") != NULL);
	ASSERT(mfd_json_parse(A, "in.json", "{\"a\" 1}", 7, err, sizeof err) == NULL);
	ASSERT(strncmp(err, "in.json:1:", 10) == 0);
	ASSERT(mfd_json_parse(A, "in.json", "7", 1, err, sizeof err)->u.i == 7);
}

/* diag.c */

static void
test_diag_format(void)
{
	MfdDiag d = {MFD_ERROR, "train", "/src/flow.py", 42, "boom", NULL};
	const char *full = "/src/flow.py:42: error: step 'train': boom";
	char buf[128];
	Diags ds;
	int i;

	ASSERT(mfd_diag_format(&d, buf, sizeof buf) == strlen(full));
	ASSERT_STREQ(buf, full);
	ASSERT(mfd_diag_format(&d, NULL, 0) == strlen(full));
	ASSERT(mfd_diag_format(&d, buf, 5) == strlen(full));
	ASSERT_STREQ(buf, "/src");
	d.line = 0;
	mfd_diag_format(&d, buf, sizeof buf);
	ASSERT_STREQ(buf, "/src/flow.py: error: step 'train': boom");
	d.flow = "BFlow";
	mfd_diag_format(&d, buf, sizeof buf);
	ASSERT_STREQ(buf, "/src/flow.py: error: flow 'BFlow': step 'train': boom");
	d.flow = NULL;
	d.file = "";
	d.line = 3;
	mfd_diag_format(&d, buf, sizeof buf);
	ASSERT_STREQ(buf, "error: step 'train': boom");
	d.file = NULL;
	d.step = NULL;
	d.severity = MFD_WARNING;
	mfd_diag_format(&d, buf, sizeof buf);
	ASSERT_STREQ(buf, "warning: boom");
	ASSERT_STREQ(mfd_severity_name(MFD_ERROR), "error");

	mfd_diags_init(&ds, A);
	for (i = 0; i < 20; i++)
		mfd_diag(&ds, i % 2 ? MFD_WARNING : MFD_ERROR, NULL, NULL, 0, "problem %d", i);
	ASSERT(ds.n == 20 && ds.nerrors == 10);
	ASSERT_STREQ(ds.v[19].message, "problem 19");
	ASSERT(ds.v[19].flow == NULL);
	ds.flow = "BFlow";
	mfd_diag(&ds, MFD_ERROR, NULL, NULL, 0, "labelled");
	ASSERT_STREQ(ds.v[20].flow, "BFlow");
}

/* names.c */

static void
test_names(void)
{
	ASSERT(mfd_is_identifier("a1_") && mfd_is_identifier("_") && mfd_is_identifier("Start"));
	ASSERT(!mfd_is_identifier("") && !mfd_is_identifier("1a") && !mfd_is_identifier("a-b"));
	ASSERT(!mfd_is_identifier("caf\xc3\xa9"));
	ASSERT_STREQ(mfd_name(A, NAME_OP, "train"), "op_train");
	ASSERT_STREQ(mfd_name(A, NAME_JOB, "proj.user.alice.Flow"), "proj_user_alice_Flow");
	ASSERT_STREQ(mfd_name(A, NAME_JOB, "9lives"), "_9lives");
	ASSERT_STREQ(mfd_name(A, NAME_JOB, ""), "_");
	ASSERT_STREQ(mfd_name(A, NAME_SCHEDULE, "Flow"), "Flow_schedule");
}

static void
test_names_decided(void)
{
	static const char *const events[] = {"data.ready", "model-v2"};
	static const char *const flows[] = {"UpstreamA", "UpstreamB"};
	const char *many[60];
	char buf[8], big[64];
	size_t i;

	/* The job name the plugin writes into the IR: one '_' per character, a UTF-8 one included. */
	ASSERT(mfd_job_name("proj.user.alice.Flow", big, sizeof big) == 20);
	ASSERT_STREQ(big, "proj_user_alice_Flow");
	ASSERT(mfd_job_name("Fl\xc3\xb6w\xe2\x82\xac", big, sizeof big) == 5);
	ASSERT_STREQ(big, "Fl_w_");
	ASSERT(mfd_job_name("9.lives", buf, sizeof buf) == 8 && strcmp(buf, "_9_live") == 0);
	ASSERT(mfd_job_name("abc", NULL, 0) == 3);
	ASSERT(mfd_job_name("", big, sizeof big) == 1 && strcmp(big, "_") == 0);
	/* Sensors: the job, what they wait for, cut to MFD_MAX_SENSOR_NAME bytes. */
	ASSERT_STREQ(mfd_sensor_name(A, NAME_EVENT_SENSOR, "Job", events, 2), "Job_on_data_ready_and_model_v2");
	ASSERT_STREQ(mfd_sensor_name(A, NAME_FINISH_SENSOR, "Job", flows, 2), "Job_after_UpstreamA_and_UpstreamB");
	for (i = 0; i < MFD_COUNT(many); i++)
		many[i] = "event";
	ASSERT(strlen(mfd_sensor_name(A, NAME_EVENT_SENSOR, "Job", many, MFD_COUNT(many))) == MFD_MAX_SENSOR_NAME);
	/* The events runs publish, and @trigger_on_finish waits for. */
	ASSERT_STREQ(mfd_event_name(A, "p.user.tester.Flow", "end"), "metaflow.p.user.tester.Flow.end");
}

/* ir.c */

#define EXPECT_DIAGS(ir, want) ASSERT_STREQ(diags(ir), want)

static void
test_read_top(void)
{
	MfdValue *ir;

	EXPECT_DIAGS(J("[]"), "error: expected an object at the top level, got array");
	ir = BUILD(linear);
	del(ir, "ir_version");
	EXPECT_DIAGS(ir, "error: missing field 'ir_version'");
	ir = BUILD(linear);
	set(ir, "ir_version", S("1"));
	EXPECT_DIAGS(ir, "error: ir_version: expected integer, got string");
	ir = BUILD(linear);
	set(ir, "ir_version", mfd_int(A, 2));
	del(ir, "steps");
	set(ir, "extra", mfd_null(A));
	EXPECT_DIAGS(ir, "error: unsupported IR version 2 (this compiler reads 1)");
	ir = BUILD(linear);
	set(ir, "extra", mfd_null(A));
	del(ir, "settings");
	EXPECT_DIAGS(ir, "error: unknown field 'extra'\nerror: missing field 'settings'");
	EXPECT_DIAGS(BUILD(linear), "");
}

static void
test_read_types(void)
{
	MfdValue *ir, *deep;
	int i;

	ir = BUILD(linear);
	set(ir, "steps.1.next", S("end"));
	set(ir, "steps.1.in_funcs", J("[\"start\", 3]"));
	set(ir, "steps.0.num_parallel", mfd_bool(A, 0));
	set(ir, "steps.0.line", mfd_int(A, -1));
	set(ir, "options.max_workers", mfd_int(A, 0));
	set(ir, "steps.2.timeout_seconds", mfd_int(A, 1LL << 40));
	EXPECT_DIAGS(ir,
		"error: steps[0].line: expected integer from 0 to 2147483647, got -1\n"
		"error: steps[0].num_parallel: expected integer, got boolean\n"
		"error: steps[1].next: expected array of strings, got string\n"
		"error: steps[1].in_funcs[1]: expected string, got integer\n"
		"error: steps[2].timeout_seconds: expected integer from 0 to 2147483647, got 1099511627776\n"
		"error: options.max_workers: expected integer from 1 to 2147483647, got 0");

	ir = BUILD(linear);
	set(ir, "steps.0.name", mfd_string(A, "st\0art", 6));
	set(ir, "steps.1.type", S("loop"));
	set(ir, "steps.2.env", J("{\"K\": 1}"));
	set(ir, "flow.project", J("[]"));
	set(ir, "parameters.0.type", S("complex"));
	set(ir, "steps.1.switch", J("{\"condition\": \"c\", \"cases\": [[\"x\"], [\"y\", 2]]}"));
	EXPECT_DIAGS(ir,
		"error: flow.project: expected object or null, got array\n"
		"error: steps[0].name: string holds a NUL byte\n"
		"error: steps[1].type: 'loop' is not a step type\n"
		"error: steps[1].switch.cases[0]: expected [value, step], a pair of strings\n"
		"error: steps[1].switch.cases[1]: expected [value, step], a pair of strings, got integer\n"
		"error: steps[2].env['K']: expected string, got integer\n"
		"error: parameters[0].type: 'complex' is not a parameter type");

	ir = BUILD(linear);
	deep = mfd_array(A);
	for (i = 0; i < MFD_MAX_DEPTH; i++) {
		MfdValue *outer = mfd_array(A);
		mfd_array_push(A, outer, deep);
		deep = outer;
	}
	set(ir, "steps.0.decorators", J("[{\"name\": \"card\", \"attributes\": {}, \"static\": true, \"spec\": null}]"));
	set(ir, "steps.0.decorators.0.attributes.x", deep);
	set(ir, "parameters.0.default", deep->u.arr.v[0]);
	EXPECT_DIAGS(ir, "error: steps[0].decorators[0].attributes: nested more than 64 levels deep");
}

static void
test_read_fields(void)
{
	MfdValue *ir = BUILD(linear);

	del(ir, "steps.0.line");
	del(ir, "flow.doc");
	set(ir, "steps.1.bogus", mfd_null(A));
	set(ir, "steps.2.retries.often", mfd_null(A));
	mfd_object_put(A, ir->u.obj.v[2].value->u.arr.v[2], "name", 4, S("end"));
	EXPECT_DIAGS(ir,
		"error: flow: missing field 'doc'\n"
		"error: steps[0]: missing field 'line'\n"
		"error: steps[1]: unknown field 'bogus'\n"
		"error: steps[2]: repeated field 'name'\n"
		"error: steps[2].retries: unknown field 'often'");

	ir = BUILD(linear);
	set(ir, "steps.1.decorators", J("[3]"));
	set(ir, "configs", J("[{\"name\": \"c\"}]"));
	EXPECT_DIAGS(ir, "error: steps[1].decorators[0]: expected object, got integer\n"
		"error: configs[0]: missing field 'value'");
}

/* check.c */

static void
test_check_names(void)
{
	MfdValue *ir = BUILD(linear);

	set(ir, "steps.1.name", S("start"));
	EXPECT_DIAGS(ir, "/src/t.py:11: error: step 'start': duplicate step name (first defined at /src/t.py:10)\n"
		"/src/t.py:10: error: step 'start': next names 'a', which is not a step\n"
		"/src/t.py:12: error: step 'end': in_funcs names 'a', which is not a step");

	ir = BUILD(linear);
	set(ir, "steps.1.name", S("my-step"));
	set(ir, "steps.1.next", S("end"));
	ASSERT(strstr(diags(ir), "expected array of strings") != NULL);
	set(ir, "steps.1.next", J("[\"end\"]"));
	set(ir, "steps.2.in_funcs", J("[\"my-step\"]"));
	set(ir, "steps.0.next", J("[\"my-step\"]"));
	EXPECT_DIAGS(ir, "/src/t.py:11: error: step 'my-step': step name 'my-step' is not a Python identifier");

	ir = BUILD(linear);
	set(ir, "flow.start_step", S("begin"));
	set(ir, "flow.end_step", S("a"));
	set(ir, "steps.0.next", J("[\"a\", \"zz\"]"));
	EXPECT_DIAGS(ir, "/src/t.py: error: start_step names 'begin', which is not a step\n"
		"/src/t.py:11: error: step 'a': end_step names this step, whose type is linear, not end\n"
		"/src/t.py:10: error: step 'start': next names 'zz', which is not a step\n"
		"/src/t.py:10: error: step 'start': start steps have exactly 1 next step, found 2");
}

static void
test_check_edges(void)
{
	MfdValue *ir = BUILD(linear);

	set(ir, "steps.1.in_funcs", J("[\"start\", \"start\"]"));
	EXPECT_DIAGS(ir, "/src/t.py:11: error: step 'a': in_funcs names 'start' twice");
	ir = BUILD(linear);
	set(ir, "steps.0.next", J("[\"a\", \"end\"]"));
	EXPECT_DIAGS(ir, "/src/t.py:10: error: step 'start': start steps have exactly 1 next step, found 2\n"
		"/src/t.py:10: error: step 'start': next names 'end', whose in_funcs does not include this step");
}

static const StepSpec foreach1[] = {
	{"start", "foreach", "body", "", "", "join", "xs", NULL},
	{"body", "linear", "join", "start", "start", NULL, NULL, NULL},
	{"join", "join", "end", "body", "start", NULL, NULL, NULL},
	{"end", "end", "", "join", "", NULL, NULL, NULL},
};

static void
test_check_kinds(void)
{
	MfdValue *ir = BUILD(foreach1);

	EXPECT_DIAGS(ir, "");
	set(ir, "steps.0.foreach_var", mfd_null(A));
	set(ir, "steps.0.matching_join", S("end"));
	set(ir, "steps.1.split_parents", J("[\"end\"]"));
	set(ir, "steps.2.switch", J("{\"condition\": \"c\", \"cases\": [[\"x\", \"end\"]]}"));
	EXPECT_DIAGS(ir, "/src/t.py:10: error: step 'start': matching_join names 'end', which is not a join step\n"
		"/src/t.py:10: error: step 'start': foreach steps need a foreach_var\n"
		"/src/t.py:11: error: step 'body': split_parents names 'end', which is not a split or foreach step\n"
		"/src/t.py:12: error: step 'join': switch must be null for join steps");

	ir = BUILD(foreach1);
	set(ir, "steps.0.parallel", mfd_bool(A, 1));
	set(ir, "steps.0.num_parallel", mfd_int(A, 3));
	set(ir, "steps.0.foreach_var", mfd_null(A));
	del(ir, "steps.0.matching_join");
	set(ir, "steps.0.matching_join", mfd_null(A));
	set(ir, "steps.3.next", J("[\"start\"]"));
	set(ir, "steps.0.in_funcs", J("[\"end\"]"));
	EXPECT_DIAGS(ir, "/src/t.py:10: error: step 'start': foreach steps need a matching_join\n"
		"/src/t.py:10: error: step 'start': @parallel foreach (num_parallel=3) is not supported\n"
		"/src/t.py:13: error: step 'end': end steps have no next step, found 1\n"
		"/src/t.py:13: error: step 'end': next step 'start' closes the loop start -> body -> join -> end -> start;"
		" the only loop allowed is a switch case back to its own step");
}

static void
test_check_decorators(void)
{
	MfdValue *ir = BUILD(linear);

	ASSERT(mfd_deco_lookup("retry") == DECO_RETRY && mfd_deco_handling(DECO_RETRY) == HANDLED);
	ASSERT(mfd_deco_lookup("catch") == DECO_CATCH && mfd_deco_handling(DECO_CATCH) == FORWARDED);
	ASSERT(mfd_deco_lookup("my_deco") == DECO_UNKNOWN && mfd_deco_handling(DECO_UNKNOWN) == FORWARDED);
	ASSERT(mfd_deco_handling(mfd_deco_lookup("kubernetes")) == HANDLED);
	ASSERT(mfd_deco_handling(mfd_deco_lookup("batch")) == REJECTED);
	ASSERT(mfd_deco_handling(mfd_deco_lookup("parallel")) == REJECTED);

	set(ir, "steps.1.decorators", J("[{\"name\": \"my_deco\", \"attributes\": {}, \"static\": false,"
		" \"spec\": \"my_deco:x=1\"}, {\"name\": \"batch\", \"attributes\": {}, \"static\": true, \"spec\": null}]"));
	set(ir, "flow.decorators", J("[{\"name\": \"slurm\", \"attributes\": {}, \"static\": true, \"spec\": null}]"));
	EXPECT_DIAGS(ir, "/src/t.py: error: @slurm is not supported: tasks run where Dagster's executor runs its ops, "
		"not on a remote launcher\n/src/t.py:11: error: step 'a': @batch is not supported: no maintained Dagster step "
		"executor runs ops as AWS Batch jobs (dagster-aws has ecs_executor, for ECS tasks, not Batch job queues); use "
		"@kubernetes (create --executor k8s), or run the steps on Celery workers (create --executor celery)");
}

/* The compiled text of ir, which must compile; owned by the arena of *r. */
static const char *
compiled(const MfdValue *ir, MfdResult *r)
{
	ASSERT(mfd_compile(ir, "", r) == 0);
	return r->text ? r->text : "";
}

/* The executor: chosen by --executor, else k8s with @kubernetes, else threads; what depends on it. */
static void
test_executor(void)
{
	MfdValue *ir = BUILD(linear);
	MfdResult r;

	ASSERT(strstr(compiled(ir, &r), "\"executor\": {\"kind\": \"threads\", \"config\": {}},\n") != NULL);
	ASSERT(strstr(r.text, "resource_defs") == NULL);
	mfd_result_free(&r);
	set(ir, "options.executor", S("celery"));
	set(ir, "options.executor_config", J("{\"broker\": {\"env\": \"BROKER\"}}"));
	set(ir, "options.queues", J("{\"a\": \"big-mem\"}"));
	ASSERT(strstr(compiled(ir, &r), "\"executor\": {\"kind\": \"celery\", \"config\": {\"broker\": {\"env\": "
		"\"BROKER\"}}},\n") != NULL);
	ASSERT(strstr(r.text, "tags={\"metaflow/step\": \"a\", \"dagster-celery/queue\": \"big-mem\"},\n") != NULL);
	ASSERT(strstr(r.text, "executor_def=mf.executor(), resource_defs=mf.resources())\n") != NULL);
	mfd_result_free(&r);

	set(ir, "options.executor", S("slurm"));
	EXPECT_DIAGS(ir, "/src/t.py: error: executor 'slurm' is not one of threads, multiprocess, celery, k8s and docker");
	set(ir, "options.executor", S("threads"));
	set(ir, "options.queues", J("{\"a\": \"q\", \"nope\": \"x y\"}"));
	set(ir, "steps.1.decorators", J("[{\"name\": \"kubernetes\", \"attributes\": {}, \"static\": true,"
		" \"spec\": null}]"));
	EXPECT_DIAGS(ir, "/src/t.py:11: error: step 'a': @kubernetes needs the k8s executor, not threads: its attributes "
		"describe the Kubernetes Job that runs the step (create --executor k8s, or leave --executor out)\n"
		"/src/t.py:11: error: step 'a': --celery-queue routes the step to a Celery queue, but the job's executor is "
		"threads (create --executor celery)\n"
		"/src/t.py: error: --celery-queue nope=x y: the flow has no step 'nope'\n"
		"/src/t.py: error: --celery-queue nope: queue 'x y' may use only letters, digits, '_', '.' and '-'");
	del(ir, "options.executor");
	del(ir, "options.queues");
	EXPECT_DIAGS(ir, "/src/t.py:11: error: step 'a': the k8s executor runs every step in a pod of its own, which "
		"cannot reach the local datastore '/src/.metaflow': deploy with --datastore=s3, azure or gs");
	set(ir, "steps.1.decorators", J("[]"));
	set(ir, "options.executor", J("\"docker\""));
	EXPECT_DIAGS(ir, "/src/t.py: error: the docker executor runs every step in a container of its own, which "
		"cannot reach the local datastore '/src/.metaflow': deploy with --datastore=s3, azure or gs");
}

/* @kubernetes and @resources as each op's dagster-k8s/config, for k8s_job_executor. */
static void
test_k8s(void)
{
	MfdValue *ir = BUILD(linear);
	MfdResult r;

	set(ir, "settings.datastore", S("s3"));
	set(ir, "settings.datastore_root", S("s3://b/mf"));
	set(ir, "settings.env_allowlist", J("[\"PATH\", \"METAFLOW_*\", \"AWS_*\", \"HOME\"]"));
	set(ir, "steps.1.decorators", J("[{\"name\": \"kubernetes\", \"static\": true, \"spec\": null,"
		" \"user_attributes\": [\"cpu\", \"image\", \"namespace\"], \"attributes\": {\"cpu\": \"2.0\", \"memory\": \"4096\","
		" \"disk\": 10240, \"image\": \"reg/img:1\", \"gpu\": 1, \"gpu_vendor\": \"amd\", \"qos\": \"Guaranteed\","
		" \"secrets\": \"s1, s2\", \"node_selector\": \"a=b,c=d\", \"namespace\": \"ml\", \"service_account\": \"sa\","
		" \"labels\": {\"team\": \"x\"}, \"annotations\": {}, \"tolerations\": [{\"key\": \"k\"}],"
		" \"persistent_volume_claims\": {\"pvc\": \"/mnt/p\"}, \"shared_memory\": 64, \"use_tmpfs\": true,"
		" \"tmpfs_size\": null, \"tmpfs_path\": \"/tmpfs\", \"tmpfs_tempdir\": true, \"port\": null,"
		" \"compute_pool\": null, \"executable\": null, \"hostname_resolution_timeout\": 600,"
		" \"extended_resources\": {}, \"security_context\": null, \"image_pull_policy\": null,"
		" \"image_pull_secrets\": [\"regcred\"]}}]"));
	set(ir, "steps.2.resources", J("{\"cpu\": \"3\", \"memory\": \"1000\"}"));
	compiled(ir, &r);
	ASSERT(strstr(r.text, "\"executor\": {\"kind\": \"k8s\", \"config\": {\"job_namespace\": \"ml\"}, "
		"\"forward_env\": [\"METAFLOW_*\", \"AWS_*\"]},\n") != NULL);
	ASSERT(strstr(r.text, "\"dagster-k8s/config\": {\"container_config\": {\"image\": \"reg/img:1\", "
		"\"resources\": {\"requests\": {\"cpu\": \"2\", \"memory\": \"4096M\", \"ephemeral-storage\": "
		"\"10240M\"}, \"limits\": {\"cpu\": \"2\", \"memory\": \"4096M\", \"ephemeral-storage\": \"10240M\", "
		"\"amd.com/gpu\": \"1\"}}, \"env\": [{\"name\": \"METAFLOW_TEMPDIR\", \"value\": \"/tmpfs\"}], "
		"\"env_from\": [{\"secret_ref\": {\"name\": \"s1\"}}, {\"secret_ref\": {\"name\": \"s2\"}}], "
		"\"volume_mounts\": [{\"name\": \"pvc\", \"mount_path\": \"/mnt/p\"}, {\"name\": \"dhsm\", "
		"\"mount_path\": \"/dev/shm\"}, {\"name\": \"tmpfs-ephemeral-volume\", \"mount_path\": \"/tmpfs\"}]}, "
		"\"pod_spec_config\": {\"node_selector\": {\"a\": \"b\", \"c\": \"d\"}, \"service_account_name\": "
		"\"sa\", \"tolerations\": [{\"key\": \"k\"}], \"image_pull_secrets\": [{\"name\": \"regcred\"}], "
		"\"volumes\": [{\"name\": \"pvc\", \"persistent_volume_claim\": {\"claim_name\": \"pvc\"}}, "
		"{\"name\": \"dhsm\", \"empty_dir\": {\"medium\": \"Memory\", \"size_limit\": \"64Mi\"}}, "
		"{\"name\": \"tmpfs-ephemeral-volume\", \"empty_dir\": {\"medium\": \"Memory\", \"size_limit\": "
		"\"2048Mi\"}}]}, \"pod_template_spec_metadata\": {\"labels\": {\"team\": \"x\"}}}},\n") != NULL);
	/* @resources alone; no tag for a step with neither. */
	ASSERT(strstr(r.text, "tags={\"metaflow/step\": \"end\", \"metaflow/resources/cpu\": \"3\", "
		"\"metaflow/resources/memory\": \"1000\", \"dagster-k8s/config\": {\"container_config\": {\"resources\": "
		"{\"requests\": {\"cpu\": \"3\", \"memory\": \"1000M\"}}}}},\n") != NULL);
	ASSERT(strstr(r.text, "tags={\"metaflow/step\": \"start\"},\n") != NULL);
	mfd_result_free(&r);

	/* Metaflow's default image is not used: the flow did not give one. */
	set(ir, "steps.1.decorators.0.user_attributes", J("[]"));
	ASSERT(strstr(compiled(ir, &r), "reg/img") == NULL);
	mfd_result_free(&r);

	/* Nor Metaflow's default namespace: the executor's job_namespace stays unset. */
	ASSERT(strstr(compiled(ir, &r), "\"executor\": {\"kind\": \"k8s\", \"config\": {}, ") != NULL);
	mfd_result_free(&r);

	set(ir, "steps.1.decorators.0.user_attributes", J("[\"namespace\"]"));
	set(ir, "steps.1.decorators.0.attributes.compute_pool", S("p"));
	set(ir, "steps.1.decorators.0.attributes.executable", S("/usr/bin/python9"));
	set(ir, "steps.1.decorators.0.attributes.hostname_resolution_timeout", mfd_int(A, 30));
	set(ir, "steps.1.decorators.0.attributes.cpu", S("lots"));
	set(ir, "steps.1.decorators.0.attributes.warp_drive", mfd_bool(A, 1));
	set(ir, "steps.2.decorators", J("[{\"name\": \"kubernetes\", \"static\": false, \"spec\": \"kubernetes\","
		" \"attributes\": {\"namespace\": \"other\", \"qos\": \"Besteffort\"}}]"));
	EXPECT_DIAGS(ir, "/src/t.py:11: error: step 'a': @kubernetes attribute compute_pool: has no Kubernetes meaning "
		"under Dagster (it picks an Outerbounds compute pool); use node_selector or tolerations\n"
		"/src/t.py:11: error: step 'a': @kubernetes attribute executable: has no Kubernetes meaning under Dagster: the "
		"pod runs Dagster's step command, whose Python runs the task\n"
		"/src/t.py:11: error: step 'a': @kubernetes attribute hostname_resolution_timeout: has no Kubernetes meaning "
		"under Dagster (only @parallel, which is not supported, reads it)\n"
		"/src/t.py:11: error: step 'a': @kubernetes attribute 'warp_drive' has no Kubernetes meaning under Dagster "
		"(this compiler knows those of Metaflow's @kubernetes)\n"
		"/src/t.py:11: error: step 'a': @kubernetes attribute cpu: 'lots' is not a positive number\n"
		"/src/t.py:12: error: step 'end': @kubernetes attribute qos: 'Besteffort' is not a QoS class Metaflow knows "
		"(Guaranteed or Burstable)\n"
		"/src/t.py:12: error: step 'end': @kubernetes namespace 'other' differs from 'ml' of step 'a': dagster-k8s "
		"runs every step of a run in one namespace, the executor's job_namespace");
}

static const StepSpec switch_in_foreach[] = {
	{"start", "foreach", "route", "", "", "join", "xs", NULL},
	{"route", "split-switch", "even odd", "start", "start", NULL, NULL, "e:even o:odd"},
	{"even", "linear", "merge", "route", "start", NULL, NULL, NULL},
	{"odd", "linear", "merge", "route", "start", NULL, NULL, NULL},
	{"merge", "linear", "join", "even odd", "start", NULL, NULL, NULL},
	{"join", "join", "end", "merge", "start", NULL, NULL, NULL},
	{"end", "end", "", "join", "", NULL, NULL, NULL},
};

/* switch_in_foreach with case 'o' going through 'odd' straight into the foreach's join (issue #19). */
static const StepSpec switch_into_foreach_join[] = {
	{"start", "foreach", "route", "", "", "join", "xs", NULL},
	{"route", "split-switch", "even odd", "start", "start", NULL, NULL, "e:even o:odd"},
	{"even", "linear", "merge", "route", "start", NULL, NULL, NULL},
	{"odd", "linear", "join", "route", "start", NULL, NULL, NULL},
	{"merge", "linear", "join", "even", "start", NULL, NULL, NULL},
	{"join", "join", "end", "merge odd", "start", NULL, NULL, NULL},
	{"end", "end", "", "join", "", NULL, NULL, NULL},
};

static void
test_check_switch(void)
{
	static const StepSpec recursive[] = {
		{"start", "start", "loop", "", "", NULL, NULL, NULL},
		{"loop", "split-switch", "loop end", "start", "", NULL, NULL, "yes:loop no:end"},
		{"end", "end", "", "loop", "", NULL, NULL, NULL},
	};
	MfdValue *ir;

	EXPECT_DIAGS(BUILD(recursive), "");
	ir = BUILD(recursive);
	set(ir, "steps.1.switch.cases", J("[[\"yes\", \"start\"], [\"no\", \"end\"]]"));
	EXPECT_DIAGS(ir, "/src/t.py:11: error: step 'loop': switch case 'yes' goes to 'start', which is not in next\n"
		"/src/t.py:11: error: step 'loop': next step 'loop' closes the loop loop -> loop; the only loop allowed is a "
		"switch case back to its own step");
	ir = BUILD(recursive);
	set(ir, "steps.1.type", S("linear"));
	set(ir, "steps.1.next", J("[\"loop\"]"));
	set(ir, "steps.1.switch", mfd_null(A));
	set(ir, "steps.2.in_funcs", J("[]"));
	EXPECT_DIAGS(ir, "/src/t.py:11: error: step 'loop': next step 'loop' closes the loop loop -> loop; the only loop "
		"allowed is a switch case back to its own step");

	EXPECT_DIAGS(BUILD(switch_in_foreach), "");
	ir = BUILD(switch_in_foreach);
	set(ir, "steps.1.switch.cases", J("[]"));
	EXPECT_DIAGS(ir, "/src/t.py:11: error: step 'route': switch has no cases");
	/* Issue #19: case 'o' goes through 'odd' straight into the foreach's join, as Metaflow runs it. */
	EXPECT_DIAGS(BUILD(switch_into_foreach_join), "");
	ir = BUILD(switch_in_foreach);
	set(ir, "steps.1.next", J("[\"even\", \"join\"]"));
	set(ir, "steps.1.switch.cases", J("[[\"e\", \"even\"], [\"o\", \"join\"]]"));
	set(ir, "steps.5.in_funcs", J("[\"merge\", \"route\"]"));
	set(ir, "steps.4.in_funcs", J("[\"even\"]"));
	set(ir, "steps.3.in_funcs", J("[]"));
	EXPECT_DIAGS(ir, "/src/t.py:13: error: step 'odd': next names 'merge', whose in_funcs does not include this step\n"
		"/src/t.py:11: error: step 'route': switch case 'o' goes straight into join 'join': a conditional path "
		"cannot lead directly to a join step; add an unconditional step on that path before the join");
}

/* Step.depth */

static void
expect_depths(const MfdValue *ir, const int *want)
{
	Compile c;
	Flow *f = checked(ir, &c);
	size_t i;

	ASSERT(f != NULL);
	for (i = 0; f && i < f->nsteps; i++)
		if (f->steps[i].depth != want[i]) {
			fprintf(stderr, "step %s: depth %d, want %d\n", f->steps[i].name, f->steps[i].depth, want[i]);
			ASSERT(f->steps[i].depth == want[i]);
		}
}

static void
test_depth(void)
{
	static const StepSpec nested[] = {
		{"start", "foreach", "outer", "", "", "join1", "xs", NULL},
		{"outer", "foreach", "inner", "start", "start", "join2", "ys", NULL},
		{"inner", "linear", "join2", "outer", "start outer", NULL, NULL, NULL},
		{"join2", "join", "join1", "inner", "start outer", NULL, NULL, NULL},
		{"join1", "join", "end", "join2", "start", NULL, NULL, NULL},
		{"end", "end", "", "join1", "", NULL, NULL, NULL},
	};
	static const StepSpec foreach_in_split[] = {
		{"start", "split", "a b", "", "", "join", NULL, NULL},
		{"a", "foreach", "body", "start", "start", "gather", "xs", NULL},
		{"body", "linear", "gather", "a", "start a", NULL, NULL, NULL},
		{"gather", "join", "join", "body", "start a", NULL, NULL, NULL},
		{"b", "linear", "join", "start", "start", NULL, NULL, NULL},
		{"join", "join", "end", "b gather", "start", NULL, NULL, NULL},
		{"end", "end", "", "join", "", NULL, NULL, NULL},
	};
	static const int nested_depths[] = {0, 1, 2, 1, 0, 0};
	static const int switch_depths[] = {0, 1, 1, 1, 1, 0, 0};
	static const int split_depths[] = {0, 0, 1, 0, 0, 0, 0};

	expect_depths(BUILD(nested), nested_depths);
	expect_depths(BUILD(switch_in_foreach), switch_depths);
	expect_depths(BUILD(foreach_in_split), split_depths);
}

/* lower.c */

/* Checks and lowers ir as the driver would; NULL when any pass reported an error. */
static Plan *
lowered(const MfdValue *ir, Compile *c)
{
	if (!checked(ir, c) || mfd_lower(c))
		return NULL;
	return c->plan;
}

/* The step names of the plan's ops, in order, space-separated. */
static const char *
op_order(const Plan *p)
{
	StrBuf sb;
	size_t i;

	mfd_sb_init(&sb, A);
	for (i = 0; i < p->nops; i++)
		mfd_sb_printf(&sb, "%s%s", i ? " " : "", p->ops[i].step->name);
	return mfd_sb_str(&sb);
}

/* The n strings of v, joined by "|". */
static const char *
joined(const char *const *v, size_t n)
{
	StrBuf sb;
	size_t i;

	mfd_sb_init(&sb, A);
	for (i = 0; i < n; i++)
		mfd_sb_printf(&sb, "%s%s", i ? "|" : "", v[i]);
	return mfd_sb_str(&sb);
}

static void
test_lower_order(void)
{
	static const StepSpec split_ba[] = {
		{"start", "split", "a b", "", "", "join", NULL, NULL},
		{"b", "linear", "join", "start", "start", NULL, NULL, NULL},
		{"a", "linear", "join", "start", "start", NULL, NULL, NULL},
		{"join", "join", "end", "a b", "start", NULL, NULL, NULL},
		{"end", "end", "", "join", "", NULL, NULL, NULL},
	};
	static const StepSpec split_ab[] = {
		{"start", "split", "b a", "", "", "join", NULL, NULL},
		{"a", "linear", "join", "start", "start", NULL, NULL, NULL},
		{"b", "linear", "join", "start", "start", NULL, NULL, NULL},
		{"join", "join", "end", "a b", "start", NULL, NULL, NULL},
		{"end", "end", "", "join", "", NULL, NULL, NULL},
	};
	static const StepSpec late_end[] = {
		{"start", "start", "x", "", "", NULL, NULL, NULL},
		{"end", "end", "", "x", "", NULL, NULL, NULL},
		{"x", "linear", "end", "start", "", NULL, NULL, NULL},
	};
	static const StepSpec recursive[] = {
		{"start", "start", "loop", "", "", NULL, NULL, NULL},
		{"loop", "split-switch", "loop end", "start loop", "", NULL, NULL, "yes:loop no:end"},
		{"end", "end", "", "loop", "", NULL, NULL, NULL},
	};
	MfdValue *ir;
	Compile c;
	Plan *p;

	p = lowered(BUILD(split_ba), &c);
	ASSERT(p && strcmp(op_order(p), "start b a join end") == 0);
	p = lowered(BUILD(split_ab), &c);
	ASSERT(p && strcmp(op_order(p), "start a b join end") == 0);
	ir = BUILD(late_end);
	set(ir, "flow.end_step", S("end"));
	p = lowered(ir, &c);
	ASSERT(p && strcmp(op_order(p), "start x end") == 0);
	p = lowered(BUILD(recursive), &c);
	ASSERT(p && strcmp(op_order(p), "start loop end") == 0);
	if (!p)
		return;
	ASSERT(p->ops[1].nparents == 1 && p->ops[1].form == OP_SWITCH);
	ASSERT_STREQ(joined(p->ops[1].targets, p->ops[1].ntargets), "end");
	ASSERT_STREQ(joined(p->ops[1].outputs, p->ops[1].noutputs), "loop__end");
	ASSERT_STREQ(joined(p->ops[2].args, p->ops[2].nargs), "loop__end");
}

static void
test_lower_segments(void)
{
	static const StepSpec nested[] = {
		{"start", "foreach", "mid", "", "", "join_outer", "xs", NULL},
		{"mid", "foreach", "leaf", "start", "start", "join_inner", "ys", NULL},
		{"leaf", "linear", "join_inner", "mid", "start mid", NULL, NULL, NULL},
		{"join_inner", "join", "after", "leaf", "start mid", NULL, NULL, NULL},
		{"after", "linear", "join_outer", "join_inner", "start", NULL, NULL, NULL},
		{"join_outer", "join", "end", "after", "start", NULL, NULL, NULL},
		{"end", "end", "", "join_outer", "", NULL, NULL, NULL},
	};
	static const struct {
		SegKind kind;
		int level;
		const char *head, *src, *param, *source, *inputs, *outs;
		size_t nmembers;
	} want[] = {
		{SEG_NATIVE, 1, "mid", "start", "start", "start", "", "mid", 1},
		{SEG_EXPAND, 2, "leaf", "mid", "mid", "fanout__mid(mid.collect())", "mid", "leaf", 1},
		{SEG_REGROUP, 1, "join_inner", "join_inner", "bundle", "gather__join_inner(leaf.collect())", "leaf", "after", 2},
	};
	const Segment *sg;
	Compile c;
	Plan *p = lowered(BUILD(nested), &c);
	size_t i;

	ASSERT(p && p->nsegs == 3 && p->nbarriers == 2);
	for (i = 0; p && i < p->nsegs; i++) {
		sg = &p->segs[i];
		ASSERT(sg->kind == want[i].kind && sg->level == want[i].level && sg->id == (int)i);
		ASSERT_STREQ(sg->head->step->name, want[i].head);
		ASSERT_STREQ(sg->src->step->name, want[i].src);
		ASSERT_STREQ(sg->param, want[i].param);
		ASSERT_STREQ(sg->source, want[i].source);
		ASSERT_STREQ(joined(sg->inputs, sg->ninputs), want[i].inputs);
		ASSERT_STREQ(joined(sg->outs, sg->nouts), want[i].outs);
		ASSERT(sg->nmembers == want[i].nmembers && sg->members[0] == sg->head && sg->head->head);
	}
	if (!p)
		return;
	ASSERT(p->ops[0].seg == -1 && p->ops[0].form == OP_FAN_OUT && p->ops[1].form == OP_FOREACH);
	ASSERT(p->ops[4].seg == 2 && !p->ops[4].head && p->ops[5].seg == -1 && p->ops[5].foreach_join);
	ASSERT_STREQ(joined(p->ops[3].inputs, p->ops[3].ninputs), "bundle");
	ASSERT_STREQ(joined(p->ops[4].args, p->ops[4].nargs), "join_inner");
	ASSERT_STREQ(joined(p->ops[5].args, p->ops[5].nargs), "after.collect()");
	ASSERT_STREQ(p->ops[5].fn, "op_join_outer");
}

static void
test_lower_inputs(void)
{
	static const StepSpec split[] = {
		{"start", "split-switch", "context b", "", "", NULL, NULL, "x:context y:b"},
		{"context", "linear", "merge", "start", "", NULL, NULL, NULL},
		{"b", "linear", "merge", "start", "", NULL, NULL, NULL},
		{"merge", "linear", "end", "b context", "", NULL, NULL, NULL},
		{"end", "end", "", "merge", "", NULL, NULL, NULL},
	};
	MfdValue *ir;
	Compile c;
	Plan *p = lowered(BUILD(split), &c);

	ASSERT(p != NULL);
	if (!p)
		return;
	ASSERT_STREQ(op_order(p), "start context b merge end");
	ASSERT_STREQ(joined(p->ops[0].targets, p->ops[0].ntargets), "context|b");
	ASSERT_STREQ(joined(p->ops[0].outputs, p->ops[0].noutputs), "start__context|start__b");
	ASSERT_STREQ(joined(p->ops[1].inputs, p->ops[1].ninputs), "start");
	ASSERT_STREQ(joined(p->ops[1].args, p->ops[1].nargs), "start__context");
	ASSERT_STREQ(joined(p->ops[3].inputs, p->ops[3].ninputs), "cases");
	ASSERT_STREQ(joined(p->ops[3].args, p->ops[3].nargs), "[b, context]");

	ir = BUILD(split);
	set(ir, "steps.0.type", S("split"));
	set(ir, "steps.0.switch", mfd_null(A));
	set(ir, "steps.0.matching_join", S("merge"));
	set(ir, "steps.3.type", S("join"));
	set(ir, "steps.1.split_parents", J("[\"start\"]"));
	set(ir, "steps.2.split_parents", J("[\"start\"]"));
	set(ir, "steps.3.split_parents", J("[\"start\"]"));
	p = lowered(ir, &c);
	ASSERT(p != NULL);
	if (!p)
		return;
	ASSERT_STREQ(joined(p->ops[3].inputs, p->ops[3].ninputs), "b|context_");
	ASSERT_STREQ(joined(p->ops[3].args, p->ops[3].nargs), "b|context");
}

/*
 * Joins that switch cases reach separately (issue #19): a foreach join collects the tokens of each case, live or
 * dead; a level-0 static join with more parents than its split has branches takes them as one fan-in list,
 * because only the case taken runs; inside a foreach it takes one input per parent, as other joins do.
 */
static void
test_lower_switch_joins(void)
{
	static const StepSpec split_switch[] = {
		{"start", "split", "a other", "", "", "join", NULL, NULL},
		{"a", "split-switch", "b c", "start", "start", NULL, NULL, "x:b y:c"},
		{"b", "linear", "join", "a", "start", NULL, NULL, NULL},
		{"c", "linear", "join", "a", "start", NULL, NULL, NULL},
		{"other", "linear", "join", "start", "start", NULL, NULL, NULL},
		{"join", "join", "end", "b c other", "start", NULL, NULL, NULL},
		{"end", "end", "", "join", "", NULL, NULL, NULL},
	};
	static const StepSpec split_switch_in_foreach[] = {
		{"start", "foreach", "s", "", "", "j2", "xs", NULL},
		{"s", "split", "a other", "start", "start", "join", NULL, NULL},
		{"a", "split-switch", "b c", "s", "start s", NULL, NULL, "x:b y:c"},
		{"b", "linear", "join", "a", "start s", NULL, NULL, NULL},
		{"c", "linear", "join", "a", "start s", NULL, NULL, NULL},
		{"other", "linear", "join", "s", "start s", NULL, NULL, NULL},
		{"join", "join", "j2", "b c other", "start s", NULL, NULL, NULL},
		{"j2", "join", "end", "join", "start", NULL, NULL, NULL},
		{"end", "end", "", "j2", "", NULL, NULL, NULL},
	};
	static const StepSpec split3[] = {
		{"start", "split", "a b c", "", "", "join", NULL, NULL},
		{"a", "linear", "join", "start", "start", NULL, NULL, NULL},
		{"b", "linear", "join", "start", "start", NULL, NULL, NULL},
		{"c", "linear", "join", "start", "start", NULL, NULL, NULL},
		{"join", "join", "end", "a b c", "start", NULL, NULL, NULL},
		{"end", "end", "", "join", "", NULL, NULL, NULL},
	};
	Compile c;
	Plan *p;

	p = lowered(BUILD(switch_into_foreach_join), &c);
	ASSERT(p && p->nsegs == 1);
	if (p) {
		ASSERT_STREQ(op_order(p), "start route even odd merge join end");
		ASSERT_STREQ(joined(p->segs[0].outs, p->segs[0].nouts), "merge|odd");
		ASSERT(p->ops[5].seg == -1 && p->ops[5].foreach_join);
		ASSERT_STREQ(joined(p->ops[5].inputs, p->ops[5].ninputs), "merge|odd");
		ASSERT_STREQ(joined(p->ops[5].args, p->ops[5].nargs), "merge.collect()|odd.collect()");
	}
	p = lowered(BUILD(split_switch), &c);
	ASSERT(p != NULL);
	if (p) {
		ASSERT_STREQ(joined(p->ops[5].inputs, p->ops[5].ninputs), "cases");
		ASSERT_STREQ(joined(p->ops[5].args, p->ops[5].nargs), "[b, c, other]");
	}
	p = lowered(BUILD(split3), &c);
	ASSERT(p != NULL);
	if (p)
		ASSERT_STREQ(joined(p->ops[4].args, p->ops[4].nargs), "a|b|c");
	p = lowered(BUILD(split_switch_in_foreach), &c);
	ASSERT(p && p->nsegs == 1);
	if (p)
		ASSERT_STREQ(joined(p->ops[6].args, p->ops[6].nargs), "b|c|other");
}

static const StepSpec foreach_switch[] = {
	{"start", "foreach", "a", "", "", "join", "xs", NULL},
	{"a", "split-switch", "b c", "start", "start", NULL, NULL, "x:b y:c"},
	{"b", "linear", "m", "a", "start", NULL, NULL, NULL},
	{"c", "linear", "m", "a", "start", NULL, NULL, NULL},
	{"m", "linear", "join", "b c", "start", NULL, NULL, NULL},
	{"join", "join", "end", "m", "start", NULL, NULL, NULL},
	{"end", "end", "", "join", "", NULL, NULL, NULL},
};

static void
test_lower_names(void)
{
	static const StepSpec split[] = {
		{"start", "split", "context context_", "", "", "join", NULL, NULL},
		{"context", "linear", "join", "start", "start", NULL, NULL, NULL},
		{"context_", "linear", "join", "start", "start", NULL, NULL, NULL},
		{"join", "join", "end", "context context_", "start", NULL, NULL, NULL},
		{"end", "end", "", "join", "", NULL, NULL, NULL},
	};
	MfdValue *ir;

	EXPECT_DIAGS(BUILD(foreach_switch), "");
	ir = BUILD(foreach_switch);
	set(ir, "steps.4.name", S("a__b"));
	set(ir, "steps.2.next", J("[\"a__b\"]"));
	set(ir, "steps.3.next", J("[\"a__b\"]"));
	set(ir, "steps.5.in_funcs", J("[\"a__b\"]"));
	EXPECT_DIAGS(ir, "/src/t.py:14: error: step 'a__b': the generated name 'a__b' is both the job's variable for the "
		"output of switch 'a' to 'b' and the job's variable for step 'a__b'; rename a step");

	ir = BUILD(foreach_switch);
	set(ir, "steps.4.name", S("segment_0"));
	set(ir, "steps.2.next", J("[\"segment_0\"]"));
	set(ir, "steps.3.next", J("[\"segment_0\"]"));
	set(ir, "steps.5.in_funcs", J("[\"segment_0\"]"));
	EXPECT_DIAGS(ir, "/src/t.py:14: error: step 'segment_0': the generated name 'segment_0' is both the job's function "
		"for the segment that step 'a' opens and the job's variable for step 'segment_0'; rename a step");

	ir = BUILD(linear);
	set(ir, "steps.1.name", S("op_start"));
	set(ir, "steps.0.next", J("[\"op_start\"]"));
	set(ir, "steps.2.in_funcs", J("[\"op_start\"]"));
	EXPECT_DIAGS(ir, "/src/t.py:11: error: step 'op_start': the generated name 'op_start' is both the op function of "
		"step 'start' and the job's variable for step 'op_start'; rename a step");

	EXPECT_DIAGS(BUILD(split), "/src/t.py:12: error: step 'context_': the generated name 'context_' is both the "
		"parameter of op_join for step 'context' and the parameter of op_join for step 'context_'; rename a step");

	ir = BUILD(linear);
	set(ir, "steps.1.name", S("mf"));
	set(ir, "steps.0.next", J("[\"mf\"]"));
	set(ir, "steps.2.in_funcs", J("[\"mf\"]"));
	EXPECT_DIAGS(ir, "/src/t.py:11: error: step 'mf': the generated name 'mf' is both the runtime object that op_end "
		"calls and the parameter of op_end for step 'mf'; rename a step");

	ir = BUILD(linear);
	set(ir, "flow.job_name", S("op_a"));
	EXPECT_DIAGS(ir, "/src/t.py:11: error: step 'a': the generated name 'op_a' is both the op function of step 'a' "
		"and the job function; rename the flow");
	set(ir, "flow.job_name", S("defs"));
	EXPECT_DIAGS(ir, "/src/t.py: error: the generated name 'defs' is both the job function and a name the module "
		"itself defines; rename the flow");
	set(ir, "flow.job_name", S("proj.TFlow"));
	EXPECT_DIAGS(ir, "/src/t.py: error: job name 'proj.TFlow' is not a Python identifier");
}

static void
test_lower_texts(void)
{
	MfdValue *ir = BUILD(linear);

	set(ir, "steps.1.file", S("/src/dir\nname/t.py"));
	EXPECT_DIAGS(ir, "");
	set(ir, "steps.1.file", S("/src/t\r.py"));
	set(ir, "flow.name", S("T\nFlow"));
	EXPECT_DIAGS(ir, "/src/t.py: error: the flow name \"T\\nFlow\" holds a line break, which would end the comment "
		"it is printed in\n/src/t\r.py:11: error: step 'a': the file name \"t\\r.py\" holds a line break, which "
		"would end the comment it is printed in");
}

static void
test_lower_placement(void)
{
	static const StepSpec twice[] = {
		{"start", "split-switch", "x x y", "", "", NULL, NULL, "p:x q:x r:y"},
		{"x", "linear", "end", "start y", "", NULL, NULL, NULL},
		{"y", "linear", "x", "start", "", NULL, NULL, NULL},
		{"end", "end", "", "x", "", NULL, NULL, NULL},
	};
	static const StepSpec orphan[] = {
		{"start", "foreach", "body", "", "", "join", "xs", NULL},
		{"body", "linear", "join", "start", "start", NULL, NULL, NULL},
		{"join", "join", "end", "body", "start", NULL, NULL, NULL},
		{"lost", "linear", "end", "", "start", NULL, NULL, NULL},
		{"end", "end", "", "join lost", "", NULL, NULL, NULL},
	};
	MfdValue *ir = BUILD(twice);
	Compile c;
	Plan *p;

	/* Two cases to 'x', which 'y' reaches too: 'x' waits for 'y' (Metaflow runs this shape). */
	p = lowered(ir, &c);
	ASSERT(p != NULL);
	if (p) {
		ASSERT_STREQ(op_order(p), "start y x end");
		ASSERT_STREQ(joined(p->ops[2].inputs, p->ops[2].ninputs), "cases");
		ASSERT_STREQ(joined(p->ops[2].args, p->ops[2].nargs), "[start__x, y]");
	}
	set(ir, "steps.0.next", J("[\"y\", \"x\", \"x\"]"));
	set(ir, "steps.0.switch.cases", J("[[\"r\", \"y\"], [\"p\", \"x\"], [\"q\", \"x\"]]"));
	set(ir, "steps.1.in_funcs", J("[\"start\", \"y\"]"));
	set(ir, "steps.2.in_funcs", J("[\"start\"]"));
	p = lowered(ir, &c);
	ASSERT(p && strcmp(op_order(p), "start y x end") == 0);
	EXPECT_DIAGS(BUILD(orphan), "/src/t.py:13: error: step 'lost': the step runs inside a foreach (level 1) but has "
		"no in_funcs");
}

/* driver.c */

static void
test_compile(void)
{
	MfdValue *ir = BUILD(linear);
	MfdResult r1, r2;
	int i;

	ASSERT(mfd_compile(ir, "# rt\n", &r1) == 0);
	ASSERT(r1.text && r1.len == strlen(r1.text) && r1.ndiags == 0);
	ASSERT(strstr(r1.text, "amalgamated ----\n# rt\n# ---- end of embedded runtime ----\n") != NULL);
	ASSERT(strstr(r1.text, "FLOW = {\n    \"name\": \"TFlow\",\n") != NULL);
	ASSERT(strstr(r1.text, "        {\"name\": \"alpha\", \"var\": \"alpha\", \"type\": \"float\", \"default\": 0.5,") != NULL);
	ASSERT(r1.len > 33 && strcmp(r1.text + r1.len - 33, "defs = Definitions(jobs=[TFlow])\n") == 0);
	ASSERT(mfd_compile(ir, "# rt\n", &r2) == 0);
	ASSERT(r2.len == r1.len && memcmp(r1.text, r2.text, r1.len) == 0);
	mfd_result_free(&r1);
	mfd_result_free(&r2);
	ASSERT(r1.text == NULL && r1.arena == NULL);
	ASSERT(mfd_compile(ir, NULL, &r1) == 0);
	mfd_result_free(&r1);
	for (i = 0; i < 200; i++) {
		mfd_compile(ir, "", &r1);
		mfd_result_free(&r1);
	}
	set(ir, "steps", J("{}"));
	ASSERT(mfd_compile(ir, "", &r1) == 1 && r1.text == NULL && r1.len == 0 && r1.ndiags == 1);
	mfd_result_free(&r1);
}

/* The runtime's imports go to the top of the file; the rest is pasted where the runtime goes. */
static void
test_compile_runtime_imports(void)
{
	static const char rt[] =
		"\"\"\"The runtime.\n\nfrom the docstring, not an import\n\"\"\"\n\n"
		"# a comment\n"
		"import os\n"
		"from dagster import (  # a comment (\n"
		"    Field,\n"
		")\n"
		"\n"
		"from json import \\\n"
		"    dumps\n"
		"\n"
		"X = 1\n"
		"import late\n";
	MfdValue *ir = BUILD(linear);
	const char *text;
	MfdResult r;

	ASSERT(mfd_compile(ir, rt, &r) == 0);
	text = r.text ? r.text : "";
	ASSERT(strstr(text, "# 3 steps become 3 ops.\n\nimport os\nfrom dagster import (  # a comment (\n    Field,\n)\n\n"
		"from json import \\\n    dumps\nfrom dagster import Definitions,") != NULL);
	ASSERT(strstr(text, "amalgamated ----\n\"\"\"The runtime.\n\nfrom the docstring, not an import\n\"\"\"\n\n"
		"# a comment\n\nX = 1\nimport late\n# ---- end of embedded runtime ----\n") != NULL);
	mfd_result_free(&r);
	/* Without imports at its top, the runtime is pasted whole. */
	ASSERT(mfd_compile(ir, "X = 1\nimport os\n", &r) == 0);
	text = r.text ? r.text : "";
	ASSERT(strstr(text, "ops.\n\nfrom dagster import Definitions,") != NULL);
	ASSERT(strstr(text, "amalgamated ----\nX = 1\nimport os\n# ---- end") != NULL);
	mfd_result_free(&r);
	ASSERT(mfd_compile(ir, "\"\"\"unclosed\nimport os\n", &r) == 0);
	ASSERT(r.text && strstr(r.text, "amalgamated ----\n\"\"\"unclosed\nimport os\n# ---- end") != NULL);
	mfd_result_free(&r);
}

/* What the FLOW literal carries besides the IR: the config schema, the sensors, the events tasks publish. */
static void
test_compile_decided(void)
{
	MfdValue *ir = BUILD(linear);
	MfdResult r;
	Compile c;
	Plan *p;

	set(ir, "parameters", J("[{\"name\": \"spec\", \"var\": \"spec\", \"type\": \"json\", \"default\": {\"k\": [1, \"\xc3\xa9\"]},"
		" \"required\": false, \"help\": \"the spec\"}, {\"name\": \"n\", \"var\": \"n\", \"type\": \"int\","
		" \"default\": null, \"required\": true, \"help\": \"\"}, {\"name\": \"f\", \"var\": \"f\", \"type\": \"file\","
		" \"default\": null, \"required\": false, \"help\": \"\"}]"));
	set(ir, "flow.project", J("{\"name\": \"p\", \"branch\": \"user.bob\", \"flow_name\": \"p.user.bob.TFlow\","
		" \"production\": false}"));
	set(ir, "flow.end_step", S("end"));
	set(ir, "options.emit_step_events", mfd_bool(A, 1));
	ASSERT(mfd_compile(ir, "", &r) == 0);
	ASSERT(r.text && strstr(r.text, "    \"config_schema\": {\n"
		"        \"spec\": {\"type\": \"String\", \"default_value\": \"{\\\"k\\\": [1, \\\"\\\\u00e9\\\"]}\", "
		"\"description\": \"the spec\"},\n"
		"        \"n\": {\"type\": \"Int\", \"is_required\": True},\n"
		"        \"f\": {\"type\": \"String\", \"is_required\": False},\n    },\n") != NULL);
	ASSERT(r.text && strstr(r.text, "\"a\": {\"type\": \"linear\", \"in\": [\"start\"], \"foreach_join\": False, "
		"\"user_retries\": 0, \"timeout\": 0, \"env\": {}, \"emits\": [\"metaflow.p.user.bob.TFlow.a\"]}") != NULL);
	mfd_result_free(&r);
	/* A custom end step publishes its own event and the .end alias; retries sum into the RetryPolicy. */
	ir = BUILD(linear);
	set(ir, "steps.2.name", S("finish"));
	set(ir, "steps.1.next", J("[\"finish\"]"));
	set(ir, "flow.end_step", S("finish"));
	set(ir, "steps.1.retries", J("{\"user\": 2147483647, \"error\": 2147483647, \"minutes_between\": 2147483647}"));
	p = lowered(ir, &c);
	ASSERT(p != NULL);
	if (p) {
		ASSERT_STREQ(joined(p->ops[2].emits, p->ops[2].nemits), "metaflow.TFlow.finish|metaflow.TFlow.end");
		ASSERT(p->ops[0].nemits == 0 && p->ops[0].max_retries == 0 && p->ops[0].retry_delay == 0);
		ASSERT(p->ops[1].max_retries == 4294967294LL && p->ops[1].retry_delay == 128849018820LL);
		ASSERT_STREQ(p->ops[1].where, "t.py:11");
		ASSERT(p->trigger == NULL && p->finish == NULL && p->schedule_name == NULL);
	}
	/* The sensors are named after the job and what they wait for. */
	ir = BUILD(linear);
	set(ir, "flow.job_name", S("J"));
	set(ir, "flow.triggers", J("{\"events\": [{\"name\": \"x\", \"parameters\": {}}], \"options\": {}}"));
	set(ir, "flow.trigger_on_finish", J("{\"flows\": [{\"name\": \"U\", \"project\": null, \"branch\": null}],"
		" \"options\": {}}"));
	p = lowered(ir, &c);
	ASSERT(p && strcmp(p->trigger->name, "J_on_x") == 0 && strcmp(p->finish->name, "J_after_U") == 0);
}

/* An invariant of check.c that does not hold is an internal error, reported as a diagnostic (also -DNDEBUG). */
static void
test_lower_internal_error(void)
{
	MfdValue *ir = BUILD(linear);
	Compile c;
	Flow *f = checked(ir, &c);

	ASSERT(f != NULL);
	if (!f)
		return;
	f->steps[0].in = f->steps[2].in; /* start waits for a, which waits for start */
	f->steps[0].nin = 1;
	f->steps[0].in[0].step = &f->steps[1];
	ASSERT(mfd_lower(&c) == 1 && c.diags.n == 1);
	ASSERT(c.diags.n == 1 && strstr(c.diags.v[0].message, "internal error: only 0 of the 3 steps could be put in "
		"order") == c.diags.v[0].message);
}

/* The n IRs compiled into one file: the diagnostics one per line, or "" with the text in *text. */
static const char *
many(MfdValue **irs, size_t n, const char **text)
{
	MfdResult r;
	StrBuf sb;
	char line[1024];
	size_t i;

	mfd_compile_many((const MfdValue *const *)irs, n, "# rt\n", &r);
	mfd_sb_init(&sb, A);
	for (i = 0; i < r.ndiags; i++) {
		mfd_diag_format(&r.diags[i], line, sizeof line);
		mfd_sb_printf(&sb, "%s%s", i ? "\n" : "", line);
	}
	ASSERT((r.nerrors == 0) == (r.text != NULL));
	if (text)
		*text = r.text ? mfd_strdup(A, r.text) : NULL;
	mfd_result_free(&r);
	return mfd_sb_str(&sb);
}

/* A linear flow with job name job and one step named step between start and end. */
static MfdValue *
flow_named(const char *job, const char *step)
{
	StepSpec spec[] = {
		{"start", "start", step, "", "", NULL, NULL, NULL},
		{step, "linear", "end", "start", "", NULL, NULL, NULL},
		{"end", "end", "", step, "", NULL, NULL, NULL},
	};
	MfdValue *ir = BUILD(spec);

	set(ir, "flow.name", S(job));
	set(ir, "flow.job_name", S(job));
	return ir;
}

static void
test_compile_many(void)
{
	MfdValue *irs[3] = {flow_named("AFlow", "a"), flow_named("BFlow", "b"), flow_named("CFlow", "c")};
	const char *text, *one;
	MfdResult r1, r2;
	Compile c;
	Plan *p;
	int i;

	ASSERT_STREQ(many(irs, 0, NULL), "error: no flow to compile");
	/* One IR gives mfd_compile's file, byte for byte. */
	ASSERT(mfd_compile(irs[0], "# rt\n", &r1) == 0 && mfd_compile_many((const MfdValue *const *)irs, 1, "# rt\n",
		&r2) == 0);
	ASSERT(r1.len == r2.len && memcmp(r1.text, r2.text, r1.len) == 0);
	mfd_result_free(&r1);
	mfd_result_free(&r2);

	ASSERT_STREQ(many(irs, 3, &text), "");
	ASSERT(text && strstr(text, "# Dagster definitions for 3 Metaflow flows in one code location:\n") != NULL);
	one = text ? strstr(text, "----\n# rt\n") : NULL;
	ASSERT(one && !strstr(one + 1, "----\n# rt\n"));
	ASSERT(text && strstr(text, "    name=\"BFlow__b\",\n") && strstr(text, "def op_BFlow__b(context, start):\n"
		"    return mf_BFlow.run(context, \"b\", [start])\n"));
	ASSERT(text && strstr(text, "    \"start_op\": \"CFlow__start\",\n") && strstr(text, "mf_CFlow = FlowRuntime("
		"FLOW_CFlow)\n"));
	ASSERT(text && strstr(text, "defs = Definitions(\n    jobs=[\n        AFlow,\n        BFlow,\n        CFlow,\n"
		"    ],\n)\n"));

	/* Lowered as part of a shared file, every op name and module-level name of a flow carries its job name. */
	memset(&c, 0, sizeof c);
	if (checked(irs[1], &c)) {
		c.shared = 1;
		ASSERT(mfd_lower(&c) == 0);
		p = c.plan;
		ASSERT_STREQ(p->prefix, "BFlow__");
		ASSERT_STREQ(p->ops[1].name, "BFlow__b");
		ASSERT_STREQ(p->ops[1].fn, "op_BFlow__b");
		ASSERT_STREQ(p->literal, "FLOW_BFlow");
		ASSERT_STREQ(p->rt, "mf_BFlow");
		ASSERT_STREQ(p->schedule, "BFlow_schedule");
		ASSERT_STREQ(p->start_op, "BFlow__start");
	}

	/* Each flow is checked and its problems name it; an IR without a name is named by its position. */
	set(irs[1], "steps.1.next", J("[\"nowhere\"]"));
	del(irs[2], "flow.name");
	ASSERT_STREQ(many(irs, 3, NULL), "/src/t.py:11: error: flow 'BFlow': step 'b': next names 'nowhere', which is not "
		"a step\nerror: flow '#3': flow: missing field 'name'");
	irs[1] = flow_named("BFlow", "b");
	irs[2] = flow_named("AFlow", "c");
	ASSERT_STREQ(many(irs, 3, NULL), "/src/t.py: error: flow 'AFlow': job name 'AFlow' is already the job of flow 1, "
		"AFlow (/src/t.py): a file cannot hold two jobs of one name");
	irs[2] = flow_named("CFlow", "c");
	set(irs[2], "settings.username", S("bob"));
	ASSERT_STREQ(many(irs, 3, NULL), "/src/t.py: error: flow 'CFlow': its Metaflow settings differ from those of flow "
		"'AFlow' (username 'bob' here, 'alice' there); the flows of one file run with one Metaflow configuration: "
		"deploy them with the same top-level options");
	set(irs[2], "settings.username", S("alice"));
	set(irs[2], "settings.env_allowlist", J("[\"PATH\", \"HOME\"]"));
	ASSERT(strstr(many(irs, 3, NULL), "(env_allowlist)") != NULL);

	/* Names that are unique in each flow but clash between two: job a's step b__c and job a__b's step c. */
	irs[0] = flow_named("a", "b__c");
	irs[1] = flow_named("a__b", "c");
	ASSERT_STREQ(many(irs, 2, NULL), "/src/t.py:11: error: flow 'a__b': step 'c': the generated name 'a__b__c' is "
		"both the op of step 'b__c' and the op of step 'c'; rename a step\n"
		"/src/t.py:11: error: flow 'a__b': step 'c': the generated name 'op_a__b__c' is both the op function of "
		"step 'b__c' and the op function of step 'c'; rename a step");
	irs[0] = flow_named("x", "a");
	irs[1] = flow_named("mf_x", "a");
	ASSERT_STREQ(many(irs, 2, NULL), "/src/t.py: error: flow 'mf_x': the generated name 'mf_x' is both the runtime "
		"object of flow 'x' and the job function of flow 'mf_x'; rename the flow");
	/* Schedules and sensors share Dagster's namespace: J_after_e's @trigger sensor is J's @trigger_on_finish's. */
	irs[0] = flow_named("J_after_e", "a");
	set(irs[0], "flow.triggers", J("{\"events\": [{\"name\": \"x\", \"parameters\": {}}], \"options\": {}}"));
	irs[1] = flow_named("J", "a");
	set(irs[1], "flow.trigger_on_finish", J("{\"flows\": [{\"name\": \"e_on_x\", \"project\": null, \"branch\": null}],"
		" \"options\": {}}"));
	ASSERT_STREQ(many(irs, 2, NULL), "/src/t.py: error: flow 'J': the generated name 'J_after_e_on_x' is both the "
		"@trigger sensor of flow 'J_after_e' and the @trigger_on_finish sensor of flow 'J'; rename the flow");

	irs[0] = flow_named("AFlow", "a");
	irs[1] = flow_named("BFlow", "b");
	for (i = 0; i < 100; i++) {
		mfd_compile_many((const MfdValue *const *)irs, 2, "", &r1);
		ASSERT(r1.nerrors == 0);
		mfd_result_free(&r1);
	}
}

/* The diagnostics of a result stay valid after the IR tree they came from is freed. */
static void
test_result_owns_diags(void)
{
	MfdArena *outer = A, *input = mfd_arena_new();
	MfdValue *ir;
	MfdResult r;
	char line[256];

	A = input;
	ir = BUILD(linear);
	set(ir, "steps.1.next", J("[\"nowhere\"]"));
	A = outer;
	mfd_compile(ir, "", &r);
	mfd_arena_free(input);
	ASSERT(r.nerrors == 1 && r.ndiags == 1);
	mfd_diag_format(&r.diags[0], line, sizeof line);
	ASSERT_STREQ(line, "/src/t.py:11: error: step 'a': next names 'nowhere', which is not a step");
	mfd_result_free(&r);
}

int
main(void)
{
	A = mfd_arena_new();
	RUN(test_arena);
	RUN(test_arena_catch);
	RUN(test_strbuf_indent);
	RUN(test_strbuf_sticky);
	RUN(test_pystr);
	RUN(test_pyvalue);
	RUN(test_float_repr);
	RUN(test_json_text);
	RUN(test_value);
	RUN(test_json);
	RUN(test_diag_format);
	RUN(test_names);
	RUN(test_names_decided);
	RUN(test_read_top);
	RUN(test_read_types);
	RUN(test_read_fields);
	RUN(test_check_names);
	RUN(test_check_edges);
	RUN(test_check_kinds);
	RUN(test_check_decorators);
	RUN(test_executor);
	RUN(test_k8s);
	RUN(test_check_switch);
	RUN(test_depth);
	RUN(test_lower_order);
	RUN(test_lower_segments);
	RUN(test_lower_inputs);
	RUN(test_lower_switch_joins);
	RUN(test_lower_names);
	RUN(test_lower_texts);
	RUN(test_lower_placement);
	RUN(test_compile);
	RUN(test_compile_runtime_imports);
	RUN(test_compile_decided);
	RUN(test_lower_internal_error);
	RUN(test_compile_many);
	RUN(test_result_owns_diags);
	mfd_arena_free(A);
	return test_report();
}
