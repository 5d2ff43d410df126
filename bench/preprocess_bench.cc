// Preprocessing cost per image with the two resize filters, side by side in
// one run (Google Benchmark): Pillow's antialiased resize on 8-bit pixels
// and torch's bilinear resize on the float image, short side to 320 with a
// center crop, at Cityscapes, COCO and Potsdam-like sizes.
//   build/bench/primaps_preprocess_bench
#include <benchmark/benchmark.h>

#include <cstdint>

#include "engine/image/preprocess.h"
#include "engine/image/resize_antialias.h"

namespace primaps {
namespace {

RgbImage Pattern(int width, int height) {
  RgbImage image{width, height,
                 std::vector<uint8_t>(static_cast<size_t>(width) * height * 3)};
  uint32_t state = 12345;
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    state = state * 1664525u + 1013904223u;
    const size_t pixel = i / 3;
    const int x = static_cast<int>(pixel % width);
    const int y = static_cast<int>(pixel / width);
    image.pixels[i] = static_cast<uint8_t>(
        (x * 7 + y * 3 + (i % 3) * 50) % 200 + (state >> 27));
  }
  return image;
}

void BM_Preprocess(benchmark::State& state) {
  const RgbImage image = Pattern(static_cast<int>(state.range(1)),
                                 static_cast<int>(state.range(2)));
  PreprocessOptions options;
  options.resize = 320;
  options.filter =
      state.range(0) == 0 ? ResizeFilter::kBilinear : ResizeFilter::kAntialias;
  for (auto _ : state) {
    auto out = Preprocess(image, options);
    benchmark::DoNotOptimize(out);
  }
  state.SetLabel(state.range(0) == 0 ? "bilinear" : "antialias");
}
// {filter (0 bilinear, 1 antialias), width, height}
BENCHMARK(BM_Preprocess)
    ->ArgsProduct({{0, 1}, {2048}, {1024}})
    ->ArgsProduct({{0, 1}, {640}, {480}})
    ->ArgsProduct({{0, 1}, {320}, {320}})
    ->Unit(benchmark::kMillisecond);

void BM_ResizeAntialias(benchmark::State& state) {
  const RgbImage image = Pattern(2048, 1024);
  for (auto _ : state) {
    RgbImage out = ResizeAntialias(image, 640, 320);
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_ResizeAntialias)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace primaps

BENCHMARK_MAIN();
