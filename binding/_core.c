/*
 * _core.c: metaflow_dagster._core, the CPython binding of the C core (in the shape of CPython's
 * Modules/_json.c: multi-phase init, state kept in the module, goto-based cleanup).
 *
 * compile(ir, runtime_src) converts the IR, a tree of dict, list, tuple, str, int, float, bool and None, into
 * the core's value tree, then runs mfd_compile with the GIL released: the core touches no Python object and
 * keeps no global state, so compiles in several threads run in parallel. compile_many(irs, runtime_src) does
 * the same for a list of IRs compiled into one file (mfd_compile_many). A problem in an IR raises
 * CompileError, a ValueError whose .diagnostics lists every diagnostic as a dict; an object of another type
 * in the IR raises TypeError naming its path, as in ir['steps'][2]['decorators'][0]['attributes']['when'] (or
 * irs[1]['steps'][2]... for compile_many). job_name(name) is the core's name of a flow's Dagster job, which the
 * Metaflow plugin writes into the IR.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "mfd.h"

typedef struct {
	PyObject *CompileError; /* the exception type, one per module object */
} CoreState;

static CoreState *
get_state(PyObject *module)
{
	return (CoreState *)PyModule_GetState(module);
}

/* One step of the path from the IR root to the object being converted, kept on the C stack. */
typedef struct Path {
	const struct Path *up;
	PyObject *key;    /* the dict key (a str), or NULL for a list index */
	Py_ssize_t index;
	const char *root; /* set on a root: the argument's name */
} Path;

/* The path as a str such as "ir['steps'][2]", or NULL with an exception set. Runs no user code. */
static PyObject *
path_str(const Path *p)
{
	PyObject *up, *key, *s;

	if (!p)
		return PyUnicode_FromString("ir");
	if (p->root)
		return PyUnicode_FromString(p->root);
	if (!(up = path_str(p->up)))
		return NULL;
	if (!p->key) {
		s = PyUnicode_FromFormat("%U[%zd]", up, p->index);
	} else if ((key = PyUnicode_FromObject(p->key))) {
		s = PyUnicode_FromFormat("%U[%R]", up, key);
		Py_DECREF(key);
	} else {
		s = NULL;
	}
	Py_DECREF(up);
	return s;
}

/* Raises exc with the message "PATH: what", what followed by the type name of o when o is given. */
static void
fail_at(PyObject *exc, const Path *p, const char *what, PyObject *o)
{
	PyObject *where = path_str(p);

	if (where) {
		PyErr_Format(exc, "%U: %s%s", where, what, o ? Py_TYPE(o)->tp_name : "");
		Py_DECREF(where);
	}
}

/* The UTF-8 bytes of the str o, or NULL with a ValueError naming p set. */
static const char *
utf8(PyObject *o, const Path *p, Py_ssize_t *len)
{
	const char *s = PyUnicode_AsUTF8AndSize(o, len);

	if (!s && PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
		PyErr_Clear();
		fail_at(PyExc_ValueError, p, "string cannot be encoded as UTF-8", NULL);
	}
	return s;
}

static MfdValue *convert(MfdArena *a, PyObject *o, const Path *p);

/*
 * The converters hold a reference to each key and item while converting it: building an error message
 * allocates, and a garbage collection it triggers could run finalizers that mutate the container.
 */

static MfdValue *
convert_dict(MfdArena *a, PyObject *o, const Path *up)
{
	MfdValue *v = mfd_object(a), *item;
	PyObject *key, *value;
	Path p = {up, NULL, 0, NULL};
	Py_ssize_t pos = 0, len;
	const char *s;

	if (!v)
		return (MfdValue *)PyErr_NoMemory();
	while (PyDict_Next(o, &pos, &key, &value)) {
		if (!PyUnicode_Check(key)) {
			fail_at(PyExc_TypeError, up, "dict keys must be str, got ", key);
			return NULL;
		}
		p.key = key;
		if (!(s = utf8(key, &p, &len)))
			return NULL;
		Py_INCREF(key);
		Py_INCREF(value);
		item = convert(a, value, &p);
		if (item && mfd_object_put(a, v, s, (size_t)len, item)) {
			PyErr_NoMemory();
			item = NULL;
		}
		Py_DECREF(value);
		Py_DECREF(key);
		if (!item)
			return NULL;
	}
	return v;
}

static MfdValue *
convert_seq(MfdArena *a, PyObject *o, const Path *up)
{
	MfdValue *v = mfd_array(a), *item;
	Path p = {up, NULL, 0, NULL};
	PyObject *value;

	if (!v)
		return (MfdValue *)PyErr_NoMemory();
	for (p.index = 0; p.index < PySequence_Fast_GET_SIZE(o); p.index++) {
		value = PySequence_Fast_GET_ITEM(o, p.index);
		Py_INCREF(value);
		item = convert(a, value, &p);
		if (item && mfd_array_push(a, v, item)) {
			PyErr_NoMemory();
			item = NULL;
		}
		Py_DECREF(value);
		if (!item)
			return NULL;
	}
	return v;
}

/*
 * Converts o, found at path p, into a value tree in a. Returns NULL with an exception set on failure.
 * Containers go through Py_EnterRecursiveCall, which also stops a dict or list that contains itself.
 */
static MfdValue *
convert(MfdArena *a, PyObject *o, const Path *p)
{
	MfdValue *v = NULL;
	long long i;
	const char *s;
	Py_ssize_t len;
	int overflow;

	if (o == Py_None) {
		v = mfd_null(a);
	} else if (PyBool_Check(o)) {
		v = mfd_bool(a, o == Py_True);
	} else if (PyLong_Check(o)) {
		i = PyLong_AsLongLongAndOverflow(o, &overflow);
		if (overflow) {
			fail_at(PyExc_OverflowError, p, "int does not fit in 64 bits", NULL);
			return NULL;
		}
		if (i == -1 && PyErr_Occurred())
			return NULL;
		v = mfd_int(a, i);
	} else if (PyFloat_Check(o)) {
		v = mfd_float(a, PyFloat_AS_DOUBLE(o));
	} else if (PyUnicode_Check(o)) {
		if (!(s = utf8(o, p, &len)))
			return NULL;
		v = mfd_string(a, s, (size_t)len);
	} else if (PyDict_Check(o) || PyList_Check(o) || PyTuple_Check(o)) {
		if (Py_EnterRecursiveCall(" while converting the IR"))
			return NULL;
		v = PyDict_Check(o) ? convert_dict(a, o, p) : convert_seq(a, o, p);
		Py_LeaveRecursiveCall();
		return v;
	} else {
		fail_at(PyExc_TypeError, p, "expected dict, list, tuple, str, int, float, bool or None, got ", o);
		return NULL;
	}
	return v ? v : (MfdValue *)PyErr_NoMemory();
}

/* The diagnostic d formatted as mfd_diag_format does, as a str; NULL with an exception set on failure. */
static PyObject *
diag_str(const MfdDiag *d)
{
	size_t n = mfd_diag_format(d, NULL, 0);
	char *buf = PyMem_Malloc(n + 1);
	PyObject *s;

	if (!buf)
		return PyErr_NoMemory();
	mfd_diag_format(d, buf, n + 1);
	s = PyUnicode_DecodeUTF8(buf, (Py_ssize_t)n, "replace");
	PyMem_Free(buf);
	return s;
}

static PyObject *
diag_dict(const MfdDiag *d)
{
	return Py_BuildValue("{s:s,s:z,s:z,s:z,s:i,s:s}", "severity", mfd_severity_name(d->severity), "flow", d->flow,
		"step", d->step, "file", d->file, "line", d->line, "message", d->message);
}

/*
 * Raises CompileError for r: its message is the formatted diagnostics, one per line, and its .diagnostics
 * attribute the list of their dicts. Always returns NULL with an exception set.
 */
static PyObject *
raise_compile_error(CoreState *st, const MfdResult *r)
{
	PyObject *diags = NULL, *lines = NULL, *sep = NULL, *msg = NULL, *exc = NULL, *item;
	size_t i;

	if (!(diags = PyList_New((Py_ssize_t)r->ndiags)) || !(lines = PyList_New((Py_ssize_t)r->ndiags)))
		goto done;
	for (i = 0; i < r->ndiags; i++) {
		if (!(item = diag_dict(&r->diags[i])))
			goto done;
		PyList_SET_ITEM(diags, (Py_ssize_t)i, item);
		if (!(item = diag_str(&r->diags[i])))
			goto done;
		PyList_SET_ITEM(lines, (Py_ssize_t)i, item);
	}
	if (!(sep = PyUnicode_FromString("\n")) || !(msg = PyUnicode_Join(sep, lines)))
		goto done;
	if (!(exc = PyObject_CallOneArg(st->CompileError, msg)))
		goto done;
	if (PyObject_SetAttrString(exc, "diagnostics", diags) == 0)
		PyErr_SetObject(st->CompileError, exc);
done:
	Py_XDECREF(exc);
	Py_XDECREF(msg);
	Py_XDECREF(sep);
	Py_XDECREF(lines);
	Py_XDECREF(diags);
	return NULL;
}

/* Issues each warning of r as a UserWarning. Returns 0, or -1 with an exception set. */
static int
warn(const MfdResult *r)
{
	PyObject *s;
	size_t i;
	int rc;

	for (i = 0; i < r->ndiags; i++) {
		if (r->diags[i].severity != MFD_WARNING)
			continue;
		if (!(s = diag_str(&r->diags[i])))
			return -1;
		rc = PyErr_WarnFormat(PyExc_UserWarning, 1, "%U", s);
		Py_DECREF(s);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* The UTF-8 text of the str runtime, or NULL with an exception set when it holds a NUL character. */
static const char *
runtime_text(PyObject *runtime)
{
	const char *rt;
	Py_ssize_t len;

	if (!(rt = PyUnicode_AsUTF8AndSize(runtime, &len)))
		return NULL;
	if (strlen(rt) != (size_t)len) {
		PyErr_SetString(PyExc_ValueError, "runtime_src contains a NUL character");
		return NULL;
	}
	return rt;
}

/*
 * Compiles the n trees with the GIL released and returns the module text as a str, or NULL with CompileError
 * (or the exception a warning filter raised) set. The trees live in a, which the caller frees.
 */
static PyObject *
run_compile(CoreState *st, const MfdValue *const *trees, size_t n, const char *rt)
{
	PyObject *out = NULL;
	MfdResult r = {0};
	int nerrors;

	Py_BEGIN_ALLOW_THREADS
	nerrors = mfd_compile_many(trees, n, rt, &r);
	Py_END_ALLOW_THREADS
	if (nerrors)
		raise_compile_error(st, &r);
	else if (warn(&r) == 0)
		out = PyUnicode_DecodeUTF8(r.text, (Py_ssize_t)r.len, "strict");
	mfd_result_free(&r);
	return out;
}

PyDoc_STRVAR(compile_doc,
"compile(ir, runtime_src)\n--\n\n"
"Compile the flow IR (a dict, see docs/ir.md) into the source of a Dagster definitions file,\n"
"pasting runtime_src into it. Raises CompileError when the IR has errors.");

static PyObject *
core_compile(PyObject *module, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = {"ir", "runtime_src", NULL};
	PyObject *ir, *runtime, *out = NULL;
	const MfdValue *tree;
	MfdArena *a;
	const char *rt;

	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!U:compile", kwlist, &PyDict_Type, &ir, &runtime))
		return NULL;
	if (!(rt = runtime_text(runtime)))
		return NULL;
	if (!(a = mfd_arena_new()))
		return PyErr_NoMemory();
	if ((tree = convert(a, ir, NULL)))
		out = run_compile(get_state(module), &tree, 1, rt);
	mfd_arena_free(a);
	return out;
}

PyDoc_STRVAR(compile_many_doc,
"compile_many(irs, runtime_src)\n--\n\n"
"Compile a list of flow IRs into the source of one Dagster definitions file that holds all\n"
"their jobs, schedules and sensors (one code location), pasting runtime_src into it once.\n"
"Raises CompileError when an IR has errors or the flows cannot share a file; each diagnostic\n"
"names its flow.");

static PyObject *
core_compile_many(PyObject *module, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = {"irs", "runtime_src", NULL};
	PyObject *irs, *runtime, *item, *out = NULL;
	Path root = {NULL, NULL, 0, "irs"}, p = {&root, NULL, 0, NULL};
	const MfdValue **trees = NULL;
	MfdArena *a;
	const char *rt;
	Py_ssize_t n;

	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!U:compile_many", kwlist, &PyList_Type, &irs, &runtime))
		return NULL;
	if (!(rt = runtime_text(runtime)))
		return NULL;
	if (!(a = mfd_arena_new()))
		return PyErr_NoMemory();
	n = PyList_GET_SIZE(irs);
	if (!(trees = PyMem_Malloc((size_t)(n ? n : 1) * sizeof *trees))) {
		PyErr_NoMemory();
		goto done;
	}
	for (p.index = 0; p.index < n && p.index < PyList_GET_SIZE(irs); p.index++) {
		item = PyList_GET_ITEM(irs, p.index);
		if (!PyDict_Check(item)) {
			fail_at(PyExc_TypeError, &p, "expected dict, got ", item);
			goto done;
		}
		Py_INCREF(item);
		trees[p.index] = convert(a, item, &p);
		Py_DECREF(item);
		if (!trees[p.index])
			goto done;
	}
	if (p.index == n)
		out = run_compile(get_state(module), trees, (size_t)n, rt);
	else
		PyErr_SetString(PyExc_RuntimeError, "irs changed size while it was converted");
done:
	PyMem_Free(trees);
	mfd_arena_free(a);
	return out;
}

PyDoc_STRVAR(job_name_doc,
"job_name(name)\n--\n\n"
"The Dagster job name of a flow: name (the flow's name, or its project_flow_name under\n"
"@project) as the core names the job, every character outside [A-Za-z0-9_] as '_'.");

static PyObject *
core_job_name(PyObject *module, PyObject *arg)
{
	const char *name;
	Py_ssize_t len;
	PyObject *out;
	size_t n;
	char *buf;

	(void)module;
	if (!PyUnicode_Check(arg)) {
		PyErr_Format(PyExc_TypeError, "job_name() expects a str, got %s", Py_TYPE(arg)->tp_name);
		return NULL;
	}
	if (!(name = PyUnicode_AsUTF8AndSize(arg, &len)))
		return NULL;
	if (strlen(name) != (size_t)len) {
		PyErr_SetString(PyExc_ValueError, "job_name() got a name with a NUL character");
		return NULL;
	}
	n = mfd_job_name(name, NULL, 0);
	if (!(buf = PyMem_Malloc(n + 1)))
		return PyErr_NoMemory();
	mfd_job_name(name, buf, n + 1);
	out = PyUnicode_DecodeUTF8(buf, (Py_ssize_t)n, "strict");
	PyMem_Free(buf);
	return out;
}

static PyMethodDef core_methods[] = {
	{"compile", (PyCFunction)(void (*)(void))core_compile, METH_VARARGS | METH_KEYWORDS, compile_doc},
	{"compile_many", (PyCFunction)(void (*)(void))core_compile_many, METH_VARARGS | METH_KEYWORDS,
		compile_many_doc},
	{"job_name", core_job_name, METH_O, job_name_doc},
	{NULL, NULL, 0, NULL},
};

static int
core_exec(PyObject *module)
{
	CoreState *st = get_state(module);

	st->CompileError = PyErr_NewExceptionWithDoc("metaflow_dagster._core.CompileError",
		"The flow IR has errors. str() gives them one per line; .diagnostics is a list of dicts with\n"
		"the keys severity, flow, step, file, line and message.", PyExc_ValueError, NULL);
	if (!st->CompileError)
		return -1;
	Py_INCREF(st->CompileError);
	if (PyModule_AddObject(module, "CompileError", st->CompileError) < 0) {
		Py_DECREF(st->CompileError);
		return -1;
	}
	if (PyModule_AddStringConstant(module, "__version__", MFD_VERSION) < 0)
		return -1;
	return PyModule_AddIntConstant(module, "IR_VERSION", MFD_IR_VERSION);
}

static int
core_traverse(PyObject *module, visitproc visit, void *arg)
{
	Py_VISIT(get_state(module)->CompileError);
	return 0;
}

static int
core_clear(PyObject *module)
{
	Py_CLEAR(get_state(module)->CompileError);
	return 0;
}

static void
core_free(void *module)
{
	core_clear((PyObject *)module);
}

static PyModuleDef_Slot core_slots[] = {
	{Py_mod_exec, (void *)core_exec},
#ifdef Py_mod_multiple_interpreters
	{Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
	{Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
	{0, NULL},
};

PyDoc_STRVAR(core_doc, "The metaflow-dagster compiler core: flow IR in, Dagster definitions source out.");

static struct PyModuleDef core_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "metaflow_dagster._core",
	.m_doc = core_doc,
	.m_size = sizeof(CoreState),
	.m_methods = core_methods,
	.m_slots = core_slots,
	.m_traverse = core_traverse,
	.m_clear = core_clear,
	.m_free = core_free,
};

PyMODINIT_FUNC
PyInit__core(void)
{
	return PyModuleDef_Init(&core_module);
}
