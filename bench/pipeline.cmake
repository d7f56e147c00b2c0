# The issue-5 pipeline benchmark (bench/README.md): bench_pipeline drives the whole daemon
# against kdeals-sim and runs bench_legacy, the replaced system's token policy, beside it.
# Included from bench/CMakeLists.txt.
add_executable(bench_legacy legacy.c)
target_include_directories(bench_legacy PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bench_legacy PRIVATE kd_keepa kd_judge kd_config kd_base
                      PkgConfig::JANSSON PkgConfig::UV PkgConfig::CURL)

add_executable(bench_pipeline bench_pipeline.c)
target_include_directories(bench_pipeline PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bench_pipeline PRIVATE kd_shm kd_store kd_config kd_base
                      PkgConfig::JANSSON PkgConfig::CURL)
# bench_pipeline runs these three from the same build folder.
add_dependencies(bench_pipeline bench_legacy kdeals kdeals-sim)
