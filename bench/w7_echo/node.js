// W7 for Node.js: an echo server and its clients in one process, on 127.0.0.1.
//   node node.js rtt [clients] [rounds]  -> RESULT rtt_per_sec=<n>
//   node node.js bulk [MiB]              -> RESULT mib_per_sec=<n>
// Clients await each echo (a promise per response), as one writes it with
// async/await. Exits non-zero when the data is wrong.
"use strict";
const net = require("net");
const mode = process.argv[2] || "rtt";

function fail(msg) {
  process.stderr.write("w7 node: " + msg + "\n");
  process.exit(1);
}

// Read exactly n bytes from a socket, as a promise.
function reader(sock) {
  let chunks = [], have = 0, want = 0, resolve = null;
  sock.on("data", (d) => {
    chunks.push(d);
    have += d.length;
    if (resolve && have >= want) take();
  });
  function take() {
    const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const out = all.subarray(0, want);
    const rest = all.subarray(want);
    chunks = rest.length ? [rest] : [];
    have = rest.length;
    const r = resolve;
    resolve = null;
    r(out);
  }
  return (n) => new Promise((res) => {
    want = n;
    resolve = res;
    if (have >= want) take();
  });
}

async function rtt() {
  const clients = parseInt(process.argv[3] || "100", 10);
  const rounds = parseInt(process.argv[4] || "1000", 10);
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    s.on("data", (d) => s.write(d));
    s.on("error", () => {});
  });
  await new Promise((res) => server.listen(0, "127.0.0.1", res));
  const port = server.address().port;
  const msg = Buffer.alloc(64, "x");
  const t0 = process.hrtime.bigint();
  const tasks = [];
  for (let i = 0; i < clients; i++) {
    tasks.push((async () => {
      const s = net.connect(port, "127.0.0.1");
      s.setNoDelay(true);
      await new Promise((res) => s.on("connect", res));
      const read = reader(s);
      for (let j = 0; j < rounds; j++) {
        s.write(msg);
        const back = await read(64);
        if (!back.equals(msg)) fail("bad echo");
      }
      s.end();
      return rounds;
    })());
  }
  const counts = await Promise.all(tasks);
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  server.close();
  const total = counts.reduce((a, b) => a + b, 0);
  if (total !== clients * rounds) fail("counted " + total);
  console.log("RESULT rtt_per_sec=" + Math.round(total / dt));
}

async function bulk() {
  const mib = parseInt(process.argv[3] || "1024", 10);
  let received;
  const done = new Promise((res) => (received = res));
  const server = net.createServer((s) => {
    let n = 0;
    s.on("data", (d) => (n += d.length));
    s.on("end", () => received(n));
  });
  await new Promise((res) => server.listen(0, "127.0.0.1", res));
  const chunk = Buffer.alloc(1024 * 1024, "y");
  const t0 = process.hrtime.bigint();
  const s = net.connect(server.address().port, "127.0.0.1");
  await new Promise((res) => s.on("connect", res));
  for (let i = 0; i < mib; i++) {
    if (!s.write(chunk)) await new Promise((res) => s.once("drain", res));
  }
  s.end();
  const n = await done;
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  server.close();
  if (n !== mib * 1024 * 1024) fail("received " + n);
  console.log("RESULT mib_per_sec=" + (mib / dt).toFixed(1));
}

(mode === "rtt" ? rtt() : mode === "bulk" ? bulk() : Promise.reject(new Error("unknown mode")))
  .catch((e) => fail(String(e)));
