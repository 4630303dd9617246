/*
 * internal.h: what the files of core/ share (QBE's all.h, chibicc's chibicc.h): the tables first, then one
 * section per file: the support files, then the passes in order.
 *
 * Every object of a compile lives in the compile's arena, so structs hold plain pointers and nothing is freed
 * one by one. Every extern symbol carries the mfd_ prefix; types are PascalCase and enum constants upper case.
 * Tables that pair an enum with names are X-macros, so the enum and its names come from the same list.
 */
#ifndef MFD_INTERNAL_H
#define MFD_INTERNAL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include "mfd.h"

#if defined(__GNUC__) || defined(__clang__)
#define MFD_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define MFD_PRINTF(fmt, args)
#endif

#define MFD_COUNT(a) (sizeof(a) / sizeof((a)[0]))

typedef struct Step Step;
typedef struct Compile Compile;
typedef struct Plan Plan;

/* Tables, as X-macros: each enum and its names come from one list. */

/*
 * Step kinds: Metaflow's DAGNode.type, with the least and most next steps a step of the kind has. Metaflow
 * types a linear start step "start"; a start step that splits keeps its split type.
 */
#define MANY (-1)
#define STEP_KINDS(X) \
	X(STEP_START,   "start",        1, 1) \
	X(STEP_LINEAR,  "linear",       1, 1) \
	X(STEP_JOIN,    "join",         1, 1) \
	X(STEP_SPLIT,   "split",        2, MANY) \
	X(STEP_FOREACH, "foreach",      1, 1) \
	X(STEP_SWITCH,  "split-switch", 1, MANY) \
	X(STEP_END,     "end",          0, 0)

typedef enum StepKind {
#define X(kind, name, minnext, maxnext) kind,
	STEP_KINDS(X)
#undef X
} StepKind;

/*
 * Parameter types: the IR's name, and the Dagster config type of the start op's launchpad field. A json
 * Parameter's field takes JSON text, a file Parameter's the descriptor text of the uploaded file.
 */
#define PARAM_TYPES(X) \
	X(PARAM_STR,   "str",   "String") \
	X(PARAM_INT,   "int",   "Int") \
	X(PARAM_FLOAT, "float", "Float") \
	X(PARAM_BOOL,  "bool",  "Bool") \
	X(PARAM_JSON,  "json",  "String") \
	X(PARAM_FILE,  "file",  "String")

typedef enum ParamType {
#define X(type, name, dagster) type,
	PARAM_TYPES(X)
#undef X
} ParamType;

/*
 * The decorator support matrix. HANDLED: the Dagster side implements it from the IR fields. FORWARDED: Metaflow
 * applies it inside the task, as it would under its own runtime. REJECTED: reported as not supported. Names
 * not listed are FORWARDED.
 */
#define REMOTE_LAUNCHER "tasks run where Dagster's executor runs its ops, not on a remote launcher"
#define NO_BATCH_EXECUTOR "no maintained Dagster step executor runs ops as AWS Batch jobs (dagster-aws has " \
	"ecs_executor, for ECS tasks, not Batch job queues); use @kubernetes (create --executor k8s), or run the " \
	"steps on Celery workers (create --executor celery)"
#define NEEDS_ENVIRONMENT "Metaflow builds its environment with micromamba from the conda-forge channel, " \
	"and metaflow-dagster does not bootstrap one; install the packages where the Dagster workers run instead"
#define DECORATORS(X) \
	X(DECO_RETRY,             "retry",             HANDLED,   "op attempts follow the retries field") \
	X(DECO_TIMEOUT,           "timeout",           HANDLED,   "the op enforces timeout_seconds") \
	X(DECO_ENVIRONMENT,       "environment",       HANDLED,   "the op sets env for the task") \
	X(DECO_CATCH,             "catch",             FORWARDED, "Metaflow runs the fallback inside the task") \
	X(DECO_RESOURCES,         "resources",         FORWARDED, "with the k8s executor, each op's resources (k8s.c)") \
	X(DECO_CARD,              "card",              FORWARDED, "Metaflow renders cards inside the task") \
	X(DECO_SECRETS,           "secrets",           FORWARDED, "Metaflow resolves secrets inside the task") \
	X(DECO_CONDA,             "conda",             REJECTED,  NEEDS_ENVIRONMENT) \
	X(DECO_PYPI,              "pypi",              REJECTED,  NEEDS_ENVIRONMENT) \
	X(DECO_CONDA_BASE,        "conda_base",        REJECTED,  NEEDS_ENVIRONMENT) \
	X(DECO_PYPI_BASE,         "pypi_base",         REJECTED,  NEEDS_ENVIRONMENT) \
	X(DECO_PROJECT,           "project",           HANDLED,   "job name and --branch/--production") \
	X(DECO_SCHEDULE,          "schedule",          HANDLED,   "a Dagster schedule from the schedule field") \
	X(DECO_TRIGGER,           "trigger",           HANDLED,   "a Dagster sensor on events") \
	X(DECO_TRIGGER_ON_FINISH, "trigger_on_finish", HANDLED,   "a Dagster sensor on upstream flows' end events") \
	X(DECO_PARALLEL,          "parallel",          REJECTED,  "it needs gang-scheduled workers") \
	X(DECO_KUBERNETES,        "kubernetes",        HANDLED,   "the k8s executor; each op's dagster-k8s/config (k8s.c)") \
	X(DECO_BATCH,             "batch",             REJECTED,  NO_BATCH_EXECUTOR) \
	X(DECO_SLURM,             "slurm",             REJECTED,  REMOTE_LAUNCHER)

typedef enum DecoHandling {
	HANDLED,
	FORWARDED,
	REJECTED,
} DecoHandling;

typedef enum DecoKind {
#define X(kind, name, handling, reason) kind,
	DECORATORS(X)
#undef X
	DECO_UNKNOWN,
} DecoKind;

/*
 * The Dagster executors a job can use (`create --executor`): the IR's name, and whether its ops run in
 * processes that share no disk with the run worker (so op outputs go through the Metaflow datastore, the
 * runtime's token IO manager, and tasks get the worker's environment rather than the run worker's).
 */
#define EXECUTORS(X) \
	X(EXEC_THREADS,      "threads",      0) /* the runtime's metaflow_threads: ops as threads of the run worker */ \
	X(EXEC_MULTIPROCESS, "multiprocess", 0) /* Dagster's multiprocess_executor: a process per op, one host */ \
	X(EXEC_CELERY,       "celery",       1) /* dagster_celery.celery_executor: ops on Celery workers */ \
	X(EXEC_K8S,          "k8s",          1) /* dagster_k8s.k8s_job_executor: an op per Kubernetes Job */ \
	X(EXEC_DOCKER,       "docker",       1) /* dagster_docker.docker_executor: an op per container */

typedef enum ExecKind {
#define X(kind, name, remote) kind,
	EXECUTORS(X)
#undef X
} ExecKind;

/* arena.c */

/*
 * With a catch installed, an allocation that fails longjmps to it instead of returning NULL (Lua's
 * luaD_throw): passes then never check for NULL, and the compile reports "out of memory".
 */
void mfd_arena_catch(MfdArena *a, jmp_buf *onfail);
void *mfd_alloc(MfdArena *a, size_t size);
void *mfd_realloc(MfdArena *a, void *p, size_t oldsize, size_t newsize);
char *mfd_strndup(MfdArena *a, const char *s, size_t len);
char *mfd_strdup(MfdArena *a, const char *s);
char *mfd_vprintf(MfdArena *a, const char *fmt, va_list ap);
char *mfd_printf(MfdArena *a, const char *fmt, ...) MFD_PRINTF(2, 3);

/* strbuf.c */

enum {
	SB_OK,
	SB_NOMEM,  /* an allocation failed */
	SB_TOOBIG, /* the text would exceed SB_MAX_LEN */
};

#define SB_MAX_LEN ((size_t)256 << 20)
#define SB_INDENT 4 /* spaces per indentation level */

typedef struct StrBuf {
	MfdArena *arena; /* where the text grows */
	char *buf;       /* the text so far, NUL-terminated when cap > 0 */
	size_t len;      /* bytes in buf, without the NUL */
	size_t cap;      /* bytes allocated for buf */
	int indent;      /* indentation level written at the start of each non-empty line */
	int bol;         /* the next byte starts a line */
	int err;         /* sticky: SB_OK until an append fails, then every append is a no-op */
} StrBuf;

void mfd_sb_init(StrBuf *sb, MfdArena *a);
void mfd_sb_putn(StrBuf *sb, const char *s, size_t n);
void mfd_sb_puts(StrBuf *sb, const char *s);
void mfd_sb_printf(StrBuf *sb, const char *fmt, ...) MFD_PRINTF(2, 3);
void mfd_sb_indent(StrBuf *sb, int delta);
void mfd_sb_pystr(StrBuf *sb, const char *s, size_t n);
void mfd_sb_pyvalue(StrBuf *sb, const MfdValue *v);
void mfd_sb_json(StrBuf *sb, const MfdValue *v);
const char *mfd_sb_str(StrBuf *sb);
const char *mfd_quote(MfdArena *a, const char *s, size_t n);

/* diag.c */

typedef struct Diags {
	MfdArena *arena; /* holds the array and the messages */
	const char *flow; /* MfdDiag.flow of every diagnostic recorded here: set in a compile of several flows */
	MfdDiag *v;      /* collected diagnostics, in the order found */
	size_t n;
	size_t cap;
	int nerrors;     /* entries with severity MFD_ERROR */
} Diags;

void mfd_diags_init(Diags *d, MfdArena *a);
void mfd_diag(Diags *d, MfdSeverity sev, const char *step, const char *file, int line, const char *fmt, ...)
	MFD_PRINTF(6, 7);
void mfd_error_at(Compile *c, const Step *s, const char *fmt, ...) MFD_PRINTF(3, 4);

/* value.c */

#define VALUE_KINDS(X) \
	X(VAL_NULL,   "null") \
	X(VAL_BOOL,   "boolean") \
	X(VAL_INT,    "integer") \
	X(VAL_FLOAT,  "float") \
	X(VAL_STRING, "string") \
	X(VAL_ARRAY,  "array") \
	X(VAL_OBJECT, "object")

typedef enum ValueKind {
#define X(kind, name) kind,
	VALUE_KINDS(X)
#undef X
} ValueKind;

typedef struct Member {
	const char *key; /* NUL-terminated copy; may also contain NUL bytes */
	size_t keylen;
	MfdValue *value;
} Member;

struct MfdValue {
	ValueKind kind;
	union {
		int b;                                              /* VAL_BOOL: 0 or 1 */
		long long i;                                        /* VAL_INT */
		double f;                                           /* VAL_FLOAT */
		struct { const char *s; size_t len; } str;          /* VAL_STRING: NUL-terminated copy */
		struct { MfdValue **v; size_t n, cap; } arr;        /* VAL_ARRAY */
		struct { Member *v; size_t n, cap; } obj;           /* VAL_OBJECT: keys in the order given */
	} u;
};

const char *mfd_value_kind_name(ValueKind k);
const MfdValue *mfd_object_get(const MfdValue *obj, const char *key);

/* ir.c */

#define MFD_MAX_DEPTH 64 /* deepest nesting accepted in free-form values (attributes, defaults) */

typedef struct StepRef {
	const char *name; /* as written in the IR */
	Step *step;       /* the step it names, set by check */
} StepRef;

typedef struct StrPair {
	const char *key;
	const char *value;
} StrPair;

typedef struct Decorator {
	const char *name;
	const MfdValue *attributes; /* an object */
	int is_static;              /* statically_defined */
	const char *spec;           /* --with spec for a non-static step decorator, or NULL */
	const char **given;         /* the attributes the flow gave (Metaflow's _user_defined_attributes) */
	size_t ngiven;
	int all_given;              /* the IR does not say which were given: take every attribute as given */
	DecoKind kind;              /* set by check */
} Decorator;

typedef struct SwitchCase {
	const char *value; /* the condition's value, as a string */
	StepRef to;
} SwitchCase;

struct Step {
	const char *name;
	StepKind kind;
	const char *file;
	int line;
	StepRef *next;             /* out_funcs, in source order */
	size_t nnext;
	StepRef *in;               /* in_funcs, sorted */
	size_t nin;
	StepRef *parents;          /* split_parents, outermost first */
	size_t nparents;
	StepRef join;              /* matching_join; name NULL when none */
	const char *foreach_var;   /* or NULL */
	int parallel;              /* @parallel foreach */
	int num_parallel;
	const char *condition;     /* switch condition attribute, or NULL when not a switch */
	SwitchCase *cases;         /* in source order */
	size_t ncases;
	Decorator *decos;          /* in Metaflow's order */
	size_t ndecos;
	int user_retries;          /* retries.user */
	int error_retries;         /* retries.error */
	int minutes_between;       /* retries.minutes_between */
	int timeout_seconds;       /* 0: no timeout */
	StrPair *env;              /* @environment vars */
	size_t nenv;
	StrPair *resources;        /* @resources attributes */
	size_t nresources;
	int index;                 /* position in Flow.steps */
	int depth;                 /* foreach levels the step's tasks run in, set by check */
};

typedef struct Param {
	const char *name;       /* as the user passes it; may contain '-' */
	const char *var;        /* attribute on the flow */
	ParamType type;
	const MfdValue *dflt;   /* resolved default; VAL_NULL when none */
	int required;
	const char *help;
} Param;

typedef struct Config {
	const char *name;
	const char *value; /* JSON text */
} Config;

typedef struct Event {
	const char *name;        /* event name, ^[A-Za-z0-9_.-]+$ */
	StrPair *params;         /* parameter name -> payload field */
	size_t nparams;
} Event;

/* @trigger: the events a flow waits for (all of them: AND), and the decorator's options. */
typedef struct Triggers {
	Event *events;
	size_t nevents;
	const MfdValue *value;   /* the IR's flow.triggers as given, for the FLOW literal */
} Triggers;

/* @trigger_on_finish: one upstream flow. check fills project/branch from the flow's own @project when the
 * decorator leaves them out, and the event the upstream's end task emits. */
typedef struct Upstream {
	const char *flow;        /* flow name, ^[A-Za-z0-9_]+$ */
	const char *project;     /* or NULL */
	const char *branch;      /* or NULL */
	const char *event;       /* metaflow.[project.branch.]Flow.end, set by check */
} Upstream;

/* @trigger_on_finish: the upstream flows (all of them: AND) and the decorator's options. */
typedef struct Finish {
	Upstream *flows;
	size_t nflows;
	const MfdValue *options; /* an object */
} Finish;

typedef struct Project {
	const char *name;
	const char *branch;
	const char *flow_name;
	int production;
} Project;

typedef struct Settings {
	const char *datastore;
	const char *datastore_root;
	const char *metadata;
	const char *environment;
	const char *event_logger;
	const char *monitor;
	const char *python;
	const char *username;
	const char **env_allowlist;
	size_t nenv_allowlist;
} Settings;

typedef struct Options {
	const char **tags;
	size_t ntags;
	const char *namespace;  /* or NULL */
	int max_workers;
	int workflow_timeout;   /* seconds; 0 = none */
	const char **with;      /* --with decospecs */
	size_t nwith;
	const char *branch;     /* or NULL */
	int production;
	int emit_step_events;
	int max_num_splits;     /* a foreach with more splits fails the run, as `run --max-num-splits` */
	const char *executor;   /* `create --executor`, or NULL: check decides (ExecKind) */
	const MfdValue *executor_config; /* `create --executor-config`: the executor's config defaults, an object */
	StrPair *queues;        /* `create --celery-queue STEP=QUEUE`: step -> Celery queue */
	size_t nqueues;
} Options;

#define MFD_DEFAULT_MAX_NUM_SPLITS 100 /* Metaflow's MAX_NUM_SPLITS */

/* The flow's code package in the datastore (`create --code-package`): tasks run from it, not the flow file. */
typedef struct CodePackage {
	const char *url;         /* where `create` uploaded it */
	const char *sha;         /* its sha1, hex: workers check the download against it */
	const MfdValue *metadata; /* Metaflow's package metadata, as given */
} CodePackage;

typedef struct Flow {
	const char *name;
	const char *file;
	const char *file_sha256;
	CodePackage *package;   /* or NULL: tasks run the flow file where it is */
	const char *job_name;
	const char *doc;
	StepRef start;          /* start_step */
	StepRef end;            /* end_step */
	Project *project;       /* or NULL */
	Triggers *triggers;     /* @trigger, or NULL */
	Finish *finish;         /* @trigger_on_finish, or NULL */
	const char *cron;       /* @schedule: Metaflow's cron (6-field AWS form or 5-field), or NULL */
	const char *timezone;   /* @schedule timezone, or NULL for UTC */
	Decorator *decos;
	size_t ndecos;
	Step *steps;            /* in the IR's (topological) order */
	size_t nsteps;
	Step **byname;          /* steps sorted by name, set by check for mfd_find_step */
	Param *params;
	size_t nparams;
	Config *configs;
	size_t nconfigs;
	Settings settings;
	Options options;
	ExecKind exec;          /* the job's executor, set by check */
} Flow;

const char *mfd_step_kind_name(StepKind k);
const char *mfd_exec_name(ExecKind k);
int mfd_exec_remote(ExecKind k);
const char *mfd_param_type_name(ParamType t);
const char *mfd_param_config_type(ParamType t);
int mfd_read_ir(Compile *c);

/* check.c */

DecoKind mfd_deco_lookup(const char *name);
DecoHandling mfd_deco_handling(DecoKind k);
Step *mfd_find_step(const Flow *f, const char *name);
int mfd_is_foreach_join(const Step *s);
int mfd_check(Compile *c);
int mfd_check_many(Compile *units, size_t n);

/* names.c */

/*
 * A name of kind k for s is prefix, s and suffix, made a Python identifier (mfd_name). The sensor kinds name a
 * job's sensors: s is the job name, and the suffix is followed by the names of what the sensor waits for,
 * joined by "_and_" (mfd_sensor_name).
 */
#define NAME_KINDS(X) \
	X(NAME_OP,            "op_",      "")          /* the @op function of a step */ \
	X(NAME_FANOUT,        "fanout__", "")          /* the barrier op (and its function) fanning out a nested foreach */ \
	X(NAME_GATHER,        "gather__", "")          /* the barrier op (and its function) regrouping a step's inputs */ \
	X(NAME_JOB,           "",         "")          /* the @job, and the Dagster job */ \
	X(NAME_SCHEDULE,      "",         "_schedule") /* the Dagster schedule of the job (and its variable when shared) */ \
	X(NAME_EVENT_SENSOR,  "",         "_on_")      /* the @trigger sensor: <job>_on_<event>_and_<event> */ \
	X(NAME_FINISH_SENSOR, "",         "_after_")   /* the @trigger_on_finish sensor: <job>_after_<Flow>_and_<Flow> */ \
	X(NAME_FLOW,          "FLOW_",    "")          /* the FLOW literal of a job in a file of several flows */ \
	X(NAME_RUNTIME,       "mf_",      "")          /* the runtime object of a job in a file of several flows */

typedef enum NameKind {
#define X(kind, prefix, suffix) kind,
	NAME_KINDS(X)
#undef X
} NameKind;

#define MFD_MAX_SENSOR_NAME 200 /* bytes of a sensor name; a longer one is cut */

int mfd_is_identifier(const char *s);
const char *mfd_dagster_cron(MfdArena *a, const char *cron);
const char *mfd_name(MfdArena *a, NameKind k, const char *s);
const char *mfd_sensor_name(MfdArena *a, NameKind k, const char *job, const char *const *names, size_t n);
const char *mfd_event_name(MfdArena *a, const char *flow, const char *step);

/* lower.c */

/*
 * What an op's body does: the FlowRuntime method it calls and how it hands the result on. A generator op
 * ("yield from") has several or dynamic outputs.
 */
#define OP_FORMS(X) \
	X(OP_FAN_OUT, "fan_out", "yield from") /* a foreach at level 0: one DynamicOutput per item */ \
	X(OP_FOREACH, "foreach", "return")     /* a foreach at level >= 1: one token that carries its splits */ \
	X(OP_SWITCH,  "switch",  "yield from") /* a split-switch: one output per target step */ \
	X(OP_RUN,     "run",     "return")     /* every other step */

typedef enum OpForm {
#define X(form, method, hand_on) form,
	OP_FORMS(X)
#undef X
} OpForm;

typedef enum SegKind {
	SEG_NATIVE,  /* mapped over the DynamicOut of a foreach at level 0 */
	SEG_EXPAND,  /* mapped over a fanout barrier that flattens a foreach at level >= 1 */
	SEG_REGROUP, /* mapped over a gather barrier: a foreach join, or a step whose parents are in different segments */
} SegKind;

/*
 * One op: a step with everything emit prints for it. Names and expressions are final Python text, so emit
 * only lays them out.
 */
typedef struct PlanOp {
	const Step *step;
	int pos;                 /* position in Plan.ops (topological) */
	int seg;                 /* index in Plan.segs, or -1 for an op called in the job body itself */
	int head;                /* opens its segment: called with the segment function's parameter */
	int foreach_join;        /* mfd_is_foreach_join */
	OpForm form;
	const char *name;        /* the Dagster op name: the step's name after Plan.prefix */
	const char *fn;          /* the op function, op_<prefix><step> */
	const char *where;       /* "file:line" of the step, the file without its directory */
	long long max_retries;   /* the RetryPolicy's max_retries: @retry's and @catch's attempts; 0: no policy */
	long long retry_delay;   /* the RetryPolicy's delay in seconds; 0: none */
	const char **emits;      /* the events a successful task publishes (metaflow.<flow>.<step>, the end alias) */
	size_t nemits;
	struct PlanOp **parents; /* in_funcs without the step itself, in the IR's order */
	size_t nparents;
	const char **inputs;     /* the op function's parameters after context */
	size_t ninputs;
	const char **targets;    /* split-switch: the distinct case targets other than the step, in case order */
	size_t ntargets;
	int optional;            /* split-switch at level 0: only the chosen output is yielded and Dagster skips the
	                            others; inside a foreach every output is yielded, the others with a dead token */
	const char **outputs;    /* the job variables the call assigns: the step, or <switch>__<target> per target */
	size_t noutputs;
	const char **args;       /* the call's arguments in the job body */
	size_t nargs;
	const char *queue;       /* the Celery queue of the op (tag dagster-celery/queue), or NULL */
	const MfdValue *k8s;     /* the op's dagster-k8s/config tag (k8s.c), or NULL */
} PlanOp;

/* A run of ops mapped over one dynamic output: a nested function in the job body. */
typedef struct Segment {
	SegKind kind;
	int id;                  /* index in Plan.segs; the function is segment_<id> */
	int level;               /* foreach levels its ops run in: the head's depth */
	PlanOp *head;            /* the op that opened it, first of members */
	PlanOp *src;             /* native, expand: the foreach it maps over; regroup: the head */
	PlanOp **members;        /* its ops, in topological order */
	size_t nmembers;
	const char *param;       /* the segment function's parameter: src's step name, or "bundle" */
	const char *source;      /* what the job maps: src's variable, or a call of the barrier op */
	const char *barrier;     /* fanout__<src> or gather__<head>; NULL for native */
	const char **inputs;     /* the barrier function's parameters after context */
	size_t ninputs;
	const char **outs;       /* the handles consumed outside the segment, in order of first use */
	size_t nouts;
} Segment;

/* A sensor of the job: what the runtime makes it from (FLOW["sensors"], and the options of its events). */
typedef struct PlanSensor {
	const char *name;        /* the Dagster sensor name, NAME_EVENT_SENSOR or NAME_FINISH_SENSOR */
	const char *description;
	const MfdValue *options; /* the decorator's options, reset_at in Dagster's form: {"cron", "timezone"} */
} PlanSensor;

/* The launchpad field of a Parameter: the keywords of its dagster.Field (FLOW["config_schema"]). */
typedef struct PlanParam {
	const Param *param;
	const char *type;        /* the Dagster config type, PARAM_TYPES */
	const MfdValue *dflt;    /* default_value, or NULL when none: a json Parameter's is its JSON text */
	int required;            /* is_required, given only without a default */
	const char *description; /* the help, or NULL when it is empty */
} PlanParam;

struct Plan {
	PlanOp *ops;             /* one per step, in topological order */
	size_t nops;
	PlanOp **bystep;         /* the op of each step, by Step.index */
	Segment *segs;           /* in the order of their heads */
	size_t nsegs;
	size_t nbarriers;        /* segments with a barrier op */
	const char *job;         /* the job function */
	const char *prefix;      /* "" in a file of one flow, else "<job>__": starts every op name and op function */
	const char *literal;     /* the FLOW literal: FLOW, or FLOW_<job> in a file of several flows */
	const char *rt;          /* the runtime object the ops call: mf, or mf_<job> */
	const char *schedule;    /* the schedule variable: schedule, or <job>_schedule */
	const char *start_op;    /* the Dagster op name of the start step */
	const char *schedule_name; /* @schedule: the Dagster schedule name, <job>_schedule; NULL without */
	const char *cron;        /* @schedule: the cron in Dagster's 5-field form */
	const char *timezone;    /* @schedule: its execution timezone, UTC when the IR gives none */
	PlanSensor *trigger;     /* the @trigger sensor, or NULL */
	PlanSensor *finish;      /* the @trigger_on_finish sensor, or NULL */
	PlanParam *params;       /* one per Flow.params, in their order */
	size_t nparams;
	const MfdValue *executor; /* FLOW["executor"]: {"kind", "config", "forward_env"} */
	int io_manager;          /* the job takes the runtime's resources: its ops share no disk (EXECUTORS) */
};

const char *mfd_op_method(OpForm f);
const char *mfd_op_hand_on(OpForm f);
int mfd_lower(Compile *c);
int mfd_lower_many(Compile *units, size_t n);

/* k8s.c */

const MfdValue *mfd_k8s_config(Compile *c, const Step *s, const char **namespace, const Step **namespace_step);

/* emit.c */

void mfd_emit(StrBuf *o, const Compile *units, size_t n, const char *runtime);

/* driver.c */

/*
 * One flow of a compile. A compile of several flows (mfd_compile_many) has one Compile per flow, all in one
 * arena; each reports into its own Diags, so the passes of one flow never see another flow's errors.
 */
struct Compile {
	MfdArena *arena;     /* owns everything of the compile, and the result */
	const MfdValue *ir;  /* the input tree, in the caller's arena */
	int shared;          /* the file holds other flows too: op names and per-flow names carry the job name */
	Flow *flow;          /* built by mfd_read_ir */
	Plan *plan;          /* built by mfd_lower */
	Diags diags;         /* this flow's problems */
};

/* json.c: for mfdc, the C tests and the fuzzer only (needs jansson); not part of the Python extension. */

MfdValue *mfd_json_parse(MfdArena *a, const char *name, const char *text, size_t len, char *err, size_t errsize);

#endif
