# Helpers for tests/CMakeLists.txt (every test) and bench/CMakeLists.txt (every benchmark).

# kd_test(NAME unit|integration LIBS lib... [HARNESS] [PG] [LABELS l...] [TIMEOUT s]
#         [DEPENDS t...] [DEFINES d...] [CASES case...])
# Builds build/NAME from tests/<kind>/NAME.c (so a test's binary is named after its file) and
# the forking cmocka runner (tests/kd_test.c), plus tests/kd_harness.c with HARNESS and
# tests/kd_pg.c (a PostgreSQL server of the test's own, and libpq) with PG, and
# registers it with ctest. Every test case runs in its own process (tests/kd_test.h). The
# label defaults to the kind; DEPENDS names the programs the test runs (kdeals, kdeals-sim).
# A test labelled tsan is also a dependency of the target tsan_tests (what `make test-tsan`
# builds).
# Exit code 77 means "skipped" (a test that cannot run on this machine, e.g. without root).
# With CASES the file is registered as one ctest entry per case, NAME:case running `NAME case`,
# so that ctest -j runs a long file's cases side by side (the runner fails on a name that is no
# case of the file); the list must name every case of the file, which configuring checks.
function(kd_test name kind)
  cmake_parse_arguments(T "HARNESS;PG" "TIMEOUT" "LIBS;LABELS;DEPENDS;DEFINES;CASES" ${ARGN})
  set(src ${CMAKE_SOURCE_DIR}/tests/${kind}/${name}.c ${CMAKE_SOURCE_DIR}/tests/kd_test.c)
  if(T_HARNESS)
    list(APPEND src ${CMAKE_SOURCE_DIR}/tests/kd_harness.c)
  endif()
  if(T_PG)
    list(APPEND src ${CMAKE_SOURCE_DIR}/tests/kd_pg.c)
    list(APPEND T_LIBS PkgConfig::PQ)
  endif()
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  target_compile_definitions(${name} PRIVATE
    KD_FIXTURES_DIR="${KD_FIXTURES_DIR}"
    KD_BUILD_DIR="${CMAKE_BINARY_DIR}"
    KD_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
    ${T_DEFINES})
  if(T_DEPENDS)
    add_dependencies(${name} ${T_DEPENDS})
  endif()
  if(T_CASES)
    # Every cmocka_unit_test(NAME) of the file must be listed, or it would never run.
    file(STRINGS ${CMAKE_SOURCE_DIR}/tests/${kind}/${name}.c lines REGEX "cmocka_unit_test\\(")
    foreach(l ${lines})
      string(REGEX REPLACE ".*cmocka_unit_test\\(([A-Za-z0-9_]+)\\).*" "\\1" c "${l}")
      if(NOT c IN_LIST T_CASES)
        message(FATAL_ERROR "kd_test(${name}): case ${c} is not in CASES")
      endif()
    endforeach()
    set(entries)
    foreach(c ${T_CASES})
      add_test(NAME ${name}:${c} COMMAND ${name} ${c})
      list(APPEND entries ${name}:${c})
    endforeach()
  else()
    add_test(NAME ${name} COMMAND ${name})
    set(entries ${name})
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  if(NOT T_LABELS)
    set(T_LABELS ${kind})
  endif()
  set_tests_properties(${entries} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
    SKIP_RETURN_CODE 77)
  if("tsan" IN_LIST T_LABELS)
    set_property(GLOBAL APPEND PROPERTY KD_TSAN_TARGETS ${name})
  endif()
endfunction()

# kd_bench(NAME LIBS lib... [DEPENDS t...] [DEFINES d...]): build/NAME from bench/NAME.c.
function(kd_bench name)
  cmake_parse_arguments(B "" "" "LIBS;DEPENDS;DEFINES" ${ARGN})
  add_executable(${name} ${CMAKE_SOURCE_DIR}/bench/${name}.c)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE ${B_LIBS})
  if(B_DEFINES)
    target_compile_definitions(${name} PRIVATE ${B_DEFINES})
  endif()
  if(B_DEPENDS)
    add_dependencies(${name} ${B_DEPENDS})
  endif()
endfunction()
