# check_compiles.cmake - `vxc --check` success must mean the policy compiles: every .vx file
# in DIRS that --check accepts must also compile to an artifact (the host target, the one
# target vxc always builds). A construct the checker lets through and code generation
# rejects (E1001) fails here. Run by CTest as
#   cmake -DVXC=path/to/vxc -DDIRS="dir;dir" -DWORK=scratch -P check_compiles.cmake
cmake_minimum_required(VERSION 3.25)

file(MAKE_DIRECTORY ${WORK})
set(accepted 0)
set(failed "")
foreach(dir IN LISTS DIRS)
  file(GLOB files ${dir}/*.vx)
  foreach(f IN LISTS files)
    execute_process(COMMAND ${VXC} --check ${f} RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
    if(NOT rc EQUAL 0)
      continue()
    endif()
    math(EXPR accepted "${accepted} + 1")
    get_filename_component(name ${f} NAME_WE)
    execute_process(COMMAND ${VXC} ${f} -o ${WORK}/${name}.vxp RESULT_VARIABLE rc ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
      list(APPEND failed ${f})
      message(SEND_ERROR "${f}: --check accepts it, compiling exits ${rc}:\n${err}")
    endif()
  endforeach()
endforeach()
if(accepted LESS 20)
  message(FATAL_ERROR "only ${accepted} files accepted by --check in ${DIRS}")
endif()
list(LENGTH failed nfailed)
if(nfailed GREATER 0)
  message(FATAL_ERROR "check_compiles: ${nfailed} of ${accepted} accepted files do not compile")
endif()
message(STATUS "check_compiles: all ${accepted} files that --check accepts compile to artifacts")
