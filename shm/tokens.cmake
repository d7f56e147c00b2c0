# The shared token bucket (shm/tokens.c) and its tests; included by shm/CMakeLists.txt.
target_sources(kd_shm PRIVATE ${CMAKE_CURRENT_LIST_DIR}/tokens.c)
target_link_libraries(kd_shm PUBLIC m)
kd_unit_test(test_tokens SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_tokens.c LIBS kd_shm
  LABELS "unit;tsan" TIMEOUT 300)
