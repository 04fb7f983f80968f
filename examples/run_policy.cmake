# run_policy.cmake - CTest driver for examples/run_policy (cmake -P): compiles SRC with VXC
# into OUT, runs RUN on it with OVERRIDE, and fails unless both exit 0 and the output ends
# with run_policy's JSON summary for POLICY. Runs nothing else and writes only OUT.
foreach(v VXC RUN SRC OUT POLICY)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_policy.cmake: -D${v}=... is required")
  endif()
endforeach()

execute_process(COMMAND ${VXC} ${SRC} -o ${OUT} RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "vxc ${SRC} -o ${OUT} failed (${rc}):\n${err}")
endif()

execute_process(COMMAND ${RUN} ${OUT} ${OVERRIDE} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
message("${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "run_policy exited with ${rc}:\n${err}")
endif()
set(num "-?[0-9.]+(e[-+][0-9]+)?")
if(NOT out MATCHES "\n{\"policy\":\"${POLICY}\",\"T\":[0-9]+,\"budget\":(${num}|null),\"params\":{[^}]*},\"steps\":[0-9]+,\"mean_density\":${num},\"mean_rel_err\":${num},\"worst_rel_err\":${num}}\n$")
  message(FATAL_ERROR "run_policy did not end with its JSON summary line")
endif()
