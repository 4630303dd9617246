/*
 * lower.c: from the checked Flow to the Plan that emit.c prints (docs/codegen.md, "Levels and segments").
 *
 * The plan holds one PlanOp per step in topological order (Kahn's algorithm, self-loops ignored, ties taken in
 * the IR's order) and the segments: runs of ops mapped over one dynamic output, each a nested function in the
 * job body. Every name and expression the job body needs (op inputs, call arguments, switch handles, what each
 * segment maps over and returns) is decided here as final Python text, and so is everything the FLOW literal
 * tells the runtime beyond the IR (the events each task publishes, the sensors' names and options, the start
 * op's config schema) and every other value the file states (retry policies, the schedule's name and cron),
 * so emit.c only lays text out and the runtime only reads.
 *
 * Lowering runs only on a flow check.c accepted, and reports what the generated file could not express: a
 * step the order would place before one of its parents, a step inside a foreach that nothing reaches, text
 * that would break out of a comment, a job name that is not an identifier, and any generated name used for
 * two things (Dagster op names, module-level functions, job variables, an op function's parameters, schedule
 * and sensor names). When it reports no error, Compile.plan is complete and every generated name means one
 * thing.
 *
 * In a file of several flows (Compile.shared) every op name and every module-level name of a flow carries its
 * job name (Plan.prefix, FLOW_<job>, mf_<job>), because Dagster wants op names unique in a code location;
 * mfd_lower_many then checks the op names, module-level names, schedule and sensor names of all the flows
 * together.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const struct {
	const char *method;
	const char *hand_on;
} forms[] = {
#define X(form, method, hand_on) {method, hand_on},
	OP_FORMS(X)
#undef X
};

const char *
mfd_op_method(OpForm f)
{
	return forms[f].method;
}

const char *
mfd_op_hand_on(OpForm f)
{
	return forms[f].hand_on;
}

/* Topological order */

/* A binary min-heap of step indices: the ready steps of Kahn's algorithm, so the first in the IR comes out first. */
typedef struct Heap {
	int *v;   /* room for every step: each is pushed at most once */
	size_t n;
} Heap;

static void
heap_push(Heap *h, int x)
{
	size_t i = h->n++, up;

	while (i > 0 && h->v[up = (i - 1) / 2] > x) {
		h->v[i] = h->v[up];
		i = up;
	}
	h->v[i] = x;
}

static int
heap_pop(Heap *h)
{
	int top = h->v[0], x = h->v[--h->n];
	size_t i = 0, kid;

	while ((kid = 2 * i + 1) < h->n) {
		if (kid + 1 < h->n && h->v[kid + 1] < h->v[kid])
			kid++;
		if (x <= h->v[kid])
			break;
		h->v[i] = h->v[kid];
		i = kid;
	}
	h->v[i] = x;
	return top;
}

/* Returns 1 when s->next[k] names a step that an earlier entry of s->next names too (several switch cases). */
static int
repeats(const Step *s, size_t k)
{
	size_t j;

	for (j = 0; j < k; j++)
		if (s->next[j].step == s->next[k].step)
			return 1;
	return 0;
}

/*
 * Fills order with the steps in topological order: a step is ready once every parent other than itself has
 * been placed (each distinct next edge counts once, however many switch cases take it), and the ready step
 * first in the IR goes first. Returns the number of steps placed, which check.c's invariants (in_funcs without
 * repeats, each in_funcs entry in its step's next, no cycle but self-loops) make every step.
 */
static size_t
topo_order(Compile *c, Step **order)
{
	Flow *f = c->flow;
	long *pending = mfd_alloc(c->arena, f->nsteps * sizeof *pending);
	Heap ready = {mfd_alloc(c->arena, f->nsteps * sizeof *ready.v), 0};
	Step *s, *t;
	size_t i, k, n = 0;

	for (i = 0; i < f->nsteps; i++) {
		s = &f->steps[i];
		for (k = 0; k < s->nin; k++)
			pending[i] += s->in[k].step != s;
		if (pending[i] == 0)
			heap_push(&ready, (int)i);
	}
	while (ready.n > 0) {
		s = order[n++] = &f->steps[heap_pop(&ready)];
		for (k = 0; k < s->nnext; k++) {
			t = s->next[k].step;
			if (t != s && !repeats(s, k) && --pending[t->index] == 0)
				heap_push(&ready, t->index);
		}
	}
	return n;
}

/* Ops */

/* The base name of path, as the op comments and descriptions show it. */
static const char *
base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/*
 * Sets the events a successful task of op's step publishes, as Argo Workflows' auto-emit names them: the end
 * step always publishes its own (mfd_event_name), plus the ".end" alias that @trigger_on_finish waits for when
 * the end step has another name; the other steps publish theirs with `create --emit-step-events` only.
 */
static void
set_emits(Compile *c, PlanOp *op)
{
	const Flow *f = c->flow;
	const char *flow = f->project ? f->project->flow_name : f->name;
	const Step *s = op->step;
	int end = s == f->end.step;

	op->emits = mfd_alloc(c->arena, 2 * sizeof *op->emits);
	if (end || f->options.emit_step_events)
		op->emits[op->nemits++] = mfd_event_name(c->arena, flow, s->name);
	if (end && strcmp(s->name, "end") != 0)
		op->emits[op->nemits++] = mfd_event_name(c->arena, flow, "end");
}

/*
 * Sets what op's comment and description say of its step (file:line), and its RetryPolicy: Dagster retries
 * an op as often as the step's decorators allow attempts beyond the first (@retry's user retries and @catch's
 * error retries, each the maximum over the decorators), minutes_between apart.
 */
static void
set_step_facts(Compile *c, PlanOp *op)
{
	const Step *s = op->step;

	op->where = mfd_printf(c->arena, "%s:%d", base_name(s->file), s->line);
	op->max_retries = (long long)s->user_retries + s->error_retries;
	op->retry_delay = op->max_retries ? (long long)s->minutes_between * 60 : 0;
	set_emits(c, op);
}

/* The per-flow names of the file: the job function, and in a shared file the names that carry the job's. */
static void
set_flow_names(Compile *c, Plan *p)
{
	const char *job = c->flow->job_name;

	p->job = mfd_name(c->arena, NAME_JOB, job);
	if (!c->shared) {
		p->prefix = "";
		p->literal = "FLOW";
		p->rt = "mf";
		p->schedule = "schedule";
		return;
	}
	p->prefix = mfd_printf(c->arena, "%s__", p->job);
	p->literal = mfd_name(c->arena, NAME_FLOW, job);
	p->rt = mfd_name(c->arena, NAME_RUNTIME, job);
	p->schedule = mfd_name(c->arena, NAME_SCHEDULE, job);
}

/* s behind the plan's prefix: a Dagster op name, or the name of a barrier op and its function. */
static const char *
prefixed(Compile *c, const Plan *p, const char *s)
{
	return *p->prefix ? mfd_printf(c->arena, "%s%s", p->prefix, s) : s;
}

/* Builds Plan.ops in order and links each op to its parents' ops. */
static Plan *
new_plan(Compile *c, Step **order, size_t n)
{
	Plan *p = mfd_alloc(c->arena, sizeof *p);
	PlanOp *op;
	const Step *s;
	size_t i, k;

	set_flow_names(c, p);
	p->ops = mfd_alloc(c->arena, n * sizeof *p->ops);
	p->nops = n;
	p->bystep = mfd_alloc(c->arena, c->flow->nsteps * sizeof *p->bystep);
	for (i = 0; i < n; i++) {
		op = &p->ops[i];
		op->step = order[i];
		op->pos = (int)i;
		op->seg = -1;
		op->foreach_join = mfd_is_foreach_join(op->step);
		op->name = prefixed(c, p, op->step->name);
		op->fn = mfd_name(c->arena, NAME_OP, op->name);
		set_step_facts(c, op);
		p->bystep[op->step->index] = op;
	}
	for (i = 0; i < n; i++) {
		op = &p->ops[i];
		s = op->step;
		op->parents = mfd_alloc(c->arena, s->nin * sizeof *op->parents);
		for (k = 0; k < s->nin; k++)
			if (s->in[k].step != s)
				op->parents[op->nparents++] = p->bystep[s->in[k].step->index];
	}
	return p;
}

/*
 * Reports the steps the plan cannot place: a step ordered before one of its parents (topo_order rules this out
 * for a flow check.c accepted; kept as a guard, since the job would use an output before it exists), and a step
 * inside a foreach that no parent reaches, so there is no item to run it for. Returns the number of problems.
 */
static int
check_order(Compile *c, const Plan *p)
{
	const PlanOp *op, *q, *late;
	int problems = 0;
	size_t i, k;

	for (i = 0; i < p->nops; i++) {
		op = &p->ops[i];
		late = NULL;
		for (k = 0; k < op->nparents; k++) {
			q = op->parents[k];
			if (q->pos > op->pos && !late)
				late = q;
		}
		if (late) {
			mfd_error_at(c, op->step, "the step would be ordered before its parent '%s'", late->step->name);
			problems++;
		} else if (op->step->depth > 0 && op->nparents == 0 && !op->foreach_join) {
			mfd_error_at(c, op->step, "the step runs inside a foreach (level %d) but has no in_funcs", op->step->depth);
			problems++;
		}
	}
	return problems;
}

/* Segments */

static Segment *
new_segment(Plan *p, SegKind kind, PlanOp *head, PlanOp *src)
{
	Segment *sg = &p->segs[p->nsegs];

	sg->kind = kind;
	sg->id = (int)p->nsegs++;
	sg->level = head->step->depth;
	sg->head = head;
	sg->src = src;
	head->seg = sg->id;
	head->head = 1;
	p->nbarriers += kind != SEG_NATIVE;
	return sg;
}

/* Returns 1 when the parents of op are not all in one segment (counting "no segment" as one). */
static int
parents_span_segments(const PlanOp *op)
{
	size_t k;

	for (k = 1; k < op->nparents; k++)
		if (op->parents[k]->seg != op->parents[0]->seg)
			return 1;
	return 0;
}

/*
 * Puts every op at a foreach level into a segment, in one pass in topological order: an op fed by a foreach
 * opens a segment mapped over that foreach (native at level 0, expand deeper); a foreach join, or an op whose
 * parents lie in different segments, opens a regroup segment; any other op joins its first parent's segment.
 * check_order made sure such an op has a parent.
 */
static void
find_segments(Compile *c, Plan *p)
{
	PlanOp *op, *fe;
	Segment *sg;
	size_t i, k;

	p->segs = mfd_alloc(c->arena, p->nops * sizeof *p->segs);
	for (i = 0; i < p->nops; i++) {
		op = &p->ops[i];
		if (op->step->depth == 0)
			continue;
		fe = NULL;
		for (k = 0; k < op->nparents && !fe; k++)
			if (op->parents[k]->step->kind == STEP_FOREACH)
				fe = op->parents[k];
		if (fe)
			new_segment(p, fe->step->depth == 0 ? SEG_NATIVE : SEG_EXPAND, op, fe);
		else if (op->foreach_join || parents_span_segments(op))
			new_segment(p, SEG_REGROUP, op, op);
		else
			op->seg = op->parents[0]->seg;
	}
	for (i = 0; i < p->nops; i++)
		if (p->ops[i].seg >= 0)
			p->segs[p->ops[i].seg].nmembers++;
	for (k = 0; k < p->nsegs; k++) {
		sg = &p->segs[k];
		sg->members = mfd_alloc(c->arena, sg->nmembers * sizeof *sg->members);
		sg->nmembers = 0;
	}
	for (i = 0; i < p->nops; i++)
		if (p->ops[i].seg >= 0) {
			sg = &p->segs[p->ops[i].seg];
			sg->members[sg->nmembers++] = &p->ops[i];
		}
}

/* Names and expressions */

/* An op input's parameter name: Dagster reserves "context" for the op context. */
static const char *
input_name(const char *step)
{
	return strcmp(step, "context") == 0 ? "context_" : step;
}

/* The job variable holding what parent hands to child: a switch has one output per target. */
static const char *
handle(Compile *c, const PlanOp *parent, const PlanOp *child)
{
	if (parent->step->kind != STEP_SWITCH)
		return parent->step->name;
	return mfd_printf(c->arena, "%s__%s", parent->step->name, child->step->name);
}

/* The number of distinct steps s goes to. */
static size_t
distinct_next(const Step *s)
{
	size_t k, n = 0;

	for (k = 0; k < s->nnext; k++)
		n += !repeats(s, k);
	return n;
}

/*
 * Returns 1 when op is a level-0 step that several parents reach and that must run when only some of them ran:
 * it takes one fan-in list, which Dagster runs when any source arrived. That is a step where switch cases meet
 * (not a join), and a static join with more parents than its split has branches: a switch inside a branch ends
 * its cases in the join separately, and only the case taken runs. Every other join takes all of its parents.
 */
static int
takes_cases(const PlanOp *op)
{
	const Step *s = op->step, *split;

	if (s->depth != 0 || op->nparents < 2)
		return 0;
	if (s->kind != STEP_JOIN)
		return 1;
	if (op->foreach_join || s->nparents == 0)
		return 0;
	split = s->parents[s->nparents - 1].step;
	return split->kind == STEP_SPLIT && op->nparents > distinct_next(split);
}

/* Sets the distinct switch case targets of op other than op itself, in case order. */
static void
set_targets(Compile *c, PlanOp *op)
{
	const Step *s = op->step;
	size_t i, k;

	op->targets = mfd_alloc(c->arena, s->ncases * sizeof *op->targets);
	for (i = 0; i < s->ncases; i++) {
		if (s->cases[i].to.step == s)
			continue;
		for (k = 0; k < op->ntargets && strcmp(op->targets[k], s->cases[i].to.name) != 0; k++)
			;
		if (k == op->ntargets)
			op->targets[op->ntargets++] = s->cases[i].to.step->name;
	}
}

/* Sets the form, switch targets and job outputs of op. */
static void
set_outputs(Compile *c, PlanOp *op)
{
	const Step *s = op->step;
	size_t i;

	if (s->kind == STEP_FOREACH)
		op->form = s->depth == 0 ? OP_FAN_OUT : OP_FOREACH;
	else if (s->kind == STEP_SWITCH)
		op->form = OP_SWITCH;
	else
		op->form = OP_RUN;
	if (op->form != OP_SWITCH) {
		op->outputs = mfd_alloc(c->arena, sizeof *op->outputs);
		op->outputs[op->noutputs++] = s->name;
		return;
	}
	set_targets(c, op);
	op->optional = s->depth == 0;
	op->outputs = mfd_alloc(c->arena, op->ntargets * sizeof *op->outputs);
	for (i = 0; i < op->ntargets; i++)
		op->outputs[op->noutputs++] = mfd_printf(c->arena, "%s__%s", s->name, op->targets[i]);
}

/*
 * Sets the inputs and call arguments of op. A segment's head takes the segment function's parameter; a
 * level-0 step several parents reach takes them as one fan-in list ("cases"); any other op takes one input per
 * parent, collected when the parent is in another segment.
 */
static void
set_inputs(Compile *c, const Plan *p, PlanOp *op)
{
	const PlanOp *q;
	StrBuf list;
	size_t k;

	op->inputs = mfd_alloc(c->arena, (op->nparents + 1) * sizeof *op->inputs);
	op->args = mfd_alloc(c->arena, (op->nparents + 1) * sizeof *op->args);
	if (op->head) {
		op->inputs[op->ninputs++] = input_name(p->segs[op->seg].param);
		op->args[op->nargs++] = p->segs[op->seg].param;
		return;
	}
	if (takes_cases(op)) {
		mfd_sb_init(&list, c->arena);
		for (k = 0; k < op->nparents; k++)
			mfd_sb_printf(&list, "%s%s", k ? ", " : "[", handle(c, op->parents[k], op));
		mfd_sb_puts(&list, "]");
		op->inputs[op->ninputs++] = "cases";
		op->args[op->nargs++] = mfd_sb_str(&list);
		return;
	}
	for (k = 0; k < op->nparents; k++) {
		q = op->parents[k];
		op->inputs[op->ninputs++] = input_name(q->step->name);
		op->args[op->nargs++] = q->seg >= 0 && q->seg != op->seg ?
			mfd_printf(c->arena, "%s.collect()", handle(c, q, op)) : handle(c, q, op);
	}
}

/* Sets what segment sg maps over and, for a barrier, its op function's name and inputs. */
static void
set_source(Compile *c, Segment *sg)
{
	const PlanOp *h = sg->head;
	const char *src = sg->src->step->name;
	StrBuf call;
	size_t k;

	sg->param = sg->kind == SEG_REGROUP ? "bundle" : src;
	switch (sg->kind) {
	case SEG_NATIVE:
		sg->source = src;
		break;
	case SEG_EXPAND:
		sg->barrier = prefixed(c, c->plan, mfd_name(c->arena, NAME_FANOUT, src));
		sg->source = mfd_printf(c->arena, "%s(%s.collect())", sg->barrier, src);
		sg->inputs = mfd_alloc(c->arena, sizeof *sg->inputs);
		sg->inputs[sg->ninputs++] = input_name(src);
		break;
	case SEG_REGROUP:
		sg->barrier = prefixed(c, c->plan, mfd_name(c->arena, NAME_GATHER, h->step->name));
		mfd_sb_init(&call, c->arena);
		mfd_sb_printf(&call, "%s(", sg->barrier);
		sg->inputs = mfd_alloc(c->arena, h->nparents * sizeof *sg->inputs);
		for (k = 0; k < h->nparents; k++) {
			mfd_sb_printf(&call, "%s%s.collect()", k ? ", " : "", handle(c, h->parents[k], h));
			sg->inputs[sg->ninputs++] = input_name(h->parents[k]->step->name);
		}
		mfd_sb_puts(&call, ")");
		sg->source = mfd_sb_str(&call);
		break;
	}
}

/*
 * Sets each segment's outs: the handles that an op outside the segment takes from an op inside it, in order
 * of first use. The head of a native segment takes the foreach's DynamicOut directly, so its inputs do not
 * count.
 */
static void
set_outs(Compile *c, Plan *p)
{
	const PlanOp *op, *q;
	const char *h;
	Segment *sg;
	size_t i, k, j;

	for (i = 0; i < p->nops; i++)
		for (k = 0; k < p->ops[i].nparents; k++)
			if (p->ops[i].parents[k]->seg >= 0)
				p->segs[p->ops[i].parents[k]->seg].nouts++;
	for (k = 0; k < p->nsegs; k++) {
		p->segs[k].outs = mfd_alloc(c->arena, p->segs[k].nouts * sizeof *p->segs[k].outs);
		p->segs[k].nouts = 0;
	}
	for (i = 0; i < p->nops; i++) {
		op = &p->ops[i];
		if (op->head && p->segs[op->seg].kind == SEG_NATIVE)
			continue;
		for (k = 0; k < op->nparents; k++) {
			q = op->parents[k];
			if (q->seg < 0 || q->seg == op->seg)
				continue;
			sg = &p->segs[q->seg];
			h = handle(c, q, op);
			for (j = 0; j < sg->nouts && strcmp(sg->outs[j], h) != 0; j++)
				;
			if (j == sg->nouts)
				sg->outs[sg->nouts++] = h;
		}
	}
}

/* Schedule, sensors and the launchpad */

/* Sets the schedule of a flow with @schedule: its Dagster name, its cron in Dagster's form, its timezone. */
static void
set_schedule(Compile *c, Plan *p)
{
	const Flow *f = c->flow;

	if (!f->cron)
		return;
	p->schedule_name = mfd_name(c->arena, NAME_SCHEDULE, f->job_name);
	p->cron = mfd_dagster_cron(c->arena, f->cron);
	p->timezone = f->timezone ? f->timezone : "UTC";
}

/* The n names joined by sep, as a new arena string. */
static const char *
join_names(Compile *c, const char *const *names, size_t n, const char *sep)
{
	StrBuf sb;
	size_t i;

	mfd_sb_init(&sb, c->arena);
	for (i = 0; i < n; i++)
		mfd_sb_printf(&sb, "%s%s", i ? sep : "", names[i]);
	return mfd_sb_str(&sb) ? mfd_sb_str(&sb) : "";
}

/*
 * The options of a sensor's decorator (check.c accepted them) as the runtime reads them: the IR's, in their
 * order, with reset_at as {"cron": the cron in Dagster's form, "timezone": the IR's, or UTC}.
 */
static const MfdValue *
sensor_options(Compile *c, const MfdValue *opts)
{
	MfdArena *a = c->arena;
	MfdValue *out = mfd_object(a), *reset;
	const MfdValue *cron, *tz;
	const Member *m;
	const char *text;
	size_t i;

	for (i = 0; i < opts->u.obj.n; i++) {
		m = &opts->u.obj.v[i];
		if (strcmp(m->key, "reset_at") != 0) {
			mfd_object_put(a, out, m->key, m->keylen, m->value);
			continue;
		}
		cron = mfd_object_get(m->value, "cron");
		tz = mfd_object_get(m->value, "timezone");
		text = mfd_dagster_cron(a, cron->u.str.s);
		reset = mfd_object(a);
		mfd_object_put(a, reset, "cron", 4, mfd_string(a, text, strlen(text)));
		mfd_object_put(a, reset, "timezone", 8, tz && tz->kind == VAL_STRING ?
			mfd_string(a, tz->u.str.s, tz->u.str.len) : mfd_string(a, "UTC", 3));
		mfd_object_put(a, out, m->key, m->keylen, reset);
	}
	return out;
}

/*
 * Sets the sensors of a flow with @trigger or @trigger_on_finish: each one's Dagster name (the job and what it
 * waits for), its description and its options.
 */
static void
set_sensors(Compile *c, Plan *p)
{
	const Flow *f = c->flow;
	const char **names;
	PlanSensor *sn;
	size_t i;

	if (f->triggers) {
		names = mfd_alloc(c->arena, f->triggers->nevents * sizeof *names);
		for (i = 0; i < f->triggers->nevents; i++)
			names[i] = f->triggers->events[i].name;
		p->trigger = sn = mfd_alloc(c->arena, sizeof *sn);
		sn->name = mfd_sensor_name(c->arena, NAME_EVENT_SENSOR, f->job_name, names, f->triggers->nevents);
		sn->description = mfd_printf(c->arena, "Runs %s for each event %s published to the Dagster event log",
			f->name, join_names(c, names, f->triggers->nevents, " + "));
		sn->options = sensor_options(c, mfd_object_get(f->triggers->value, "options"));
	}
	if (f->finish) {
		names = mfd_alloc(c->arena, 2 * f->finish->nflows * sizeof *names);
		for (i = 0; i < f->finish->nflows; i++) {
			names[i] = f->finish->flows[i].flow;
			names[f->finish->nflows + i] = f->finish->flows[i].event;
		}
		p->finish = sn = mfd_alloc(c->arena, sizeof *sn);
		sn->name = mfd_sensor_name(c->arena, NAME_FINISH_SENSOR, f->job_name, names, f->finish->nflows);
		sn->description = mfd_printf(c->arena, "Runs %s once for each successful run of %s (events %s)", f->name,
			join_names(c, names, f->finish->nflows, " and "),
			join_names(c, names + f->finish->nflows, f->finish->nflows, ", "));
		sn->options = sensor_options(c, f->finish->options);
	}
}

/*
 * Sets the launchpad field of each Parameter, the start op's config schema: its Dagster type, its default
 * (the IR's; a json Parameter's as the JSON text the field takes, written as Python's json.dumps writes it),
 * whether it is required when it has no default, and its help. Reports a default too large to write.
 */
static void
set_params(Compile *c, Plan *p)
{
	const Flow *f = c->flow;
	const char *text;
	PlanParam *pp;
	StrBuf json;
	size_t i;

	p->params = mfd_alloc(c->arena, f->nparams * sizeof *p->params);
	p->nparams = f->nparams;
	for (i = 0; i < f->nparams; i++) {
		pp = &p->params[i];
		pp->param = &f->params[i];
		pp->type = mfd_param_config_type(pp->param->type);
		pp->description = *pp->param->help ? pp->param->help : NULL;
		if (pp->param->dflt->kind == VAL_NULL) {
			pp->required = pp->param->required;
		} else if (pp->param->type != PARAM_JSON) {
			pp->dflt = pp->param->dflt;
		} else {
			mfd_sb_init(&json, c->arena);
			mfd_sb_json(&json, pp->param->dflt);
			if ((text = mfd_sb_str(&json)))
				pp->dflt = mfd_string(c->arena, text, json.len);
			else
				mfd_error_at(c, NULL, "the default of parameter %s is too large to write as JSON",
					mfd_quote(c->arena, pp->param->name, strlen(pp->param->name)));
		}
	}
}

/* The executor */

/*
 * Allowlisted variables that name something of the machine they are set on (its paths, its user, its Dagster
 * home): a pod or container has its own, so they are not forwarded to it.
 */
static const char *const host_env[] = {"PATH", "HOME", "USER", "LOGNAME", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR",
	"DAGSTER_HOME", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "GOOGLE_APPLICATION_CREDENTIALS"};

static int
host_local(const char *name)
{
	size_t i;

	for (i = 0; i < MFD_COUNT(host_env); i++)
		if (!strcmp(name, host_env[i]))
			return 1;
	return 0;
}

/*
 * Sets the job's executor (FLOW["executor"]: its kind, its config defaults from `create --executor-config`
 * and, for k8s and docker, the allowlist entries a step's container gets from the run worker's environment)
 * and each op's executor tags: its Celery queue, its dagster-k8s/config (k8s.c). Every step of a k8s run
 * runs in one namespace, the executor's job_namespace: the steps' @kubernetes(namespace=...) must agree.
 */
static void
set_executor(Compile *c, Plan *p)
{
	const Flow *f = c->flow;
	MfdArena *a = c->arena;
	MfdValue *exec = mfd_object(a), *config = mfd_object(a), *env;
	const MfdValue *given = f->options.executor_config, *v;
	const char *ns = NULL, *step_ns;
	const Step *ns_step = NULL, *at = NULL;
	size_t i, k;

	for (i = 0; i < p->nops; i++) {
		for (k = 0; k < f->options.nqueues; k++)
			if (!strcmp(f->options.queues[k].key, p->ops[i].step->name))
				p->ops[i].queue = f->options.queues[k].value;
		if (f->exec != EXEC_K8S)
			continue;
		p->ops[i].k8s = mfd_k8s_config(c, p->ops[i].step, &step_ns, &at);
		if (!step_ns)
			continue;
		if (ns && strcmp(ns, step_ns))
			mfd_error_at(c, p->ops[i].step, "@kubernetes namespace '%s' differs from '%s' of step '%s': "
				"dagster-k8s runs every step of a run in one namespace, the executor's job_namespace", step_ns, ns,
				ns_step->name);
		else if (!ns)
			ns = step_ns, ns_step = at;
	}
	for (i = 0; given && i < given->u.obj.n; i++)
		mfd_object_put(a, config, given->u.obj.v[i].key, given->u.obj.v[i].keylen, given->u.obj.v[i].value);
	if (ns) {
		v = mfd_object_get(config, "job_namespace");
		if (!v)
			mfd_object_put(a, config, "job_namespace", 13, mfd_string(a, ns, strlen(ns)));
		else if (v->kind != VAL_STRING || strcmp(v->u.str.s, ns))
			mfd_error_at(c, ns_step, "@kubernetes namespace '%s' differs from the executor's job_namespace "
				"(create --executor-config)", ns);
	}
	mfd_object_put(a, exec, "kind", 4, mfd_string(a, mfd_exec_name(f->exec), strlen(mfd_exec_name(f->exec))));
	mfd_object_put(a, exec, "config", 6, config);
	if (f->exec == EXEC_K8S || f->exec == EXEC_DOCKER) {
		env = mfd_array(a);
		for (i = 0; i < f->settings.nenv_allowlist; i++)
			if (!host_local(f->settings.env_allowlist[i]))
				mfd_array_push(a, env, mfd_string(a, f->settings.env_allowlist[i],
					strlen(f->settings.env_allowlist[i])));
		mfd_object_put(a, exec, "forward_env", 11, env);
	}
	p->executor = exec;
	p->io_manager = mfd_exec_remote(f->exec);
}

/* Name collisions */

#define NAME_USES(X) \
	X(USE_OP,         "the op of step '%s'") \
	X(USE_OP_FN,      "the op function of step '%s'") \
	X(USE_FANOUT,     "the barrier op that fans out foreach '%s'") \
	X(USE_GATHER,     "the barrier op that regroups the inputs of step '%s'") \
	X(USE_SEGMENT,    "the job's function for the segment that step '%s' opens") \
	X(USE_VAR,        "the job's variable for step '%s'") \
	X(USE_SWITCH_VAR, "the job's variable for the output of switch '%s' to '%s'") \
	X(USE_JOB,        "the job function") \
	X(USE_JOB_OF,     "the job function of flow '%s'") \
	X(USE_LITERAL,    "the FLOW literal of flow '%s'") \
	X(USE_RUNTIME_OF, "the runtime object of flow '%s'") \
	X(USE_SCHEDULE,   "the schedule of flow '%s'") \
	X(USE_EVENT_SENSOR, "the @trigger sensor of flow '%s'") \
	X(USE_FINISH_SENSOR, "the @trigger_on_finish sensor of flow '%s'") \
	X(USE_MODULE,     "a name the module itself defines") \
	X(USE_CONTEXT,    "the context parameter of %s") \
	X(USE_RUNTIME,    "the runtime object that %s calls") \
	X(USE_INPUT,      "the parameter of %s for step '%s'")

typedef enum NameUse {
#define X(use, what) use,
	NAME_USES(X)
#undef X
} NameUse;

static const char *const use_formats[] = {
#define X(use, what) what,
	NAME_USES(X)
#undef X
};

/* Names of the module that no generated function may take, besides FLOW and mf (or their per-flow forms). */
static const char *const module_names[] = {"defs", "FlowRuntime", "Definitions", "DynamicOut", "Out", "RetryPolicy",
	"job", "op"};

typedef struct Name {
	const char *name;
	Compile *c;       /* the flow the name comes from */
	NameUse use;
	const Step *step; /* the step the name comes from, or NULL */
	const char *a;    /* the first name the description shows, or NULL */
	const char *b;    /* the second, or NULL */
	size_t order;     /* when it was added, for a stable report */
} Name;

/* One namespace of the generated file: names that must each mean one thing. */
typedef struct Scope {
	Name *v;
	size_t n;
	size_t cap;
} Scope;

static void
add(Compile *c, Scope *sc, const char *name, NameUse use, const Step *step, const char *a, const char *b)
{
	size_t cap;

	if (sc->n == sc->cap) {
		cap = sc->cap ? 2 * sc->cap : 8;
		sc->v = mfd_realloc(c->arena, sc->v, sc->cap * sizeof *sc->v, cap * sizeof *sc->v);
		sc->cap = cap;
	}
	sc->v[sc->n] = (Name){name, c, use, step, a, b, sc->n};
	sc->n++;
}

static int
by_name(const void *x, const void *y)
{
	const Name *a = x, *b = y;
	int r = strcmp(a->name, b->name);

	return r ? r : (a->order > b->order) - (a->order < b->order);
}

static const char *
describe(Compile *c, const Name *n)
{
	return mfd_printf(c->arena, use_formats[n->use], n->a ? n->a : "", n->b ? n->b : "");
}

/* Whether a name of this use is made from the job name, so renaming the flow renames it. */
static int
from_job(NameUse use)
{
	return use == USE_JOB || use == USE_JOB_OF || use == USE_LITERAL || use == USE_RUNTIME_OF ||
		use == USE_SCHEDULE || use == USE_EVENT_SENSOR || use == USE_FINISH_SENSOR;
}

/*
 * Reports that first and again share a name, unless reported (the names already reported, from any scope)
 * holds it. The problem is shown at the step whose own name it is, where renaming fixes it, else at the step
 * of the later use, else at the flow of the later use. The job function (and in a file of several flows each
 * flow's literal, runtime object and schedule) is named after the flow, so renaming the flow fixes a clash
 * with it.
 */
static void
report(const Name *first, const Name *again, Scope *reported)
{
	Compile *c = again->c;
	const Name *at;
	size_t i;

	for (i = 0; i < reported->n; i++)
		if (strcmp(reported->v[i].name, first->name) == 0)
			return;
	add(c, reported, first->name, first->use, NULL, NULL, NULL);
	if (first->step && strcmp(first->step->name, first->name) == 0)
		at = first;
	else
		at = again->step || !first->step ? again : first;
	mfd_error_at(at->c, at->step, "the generated name '%s' is both %s and %s; rename %s", first->name,
		describe(c, first), describe(c, again), from_job(first->use) || from_job(again->use) ? "the flow" :
		"a step");
}

/* Reports every name that sc holds more than once, each against its first use. */
static void
check_scope(Compile *c, Scope *sc, Scope *reported)
{
	Name *v;
	size_t i, first = 0;

	if (sc->n < 2)
		return;
	v = mfd_alloc(c->arena, sc->n * sizeof *v);
	memcpy(v, sc->v, sc->n * sizeof *v);
	qsort(v, sc->n, sizeof *v, by_name);
	for (i = 1; i < sc->n; i++) {
		if (strcmp(v[i].name, v[first].name) != 0)
			first = i;
		else
			report(&v[first], &v[i], reported);
	}
}

/* Adds the barrier ops, whose op names and function names are the same. */
static void
add_barriers(Compile *c, const Plan *p, Scope *sc)
{
	const Segment *sg;
	size_t i;

	for (i = 0; i < p->nsegs; i++) {
		sg = &p->segs[i];
		if (sg->kind == SEG_EXPAND)
			add(c, sc, sg->barrier, USE_FANOUT, sg->src->step, sg->src->step->name, NULL);
		else if (sg->kind == SEG_REGROUP)
			add(c, sc, sg->barrier, USE_GATHER, sg->head->step, sg->head->step->name, NULL);
	}
}

/* Adds the op functions and barrier functions, which both the module and the job body see. */
static void
add_functions(Compile *c, const Plan *p, Scope *sc)
{
	size_t i;

	for (i = 0; i < p->nops; i++)
		add(c, sc, p->ops[i].fn, USE_OP_FN, p->ops[i].step, p->ops[i].step->name, NULL);
	add_barriers(c, p, sc);
}

/* Adds the Dagster op names of flow c: its steps' and its barriers'. */
static void
add_op_names(Compile *c, const Plan *p, Scope *sc)
{
	size_t i;

	for (i = 0; i < p->nops; i++)
		add(c, sc, p->ops[i].name, USE_OP, p->ops[i].step, p->ops[i].step->name, NULL);
	add_barriers(c, p, sc);
}

/* Dagster op names: one code location may not hold two ops of one name. */
static void
check_op_names(Compile *c, const Plan *p, Scope *reported)
{
	Scope sc = {0};

	add_op_names(c, p, &sc);
	check_scope(c, &sc, reported);
}

/* Adds the Dagster names of flow c's schedule and sensors, which share one namespace in a code location. */
static void
add_trigger_names(Compile *c, const Plan *p, Scope *sc)
{
	const char *flow = c->flow->name;

	if (p->schedule_name)
		add(c, sc, p->schedule_name, USE_SCHEDULE, NULL, flow, NULL);
	if (p->trigger)
		add(c, sc, p->trigger->name, USE_EVENT_SENSOR, NULL, flow, NULL);
	if (p->finish)
		add(c, sc, p->finish->name, USE_FINISH_SENSOR, NULL, flow, NULL);
}

/* Dagster schedule and sensor names: a sensor name cut to its length limit could repeat another. */
static void
check_trigger_names(Compile *c, const Plan *p, Scope *reported)
{
	Scope sc = {0};

	add_trigger_names(c, p, &sc);
	check_scope(c, &sc, reported);
}

/* Adds the module-level names that flow c brings: its functions, its job, its literal and runtime object. */
static void
add_flow_names(Compile *c, const Plan *p, Scope *sc)
{
	const char *flow = c->flow->name;

	add_functions(c, p, sc);
	if (c->shared) {
		add(c, sc, p->job, USE_JOB_OF, NULL, flow, NULL);
		add(c, sc, p->literal, USE_LITERAL, NULL, flow, NULL);
		add(c, sc, p->rt, USE_RUNTIME_OF, NULL, flow, NULL);
	} else {
		add(c, sc, p->job, USE_JOB, NULL, NULL, NULL);
		add(c, sc, p->literal, USE_MODULE, NULL, NULL, NULL);
		add(c, sc, p->rt, USE_MODULE, NULL, NULL, NULL);
	}
	if (c->flow->cron)
		add(c, sc, p->schedule, USE_SCHEDULE, NULL, flow, NULL);
}

/* Adds the module-level names that come from no flow; a file of several flows also calls event_assets. */
static void
add_module_names(Compile *c, Scope *sc)
{
	size_t i;

	for (i = 0; i < MFD_COUNT(module_names); i++)
		add(c, sc, module_names[i], USE_MODULE, NULL, NULL, NULL);
	if (c->shared)
		add(c, sc, "event_assets", USE_MODULE, NULL, NULL, NULL);
}

/* Module-level names: the functions, the job and what the module defines besides. */
static void
check_module_names(Compile *c, const Plan *p, Scope *reported)
{
	Scope sc = {0};

	add_flow_names(c, p, &sc);
	add_module_names(c, &sc);
	check_scope(c, &sc, reported);
}

/*
 * Names in the job body: the variables and segment functions it defines, and the functions it calls, which a
 * variable of the same name would hide.
 */
static void
check_job_names(Compile *c, const Plan *p, Scope *reported)
{
	const PlanOp *op;
	Scope sc = {0};
	size_t i, k;

	add_functions(c, p, &sc);
	for (i = 0; i < p->nsegs; i++)
		add(c, &sc, mfd_printf(c->arena, "segment_%d", p->segs[i].id), USE_SEGMENT, p->segs[i].head->step,
			p->segs[i].head->step->name, NULL);
	for (i = 0; i < p->nops; i++) {
		op = &p->ops[i];
		for (k = 0; k < op->noutputs; k++)
			if (op->form == OP_SWITCH)
				add(c, &sc, op->outputs[k], USE_SWITCH_VAR, op->step, op->step->name, op->targets[k]);
			else
				add(c, &sc, op->outputs[k], USE_VAR, op->step, op->step->name, NULL);
	}
	check_scope(c, &sc, reported);
}

/*
 * The parameters of the function fn: context, then one input per step of from (inputs[k] comes from from[k]).
 * The body also calls mf, which a parameter must not hide.
 */
static void
check_params(Compile *c, const char *fn, const char **inputs, PlanOp *const *from, size_t n, Scope *reported)
{
	Scope sc = {0};
	size_t k;

	add(c, &sc, "context", USE_CONTEXT, NULL, fn, NULL);
	add(c, &sc, c->plan->rt, USE_RUNTIME, NULL, fn, NULL);
	for (k = 0; k < n; k++)
		add(c, &sc, inputs[k], USE_INPUT, from[k]->step, fn, from[k]->step->name);
	check_scope(c, &sc, reported);
}

/*
 * Checks the parameters of every op and barrier function. An input named after a step comes from that step;
 * "bundle" and "cases" are always an op's only input and cannot collide.
 */
static void
check_all_params(Compile *c, const Plan *p, Scope *reported)
{
	const PlanOp *op;
	const Segment *sg;
	size_t i;

	for (i = 0; i < p->nops; i++) {
		op = &p->ops[i];
		if (op->head && p->segs[op->seg].kind != SEG_REGROUP)
			check_params(c, op->fn, op->inputs, &p->segs[op->seg].src, 1, reported);
		else if (!op->head && !takes_cases(op))
			check_params(c, op->fn, op->inputs, op->parents, op->nparents, reported);
	}
	for (i = 0; i < p->nsegs; i++) {
		sg = &p->segs[i];
		if (sg->kind == SEG_EXPAND)
			check_params(c, sg->barrier, sg->inputs, &sg->src, 1, reported);
		else if (sg->kind == SEG_REGROUP)
			check_params(c, sg->barrier, sg->inputs, sg->head->parents, sg->head->nparents, reported);
	}
}

/* Text printed into comments */

static void
check_comment_text(Compile *c, const Step *s, const char *what, const char *text)
{
	if (strpbrk(text, "\r\n"))
		mfd_error_at(c, s, "the %s %s holds a line break, which would end the comment it is printed in", what,
			mfd_quote(c->arena, text, strlen(text)));
}

/* Checks the IR text that the file prints outside string literals: in comments, and the job's def line. */
static void
check_texts(Compile *c)
{
	const Flow *f = c->flow;
	size_t i;

	check_comment_text(c, NULL, "flow name", f->name);
	check_comment_text(c, NULL, "flow file", f->file);
	for (i = 0; i < f->nsteps; i++)
		check_comment_text(c, &f->steps[i], "file name", base_name(f->steps[i].file));
	if (!mfd_is_identifier(f->job_name))
		mfd_error_at(c, NULL, "job name %s is not a Python identifier", mfd_quote(c->arena, f->job_name,
			strlen(f->job_name)));
}

/*
 * Lowers c->flow, which check.c accepted, into c->plan. Returns the number of errors so far; when there are
 * any, c->plan must not be used.
 */
int
mfd_lower(Compile *c)
{
	Flow *f = c->flow;
	Step **order = mfd_alloc(c->arena, f->nsteps * sizeof *order);
	Scope reported = {0};
	size_t n, i;
	Plan *p;

	check_texts(c);
	n = topo_order(c, order);
	if (n != f->nsteps) {
		/* check.c's invariants rule this out; without them the plan would miss steps. */
		mfd_error_at(c, NULL, "internal error: only %zu of the %zu steps could be put in order; please report "
			"this with the flow's IR (dagster create --ir-only)", n, f->nsteps);
		return c->diags.nerrors;
	}
	c->plan = p = new_plan(c, order, n);
	p->start_op = prefixed(c, p, f->start.name);
	if (check_order(c, p) > 0 || c->diags.nerrors > 0)
		return c->diags.nerrors;
	find_segments(c, p);
	for (i = 0; i < p->nsegs; i++)
		set_source(c, &p->segs[i]);
	for (i = 0; i < p->nops; i++) {
		set_outputs(c, &p->ops[i]);
		set_inputs(c, p, &p->ops[i]);
	}
	set_outs(c, p);
	set_schedule(c, p);
	set_sensors(c, p);
	set_params(c, p);
	set_executor(c, p);
	check_op_names(c, p, &reported);
	check_module_names(c, p, &reported);
	check_job_names(c, p, &reported);
	check_all_params(c, p, &reported);
	check_trigger_names(c, p, &reported);
	return c->diags.nerrors;
}

/*
 * Checks the flows of a file of several, each lowered without errors, against each other: Dagster wants op
 * names, and schedule and sensor names, unique in a code location, and the flows share one module. Within a flow the names were checked by
 * mfd_lower, so what this reports is a clash between two flows. Returns the number of errors of all flows.
 */
int
mfd_lower_many(Compile *units, size_t n)
{
	Scope ops = {0}, module = {0}, triggers = {0}, reported = {0};
	int errors = 0;
	size_t i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++) {
		add_op_names(&units[i], units[i].plan, &ops);
		add_flow_names(&units[i], units[i].plan, &module);
		add_trigger_names(&units[i], units[i].plan, &triggers);
	}
	add_module_names(&units[0], &module);
	check_scope(&units[0], &ops, &reported);
	check_scope(&units[0], &module, &reported);
	check_scope(&units[0], &triggers, &reported);
	for (i = 0; i < n; i++)
		errors += units[i].diags.nerrors;
	return errors;
}
