/*
 * value.c: the generic value tree, the neutral form in which both front ends hand the IR to the core.
 *
 * This is not a parser: the Python binding builds the tree from dicts and lists, json.c from jansson's tree.
 * Nodes, strings and member arrays all live in the arena the caller passes, and objects keep their keys in the
 * order they were put. Constructors return NULL (adders -1) when the arena cannot allocate.
 */
#include <string.h>

#include "internal.h"

static const char *const kind_names[] = {
#define X(kind, name) name,
	VALUE_KINDS(X)
#undef X
};

const char *
mfd_value_kind_name(ValueKind k)
{
	return kind_names[k];
}

static MfdValue *
node(MfdArena *a, ValueKind kind)
{
	MfdValue *v = mfd_alloc(a, sizeof *v);

	if (v)
		v->kind = kind;
	return v;
}

MfdValue *
mfd_null(MfdArena *a)
{
	return node(a, VAL_NULL);
}

MfdValue *
mfd_bool(MfdArena *a, int b)
{
	MfdValue *v = node(a, VAL_BOOL);

	if (v)
		v->u.b = b != 0;
	return v;
}

MfdValue *
mfd_int(MfdArena *a, long long i)
{
	MfdValue *v = node(a, VAL_INT);

	if (v)
		v->u.i = i;
	return v;
}

MfdValue *
mfd_float(MfdArena *a, double d)
{
	MfdValue *v = node(a, VAL_FLOAT);

	if (v)
		v->u.f = d;
	return v;
}

MfdValue *
mfd_string(MfdArena *a, const char *s, size_t len)
{
	MfdValue *v = node(a, VAL_STRING);

	if (!v)
		return NULL;
	v->u.str.s = mfd_strndup(a, s, len);
	v->u.str.len = len;
	return v->u.str.s ? v : NULL;
}

MfdValue *
mfd_array(MfdArena *a)
{
	return node(a, VAL_ARRAY);
}

MfdValue *
mfd_object(MfdArena *a)
{
	return node(a, VAL_OBJECT);
}

/* Makes room for one more element of size elem in *v (n used, *cap allocated). Returns 0 or -1. */
static int
grow(MfdArena *a, void **v, size_t n, size_t *cap, size_t elem)
{
	size_t newcap;
	void *p;

	if (n < *cap)
		return 0;
	newcap = *cap ? 2 * *cap : 4;
	if (newcap > (size_t)-1 / 2 / elem)
		return -1;
	p = mfd_realloc(a, *v, *cap * elem, newcap * elem);
	if (!p)
		return -1;
	*v = p;
	*cap = newcap;
	return 0;
}

int
mfd_array_push(MfdArena *a, MfdValue *array, MfdValue *item)
{
	void *v;

	if (array->kind != VAL_ARRAY || !item)
		return -1;
	v = array->u.arr.v;
	if (grow(a, &v, array->u.arr.n, &array->u.arr.cap, sizeof(MfdValue *)))
		return -1;
	array->u.arr.v = v;
	array->u.arr.v[array->u.arr.n++] = item;
	return 0;
}

int
mfd_object_put(MfdArena *a, MfdValue *object, const char *key, size_t keylen, MfdValue *value)
{
	void *v;
	char *k;

	if (object->kind != VAL_OBJECT || !value)
		return -1;
	v = object->u.obj.v;
	k = mfd_strndup(a, key, keylen);
	if (!k || grow(a, &v, object->u.obj.n, &object->u.obj.cap, sizeof(Member)))
		return -1;
	object->u.obj.v = v;
	object->u.obj.v[object->u.obj.n++] = (Member){k, keylen, value};
	return 0;
}

/* The value of the first member of obj named key (a C string), or NULL. */
const MfdValue *
mfd_object_get(const MfdValue *obj, const char *key)
{
	size_t i, len = strlen(key);

	for (i = 0; i < obj->u.obj.n; i++)
		if (obj->u.obj.v[i].keylen == len && memcmp(obj->u.obj.v[i].key, key, len) == 0)
			return obj->u.obj.v[i].value;
	return NULL;
}
