# proto/proto.cmake: generate protobuf-c code for the etcd v3 API and build
# it as the static library `etcdproto`.
#
# Included from the root CMakeLists.txt with include(proto/proto.cmake).
# Inputs are located relative to this file (for the main project that is
# ${CMAKE_SOURCE_DIR}/proto), outputs go to ${CMAKE_BINARY_DIR}/proto, so a
# consumer writes e.g. #include "etcdserverpb/rpc.pb-c.h".
#
# Needs: protoc-c (Debian: protobuf-c-compiler) and libprotobuf-c
# (Debian: libprotobuf-c-dev).

find_program(PROTOC_C protoc-c REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PROTOBUF_C REQUIRED IMPORTED_TARGET libprotobuf-c)

set(ETCDPROTO_SRC_DIR ${CMAKE_CURRENT_LIST_DIR})
set(ETCDPROTO_OUT_DIR ${CMAKE_BINARY_DIR}/proto)

# Paths relative to ETCDPROTO_SRC_DIR; these are also the import paths.
set(ETCDPROTO_PROTOS
  mvccpb/kv.proto
  authpb/auth.proto
  etcdserverpb/rpc.proto
  grpc/health/v1/health.proto
)

set(ETCDPROTO_INPUTS)
set(ETCDPROTO_SOURCES)
set(ETCDPROTO_HEADERS)
foreach(p IN LISTS ETCDPROTO_PROTOS)
  string(REGEX REPLACE "\\.proto$" "" stem "${p}")
  list(APPEND ETCDPROTO_INPUTS ${ETCDPROTO_SRC_DIR}/${p})
  list(APPEND ETCDPROTO_SOURCES ${ETCDPROTO_OUT_DIR}/${stem}.pb-c.c)
  list(APPEND ETCDPROTO_HEADERS ${ETCDPROTO_OUT_DIR}/${stem}.pb-c.h)
endforeach()

add_custom_command(
  OUTPUT ${ETCDPROTO_SOURCES} ${ETCDPROTO_HEADERS}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${ETCDPROTO_OUT_DIR}
  COMMAND ${PROTOC_C} --c_out=${ETCDPROTO_OUT_DIR} -I ${ETCDPROTO_SRC_DIR}
          ${ETCDPROTO_PROTOS}
  WORKING_DIRECTORY ${ETCDPROTO_SRC_DIR}
  DEPENDS ${ETCDPROTO_INPUTS}
  COMMENT "protoc-c: generating etcd v3 API C code"
  VERBATIM
)

add_library(etcdproto STATIC ${ETCDPROTO_SOURCES} ${ETCDPROTO_HEADERS})
target_include_directories(etcdproto PUBLIC ${ETCDPROTO_OUT_DIR})
target_link_libraries(etcdproto PUBLIC PkgConfig::PROTOBUF_C)
# PIC so the library can also be linked into shared objects (e.g. test shims).
set_target_properties(etcdproto PROPERTIES POSITION_INDEPENDENT_CODE ON)
