/*
 * check.c: the semantic checks of docs/ir.md ("Invariants the core checks"), on a Flow read without errors.
 *
 * It resolves every name (StepRef.step, Decorator.kind, Flow.byname), checks each step against its kind and
 * the decorator support matrix, then checks the graph as a whole and computes each step's foreach depth. When
 * it reports no error, later passes may rely on all of this:
 *
 *   - step names are unique Python identifiers, and every StepRef, start and end resolve;
 *   - each step has as many next steps as its kind allows (STEP_KINDS); the end step has kind STEP_END;
 *   - split and foreach steps have a matching_join of kind STEP_JOIN; foreach steps have a foreach_var;
 *   - switch steps, and only they, have a condition and at least one case, each case target in next;
 *   - split_parents name split or foreach steps; in_funcs names no step twice; each in_funcs entry has this
 *     step in its next, and each next entry but the step itself has this step in its in_funcs;
 *   - the only cycles are switch cases back to their own step;
 *   - no switch case goes straight into a join (Metaflow's lint forbids it too);
 *   - no decorator or step feature is one the matrix rejects;
 *   - Step.depth is set, with mfd_is_foreach_join deciding which joins close a foreach;
 *   - Flow.exec is the job's executor: the one `create --executor` named, else k8s when a step has @kubernetes,
 *     else threads; @kubernetes only with k8s, Celery queues only with celery, each naming a step.
 *
 * Problems are reported at the step's source line and checking goes on. The graph-wide checks need resolved
 * names, so they are skipped when a step name is not an identifier, is defined twice or a reference did not
 * resolve. mfd_check_many checks the flows of one file against each other: distinct job names, equal settings.
 */
#include <stddef.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>

#include "internal.h"

static const struct {
	const char *name;
	DecoHandling handling;
	const char *reason;
} decorators[] = {
#define X(kind, name, handling, reason) {name, handling, reason},
	DECORATORS(X)
#undef X
};

static const struct {
	int minnext;
	int maxnext;
} arity[] = {
#define X(kind, name, minnext, maxnext) {minnext, maxnext},
	STEP_KINDS(X)
#undef X
};

DecoKind
mfd_deco_lookup(const char *name)
{
	size_t k;

	for (k = 0; k < MFD_COUNT(decorators); k++)
		if (strcmp(name, decorators[k].name) == 0)
			return (DecoKind)k;
	return DECO_UNKNOWN;
}

DecoHandling
mfd_deco_handling(DecoKind k)
{
	return k == DECO_UNKNOWN ? FORWARDED : decorators[k].handling;
}

static const char *
quote(Compile *c, const char *s)
{
	return mfd_quote(c->arena, s, strlen(s));
}

static int
by_name(const void *a, const void *b)
{
	const Step *x = *(Step *const *)a, *y = *(Step *const *)b;
	int r = strcmp(x->name, y->name);

	return r ? r : (x->index > y->index) - (x->index < y->index);
}

/* The step named name, by binary search in Flow.byname; NULL when there is none. */
Step *
mfd_find_step(const Flow *f, const char *name)
{
	size_t lo = 0, hi = f->nsteps, mid;
	int r;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		r = strcmp(name, f->byname[mid]->name);
		if (r == 0)
			return f->byname[mid];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Builds Flow.byname and reports names that are not identifiers or repeat. Returns the number of problems. */
static int
check_names(Compile *c)
{
	Flow *f = c->flow;
	Step *s, *prev;
	int problems = 0;
	size_t i;

	f->byname = mfd_alloc(c->arena, f->nsteps * sizeof *f->byname);
	for (i = 0; i < f->nsteps; i++) {
		s = f->byname[i] = &f->steps[i];
		if (!mfd_is_identifier(s->name)) {
			mfd_error_at(c, s, "step name %s is not a Python identifier", quote(c, s->name));
			problems++;
		}
	}
	if (f->nsteps > 1)
		qsort(f->byname, f->nsteps, sizeof *f->byname, by_name);
	for (i = 1; i < f->nsteps; i++) {
		prev = f->byname[i - 1];
		s = f->byname[i];
		if (strcmp(prev->name, s->name) == 0) {
			mfd_error_at(c, s, "duplicate step name (first defined at %s:%d)", prev->file, prev->line);
			problems++;
		}
	}
	return problems;
}

/* Points r at the step it names. Returns 1, or 0 after reporting that field names no step. */
static int
resolve(Compile *c, const Step *s, StepRef *r, const char *field)
{
	r->step = mfd_find_step(c->flow, r->name);
	if (!r->step)
		mfd_error_at(c, s, "%s names %s, which is not a step", field, quote(c, r->name));
	return r->step != NULL;
}

/* Resolves every name s holds. Returns 1 when all resolved. */
static int
resolve_step(Compile *c, Step *s)
{
	int ok = 1;
	size_t i;

	for (i = 0; i < s->nnext; i++)
		ok &= resolve(c, s, &s->next[i], "next");
	for (i = 0; i < s->nin; i++)
		ok &= resolve(c, s, &s->in[i], "in_funcs");
	for (i = 0; i < s->nparents; i++)
		ok &= resolve(c, s, &s->parents[i], "split_parents");
	if (s->join.name)
		ok &= resolve(c, s, &s->join, "matching_join");
	for (i = 0; i < s->ncases; i++)
		ok &= resolve(c, s, &s->cases[i].to, mfd_printf(c->arena, "switch case %s",
			quote(c, s->cases[i].value)));
	return ok;
}

static int
goes_to(const Step *s, const Step *t)
{
	size_t i;

	for (i = 0; i < s->nnext; i++)
		if (s->next[i].step == t)
			return 1;
	return 0;
}

static int
has_case_to(const Step *s, const Step *t)
{
	size_t i;

	for (i = 0; i < s->ncases; i++)
		if (s->cases[i].to.step == t)
			return 1;
	return 0;
}

static int
non_local_environment(const Compile *c)
{
	const char *env = c->flow->settings.environment;

	return env && strcmp(env, "local") != 0;
}

/* Reports each decorator of s (NULL: a flow decorator) that the support matrix rejects. */
static void
check_decorators(Compile *c, const Step *s, Decorator *d, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		d[i].kind = mfd_deco_lookup(d[i].name);
		if (mfd_deco_handling(d[i].kind) != REJECTED)
			continue;
		/* --environment=conda|pypi attaches @conda/@pypi to every step: its one error says it all. */
		if (!d[i].is_static && (d[i].kind == DECO_CONDA || d[i].kind == DECO_PYPI) && non_local_environment(c))
			continue;
		mfd_error_at(c, s, "@%s is not supported: %s", decorators[d[i].kind].name, decorators[d[i].kind].reason);
	}
}

/* Returns 1 when every byte of s is in the set allowed by extra (beyond letters and digits). */
static int
all_in(const char *s, const char *extra)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!(isalnum((unsigned char)*s) || strchr(extra, *s)))
			return 0;
	return 1;
}

/*
 * Checks the options of @trigger or @trigger_on_finish (``deco``), which the sensors read: ``interval`` (seconds
 * between ticks, a positive integer), ``reset_at`` ({"cron", "timezone"}: drop waiting events older than the
 * last tick of the cron, a cron that mfd_dagster_cron turns into Dagster's, and a timezone name or null) and,
 * for @trigger only, ``secret_env`` (the name of the environment variable holding the
 * key that events must be signed with; only the name is ever written). An option the sensors would not read is
 * an error: a misspelt ``secret_env`` must not leave events unauthenticated without a word.
 */
static void
check_trigger_options(Compile *c, const MfdValue *opts, const char *deco, int signed_events)
{
	const Member *m;
	const MfdValue *cron, *tz;
	size_t i;

	if (!opts || opts->kind != VAL_OBJECT)
		return;
	for (i = 0; i < opts->u.obj.n; i++) {
		m = &opts->u.obj.v[i];
		if (!strcmp(m->key, "interval")) {
			if (m->value->kind != VAL_INT || m->value->u.i < 1 || m->value->u.i > 86400)
				mfd_error_at(c, NULL, "%s option interval must be a whole number of seconds from 1 to 86400", deco);
		} else if (!strcmp(m->key, "reset_at")) {
			cron = m->value->kind == VAL_OBJECT ? mfd_object_get(m->value, "cron") : NULL;
			tz = m->value->kind == VAL_OBJECT ? mfd_object_get(m->value, "timezone") : NULL;
			if (!cron || cron->kind != VAL_STRING || !*cron->u.str.s ||
			    (tz && tz->kind != VAL_STRING && tz->kind != VAL_NULL))
				mfd_error_at(c, NULL, "%s option reset_at must be {\"cron\": \"...\", \"timezone\": \"...\"}",
					deco);
			else if (memchr(cron->u.str.s, '\0', cron->u.str.len) || !mfd_dagster_cron(c->arena, cron->u.str.s))
				mfd_error_at(c, NULL, "%s option reset_at: cron %s must have 5 fields, or 6 in Metaflow's form "
					"with a year", deco, mfd_quote(c->arena, cron->u.str.s, cron->u.str.len));
		} else if (signed_events && !strcmp(m->key, "secret_env")) {
			if (m->value->kind != VAL_STRING || !all_in(m->value->u.str.s, "_") ||
			    isdigit((unsigned char)m->value->u.str.s[0]))
				mfd_error_at(c, NULL, "%s option secret_env must name an environment variable (letters, digits and "
					"'_', not starting with a digit), not hold the secret itself", deco);
		} else {
			mfd_error_at(c, NULL, "%s has no option %s (it takes interval, reset_at%s)", deco, quote(c, m->key),
				signed_events ? " and secret_env" : "");
		}
	}
}

/*
 * Checks @trigger as Metaflow defines it: valid event names, mappings from existing Parameters to valid
 * payload field names, and each Parameter fed by one event at most.
 */
static void
check_triggers(Compile *c)
{
	const Flow *f = c->flow;
	const Triggers *t = f->triggers;
	const Event *e;
	const char **seen;
	size_t i, k, j, nseen = 0, total = 0;

	if (!t)
		return;
	if (t->nevents == 0)
		mfd_error_at(c, NULL, "@trigger names no event");
	check_trigger_options(c, mfd_object_get(t->value, "options"), "@trigger", 1);
	for (i = 0; i < t->nevents; i++)
		total += t->events[i].nparams;
	seen = mfd_alloc(c->arena, (total + 1) * sizeof *seen);
	for (i = 0; i < t->nevents; i++) {
		e = &t->events[i];
		if (!e->name)
			continue;
		if (!all_in(e->name, "_.-"))
			mfd_error_at(c, NULL, "@trigger event %s: event names use only letters, digits, '_', '.' and '-'",
				quote(c, e->name));
		for (k = 0; k < e->nparams; k++) {
			for (j = 0; j < f->nparams && strcmp(f->params[j].name, e->params[k].key); j++)
				;
			if (j == f->nparams)
				mfd_error_at(c, NULL, "@trigger event %s maps field %s to %s, which is not a Parameter of the flow",
					quote(c, e->name), quote(c, e->params[k].value), quote(c, e->params[k].key));
			if (!all_in(e->params[k].value, "_"))
				mfd_error_at(c, NULL, "@trigger event %s: payload field %s must use only letters, digits and '_'",
					quote(c, e->name), quote(c, e->params[k].value));
			for (j = 0; j < nseen && strcmp(seen[j], e->params[k].key); j++)
				;
			if (j < nseen)
				mfd_error_at(c, NULL, "@trigger: parameter %s is mapped by more than one event",
					quote(c, e->params[k].key));
			else
				seen[nseen++] = e->params[k].key;
		}
	}
}

/*
 * Checks @trigger_on_finish and names the event each upstream flow's end task emits, as Argo Workflows does:
 * project and branch left out come from the flow's own @project, a flow name has only letters, digits and
 * '_', and a project needs its branch. A run started by an upstream flow carries no Parameter values, so
 * a required Parameter needs a default; and a flow may not wait for itself (it would run forever).
 */
static void
check_finish(Compile *c)
{
	const Flow *f = c->flow;
	Finish *t = f->finish;
	Upstream *u;
	size_t i;

	if (!t)
		return;
	if (t->nflows == 0)
		mfd_error_at(c, NULL, "@trigger_on_finish names no flow");
	check_trigger_options(c, t->options, "@trigger_on_finish", 0);
	for (i = 0; i < t->nflows; i++) {
		u = &t->flows[i];
		if (!u->flow)
			continue;
		if (!u->project && f->project)
			u->project = f->project->name;
		if (!u->branch && f->project)
			u->branch = f->project->branch;
		if (!all_in(u->flow, "_")) {
			mfd_error_at(c, NULL, "@trigger_on_finish flow %s: flow names use only letters, digits and '_'",
				quote(c, u->flow));
			continue;
		}
		if (!u->project != !u->branch) {
			mfd_error_at(c, NULL, "@trigger_on_finish flow %s: give both project and project_branch, or use "
				"@project on this flow (only %s is known)", quote(c, u->flow),
				u->project ? "the project" : "the branch");
			continue;
		}
		u->event = mfd_event_name(c->arena, u->project ? mfd_printf(c->arena, "%s.%s.%s", u->project, u->branch,
			u->flow) : u->flow, "end");
		if (!all_in(u->event, "_.-"))
			mfd_error_at(c, NULL, "@trigger_on_finish flow %s: project %s or branch %s holds a character "
				"event names cannot (only letters, digits, '_', '.' and '-')", quote(c, u->flow),
				quote(c, u->project), quote(c, u->branch));
		if (!strcmp(u->flow, f->name) && !f->project == !u->project &&
		    (!u->project || (!strcmp(u->project, f->project->name) && !strcmp(u->branch, f->project->branch))))
			mfd_error_at(c, NULL, "@trigger_on_finish: flow %s waits for its own runs, so every run would start "
				"another one", quote(c, u->flow));
	}
	for (i = 0; i < f->nparams; i++)
		if (f->params[i].required && f->params[i].dflt->kind == VAL_NULL)
			mfd_error_at(c, NULL, "@trigger_on_finish: parameter %s is required and has no default, so a run "
				"started by an upstream flow could not set it; give it a default", quote(c, f->params[i].name));
}

/*
 * Checks @schedule: a cron Dagster can take, and no required Parameter without a default (a scheduled run
 * has nobody to give it a value), as Argo Workflows refuses.
 */
static void
check_schedule(Compile *c)
{
	const Flow *f = c->flow;
	size_t i;

	if (!f->cron)
		return;
	if (!mfd_dagster_cron(c->arena, f->cron))
		mfd_error_at(c, NULL, "@schedule cron %s must have 5 fields, or 6 in Metaflow's form with a year",
			quote(c, f->cron));
	for (i = 0; i < f->nparams; i++)
		if (f->params[i].required && f->params[i].dflt->kind == VAL_NULL)
			mfd_error_at(c, NULL, "@schedule: parameter %s is required and has no default, so a scheduled run "
				"could not set it; give it a default", quote(c, f->params[i].name));
}

/* Checks s against what its kind requires; uses only the references that resolved. */
static void
check_step(Compile *c, Step *s)
{
	const char *kind = mfd_step_kind_name(s->kind);
	int min = arity[s->kind].minnext, max = arity[s->kind].maxnext;
	const Step *t;
	size_t i;

	if (s->nnext < (size_t)min || (max != MANY && s->nnext > (size_t)max)) {
		if (max == 0)
			mfd_error_at(c, s, "%s steps have no next step, found %zu", kind, s->nnext);
		else if (min == max)
			mfd_error_at(c, s, "%s steps have exactly %d next step, found %zu", kind, min, s->nnext);
		else
			mfd_error_at(c, s, "%s steps have at least %d next steps, found %zu", kind, min, s->nnext);
	}
	if (s->kind == STEP_SPLIT || s->kind == STEP_FOREACH) {
		if (!s->join.name)
			mfd_error_at(c, s, "%s steps need a matching_join", kind);
		else if (s->join.step && s->join.step->kind != STEP_JOIN)
			mfd_error_at(c, s, "matching_join names %s, which is not a join step", quote(c, s->join.name));
	}
	if (s->kind == STEP_FOREACH && s->parallel)
		mfd_error_at(c, s, "@parallel foreach (num_parallel=%d) is not supported", s->num_parallel);
	else if (s->kind == STEP_FOREACH && !s->foreach_var)
		mfd_error_at(c, s, "foreach steps need a foreach_var");
	if (s->kind == STEP_SWITCH && !s->condition)
		mfd_error_at(c, s, "split-switch steps need a switch");
	else if (s->kind == STEP_SWITCH && s->ncases == 0)
		mfd_error_at(c, s, "switch has no cases");
	else if (s->kind != STEP_SWITCH && s->condition)
		mfd_error_at(c, s, "switch must be null for %s steps", kind);
	for (i = 0; i < s->ncases; i++)
		if (s->cases[i].to.step && !goes_to(s, s->cases[i].to.step))
			mfd_error_at(c, s, "switch case %s goes to %s, which is not in next", quote(c, s->cases[i].value),
				quote(c, s->cases[i].to.name));
	for (i = 0; i < s->nparents; i++) {
		t = s->parents[i].step;
		if (t && t->kind != STEP_SPLIT && t->kind != STEP_FOREACH)
			mfd_error_at(c, s, "split_parents names %s, which is not a split or foreach step", quote(c, t->name));
	}
}

static int
comes_from(const Step *s, const Step *t)
{
	size_t i;

	for (i = 0; i < s->nin; i++)
		if (s->in[i].step == t)
			return 1;
	return 0;
}

/*
 * Reports edges that next and in_funcs do not both list, and in_funcs entries that repeat. Lowering orders the
 * steps by counting in_funcs and following next, so the two must describe the same edges. A next entry may
 * repeat (several switch cases going to one step); a self-loop lives in next only.
 */
static void
check_in_funcs(Compile *c)
{
	const Step *t;
	Step *s;
	size_t i, k, j;

	for (i = 0; i < c->flow->nsteps; i++) {
		s = &c->flow->steps[i];
		for (k = 0; k < s->nin; k++) {
			t = s->in[k].step;
			for (j = 0; j < k && s->in[j].step != t; j++)
				;
			if (j < k)
				mfd_error_at(c, s, "in_funcs names '%s' twice", t->name);
			else if (!goes_to(t, s))
				mfd_error_at(c, s, "in_funcs names '%s', whose next does not include this step", t->name);
		}
		for (k = 0; k < s->nnext; k++) {
			t = s->next[k].step;
			for (j = 0; j < k && s->next[j].step != t; j++)
				;
			if (j == k && t != s && !comes_from(t, s))
				mfd_error_at(c, s, "next names '%s', whose in_funcs does not include this step", t->name);
		}
	}
}

/* Reports the cycle that the edge from the top of the DFS stack back to stack[0] closes. */
static void
report_cycle(Compile *c, Step **stack, size_t n)
{
	StrBuf path;
	size_t i;

	mfd_sb_init(&path, c->arena);
	for (i = 0; i < n; i++)
		mfd_sb_printf(&path, "%s -> ", stack[i]->name);
	mfd_sb_puts(&path, stack[0]->name);
	mfd_error_at(c, stack[n - 1], "next step '%s' closes the loop %s; the only loop allowed is a switch case back to "
		"its own step", stack[0]->name, mfd_sb_str(&path));
}

/*
 * Reports every back edge of a depth-first search over next, taking roots in IR order, except a switch case
 * back to its own step. Iterative, with an explicit stack, because a flow may be long.
 */
static void
check_cycles(Compile *c)
{
	enum { NEW, ACTIVE, DONE };
	Flow *f = c->flow;
	size_t n = f->nsteps, sp, r;
	Step **stack = mfd_alloc(c->arena, n * sizeof *stack), *s, *t;
	size_t *edge = mfd_alloc(c->arena, n * sizeof *edge);  /* next edge to follow, by step index */
	size_t *depth = mfd_alloc(c->arena, n * sizeof *depth); /* stack position of an ACTIVE step */
	unsigned char *state = mfd_alloc(c->arena, n);

	for (r = 0; r < n; r++) {
		if (state[r] != NEW)
			continue;
		sp = 0;
		stack[sp++] = &f->steps[r];
		state[r] = ACTIVE;
		while (sp > 0) {
			s = stack[sp - 1];
			if (edge[s->index] == s->nnext) {
				state[s->index] = DONE;
				sp--;
				continue;
			}
			t = s->next[edge[s->index]++].step;
			if (t == s && s->kind == STEP_SWITCH && has_case_to(s, s))
				continue;
			if (state[t->index] == ACTIVE) {
				report_cycle(c, stack + depth[t->index], sp - depth[t->index]);
			} else if (state[t->index] == NEW) {
				depth[t->index] = sp;
				state[t->index] = ACTIVE;
				stack[sp++] = t;
			}
		}
	}
}

/*
 * Metaflow's lint (check_ambiguous_joins) forbids a switch case that goes straight into a join, with this reason:
 * a conditional path cannot lead directly to a join step. Switch cases that reach a join through steps of their
 * own are fine, also when that join closes the foreach the switch runs in.
 */
static void
check_joins(Compile *c)
{
	Flow *f = c->flow;
	Step *s;
	size_t i, k;

	for (i = 0; i < f->nsteps; i++) {
		s = &f->steps[i];
		for (k = 0; k < s->ncases; k++)
			if (s->cases[k].to.step->kind == STEP_JOIN)
				mfd_error_at(c, s, "switch case %s goes straight into join '%s': a conditional path cannot lead "
					"directly to a join step; add an unconditional step on that path before the join",
					quote(c, s->cases[k].value), s->cases[k].to.name);
	}
}

/*
 * Returns 1 when s joins a foreach: a join step whose innermost split parent is a foreach. Metaflow lists the
 * split a join closes last among its split_parents, so that foreach is the one the join closes.
 */
int
mfd_is_foreach_join(const Step *s)
{
	return s->kind == STEP_JOIN && s->nparents > 0 && s->parents[s->nparents - 1].step->kind == STEP_FOREACH;
}

/*
 * Sets Step.depth: the number of foreach levels the step's tasks run in. That is the foreach steps among its
 * split_parents, less one when the step is the join that closes the innermost of them.
 */
static void
set_depths(Flow *f)
{
	Step *s;
	size_t i, k;

	for (i = 0; i < f->nsteps; i++) {
		s = &f->steps[i];
		s->depth = 0;
		for (k = 0; k < s->nparents; k++)
			s->depth += s->parents[k].step->kind == STEP_FOREACH;
		s->depth -= mfd_is_foreach_join(s);
	}
}

/* The first decorator of s of kind k, or NULL. */
static const Decorator *
find_deco(const Step *s, DecoKind k)
{
	size_t i;

	for (i = 0; i < s->ndecos; i++)
		if (s->decos[i].kind == k)
			return &s->decos[i];
	return NULL;
}

/*
 * Decides the job's executor (Flow.exec) and checks what depends on it. `create --executor` names it; without
 * it a flow with @kubernetes runs on k8s_job_executor (each step's decorator becomes its op's Kubernetes Job)
 * and any other on the runtime's threads. @kubernetes under another executor would be silently ignored, so it
 * is an error; so is a Celery queue without Celery, or for a step the flow does not have. Kubernetes pods
 * share no disk with the machine that deployed the flow, so k8s needs a datastore they can all reach.
 */
static void
check_executor(Compile *c)
{
	Flow *f = c->flow;
	const Step *kube = NULL;
	const char *queue;
	size_t i, k;

	for (i = 0; i < f->nsteps && !kube; i++)
		if (find_deco(&f->steps[i], DECO_KUBERNETES))
			kube = &f->steps[i];
	f->exec = kube ? EXEC_K8S : EXEC_THREADS;
	if (f->options.executor) {
		for (k = 0; k <= EXEC_DOCKER && strcmp(f->options.executor, mfd_exec_name((ExecKind)k)); k++)
			;
		if (k > EXEC_DOCKER) {
			mfd_error_at(c, NULL, "executor %s is not one of threads, multiprocess, celery, k8s and docker",
				quote(c, f->options.executor));
			return;
		}
		f->exec = (ExecKind)k;
	}
	for (i = 0; i < f->nsteps; i++)
		if (f->exec != EXEC_K8S && find_deco(&f->steps[i], DECO_KUBERNETES))
			mfd_error_at(c, &f->steps[i], "@kubernetes needs the k8s executor, not %s: its attributes describe "
				"the Kubernetes Job that runs the step (create --executor k8s, or leave --executor out)",
				mfd_exec_name(f->exec));
	if ((f->exec == EXEC_K8S || f->exec == EXEC_DOCKER) && !strcmp(f->settings.datastore, "local"))
		mfd_error_at(c, kube, "the %s executor runs every step in a %s of its own, which cannot reach the local "
			"datastore %s: deploy with --datastore=s3, azure or gs", mfd_exec_name(f->exec),
			f->exec == EXEC_K8S ? "pod" : "container", quote(c, f->settings.datastore_root));
	for (i = 0; i < f->options.nqueues; i++) {
		queue = f->options.queues[i].value;
		if (!mfd_find_step(f, f->options.queues[i].key))
			mfd_error_at(c, NULL, "--celery-queue %s=%s: the flow has no step %s", f->options.queues[i].key,
				queue, quote(c, f->options.queues[i].key));
		else if (f->exec != EXEC_CELERY)
			mfd_error_at(c, mfd_find_step(f, f->options.queues[i].key), "--celery-queue routes the step to a "
				"Celery queue, but the job's executor is %s (create --executor celery)", mfd_exec_name(f->exec));
		if (queue && !all_in(queue, "_.-"))
			mfd_error_at(c, NULL, "--celery-queue %s: queue %s may use only letters, digits, '_', '.' and '-'",
				f->options.queues[i].key, quote(c, queue));
	}
}

/* Checks c->flow, which mfd_read_ir read without errors. Returns the number of errors so far. */
int
mfd_check(Compile *c)
{
	Flow *f = c->flow;
	int resolved;
	size_t i;
	Step *end;

	resolved = check_names(c) == 0; /* the graph-wide checks print names and need each to mean one step */
	resolved &= resolve(c, NULL, &f->start, "start_step");
	resolved &= resolve(c, NULL, &f->end, "end_step");
	end = f->end.step;
	if (end && end->kind != STEP_END)
		mfd_error_at(c, end, "end_step names this step, whose type is %s, not end", mfd_step_kind_name(end->kind));
	check_decorators(c, NULL, f->decos, f->ndecos);
	check_triggers(c);
	check_finish(c);
	check_schedule(c);
	if (f->settings.environment && strcmp(f->settings.environment, "local") != 0)
		mfd_error_at(c, NULL, "--environment=%s is not supported: %s", f->settings.environment, NEEDS_ENVIRONMENT);
	for (i = 0; i < f->nsteps; i++) {
		resolved &= resolve_step(c, &f->steps[i]);
		check_step(c, &f->steps[i]);
		check_decorators(c, &f->steps[i], f->steps[i].decos, f->steps[i].ndecos);
	}
	if (resolved)
		check_executor(c);
	if (resolved) {
		check_in_funcs(c);
		check_cycles(c);
		check_joins(c);
		set_depths(f);
	}
	return c->diags.nerrors;
}

/* Settings */

/* The first setting in which a (there) and b (here) differ, with both values; NULL when they are the same. */
static const char *
settings_differ(Compile *c, const Settings *a, const Settings *b)
{
	static const struct {
		const char *name;
		size_t offset;
	} fields[] = {
		{"datastore", offsetof(Settings, datastore)},
		{"datastore_root", offsetof(Settings, datastore_root)},
		{"metadata", offsetof(Settings, metadata)},
		{"environment", offsetof(Settings, environment)},
		{"event_logger", offsetof(Settings, event_logger)},
		{"monitor", offsetof(Settings, monitor)},
		{"python", offsetof(Settings, python)},
		{"username", offsetof(Settings, username)},
	};
	const char *x, *y;
	size_t i;

	for (i = 0; i < MFD_COUNT(fields); i++) {
		x = *(const char *const *)((const char *)a + fields[i].offset);
		y = *(const char *const *)((const char *)b + fields[i].offset);
		if (strcmp(x, y) != 0)
			return mfd_printf(c->arena, "%s %s here, %s there", fields[i].name, quote(c, y), quote(c, x));
	}
	if (a->nenv_allowlist != b->nenv_allowlist)
		return "env_allowlist";
	for (i = 0; i < a->nenv_allowlist; i++)
		if (strcmp(a->env_allowlist[i], b->env_allowlist[i]) != 0)
			return "env_allowlist";
	return NULL;
}

/*
 * Checks the flows of one file, each checked without errors, against each other. Their job names must differ:
 * a code location cannot hold two jobs of one name (nor their sensors and schedules, named after the job). And
 * their settings must be equal: the file's runtime objects set Metaflow's environment (user, datastore root)
 * for the whole process when the file loads, so every flow must see the same Metaflow configuration.
 * Problems are reported at the later flow. Returns the number of errors of all flows.
 */
int
mfd_check_many(Compile *units, size_t n)
{
	const Flow *f, *g;
	const char *why;
	int errors = 0;
	size_t i, j;

	for (i = 1; i < n; i++) {
		f = units[i].flow;
		for (j = 0; j < i; j++) {
			g = units[j].flow;
			if (strcmp(f->job_name, g->job_name) == 0) {
				mfd_error_at(&units[i], NULL, "job name %s is already the job of flow %zu, %s (%s): a file cannot "
					"hold two jobs of one name", quote(&units[i], f->job_name), j + 1, g->name, g->file);
				break;
			}
		}
		g = units[0].flow;
		if ((why = settings_differ(&units[i], &g->settings, &f->settings)))
			mfd_error_at(&units[i], NULL, "its Metaflow settings differ from those of flow '%s' (%s); the flows of "
				"one file run with one Metaflow configuration: deploy them with the same top-level options",
				g->name, why);
	}
	for (i = 0; i < n; i++)
		errors += units[i].diags.nerrors;
	return errors;
}
