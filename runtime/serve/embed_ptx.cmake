# embed_ptx.cmake - writes the PTX file IN as the C array fwdgpu_ptx (NUL-terminated) into OUT,
# for forward_cuda.c; run by runtime/serve/CMakeLists.txt at build time (cmake -P). Hex bytes,
# so no character of the PTX needs escaping.
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}" "/* generated from forward_cuda.ptx by embed_ptx.cmake: do not edit */\nconst char fwdgpu_ptx[] = {\n${bytes}0x00};\n")
