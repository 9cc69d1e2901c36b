cmake_minimum_required(VERSION 3.25)
# Runs pea-analyze with ARGS ("|"-separated) and checks its exit code and
# stderr (a regex). Usage: cmake -DPEA= -DARGS= -DEXPECT_RC= -DEXPECT_STDERR= -DWORK= -P
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
