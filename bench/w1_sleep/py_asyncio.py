"""W1 for Python asyncio: N coroutines each awaiting asyncio.sleep(0.05),
gathered. Usage: python3 py_asyncio.py [N]"""
import asyncio
import sys

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
count = 0


async def worker():
    global count
    await asyncio.sleep(0.05)
    count += 1


async def main():
    await asyncio.gather(*(worker() for _ in range(N)))


asyncio.run(main())
if count != N:
    sys.exit(f"w1 asyncio: counted {count}, expected {N}")
print(count)
