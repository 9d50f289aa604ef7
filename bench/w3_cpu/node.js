// W3 for Node.js: 8 CPU-bound jobs sequentially, then on worker_threads (one
// worker per core, jobs handed out as workers become free).
// Usage: node node.js [jobs [iterations]]
const { Worker, isMainThread, parentPort } = require("worker_threads");
const os = require("os");

function work(n) {
  let x = 0;
  for (let i = 1; i <= n; i++) x = (x + i * i) % 1000003;
  return x;
}

if (!isMainThread) {
  parentPort.on("message", (n) => parentPort.postMessage(work(n)));
} else {
  const JOBS = parseInt(process.argv[2] || "8", 10);
  const ITER = parseInt(process.argv[3] || "36000000", 10);
  let t0 = process.hrtime.bigint();
  const seq = [];
  for (let k = 0; k < JOBS; k++) seq.push(work(ITER));
  const tSeq = Number(process.hrtime.bigint() - t0) / 1e9;

  t0 = process.hrtime.bigint();
  const nworkers = os.cpus().length;
  const par = new Array(JOBS);
  let next = 0, done = 0;
  const workers = [];
  const finish = () => {
    const tPar = Number(process.hrtime.bigint() - t0) / 1e9;
    for (const w of workers) w.terminate();
    for (let k = 0; k < JOBS; k++) if (seq[k] !== par[k]) { console.error("w3 node: wrong result"); process.exit(1); }
    console.log(`RESULT speedup=${(tSeq / tPar).toFixed(2)} seq_s=${tSeq.toFixed(3)} par_s=${tPar.toFixed(3)} job_s=${(tSeq / JOBS).toFixed(3)}`);
  };
  for (let w = 0; w < Math.min(nworkers, JOBS); w++) {
    const worker = new Worker(__filename);
    workers.push(worker);
    let current = -1;
    const give = () => {
      if (next < JOBS) { current = next++; worker.postMessage(ITER); }
    };
    worker.on("message", (x) => {
      par[current] = x;
      if (++done === JOBS) finish(); else give();
    });
    give();
  }
}
