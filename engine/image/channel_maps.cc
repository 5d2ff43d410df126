#include "engine/image/channel_maps.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "base/simd_lanes.h"

namespace primaps {
namespace {

// torch's area_pixel_compute_source_index + compute_source_index_and_lambda
// (UpSample.h) for linear modes with align_corners=false.
struct LinearTap {
  int64_t i0 = 0;
  int64_t i1 = 0;
  float w0 = 1.f;
  float w1 = 0.f;
};

LinearTap ComputeTap(float scale, int64_t dst, int64_t in_size) {
  const float real =
      std::max(scale * (static_cast<float>(dst) + 0.5f) - 0.5f, 0.f);
  LinearTap tap;
  tap.i0 = static_cast<int64_t>(real);
  tap.i1 = tap.i0 + (tap.i0 < in_size - 1 ? 1 : 0);
  tap.w1 = std::min(std::max(real - static_cast<float>(tap.i0), 0.f), 1.f);
  tap.w0 = 1.f - tap.w1;
  return tap;
}

}  // namespace

std::vector<float> ResizeBilinearWindow(const float* src, int channels,
                                        int in_h, int in_w, int out_h,
                                        int out_w, int top, int left,
                                        int out_rows, int out_cols) {
  const float scale_h = static_cast<float>(in_h) / static_cast<float>(out_h);
  const float scale_w = static_cast<float>(in_w) / static_cast<float>(out_w);
  std::vector<LinearTap> cols(out_cols);
  for (int x = 0; x < out_cols; ++x)
    cols[x] = ComputeTap(scale_w, left + x, in_w);
  std::vector<float> out(static_cast<size_t>(channels) * out_rows * out_cols);
  std::vector<float> row0(out_cols), row1(out_cols);
  for (int c = 0; c < channels; ++c) {
    const float* plane = src + static_cast<size_t>(c) * in_h * in_w;
    for (int y = 0; y < out_rows; ++y) {
      const LinearTap ty = ComputeTap(scale_h, top + y, in_h);
      const float* r0 = plane + ty.i0 * in_w;
      const float* r1 = plane + ty.i1 * in_w;
      for (int x = 0; x < out_cols; ++x) {
        const LinearTap& tx = cols[x];
        row0[x] = r0[tx.i0] * tx.w0 + r0[tx.i1] * tx.w1;
        row1[x] = r1[tx.i0] * tx.w0 + r1[tx.i1] * tx.w1;
      }
      float* dst =
          out.data() + (static_cast<size_t>(c) * out_rows + y) * out_cols;
      for (int x = 0; x < out_cols; ++x)
        dst[x] = row0[x] * ty.w0 + row1[x] * ty.w1;
    }
  }
  return out;
}

absl::StatusOr<LabelMap> ResizeBilinearArgmax(const float* src, int channels,
                                              int src_h, int src_w, int rows,
                                              int cols, int out_h, int out_w,
                                              const StopCheck* stop) {
  const float scale_h = static_cast<float>(rows) / static_cast<float>(out_h);
  const float scale_w = static_cast<float>(cols) / static_cast<float>(out_w);
  std::vector<LinearTap> taps(out_w);
  for (int x = 0; x < out_w; ++x) taps[x] = ComputeTap(scale_w, x, cols);
  const size_t plane = static_cast<size_t>(src_h) * src_w;
  // Two slots of horizontally blended source rows (channels x out_w each),
  // keyed by source row: upsampling reuses them for many output rows.
  std::vector<float> slots[2] = {
      std::vector<float>(static_cast<size_t>(channels) * out_w),
      std::vector<float>(static_cast<size_t>(channels) * out_w)};
  int64_t slot_row[2] = {-1, -1};
  auto blended = [&](int64_t row, int64_t keep) -> const float* {
    for (int s = 0; s < 2; ++s) {
      if (slot_row[s] == row) return slots[s].data();
    }
    const int s = slot_row[0] == keep ? 1 : 0;
    for (int c = 0; c < channels; ++c) {
      const float* r = src + c * plane + row * src_w;
      float* dst = slots[s].data() + static_cast<size_t>(c) * out_w;
      for (int x = 0; x < out_w; ++x)
        dst[x] = r[taps[x].i0] * taps[x].w0 + r[taps[x].i1] * taps[x].w1;
    }
    slot_row[s] = row;
    return slots[s].data();
  };
  LabelMap labels{out_w, out_h,
                  std::vector<uint8_t>(static_cast<size_t>(out_w) * out_h, 0)};
  std::vector<float> best(out_w);
  for (int y = 0; y < out_h; ++y) {
    if (y % 256 == 0) {
      const absl::Status status =
          PollStop(stop, "resizing to the original size");
      if (!status.ok()) return status;
    }
    const LinearTap ty = ComputeTap(scale_h, y, rows);
    const float* row0 = blended(ty.i0, ty.i1);
    const float* row1 = blended(ty.i1, ty.i0);
    uint8_t* out = labels.labels.data() + static_cast<size_t>(y) * out_w;
    for (int c = 0; c < channels; ++c) {
      const float* a = row0 + static_cast<size_t>(c) * out_w;
      const float* b = row1 + static_cast<size_t>(c) * out_w;
      for (int x = 0; x < out_w; ++x) {
        const float v = a[x] * ty.w0 + b[x] * ty.w1;
        // First channel on ties, as ArgmaxLabels.
        if (c == 0 || v > best[x]) {
          best[x] = v;
          out[x] = static_cast<uint8_t>(c);
        }
      }
    }
  }
  return labels;
}

void SoftmaxOverChannels(std::vector<float>* values, int channels) {
  using simd::Floats;
  using simd::kLanes;
  const size_t m = values->size() / channels;
  float* v = values->data();
  // Channel-major, so kLanes consecutive pixels fill a vector; a last,
  // partial group runs in a zero-padded copy of its pixels.
  std::vector<float> tail(static_cast<size_t>(channels) * kLanes);
  for (size_t i = 0; i < m; i += kLanes) {
    const size_t count = std::min<size_t>(kLanes, m - i);
    float* base = v + i;
    size_t stride = m;
    if (count < kLanes) {
      std::fill(tail.begin(), tail.end(), 0.f);
      for (int c = 0; c < channels; ++c)
        std::copy(base + c * m, base + c * m + count, &tail[c * kLanes]);
      base = tail.data();
      stride = kLanes;
    }
    Floats mx = simd::Load(base);
    for (int c = 1; c < channels; ++c) {
      const Floats x = simd::Load(base + c * stride);
      mx = simd::Select(mx < x, x, mx);
    }
    Floats total = {};
    for (int c = 0; c < channels; ++c) {
      const Floats e = simd::ExpNonPositive(simd::Load(base + c * stride) - mx);
      simd::Store(base + c * stride, e);
      total += e;
    }
    const Floats inv = (Floats{} + 1.f) / total;
    for (int c = 0; c < channels; ++c)
      simd::Store(base + c * stride, simd::Load(base + c * stride) * inv);
    if (count < kLanes) {
      for (int c = 0; c < channels; ++c)
        std::copy(&tail[c * kLanes], &tail[c * kLanes] + count, v + c * m + i);
    }
  }
}

LabelMap ArgmaxLabels(const std::vector<float>& scores, int num_labels,
                      int width, int height) {
  LabelMap labels{width, height,
                  std::vector<uint8_t>(static_cast<size_t>(width) * height, 0)};
  const size_t n = labels.labels.size();
  for (size_t p = 0; p < n; ++p) {
    int best = 0;
    for (int l = 1; l < num_labels; ++l) {
      if (scores[l * n + p] > scores[best * n + p]) best = l;
    }
    labels.labels[p] = static_cast<uint8_t>(best);
  }
  return labels;
}

}  // namespace primaps
