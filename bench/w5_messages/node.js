// W5 for Node.js: a worker thread posts 1,000,000 small objects {i, s:
// "hello"} to the main thread with postMessage; the main thread adds up i.
// Usage: node node.js [N]
const { Worker, isMainThread, parentPort, workerData } = require("worker_threads");
if (!isMainThread) {
  for (let i = 1; i <= workerData; i++) parentPort.postMessage({ i, s: "hello" });
  parentPort.postMessage(null);
} else {
  const N = parseInt(process.argv[2] || "1000000", 10);
  const t0 = process.hrtime.bigint();
  const w = new Worker(__filename, { workerData: N });
  let sum = 0, count = 0;
  w.on("message", (m) => {
    if (m === null) {
      const t = Number(process.hrtime.bigint() - t0) / 1e9;
      w.terminate();
      if (count !== N || sum !== N * (N + 1) / 2) { console.error("w5 node: wrong"); process.exit(1); }
      console.log(`RESULT time_s=${t.toFixed(3)} us_per_msg=${(t / N * 1e6).toFixed(3)} msgs_per_s=${(N / t).toFixed(0)}`);
      return;
    }
    sum += m.i;
    count++;
  });
}
