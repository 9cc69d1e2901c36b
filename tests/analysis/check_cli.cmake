cmake_minimum_required(VERSION 3.25)
# Runs pea-analyze with ARGS ("|"-separated) and checks its exit code and
# stderr (a regex), and its stdout if EXPECT_STDOUT (a regex) is given.
# Usage: cmake -DPEA= -DARGS= -DEXPECT_RC= -DEXPECT_STDERR= [-DEXPECT_STDOUT=] -DWORK= -P
string(REPLACE "|" ";" args "${ARGS}")
file(MAKE_DIRECTORY ${WORK})
execute_process(COMMAND ${PEA} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                WORKING_DIRECTORY ${WORK})
if(NOT rc STREQUAL EXPECT_RC)
  message(FATAL_ERROR "exit code ${rc}, expected ${EXPECT_RC}\nstderr:\n${err}")
endif()
if(NOT err MATCHES "${EXPECT_STDERR}")
  message(FATAL_ERROR "stderr does not match\n  ${EXPECT_STDERR}\nstderr was:\n${err}")
endif()
if(DEFINED EXPECT_STDOUT AND NOT out MATCHES "${EXPECT_STDOUT}")
  message(FATAL_ERROR "stdout does not match\n  ${EXPECT_STDOUT}\nstdout was:\n${out}")
endif()
