# docs_options.cmake - docs/language.md must not drift from vxc: every option that
# `vxc --help` lists appears in it (section 15), and its title names the version that
# `vxc --version` prints. Run by CTest as
#   cmake -DVXC=path/to/vxc -DDOC=docs/language.md -P docs_options.cmake
cmake_minimum_required(VERSION 3.25)

execute_process(COMMAND ${VXC} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "vxc --help exited ${rc}")
endif()
file(READ ${DOC} doc)
set(missing "")
set(count 0)
string(REPLACE "\n" ";" lines "${help}")
foreach(line IN LISTS lines)
  # an option line: indented by 1 to 6 (deeper is a description's continuation), the
  # options, then two or more spaces and the description
  if(NOT line MATCHES "^ ? ? ? ? ? ?-")
    continue()
  endif()
  string(REGEX REPLACE "^ +" "" line "${line}")
  string(REGEX REPLACE "  .*$" "" column "${line}")
  string(REGEX MATCHALL "-[-A-Za-z0-9_=]+" options "${column}")
  foreach(opt IN LISTS options)
    math(EXPR count "${count} + 1")
    string(FIND "${doc}" "`${opt}" at)
    if(at EQUAL -1)
      string(FIND "${doc}" " ${opt}" at) # inside a code span: `--G g`, `... --budget B`
    endif()
    if(at EQUAL -1)
      list(APPEND missing "${opt}")
    endif()
  endforeach()
endforeach()
if(count LESS 10)
  message(FATAL_ERROR "found only ${count} options in vxc --help:\n${help}")
endif()
if(missing)
  message(FATAL_ERROR "options of vxc --help missing from ${DOC}: ${missing}")
endif()

execute_process(COMMAND ${VXC} --version OUTPUT_VARIABLE version)
string(REGEX MATCH "[0-9]+\\.[0-9]+\\.[0-9]+" version "${version}")
string(REGEX MATCH "^[^\n]*" title "${doc}")
string(FIND "${title}" "${version}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${DOC}'s title '${title}' does not name vxc's version ${version}")
endif()
message(STATUS "docs_options: ${count} options of vxc --help are in ${DOC}; version ${version}")
