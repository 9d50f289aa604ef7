// Message throughput for Node.js's IPC channel (child_process.fork,
// process.send, JSON serialization): the same three measures as crt.lua
// (small messages streamed, round trips, 1 MiB string messages).
// Prints one line:
//   RESULT node_small_per_s=... node_roundtrip_per_s=... node_mib_per_s=...
// Usage: node node.js [N] [M] [B]
"use strict";
const { fork } = require("child_process");

if (process.argv[2] === "counter") {
  let n = 0, size = 0;
  process.on("message", (v) => {
    if (v === null) { process.send([n, size], () => process.disconnect()); return; }
    n++;
    if (typeof v === "string") size += v.length;
  });
} else if (process.argv[2] === "echo") {
  process.on("message", (v) => (v === null ? process.disconnect() : process.send(v)));
} else {
  const N = Number(process.argv[2] || 500000);
  const M = Number(process.argv[3] || 20000);
  const B = Number(process.argv[4] || 512);
  const now = () => Number(process.hrtime.bigint()) / 1e9;
  const child = (kind) => fork(__filename, [kind]);
  const once = (c) => new Promise((r) => c.once("message", r));
  (async () => {
    let c = child("counter");
    let t0 = now();
    // process.send returns false while the channel's buffer is full:
    // yield to the event loop then, so that it drains (back-pressure).
    for (let i = 1; i <= N; i++) {
      if (!c.send(i)) await new Promise((r) => setImmediate(r));
    }
    c.send(null);
    let [n] = await once(c);
    if (n !== N) throw new Error("small: count " + n);
    const small = N / (now() - t0);

    c = child("echo");
    c.send(0);
    await once(c);
    t0 = now();
    for (let i = 1; i <= M; i++) {
      c.send(i);
      if ((await once(c)) !== i) throw new Error("rtt");
    }
    const rtt = M / (now() - t0);
    c.send(null);

    const mib = "x".repeat(1024 * 1024);
    c = child("counter");
    t0 = now();
    for (let i = 0; i < B; i++) {
      if (!c.send(mib)) await new Promise((r) => setImmediate(r));
    }
    c.send(null);
    const [nb, size] = await once(c);
    if (nb !== B || size !== B * mib.length) throw new Error("big");
    const big = B / (now() - t0);
    console.log(`RESULT node_small_per_s=${small.toFixed(0)} node_roundtrip_per_s=${rtt.toFixed(0)} node_mib_per_s=${big.toFixed(1)}`);
  })().catch((e) => { console.error(e); process.exit(1); });
}
