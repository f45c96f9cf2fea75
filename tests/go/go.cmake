# Go tests of the etcd API through etcd's own client (tests/go): included from the root
# CMakeLists.txt. They start etcd-fdb processes of this build (ETCD_FDB_BIN).
find_program(GO_EXECUTABLE go)
if(GO_EXECUTABLE)
  add_test(NAME go_tests
    COMMAND ${GO_EXECUTABLE} test ./... -count=1 -timeout 20m
    WORKING_DIRECTORY ${CMAKE_CURRENT_LIST_DIR})
  # Under the sanitizers the server is several times slower: TestLeaseScaleExpiry then uses
  # 2,000 leases (20,000 keys) instead of 10,000 and triples its deadline.
  set(GO_TESTS_ENV "ETCD_FDB_BIN=$<TARGET_FILE:etcd-fdb>")
  if(SANITIZE)
    list(APPEND GO_TESTS_ENV "ETCD_FDB_LEASE_SCALE=2000" "ETCD_FDB_SANITIZED=1")
  endif()
  set_tests_properties(go_tests PROPERTIES
    ENVIRONMENT "${GO_TESTS_ENV}"
    TIMEOUT 1200)
  # The same test files with clientv3 3.6 (go36.mod, go36.sum; the build tag etcd36 picks
  # client36_test.go, the few lines where 3.5 and 3.6 differ): the concurrency tests, the
  # half-close tests and a representative subset of the KV and watch tests, to keep CI short.
  add_test(NAME go_tests_36
    COMMAND ${GO_EXECUTABLE} test -tags etcd36 -modfile=go36.mod . -count=1 -timeout 15m
            -run "^(TestConcurrencyClientVersion|TestSession|TestMutex|TestElection|TestSTM|TestTxnRangeOwnWrites|TestLeaseKeepAliveHalfClose|TestWatchHalfClose|TestKVBasics|TestKVErrors|TestKVTxnReadsOwnWrites|TestWatchRanges|TestWatchRevReplay|TestWatchPrevKVAndFilters|TestWatchRequestProgress)"
    WORKING_DIRECTORY ${CMAKE_CURRENT_LIST_DIR})
  set_tests_properties(go_tests_36 PROPERTIES
    ENVIRONMENT "ETCD_FDB_BIN=$<TARGET_FILE:etcd-fdb>"
    TIMEOUT 900)
else()
  message(WARNING "go not found: the Go tests (tests/go) are not registered")
endif()
