# tests/kv/loader.cmake -- test_loader: kv/fdb_loader.c against two fake libfdb_c builds, so the
# loader is tested on machines without FoundationDB. Included from the root CMakeLists.txt.

# One source, two libraries: "partial" lacks most fdb_* functions, "full" exports them all.
add_library(fake_fdb_c_partial SHARED tests/kv/fake_fdb_c.c)
target_compile_definitions(fake_fdb_c_partial PRIVATE FAKE_FDB_PARTIAL)
add_library(fake_fdb_c_full SHARED tests/kv/fake_fdb_c.c)
target_compile_definitions(fake_fdb_c_full PRIVATE FAKE_FDB_FULL)

etcdfdb_test(test_loader tests/kv/test_loader.c)
# The test dlopen()s the fakes itself; it does not link them.
add_dependencies(test_loader fake_fdb_c_partial fake_fdb_c_full)
target_compile_definitions(test_loader PRIVATE
  FAKE_FDB_PARTIAL_PATH="$<TARGET_FILE:fake_fdb_c_partial>"
  FAKE_FDB_FULL_PATH="$<TARGET_FILE:fake_fdb_c_full>")
