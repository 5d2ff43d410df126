#include "engine/permutohedral_lattice.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace primaps {
namespace {

constexpr int kMaxDim = 8;

// Keys are a handful of shorts: an inline loop beats a memcmp call.
inline bool SameKey(const int16_t* a, const int16_t* b, int dim) {
  for (int i = 0; i < dim; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

// Open-addressing hash table from lattice keys (dim shorts, the last
// coordinate being implied) to vertex indices, in insertion order.
class KeyTable {
 public:
  KeyTable(int dim, size_t expected) : dim_(dim) {
    size_t capacity = 64;
    while (capacity < 2 * expected) capacity <<= 1;
    slots_.assign(capacity, -1);
    keys_.reserve(expected * dim);
  }

  int size() const { return static_cast<int>(keys_.size() / dim_); }
  const int16_t* key(int index) const {
    return &keys_[static_cast<size_t>(index) * dim_];
  }

  // Returns the index of `key`, inserting it when `insert` is set; -1 when
  // absent and not inserted.
  int Find(const int16_t* key, bool insert) {
    if (insert && 2 * static_cast<size_t>(size()) >= slots_.size()) Grow();
    size_t mask = slots_.size() - 1;
    size_t h = Hash(key) & mask;
    while (true) {
      const int32_t index = slots_[h];
      if (index < 0) {
        if (!insert) return -1;
        slots_[h] = size();
        keys_.insert(keys_.end(), key, key + dim_);
        return slots_[h];
      }
      if (SameKey(this->key(index), key, dim_)) return index;
      h = (h + 1) & mask;
    }
  }

 private:
  size_t Hash(const int16_t* key) const {
    size_t h = 0;
    for (int i = 0; i < dim_; ++i)
      h = (h + static_cast<uint16_t>(key[i])) * 2531011u;
    return h ^ (h >> 17);
  }

  void Grow() {
    const int count = size();
    slots_.assign(slots_.size() * 2, -1);
    const size_t mask = slots_.size() - 1;
    for (int index = 0; index < count; ++index) {
      size_t h = Hash(key(index)) & mask;
      while (slots_[h] >= 0) h = (h + 1) & mask;
      slots_[h] = index;
    }
  }

  int dim_;
  std::vector<int32_t> slots_;
  std::vector<int16_t> keys_;
};

}  // namespace

PermutohedralLattice::PermutohedralLattice(const float* features,
                                           int num_points, int dim)
    : num_points_(num_points), dim_(dim) {
  const int d = dim, d1 = dim + 1;
  offsets_.resize(static_cast<size_t>(num_points) * d1);
  weights_.resize(static_cast<size_t>(num_points) * d1);
  KeyTable table(d, static_cast<size_t>(num_points) * d1 / 2 + 16);

  float scale[kMaxDim];
  const float inv_std = std::sqrt(2.f / 3.f) * static_cast<float>(d1);
  for (int i = 0; i < d; ++i)
    scale[i] = inv_std / std::sqrt(static_cast<float>((i + 1) * (i + 2)));
  // canonical[r][i]: the offset of simplex vertex r along coordinate i for a
  // point whose coordinates are sorted by rank.
  int canonical[kMaxDim + 1][kMaxDim + 1];
  for (int r = 0; r <= d; ++r) {
    for (int i = 0; i <= d - r; ++i) canonical[r][i] = r;
    for (int i = d - r + 1; i <= d; ++i) canonical[r][i] = r - d1;
  }

  // As the reference: multiply by 1/(d+1) rather than divide.
  const float down_factor = 1.f / static_cast<float>(d1);
  float elevated[kMaxDim + 1], barycentric[kMaxDim + 2];
  int rem0[kMaxDim + 1], rank[kMaxDim + 1];
  int16_t key[kMaxDim];
  int16_t last_key[kMaxDim + 1][kMaxDim];
  int32_t last_index[kMaxDim + 1] = {0};
  for (int p = 0; p < num_points; ++p) {
    const float* f = features + static_cast<size_t>(p) * d;
    // Elevate onto the hyperplane x . 1 = 0 of R^(d+1).
    float sum = 0;
    for (int j = d; j > 0; --j) {
      const float cf = f[j - 1] * scale[j - 1];
      elevated[j] = sum - j * cf;
      sum += cf;
    }
    elevated[0] = sum;
    // Nearest remainder-0 lattice point, then the ranks of the differences.
    int sum_rem = 0;
    for (int i = 0; i <= d; ++i) {
      // floor and ceil of v by integer conversion (truncation toward zero,
      // corrected for negative v); libm calls here dominated construction.
      const float v = elevated[i] * down_factor;
      int floor_v = static_cast<int>(v);
      floor_v -= v < static_cast<float>(floor_v) ? 1 : 0;
      const int ceil_v = floor_v + (v > static_cast<float>(floor_v) ? 1 : 0);
      const int up = ceil_v * d1;
      const int down = floor_v * d1;
      rem0[i] = (up - elevated[i] < elevated[i] - down) ? up : down;
      sum_rem += rem0[i];
    }
    sum_rem /= d1;
    for (int i = 0; i <= d; ++i) rank[i] = 0;
    for (int i = 0; i < d; ++i) {
      const float di = elevated[i] - rem0[i];
      for (int j = i + 1; j <= d; ++j) {
        if (di < elevated[j] - rem0[j]) {
          ++rank[i];
        } else {
          ++rank[j];
        }
      }
    }
    // Fix the point so its coordinates sum to zero.
    if (sum_rem > 0) {
      for (int i = 0; i <= d; ++i) {
        if (rank[i] >= d1 - sum_rem) {
          rem0[i] -= d1;
          rank[i] += sum_rem - d1;
        } else {
          rank[i] += sum_rem;
        }
      }
    } else if (sum_rem < 0) {
      for (int i = 0; i <= d; ++i) {
        if (rank[i] < -sum_rem) {
          rem0[i] += d1;
          rank[i] += d1 + sum_rem;
        } else {
          rank[i] += sum_rem;
        }
      }
    }
    // Barycentric coordinates of the point in its simplex.
    for (int i = 0; i <= d + 1; ++i) barycentric[i] = 0;
    for (int i = 0; i <= d; ++i) {
      const float v = (elevated[i] - rem0[i]) * down_factor;
      barycentric[d - rank[i]] += v;
      barycentric[d + 1 - rank[i]] -= v;
    }
    barycentric[0] += 1.f + barycentric[d + 1];
    for (int r = 0; r <= d; ++r) {
      for (int i = 0; i < d; ++i) {
        key[i] = static_cast<int16_t>(rem0[i] + canonical[r][rank[i]]);
      }
      // Neighbouring points usually share simplices: reuse the previous
      // point's lookup when the key is the same.
      if (p == 0 || !SameKey(key, last_key[r], d)) {
        std::copy(key, key + d, last_key[r]);
        last_index[r] = table.Find(key, true) + 1;
      }
      offsets_[static_cast<size_t>(p) * d1 + r] = last_index[r];
      weights_[static_cast<size_t>(p) * d1 + r] = barycentric[r];
    }
  }

  num_vertices_ = table.size();
  neighbors_.resize(static_cast<size_t>(d1) * num_vertices_ * 2);
  int16_t n1[kMaxDim], n2[kMaxDim];
  for (int j = 0; j <= d; ++j) {
    for (int v = 0; v < num_vertices_; ++v) {
      const int16_t* k = table.key(v);
      for (int i = 0; i < d; ++i) {
        n1[i] = static_cast<int16_t>(k[i] - 1);
        n2[i] = static_cast<int16_t>(k[i] + 1);
      }
      if (j < d) {
        n1[j] = static_cast<int16_t>(k[j] + d);
        n2[j] = static_cast<int16_t>(k[j] - d);
      }
      int32_t* out =
          &neighbors_[(static_cast<size_t>(j) * num_vertices_ + v) * 2];
      out[0] = table.Find(n1, false) + 1;
      out[1] = table.Find(n2, false) + 1;
    }
  }
}

namespace {

// The row width C is a template parameter where it is small (kDynamic
// otherwise), so that the per-row loops compile to a few straight SIMD
// instructions instead of vectorized loops with run-time checks.
constexpr int kDynamic = 0;

template <int C>
inline void Axpy(float* __restrict dst, float w, const float* __restrict src,
                 int n) {
  const int width = C == kDynamic ? n : C;
#if defined(__SSE2__)
  if (width % 4 == 0) {
    // Multiply, then add: the same arithmetic as the scalar loop.
    const __m128 wv = _mm_set1_ps(w);
    for (int c = 0; c < width; c += 4) {
      _mm_storeu_ps(dst + c, _mm_add_ps(_mm_loadu_ps(dst + c),
                                        _mm_mul_ps(wv, _mm_loadu_ps(src + c))));
    }
    return;
  }
#endif
  for (int c = 0; c < width; ++c) dst[c] += w * src[c];
}

// dst = w * src over n floats.
template <int C>
inline void Scale(float* __restrict dst, float w, const float* __restrict src,
                  int n) {
  const int width = C == kDynamic ? n : C;
#if defined(__SSE2__)
  if (width % 4 == 0) {
    const __m128 wv = _mm_set1_ps(w);
    for (int c = 0; c < width; c += 4)
      _mm_storeu_ps(dst + c, _mm_mul_ps(wv, _mm_loadu_ps(src + c)));
    return;
  }
#endif
  for (int c = 0; c < width; ++c) dst[c] = w * src[c];
}

template <int C>
inline void Blur3(float* __restrict dst, const float* __restrict self,
                  const float* __restrict a, const float* __restrict b, int n) {
  const int width = C == kDynamic ? n : C;
#if defined(__SSE2__)
  if (width % 4 == 0) {
    const __m128 half = _mm_set1_ps(0.5f);
    for (int c = 0; c < width; c += 4) {
      const __m128 sum = _mm_add_ps(_mm_loadu_ps(a + c), _mm_loadu_ps(b + c));
      _mm_storeu_ps(dst + c,
                    _mm_add_ps(_mm_loadu_ps(self + c), _mm_mul_ps(half, sum)));
    }
    return;
  }
#endif
  for (int c = 0; c < width; ++c) dst[c] = self[c] + 0.5f * (a[c] + b[c]);
}

}  // namespace

template <int C>
void PermutohedralLattice::FilterRows(const float* in, int channels, float* out,
                                      const Scaling& scaling,
                                      std::vector<float>* workspace) const {
  const int d1 = dim_ + 1;
  const size_t cells = static_cast<size_t>(num_vertices_ + 1) * channels;
  // Two buffers, swapped after each blur axis, then one row of slice
  // accumulator. Only the splat target needs zeroing; the blur overwrites
  // every row of the other except row 0, the always-zero "missing
  // neighbour" row.
  workspace->resize(2 * cells + channels);
  float* values = workspace->data();
  float* scratch = values + cells;
  float* acc = scratch + cells;
  std::fill(values, values + cells, 0.f);
  std::fill(scratch, scratch + channels, 0.f);
  // Splat.
  for (int p = 0; p < num_points_; ++p) {
    const float* src = in + static_cast<size_t>(p) * channels;
    const int32_t* offsets = &offsets_[static_cast<size_t>(p) * d1];
    const float* weights = &weights_[static_cast<size_t>(p) * d1];
    const float in_scale = scaling.in_scale ? scaling.in_scale[p] : 1.f;
    for (int r = 0; r < d1; ++r) {
      float* dst = &values[static_cast<size_t>(offsets[r]) * channels];
      Axpy<C>(dst, weights[r] * in_scale, src, channels);
    }
  }
  // Blur along each axis: new = old + 0.5 * (left + right).
  for (int j = 0; j < d1; ++j) {
    const int32_t* nb = &neighbors_[static_cast<size_t>(j) * num_vertices_ * 2];
    for (int v = 0; v < num_vertices_; ++v) {
      const float* self = &values[static_cast<size_t>(v + 1) * channels];
      const float* a = &values[static_cast<size_t>(nb[2 * v]) * channels];
      const float* b = &values[static_cast<size_t>(nb[2 * v + 1]) * channels];
      float* dst = &scratch[static_cast<size_t>(v + 1) * channels];
      Blur3<C>(dst, self, a, b, channels);
    }
    std::swap(values, scratch);
  }
  // Slice.
  const float alpha = 1.f / (1.f + std::pow(2.f, -static_cast<float>(dim_)));
  for (int p = 0; p < num_points_; ++p) {
    // Small fixed-size rows: initialize from the first vertex rather than
    // zero-filling (a zero fill compiles to a memset call per point).
    const int32_t* offsets = &offsets_[static_cast<size_t>(p) * d1];
    const float* weights = &weights_[static_cast<size_t>(p) * d1];
    Scale<C>(acc, weights[0] * alpha,
             &values[static_cast<size_t>(offsets[0]) * channels], channels);
    for (int r = 1; r < d1; ++r) {
      const float* src = &values[static_cast<size_t>(offsets[r]) * channels];
      Axpy<C>(acc, weights[r] * alpha, src, channels);
    }
    float* dst = out + static_cast<size_t>(p) * channels;
    const float out_scale =
        scaling.out_weight * (scaling.out_scale ? scaling.out_scale[p] : 1.f);
    if (scaling.accumulate) {
      Axpy<C>(dst, out_scale, acc, channels);
    } else {
      Scale<C>(dst, out_scale, acc, channels);
    }
  }
}

void PermutohedralLattice::Filter(const float* in, int channels, float* out,
                                  std::vector<float>* workspace) const {
  FilterScaled(in, channels, out, Scaling{}, workspace);
}

void PermutohedralLattice::FilterScaled(const float* in, int channels,
                                        float* out, const Scaling& scaling,
                                        std::vector<float>* workspace) const {
  switch (channels) {
    case 1:
      return FilterRows<1>(in, channels, out, scaling, workspace);
    case 4:
      return FilterRows<4>(in, channels, out, scaling, workspace);
    case 8:
      return FilterRows<8>(in, channels, out, scaling, workspace);
    case 12:
      return FilterRows<12>(in, channels, out, scaling, workspace);
    case 16:
      return FilterRows<16>(in, channels, out, scaling, workspace);
    case 24:
      return FilterRows<24>(in, channels, out, scaling, workspace);
    case 32:
      return FilterRows<32>(in, channels, out, scaling, workspace);
    default:
      return FilterRows<kDynamic>(in, channels, out, scaling, workspace);
  }
}

}  // namespace primaps
