/*
 * test.h: a tiny assertion harness for the C tests.
 *
 * ASSERT records a failed condition and goes on, so one run shows every failure. RUN runs a test function and
 * counts it as passed when none of its assertions failed. test_report prints "N passed, N failed" alone on a
 * line and returns the exit status: non-zero when anything failed.
 */
#ifndef TEST_H
#define TEST_H

#include <stdio.h>
#include <string.h>

static struct {
	int passed; /* tests that passed */
	int failed; /* tests that failed */
	int fails;  /* failed assertions in the current test */
} test;

#define ASSERT(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: ASSERT(%s) failed\n", __FILE__, __LINE__, #cond); \
			test.fails++; \
		} \
	} while (0)

#define ASSERT_STREQ(got, want) \
	do { \
		const char *got_ = (got), *want_ = (want); \
		if (!got_ || strcmp(got_, want_) != 0) { \
			fprintf(stderr, "%s:%d: %s\n  got:  %s\n  want: %s\n", __FILE__, __LINE__, #got, \
				got_ ? got_ : "(null)", want_); \
			test.fails++; \
		} \
	} while (0)

#define RUN(fn) \
	do { \
		test.fails = 0; \
		fn(); \
		if (test.fails) { \
			fprintf(stderr, "FAIL %s\n", #fn); \
			test.failed++; \
		} else { \
			test.passed++; \
		} \
	} while (0)

static int
test_report(void)
{
	printf("%d passed, %d failed\n", test.passed, test.failed);
	return test.failed != 0;
}

#endif
