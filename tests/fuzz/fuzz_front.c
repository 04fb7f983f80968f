/* fuzz_front.c - libFuzzer target over the whole front end: lexer, parser and checker, then
 * every printer that runs on their results (diagnostics as text and as JSON, the token dump,
 * the typed AST). The input is one .vx source; nothing it contains may crash, hang or trip
 * AddressSanitizer/UBSan. Built only with -DVX_FUZZ=ON and clang (tests/fuzz/CMakeLists.txt);
 * docs/fuzzing.md says how to run it. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "compile.h"
#include "lex.h"

/* Printers write here: formatting runs in full, the bytes go nowhere. */
static FILE *sink;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  sink = fopen("/dev/null", "w");
  if (!sink) {
    perror("fuzz_front: /dev/null");
    abort();
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 64 * 1024) /* also capped by -max_len; longer inputs only slow the search */
    return 0;
  Compilation c;
  int nerrors = front_compile(&c, "fuzz.vx", (const char *)data, (int)size);
  if (nerrors != c.diags.nerrors)
    abort();
  diag_render(&c.diags, sink, DIAG_TEXT);
  diag_render(&c.diags, sink, DIAG_JSON);
  lex_dump(&c.src, sink);
  if (c.policy) {
    ast_print(sink, c.policy, false);
    if (c.checked) {
      ast_print(sink, c.policy, true);
      /* whatever the checker accepts must lower to valid VIR: a verifier complaint is a bug */
      VirModule *m = compile_middle(&c);
      if (!m || vir_verify(m, stderr))
        abort();
      vir_print(sink, m);
    }
  }
  front_destroy(&c);
  return 0;
}
