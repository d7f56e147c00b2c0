# Helpers shared by every folder's CMakeLists.txt.

# kd_unit_test(NAME SOURCES src... LIBS lib... [LABELS l...] [TIMEOUT s])
# Builds build/NAME from the sources and the forking cmocka runner (tests/kd_test.c) and
# registers it with ctest. Every test case runs in its own process (tests/kd_test.h).
# Exit code 77 means "skipped" (e.g. the Keepa fixtures are absent).
function(kd_unit_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES} ${CMAKE_SOURCE_DIR}/tests/kd_test.c)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  target_compile_definitions(${name} PRIVATE
    KD_FIXTURES_DIR="${KD_FIXTURES_DIR}"
    KD_BUILD_DIR="${CMAKE_BINARY_DIR}"
    KD_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
    SKIP_RETURN_CODE 77)
endfunction()
