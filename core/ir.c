/*
 * ir.c: the IR reader, from the value tree of docs/ir.md to Flow, Step, Param and the other IR structs.
 *
 * It checks the form only: every field present with its JSON type, no unknown or repeated field, and
 * ir_version 1. What the fields mean (names that resolve, the shape of the graph) is check.c's job. Each
 * problem names the path of its field, as in "steps[3].next: expected array of strings, got string", and
 * reading goes on, so one run reports every problem; the driver stops after this pass if there was any. A
 * missing or different ir_version is the exception: another version is another format, so it is reported alone.
 *
 * Invariants of a Flow read without errors: every string is NUL-terminated, free of NUL bytes and points into
 * the input tree, which outlives the compile; a nullable field that was null is NULL; free-form values
 * (decorator attributes, parameter defaults) stay value trees, nested at most MFD_MAX_DEPTH deep. Nothing is
 * resolved yet: StepRef.step and Decorator.kind are set by check.
 */
#include <limits.h>
#include <string.h>

#include "internal.h"

static const char *const step_kind_names[] = {
#define X(kind, name, minnext, maxnext) name,
	STEP_KINDS(X)
#undef X
};

static const char *const param_type_names[] = {
#define X(type, name, dagster) name,
	PARAM_TYPES(X)
#undef X
};

static const struct {
	const char *name;
	int remote;
} executors[] = {
#define X(kind, name, remote) {name, remote},
	EXECUTORS(X)
#undef X
};

static const char *const param_config_types[] = {
#define X(type, name, dagster) dagster,
	PARAM_TYPES(X)
#undef X
};

const char *
mfd_step_kind_name(StepKind k)
{
	return step_kind_names[k];
}

const char *
mfd_exec_name(ExecKind k)
{
	return executors[k].name;
}

/* Whether the ops of executor k run in processes that share no disk with the run worker. */
int
mfd_exec_remote(ExecKind k)
{
	return executors[k].remote;
}

const char *
mfd_param_type_name(ParamType t)
{
	return param_type_names[t];
}

/* The Dagster config type of the launchpad field of a Parameter of type t. */
const char *
mfd_param_config_type(ParamType t)
{
	return param_config_types[t];
}

/* The path of field in the object at path: "path.field", or field alone at the top level. */
static const char *
child(Compile *c, const char *path, const char *field)
{
	return *path ? mfd_printf(c->arena, "%s.%s", path, field) : field;
}

/* The path of element i of the array field in the object at path. */
static const char *
elem(Compile *c, const char *path, const char *field, size_t i)
{
	return mfd_printf(c->arena, "%s%s%s[%zu]", path, *path ? "." : "", field, i);
}

/* Reports a problem with field of the object at path; an empty field means the object itself. */
static void
bad(Compile *c, const char *path, const char *field, const char *fmt, ...) MFD_PRINTF(4, 5);

static void
bad(Compile *c, const char *path, const char *field, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = mfd_vprintf(c->arena, fmt, ap);
	va_end(ap);
	if (*path || *field)
		mfd_diag(&c->diags, MFD_ERROR, NULL, NULL, 0, "%s%s%s: %s", path, *path && *field ? "." : "", field, msg);
	else
		mfd_diag(&c->diags, MFD_ERROR, NULL, NULL, 0, "%s", msg);
}

/* Returns 1 when v has kind k, else reports "expected what, got ..." and returns 0. */
static int
is(Compile *c, const MfdValue *v, ValueKind k, const char *path, const char *field, const char *what)
{
	if (v->kind == k)
		return 1;
	bad(c, path, field, "expected %s, got %s", what, mfd_value_kind_name(v->kind));
	return 0;
}

/*
 * Reports the members of obj that known (a NULL-terminated list of at most 32 names) does not list, or that
 * repeat a name.
 */
static void
schema(Compile *c, const MfdValue *obj, const char *path, const char *const *known)
{
	unsigned long seen = 0;
	const Member *m;
	size_t i, k;

	for (i = 0; i < obj->u.obj.n; i++) {
		m = &obj->u.obj.v[i];
		for (k = 0; known[k]; k++)
			if (strlen(known[k]) == m->keylen && memcmp(known[k], m->key, m->keylen) == 0)
				break;
		if (!known[k])
			bad(c, path, "", "unknown field %s", mfd_quote(c->arena, m->key, m->keylen));
		else if (seen >> k & 1)
			bad(c, path, "", "repeated field '%s'", known[k]);
		seen |= 1ul << k;
	}
}

/* The member field of obj, or NULL after reporting it missing. */
static const MfdValue *
get(Compile *c, const MfdValue *obj, const char *path, const char *field)
{
	const MfdValue *v = mfd_object_get(obj, field);

	if (!v)
		bad(c, path, "", "missing field '%s'", field);
	return v;
}

/* The string v, or NULL after reporting it is not a string or holds a NUL byte. */
static const char *
text(Compile *c, const MfdValue *v, const char *path, const char *field, const char *what)
{
	if (!is(c, v, VAL_STRING, path, field, what))
		return NULL;
	if (memchr(v->u.str.s, '\0', v->u.str.len)) {
		bad(c, path, field, "string holds a NUL byte");
		return NULL;
	}
	return v->u.str.s;
}

static const char *
str_field(Compile *c, const MfdValue *obj, const char *path, const char *field)
{
	const MfdValue *v = get(c, obj, path, field);

	return v ? text(c, v, path, field, "string") : NULL;
}

/* A "string or null" field; NULL for null. */
static const char *
opt_str_field(Compile *c, const MfdValue *obj, const char *path, const char *field)
{
	const MfdValue *v = get(c, obj, path, field);

	return v && v->kind != VAL_NULL ? text(c, v, path, field, "string or null") : NULL;
}

static int
bool_field(Compile *c, const MfdValue *obj, const char *path, const char *field)
{
	const MfdValue *v = get(c, obj, path, field);

	return v && is(c, v, VAL_BOOL, path, field, "boolean") ? v->u.b : 0;
}

/* An integer field that must lie in [min, INT_MAX]. */
static int
int_field(Compile *c, const MfdValue *obj, const char *path, const char *field, int min)
{
	const MfdValue *v = get(c, obj, path, field);

	if (!v || !is(c, v, VAL_INT, path, field, "integer"))
		return 0;
	if (v->u.i < min || v->u.i > INT_MAX) {
		bad(c, path, field, "expected integer from %d to %d, got %lld", min, INT_MAX, v->u.i);
		return 0;
	}
	return (int)v->u.i;
}

/* A string field that must be one of the n names; returns its index. */
static int
enum_field(Compile *c, const MfdValue *obj, const char *path, const char *field, const char *const *names,
	size_t n, const char *what)
{
	const char *s = str_field(c, obj, path, field);
	size_t i;

	if (!s)
		return 0;
	for (i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	bad(c, path, field, "%s is not a %s", mfd_quote(c->arena, s, strlen(s)), what);
	return 0;
}

static const MfdValue *
obj_field(Compile *c, const MfdValue *obj, const char *path, const char *field)
{
	const MfdValue *v = get(c, obj, path, field);

	return v && is(c, v, VAL_OBJECT, path, field, "object") ? v : NULL;
}

static const MfdValue *
array_field(Compile *c, const MfdValue *obj, const char *path, const char *field, const char *what)
{
	const MfdValue *v = get(c, obj, path, field);

	return v && is(c, v, VAL_ARRAY, path, field, what) ? v : NULL;
}

/* An array-of-strings field; sets *n. */
static const char **
strs_field(Compile *c, const MfdValue *obj, const char *path, const char *field, size_t *n)
{
	const MfdValue *v = array_field(c, obj, path, field, "array of strings"), *e;
	const char **out;
	size_t i;

	*n = 0;
	if (!v)
		return NULL;
	out = mfd_alloc(c->arena, v->u.arr.n * sizeof *out);
	for (i = 0; i < v->u.arr.n; i++) {
		e = v->u.arr.v[i];
		if (e->kind == VAL_STRING && !memchr(e->u.str.s, '\0', e->u.str.len))
			out[i] = e->u.str.s;
		else
			text(c, e, path, mfd_printf(c->arena, "%s[%zu]", field, i), "string");
	}
	*n = v->u.arr.n;
	return out;
}

/* An array of step names; sets *n. */
static StepRef *
refs_field(Compile *c, const MfdValue *obj, const char *path, const char *field, size_t *n)
{
	const char **names = strs_field(c, obj, path, field, n);
	StepRef *refs = mfd_alloc(c->arena, *n * sizeof *refs);
	size_t i;

	for (i = 0; i < *n; i++)
		refs[i].name = names[i];
	return refs;
}

/* An object-of-strings field (env, resources); sets *n. */
static StrPair *
pairs_field(Compile *c, const MfdValue *obj, const char *path, const char *field, size_t *n)
{
	const MfdValue *v = get(c, obj, path, field);
	const Member *m;
	StrPair *out;
	size_t i;

	*n = 0;
	if (!v || !is(c, v, VAL_OBJECT, path, field, "object of strings"))
		return NULL;
	out = mfd_alloc(c->arena, v->u.obj.n * sizeof *out);
	for (i = 0; i < v->u.obj.n; i++) {
		m = &v->u.obj.v[i];
		out[i].key = m->key;
		out[i].value = text(c, m->value, path, mfd_printf(c->arena, "%s[%s]", field,
			mfd_quote(c->arena, m->key, m->keylen)), "string");
		if (memchr(m->key, '\0', m->keylen))
			bad(c, path, field, "key %s holds a NUL byte", mfd_quote(c->arena, m->key, m->keylen));
	}
	*n = v->u.obj.n;
	return out;
}

/* Returns 1 when v nests containers more than limit levels deep. Recurses at most limit levels. */
static int
deeper_than(const MfdValue *v, int limit)
{
	size_t i;

	if (v->kind != VAL_ARRAY && v->kind != VAL_OBJECT)
		return 0;
	if (limit == 0)
		return 1;
	if (v->kind == VAL_ARRAY) {
		for (i = 0; i < v->u.arr.n; i++)
			if (deeper_than(v->u.arr.v[i], limit - 1))
				return 1;
	} else {
		for (i = 0; i < v->u.obj.n; i++)
			if (deeper_than(v->u.obj.v[i].value, limit - 1))
				return 1;
	}
	return 0;
}

/* A free-form field: any value, bounded in depth. */
static const MfdValue *
any_field(Compile *c, const MfdValue *obj, const char *path, const char *field)
{
	const MfdValue *v = get(c, obj, path, field);

	if (v && deeper_than(v, MFD_MAX_DEPTH)) {
		bad(c, path, field, "nested more than %d levels deep", MFD_MAX_DEPTH);
		return NULL;
	}
	return v;
}

static Decorator *
read_decorators(Compile *c, const MfdValue *obj, const char *path, size_t *n)
{
	static const char *const known[] = {"name", "attributes", "static", "spec", "user_attributes", NULL};
	const MfdValue *v = array_field(c, obj, path, "decorators", "array of objects"), *e, *attrs;
	const char *epath;
	Decorator *decos;
	size_t i;

	*n = 0;
	if (!v)
		return NULL;
	decos = mfd_alloc(c->arena, v->u.arr.n * sizeof *decos);
	for (i = 0; i < v->u.arr.n; i++) {
		e = v->u.arr.v[i];
		epath = elem(c, path, "decorators", i);
		if (!is(c, e, VAL_OBJECT, epath, "", "object"))
			continue;
		schema(c, e, epath, known);
		decos[i].name = str_field(c, e, epath, "name");
		attrs = any_field(c, e, epath, "attributes");
		if (attrs && is(c, attrs, VAL_OBJECT, epath, "attributes", "object"))
			decos[i].attributes = attrs;
		decos[i].is_static = bool_field(c, e, epath, "static");
		decos[i].spec = opt_str_field(c, e, epath, "spec");
		/* Optional (IR written before it existed): then every attribute counts as given. */
		decos[i].all_given = !mfd_object_get(e, "user_attributes");
		if (!decos[i].all_given)
			decos[i].given = strs_field(c, e, epath, "user_attributes", &decos[i].ngiven);
	}
	*n = v->u.arr.n;
	return decos;
}

static void
read_switch(Compile *c, const MfdValue *step, const char *path, Step *s)
{
	static const char *const known[] = {"condition", "cases", NULL};
	const MfdValue *v = get(c, step, path, "switch"), *cases, *pair;
	const char *spath, *field;
	size_t i;

	if (!v || v->kind == VAL_NULL || !is(c, v, VAL_OBJECT, path, "switch", "object or null"))
		return;
	spath = child(c, path, "switch");
	schema(c, v, spath, known);
	s->condition = str_field(c, v, spath, "condition");
	cases = array_field(c, v, spath, "cases", "array of [value, step] pairs");
	if (!cases)
		return;
	s->cases = mfd_alloc(c->arena, cases->u.arr.n * sizeof *s->cases);
	s->ncases = cases->u.arr.n;
	for (i = 0; i < cases->u.arr.n; i++) {
		pair = cases->u.arr.v[i];
		field = mfd_printf(c->arena, "cases[%zu]", i);
		if (pair->kind != VAL_ARRAY || pair->u.arr.n != 2) {
			bad(c, spath, field, "expected [value, step], a pair of strings");
			continue;
		}
		s->cases[i].value = text(c, pair->u.arr.v[0], spath, field, "[value, step], a pair of strings");
		s->cases[i].to.name = text(c, pair->u.arr.v[1], spath, field, "[value, step], a pair of strings");
	}
}

static void
read_step(Compile *c, const MfdValue *v, const char *path, Step *s)
{
	static const char *const known[] = {"name", "type", "file", "line", "next", "in_funcs", "split_parents",
		"matching_join", "foreach_var", "parallel", "num_parallel", "switch", "decorators", "retries",
		"timeout_seconds", "env", "resources", NULL};
	static const char *const retry_fields[] = {"user", "error", "minutes_between", NULL};
	const MfdValue *retries;
	const char *rpath;

	schema(c, v, path, known);
	s->name = str_field(c, v, path, "name");
	s->kind = enum_field(c, v, path, "type", step_kind_names, MFD_COUNT(step_kind_names), "step type");
	s->file = str_field(c, v, path, "file");
	s->line = int_field(c, v, path, "line", 0);
	s->next = refs_field(c, v, path, "next", &s->nnext);
	s->in = refs_field(c, v, path, "in_funcs", &s->nin);
	s->parents = refs_field(c, v, path, "split_parents", &s->nparents);
	s->join.name = opt_str_field(c, v, path, "matching_join");
	s->foreach_var = opt_str_field(c, v, path, "foreach_var");
	s->parallel = bool_field(c, v, path, "parallel");
	s->num_parallel = int_field(c, v, path, "num_parallel", 0);
	read_switch(c, v, path, s);
	s->decos = read_decorators(c, v, path, &s->ndecos);
	if ((retries = obj_field(c, v, path, "retries"))) {
		rpath = child(c, path, "retries");
		schema(c, retries, rpath, retry_fields);
		s->user_retries = int_field(c, retries, rpath, "user", 0);
		s->error_retries = int_field(c, retries, rpath, "error", 0);
		s->minutes_between = int_field(c, retries, rpath, "minutes_between", 0);
	}
	s->timeout_seconds = int_field(c, v, path, "timeout_seconds", 0);
	s->env = pairs_field(c, v, path, "env", &s->nenv);
	s->resources = pairs_field(c, v, path, "resources", &s->nresources);
}

static void
read_steps(Compile *c, const MfdValue *ir, Flow *f)
{
	const MfdValue *v = array_field(c, ir, "", "steps", "array of objects"), *e;
	const char *epath;
	size_t i;

	if (!v)
		return;
	f->steps = mfd_alloc(c->arena, v->u.arr.n * sizeof *f->steps);
	f->nsteps = v->u.arr.n;
	for (i = 0; i < v->u.arr.n; i++) {
		e = v->u.arr.v[i];
		epath = elem(c, "", "steps", i);
		f->steps[i].index = (int)i;
		if (is(c, e, VAL_OBJECT, epath, "", "object"))
			read_step(c, e, epath, &f->steps[i]);
	}
}

/* flow.triggers: null, or {"events": [{"name", "parameters": {param: field}}], "options": {...}}. */
static Triggers *
read_triggers(Compile *c, const MfdValue *flow)
{
	static const char *const known[] = {"events", "options", NULL};
	static const char *const event_fields[] = {"name", "parameters", NULL};
	const MfdValue *v = any_field(c, flow, "flow", "triggers"), *events, *e;
	const char *epath;
	Triggers *t;
	size_t i;

	if (!v || v->kind == VAL_NULL || !is(c, v, VAL_OBJECT, "flow", "triggers", "object or null"))
		return NULL;
	schema(c, v, "flow.triggers", known);
	obj_field(c, v, "flow.triggers", "options");
	events = array_field(c, v, "flow.triggers", "events", "array of objects");
	if (!events)
		return NULL;
	t = mfd_alloc(c->arena, sizeof *t);
	t->value = v;
	t->nevents = events->u.arr.n;
	t->events = mfd_alloc(c->arena, t->nevents * sizeof *t->events);
	for (i = 0; i < t->nevents; i++) {
		e = events->u.arr.v[i];
		epath = elem(c, "flow.triggers", "events", i);
		if (!is(c, e, VAL_OBJECT, epath, "", "object"))
			continue;
		schema(c, e, epath, event_fields);
		t->events[i].name = str_field(c, e, epath, "name");
		t->events[i].params = pairs_field(c, e, epath, "parameters", &t->events[i].nparams);
	}
	return t;
}

/*
 * flow.trigger_on_finish: null, or {"flows": [{"name", "project", "branch"}], "options": {...}}, with
 * project and branch null where the decorator leaves them to the flow's own @project.
 */
static Finish *
read_finish(Compile *c, const MfdValue *flow)
{
	static const char *const known[] = {"flows", "options", NULL};
	static const char *const upstream_fields[] = {"name", "project", "branch", NULL};
	const MfdValue *v = any_field(c, flow, "flow", "trigger_on_finish"), *flows, *e;
	const char *epath;
	Finish *t;
	size_t i;

	if (!v || v->kind == VAL_NULL || !is(c, v, VAL_OBJECT, "flow", "trigger_on_finish", "object or null"))
		return NULL;
	schema(c, v, "flow.trigger_on_finish", known);
	flows = array_field(c, v, "flow.trigger_on_finish", "flows", "array of objects");
	if (!flows)
		return NULL;
	t = mfd_alloc(c->arena, sizeof *t);
	t->options = obj_field(c, v, "flow.trigger_on_finish", "options");
	t->nflows = flows->u.arr.n;
	t->flows = mfd_alloc(c->arena, t->nflows * sizeof *t->flows);
	for (i = 0; i < t->nflows; i++) {
		e = flows->u.arr.v[i];
		epath = elem(c, "flow.trigger_on_finish", "flows", i);
		if (!is(c, e, VAL_OBJECT, epath, "", "object"))
			continue;
		schema(c, e, epath, upstream_fields);
		t->flows[i].flow = str_field(c, e, epath, "name");
		t->flows[i].project = opt_str_field(c, e, epath, "project");
		t->flows[i].branch = opt_str_field(c, e, epath, "branch");
	}
	return t;
}

/* flow.code_package: null, or {"url", "sha", "metadata"} of the package `create` uploaded. */
static CodePackage *
read_code_package(Compile *c, const MfdValue *flow)
{
	static const char *const known[] = {"url", "sha", "metadata", NULL};
	const MfdValue *v = get(c, flow, "flow", "code_package");
	CodePackage *p;

	if (!v || v->kind == VAL_NULL || !is(c, v, VAL_OBJECT, "flow", "code_package", "object or null"))
		return NULL;
	schema(c, v, "flow.code_package", known);
	p = mfd_alloc(c->arena, sizeof *p);
	p->url = str_field(c, v, "flow.code_package", "url");
	p->sha = str_field(c, v, "flow.code_package", "sha");
	p->metadata = get(c, v, "flow.code_package", "metadata");
	if (p->url && !*p->url)
		bad(c, "flow.code_package", "url", "is empty");
	if (p->sha && (strlen(p->sha) != 40 || strspn(p->sha, "0123456789abcdef") != 40))
		bad(c, "flow.code_package", "sha", "must be 40 lower-case hex digits (a sha1), got '%s'", p->sha);
	return p;
}

static void
read_flow(Compile *c, const MfdValue *ir, Flow *f)
{
	static const char *const known[] = {"name", "file", "file_sha256", "job_name", "start_step", "end_step",
		"doc", "project", "decorators", "triggers", "trigger_on_finish", "schedule", "code_package", NULL};
	static const char *const schedule_fields[] = {"cron", "timezone", NULL};
	static const char *const project_fields[] = {"name", "branch", "flow_name", "production", NULL};
	const MfdValue *v = obj_field(c, ir, "", "flow"), *p;

	if (!v)
		return;
	schema(c, v, "flow", known);
	f->name = str_field(c, v, "flow", "name");
	f->file = str_field(c, v, "flow", "file");
	f->file_sha256 = str_field(c, v, "flow", "file_sha256");
	f->package = read_code_package(c, v);
	f->job_name = str_field(c, v, "flow", "job_name");
	f->start.name = str_field(c, v, "flow", "start_step");
	f->end.name = str_field(c, v, "flow", "end_step");
	f->doc = str_field(c, v, "flow", "doc");
	p = get(c, v, "flow", "project");
	if (p && p->kind != VAL_NULL && is(c, p, VAL_OBJECT, "flow", "project", "object or null")) {
		schema(c, p, "flow.project", project_fields);
		f->project = mfd_alloc(c->arena, sizeof *f->project);
		f->project->name = str_field(c, p, "flow.project", "name");
		f->project->branch = str_field(c, p, "flow.project", "branch");
		f->project->flow_name = str_field(c, p, "flow.project", "flow_name");
		f->project->production = bool_field(c, p, "flow.project", "production");
	}
	f->decos = read_decorators(c, v, "flow", &f->ndecos);
	f->triggers = read_triggers(c, v);
	f->finish = read_finish(c, v);
	p = get(c, v, "flow", "schedule");
	if (p && p->kind != VAL_NULL && is(c, p, VAL_OBJECT, "flow", "schedule", "object or null")) {
		schema(c, p, "flow.schedule", schedule_fields);
		f->cron = str_field(c, p, "flow.schedule", "cron");
		f->timezone = opt_str_field(c, p, "flow.schedule", "timezone");
	}
}

static void
read_params(Compile *c, const MfdValue *ir, Flow *f)
{
	static const char *const known[] = {"name", "var", "type", "default", "required", "help", NULL};
	const MfdValue *v = array_field(c, ir, "", "parameters", "array of objects"), *e;
	const char *epath;
	Param *p;
	size_t i;

	if (!v)
		return;
	f->params = mfd_alloc(c->arena, v->u.arr.n * sizeof *f->params);
	f->nparams = v->u.arr.n;
	for (i = 0; i < v->u.arr.n; i++) {
		e = v->u.arr.v[i];
		epath = elem(c, "", "parameters", i);
		p = &f->params[i];
		if (!is(c, e, VAL_OBJECT, epath, "", "object"))
			continue;
		schema(c, e, epath, known);
		p->name = str_field(c, e, epath, "name");
		p->var = str_field(c, e, epath, "var");
		p->type = enum_field(c, e, epath, "type", param_type_names, MFD_COUNT(param_type_names),
			"parameter type");
		p->dflt = any_field(c, e, epath, "default");
		p->required = bool_field(c, e, epath, "required");
		p->help = str_field(c, e, epath, "help");
	}
}

static void
read_configs(Compile *c, const MfdValue *ir, Flow *f)
{
	static const char *const known[] = {"name", "value", NULL};
	const MfdValue *v = array_field(c, ir, "", "configs", "array of objects"), *e;
	const char *epath;
	size_t i;

	if (!v)
		return;
	f->configs = mfd_alloc(c->arena, v->u.arr.n * sizeof *f->configs);
	f->nconfigs = v->u.arr.n;
	for (i = 0; i < v->u.arr.n; i++) {
		e = v->u.arr.v[i];
		epath = elem(c, "", "configs", i);
		if (!is(c, e, VAL_OBJECT, epath, "", "object"))
			continue;
		schema(c, e, epath, known);
		f->configs[i].name = str_field(c, e, epath, "name");
		f->configs[i].value = str_field(c, e, epath, "value");
	}
}

static void
read_settings(Compile *c, const MfdValue *ir, Settings *s)
{
	static const char *const known[] = {"datastore", "datastore_root", "metadata", "environment",
		"event_logger", "monitor", "python", "username", "env_allowlist", NULL};
	const MfdValue *v = obj_field(c, ir, "", "settings");

	if (!v)
		return;
	schema(c, v, "settings", known);
	s->datastore = str_field(c, v, "settings", "datastore");
	s->datastore_root = str_field(c, v, "settings", "datastore_root");
	s->metadata = str_field(c, v, "settings", "metadata");
	s->environment = str_field(c, v, "settings", "environment");
	s->event_logger = str_field(c, v, "settings", "event_logger");
	s->monitor = str_field(c, v, "settings", "monitor");
	s->python = str_field(c, v, "settings", "python");
	s->username = str_field(c, v, "settings", "username");
	s->env_allowlist = strs_field(c, v, "settings", "env_allowlist", &s->nenv_allowlist);
}

static void
read_options(Compile *c, const MfdValue *ir, Options *o)
{
	static const char *const known[] = {"tags", "namespace", "max_workers", "workflow_timeout", "with",
		"branch", "production", "emit_step_events", "max_num_splits", "executor", "executor_config", "queues",
		NULL};
	const MfdValue *v = obj_field(c, ir, "", "options");

	if (!v)
		return;
	schema(c, v, "options", known);
	o->tags = strs_field(c, v, "options", "tags", &o->ntags);
	o->namespace = opt_str_field(c, v, "options", "namespace");
	o->max_workers = int_field(c, v, "options", "max_workers", 1);
	o->workflow_timeout = int_field(c, v, "options", "workflow_timeout", 0);
	o->with = strs_field(c, v, "options", "with", &o->nwith);
	o->branch = opt_str_field(c, v, "options", "branch");
	o->production = bool_field(c, v, "options", "production");
	o->emit_step_events = bool_field(c, v, "options", "emit_step_events");
	/* Optional (IR written before it existed): Metaflow's own default, `run --max-num-splits`. */
	o->max_num_splits = mfd_object_get(v, "max_num_splits") ? int_field(c, v, "options", "max_num_splits", 1)
		: MFD_DEFAULT_MAX_NUM_SPLITS;
	/* Optional too: without them the core chooses the executor (check.c) and nothing is configured. */
	if (mfd_object_get(v, "executor"))
		o->executor = opt_str_field(c, v, "options", "executor");
	if (mfd_object_get(v, "executor_config")) {
		o->executor_config = any_field(c, v, "options", "executor_config");
		if (o->executor_config && !is(c, o->executor_config, VAL_OBJECT, "options", "executor_config", "object"))
			o->executor_config = NULL;
	}
	if (mfd_object_get(v, "queues"))
		o->queues = pairs_field(c, v, "options", "queues", &o->nqueues);
}

/*
 * Reads c->ir into c->flow. Returns the number of errors so far; when there are any, c->flow may be partly
 * filled and must not be used.
 */
int
mfd_read_ir(Compile *c)
{
	static const char *const known[] = {"ir_version", "flow", "steps", "parameters", "configs", "settings",
		"options", NULL};
	const MfdValue *ir = c->ir, *version;
	Flow *f;

	if (ir->kind != VAL_OBJECT) {
		bad(c, "", "", "expected an object at the top level, got %s", mfd_value_kind_name(ir->kind));
		return c->diags.nerrors;
	}
	version = get(c, ir, "", "ir_version");
	if (!version || !is(c, version, VAL_INT, "", "ir_version", "integer"))
		return c->diags.nerrors;
	if (version->u.i != MFD_IR_VERSION) {
		mfd_diag(&c->diags, MFD_ERROR, NULL, NULL, 0, "unsupported IR version %lld (this compiler reads %d)",
			version->u.i, MFD_IR_VERSION);
		return c->diags.nerrors;
	}
	c->flow = f = mfd_alloc(c->arena, sizeof *f);
	schema(c, ir, "", known);
	read_flow(c, ir, f);
	read_steps(c, ir, f);
	read_params(c, ir, f);
	read_configs(c, ir, f);
	read_settings(c, ir, &f->settings);
	read_options(c, ir, &f->options);
	return c->diags.nerrors;
}
