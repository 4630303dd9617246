/*
 * emit.c: prints the plans as the generated Python module (docs/codegen.md, "The emitted file").
 *
 * The file of one flow reads top to bottom: a banner, the imports (the runtime's top-level imports, then the
 * file's own from dagster), the FLOW literal, the rest of the runtime pasted verbatim, one @op per step in
 * topological order, the barrier ops, the @job and the Definitions. A file of several flows has the banner, the
 * imports and the runtime once, then one section per flow (its literal, runtime object, ops, barriers, job and
 * schedule) and one Definitions for them all. Lowering decided every name, value and expression (also those the
 * FLOW literal hands the runtime: sensor names, config schema, emitted events); this file only lays them out,
 * so the same plans always give the same bytes.
 *
 * IR text appears inside Python literals written by the StrBuf helpers, except the flow's and the steps' names
 * and files in comments and the job name in its def line, which lowering checked are safe there. FLOW's keys
 * come in a fixed order (docs/codegen.md); free-form values (parameter defaults, env) keep the IR's order.
 * Appends are not checked one by one: the StrBuf's sticky flag records a failure, and the driver looks at it
 * once.
 */
#include <string.h>

#include "internal.h"

/* Appends s as a Python string literal. */
static void
str(StrBuf *o, const char *s)
{
	mfd_sb_pystr(o, s, strlen(s));
}

/* Appends the n names of v separated by ", ", as Python string literals when quoted, else as they are. */
static void
join(StrBuf *o, const char *const *v, size_t n, int quoted)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (i)
			mfd_sb_puts(o, ", ");
		if (quoted)
			str(o, v[i]);
		else
			mfd_sb_puts(o, v[i]);
	}
}

/* Appends a list of Python string literals. */
static void
str_list(StrBuf *o, const char *const *v, size_t n)
{
	mfd_sb_puts(o, "[");
	join(o, v, n, 1);
	mfd_sb_puts(o, "]");
}

/* The FLOW literal */

/* Appends `"key": ` for the dict member key, after a ", " unless it is the first. */
static void
key(StrBuf *o, const char *k, int first)
{
	if (!first)
		mfd_sb_puts(o, ", ");
	str(o, k);
	mfd_sb_puts(o, ": ");
}

static void
key_str(StrBuf *o, const char *k, const char *v, int first)
{
	key(o, k, first);
	str(o, v);
}

/* A member whose value may be None. */
static void
key_opt_str(StrBuf *o, const char *k, const char *v, int first)
{
	key(o, k, first);
	if (v)
		str(o, v);
	else
		mfd_sb_puts(o, "None");
}

static void
key_int(StrBuf *o, const char *k, int v, int first)
{
	key(o, k, first);
	mfd_sb_printf(o, "%d", v);
}

static void
key_bool(StrBuf *o, const char *k, int v, int first)
{
	key(o, k, first);
	mfd_sb_puts(o, v ? "True" : "False");
}

static void
key_strs(StrBuf *o, const char *k, const char *const *v, size_t n, int first)
{
	key(o, k, first);
	str_list(o, v, n);
}

/* Appends a dict of string pairs in the IR's order. */
static void
pairs(StrBuf *o, const StrPair *v, size_t n)
{
	size_t i;

	mfd_sb_puts(o, "{");
	for (i = 0; i < n; i++)
		key_str(o, v[i].key, v[i].value, i == 0);
	mfd_sb_puts(o, "}");
}

static void
emit_params(StrBuf *o, const Flow *f)
{
	const Param *p;
	size_t i;

	if (f->nparams == 0) {
		mfd_sb_puts(o, "\"parameters\": [],\n");
		return;
	}
	mfd_sb_puts(o, "\"parameters\": [\n");
	mfd_sb_indent(o, 1);
	for (i = 0; i < f->nparams; i++) {
		p = &f->params[i];
		mfd_sb_puts(o, "{");
		key_str(o, "name", p->name, 1);
		key_str(o, "var", p->var, 0);
		key_str(o, "type", mfd_param_type_name(p->type), 0);
		key(o, "default", 0);
		mfd_sb_pyvalue(o, p->dflt);
		key_bool(o, "required", p->required, 0);
		key_str(o, "help", p->help, 0);
		mfd_sb_puts(o, "},\n");
	}
	mfd_sb_indent(o, -1);
	mfd_sb_puts(o, "],\n");
}

/*
 * FLOW["config_schema"]: the start op's launchpad, one field per Parameter by name: the Dagster config type
 * and the keywords of its dagster.Field (default_value, or is_required without a default; description).
 */
static void
emit_config_schema(StrBuf *o, const Plan *p)
{
	const PlanParam *pp;
	size_t i;

	if (p->nparams == 0) {
		mfd_sb_puts(o, "\"config_schema\": {},\n");
		return;
	}
	mfd_sb_puts(o, "\"config_schema\": {\n");
	mfd_sb_indent(o, 1);
	for (i = 0; i < p->nparams; i++) {
		pp = &p->params[i];
		str(o, pp->param->name);
		mfd_sb_puts(o, ": {");
		key_str(o, "type", pp->type, 1);
		if (pp->dflt) {
			key(o, "default_value", 0);
			mfd_sb_pyvalue(o, pp->dflt);
		} else {
			key_bool(o, "is_required", pp->required, 0);
		}
		if (pp->description)
			key_str(o, "description", pp->description, 0);
		mfd_sb_puts(o, "},\n");
	}
	mfd_sb_indent(o, -1);
	mfd_sb_puts(o, "},\n");
}

static void
emit_configs(StrBuf *o, const Flow *f)
{
	size_t i;

	if (f->nconfigs == 0) {
		mfd_sb_puts(o, "\"configs\": [],\n");
		return;
	}
	mfd_sb_puts(o, "\"configs\": [\n");
	mfd_sb_indent(o, 1);
	for (i = 0; i < f->nconfigs; i++) {
		mfd_sb_puts(o, "{");
		key_str(o, "name", f->configs[i].name, 1);
		key_str(o, "value", f->configs[i].value, 0);
		mfd_sb_puts(o, "},\n");
	}
	mfd_sb_indent(o, -1);
	mfd_sb_puts(o, "],\n");
}

static void
emit_settings(StrBuf *o, const Settings *s)
{
	mfd_sb_puts(o, "\"settings\": {");
	key_str(o, "datastore", s->datastore, 1);
	key_str(o, "datastore_root", s->datastore_root, 0);
	key_str(o, "metadata", s->metadata, 0);
	key_str(o, "environment", s->environment, 0);
	key_str(o, "event_logger", s->event_logger, 0);
	key_str(o, "monitor", s->monitor, 0);
	key_str(o, "python", s->python, 0);
	key_str(o, "username", s->username, 0);
	key_strs(o, "env_allowlist", s->env_allowlist, s->nenv_allowlist, 0);
	mfd_sb_puts(o, "},\n");
}

static void
emit_options(StrBuf *o, const Options *p)
{
	mfd_sb_puts(o, "\"options\": {");
	key_strs(o, "tags", p->tags, p->ntags, 1);
	key_opt_str(o, "namespace", p->namespace, 0);
	key_int(o, "max_workers", p->max_workers, 0);
	key_int(o, "workflow_timeout", p->workflow_timeout, 0);
	key_strs(o, "with", p->with, p->nwith, 0);
	key_opt_str(o, "branch", p->branch, 0);
	key_bool(o, "production", p->production, 0);
	key_bool(o, "emit_step_events", p->emit_step_events, 0);
	key_int(o, "max_num_splits", p->max_num_splits, 0);
	mfd_sb_puts(o, "},\n");
}

/* FLOW["project"]: @project as Metaflow's `current` has it, for the payload of the events runs emit. */
static void
emit_project(StrBuf *o, const Project *p)
{
	mfd_sb_puts(o, "\"project\": ");
	if (!p) {
		mfd_sb_puts(o, "None,\n");
		return;
	}
	mfd_sb_puts(o, "{");
	key_str(o, "name", p->name, 1);
	key_str(o, "branch", p->branch, 0);
	key_str(o, "flow_name", p->flow_name, 0);
	key_bool(o, "production", p->production, 0);
	mfd_sb_puts(o, "},\n");
}

/*
 * FLOW["finish_triggers"]: @trigger_on_finish in the form of FLOW["triggers"], one event per upstream flow
 * with the payload fields it must carry (Argo's filters) and type "run", so current.trigger.run works.
 */
static void
emit_finish(StrBuf *o, const Finish *t, const PlanSensor *sn)
{
	const Upstream *u;
	size_t i;

	mfd_sb_puts(o, "\"finish_triggers\": ");
	if (!t) {
		mfd_sb_puts(o, "None,\n");
		return;
	}
	mfd_sb_puts(o, "{\"events\": [\n");
	mfd_sb_indent(o, 1);
	for (i = 0; i < t->nflows; i++) {
		u = &t->flows[i];
		mfd_sb_puts(o, "{");
		key_str(o, "name", u->event, 1);
		key_str(o, "flow", u->flow, 0);
		key_str(o, "type", "run", 0);
		key(o, "filters", 0);
		mfd_sb_puts(o, "{");
		key_str(o, "auto-generated-by-metaflow", "True", 1);
		if (u->project) {
			key_str(o, "project_name", u->project, 0);
			key_str(o, "branch_name", u->branch, 0);
		}
		mfd_sb_puts(o, "}},\n");
	}
	mfd_sb_indent(o, -1);
	mfd_sb_puts(o, "], \"options\": ");
	mfd_sb_pyvalue(o, sn->options);
	mfd_sb_puts(o, "},\n");
}

/* FLOW["triggers"]: @trigger's events as the IR gives them, and its options as lowering set them. */
static void
emit_triggers(StrBuf *o, const Triggers *t, const PlanSensor *sn)
{
	mfd_sb_puts(o, "\"triggers\": ");
	if (!t) {
		mfd_sb_puts(o, "None,\n");
		return;
	}
	mfd_sb_puts(o, "{\"events\": ");
	mfd_sb_pyvalue(o, mfd_object_get(t->value, "events"));
	mfd_sb_puts(o, ", \"options\": ");
	mfd_sb_pyvalue(o, sn->options);
	mfd_sb_puts(o, "},\n");
}

/* Appends the line `"key": {"name": ..., "description": ...},` of the sensor sn. */
static void
emit_sensor(StrBuf *o, const char *k, const PlanSensor *sn)
{
	key(o, k, 1);
	mfd_sb_puts(o, "{");
	key_str(o, "name", sn->name, 1);
	key_str(o, "description", sn->description, 0);
	mfd_sb_puts(o, "},\n");
}

/* FLOW["sensors"]: the name and description of each sensor, by the FLOW key of the events it waits for. */
static void
emit_sensors_literal(StrBuf *o, const Plan *p)
{
	if (!p->trigger && !p->finish) {
		mfd_sb_puts(o, "\"sensors\": {},\n");
		return;
	}
	mfd_sb_puts(o, "\"sensors\": {\n");
	mfd_sb_indent(o, 1);
	if (p->trigger)
		emit_sensor(o, "triggers", p->trigger);
	if (p->finish)
		emit_sensor(o, "finish_triggers", p->finish);
	mfd_sb_indent(o, -1);
	mfd_sb_puts(o, "},\n");
}

/* FLOW["steps"]: what the runtime needs of each step, in topological order, with the events its tasks publish. */
static void
emit_steps(StrBuf *o, const Plan *p)
{
	const PlanOp *op;
	const Step *s;
	size_t i, k;

	mfd_sb_puts(o, "\"steps\": {\n");
	mfd_sb_indent(o, 1);
	for (i = 0; i < p->nops; i++) {
		op = &p->ops[i];
		s = op->step;
		str(o, s->name);
		mfd_sb_puts(o, ": {");
		key_str(o, "type", mfd_step_kind_name(s->kind), 1);
		key(o, "in", 0);
		mfd_sb_puts(o, "[");
		for (k = 0; k < op->nparents; k++) {
			if (k)
				mfd_sb_puts(o, ", ");
			str(o, op->parents[k]->step->name);
		}
		mfd_sb_puts(o, "]");
		key_bool(o, "foreach_join", op->foreach_join, 0);
		key_int(o, "user_retries", s->user_retries, 0);
		key_int(o, "timeout", s->timeout_seconds, 0);
		key(o, "env", 0);
		pairs(o, s->env, s->nenv);
		key_strs(o, "emits", op->emits, op->nemits, 0);
		mfd_sb_puts(o, "},\n");
	}
	mfd_sb_indent(o, -1);
	mfd_sb_puts(o, "},\n");
}

/* The FLOW literal. In a file of several flows it also names the start op, which carries the job's prefix. */
static void
emit_flow(StrBuf *o, const Flow *f, const Plan *p)
{
	mfd_sb_printf(o, "%s = {\n", p->literal);
	mfd_sb_indent(o, 1);
	key_str(o, "name", f->name, 1);
	mfd_sb_puts(o, ",\n");
	key_str(o, "file", f->file, 1);
	mfd_sb_puts(o, ",\n");
	key_str(o, "file_sha256", f->file_sha256, 1);
	mfd_sb_puts(o, ",\n");
	if (f->package) {
		mfd_sb_puts(o, "\"code_package\": {");
		key_str(o, "url", f->package->url, 1);
		key_str(o, "sha", f->package->sha, 0);
		key(o, "metadata", 0);
		mfd_sb_pyvalue(o, f->package->metadata);
		mfd_sb_puts(o, "},\n");
	}
	key_str(o, "job_name", f->job_name, 1);
	mfd_sb_puts(o, ",\n");
	key_str(o, "start_step", f->start.name, 1);
	mfd_sb_puts(o, ",\n");
	key_str(o, "end_step", f->end.name, 1);
	mfd_sb_puts(o, ",\n");
	if (*p->prefix) {
		key_str(o, "start_op", p->start_op, 1);
		mfd_sb_puts(o, ",\n");
	}
	emit_project(o, f->project);
	emit_params(o, f);
	emit_config_schema(o, p);
	emit_configs(o, f);
	emit_settings(o, &f->settings);
	emit_options(o, &f->options);
	mfd_sb_puts(o, "\"executor\": ");
	mfd_sb_pyvalue(o, p->executor);
	mfd_sb_puts(o, ",\n");
	emit_triggers(o, f->triggers, p->trigger);
	emit_finish(o, f->finish, p->finish);
	emit_sensors_literal(o, p);
	emit_steps(o, p);
	mfd_sb_indent(o, -1);
	mfd_sb_puts(o, "}\n\n");
}

/* The header, the runtime */

/* The runtime source, in three parts: the file puts its imports at the top, and the rest where it is pasted. */
typedef struct Runtime {
	const char *head;    /* what comes before the imports: the docstring and comments */
	size_t nhead;
	const char *imports; /* the top-level import statements that follow, one after another */
	size_t nimports;
	const char *tail;    /* everything after them */
	size_t ntail;
} Runtime;

/* The index just past the end of the line at i in s (its '\n' included). */
static size_t
line_end(const char *s, size_t i)
{
	const char *nl = strchr(s + i, '\n');

	return nl ? (size_t)(nl - s) + 1 : i + strlen(s + i);
}

/* Moves *i past blank lines and comment lines. */
static void
skip_blank(const char *s, size_t *i)
{
	size_t k;

	while (s[*i]) {
		k = *i + strspn(s + *i, " \t\r");
		if (s[k] != '\n' && s[k] != '#' && s[k])
			return;
		*i = line_end(s, *i);
	}
}

/* Moves *i past a docstring that starts at it ("""...""" or '''...''', maybe with an r or u prefix). */
static void
skip_docstring(const char *s, size_t *i)
{
	size_t k = *i + (strchr("rRuU", s[*i]) && s[*i] ? 1 : 0);
	const char *q, *end;

	if (strncmp(s + k, "\"\"\"", 3) != 0 && strncmp(s + k, "'''", 3) != 0)
		return;
	q = strncmp(s + k, "\"\"\"", 3) == 0 ? "\"\"\"" : "'''";
	for (end = s + k + 3; (end = strstr(end, q)) && end[-1] == '\\'; end++)
		;
	if (end)
		*i = line_end(s, (size_t)(end - s) + 3);
}

/*
 * Moves *i past the import statement that starts at it: its line, and the lines after it while a parenthesis
 * is open or a line ends with a backslash. Returns 0, moving nothing, when no import statement starts at *i.
 */
static int
skip_import(const char *s, size_t *i)
{
	size_t k = *i, e;
	int depth = 0, more;

	if (strncmp(s + k, "import ", 7) != 0 && strncmp(s + k, "from ", 5) != 0)
		return 0;
	do {
		e = line_end(s, k);
		more = 0;
		for (; k < e && s[k] != '#'; k++) {
			depth += (s[k] == '(') - (s[k] == ')');
			more = s[k] == '\\' ? 1 : (s[k] == ' ' || s[k] == '\t' || s[k] == '\r' || s[k] == '\n') ? more : 0;
		}
		k = e;
	} while ((depth > 0 || more) && s[k]);
	*i = k;
	return 1;
}

/*
 * Splits the runtime source: the import statements at its top level that follow its docstring, comments and
 * blank lines, up to the first other statement, go to the top of the file (STYLE: banner, imports, then the
 * rest), and the rest is pasted where the runtime goes. A runtime that does not start that way is pasted
 * whole. The generated file then reads as the runtime does: every name it imports is imported before use.
 */
static Runtime
split_runtime(const char *rt)
{
	Runtime r = {rt, 0, rt, 0, rt, strlen(rt)};
	size_t i = 0, from, to;

	skip_blank(rt, &i);
	skip_docstring(rt, &i);
	skip_blank(rt, &i);
	from = to = i;
	while (skip_import(rt, &i)) {
		to = i;
		skip_blank(rt, &i);
	}
	if (to == from)
		return r;
	r.nhead = from;
	r.imports = rt + from;
	r.nimports = to - from;
	r.tail = rt + to;
	r.ntail = strlen(rt + to);
	return r;
}

/* Appends "N steps become N ops", and the barrier ops when there are any. */
static void
emit_op_count(StrBuf *o, const Plan *p)
{
	mfd_sb_printf(o, "%zu steps become %zu ops", p->nops, p->nops);
	if (p->nbarriers)
		mfd_sb_printf(o, ", plus %zu barrier ops for nested foreach levels", p->nbarriers);
}

/* Appends the n bytes at s without the newlines (and blank lines) at either end. */
static void
put_trimmed(StrBuf *o, const char *s, size_t n)
{
	while (n > 0 && (*s == '\n' || *s == '\r')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	mfd_sb_putn(o, s, n);
}

/* Appends the imports: the runtime's, then the file's own, the schedule's only with a schedule: has_cron. */
static void
emit_imports(StrBuf *o, const Runtime *rt, int has_cron)
{
	if (rt->nimports) {
		put_trimmed(o, rt->imports, rt->nimports);
		mfd_sb_puts(o, "\n");
	}
	mfd_sb_puts(o, "from dagster import Definitions, DynamicOut, Out, RetryPolicy, job, op\n");
	if (has_cron)
		mfd_sb_puts(o, "from dagster import DefaultScheduleStatus, ScheduleDefinition\n");
	mfd_sb_puts(o, "\n");
}

static void
emit_banner(StrBuf *o, const Flow *f, const Plan *p, const Runtime *rt)
{
	mfd_sb_printf(o, "# Dagster definitions for the Metaflow flow %s, job %s.\n", f->name, f->job_name);
	mfd_sb_printf(o, "# Generated by metaflow-dagster %s from IR version %d. Do not edit; regenerate with:\n",
		MFD_VERSION, MFD_IR_VERSION);
	mfd_sb_printf(o, "#   python %s dagster create <this file>\n# ", f->file);
	emit_op_count(o, p);
	mfd_sb_puts(o, ".\n\n");
	emit_imports(o, rt, f->cron != NULL);
}

/* The banner of a file of several flows: each flow with its job, and the create command that writes it. */
static void
emit_banner_many(StrBuf *o, const Compile *units, size_t n, const Runtime *rt)
{
	int has_cron = 0;
	size_t i;

	mfd_sb_printf(o, "# Dagster definitions for %zu Metaflow flows in one code location:\n", n);
	for (i = 0; i < n; i++) {
		mfd_sb_printf(o, "#   %s, job %s: ", units[i].flow->name, units[i].flow->job_name);
		emit_op_count(o, units[i].plan);
		mfd_sb_puts(o, ".\n");
		has_cron |= units[i].flow->cron != NULL;
	}
	mfd_sb_printf(o, "# Generated by metaflow-dagster %s from IR version %d. Do not edit; regenerate with:\n",
		MFD_VERSION, MFD_IR_VERSION);
	mfd_sb_printf(o, "#   python %s dagster create <this file>", units[0].flow->file);
	for (i = 1; i < n; i++)
		mfd_sb_printf(o, " \\\n#       --add-flow %s", units[i].flow->file);
	mfd_sb_puts(o, "\n\n");
	emit_imports(o, rt, has_cron);
}

/*
 * Pastes the runtime source between two marker comments, without its imports (at the top of the file) and
 * without blank lines at either end: its head, a blank line, and its tail.
 */
static void
emit_runtime(StrBuf *o, const Runtime *rt)
{
	mfd_sb_puts(o, "# ---- embedded runtime: metaflow_dagster/runtime/, amalgamated ----\n");
	put_trimmed(o, rt->head, rt->nhead);
	if (rt->nhead && strspn(rt->head, "\r\n") < rt->nhead && rt->ntail)
		mfd_sb_puts(o, "\n\n");
	put_trimmed(o, rt->tail, rt->ntail);
	mfd_sb_puts(o, "\n# ---- end of embedded runtime ----\n\n");
}

/* Appends the runtime object of the flow, which its ops, job and sensors call. */
static void
emit_runtime_object(StrBuf *o, const Plan *p)
{
	mfd_sb_printf(o, "%s = FlowRuntime(%s)\n\n", p->rt, p->literal);
}

/* Ops */

/* Appends the @op keyword arguments that only some ops have: config, retries and outputs. */
static void
emit_op_options(StrBuf *o, const Compile *c, const PlanOp *op)
{
	const Step *s = op->step;
	size_t k;

	if (s == c->flow->start.step)
		mfd_sb_printf(o, "config_schema=%s.param_schema(),\n", c->plan->rt);
	if (op->max_retries) {
		mfd_sb_printf(o, "retry_policy=RetryPolicy(max_retries=%lld", op->max_retries);
		if (op->retry_delay)
			mfd_sb_printf(o, ", delay=%lld", op->retry_delay);
		mfd_sb_puts(o, "),\n");
	}
	if (op->form == OP_FAN_OUT)
		mfd_sb_puts(o, "out=DynamicOut(),\n");
	if (op->form == OP_SWITCH) {
		mfd_sb_puts(o, "out={");
		for (k = 0; k < op->ntargets; k++) {
			if (k)
				mfd_sb_puts(o, ", ");
			str(o, op->targets[k]);
			mfd_sb_printf(o, ": Out(is_required=%s)", op->optional ? "False" : "True");
		}
		mfd_sb_puts(o, "},\n");
	}
}

/* Appends one op: a comment naming its step, the @op decorator and the function that runs the step. */
static void
emit_op(StrBuf *o, const Compile *c, const PlanOp *op)
{
	const Step *s = op->step;
	size_t k;

	mfd_sb_printf(o, "# step '%s' (%s): %s", s->name, op->where, mfd_step_kind_name(s->kind));
	if (s->depth)
		mfd_sb_printf(o, ", level %d", s->depth);
	mfd_sb_puts(o, "\n@op(\n");
	mfd_sb_indent(o, 1);
	mfd_sb_puts(o, "name=");
	str(o, op->name);
	mfd_sb_puts(o, ",\ndescription=");
	str(o, mfd_printf(c->arena, "Metaflow step '%s' (%s)", s->name, op->where));
	mfd_sb_puts(o, ",\ntags={");
	key_str(o, "metaflow/step", s->name, 1);
	for (k = 0; k < s->nresources; k++)
		key_str(o, mfd_printf(c->arena, "metaflow/resources/%s", s->resources[k].key), s->resources[k].value, 0);
	if (op->queue)
		key_str(o, "dagster-celery/queue", op->queue, 0);
	if (op->k8s) {
		key(o, "dagster-k8s/config", 0);
		mfd_sb_pyvalue(o, op->k8s);
	}
	mfd_sb_puts(o, "},\n");
	emit_op_options(o, c, op);
	mfd_sb_indent(o, -1);
	mfd_sb_printf(o, ")\ndef %s(context", op->fn);
	for (k = 0; k < op->ninputs; k++)
		mfd_sb_printf(o, ", %s", op->inputs[k]);
	mfd_sb_puts(o, "):\n");
	mfd_sb_indent(o, 1);
	mfd_sb_printf(o, "%s %s.%s(context, ", mfd_op_hand_on(op->form), c->plan->rt, mfd_op_method(op->form));
	str(o, s->name);
	mfd_sb_puts(o, ", [");
	join(o, op->inputs, op->ninputs, 0);
	mfd_sb_puts(o, "]");
	if (op->form == OP_SWITCH) {
		mfd_sb_puts(o, ", ");
		str_list(o, op->targets, op->ntargets);
		mfd_sb_printf(o, ", optional=%s", op->optional ? "True" : "False");
	}
	mfd_sb_puts(o, ")\n");
	mfd_sb_indent(o, -1);
	mfd_sb_puts(o, "\n\n");
}

/* Appends the barrier op of segment sg, which is not native: a fanout for expand, a gather for regroup. */
static void
emit_barrier(StrBuf *o, const Plan *p, const Segment *sg)
{
	const char *src = sg->src->step->name;

	if (sg->kind == SEG_EXPAND) {
		mfd_sb_printf(o, "# barrier: fan out the splits of foreach '%s' at level %d\n", src, sg->level);
		mfd_sb_printf(o, "@op(name=\"%s\", out=DynamicOut())\n", sg->barrier);
		mfd_sb_printf(o, "def %s(context, %s):\n", sg->barrier, sg->inputs[0]);
		mfd_sb_indent(o, 1);
		mfd_sb_printf(o, "yield from %s.expand(context, ", p->rt);
		str(o, src);
		mfd_sb_printf(o, ", %s)\n", sg->inputs[0]);
	} else {
		mfd_sb_printf(o, "# barrier: regroup the tasks that step '%s' takes, by foreach item at level %d\n",
			sg->head->step->name, sg->level);
		mfd_sb_printf(o, "@op(name=\"%s\", out=DynamicOut())\n", sg->barrier);
		mfd_sb_printf(o, "def %s(context, ", sg->barrier);
		join(o, sg->inputs, sg->ninputs, 0);
		mfd_sb_puts(o, "):\n");
		mfd_sb_indent(o, 1);
		mfd_sb_printf(o, "yield from %s.regroup(context, %d, [", p->rt, sg->level);
		join(o, sg->inputs, sg->ninputs, 0);
		mfd_sb_puts(o, "])\n");
	}
	mfd_sb_indent(o, -1);
	mfd_sb_puts(o, "\n\n");
}

/* The job */

/* Appends `outputs = op_<step>(args)`, the op's call in the job body. */
static void
emit_call(StrBuf *o, const PlanOp *op)
{
	join(o, op->outputs, op->noutputs, 0);
	mfd_sb_printf(o, " = %s(", op->fn);
	join(o, op->args, op->nargs, 0);
	mfd_sb_puts(o, ")\n");
}

/* Appends the segment's outs as a Python tuple: "a, b", "a," or nothing. */
static void
emit_outs(StrBuf *o, const Segment *sg)
{
	join(o, sg->outs, sg->nouts, 0);
	if (sg->nouts == 1)
		mfd_sb_puts(o, ",");
}

/*
 * Appends segment sg as a nested function of the job body that calls its ops and returns its outs, then the
 * line that maps it over its source.
 */
static void
emit_segment(StrBuf *o, const Segment *sg)
{
	size_t k;

	mfd_sb_printf(o, "\ndef segment_%d(%s):  # level %d\n", sg->id, sg->param, sg->level);
	mfd_sb_indent(o, 1);
	for (k = 0; k < sg->nmembers; k++)
		emit_call(o, sg->members[k]);
	mfd_sb_puts(o, "return ");
	emit_outs(o, sg);
	mfd_sb_indent(o, -1);
	mfd_sb_puts(o, "\n\n");
	emit_outs(o, sg);
	mfd_sb_printf(o, " = %s.map(segment_%d)\n", sg->source, sg->id);
}

/* Appends "\n\n" and the schedule of a flow with @schedule, up to its closing parenthesis. */
static void
emit_schedule(StrBuf *o, const Flow *f, const Plan *p)
{
	mfd_sb_puts(o, "\n\n# @schedule: Metaflow's cron ");
	str(o, f->cron);
	mfd_sb_printf(o, ", running as soon as it is deployed\n%s = ScheduleDefinition(\n    name=", p->schedule);
	str(o, p->schedule_name);
	mfd_sb_printf(o, ",\n    job=%s,\n    cron_schedule=", p->job);
	str(o, p->cron);
	mfd_sb_puts(o, ",\n    execution_timezone=");
	str(o, p->timezone);
	mfd_sb_puts(o, ",\n    default_status=DefaultScheduleStatus.RUNNING,\n)");
}

/* Appends the comments that say which events start the job, one line each. */
static void
emit_event_comments(StrBuf *o, const Flow *f)
{
	size_t i;

	if (f->triggers) {
		mfd_sb_puts(o, "# @trigger: a run of the job for each event");
		if (f->triggers->nevents > 1)
			mfd_sb_puts(o, " set (all of them must arrive)");
		mfd_sb_puts(o, ":");
		for (i = 0; i < f->triggers->nevents; i++)
			mfd_sb_printf(o, " %s", f->triggers->events[i].name);
		mfd_sb_puts(o, "\n");
	}
	if (f->finish) {
		mfd_sb_printf(o, "# @trigger_on_finish: a run of the job per successful run of%s",
			f->finish->nflows > 1 ? " all of (a set, one run of each):" : "");
		for (i = 0; i < f->finish->nflows; i++)
			mfd_sb_printf(o, " %s", f->finish->flows[i].flow);
		mfd_sb_puts(o, "\n#   events:");
		for (i = 0; i < f->finish->nflows; i++)
			mfd_sb_printf(o, " %s", f->finish->flows[i].event);
		mfd_sb_puts(o, "\n");
	}
}

/* Appends the sensors of a flow with events, separated by sep: @trigger's, then @trigger_on_finish's. */
static void
emit_sensors(StrBuf *o, const Flow *f, const Plan *p, const char *sep)
{
	if (f->triggers)
		mfd_sb_printf(o, "%s.event_sensor(%s)%s", p->rt, p->job, f->finish ? sep : "");
	if (f->finish)
		mfd_sb_printf(o, "%s.finish_sensor(%s)", p->rt, p->job);
}

/*
 * Appends `defs` of a file of one flow: the job; with @schedule its schedule; with @trigger the sensor that
 * starts it on events, with @trigger_on_finish the sensor that starts it when upstream flows finish, and then
 * an asset per event so the UI shows event -> job. With both decorators either sensor starts a run
 * (docs/events.md).
 */
static void
emit_definitions(StrBuf *o, const Flow *f, const Plan *p)
{
	if (!f->triggers && !f->finish && !f->cron) {
		mfd_sb_printf(o, "\n\ndefs = Definitions(jobs=[%s])\n", p->job);
		return;
	}
	if (f->cron)
		emit_schedule(o, f, p);
	mfd_sb_puts(o, "\n\n");
	emit_event_comments(o, f);
	mfd_sb_printf(o, "defs = Definitions(\n    jobs=[%s],\n", p->job);
	if (f->cron)
		mfd_sb_printf(o, "    schedules=[%s],\n", p->schedule);
	if (f->triggers || f->finish) {
		mfd_sb_puts(o, "    sensors=[");
		emit_sensors(o, f, p, ", ");
		mfd_sb_printf(o, "],\n    assets=%s.event_assets(),\n", p->rt);
	}
	mfd_sb_puts(o, ")\n");
}

/*
 * Appends `defs` of a file of several flows: every job, schedule and sensor, one per line, and the event
 * assets of all the flows that listen to events, each event declared once (the runtime's event_assets).
 */
static void
emit_definitions_many(StrBuf *o, const Compile *units, size_t n)
{
	const Flow *f;
	int schedules = 0, sensors = 0, first = 1;
	size_t i;

	mfd_sb_puts(o, "defs = Definitions(\n    jobs=[\n");
	for (i = 0; i < n; i++) {
		mfd_sb_printf(o, "        %s,\n", units[i].plan->job);
		schedules |= units[i].flow->cron != NULL;
		sensors |= units[i].flow->triggers || units[i].flow->finish;
	}
	mfd_sb_puts(o, "    ],\n");
	if (schedules) {
		mfd_sb_puts(o, "    schedules=[\n");
		for (i = 0; i < n; i++)
			if (units[i].flow->cron)
				mfd_sb_printf(o, "        %s,\n", units[i].plan->schedule);
		mfd_sb_puts(o, "    ],\n");
	}
	if (sensors) {
		mfd_sb_puts(o, "    sensors=[\n");
		for (i = 0; i < n; i++) {
			f = units[i].flow;
			if (f->triggers || f->finish) {
				mfd_sb_puts(o, "        ");
				emit_sensors(o, f, units[i].plan, ",\n        ");
				mfd_sb_puts(o, ",\n");
			}
		}
		mfd_sb_puts(o, "    ],\n    assets=event_assets(");
		for (i = 0; i < n; i++) {
			f = units[i].flow;
			if (f->triggers || f->finish) {
				mfd_sb_printf(o, "%s%s", first ? "" : ", ", units[i].plan->rt);
				first = 0;
			}
		}
		mfd_sb_puts(o, "),\n");
	}
	mfd_sb_puts(o, ")\n");
}

/* Appends the @job: ops outside any segment are called in place, a segment where its head comes. */
static void
emit_job(StrBuf *o, const Flow *f, const Plan *p)
{
	const PlanOp *op;
	size_t i;

	mfd_sb_puts(o, "@job(name=");
	str(o, f->job_name);
	mfd_sb_puts(o, ", description=");
	str(o, mfd_printf(o->arena, "Metaflow flow %s", f->name));
	mfd_sb_printf(o, ", tags=%s.job_tags(), executor_def=%s.executor()", p->rt, p->rt);
	if (p->io_manager) /* the ops share no disk: their outputs go through the Metaflow datastore */
		mfd_sb_printf(o, ", resource_defs=%s.resources()", p->rt);
	mfd_sb_printf(o, ")\ndef %s():\n", p->job);
	mfd_sb_indent(o, 1);
	for (i = 0; i < p->nops; i++) {
		op = &p->ops[i];
		if (op->seg < 0)
			emit_call(o, op);
		else if (op->head)
			emit_segment(o, &p->segs[op->seg]);
	}
	mfd_sb_indent(o, -1);
}

/* Appends the ops of flow c, its barrier ops and its job. */
static void
emit_ops_and_job(StrBuf *o, const Compile *c)
{
	const Plan *p = c->plan;
	size_t i;

	for (i = 0; i < p->nops; i++)
		emit_op(o, c, &p->ops[i]);
	for (i = 0; i < p->nsegs; i++)
		if (p->segs[i].kind != SEG_NATIVE)
			emit_barrier(o, p, &p->segs[i]);
	emit_job(o, c->flow, p);
}

/*
 * Appends the section of flow c in a file of several flows: a header, its literal and runtime object, its ops
 * and job, its schedule and the comments naming the events that start it. Its sensors go into the one `defs`.
 */
static void
emit_section(StrBuf *o, const Compile *c)
{
	const Flow *f = c->flow;

	mfd_sb_printf(o, "# ==== flow %s, job %s, from %s ====\n\n", f->name, f->job_name, f->file);
	emit_flow(o, f, c->plan);
	emit_runtime_object(o, c->plan);
	emit_ops_and_job(o, c);
	if (f->cron) {
		emit_schedule(o, f, c->plan);
		mfd_sb_puts(o, "\n");
	}
	if (f->triggers || f->finish) {
		mfd_sb_puts(o, "\n\n");
		emit_event_comments(o, f);
	}
	mfd_sb_puts(o, "\n\n");
}

/*
 * Prints the n lowered flows of units (n >= 1) into o, with runtime pasted once: the layout of one flow for
 * n == 1, else one section per flow and one `defs`. Emitting reports nothing: a failed append shows in o's
 * sticky error flag, which the driver looks at.
 */
void
mfd_emit(StrBuf *o, const Compile *units, size_t n, const char *runtime)
{
	const Compile *c = &units[0];
	Runtime rt = split_runtime(runtime);
	size_t i;

	if (n == 1) {
		emit_banner(o, c->flow, c->plan, &rt);
		emit_flow(o, c->flow, c->plan);
		emit_runtime(o, &rt);
		emit_runtime_object(o, c->plan);
		emit_ops_and_job(o, c);
		emit_definitions(o, c->flow, c->plan);
		return;
	}
	emit_banner_many(o, units, n, &rt);
	emit_runtime(o, &rt);
	for (i = 0; i < n; i++)
		emit_section(o, &units[i]);
	emit_definitions_many(o, units, n);
}
