/*
 * strbuf.c: a growing string with a sticky error flag (SQLite's StrAccum) and an indentation level.
 *
 * Appends never fail visibly: the first failure sets err and every later append does nothing, so an emitter
 * appends freely and checks once, when mfd_sb_str returns NULL. The text is always NUL-terminated. Indentation
 * is written lazily before the first byte of each non-empty line, so blank lines carry no trailing spaces and
 * pasted multi-line text follows the current level.
 *
 * The Python literal writers print text that Python reads back as the same value, and print the same bytes
 * for the same value (object keys in the order given, floats in their shortest round-trip form). The JSON
 * writer prints what Python's json.dumps prints for the same value.
 */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void
mfd_sb_init(StrBuf *sb, MfdArena *a)
{
	memset(sb, 0, sizeof *sb);
	sb->arena = a;
	sb->bol = 1;
}

/* Makes room for n more bytes and the NUL. Returns 0, or -1 with err set (or already set). */
static int
reserve(StrBuf *sb, size_t n)
{
	size_t need, cap;
	char *p;

	if (sb->err)
		return -1;
	if (n > SB_MAX_LEN - sb->len) {
		sb->err = SB_TOOBIG;
		return -1;
	}
	need = sb->len + n + 1;
	if (need <= sb->cap)
		return 0;
	for (cap = sb->cap ? sb->cap : 256; cap < need; cap *= 2)
		;
	p = mfd_realloc(sb->arena, sb->buf, sb->cap, cap);
	if (!p) {
		sb->err = SB_NOMEM;
		return -1;
	}
	sb->buf = p;
	sb->cap = cap;
	return 0;
}

/* Appends n bytes that hold no newline, without indentation. */
static void
put_raw(StrBuf *sb, const void *s, size_t n)
{
	if (reserve(sb, n))
		return;
	memcpy(sb->buf + sb->len, s, n);
	sb->len += n;
	sb->buf[sb->len] = '\0';
}

void
mfd_sb_putn(StrBuf *sb, const char *s, size_t n)
{
	const char *nl;
	size_t k;
	int i;

	while (n > 0) {
		if (sb->bol && *s != '\n')
			for (i = 0; i < sb->indent; i++)
				put_raw(sb, "    ", SB_INDENT);
		nl = memchr(s, '\n', n);
		k = nl ? (size_t)(nl - s) + 1 : n;
		put_raw(sb, s, k);
		sb->bol = nl != NULL;
		s += k;
		n -= k;
	}
}

void
mfd_sb_puts(StrBuf *sb, const char *s)
{
	mfd_sb_putn(sb, s, strlen(s));
}

void
mfd_sb_printf(StrBuf *sb, const char *fmt, ...)
{
	char small[256], *p = small;
	va_list ap;
	int n;

	if (sb->err)
		return;
	va_start(ap, fmt);
	n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0) {
		sb->err = SB_NOMEM;
		return;
	}
	if ((size_t)n >= sizeof small) {
		va_start(ap, fmt);
		p = mfd_vprintf(sb->arena, fmt, ap);
		va_end(ap);
		if (!p) {
			sb->err = SB_NOMEM;
			return;
		}
	}
	mfd_sb_putn(sb, p, (size_t)n);
}

void
mfd_sb_indent(StrBuf *sb, int delta)
{
	assert(sb->indent + delta >= 0);
	sb->indent += delta;
}

/* The text so far, or NULL once an append has failed. */
const char *
mfd_sb_str(StrBuf *sb)
{
	if (reserve(sb, 0))
		return NULL;
	sb->buf[sb->len] = '\0';
	return sb->buf;
}

/*
 * Length of the well-formed UTF-8 sequence of two to four bytes at p (no overlong forms, no surrogates,
 * nothing above U+10FFFF), or 0 when there is none.
 */
static size_t
utf8_len(const unsigned char *p, size_t n)
{
	unsigned long c;
	size_t len, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, c = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, c = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, c = p[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return len;
}

/*
 * Appends a double-quoted Python string literal of the n bytes at s. Backslash, quote and control characters
 * are escaped; well-formed UTF-8 is copied as is; any other byte becomes \xNN, so the output stays valid
 * UTF-8 source whatever s holds.
 */
void
mfd_sb_pystr(StrBuf *sb, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s, *end = p + n, *run;
	char esc[4];
	size_t k;

	mfd_sb_putn(sb, "\"", 1);
	while (p < end) {
		for (run = p; p < end; p += k) {
			if (*p >= 0x80)
				k = utf8_len(p, (size_t)(end - p));
			else
				k = *p >= 0x20 && *p != 0x7f && *p != '"' && *p != '\\';
			if (!k)
				break;
		}
		put_raw(sb, run, (size_t)(p - run));
		if (p == end)
			break;
		switch (*p) {
		case '"':  put_raw(sb, "\\\"", 2); break;
		case '\\': put_raw(sb, "\\\\", 2); break;
		case '\n': put_raw(sb, "\\n", 2); break;
		case '\r': put_raw(sb, "\\r", 2); break;
		case '\t': put_raw(sb, "\\t", 2); break;
		default:
			esc[0] = '\\';
			esc[1] = 'x';
			esc[2] = hex[*p >> 4];
			esc[3] = hex[*p & 15];
			put_raw(sb, esc, 4);
		}
		p++;
	}
	put_raw(sb, "\"", 1);
}

/*
 * Adds one unit in the last digit of the %e text s, in place. Returns 0, with s no longer meaningful, when all
 * its digits are nines (the carry would need one more digit).
 */
static int
bump_last_digit(char *s)
{
	char *p;

	for (p = strchr(s, 'e'); p-- > s;) {
		if (*p < '0' || *p > '9')
			continue;
		if (*p < '9') {
			++*p;
			return 1;
		}
		*p = '0';
	}
	return 0;
}

/*
 * Finds the fewest significant digits that read back as the finite d, as Python's repr does. Writes them
 * into digits (at least 18 bytes, not NUL-terminated) and sets *exp10 to the decimal exponent of the first
 * one. Returns the number of digits.
 *
 * The digits come from the shortest %.*e that reads back. That is the nearest decimal of its length, which
 * is the shortest one when the values that read back as d lie evenly around it. A power of two is the
 * exception: its upper neighbour is twice as far as its lower one, so the decimal one unit above the
 * nearest may read back when the nearest does not, and then Python prints it. Digits are copied one by one,
 * so the locale's decimal point never matters.
 */
static int
shortest_digits(double d, char *digits, int *exp10)
{
	char text[40];
	const char *p;
	int prec, n = 0;

	for (prec = 0; prec < 17; prec++) {
		snprintf(text, sizeof text, "%.*e", prec, d);
		if (strtod(text, NULL) == d || (bump_last_digit(text) && strtod(text, NULL) == d))
			break;
	}
	for (p = text; *p != 'e'; p++)
		if (*p >= '0' && *p <= '9')
			digits[n++] = *p;
	*exp10 = atoi(p + 1);
	while (n > 1 && digits[n - 1] == '0')
		n--;
	return n;
}

/*
 * Writes d into buf (at least 32 bytes) as Python's repr does: positional when the decimal exponent is from
 * -4 to 15 ("0.0001", "123.5", and "2.0" with ".0" when there is no fraction), else as d.ddde-XX with at
 * least two exponent digits ("1e-05", "1e+16"). Non-finite values, which JSON cannot hold, print as
 * float("...") expressions.
 */
static void
format_float(char *buf, size_t size, double d)
{
	char digits[20], *q = buf;
	int n, exp10, point, i;

	assert(size >= 32);
	if (isnan(d) || isinf(d)) {
		snprintf(buf, size, "%sfloat(\"%s\")", d < 0 ? "-" : "", isnan(d) ? "nan" : "inf");
		return;
	}
	n = shortest_digits(d, digits, &exp10);
	if (signbit(d))
		*q++ = '-';
	point = exp10 + 1; /* digits before the decimal point */
	if (point <= -4 || point > 16) {
		for (i = 0; i < n; i++) {
			*q++ = digits[i];
			if (i == 0 && n > 1)
				*q++ = '.';
		}
		snprintf(q, size - (size_t)(q - buf), "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
		return;
	}
	if (point <= 0) {
		*q++ = '0';
		*q++ = '.';
		for (i = point; i < 0; i++)
			*q++ = '0';
	}
	for (i = 0; i < n || i < point; i++) {
		if (i == point && point > 0)
			*q++ = '.';
		*q++ = i < n ? digits[i] : '0';
	}
	if (n <= point) {
		*q++ = '.';
		*q++ = '0';
	}
	*q = '\0';
}

/* The code point of the well-formed UTF-8 sequence of len bytes at p (utf8_len). */
static unsigned long
utf8_code(const unsigned char *p, size_t len)
{
	unsigned long c = p[0] & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
	size_t i;

	for (i = 1; i < len; i++)
		c = c << 6 | (p[i] & 0x3f);
	return c;
}

/* Appends \uXXXX for the UTF-16 code unit u, in lower-case hex as Python's json module writes it. */
static void
json_unit(StrBuf *sb, unsigned long u)
{
	char esc[8];

	snprintf(esc, sizeof esc, "\\u%04lx", u & 0xffff);
	put_raw(sb, esc, 6);
}

/*
 * Appends the n bytes at s as a JSON string, as Python's json.dumps writes it (ensure_ascii): printable ASCII
 * as it is but for '"' and '\\', \b \f \n \r \t, every other character as \uXXXX (a surrogate pair above
 * U+FFFF). A byte that is not part of well-formed UTF-8 is written as the character of its value.
 */
static void
json_str(StrBuf *sb, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n, *run;
	unsigned long c;
	size_t k;

	mfd_sb_putn(sb, "\"", 1);
	while (p < end) {
		for (run = p; p < end && *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\'; p++)
			;
		put_raw(sb, run, (size_t)(p - run));
		if (p == end)
			break;
		switch (*p) {
		case '"':  put_raw(sb, "\\\"", 2); p++; continue;
		case '\\': put_raw(sb, "\\\\", 2); p++; continue;
		case '\b': put_raw(sb, "\\b", 2); p++; continue;
		case '\f': put_raw(sb, "\\f", 2); p++; continue;
		case '\n': put_raw(sb, "\\n", 2); p++; continue;
		case '\r': put_raw(sb, "\\r", 2); p++; continue;
		case '\t': put_raw(sb, "\\t", 2); p++; continue;
		}
		k = *p >= 0x80 ? utf8_len(p, (size_t)(end - p)) : 0;
		c = k ? utf8_code(p, k) : *p;
		p += k ? k : 1;
		if (c > 0xffff) {
			json_unit(sb, 0xd800 | ((c - 0x10000) >> 10));
			json_unit(sb, 0xdc00 | ((c - 0x10000) & 0x3ff));
		} else {
			json_unit(sb, c);
		}
	}
	put_raw(sb, "\"", 1);
}

/* How a value is spelled: a Python literal or JSON text. The two differ only in their scalars and strings. */
typedef struct {
	const char *null, *yes, *no;
	int named_nonfinite;	/* NaN, Infinity, -Infinity (json.dumps) rather than the float's own text */
	void (*str)(StrBuf *sb, const char *s, size_t n);
} Spelling;

static const Spelling PYTHON = {"None", "True", "False", 0, mfd_sb_pystr};
static const Spelling JSON = {"null", "true", "false", 1, json_str};

/* The reader bounds the depth of every value it accepts (MFD_MAX_DEPTH), which bounds the recursion here. */
static void
sb_value(StrBuf *sb, const MfdValue *v, const Spelling *sp)
{
	char num[32];
	size_t i;

	switch (v->kind) {
	case VAL_NULL:
		mfd_sb_puts(sb, sp->null);
		break;
	case VAL_BOOL:
		mfd_sb_puts(sb, v->u.b ? sp->yes : sp->no);
		break;
	case VAL_INT:
		mfd_sb_printf(sb, "%lld", v->u.i);
		break;
	case VAL_FLOAT:
		if (sp->named_nonfinite && isnan(v->u.f))
			mfd_sb_puts(sb, "NaN");
		else if (sp->named_nonfinite && isinf(v->u.f))
			mfd_sb_puts(sb, v->u.f < 0 ? "-Infinity" : "Infinity");
		else {
			format_float(num, sizeof num, v->u.f);
			mfd_sb_puts(sb, num);
		}
		break;
	case VAL_STRING:
		sp->str(sb, v->u.str.s, v->u.str.len);
		break;
	case VAL_ARRAY:
		mfd_sb_puts(sb, "[");
		for (i = 0; i < v->u.arr.n; i++) {
			if (i)
				mfd_sb_puts(sb, ", ");
			sb_value(sb, v->u.arr.v[i], sp);
		}
		mfd_sb_puts(sb, "]");
		break;
	case VAL_OBJECT:
		mfd_sb_puts(sb, "{");
		for (i = 0; i < v->u.obj.n; i++) {
			if (i)
				mfd_sb_puts(sb, ", ");
			sp->str(sb, v->u.obj.v[i].key, v->u.obj.v[i].keylen);
			mfd_sb_puts(sb, ": ");
			sb_value(sb, v->u.obj.v[i].value, sp);
		}
		mfd_sb_puts(sb, "}");
		break;
	}
}

/* Appends v as a Python literal: None, True, False, int, float, str, list or dict. */
void
mfd_sb_pyvalue(StrBuf *sb, const MfdValue *v)
{
	sb_value(sb, v, &PYTHON);
}

/*
 * Appends v as JSON text, byte for byte as Python's json.dumps writes the same value with its defaults: ", "
 * and ": " between items, keys in the order given, floats as repr writes them (NaN, Infinity and -Infinity
 * for the values JSON has no form for), strings as json_str.
 */
void
mfd_sb_json(StrBuf *sb, const MfdValue *v)
{
	sb_value(sb, v, &JSON);
}

/*
 * s as a Python string literal in a new arena string, for quoting IR text in messages: 'name' when s is
 * printable ASCII without quote or backslash, else the escaped double-quoted form of mfd_sb_pystr.
 */
const char *
mfd_quote(MfdArena *a, const char *s, size_t n)
{
	const char *q;
	StrBuf sb;
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e || s[i] == '\'' || s[i] == '\\')
			break;
	mfd_sb_init(&sb, a);
	if (i == n) {
		mfd_sb_putn(&sb, "'", 1);
		mfd_sb_putn(&sb, s, n);
		mfd_sb_putn(&sb, "'", 1);
	} else {
		mfd_sb_pystr(&sb, s, n);
	}
	q = mfd_sb_str(&sb);
	return q ? q : "''";
}
