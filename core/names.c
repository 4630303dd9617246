/*
 * names.c: Metaflow names to Python and Dagster names, driven by one table (NAME_KINDS in internal.h), and the
 * other names the generated file and its runtime use: the Dagster job name of a flow (mfd_job_name, which the
 * Metaflow plugin calls too), the sensors' names, the Metaflow events runs publish and the cron of Dagster.
 * Nothing outside this file builds such a name, so the plugin, the file and the runtime agree on each.
 *
 * Dagster names match ^[A-Za-z0-9_]+$ and the generated file uses them as Python identifiers too, so every
 * character outside that set becomes '_' and a name that would start with a digit gets a leading '_'. Step
 * names are already identifiers (check.c makes sure), so an op's name is its step's name behind a prefix and
 * two steps never share one. Character tests are ASCII-only and ignore the locale.
 */
#include <string.h>

#include "internal.h"

static const struct {
	const char *prefix;
	const char *suffix;
} kinds[] = {
#define X(kind, prefix, suffix) {prefix, suffix},
	NAME_KINDS(X)
#undef X
};

static int
is_alpha(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static int
is_digit(int ch)
{
	return ch >= '0' && ch <= '9';
}

/* Returns 1 when s is a non-empty ASCII Python identifier. */
int
mfd_is_identifier(const char *s)
{
	if (!is_alpha((unsigned char)*s))
		return 0;
	while (*++s)
		if (!is_alpha((unsigned char)*s) && !is_digit((unsigned char)*s))
			return 0;
	return 1;
}

/*
 * Writes s as a Python identifier into buf, as snprintf writes (at most size bytes with the NUL; buf may be
 * NULL when size is 0), and returns the length of the whole name. Every character outside [A-Za-z0-9_]
 * becomes '_', a multi-byte UTF-8 character one '_' (as a regular expression over the characters of a str
 * replaces it), and a name that would start with a digit, or be empty, starts with '_'.
 */
static size_t
identifier(const char *s, char *buf, size_t size)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = 0;
	int ch;

	if (is_digit(*p) || !*p) {
		if (n + 1 < size)
			buf[n] = '_';
		n++;
	}
	for (; *p; p++) {
		if ((*p & 0xc0) == 0x80 && p > (const unsigned char *)s && p[-1] >= 0x80)
			continue; /* a continuation byte of the character already written */
		ch = is_alpha(*p) || is_digit(*p) ? *p : '_';
		if (n + 1 < size)
			buf[n] = (char)ch;
		n++;
	}
	if (size)
		buf[n < size ? n : size - 1] = '\0';
	return n;
}

/* s made an identifier (identifier()), as a new arena string. */
static const char *
arena_identifier(MfdArena *a, const char *s)
{
	size_t n = identifier(s, NULL, 0);
	char *name = mfd_alloc(a, n + 1);

	identifier(s, name, n + 1);
	return name;
}

/* The name of kind k for the Metaflow name s, as a new arena string. */
const char *
mfd_name(MfdArena *a, NameKind k, const char *s)
{
	return arena_identifier(a, mfd_printf(a, "%s%s%s", kinds[k].prefix, s, kinds[k].suffix));
}

/*
 * The Dagster name of the sensor of kind k (NAME_EVENT_SENSOR, NAME_FINISH_SENSOR) of job: the job, the kind's
 * suffix and the n names it waits for (events, flows) joined by "_and_", as an identifier, cut to
 * MFD_MAX_SENSOR_NAME bytes. Returns a new arena string.
 */
const char *
mfd_sensor_name(MfdArena *a, NameKind k, const char *job, const char *const *names, size_t n)
{
	StrBuf sb;
	char *name;
	size_t i;

	mfd_sb_init(&sb, a);
	mfd_sb_printf(&sb, "%s%s", job, kinds[k].suffix);
	for (i = 0; i < n; i++)
		mfd_sb_printf(&sb, "%s%s", i ? "_and_" : "", names[i]);
	name = (char *)arena_identifier(a, mfd_sb_str(&sb) ? mfd_sb_str(&sb) : "");
	if (strlen(name) > MFD_MAX_SENSOR_NAME)
		name[MFD_MAX_SENSOR_NAME] = '\0';
	return name;
}

/*
 * The Metaflow event that a task of step publishes when it succeeds, as Argo Workflows names it:
 * metaflow.<flow>.<step>, flow being the flow's name or, under @project, its project_flow_name
 * (project.branch.Flow). @trigger_on_finish waits for metaflow.<flow>.end. Returns a new arena string.
 */
const char *
mfd_event_name(MfdArena *a, const char *flow, const char *step)
{
	return mfd_printf(a, "metaflow.%s.%s", flow, step);
}

size_t
mfd_job_name(const char *name, char *buf, size_t size)
{
	return identifier(name, buf, size);
}

/*
 * Metaflow's cron (the 6-field AWS form "min hour day month weekday year", or 5 fields) as the 5-field cron
 * Dagster takes: the year field is dropped, as Argo Workflows drops it, and AWS's '?' ("no value") becomes
 * '*'. Returns a new arena string, or NULL when the expression has neither 5 nor 6 fields.
 */
const char *
mfd_dagster_cron(MfdArena *a, const char *cron)
{
	char *out = mfd_printf(a, "%s", cron), *w = out;
	const char *p = cron;
	int fields = 0;

	while (*p) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		if (++fields > 6)
			return NULL;
		if (fields <= 5) {
			if (fields > 1)
				*w++ = ' ';
			for (; *p && *p != ' ' && *p != '\t'; p++)
				*w++ = *p == '?' ? '*' : *p;
		} else {
			while (*p && *p != ' ' && *p != '\t')
				p++;
		}
	}
	*w = '\0';
	return fields == 5 || fields == 6 ? out : NULL;
}
