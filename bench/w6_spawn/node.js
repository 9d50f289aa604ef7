// W6 for Node.js: child_process.fork of a small module that sends one
// message back through the IPC channel and exits; N children all at once,
// then one after another. A child is done when its message came and it
// exited. Prints one line: RESULT node_burst_per_s=... node_serial_per_s=... n=N
// Usage: node node.js [N]   (the same file is the child when given "child")
"use strict";
const { fork } = require("child_process");

if (process.argv[2] === "child") {
  process.send("x", () => process.disconnect());
} else {
  const N = Number(process.argv[2] || 200);
  const run = () =>
    new Promise((resolve, reject) => {
      const c = fork(__filename, ["child"]);
      let got = false;
      c.on("message", (m) => { got = m === "x"; });
      c.on("exit", (code) => (got && code === 0 ? resolve() : reject(new Error("child failed"))));
    });
  (async () => {
    let t0 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: N }, run));
    const burst = Number(process.hrtime.bigint() - t0) / 1e9;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) await run();
    const serial = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(`RESULT node_burst_per_s=${(N / burst).toFixed(1)} node_serial_per_s=${(N / serial).toFixed(1)} n=${N}`);
  })().catch((e) => { console.error(e); process.exit(1); });
}
