/*
 * mfd.h: the whole public API of the metaflow-dagster compiler core.
 *
 * The core compiles a flow IR (docs/ir.md) into the text of a Dagster definitions file, or several flow IRs into
 * one file that holds all their jobs. A caller builds each IR as a tree of MfdValue nodes in an arena it owns (the
 * Python binding from dicts and lists; mfdc, the tests and the fuzzer from JSON through jansson), then calls
 * mfd_compile or mfd_compile_many. The core never includes Python.h, never prints,
 * never exits and has no global mutable state, so compiles may run concurrently in different threads.
 *
 * Every pointer in an MfdResult belongs to the result and stays valid until mfd_result_free.
 */
#ifndef MFD_H
#define MFD_H

#include <stddef.h>

#define MFD_VERSION "0.1.0"
#define MFD_IR_VERSION 1

typedef struct MfdArena MfdArena;
typedef struct MfdValue MfdValue;

/* Arenas: memory freed all at once. mfd_arena_new returns NULL when out of memory. */
MfdArena *mfd_arena_new(void);
void mfd_arena_free(MfdArena *a);

/*
 * Values: the neutral input form of the IR (null, bool, int, float, string, array, object with ordered keys),
 * allocated in an arena. Strings are UTF-8 and copied; they may contain NUL bytes. Constructors return NULL
 * and the adders -1 when out of memory; the adders return 0 on success. mfd_object_put appends: the caller
 * keeps keys unique.
 */
MfdValue *mfd_null(MfdArena *a);
MfdValue *mfd_bool(MfdArena *a, int b);
MfdValue *mfd_int(MfdArena *a, long long i);
MfdValue *mfd_float(MfdArena *a, double d);
MfdValue *mfd_string(MfdArena *a, const char *s, size_t len);
MfdValue *mfd_array(MfdArena *a);
MfdValue *mfd_object(MfdArena *a);
int mfd_array_push(MfdArena *a, MfdValue *array, MfdValue *item);
int mfd_object_put(MfdArena *a, MfdValue *object, const char *key, size_t keylen, MfdValue *value);

/* Diagnostics */
typedef enum MfdSeverity {
	MFD_ERROR,
	MFD_WARNING,
} MfdSeverity;

typedef struct MfdDiag {
	MfdSeverity severity;
	const char *step;    /* the step the problem is about, or NULL */
	const char *file;    /* source file of the flow, or NULL */
	int line;            /* 1-based line in file, or 0 when unknown */
	const char *message; /* one line, no trailing period */
	const char *flow;    /* in a compile of several flows, the flow the problem is about: its name, or "#N" for
	                        the Nth IR when it gives none; NULL in a compile of one flow */
} MfdDiag;

/* "error" or "warning". */
const char *mfd_severity_name(MfdSeverity s);

/*
 * Formats d as "file:line: error: flow 'Name': step 'name': message", leaving out the parts d does not have.
 * Writes at most size bytes including the NUL (buf may be NULL when size is 0) and returns the length of the
 * whole text, as snprintf does.
 */
size_t mfd_diag_format(const MfdDiag *d, char *buf, size_t size);

/* Compiling */
typedef struct MfdResult {
	const char *text;      /* the generated Python module, NUL-terminated; NULL when nerrors > 0 */
	size_t len;            /* strlen(text), or 0 */
	const MfdDiag *diags;  /* every diagnostic, in the order found */
	size_t ndiags;
	int nerrors;           /* diagnostics with severity MFD_ERROR */
	MfdArena *arena;       /* private: owns everything above */
} MfdResult;

/*
 * Compiles the IR tree ir, pasting runtime_src (NULL means "") into the output. Fills *out, which the caller
 * releases with mfd_result_free whatever happened, and returns out->nerrors. ir is only read; it may live in
 * any arena. Running out of memory is reported as the error "out of memory".
 */
int mfd_compile(const MfdValue *ir, const char *runtime_src, MfdResult *out);

/*
 * Compiles the n IR trees irs[0..n-1] into one definitions file: the runtime pasted once, then each flow's
 * literal, runtime object, ops and job, and one Definitions with every job, schedule, sensor and event asset.
 * Op names and the file's per-flow Python names carry the flow's job name (docs/codegen.md, "Several flows in
 * one file"). Every IR is read, checked and lowered, so one call reports the problems of all of them, each
 * naming its flow; then the flows are checked against each other (job names, settings, generated names). With
 * n == 1 the result is mfd_compile's; n == 0 is an error. Same contract as mfd_compile otherwise.
 */
int mfd_compile_many(const MfdValue *const *irs, size_t n, const char *runtime_src, MfdResult *out);
void mfd_result_free(MfdResult *r);

/* Names */

/*
 * The Dagster job name of a flow: name, the flow's name or under @project its project_flow_name
 * ("project.branch.Flow"), as a Python identifier (every character outside [A-Za-z0-9_] becomes '_', and a
 * name that would start with a digit starts with '_'). The Metaflow plugin writes it into the IR's job_name,
 * so this is the one place that decides it. Writes at most size bytes including the NUL (buf may be NULL when
 * size is 0) and returns the length of the whole name, as snprintf does.
 */
size_t mfd_job_name(const char *name, char *buf, size_t size);

#endif
