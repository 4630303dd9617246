/*
 * diag.c: collecting and formatting diagnostics.
 *
 * A pass reports every problem it finds and goes on; the driver looks at the error count between passes
 * (SQLite's nErr). Diagnostics and their messages live in the compile's arena and are handed to the caller in
 * the MfdResult as they are. One format serves the command line, the Python exception and the golden tests:
 *
 *     /src/flow.py:42: error: step 'train': @kubernetes is not supported: ...
 *     error: steps[3].next: expected array of strings, got string
 *     /src/b.py: error: flow 'BFlow': flow 'AFlow' (/src/a.py) has the same job name 'BFlow'
 *
 * The flow part appears only in a compile of several flows, where each flow reports into its own Diags
 * labelled with the flow (Diags.flow). The reader reports at the path of a field; the later passes report at a
 * step or at the flow with mfd_error_at.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

void
mfd_diags_init(Diags *d, MfdArena *a)
{
	memset(d, 0, sizeof *d);
	d->arena = a;
}

/*
 * Records a diagnostic whose message is formatted from fmt. step and file (either may be NULL) are copied, so
 * the result does not point into the caller's IR tree; the flow label is d->flow, which the driver keeps in
 * the arena.
 */
void
mfd_diag(Diags *d, MfdSeverity sev, const char *step, const char *file, int line, const char *fmt, ...)
{
	MfdDiag *p;
	va_list ap;
	size_t cap;

	if (d->n == d->cap) {
		cap = d->cap ? 2 * d->cap : 8;
		p = mfd_realloc(d->arena, d->v, d->cap * sizeof *p, cap * sizeof *p);
		if (!p)
			return;
		d->v = p;
		d->cap = cap;
	}
	p = &d->v[d->n];
	va_start(ap, fmt);
	p->message = mfd_vprintf(d->arena, fmt, ap);
	va_end(ap);
	if (!p->message)
		return;
	p->severity = sev;
	p->flow = d->flow;
	p->step = step ? mfd_strdup(d->arena, step) : NULL;
	p->file = file ? mfd_strdup(d->arena, file) : NULL;
	p->line = line;
	d->n++;
	if (sev == MFD_ERROR)
		d->nerrors++;
}

/*
 * Reports an error of flow c at step s, or at the flow (its file) when s is NULL: the error every pass after
 * the reader reports. The step's name is shown as is when it prints safely on one line (mfd_quote
 * single-quotes it), else as its escaped literal.
 */
void
mfd_error_at(Compile *c, const Step *s, const char *fmt, ...)
{
	const char *name = NULL;
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = mfd_vprintf(c->arena, fmt, ap);
	va_end(ap);
	if (s) {
		name = mfd_quote(c->arena, s->name, strlen(s->name));
		if (*name == '\'')
			name = s->name;
	}
	mfd_diag(&c->diags, MFD_ERROR, name, s ? s->file : c->flow->file, s ? s->line : 0, "%s", msg);
}

const char *
mfd_severity_name(MfdSeverity s)
{
	return s == MFD_WARNING ? "warning" : "error";
}

/* Appends the formatted text to buf as snprintf does; *len counts every byte, even those that did not fit. */
static void
put(char *buf, size_t size, size_t *len, const char *fmt, ...) MFD_PRINTF(4, 5);

static void
put(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(*len < size ? buf + *len : NULL, *len < size ? size - *len : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		*len += (size_t)n;
}

size_t
mfd_diag_format(const MfdDiag *d, char *buf, size_t size)
{
	size_t len = 0;

	if (size)
		buf[0] = '\0';
	if (d->file && d->file[0] && d->line > 0)
		put(buf, size, &len, "%s:%d: ", d->file, d->line);
	else if (d->file && d->file[0])
		put(buf, size, &len, "%s: ", d->file);
	put(buf, size, &len, "%s: ", mfd_severity_name(d->severity));
	if (d->flow)
		put(buf, size, &len, "flow '%s': ", d->flow);
	if (d->step)
		put(buf, size, &len, "step '%s': ", d->step);
	put(buf, size, &len, "%s", d->message);
	return len;
}
