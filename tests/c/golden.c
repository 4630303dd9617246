/*
 * golden.c: the golden tests (cproc's shape).
 *
 *     golden DIR
 *
 * For each DIR/NAME.json, in name order, compiles the IR with the runtime text RUNTIME (an import, which the
 * file puts at its top, and the line "# <runtime>", which it pastes where the runtime goes) and compares
 * the result with DIR/NAME.py (the expected module) or, when the IR has errors, with DIR/NAME.err (the
 * expected diagnostics, one per line). A NAME.json whose top level is an array holds several IRs, compiled
 * into one file with mfd_compile_many. Each input is compiled twice and the two results must be identical
 * byte for byte. With UPDATE_GOLDEN=1 in the environment the expected files are written instead, and a stale
 * file of the other kind is removed.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "test.h"

#define RUNTIME "import json\n\n# <runtime>\n"

static int update;

/* The whole file at path, malloc'd and NUL-terminated, or NULL with errno set. */
static char *
slurp(const char *path, size_t *len)
{
	char *buf = NULL, *p;
	size_t cap = 0, n = 0;
	FILE *f = fopen(path, "rb");

	if (!f)
		return NULL;
	do {
		if (cap - n < 2) {
			cap = cap ? 2 * cap : 1 << 16;
			if (!(p = realloc(buf, cap))) {
				free(buf);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			buf = p;
		}
		n += fread(buf + n, 1, cap - n - 1, f);
	} while (!feof(f) && !ferror(f));
	if (ferror(f)) {
		free(buf);
		fclose(f);
		errno = EIO;
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/*
 * Compiles ir (an array: the IRs of one file of several flows) and returns what its golden file holds: the
 * module, or the diagnostics one per line. Sets *ext to ".py" or ".err". The text lives in a.
 */
static const char *
outcome(MfdArena *a, const MfdValue *ir, const char **ext)
{
	MfdResult r;
	StrBuf sb;
	size_t i, n;
	char *line;

	if (ir->kind == VAL_ARRAY)
		mfd_compile_many((const MfdValue *const *)ir->u.arr.v, ir->u.arr.n, RUNTIME, &r);
	else
		mfd_compile(ir, RUNTIME, &r);
	mfd_sb_init(&sb, a);
	if (r.nerrors == 0) {
		mfd_sb_putn(&sb, r.text, r.len);
		*ext = ".py";
	} else {
		for (i = 0; i < r.ndiags; i++) {
			n = mfd_diag_format(&r.diags[i], NULL, 0);
			line = mfd_alloc(a, n + 1);
			mfd_diag_format(&r.diags[i], line, n + 1);
			mfd_sb_printf(&sb, "%s\n", line);
		}
		*ext = ".err";
	}
	mfd_result_free(&r);
	return mfd_sb_str(&sb);
}

/* Prints the first line where got and want differ. */
static void
show_diff(const char *path, const char *got, const char *want)
{
	const char *g = got, *w = want;
	int line = 1;

	for (; *got && *got == *want; got++, want++)
		if (*got == '\n') {
			line++;
			g = got + 1;
			w = want + 1;
		}
	fprintf(stderr, "%s:%d: output differs\n  got:  %.*s\n  want: %.*s\n", path, line, (int)strcspn(g, "\n"), g,
		(int)strcspn(w, "\n"), w);
}

static int
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");

	if (!f || fputs(text, f) == EOF || fclose(f) == EOF) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Runs the golden test of dir/name.json. Returns 0 when it passed. */
static int
run(const char *dir, const char *name)
{
	char path[4096], expected[4096], other[4096], err[4096];
	const char *got, *again, *ext, *ext2;
	char *json, *want;
	MfdArena *a;
	MfdValue *ir;
	size_t len;
	int failed = 1;

	snprintf(path, sizeof path, "%s/%s.json", dir, name);
	if (!(json = slurp(path, &len))) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return 1;
	}
	if (!(a = mfd_arena_new())) {
		fprintf(stderr, "%s: out of memory\n", path);
		goto done;
	}
	if (!(ir = mfd_json_parse(a, path, json, len, err, sizeof err))) {
		fprintf(stderr, "%s\n", err);
		goto done;
	}
	got = outcome(a, ir, &ext);
	again = outcome(a, ir, &ext2);
	if (strcmp(got, again) != 0 || strcmp(ext, ext2) != 0) {
		fprintf(stderr, "%s: two compiles of the same IR differ\n", path);
		goto done;
	}
	snprintf(expected, sizeof expected, "%s/%s%s", dir, name, ext);
	snprintf(other, sizeof other, "%s/%s%s", dir, name, strcmp(ext, ".py") == 0 ? ".err" : ".py");
	if (update) {
		failed = write_file(expected, got) || (unlink(other) && errno != ENOENT);
		goto done;
	}
	if (access(other, F_OK) == 0) {
		fprintf(stderr, "%s: compiled to %s, but %s exists\n", path, ext, other);
		goto done;
	}
	if (!(want = slurp(expected, &len))) {
		fprintf(stderr, "%s: %s\n", expected, strerror(errno));
		goto done;
	}
	failed = strcmp(got, want) != 0;
	if (failed)
		show_diff(expected, got, want);
	free(want);
done:
	mfd_arena_free(a);
	free(json);
	return failed;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
main(int argc, char **argv)
{
	char **names = NULL, **p;
	size_t n = 0, cap = 0, len, i;
	struct dirent *e;
	const char *u;
	DIR *d;

	if (argc != 2) {
		fprintf(stderr, "usage: golden DIR\n");
		return 2;
	}
	u = getenv("UPDATE_GOLDEN");
	update = u && strcmp(u, "1") == 0;
	if (!(d = opendir(argv[1]))) {
		fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	while ((e = readdir(d))) {
		len = strlen(e->d_name);
		if (len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 32;
			if (!(p = realloc(names, cap * sizeof *names)))
				return 2;
			names = p;
		}
		if (!(names[n] = malloc(len - 4)))
			return 2;
		memcpy(names[n], e->d_name, len - 5);
		names[n++][len - 5] = '\0';
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof *names, by_name);
	for (i = 0; i < n; i++) {
		if (run(argv[1], names[i]))
			test.failed++;
		else
			test.passed++;
		free(names[i]);
	}
	free(names);
	return test_report();
}
