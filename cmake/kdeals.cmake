# Helpers for tests/CMakeLists.txt (every test) and bench/CMakeLists.txt (every benchmark).

# kd_test(NAME unit|integration LIBS lib... [HARNESS] [PG] [LABELS l...] [TIMEOUT s]
#         [DEPENDS t...] [DEFINES d...])
# Builds build/NAME from tests/<kind>/NAME.c (so a test's binary is named after its file) and
# the forking cmocka runner (tests/kd_test.c), plus tests/kd_harness.c with HARNESS and
# tests/kd_pg.c (a PostgreSQL server of the test's own, and libpq) with PG, and
# registers it with ctest. Every test case runs in its own process (tests/kd_test.h). The
# label defaults to the kind; DEPENDS names the programs the test runs (kdeals, kdeals-sim).
# A test labelled tsan is also a dependency of the target tsan_tests (what `make test-tsan`
# builds).
# Exit code 77 means "skipped" (a test that cannot run on this machine, e.g. without root).
function(kd_test name kind)
  cmake_parse_arguments(T "HARNESS;PG" "TIMEOUT" "LIBS;LABELS;DEPENDS;DEFINES" ${ARGN})
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
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  if(NOT T_LABELS)
    set(T_LABELS ${kind})
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
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
