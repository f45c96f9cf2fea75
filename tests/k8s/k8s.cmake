# Kubernetes' own storage conformance suite (k8s.io/apiserver's pkg/storage/testing, run
# through kube-apiserver's etcd3 backend) against etcd-fdb: tests/k8s/README.md. Included from
# the root CMakeLists.txt after the etcd-fdb target and enable_testing(). Needs go and, on a
# clean machine, the Go module proxy: the first run downloads and compiles k8s.io/apiserver
# and its dependencies (2 to 7 minutes on two cores, depending on load); the tests take about
# 2 minutes (release or sanitizer build).
find_program(GO_EXECUTABLE go)
if(GO_EXECUTABLE)
  add_test(NAME k8s_storage
    COMMAND ${GO_EXECUTABLE} test ./... -count=1 -timeout 15m
    WORKING_DIRECTORY ${CMAKE_CURRENT_LIST_DIR})
  set_tests_properties(k8s_storage PROPERTIES
    ENVIRONMENT "ETCD_FDB_BIN=$<TARGET_FILE:etcd-fdb>"
    TIMEOUT 1200)
else()
  message(WARNING "go not found: the Kubernetes storage tests (tests/k8s) are not registered")
endif()
