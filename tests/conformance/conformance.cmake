# Other clients' conformance smoke tests (tests/conformance/README.md): python-etcd3 (PyPI
# etcd3) and the npm etcd3 client, each against an etcd-fdb it starts itself (fresh data
# directory, free port, SIGTERM at the end). Included from the root CMakeLists.txt after the
# etcd-fdb target and enable_testing(). They install their pinned packages on the first run
# (PyPI and the npm registry): the virtual environment and node_modules live in the build
# directory, never in the source tree.
find_program(PYTHON3_EXECUTABLE python3)
if(PYTHON3_EXECUTABLE)
  add_test(NAME conformance_python
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/python/run.sh $<TARGET_FILE:etcd-fdb>
            ${CMAKE_BINARY_DIR}/conformance/python)
  set_tests_properties(conformance_python PROPERTIES
    ENVIRONMENT "PYTHON3=${PYTHON3_EXECUTABLE}"
    TIMEOUT 600)
else()
  message(WARNING "python3 not found: the python-etcd3 test (tests/conformance/python) is not registered")
endif()

find_program(NODE_EXECUTABLE node)
find_program(NPM_EXECUTABLE npm)
if(NODE_EXECUTABLE AND NPM_EXECUTABLE)
  add_test(NAME conformance_node
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/node/run.sh $<TARGET_FILE:etcd-fdb>
            ${CMAKE_BINARY_DIR}/conformance/node)
  set_tests_properties(conformance_node PROPERTIES TIMEOUT 600)
else()
  message(WARNING "node or npm not found: the npm etcd3 test (tests/conformance/node) is not registered")
endif()
