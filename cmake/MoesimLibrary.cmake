# moesim_cc_library(NAME name SRCS ... [DEPS ...])
#
# Declares one library per top-level folder as moesim_<name> with the alias moesim::<name>, C++20,
# the project's warnings, and the repository root as its include root (so includes read
# "topologies/cluster.hpp"). Sources are listed explicitly, never globbed.
function(moesim_cc_library)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  set(target moesim_${ARG_NAME})
  add_library(${target} STATIC ${ARG_SRCS})
  add_library(moesim::${ARG_NAME} ALIAS ${target})
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_link_libraries(${target} PUBLIC ${ARG_DEPS})
  moesim_warnings(${target})
endfunction()

function(moesim_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor)
  # GCC 12 reports -Wrestrict false positives inside std::string concatenation at -O2 (GCC bug 105329).
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${target} PRIVATE -Wno-restrict)
  endif()
  if(MOESIM_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
