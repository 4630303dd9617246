/*
 * json.c: JSON text to an MfdValue tree, through jansson.
 *
 * For mfdc, the C tests and the fuzzer only; the Python extension builds its tree from Python objects and
 * must not need jansson. jansson parses; this file only converts its tree, keeping object keys in document
 * order (jansson iterates in insertion order) and string lengths (free-form values may hold NUL bytes).
 * Repeated keys are rejected, as a Python dict could not hold them either. Recursion is bounded by jansson's
 * own nesting limit.
 */
#include <stdio.h>

#include <jansson.h>

#include "internal.h"

/* The tree of j, or NULL when out of memory. */
static MfdValue *
convert(MfdArena *a, json_t *j)
{
	MfdValue *v = NULL;
	const char *key;
	size_t i, keylen;
	json_t *item;

	switch (json_typeof(j)) {
	case JSON_NULL:
		return mfd_null(a);
	case JSON_TRUE:
		return mfd_bool(a, 1);
	case JSON_FALSE:
		return mfd_bool(a, 0);
	case JSON_INTEGER:
		return mfd_int(a, json_integer_value(j));
	case JSON_REAL:
		return mfd_float(a, json_real_value(j));
	case JSON_STRING:
		return mfd_string(a, json_string_value(j), json_string_length(j));
	case JSON_ARRAY:
		v = mfd_array(a);
		json_array_foreach(j, i, item)
			if (!v || mfd_array_push(a, v, convert(a, item)))
				return NULL;
		return v;
	case JSON_OBJECT:
		v = mfd_object(a);
		json_object_keylen_foreach(j, key, keylen, item)
			if (!v || mfd_object_put(a, v, key, keylen, convert(a, item)))
				return NULL;
		return v;
	}
	return NULL;
}

/*
 * Parses the len bytes of JSON at text, read from the file name, into a tree in a. Returns the tree, or NULL
 * with a diagnostic line ("name:LINE:COLUMN: error: invalid JSON: what") written to err.
 */
MfdValue *
mfd_json_parse(MfdArena *a, const char *name, const char *text, size_t len, char *err, size_t errsize)
{
	json_error_t e;
	json_t *j;
	MfdValue *v;

	j = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
	if (!j) {
		snprintf(err, errsize, "%s:%d:%d: error: invalid JSON: %s", name, e.line, e.column, e.text);
		return NULL;
	}
	v = convert(a, j);
	json_decref(j);
	if (!v)
		snprintf(err, errsize, "%s: error: out of memory", name);
	return v;
}
