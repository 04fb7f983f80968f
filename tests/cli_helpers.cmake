# cli_helpers.cmake - what the command-line tests (tests/driver/vxc_cli.cmake,
# tests/report/report_cli.cmake) share: run vxc and check its exit status, match its output.
# Included with include(); counts failures in `failures`.
set(failures 0)

# run(NAME EXPECTED_EXIT ARGS...): runs vxc, leaves its output in OUT_<NAME>/ERR_<NAME>.
function(run name expected)
  execute_process(COMMAND ${VXC} ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(OUT_${name} "${out}" PARENT_SCOPE)
  set(ERR_${name} "${err}" PARENT_SCOPE)
  if(NOT rc STREQUAL "${expected}")
    message(SEND_ERROR "${name}: vxc ${ARGN}: exit ${rc}, expected ${expected}\nstdout:\n${out}\nstderr:\n${err}")
    math(EXPR f "${failures} + 1")
    set(failures ${f} PARENT_SCOPE)
  else()
    message(STATUS "ok   ${name}: exit ${rc}")
  endif()
endfunction()

# expect(NAME TEXT REGEX): TEXT must match REGEX.
function(expect name text regex)
  if(NOT "${text}" MATCHES "${regex}")
    message(SEND_ERROR "${name}: output does not match '${regex}':\n${text}")
    math(EXPR f "${failures} + 1")
    set(failures ${f} PARENT_SCOPE)
  else()
    message(STATUS "ok   ${name}: matches ${regex}")
  endif()
endfunction()
