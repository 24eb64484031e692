/* luabench: a static program that embeds the Lua 5.4 interpreter (its library sources, from the
 * lua-src crate, are copied into lua/ by `cargo xtask bench`) and runs a small workload script:
 * recursion, string building, table sorting and a closure-heavy fold. */
#include <stdio.h>
#include <stdlib.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

/* `cargo xtask bench` rewrites the next line for its one-line change. */
#define BUILD_LABEL "bench-0"

static const char *script =
    "local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end\n"
    "local parts = {}\n"
    "for i = 1, 2000 do parts[#parts + 1] = string.format('%04x', (i * 7919) % 65536) end\n"
    "local joined = table.concat(parts, ',')\n"
    "local words = {}\n"
    "for w in joined:gmatch('[^,]+') do words[#words + 1] = w end\n"
    "table.sort(words)\n"
    "local function fold(t, f, acc) for _, v in ipairs(t) do acc = f(acc, v) end return acc end\n"
    "local sum = fold(words, function(a, w) return a + tonumber(w, 16) end, 0)\n"
    "return string.format('%s fib(24)=%d words=%d first=%s sum=%d', _VERSION, fib(24), #words,"
    " words[1], sum)\n";

int main(int argc, char **argv) {
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "luabench: out of memory\n");
        return 1;
    }
    luaL_openlibs(L);
    int status = argc > 1 ? luaL_dofile(L, argv[1]) : luaL_dostring(L, script);
    if (status != LUA_OK) {
        fprintf(stderr, "luabench: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    if (lua_gettop(L) > 0 && lua_isstring(L, -1)) {
        printf("luabench %s: %s\n", BUILD_LABEL, lua_tostring(L, -1));
    }
    lua_close(L);
    return 0;
}
