// ONNX Runtime's time for one torchvision model exported by ort_models.py:
//   node ort_models.js MODEL.onnx BATCH IMAGE THREADS MIN_REPS MIN_SECONDS
// CPU execution provider, all graph optimizations, THREADS intra-op threads;
// prints {"ms": median} of the runs after two warm-ups (at least MIN_REPS
// runs and MIN_SECONDS seconds). onnxruntime-node comes from NODE_PATH.
'use strict';
const ort = require('onnxruntime-node');

const [model, batch, image, threads, minReps, minSeconds] = process.argv.slice(2);
const B = +batch, S = +image;

(async () => {
  const sess = await ort.InferenceSession.create(model, {
    intraOpNumThreads: +threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
  });
  const n = B * 3 * S * S, x = new Float32Array(n);
  let s = 1;
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; x[i] = (s / 4294967296 - 0.5) * 2; }
  const feeds = { [sess.inputNames[0]]: new ort.Tensor('float32', x, [B, 3, S, S]) };
  for (let i = 0; i < 2; i++) await sess.run(feeds);
  const ts = [];
  const start = process.hrtime.bigint();
  while (ts.length < +minReps || Number(process.hrtime.bigint() - start) / 1e9 < +minSeconds) {
    const t0 = process.hrtime.bigint();
    await sess.run(feeds);
    ts.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ts.sort((a, b) => a - b);
  console.log(JSON.stringify({ ms: ts[(ts.length - 1) >> 1] }));
})().catch((e) => { console.error(String(e)); process.exit(1); });
