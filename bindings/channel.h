/*
 * channel.h - the Lua face of channels: crt.channel, crt.select and the
 * channel class (bindings/channel.c).
 */
#ifndef CRT_BINDING_CHANNEL_H
#define CRT_BINDING_CHANNEL_H

#include <lua.h>

/* Register the channel class in L (once) and make L ready for channels, then
 * set crt.channel and crt.select in the table at the top of the stack.
 * Runs on the thread that owns L (the main state or a worker's state). */
int crt_open_channel(lua_State *L);

#endif
