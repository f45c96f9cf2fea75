# tests/e2e/: end-to-end tests that start the real etcd-fdb binary and drive it with
# etcdctl (etcd-client, ETCDCTL_API=3), curl, openssl and python3.
# Included from the root CMakeLists.txt after the etcd-fdb target and enable_testing().
find_program(ETCDCTL_PROGRAM etcdctl)
if(ETCDCTL_PROGRAM)
  add_test(NAME e2e_etcdctl
           COMMAND ${CMAKE_SOURCE_DIR}/tests/e2e/etcdctl_test.sh $<TARGET_FILE:etcd-fdb>)
  set_tests_properties(e2e_etcdctl PROPERTIES
    TIMEOUT 900
    ENVIRONMENT "ETCDCTL=${ETCDCTL_PROGRAM}")
  add_test(NAME e2e_watch
           COMMAND ${CMAKE_SOURCE_DIR}/tests/e2e/watch_test.sh $<TARGET_FILE:etcd-fdb>)
  set_tests_properties(e2e_watch PROPERTIES
    TIMEOUT 300
    ENVIRONMENT "ETCDCTL=${ETCDCTL_PROGRAM}")
else()
  message(WARNING "etcdctl not found: the e2e_etcdctl and e2e_watch tests are not registered")
endif()
