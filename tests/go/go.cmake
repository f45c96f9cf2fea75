# Go tests of the etcd API through etcd's own client (tests/go): included from the root
# CMakeLists.txt. They start etcd-fdb processes of this build (ETCD_FDB_BIN).
find_program(GO_EXECUTABLE go)
if(GO_EXECUTABLE)
  add_test(NAME go_tests
    COMMAND ${GO_EXECUTABLE} test ./... -count=1 -timeout 20m
    WORKING_DIRECTORY ${CMAKE_CURRENT_LIST_DIR})
  set_tests_properties(go_tests PROPERTIES
    ENVIRONMENT "ETCD_FDB_BIN=$<TARGET_FILE:etcd-fdb>"
    TIMEOUT 1200)
else()
  message(WARNING "go not found: the Go tests (tests/go) are not registered")
endif()
