// W1 for Node.js: N async functions each awaiting a 50 ms setTimeout promise,
// awaited with Promise.all. Usage: node node.js [N]
'use strict';

const N = process.argv.length > 2 ? Number(process.argv[2]) : 100000;
let count = 0;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function worker() {
  await sleep(50);
  count++;
}

async function main() {
  const tasks = [];
  for (let i = 0; i < N; i++) tasks.push(worker());
  await Promise.all(tasks);
  if (count !== N) {
    console.error(`w1 node: counted ${count}, expected ${N}`);
    process.exit(1);
  }
  console.log(count);
}

main();
