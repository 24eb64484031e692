#!/bin/sh
# Build luabench from lua/*.c and main.c into a static binary, like a small Makefile would:
# a .c file is compiled only when it is newer than its object (or a header is), two at a time.
# The builder images have gcc but no make, hence this script. Usage: build.sh SRC OBJ OUT
set -eu
src=$1 obj=$2 out=$3
CFLAGS="${CFLAGS:--O2 -Wall -std=gnu99 -DLUA_USE_POSIX}"
export CFLAGS src obj
mkdir -p "$obj" "$out"
newest_h=$(ls -t "$src"/lua/*.h | head -n 1)
todo=""
for c in "$src"/lua/*.c "$src"/main.c; do
    o="$obj/$(basename "$c" .c).o"
    if [ ! -f "$o" ] || [ -n "$(find "$c" "$newest_h" -newer "$o")" ]; then
        todo="$todo $c"
    fi
done
if [ -n "$todo" ]; then
    # shellcheck disable=SC2086
    printf '%s\n' $todo | xargs -P 2 -I{} sh -c \
        'echo "cc {}"; gcc $CFLAGS -I"$src/lua" -c -o "$obj/$(basename {} .c).o" {}'
fi
gcc -static -s -o "$out/luabench" "$obj"/*.o -lm
echo "linked $out/luabench ($(echo $todo | wc -w) of $(ls "$obj"/*.o | wc -l) objects compiled)"
