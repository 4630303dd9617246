/*
 * lower.c: from the checked Flow to the Dagster plan that emit.c prints.
 *
 * This version has no plan of its own: emit.c prints straight from the Flow, so there is nothing to lower
 * yet. The pass keeps its place in the driver's list and its contract: it runs only on a flow that check.c
 * accepted, reports problems as diagnostics and returns the number of errors so far.
 */
#include "internal.h"

int
mfd_lower(Compile *c)
{
	return c->diags.nerrors;
}
