# ctest embed_find_package: installs the build into a scratch prefix, then configures, builds and
# runs tests/embed against it, as a downstream project using find_package(logitkit CONFIG) would.
# Usage: cmake -DBUILD_DIR= -DSOURCE_DIR= -DWORK_DIR= -DGENERATOR= -DCXX= [-DCONFIG=] -P run_embed_test.cmake
set(prefix ${WORK_DIR}/prefix)
set(build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${prefix} ${build})
if(NOT CONFIG)
  set(CONFIG Release)
endif()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    list(JOIN ARGN " " cmd)
    message(FATAL_ERROR "failed (${rc}): ${cmd}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} --config ${CONFIG})
if(NOT EXISTS ${prefix}/include/logitkit/softmax.h)
  message(FATAL_ERROR "headers were not installed under ${prefix}/include")
endif()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${build} -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX}
    -DCMAKE_BUILD_TYPE=${CONFIG} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
run(${CMAKE_COMMAND} --build ${build} --config ${CONFIG})
find_program(exe embed_main PATHS ${build} ${build}/${CONFIG} NO_DEFAULT_PATH REQUIRED)
run(${exe})
