"""W7 for Python asyncio: an echo server and its clients in one process, on
127.0.0.1, with asyncio streams (uvloop is not used: the standard loop).

    python3 py_asyncio.py rtt [clients] [rounds]  -> RESULT rtt_per_sec=<n>
    python3 py_asyncio.py bulk [MiB]              -> RESULT mib_per_sec=<n>

Exits non-zero when the data is wrong.
"""
import asyncio
import sys
import time


def fail(msg):
    sys.stderr.write("w7 asyncio: %s\n" % msg)
    sys.exit(1)


async def rtt(clients, rounds):
    async def echo(reader, writer):
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    msg = b"x" * 64

    async def client():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(rounds):
            writer.write(msg)
            back = await reader.readexactly(64)
            if back != msg:
                fail("bad echo")
        writer.close()
        return rounds

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(client() for _ in range(clients)))
    dt = time.perf_counter() - t0
    server.close()
    total = sum(counts)
    if total != clients * rounds:
        fail("counted %d" % total)
    print("RESULT rtt_per_sec=%.0f" % (total / dt))


async def bulk(mib):
    done = asyncio.get_running_loop().create_future()

    async def sink(reader, writer):
        n = 0
        while True:
            data = await reader.read(1 << 20)
            if not data:
                break
            n += len(data)
        done.set_result(n)
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    chunk = b"y" * (1 << 20)
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(mib):
        writer.write(chunk)
        await writer.drain()
    writer.close()
    n = await done
    dt = time.perf_counter() - t0
    server.close()
    if n != mib << 20:
        fail("received %d" % n)
    print("RESULT mib_per_sec=%.1f" % (mib / dt))


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "rtt"
    if mode == "rtt":
        clients = int(sys.argv[2]) if len(sys.argv) > 2 else 100
        rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
        asyncio.run(rtt(clients, rounds))
    elif mode == "bulk":
        asyncio.run(bulk(int(sys.argv[2]) if len(sys.argv) > 2 else 1024))
    else:
        fail("unknown mode %s" % mode)


if __name__ == "__main__":
    main()
