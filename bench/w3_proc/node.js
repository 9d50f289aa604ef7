// W3 for Node.js: 8 CPU-bound jobs of about 0.4 s each, one after another,
// then on a pool of 2 worker processes (child_process.fork, jobs and results
// over the IPC channel; the time includes starting the workers). The loop
// length is calibrated here.
// Prints one line: RESULT node_speedup=... node_seq_s=... node_par_s=... job_s=...
// Usage: node node.js [jobs] [job seconds] [workers]
"use strict";
const { fork } = require("child_process");

function work(n) {
  let s = 0;
  for (let i = 1; i <= n; i++) s = (s + i * i) % 1000003;
  return s;
}

if (process.argv[2] === "worker") {
  process.on("message", (m) => process.send({ id: m.id, r: work(m.n) }));
} else {
  const NJOBS = Number(process.argv[2] || 8);
  const JOB = Number(process.argv[3] || 0.4);
  const WORKERS = Number(process.argv[4] || 2);
  const now = () => Number(process.hrtime.bigint()) / 1e9;
  let n = 100000;
  for (;;) {
    const t0 = now();
    work(n);
    const dt = now() - t0;
    if (dt > 0.05) { n = Math.floor((n * JOB) / dt); break; }
    n *= 4;
  }
  const jobs = Array.from({ length: NJOBS }, (_, i) => n + i + 1);
  let t0 = now();
  const expect = jobs.map(work);
  const seq = now() - t0;
  t0 = now();
  const workers = Array.from({ length: WORKERS }, () => fork(__filename, ["worker"]));
  const got = new Array(NJOBS);
  let next = 0, done = 0;
  const give = (w) => {
    if (next < NJOBS) { const id = next++; w.send({ id, n: jobs[id] }); }
  };
  for (const w of workers) {
    w.on("message", (m) => {
      got[m.id] = m.r;
      if (++done === NJOBS) {
        const par = now() - t0;
        for (const x of workers) x.kill();
        if (got.some((v, i) => v !== expect[i])) { console.error("wrong result"); process.exit(1); }
        console.log(`RESULT node_speedup=${(seq / par).toFixed(2)} node_seq_s=${seq.toFixed(3)} ` +
          `node_par_s=${par.toFixed(3)} job_s=${(seq / NJOBS).toFixed(3)}`);
      } else give(w);
    });
    give(w);
  }
}
