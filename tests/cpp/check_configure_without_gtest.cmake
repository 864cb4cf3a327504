# ctest configure_without_gtest: configures this source tree as a user would on a machine without
# GoogleTest (GTest hidden from find_package, no sources): the configure must succeed with
# LOGITKIT_BUILD_TESTS OFF and LOGITKIT_INSTALL ON, and an explicit -DLOGITKIT_BUILD_TESTS=ON must
# stop with the error that says what is missing.
# Usage: cmake -DSOURCE_DIR= -DWORK_DIR= -DGENERATOR= -DCXX= -P check_configure_without_gtest.cmake
file(REMOVE_RECURSE ${WORK_DIR})
set(no_gtest -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON -DLOGITKIT_GTEST_SOURCE_DIR=${WORK_DIR}/no-googletest)

execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/default -G ${GENERATOR}
                        -DCMAKE_CXX_COMPILER=${CXX} ${no_gtest}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configure without GoogleTest failed (${rc}):\n${out}${err}")
endif()
file(STRINGS ${WORK_DIR}/default/CMakeCache.txt cache REGEX "^LOGITKIT_(BUILD_TESTS|INSTALL):BOOL=")
if(NOT cache STREQUAL "LOGITKIT_BUILD_TESTS:BOOL=OFF;LOGITKIT_INSTALL:BOOL=ON")
  message(FATAL_ERROR "configure without GoogleTest: expected tests OFF and install ON, got ${cache}")
endif()

execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/tests-on -G ${GENERATOR}
                        -DCMAKE_CXX_COMPILER=${CXX} ${no_gtest} -DLOGITKIT_BUILD_TESTS=ON
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(FIND "${out}${err}" "LOGITKIT_BUILD_TESTS is ON but GoogleTest was found neither" at)
if(rc EQUAL 0 OR at EQUAL -1)
  message(FATAL_ERROR "-DLOGITKIT_BUILD_TESTS=ON without GoogleTest: expected the configure to stop with "
                      "the GoogleTest error, got exit code ${rc}:\n${out}${err}")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
