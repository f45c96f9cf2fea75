# tests/kube/: a live kube-apiserver on etcd-fdb, driven with kubectl (tests/kube/README.md).
# Included from the root CMakeLists.txt after the etcd-fdb target and enable_testing().
# Labelled `live` and left out of tests/run-all.sh (ctest -LE live): its first run builds
# kube-apiserver and kubectl from the Go module proxy (tests/kube/build.sh, cached outside the
# repository), which takes far longer than the test itself. Run it with `ctest -L live`.
find_program(GO_EXECUTABLE go)
find_program(OPENSSL_PROGRAM openssl)
if(GO_EXECUTABLE AND OPENSSL_PROGRAM)
  add_test(NAME kube_live
           COMMAND ${CMAKE_CURRENT_LIST_DIR}/live_test.sh $<TARGET_FILE:etcd-fdb>)
  set_tests_properties(kube_live PROPERTIES LABELS live TIMEOUT 3600)
else()
  message(WARNING "go or openssl not found: the live Kubernetes test (tests/kube) is not registered")
endif()
