# vxc_cli.cmake - end-to-end test of the vxc binary: exit codes, text and JSON diagnostics,
# --emit output. Run by CTest as
#   cmake -DVXC=path/to/vxc -DDIR=tests/driver/cli -DWORK=scratch-dir -P vxc_cli.cmake
# Dependency-free on purpose: only CMake string and regex matching.
cmake_minimum_required(VERSION 3.25)

include(${CMAKE_CURRENT_LIST_DIR}/../cli_helpers.cmake)

function(expect_empty name text)
  if(NOT "${text}" STREQUAL "")
    message(SEND_ERROR "${name}: expected no output, got:\n${text}")
    math(EXPR f "${failures} + 1")
    set(failures ${f} PARENT_SCOPE)
  endif()
endfunction()

file(MAKE_DIRECTORY ${WORK})
set(GOOD ${DIR}/good.vx)
set(BAD ${DIR}/bad.vx)

# exit 0: a good file, --help, --version
run(check_good 0 --check ${GOOD})
expect_empty(check_good_stderr "${ERR_check_good}")
expect_empty(check_good_stdout "${OUT_check_good}")
run(help 0 --help)
expect(help "${OUT_help}" "usage: vxc")
run(version 0 --version)
expect(version "${OUT_version}" "^vxc [0-9]+\\.[0-9]+\\.[0-9]+")
run(emit_ast 0 --emit=ast ${GOOD})
expect(emit_ast "${OUT_emit_ast}" "^\\(policy good\n  \\(param budget 256 tokens\\)\n")
expect(emit_ast_select "${OUT_emit_ast}" "\\(select \\(top score:f32 budget:i32'tokens\\)\\)")
run(emit_tokens 0 --emit=tokens ${GOOD})
expect(emit_tokens "${OUT_emit_tokens}" "^2:1 'policy' policy\n2:8 identifier good\n2:13 '{' {\n")

# exit 1: errors in the input, text diagnostics on stderr with source line and caret
run(check_bad 1 --check ${BAD})
expect(text_first "${ERR_check_bad}" "bad\\.vx:4:34: error: unknown name 'qbar'\n    4 \\|   score\\[p\\] = sum\\[c\\] k\\[p, 0, c\\] \\* qbar\\[c\\];\n      \\|                                  \\^~~~~~~\n")
expect(text_second "${ERR_check_bad}" "bad\\.vx:5:21: error: unknown name 'budgt'")
expect(text_hint "${ERR_check_bad}" "= hint: did you mean 'budget'\\?")
expect_empty(check_bad_stdout "${OUT_check_bad}")
run(emit_ast_bad 1 --emit=ast ${BAD})
expect_empty(emit_ast_bad_stdout "${OUT_emit_ast_bad}")

# --diagnostics=json: one object per line, with the fields of the SPEC
run(json_bad 1 --check --diagnostics=json ${BAD})
string(REGEX MATCHALL "[^\n]+" json_lines "${ERR_json_bad}")
list(LENGTH json_lines njson)
if(NOT njson EQUAL 2)
  message(SEND_ERROR "json: expected 2 lines, got ${njson}:\n${ERR_json_bad}")
  math(EXPR failures "${failures} + 1")
endif()
foreach(line IN LISTS json_lines)
  expect(json_object "${line}" "^{\"file\":\"[^\"]*bad\\.vx\",\"line\":[0-9]+,\"column\":[0-9]+,\"end_column\":[0-9]+,\"severity\":\"error\",\"code\":\"E0[1-9][0-9][0-9]\",\"message\":\"[^\"]*\".*}$")
endforeach()
expect(json_code "${ERR_json_bad}" "\"line\":4,\"column\":34,\"end_column\":41,\"severity\":\"error\",\"code\":\"E0302\",\"message\":\"unknown name 'qbar'\"")
expect(json_hint "${ERR_json_bad}" "\"code\":\"E0302\",\"message\":\"unknown name 'budgt'\",\"hint\":\"did you mean 'budget'\\?\"")
if(njson GREATER 0)
  # a real JSON parse of the first line
  list(GET json_lines 0 first)
  string(JSON code GET "${first}" code)
  string(JSON line GET "${first}" line)
  expect(json_parse "${code}:${line}" "^E0302:4$")
endif()

# exit 2: I/O and usage errors
run(missing 2 --check ${WORK}/does-not-exist.vx)
expect(missing "${ERR_missing}" "vxc: cannot read '.*does-not-exist\\.vx'")
run(bad_option 2 --frobnicate ${GOOD})
expect(bad_option "${ERR_bad_option}" "unknown option '--frobnicate'")
run(bad_emit 2 --emit=frobnicated ${GOOD})
run(bad_format 2 --diagnostics=xml ${GOOD})
run(no_input 2 --check)
run(two_inputs 2 --check ${GOOD} ${BAD})
run(check_and_emit 2 --check --emit=ast ${GOOD})

if(failures GREATER 0)
  message(FATAL_ERROR "vxc_cli: ${failures} check(s) failed")
endif()
message(STATUS "vxc_cli: all checks passed")
