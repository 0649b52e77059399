# Cross-compiling for 64-bit ARM Linux with Debian's GNU cross toolchain (g++-aarch64-linux-gnu)
# against the arm64 multiarch packages in /usr/lib/aarch64-linux-gnu, whose headers are the
# same files as the native ones in /usr/include. Executables run under qemu-user, which is
# also how CMake runs them (GoogleTest's test discovery); tests/cross/arm64.sh sets it up.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# find_package and find_library look in lib/aarch64-linux-gnu of each prefix (/usr), never
# in the host's lib/x86_64-linux-gnu.
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# -cpu max: every extension qemu emulates, the dot product among them. The programs load
# the arm64 multiarch C library (libc6:arm64, which the -dev packages bring) from /lib, as on
# an arm64 Debian machine, and not the cross toolchain's copy with -L /usr/aarch64-linux-gnu:
# there qemu would find that copy's dynamic loader but, first on the loader's search path,
# the multiarch libc.so.6 of another Debian revision, and the mismatched pair hangs in
# pthread_create.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -cpu max)
