/*
 * k8s.c: a step's @kubernetes (and @resources) as the dagster-k8s/config tag of its op, the per-op settings
 * that dagster-k8s's k8s_job_executor validates and merges into the Kubernetes Job it builds for the op.
 *
 * Every attribute of Metaflow's @kubernetes is in K8S_ATTRS with where it goes: the container (resources,
 * image, environment, mounts), the pod spec (service account, node selector, tolerations, volumes) or the pod
 * template's metadata (labels, annotations). The namespace is the executor's (dagster-k8s runs every step Job
 * of a run in one namespace), so it is handed back to lowering, which checks that the steps agree. An
 * attribute with no Kubernetes meaning under Dagster is an error naming the step and the attribute, unless it
 * holds Metaflow's default: a flow never sees it silently ignored. @resources gives cpu, memory, disk, gpu and
 * shared memory where @kubernetes has no value (Metaflow itself already keeps the larger of the two).
 *
 * Units are Metaflow's: memory and disk in megabytes ("4096" becomes "4096M"), tmpfs and shared memory in
 * mebibytes ("Mi"), as Metaflow's own Kubernetes jobs write them. Keys are dagster-k8s's snake_case forms of
 * the Kubernetes API fields.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* Each attribute of @kubernetes, and where it goes. */
#define K8S_ATTRS(X) \
	X(K8S_CPU,          "cpu",                         "container resources: cpu request") \
	X(K8S_MEMORY,       "memory",                      "container resources: memory request, in MB") \
	X(K8S_DISK,         "disk",                        "container resources: ephemeral-storage request, in MB") \
	X(K8S_GPU,          "gpu",                         "container resources: <gpu_vendor>.com/gpu limit") \
	X(K8S_GPU_VENDOR,   "gpu_vendor",                  "with gpu: nvidia or amd") \
	X(K8S_QOS,          "qos",                         "Guaranteed: limits equal requests; Burstable: requests") \
	X(K8S_EXTENDED,     "extended_resources",          "container resources: requests and limits") \
	X(K8S_IMAGE,        "image",                       "the container's image, when the flow gives one") \
	X(K8S_PULL_POLICY,  "image_pull_policy",           "the container's image_pull_policy") \
	X(K8S_PULL_SECRETS, "image_pull_secrets",          "the pod's image_pull_secrets") \
	X(K8S_ACCOUNT,      "service_account",             "the pod's service_account_name") \
	X(K8S_SECRETS,      "secrets",                     "the container's env_from: one secret_ref each") \
	X(K8S_NODE_SEL,     "node_selector",               "the pod's node_selector") \
	X(K8S_NAMESPACE,    "namespace",                   "the executor's job_namespace") \
	X(K8S_TOLERATIONS,  "tolerations",                 "the pod's tolerations") \
	X(K8S_LABELS,       "labels",                      "the pod template's labels") \
	X(K8S_ANNOTATIONS,  "annotations",                 "the pod template's annotations") \
	X(K8S_USE_TMPFS,    "use_tmpfs",                   "a memory-backed emptyDir volume") \
	X(K8S_TMPFS_TMP,    "tmpfs_tempdir",               "METAFLOW_TEMPDIR at the tmpfs") \
	X(K8S_TMPFS_SIZE,   "tmpfs_size",                  "the tmpfs's size_limit, in MiB") \
	X(K8S_TMPFS_PATH,   "tmpfs_path",                  "where the tmpfs is mounted") \
	X(K8S_PVCS,         "persistent_volume_claims",    "volumes and mounts: {claim: path}") \
	X(K8S_SHM,          "shared_memory",               "a memory-backed emptyDir at /dev/shm, in MiB") \
	X(K8S_PORT,         "port",                        "the container's ports") \
	X(K8S_SECURITY,     "security_context",            "the container's security_context") \
	X(K8S_POOL,         "compute_pool",                NULL) \
	X(K8S_EXECUTABLE,   "executable",                  NULL) \
	X(K8S_RESOLUTION,   "hostname_resolution_timeout", NULL)

typedef enum K8sAttr {
#define X(kind, name, where) kind,
	K8S_ATTRS(X)
#undef X
	K8S_UNKNOWN,
} K8sAttr;

static const char *const attr_names[] = {
#define X(kind, name, where) name,
	K8S_ATTRS(X)
#undef X
};

/* Metaflow's hostname_resolution_timeout, which only @parallel reads: the value every step has. */
#define K8S_DEFAULT_RESOLUTION_TIMEOUT 600

/* The tag being built for one step. */
typedef struct K8s {
	Compile *c;
	const Step *s;
	MfdValue *container;  /* container_config, without the lists below */
	MfdValue *requests;
	MfdValue *limits;
	MfdValue *env;
	MfdValue *env_from;
	MfdValue *mounts;     /* volume_mounts */
	MfdValue *ports;
	MfdValue *pod;        /* pod_spec_config, without volumes */
	MfdValue *volumes;
	MfdValue *meta;       /* pod_template_spec_metadata */
} K8s;

static MfdValue *
str_value(MfdArena *a, const char *s)
{
	return mfd_string(a, s, strlen(s));
}

static void
put(K8s *k, MfdValue *obj, const char *key, MfdValue *v)
{
	mfd_object_put(k->c->arena, obj, key, strlen(key), v);
}

static void
put_str(K8s *k, MfdValue *obj, const char *key, const char *v)
{
	put(k, obj, key, str_value(k->c->arena, v));
}

static void
push(K8s *k, MfdValue *arr, MfdValue *v)
{
	mfd_array_push(k->c->arena, arr, v);
}

static void
bad(K8s *k, K8sAttr attr, const char *fmt, ...) MFD_PRINTF(3, 4);

/* Reports a problem with attribute attr of the step's @kubernetes. */
static void
bad(K8s *k, K8sAttr attr, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = mfd_vprintf(k->c->arena, fmt, ap);
	va_end(ap);
	mfd_error_at(k->c, k->s, "@kubernetes attribute %s: %s", attr_names[attr], msg);
}

/* The attribute's value as text (a string, or a number as written); NULL when it is neither. */
static const char *
scalar(MfdArena *a, const MfdValue *v)
{
	if (v->kind == VAL_STRING)
		return memchr(v->u.str.s, '\0', v->u.str.len) ? NULL : v->u.str.s;
	if (v->kind == VAL_INT)
		return mfd_printf(a, "%lld", v->u.i);
	if (v->kind == VAL_FLOAT)
		return mfd_printf(a, "%.17g", v->u.f);
	return NULL;
}

/*
 * The number text holds, written as Kubernetes reads a quantity: an integer without a fraction ("4096.0", as
 * Metaflow's merge with @resources leaves it, is "4096"). NULL when text is not a positive number or is too
 * large to be one.
 */
static const char *
quantity(MfdArena *a, const char *text)
{
	char *end;
	double d;

	if (!text || !*text)
		return NULL;
	d = strtod(text, &end);
	if (*end || !(d > 0) || d > 1e15)
		return NULL;
	if (d == (double)(long long)d)
		return mfd_printf(a, "%lld", (long long)d);
	return mfd_printf(a, "%.15g", d);
}

/* The whole number text holds, or -1 when it is not a non-negative integer below 2^31. */
static long long
whole(const char *text)
{
	char *end;
	double d;

	if (!text || !*text)
		return -1;
	d = strtod(text, &end);
	if (*end || d < 0 || d > 2147483647.0 || d != (double)(long long)d)
		return -1;
	return (long long)d;
}

/* Whether v is null, absent (NULL), false, or an empty string, object or array: an attribute left unset. */
static int
unset(const MfdValue *v)
{
	if (!v || v->kind == VAL_NULL)
		return 1;
	if (v->kind == VAL_BOOL)
		return !v->u.b;
	if (v->kind == VAL_STRING)
		return v->u.str.len == 0;
	if (v->kind == VAL_ARRAY)
		return v->u.arr.n == 0;
	if (v->kind == VAL_OBJECT)
		return v->u.obj.n == 0;
	return 0;
}

/* The names v lists: an array of strings, or a string of names separated by commas. Sets *n; NULL: not one. */
static const char **
names(MfdArena *a, const MfdValue *v, size_t *n)
{
	const char **out, *p, *q;
	size_t i, cap;

	*n = 0;
	if (v->kind == VAL_ARRAY) {
		out = mfd_alloc(a, (v->u.arr.n + 1) * sizeof *out);
		for (i = 0; i < v->u.arr.n; i++) {
			if (!(out[i] = v->u.arr.v[i]->kind == VAL_STRING ? scalar(a, v->u.arr.v[i]) : NULL) || !*out[i])
				return NULL;
		}
		*n = v->u.arr.n;
		return out;
	}
	if (v->kind != VAL_STRING || !scalar(a, v))
		return NULL;
	cap = 1;
	for (p = v->u.str.s; *p; p++)
		cap += *p == ',';
	out = mfd_alloc(a, cap * sizeof *out);
	for (p = v->u.str.s; *p; p = *q ? q + 1 : q) {
		q = p + strcspn(p, ",");
		while (p < q && *p == ' ')
			p++;
		if (q > p)
			out[(*n)++] = mfd_strndup(a, p, (size_t)(q - p));
	}
	return out;
}

/*
 * An object of strings from v: an object whose values are strings or numbers, or "k=v" pairs (an array of
 * them, or one string separated by commas), as Metaflow accepts node selectors. NULL when v is none of these.
 */
static MfdValue *
string_map(K8s *k, const MfdValue *v)
{
	MfdArena *a = k->c->arena;
	MfdValue *out = mfd_object(a);
	const char **pairs, *text, *eq;
	size_t i, n;

	if (v->kind == VAL_OBJECT) {
		for (i = 0; i < v->u.obj.n; i++) {
			if (!(text = scalar(a, v->u.obj.v[i].value)))
				return NULL;
			mfd_object_put(a, out, v->u.obj.v[i].key, v->u.obj.v[i].keylen, str_value(a, text));
		}
		return out;
	}
	if (!(pairs = names(a, v, &n)))
		return NULL;
	for (i = 0; i < n; i++) {
		if (!(eq = strchr(pairs[i], '=')) || eq == pairs[i])
			return NULL;
		mfd_object_put(a, out, pairs[i], (size_t)(eq - pairs[i]), str_value(a, eq + 1));
	}
	return out;
}

static K8sAttr
lookup(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < MFD_COUNT(attr_names); i++)
		if (strlen(attr_names[i]) == len && !memcmp(attr_names[i], name, len))
			return (K8sAttr)i;
	return K8S_UNKNOWN;
}

/* Whether the flow gave attribute name of d itself (not Metaflow's default). */
static int
given(const Decorator *d, const char *name)
{
	size_t i;

	if (d->all_given)
		return 1;
	for (i = 0; i < d->ngiven; i++)
		if (!strcmp(d->given[i], name))
			return 1;
	return 0;
}

/* The value of the step's @resources attribute name, or NULL. */
static const char *
resource(const Step *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->nresources; i++)
		if (!strcmp(s->resources[i].key, name))
			return s->resources[i].value;
	return NULL;
}

/* The text of @kubernetes attribute attr when it is set, else that of @resources attribute res (or NULL). */
static const char *
sized(K8s *k, const MfdValue *attrs, K8sAttr attr, const char *res)
{
	const MfdValue *v = attrs ? mfd_object_get(attrs, attr_names[attr]) : NULL;

	if (!unset(v))
		return scalar(k->c->arena, v) ? scalar(k->c->arena, v) : "";
	return res ? resource(k->s, res) : NULL;
}

/* Adds a memory-backed emptyDir volume of size MiB, mounted at path. */
static void
memory_volume(K8s *k, const char *name, long long size, const char *path)
{
	MfdArena *a = k->c->arena;
	MfdValue *vol = mfd_object(a), *dir = mfd_object(a), *mount = mfd_object(a);

	put_str(k, dir, "medium", "Memory");
	put_str(k, dir, "size_limit", mfd_printf(a, "%lldMi", size));
	put_str(k, vol, "name", name);
	put(k, vol, "empty_dir", dir);
	push(k, k->volumes, vol);
	put_str(k, mount, "name", name);
	put_str(k, mount, "mount_path", path);
	push(k, k->mounts, mount);
}

/* The resources: requests, and limits for GPUs, extended resources and (qos Guaranteed) everything. */
static void
resources(K8s *k, const MfdValue *attrs)
{
	static const struct {
		K8sAttr attr;
		const char *res;  /* the @resources attribute */
		const char *key;  /* the Kubernetes resource */
		const char *unit;
	} sizes[] = {
		{K8S_CPU, "cpu", "cpu", ""},
		{K8S_MEMORY, "memory", "memory", "M"},
		{K8S_DISK, "disk", "ephemeral-storage", "M"},
	};
	MfdArena *a = k->c->arena;
	const MfdValue *qos = attrs ? mfd_object_get(attrs, "qos") : NULL, *ext;
	const char *text, *q, *vendor;
	int guaranteed = 0;
	long long gpu;
	size_t i;

	if (!unset(qos)) {
		if (qos->kind == VAL_STRING && !strcasecmp(qos->u.str.s, "guaranteed"))
			guaranteed = 1;
		else if (qos->kind != VAL_STRING || strcasecmp(qos->u.str.s, "burstable"))
			bad(k, K8S_QOS, "%s is not a QoS class Metaflow knows (Guaranteed or Burstable)",
				scalar(a, qos) ? mfd_quote(a, scalar(a, qos), strlen(scalar(a, qos))) : "the value");
	}
	for (i = 0; i < MFD_COUNT(sizes); i++) {
		if (!(text = sized(k, attrs, sizes[i].attr, sizes[i].res)))
			continue;
		if (!(q = quantity(a, text))) {
			bad(k, sizes[i].attr, "%s is not a positive number", mfd_quote(a, text, strlen(text)));
			continue;
		}
		put_str(k, k->requests, sizes[i].key, mfd_printf(a, "%s%s", q, sizes[i].unit));
		if (guaranteed)
			put_str(k, k->limits, sizes[i].key, mfd_printf(a, "%s%s", q, sizes[i].unit));
	}
	if ((text = sized(k, attrs, K8S_GPU, "gpu"))) {
		if ((gpu = whole(text)) < 0)
			bad(k, K8S_GPU, "%s is not a whole number of GPUs", mfd_quote(a, text, strlen(text)));
		vendor = sized(k, attrs, K8S_GPU_VENDOR, NULL);
		vendor = vendor && *vendor ? vendor : "nvidia";
		if (strcasecmp(vendor, "nvidia") && strcasecmp(vendor, "amd"))
			bad(k, K8S_GPU_VENDOR, "%s is not nvidia or amd", mfd_quote(a, vendor, strlen(vendor)));
		else if (gpu > 0)
			put_str(k, k->limits, mfd_printf(a, "%s.com/gpu", strcasecmp(vendor, "amd") ? "nvidia" : "amd"),
				mfd_printf(a, "%lld", gpu));
	}
	ext = attrs ? mfd_object_get(attrs, "extended_resources") : NULL;
	if (!unset(ext)) {
		if (ext->kind != VAL_OBJECT) {
			bad(k, K8S_EXTENDED, "expected an object {resource: quantity}");
			return;
		}
		for (i = 0; i < ext->u.obj.n; i++) {
			if (!(text = scalar(a, ext->u.obj.v[i].value))) {
				bad(k, K8S_EXTENDED, "the quantity of %s is not a string or number", ext->u.obj.v[i].key);
				continue;
			}
			put_str(k, k->requests, ext->u.obj.v[i].key, text);
			put_str(k, k->limits, ext->u.obj.v[i].key, text);
		}
	}
}

/* The tmpfs of use_tmpfs/tmpfs_size, mounted at tmpfs_path, and the task's tempdir there with tmpfs_tempdir. */
static void
tmpfs(K8s *k, const MfdValue *attrs)
{
	MfdArena *a = k->c->arena;
	const MfdValue *use = mfd_object_get(attrs, "use_tmpfs"), *size = mfd_object_get(attrs, "tmpfs_size");
	const MfdValue *path = mfd_object_get(attrs, "tmpfs_path"), *tempdir = mfd_object_get(attrs, "tmpfs_tempdir");
	const char *mount = "/metaflow_temp", *text;
	MfdValue *var;
	long long mib;

	if (unset(use) && unset(size))
		return;
	if (!unset(path)) {
		if (path->kind != VAL_STRING || path->u.str.s[0] != '/')
			bad(k, K8S_TMPFS_PATH, "expected an absolute path");
		else
			mount = path->u.str.s;
	}
	text = !unset(size) ? scalar(a, size) : sized(k, attrs, K8S_MEMORY, "memory");
	mib = text ? whole(text) : -1;
	if (unset(size) && mib > 0)
		mib /= 2; /* Metaflow's default: half the memory */
	if (mib <= 0) {
		bad(k, K8S_TMPFS_SIZE, "expected a positive whole number of MiB");
		return;
	}
	memory_volume(k, "tmpfs-ephemeral-volume", mib, mount);
	if (unset(tempdir) && tempdir && tempdir->kind == VAL_BOOL)
		return;
	var = mfd_object(a);
	put_str(k, var, "name", "METAFLOW_TEMPDIR");
	put_str(k, var, "value", mount);
	push(k, k->env, var);
}

/* A string attribute's text, or NULL after reporting that it is not one. */
static const char *
text_of(K8s *k, K8sAttr attr, const MfdValue *v)
{
	const char *text = v->kind == VAL_STRING ? scalar(k->c->arena, v) : NULL;

	if (!text)
		bad(k, attr, "expected a string");
	return text;
}

/* The list of secret names attr holds, or NULL after reporting that it is not one; sets *n. */
static const char **
secret_names(K8s *k, K8sAttr attr, const MfdValue *v, size_t *n)
{
	const char **list = names(k->c->arena, v, n);

	if (!list)
		bad(k, attr, "expected a list of Kubernetes secret names (or one string of them, separated by commas)");
	return list;
}

/*
 * Sets what attribute attr (value v, set) of the step's @kubernetes d says; an attribute that has no meaning
 * for a Kubernetes Job that Dagster starts is an error unless it holds Metaflow's default.
 */
static void
attribute(K8s *k, const Decorator *d, K8sAttr attr, const MfdValue *v, const char **namespace)
{
	MfdArena *a = k->c->arena;
	const char **list, *text;
	MfdValue *obj, *ref, *map;
	long long n;
	size_t i, count;

	switch (attr) {
	case K8S_IMAGE:
		/* Metaflow's default image (a bare python:X.Y) has no Dagster in it: pods then use the executor's. */
		if (given(d, "image") && (text = text_of(k, attr, v)))
			put_str(k, k->container, "image", text);
		break;
	case K8S_PULL_POLICY:
		if ((text = text_of(k, attr, v)))
			put_str(k, k->container, "image_pull_policy", text);
		break;
	case K8S_ACCOUNT:
		if ((text = text_of(k, attr, v)))
			put_str(k, k->pod, "service_account_name", text);
		break;
	case K8S_NAMESPACE:
		/* Metaflow fills in its configured namespace ("default"); only one the flow gives binds the run. */
		if (given(d, "namespace") && (text = text_of(k, attr, v)))
			*namespace = text;
		break;
	case K8S_PULL_SECRETS:
		if (!(list = secret_names(k, attr, v, &count)))
			break;
		ref = mfd_array(a);
		for (i = 0; i < count; i++) {
			obj = mfd_object(a);
			put_str(k, obj, "name", list[i]);
			push(k, ref, obj);
		}
		put(k, k->pod, "image_pull_secrets", ref);
		break;
	case K8S_SECRETS:
		if (!(list = secret_names(k, attr, v, &count)))
			break;
		for (i = 0; i < count; i++) {
			obj = mfd_object(a);
			ref = mfd_object(a);
			put_str(k, ref, "name", list[i]);
			put(k, obj, "secret_ref", ref);
			push(k, k->env_from, obj);
		}
		break;
	case K8S_NODE_SEL:
		if (!(map = string_map(k, v)))
			bad(k, attr, "expected {label: value} or \"label=value,...\"");
		else
			put(k, k->pod, "node_selector", map);
		break;
	case K8S_TOLERATIONS:
		if (v->kind != VAL_ARRAY)
			bad(k, attr, "expected a list of tolerations ({\"key\", \"operator\", \"value\", \"effect\"})");
		else
			put(k, k->pod, "tolerations", (MfdValue *)v);
		break;
	case K8S_LABELS:
	case K8S_ANNOTATIONS:
		if (!(map = v->kind == VAL_OBJECT ? string_map(k, v) : NULL))
			bad(k, attr, "expected {name: value}");
		else
			put(k, k->meta, attr_names[attr], map);
		break;
	case K8S_PVCS:
		if (v->kind != VAL_OBJECT || !(map = string_map(k, v))) {
			bad(k, attr, "expected {claim: mount path}");
			break;
		}
		for (i = 0; i < map->u.obj.n; i++) {
			obj = mfd_object(a);
			ref = mfd_object(a);
			put_str(k, ref, "claim_name", map->u.obj.v[i].key);
			put_str(k, obj, "name", map->u.obj.v[i].key);
			put(k, obj, "persistent_volume_claim", ref);
			push(k, k->volumes, obj);
			obj = mfd_object(a);
			put_str(k, obj, "name", map->u.obj.v[i].key);
			put(k, obj, "mount_path", map->u.obj.v[i].value);
			push(k, k->mounts, obj);
		}
		break;
	case K8S_SHM:
		if ((n = scalar(a, v) ? whole(scalar(a, v)) : -1) <= 0)
			bad(k, attr, "expected a positive whole number of MiB");
		else
			memory_volume(k, "dhsm", n, "/dev/shm");
		break;
	case K8S_PORT:
		if ((n = scalar(a, v) ? whole(scalar(a, v)) : -1) <= 0 || n > 65535) {
			bad(k, attr, "expected a port number");
			break;
		}
		obj = mfd_object(a);
		put(k, obj, "container_port", mfd_int(a, n));
		push(k, k->ports, obj);
		break;
	case K8S_SECURITY:
		if (v->kind != VAL_OBJECT)
			bad(k, attr, "expected an object (the container's securityContext)");
		else
			put(k, k->container, "security_context", (MfdValue *)v);
		break;
	case K8S_POOL:
		bad(k, attr, "has no Kubernetes meaning under Dagster (it picks an Outerbounds compute pool); use "
			"node_selector or tolerations");
		break;
	case K8S_EXECUTABLE:
		bad(k, attr, "has no Kubernetes meaning under Dagster: the pod runs Dagster's step command, whose "
			"Python runs the task");
		break;
	case K8S_RESOLUTION:
		if ((n = scalar(a, v) ? whole(scalar(a, v)) : -1) != K8S_DEFAULT_RESOLUTION_TIMEOUT)
			bad(k, attr, "has no Kubernetes meaning under Dagster (only @parallel, which is not supported, "
				"reads it)");
		break;
	default: /* resources(), tmpfs() and mfd_k8s_config() read the others */
		break;
	}
}

/* Puts obj under key into parent unless it is empty. */
static void
put_nonempty(K8s *k, MfdValue *parent, const char *key, MfdValue *obj)
{
	if ((obj->kind == VAL_OBJECT && obj->u.obj.n) || (obj->kind == VAL_ARRAY && obj->u.arr.n))
		put(k, parent, key, obj);
}

/*
 * The dagster-k8s/config tag of step s's op: {"container_config", "pod_spec_config",
 * "pod_template_spec_metadata"}, each only when it says something; NULL when nothing at all (no @kubernetes
 * and no @resources). Reports every attribute it cannot express. Sets *namespace (and *namespace_step) when
 * the step's @kubernetes names a namespace, for lowering to check that every step agrees.
 */
const MfdValue *
mfd_k8s_config(Compile *c, const Step *s, const char **namespace, const Step **namespace_step)
{
	MfdArena *a = c->arena;
	const Decorator *d = NULL;
	const MfdValue *attrs = NULL, *shm;
	const Member *m;
	MfdValue *out, *res;
	K8s k = {0};
	K8sAttr attr;
	size_t i;

	for (i = 0; i < s->ndecos && !d; i++)
		if (s->decos[i].kind == DECO_KUBERNETES)
			d = &s->decos[i];
	attrs = d ? d->attributes : NULL;
	k.c = c;
	k.s = s;
	k.container = mfd_object(a);
	k.requests = mfd_object(a);
	k.limits = mfd_object(a);
	k.env = mfd_array(a);
	k.env_from = mfd_array(a);
	k.mounts = mfd_array(a);
	k.ports = mfd_array(a);
	k.pod = mfd_object(a);
	k.volumes = mfd_array(a);
	k.meta = mfd_object(a);
	*namespace = NULL;
	for (i = 0; attrs && i < attrs->u.obj.n; i++) {
		m = &attrs->u.obj.v[i];
		attr = lookup(m->key, m->keylen);
		if (attr == K8S_UNKNOWN)
			mfd_error_at(c, s, "@kubernetes attribute %s has no Kubernetes meaning under Dagster (this compiler "
				"knows those of Metaflow's @kubernetes)", mfd_quote(a, m->key, m->keylen));
		else if (!unset(m->value))
			attribute(&k, d, attr, m->value, namespace);
	}
	if (*namespace)
		*namespace_step = s;
	resources(&k, attrs);
	if (attrs)
		tmpfs(&k, attrs);
	shm = attrs ? mfd_object_get(attrs, "shared_memory") : NULL;
	if (unset(shm) && resource(s, "shared_memory"))
		attribute(&k, d, K8S_SHM, str_value(a, resource(s, "shared_memory")), namespace);
	res = mfd_object(a);
	put_nonempty(&k, res, "requests", k.requests);
	put_nonempty(&k, res, "limits", k.limits);
	put_nonempty(&k, k.container, "resources", res);
	put_nonempty(&k, k.container, "env", k.env);
	put_nonempty(&k, k.container, "env_from", k.env_from);
	put_nonempty(&k, k.container, "volume_mounts", k.mounts);
	put_nonempty(&k, k.container, "ports", k.ports);
	put_nonempty(&k, k.pod, "volumes", k.volumes);
	out = mfd_object(a);
	put_nonempty(&k, out, "container_config", k.container);
	put_nonempty(&k, out, "pod_spec_config", k.pod);
	put_nonempty(&k, out, "pod_template_spec_metadata", k.meta);
	return out->u.obj.n ? out : NULL;
}
