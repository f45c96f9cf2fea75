# etcd's robustness tests (go.etcd.io/etcd/tests/v3/robustness) against etcd-fdb:
# tests/robustness/README.md. Included from the root CMakeLists.txt after the etcd-fdb target
# and enable_testing(). Needs go and, on a clean machine, the Go module proxy (the first run
# downloads and compiles etcd's test module: about a minute on two cores). The scenarios take
# about 2 minutes (release or sanitizer build).
find_program(GO_EXECUTABLE go)
if(GO_EXECUTABLE)
  # No package argument: go test then shows the one-line summary of each scenario.
  add_test(NAME robustness
    COMMAND ${GO_EXECUTABLE} test -count=1 -timeout 20m
    WORKING_DIRECTORY ${CMAKE_CURRENT_LIST_DIR})
  set_tests_properties(robustness PROPERTIES
    ENVIRONMENT "ETCD_FDB_BIN=$<TARGET_FILE:etcd-fdb>"
    TIMEOUT 1500)
else()
  message(WARNING "go not found: the robustness tests (tests/robustness) are not registered")
endif()
