/*
 * names.c: Metaflow names to Python and Dagster names, driven by one table (NAME_KINDS in internal.h).
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

/* The name of kind k for the Metaflow name s, as a new arena string (NULL when out of memory). */
const char *
mfd_name(MfdArena *a, NameKind k, const char *s)
{
	const char *first = *kinds[k].prefix ? kinds[k].prefix : s;
	char *name, *p;

	name = mfd_printf(a, "%s%s%s%s", is_digit((unsigned char)*first) || !*first ? "_" : "", kinds[k].prefix, s,
		kinds[k].suffix);
	if (name)
		for (p = name; *p; p++)
			if (!is_alpha((unsigned char)*p) && !is_digit((unsigned char)*p))
				*p = '_';
	return name;
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
