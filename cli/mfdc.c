/*
 * mfdc: the command-line driver of the compiler core.
 *
 *     mfdc [-r RUNTIME.py] [-o OUT.py] IR.json [IR.json ...]
 *
 * Reads the IR through jansson, compiles it with the runtime source pasted in (empty without -r), prints every
 * diagnostic to stderr and, only when there is no error, writes the module to OUT.py, or to stdout without -o.
 * Several IR files compile into one file of several flows (mfd_compile_many), in the order given.
 * OUT.py is replaced atomically: the text goes to a temporary file in the same directory, which is synced and
 * then renamed over OUT.py, so readers see the old file or the new one and never a part of either.
 *
 * Exit status: 0 on success, 1 when the IR has errors (invalid JSON included), 2 on usage and I/O errors.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

enum {
	EXIT_OK,
	EXIT_COMPILE,
	EXIT_USAGE,
};

static const char usage[] = "usage: mfdc [-r RUNTIME.py] [-o OUT.py] IR.json [IR.json ...]\n";

/*
 * Reads the whole file at path into a malloc'd, NUL-terminated buffer and sets *len. Returns NULL after
 * printing why on failure.
 */
static char *
slurp(const char *path, size_t *len)
{
	char *buf = NULL, *p;
	size_t cap = 0, n = 0;
	FILE *f;

	if (!(f = fopen(path, "rb"))) {
		fprintf(stderr, "mfdc: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (cap - n < 2) {
			cap = cap ? 2 * cap : 1 << 16;
			if (!(p = realloc(buf, cap))) {
				fprintf(stderr, "mfdc: %s: out of memory\n", path);
				goto fail;
			}
			buf = p;
		}
		n += fread(buf + n, 1, cap - n - 1, f);
		if (ferror(f)) {
			fprintf(stderr, "mfdc: %s: read error\n", path);
			goto fail;
		}
		if (feof(f))
			break;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
fail:
	fclose(f);
	free(buf);
	return NULL;
}

/* Writes all n bytes of s to fd. Returns 0, or -1 with errno set. */
static int
write_all(int fd, const char *s, size_t n)
{
	ssize_t k;

	while (n > 0) {
		k = write(fd, s, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -1;
		s += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Replaces the file at path with the n bytes at s, atomically. Returns 0, or -1 after printing why. */
static int
write_atomic(const char *path, const char *s, size_t n)
{
	char *tmp = malloc(strlen(path) + sizeof ".XXXXXX");
	mode_t mask;
	int fd;

	if (!tmp) {
		fprintf(stderr, "mfdc: %s: out of memory\n", path);
		return -1;
	}
	sprintf(tmp, "%s.XXXXXX", path);
	if ((fd = mkstemp(tmp)) < 0) {
		fprintf(stderr, "mfdc: %s: %s\n", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	mask = umask(0);
	umask(mask);
	if (fchmod(fd, 0666 & ~mask) || write_all(fd, s, n) || fsync(fd)) {
		fprintf(stderr, "mfdc: %s: %s\n", tmp, strerror(errno));
		close(fd);
		goto fail;
	}
	if (close(fd) || rename(tmp, path)) {
		fprintf(stderr, "mfdc: %s: %s\n", path, strerror(errno));
		goto fail;
	}
	free(tmp);
	return 0;
fail:
	unlink(tmp);
	free(tmp);
	return -1;
}

static void
print_diag(const MfdDiag *d)
{
	size_t n = mfd_diag_format(d, NULL, 0);
	char *s = malloc(n + 1);

	if (s)
		mfd_diag_format(d, s, n + 1);
	fprintf(stderr, "%s\n", s ? s : d->message);
	free(s);
}

/*
 * Reads and parses the IR file at path into a. Returns the tree, or NULL after printing why and setting
 * *status: EXIT_COMPILE for invalid JSON, EXIT_USAGE when the file cannot be read.
 */
static MfdValue *
read_ir(MfdArena *a, const char *path, int *status)
{
	char err[4096], *text;
	MfdValue *ir;
	size_t len;

	if (!(text = slurp(path, &len))) {
		*status = EXIT_USAGE;
		return NULL;
	}
	if (!(ir = mfd_json_parse(a, path, text, len, err, sizeof err))) {
		fprintf(stderr, "%s\n", err);
		*status = EXIT_COMPILE;
	}
	free(text);
	return ir;
}

int
main(int argc, char **argv)
{
	const char *runtime_path = NULL, *out_path = NULL;
	int opt, status = EXIT_USAGE;
	MfdArena *arena = NULL;
	MfdResult result = {0};
	const MfdValue **irs;
	char *runtime = NULL;
	size_t i, n;

	while ((opt = getopt(argc, argv, "hr:o:")) != -1) {
		switch (opt) {
		case 'r':
			runtime_path = optarg;
			break;
		case 'o':
			out_path = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return EXIT_OK;
		default:
			fputs(usage, stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	n = (size_t)(argc - optind);
	if (runtime_path && !(runtime = slurp(runtime_path, &i)))
		goto done;
	if (!(arena = mfd_arena_new()) || !(irs = mfd_alloc(arena, n * sizeof *irs))) {
		fputs("mfdc: out of memory\n", stderr);
		goto done;
	}
	for (i = 0; i < n; i++)
		if (!(irs[i] = read_ir(arena, argv[optind + (int)i], &status)))
			goto done;
	mfd_compile_many(irs, n, runtime ? runtime : "", &result);
	for (i = 0; i < result.ndiags; i++)
		print_diag(&result.diags[i]);
	if (result.nerrors) {
		status = EXIT_COMPILE;
		goto done;
	}
	if (out_path) {
		if (write_atomic(out_path, result.text, result.len))
			goto done;
	} else if (fwrite(result.text, 1, result.len, stdout) != result.len || fflush(stdout)) {
		fprintf(stderr, "mfdc: stdout: %s\n", strerror(errno));
		goto done;
	}
	status = EXIT_OK;
done:
	mfd_result_free(&result);
	mfd_arena_free(arena);
	free(runtime);
	return status;
}
