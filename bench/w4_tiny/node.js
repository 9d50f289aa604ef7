// W4 for Node.js: 100,000 tiny jobs (x * 2), each posted separately to one
// of 2 worker_threads and awaited through its own promise.
// Usage: node node.js [N]
const { Worker, isMainThread, parentPort } = require("worker_threads");

if (!isMainThread) {
  parentPort.on("message", (m) => parentPort.postMessage({ id: m.id, r: m.x * 2 }));
} else {
  const N = parseInt(process.argv[2] || "100000", 10);
  const workers = [new Worker(__filename), new Worker(__filename)];
  const pending = new Map();
  for (const w of workers) w.on("message", (m) => { pending.get(m.id)(m.r); pending.delete(m.id); });
  const run = (i) => new Promise((resolve) => {
    pending.set(i, resolve);
    workers[i % 2].postMessage({ id: i, x: i });
  });
  const t0 = process.hrtime.bigint();
  const ps = [];
  for (let i = 1; i <= N; i++) ps.push(run(i));
  Promise.all(ps).then((rs) => {
    const t = Number(process.hrtime.bigint() - t0) / 1e9;
    let s = 0;
    for (const r of rs) s += r;
    for (const w of workers) w.terminate();
    if (s !== N * (N + 1)) { console.error("w4 node: wrong sum"); process.exit(1); }
    console.log(`RESULT time_s=${t.toFixed(4)} jobs_per_s=${(N / t).toFixed(0)} us_per_job=${(t / N * 1e6).toFixed(3)}`);
  });
}
