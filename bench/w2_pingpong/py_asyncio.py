"""W2 for Python asyncio: ping and pong tasks exchanging N round trips through
two asyncio.Queue(maxsize=1) (asyncio has no rendezvous channel).
Usage: python3 py_asyncio.py [N]"""
import asyncio
import sys

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000


async def pong(a, b):
    for _ in range(N):
        await b.put(await a.get())


async def ping(a, b):
    total = 0
    for i in range(1, N + 1):
        await a.put(i)
        total += await b.get()
    return total


async def main():
    a, b = asyncio.Queue(maxsize=1), asyncio.Queue(maxsize=1)
    pong_task = asyncio.create_task(pong(a, b))
    total = await asyncio.create_task(ping(a, b))
    await pong_task
    return total


total = asyncio.run(main())
if total != N * (N + 1) // 2:
    sys.exit(f"w2 asyncio: sum {total}, expected {N * (N + 1) // 2}")
print(total)
