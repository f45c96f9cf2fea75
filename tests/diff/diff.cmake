# diff.cmake -- the differential test against the real etcd (tests/diff/README.md).
# Included from the root CMakeLists.txt after the etcd-fdb target. Needs etcd and etcdctl
# (Debian etcd-server, etcd-client) and python3; without them the test reports "skipped".
add_test(NAME diff_etcd
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run_diff.sh $<TARGET_FILE:etcd-fdb>)
set_tests_properties(diff_etcd PROPERTIES TIMEOUT 900 SKIP_RETURN_CODE 77)
