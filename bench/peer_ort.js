// ONNX Runtime's side of peer_bench.sh: the exported ViT on the CPU
// provider with every graph optimization, on the input primaps_vit_bench
// uses, timed; prints one JSON line and writes the features (float32).
//   node bench/peer_ort.js MODEL.onnx HEIGHT WIDTH THREADS REPS OUT.bin
const path = require('path');
const fs = require('fs');
const ort = require(path.join(__dirname, '.peer', 'node_modules', 'onnxruntime-node'));

async function main() {
  const [model, height, width, threads, reps, out] = process.argv.slice(2);
  const h = Number(height), w = Number(width);
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: Number(threads),
    interOpNumThreads: 1,
  });
  const data = new Float32Array(3 * h * w);
  // The same input as primaps_vit_bench.
  for (let i = 0; i < data.length; ++i) data[i] = ((i * 7919) % 1000) / 500 - 1;
  const feeds = {image: new ort.Tensor('float32', data, [1, 3, h, w])};
  let result = await session.run(feeds);  // warm-up
  const times = [];
  for (let r = 0; r < Number(reps); ++r) {
    const start = process.hrtime.bigint();
    result = await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  times.sort((a, b) => a - b);
  const features = result.features;
  fs.writeFileSync(out, Buffer.from(features.data.buffer, features.data.byteOffset,
                                    features.data.byteLength));
  console.log(JSON.stringify({impl: 'onnxruntime', precision: 'fp32', height: h, width: w,
                              threads: Number(threads), median_s: times[times.length >> 1],
                              min_s: times[0]}));
}
main().catch((e) => { console.error(e); process.exit(1); });
