/*
 * host.c - a tiny "engine" that embeds crt: it owns the frame loop and calls
 * crt_step(rt, CRT_NOWAIT) once per frame, while Lua tasks sleep and talk
 * over channels. The engine pushes one input event per frame into a channel
 * (as a game would push input) and reads the scripts' output from another.
 *
 * Usage: host [script.lua]  (default: the script embedded below)
 * Single-threaded: the engine's thread is the runtime's loop thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "crt.h"

static const char *default_script =
    "local input, output = ...\n"
    "-- a worker task: answers every event it gets, after a short think\n"
    "local worker = crt.spawn(function()\n"
    "  for ev in input:iter() do\n"
    "    crt.sleep(0.002)\n"
    "    output:send('handled ' .. ev)\n"
    "  end\n"
    "end)\n"
    "-- a timer task, independent of the frame rate\n"
    "local ticks = 0\n"
    "local timer = crt.every(0.005, function() ticks = ticks + 1 end)\n"
    "crt.sleep(0.05)\n"
    "timer:stop()\n"
    "output:send('ticks ' .. (ticks > 0 and 'ok' or 'none'))\n"
    "worker:await()\n"
    "output:close()\n";

static void on_log(void *ud, crt_log_level level, const char *msg) {
  (void)ud;
  fprintf(stderr, "[crt %d] %s\n", (int)level, msg);
}

static void sleep_ms(int ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, NULL);
}

/* Push a global channel of the runtime's state into the chunk's arguments. */
static int make_channels(lua_State *L) {
  lua_getglobal(L, "crt");
  lua_getfield(L, -1, "channel");
  lua_call(L, 0, 1);
  lua_setglobal(L, "host_input");
  lua_getfield(L, -1, "channel");
  lua_call(L, 0, 1);
  lua_setglobal(L, "host_output");
  lua_pop(L, 1);
  return 0;
}

/* Call method `name` of the global channel `ch` with an optional string. */
static int chan_call(lua_State *L, const char *ch, const char *name, const char *arg, int nres) {
  lua_getglobal(L, ch);
  lua_getfield(L, -1, name);
  lua_insert(L, -2);
  int nargs = 1;
  if (arg) {
    lua_pushstring(L, arg);
    nargs++;
  }
  return lua_pcall(L, nargs, nres, 0);
}

int main(int argc, char **argv) {
  crt_config cfg;
  crt_config_init(&cfg);
  cfg.log = on_log;
  crt_runtime *rt = crt_open(&cfg);
  if (!rt)
    return 1;
  lua_State *L = crt_lua(rt);
  make_channels(L);

  /* The script gets the two channels as its arguments (...). */
  const char *chunk = default_script;
  char *file = NULL;
  if (argc > 1) {
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
      fprintf(stderr, "host: cannot open %s\n", argv[1]);
      return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    file = malloc((size_t)n + 1);
    if (!file || fread(file, 1, (size_t)n, f) != (size_t)n)
      return 1;
    file[n] = 0;
    fclose(f);
    chunk = file;
  }
  char wrapped[8192];
  snprintf(wrapped, sizeof wrapped, "return (function(...) %s\nend)(host_input, host_output)",
           chunk);
  free(file);
  if (crt_dostring(rt, wrapped, "=script") != 0) {
    fprintf(stderr, "host: %s\n", crt_error(rt));
    crt_close(rt);
    return 1;
  }

  int frames = 0, handled = 0, done = 0, status = 0;
  while (!done && frames < 10000) {
    frames++;
    /* Engine work for this frame: one input event every few frames. */
    if (frames <= 30 && frames % 3 == 0) {
      char ev[32];
      snprintf(ev, sizeof ev, "event%d", frames / 3);
      chan_call(L, "host_input", "try_send", ev, 0);
    }
    if (frames == 31)
      chan_call(L, "host_input", "close", NULL, 0);
    int pending = crt_step(rt, CRT_NOWAIT);
    if (pending < 0 && pending != CRT_EFAILED) {
      status = 1;
      break;
    }
    if (pending == CRT_EFAILED)
      status = 1;
    /* Drain what the scripts produced, without waiting. */
    for (;;) {
      if (chan_call(L, "host_output", "try_recv", NULL, 1) != LUA_OK) {
        fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
        return 1;
      }
      const char *msg = lua_tostring(L, -1);
      if (!msg) {
        lua_pop(L, 1);
        break;
      }
      printf("frame %d: %s\n", frames, msg);
      if (strncmp(msg, "handled", 7) == 0)
        handled++;
      lua_pop(L, 1);
    }
    lua_getglobal(L, "host_output");
    lua_getfield(L, -1, "closed");
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    int out_closed = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (pending == 0 && out_closed)
      done = 1;
    sleep_ms(1); /* the rest of the frame */
  }
  printf("frames: %d, events handled: %d\n", frames, handled);
  if (handled != 10)
    status = 1;
  /* Close with whatever is still pending: tasks are cancelled, all freed. */
  crt_close(rt);
  return status;
}
