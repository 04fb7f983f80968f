/* lower.h - checked AST to VIR (lower.c). */
#ifndef VX_LOWER_H
#define VX_LOWER_H

#include "ast.h"
#include "vir.h"

/* policy must have passed sema_check. */
VirModule *lower_policy(Arena *arena, Node *policy);

#endif
