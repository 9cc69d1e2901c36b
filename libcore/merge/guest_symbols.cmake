# Turns `nm -S -n --defined-only` output (IN) into KernelSymbol initialisers
# (OUT). Assembly symbols without a size get size 0.
file(STRINGS ${IN} lines)
set(out "")
foreach(line IN LISTS lines)
  if(line MATCHES "^([0-9a-f]+) ([0-9a-f]+) ([a-zA-Z]) ([A-Za-z0-9_.]+)$")
    string(APPEND out "{0x${CMAKE_MATCH_1}ull, 0x${CMAKE_MATCH_2}ull, '${CMAKE_MATCH_3}', \"${CMAKE_MATCH_4}\"},\n")
  elseif(line MATCHES "^([0-9a-f]+) ([a-zA-Z]) ([A-Za-z0-9_.]+)$")
    string(APPEND out "{0x${CMAKE_MATCH_1}ull, 0ull, '${CMAKE_MATCH_2}', \"${CMAKE_MATCH_3}\"},\n")
  endif()
endforeach()
file(WRITE ${OUT}.tmp "${out}")
configure_file(${OUT}.tmp ${OUT} COPYONLY)
