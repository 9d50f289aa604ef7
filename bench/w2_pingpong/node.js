// W2 for Node.js: ping and pong async functions exchanging N round trips
// through a promise-based channel. recv() returns a promise; send() resolves a
// waiting receiver's promise directly, or parks until a receiver (capacity 0)
// or a buffer slot (capacity > 0) takes the value.
// Usage: node node.js [N [capacity]]
'use strict';

const N = process.argv.length > 2 ? Number(process.argv[2]) : 1000000;
const CAP = process.argv.length > 3 ? Number(process.argv[3]) : 0;

class Channel {
  constructor(capacity) {
    this.capacity = capacity;
    this.buffer = [];
    this.receivers = []; // resolve functions of parked recv() calls
    this.senders = []; // [value, resolve] of parked send() calls
  }

  send(value) {
    if (this.receivers.length > 0) {
      this.receivers.shift()(value);
      return Promise.resolve();
    }
    if (this.buffer.length < this.capacity) {
      this.buffer.push(value);
      return Promise.resolve();
    }
    return new Promise((resolve) => this.senders.push([value, resolve]));
  }

  recv() {
    if (this.buffer.length > 0) {
      const value = this.buffer.shift();
      if (this.senders.length > 0) {
        const [v, resolve] = this.senders.shift();
        this.buffer.push(v);
        resolve();
      }
      return Promise.resolve(value);
    }
    if (this.senders.length > 0) {
      const [v, resolve] = this.senders.shift();
      resolve();
      return Promise.resolve(v);
    }
    return new Promise((resolve) => this.receivers.push(resolve));
  }
}

async function pong(a, b) {
  for (let i = 0; i < N; i++) await b.send(await a.recv());
}

async function ping(a, b) {
  let sum = 0;
  for (let i = 1; i <= N; i++) {
    await a.send(i);
    sum += await b.recv();
  }
  return sum;
}

async function main() {
  const a = new Channel(CAP);
  const b = new Channel(CAP);
  const [sum] = await Promise.all([ping(a, b), pong(a, b)]);
  const expected = (N * (N + 1)) / 2;
  if (sum !== expected) {
    console.error(`w2 node: sum ${sum}, expected ${expected}`);
    process.exit(1);
  }
  console.log(sum);
}

main();
