# spate_cc_library(NAME n SRCS ... DEPS ...): one static library per module.
# Includes are rooted at the repo root ("queue/spool.h"). Warnings are errors in the presets and
# CI (SPATE_WERROR=ON there); a build a packager or user configures by hand gets the warnings
# without failing on one a newer or older compiler adds.
option(SPATE_WERROR "Treat compiler warnings as errors (the presets and CI turn it on)" OFF)
set(SPATE_WARNINGS -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wformat=2)
if(SPATE_WERROR)
  list(APPEND SPATE_WARNINGS -Werror)
endif()
# Tests and fuzz replays build std::string with operator+ chains, where GCC 12 at -O3 reports
# a false -Wrestrict (GCC PR 105651); the product code has none and keeps the warning.
set(SPATE_TEST_WARNINGS ${SPATE_WARNINGS})
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  list(APPEND SPATE_TEST_WARNINGS -Wno-restrict)
endif()

function(spate_cc_library)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS" ${ARGN})
  add_library(spate_${A_NAME} STATIC ${A_SRCS})
  target_include_directories(spate_${A_NAME} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(spate_${A_NAME} PUBLIC ${A_DEPS})
  target_compile_options(spate_${A_NAME} PRIVATE ${SPATE_WARNINGS})
endfunction()

# spate_cc_test(NAME n SRCS ... DEPS ...): a GoogleTest binary registered with ctest.
function(spate_cc_test)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${A_NAME} ${A_SRCS})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_compile_options(${A_NAME} PRIVATE ${SPATE_TEST_WARNINGS})
  # NO_PRETTY_VALUES: a parameterised case is named by its generator or index, not by its value
  # printed in full (a 255-octet address would pad the whole ctest listing to its width).
  gtest_discover_tests(${A_NAME} DISCOVERY_TIMEOUT 60 NO_PRETTY_VALUES PROPERTIES LABELS unit)
endfunction()
