# cmake -DIN=file -DOUT=file.cpp -DNS=namespace -DFN=function -P embed_text.cmake:
# writes a C++ source defining `std::string_view NS::FN()` as the bytes of IN
# (text embedded in a library, so an installed attn needs no data files).
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR bytes "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){32})" "\\1\n" body "${body}")
file(WRITE ${OUT} "// Generated from ${IN}; do not edit.\n#include <string_view>\nnamespace ${NS} {\nnamespace {\nconst unsigned char kText[] = {\n${body}\n0};\n}  // namespace\nstd::string_view ${FN}() { return {reinterpret_cast<const char*>(kText), ${bytes}}; }\n}  // namespace ${NS}\n")
