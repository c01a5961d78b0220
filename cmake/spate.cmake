# spate_cc_library(NAME n SRCS ... DEPS ...): one static library per module.
# Includes are rooted at the repo root ("queue/spool.h"). Warnings are errors.
set(SPATE_WARNINGS -Wall -Wextra -Werror -Wshadow -Wnon-virtual-dtor -Wformat=2)

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
  target_compile_options(${A_NAME} PRIVATE ${SPATE_WARNINGS})
  # NO_PRETTY_VALUES: a parameterised case is named by its generator or index, not by its value
  # printed in full (a 255-octet address would pad the whole ctest listing to its width).
  gtest_discover_tests(${A_NAME} DISCOVERY_TIMEOUT 60 NO_PRETTY_VALUES PROPERTIES LABELS unit)
endfunction()
