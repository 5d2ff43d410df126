#include "engine/crf/permutohedral_lattice.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "base/simd_lanes.h"
#include "engine/crf/lattice_key_tables.h"

namespace primaps {
namespace {

constexpr int kMaxDim = 8;

using lattice::kLookupBlock;
using lattice::PackedKeyTable;
using lattice::PendingLookups;
using lattice::ShortKeyTable;

// The number of bits that hold v.
int BitWidth(uint64_t v) {
  int bits = 0;
  while (bits < 64 && (v >> bits) != 0) ++bits;
  return bits;
}

// Points are placed in their simplices this many at a time, one per lane.
constexpr int kPointBlock = simd::kLanes;
using simd::Floats;
using simd::Ints;
using simd::Select;
using simd::ToFloats;
using simd::ToInts;

// The enclosing simplices of a block of points: per simplex vertex r
// (0..D), each point's barycentric weight and the vertex's first D lattice
// coordinates (the last is implied).
template <int D>
struct SimplexBlock {
  Floats barycentric[D + 1];
  Ints keys[D + 1][D];
};

// Fills `out` for `count` (<= kPointBlock) points of D features each, all
// lanes at once and branch-free (the comparisons are coin flips for a
// branch predictor). Each point's arithmetic is the reference's, step by
// step, so the results are the same floats.
template <int D>
void FindSimplices(const float* features, int count, const float* scale,
                   SimplexBlock<D>* out) {
  constexpr int d = D, d1 = D + 1;
  // As the reference: multiply by 1/(d+1) rather than divide.
  const float down_factor = 1.f / static_cast<float>(d1);
  // Transposed features; lanes past `count` stay 0 and are ignored.
  Floats f[D] = {};
  for (int i = 0; i < count; ++i) {
    for (int j = 0; j < d; ++j) f[j][i] = features[i * d + j];
  }
  // Elevate onto the hyperplane x . 1 = 0 of R^(d+1).
  Floats elevated[D + 1], sum = {};
  for (int j = d; j > 0; --j) {
    const Floats cf = f[j - 1] * scale[j - 1];
    elevated[j] = sum - static_cast<float>(j) * cf;
    sum += cf;
  }
  elevated[0] = sum;
  // The nearest remainder-0 lattice point: floor and ceil of v by integer
  // conversion (comparison masks are -1 where true).
  Ints rem0[D + 1], sum_rem = {};
  for (int j = 0; j <= d; ++j) {
    const Floats v = elevated[j] * down_factor;
    Ints floor_v = ToInts(v);
    floor_v += v < ToFloats(floor_v);
    const Ints ceil_v = floor_v - (v > ToFloats(floor_v));
    const Ints up = ceil_v * d1, down = floor_v * d1;
    rem0[j] = Select(ToFloats(up) - elevated[j] < elevated[j] - ToFloats(down),
                     up, down);
    sum_rem += rem0[j];
  }
  // sum_rem is a multiple of d+1, so the float quotient is exact.
  sum_rem = ToInts(ToFloats(sum_rem) / static_cast<float>(d1));
  // Ranks of the differences from the remainder-0 point.
  Floats residual[D + 1];
  Ints rank[D + 1] = {};
  for (int j = 0; j <= d; ++j) residual[j] = elevated[j] - ToFloats(rem0[j]);
  for (int a = 0; a < d; ++a) {
    for (int b = a + 1; b <= d; ++b) {
      const Ints less = residual[a] < residual[b];
      rank[a] -= less;
      rank[b] += 1 + less;
    }
  }
  // Fix the point so its coordinates sum to zero: with sum_rem > 0 the
  // sum_rem highest-ranked coordinates move down by d+1, with sum_rem < 0
  // the -sum_rem lowest move up; every rank shifts by sum_rem modulo d+1.
  const Ints zero = {};
  for (int j = 0; j <= d; ++j) {
    const Ints down = (sum_rem > zero) & (rank[j] >= d1 - sum_rem);
    const Ints up = (sum_rem < zero) & (rank[j] < -sum_rem);
    // The masks are -1 where true: down - up is (up ? 1 : 0) - (down ? 1 : 0).
    const Ints shift = (down - up) * d1;
    rem0[j] += shift;
    rank[j] += sum_rem + shift;
  }
  // Barycentric coordinates. The reference accumulates, per coordinate j,
  // +v_j into slot d - rank_j and -v_j into slot d + 1 - rank_j, starting
  // from 0. Ranks are a permutation, so each slot gets at most one term of
  // each sign, and (0 + a) - b = (0 - b) + a exactly: gathering v by rank
  // first and taking one difference per slot gives the same floats.
  Floats by_rank[D + 1] = {};
  for (int j = 0; j <= d; ++j) {
    const Floats v = (elevated[j] - ToFloats(rem0[j])) * down_factor;
    for (int k = 0; k <= d; ++k)
      by_rank[k] = Select(rank[j] == k, v, by_rank[k]);
  }
  // Slot d+1 (-v of rank 0) wraps around onto slot 0, as in the reference.
  out->barycentric[0] = by_rank[d] + (1.f - by_rank[0]);
  for (int r = 1; r <= d; ++r)
    out->barycentric[r] = by_rank[d - r] - by_rank[d + 1 - r];
  // Simplex vertex r: the remainder-0 point plus the canonical offset r
  // (coordinates of rank <= d - r) or r - (d+1) (the others).
  for (int r = 0; r <= d; ++r) {
    for (int j = 0; j < d; ++j) {
      out->keys[r][j] =
          rem0[j] + Select(rank[j] <= d - r, zero + r, zero + (r - d1));
    }
  }
}

// Sorts `values` in place by their bits from..bits-1 (those above are 0):
// least-significant-digit radix sort, 11 bits per pass.
void RadixSort(std::vector<uint64_t>* values, int from, int bits) {
  constexpr int kDigit = 11;
  std::vector<uint64_t> other(values->size());
  for (int shift = from; shift < bits; shift += kDigit) {
    std::vector<size_t> start((size_t{1} << kDigit) + 1, 0);
    for (const uint64_t v : *values) ++start[((v >> shift) & 2047) + 1];
    for (size_t b = 1; b < start.size(); ++b) start[b] += start[b - 1];
    for (const uint64_t v : *values) other[start[(v >> shift) & 2047]++] = v;
    values->swap(other);
  }
}

// The neighbours of every vertex along every axis (the same pairs a hash
// lookup per vertex and axis finds) by sorting instead of hashing. Each
// vertex key is packed into bit fields of one integer (`packed`, by vertex;
// field i of D starts at bit field_shift[i]), each offset to stay
// non-negative with room for a lattice step, so that the step n1 along axis
// j (-1 on every coordinate, +D+1 on coordinate j) adds the same constant
// to every packed key. After one sort, the neighbours along j are the equal
// pairs of two sorted lists, the packed keys and the packed keys plus the
// constant: one linear merge per axis. The vertex index rides in the low
// bits; `key_bits` and the index's bits must fit in 64.
template <int D>
void NeighborsFromPacked(std::vector<uint64_t> packed, const int* field_shift,
                         int key_bits, std::vector<int32_t>* neighbors) {
  constexpr int d1 = D + 1;
  const int num_vertices = static_cast<int>(packed.size());
  const int index_bits = BitWidth(static_cast<uint64_t>(num_vertices));
  for (int v = 0; v < num_vertices; ++v)
    packed[v] = packed[v] << index_bits | static_cast<uint64_t>(v);
  // The packed keys are distinct: the index bits below them need no pass.
  RadixSort(&packed, index_bits, index_bits + key_bits);
  const uint64_t index_mask = (uint64_t{1} << index_bits) - 1;
  for (int j = 0; j < d1; ++j) {
    // The step n1 along j on the packed fields (unsigned arithmetic wraps,
    // and no field borrows from the next: each stays non-negative).
    uint64_t step = 0;
    for (int i = 0; i < D; ++i) step -= uint64_t{1} << field_shift[i];
    if (j < D) step += static_cast<uint64_t>(d1) << field_shift[j];
    int32_t* nb = &(*neighbors)[static_cast<size_t>(j) * num_vertices * 2];
    int a = 0, b = 0;
    while (a < num_vertices && b < num_vertices) {
      const uint64_t target = (packed[a] >> index_bits) + step;
      const uint64_t key = packed[b] >> index_bits;
      if (target == key) {
        const int v = static_cast<int>(packed[a] & index_mask);
        const int u = static_cast<int>(packed[b] & index_mask);
        nb[2 * v] = u + 1;      // u = n1(v)
        nb[2 * u + 1] = v + 1;  // v = n2(u)
      }
      a += target <= key;
      b += target >= key;
    }
  }
}

// The per-feature scale of the reference: sqrt(2/3) (d+1) / sqrt((i+1)(i+2)).
template <int D>
void LatticeScale(float* scale) {
  const float inv_std = std::sqrt(2.f / 3.f) * static_cast<float>(D + 1);
  for (int i = 0; i < D; ++i)
    scale[i] = inv_std / std::sqrt(static_cast<float>((i + 1) * (i + 2)));
}

// Bit i of repeats[r]: point i of the block has the same vertex r as the
// point before it (never for the very first point). All lanes at once: the
// keys against the same keys shifted by one lane; `previous_keys` carries
// the previous block's (its last lane is the point before this block).
template <int D>
void RepeatedVertices(const SimplexBlock<D>& block, bool first_block,
                      Ints (&previous_keys)[D + 1][D], int* repeats) {
  for (int r = 0; r <= D; ++r) {
    Ints differs = {};
    for (int j = 0; j < D; ++j) {
      differs |= block.keys[r][j] !=
                 simd::ShiftInLast(previous_keys[r][j], block.keys[r][j]);
      previous_keys[r][j] = block.keys[r][j];
    }
    repeats[r] = ~simd::MaskBits(differs) & ~static_cast<int>(first_block);
  }
}

// Places the points in their simplices kPointBlock at a time and calls
// on_block(block, p0, count, repeats) for the points p0 .. p0 + count - 1,
// with repeats as RepeatedVertices gives them.
// Stops early when keep_going(p0) says false.
template <int D, typename OnBlock, typename KeepGoing>
void ForEachSimplexBlock(const float* features, int num_points,
                         OnBlock&& on_block, KeepGoing&& keep_going) {
  float scale[kMaxDim];
  LatticeScale<D>(scale);
  Ints previous_keys[D + 1][D] = {};
  SimplexBlock<D> block;
  int repeats[D + 1];
  for (int p0 = 0; p0 < num_points; p0 += kPointBlock) {
    if (!keep_going(p0)) return;
    const int count = std::min(kPointBlock, num_points - p0);
    FindSimplices<D>(features + static_cast<size_t>(p0) * D, count, scale,
                     &block);
    RepeatedVertices<D>(block, p0 == 0, previous_keys, repeats);
    on_block(block, p0, count, repeats);
  }
}

// Resolves the reused vertices (offset -1) in point order: each copies the
// previous point's (already final) index, kept in registers (a copy read
// back from memory waits on the store before it, and reuse comes in long
// runs). A select, not a branch: reuse is a coin flip for the predictor.
template <int D>
void ResolveReused(std::vector<int32_t>* offsets) {
  constexpr int d1 = D + 1;
  int32_t previous[d1];
  for (int r = 0; r < d1; ++r) previous[r] = (*offsets)[r];  // point 0: own
  for (size_t at = d1; at < offsets->size(); at += d1) {
    for (int r = 0; r < d1; ++r) {
      const int32_t own = (*offsets)[at + r];
      previous[r] = own < 0 ? previous[r] : own;
      (*offsets)[at + r] = previous[r];
    }
  }
}

}  // namespace

PermutohedralLattice::PermutohedralLattice(const float* features,
                                           int num_points, int dim,
                                           const StopCheck* stop,
                                           KeyPacking packing)
    : num_points_(num_points), dim_(dim), stop_(stop) {
  switch (dim) {
    case 1:
      Build<1>(features, packing);
      break;
    case 2:
      Build<2>(features, packing);
      break;
    case 3:
      Build<3>(features, packing);
      break;
    case 4:
      Build<4>(features, packing);
      break;
    case 5:
      Build<5>(features, packing);
      break;
    case 6:
      Build<6>(features, packing);
      break;
    case 7:
      Build<7>(features, packing);
      break;
    default:
      Build<8>(features, packing);
  }
}

bool PermutohedralLattice::KeepGoing(int p0, const char* step) {
  if (stop_ == nullptr || p0 % (1 << 16) != 0 || !stopped_.ok())
    return stopped_.ok();
  stopped_ = stop_->Poll(step);
  if (!stopped_.ok()) {
    num_vertices_ = 0;
    offsets_.clear();
    weights_.clear();
    neighbors_.clear();
  }
  return stopped_.ok();
}

// Construction with packed keys (PackedKeyTable): each vertex key's first D
// coordinates in bit fields of one 64-bit integer, sized from the
// features' range, which bounds every key before any is computed. Keys are
// made a block of points at a time in vector registers, a table slot holds
// a key and its vertex index in 8 bytes, and the neighbour search sorts
// the same integers. Returns false when the fields and indices do not fit
// in 64 bits or a key falls outside its field (non-finite features); Build
// then starts over with keys of shorts.
template <int D>
bool PermutohedralLattice::BuildWithPackedKeys(const float* features) {
  constexpr int d = D, d1 = D + 1;
  const int num_points = num_points_;
  if (num_points <= 0) return false;
  float scale[kMaxDim];
  LatticeScale<D>(scale);
  float lo_feature[D], hi_feature[D];
  for (int j = 0; j < d; ++j) lo_feature[j] = hi_feature[j] = features[j];
  for (int p = 0; p < num_points; ++p) {
    for (int j = 0; j < d; ++j) {
      const float f = features[static_cast<size_t>(p) * d + j];
      lo_feature[j] = std::min(lo_feature[j], f);
      hi_feature[j] = std::max(hi_feature[j], f);
    }
  }
  // Bounds of the elevated coordinates (FindSimplices: coordinate j is the
  // sum of f_i * scale_i over i >= j, minus j * f_(j-1) * scale_(j-1)), by
  // interval arithmetic. A key is within 2.5 (d+1) of its point's elevated
  // coordinate and a neighbour step within d+1 more; the margin also
  // covers the float rounding of the elevation.
  int field_low[D], field_width[D], field_shift[D], key_bits = 0;
  for (int j = 0; j < d; ++j) {
    if (!std::isfinite(lo_feature[j]) || !std::isfinite(hi_feature[j]))
      return false;
    double lo = 0, hi = 0;
    for (int i = j; i < d; ++i) {
      lo += static_cast<double>(lo_feature[i]) * scale[i];
      hi += static_cast<double>(hi_feature[i]) * scale[i];
    }
    if (j > 0) {
      lo -= static_cast<double>(j) * hi_feature[j - 1] * scale[j - 1];
      hi -= static_cast<double>(j) * lo_feature[j - 1] * scale[j - 1];
    }
    if (!(std::abs(lo) + std::abs(hi) < 1e8)) return false;
    const double margin = 4.0 * d1 + 2 + 1e-5 * (std::abs(lo) + std::abs(hi));
    field_low[j] = static_cast<int>(std::floor(lo - margin));
    field_width[j] = static_cast<int>(std::ceil(hi + margin)) - field_low[j];
    field_shift[j] = key_bits;
    key_bits += BitWidth(static_cast<uint64_t>(field_width[j]));
  }
  // The rest of a slot numbers the vertices; a lattice with more falls
  // back to keys of shorts.
  const int index_bits = 64 - key_bits;
  if (index_bits < 10) return false;

  offsets_.resize(static_cast<size_t>(num_points) * d1);
  weights_.resize(static_cast<size_t>(num_points) * d1);
  PackedKeyTable table(static_cast<size_t>(num_points), index_bits);
  // As with keys of shorts: keys repeated from the previous point reuse its
  // index (offset -1 until ResolveReused), the others are looked up.
  PendingLookups<PackedKeyTable, uint64_t> pending;
  typedef int64_t Longs __attribute__((vector_size(8 * simd::kLanes)));
  typedef uint64_t Words __attribute__((vector_size(8 * simd::kLanes)));
  Ints lane;
  for (int i = 0; i < simd::kLanes; ++i) lane[i] = i;
  Ints outside = {};  // a lane's key left its field
  ForEachSimplexBlock<D>(
      features, num_points,
      [&](const SimplexBlock<D>& block, int p0, int count, const int* repeats) {
        const Ints live = lane < count;
        uint64_t packed[D + 1][simd::kLanes];
        for (int r = 0; r <= d; ++r) {
          Words key = {};
          for (int j = 0; j < d; ++j) {
            const Ints field = block.keys[r][j] - field_low[j];
            outside |= ((field < 0) | (field >= field_width[j])) & live;
            key |= (Words) __builtin_convertvector(field, Longs)
                   << field_shift[j];
          }
          std::memcpy(packed[r], &key, sizeof(key));
        }
        for (int i = 0; i < count; ++i) {
          const size_t p = static_cast<size_t>(p0) + i;
          for (int r = 0; r <= d; ++r) {
            const size_t at = p * d1 + r;
            weights_[at] = block.barycentric[r][i];
            pending.Next() = packed[r][i];
            offsets_[at] = -1;
            pending.Commit(at, ((repeats[r] >> i) & 1) == 0);
          }
          if (pending.Full(d1)) pending.Flush(&table, &offsets_);
        }
      },
      [this](int p0) { return KeepGoing(p0, "the CRF's lattice"); });
  // Stopped: true, so that Build does not start over with other keys.
  if (!stopped_.ok()) return true;
  pending.Flush(&table, &offsets_);
  if (simd::MaskBits(outside) != 0 || table.overflowed()) return false;
  ResolveReused<D>(&offsets_);
  if (!KeepGoing(0, "the CRF's lattice")) return true;

  num_vertices_ = table.size();
  const int num_vertices = num_vertices_;
  neighbors_.assign(static_cast<size_t>(d1) * num_vertices * 2, 0);
  // The vertex indices fit in index_bits, so this fits in 64 bits.
  NeighborsFromPacked<D>(table.keys(), field_shift, key_bits, &neighbors_);
  return true;
}

// The dimension is a template parameter so that the per-point loops over
// coordinates unroll and their small arrays live in registers.
template <int D>
void PermutohedralLattice::Build(const float* features, KeyPacking packing) {
  if (packing == KeyPacking::kWhenTheyFit) {
    if (BuildWithPackedKeys<D>(features) || !stopped_.ok()) return;
  }
  BuildWithShortKeys<D>(features);
}

// Construction with keys of shorts (ShortKeyTable), for features too wide
// (or not finite) to pack.
template <int D>
void PermutohedralLattice::BuildWithShortKeys(const float* features) {
  constexpr int K = D <= 6 ? 6 : 8;  // key width: 16-byte slots up to 6
  const int num_points = num_points_;
  constexpr int d = D, d1 = D + 1;
  using Table = ShortKeyTable<K>;
  using Key = typename Table::Key;
  offsets_.resize(static_cast<size_t>(num_points) * d1);
  weights_.resize(static_cast<size_t>(num_points) * d1);
  Table table(static_cast<size_t>(num_points));

  // Keys of a block of simplex vertices; the ones equal to the previous
  // point's key for the same vertex reuse its index (neighbouring points
  // usually share simplices), the others are prefetched, then looked up.
  PendingLookups<Table, Key> pending;
  ForEachSimplexBlock<D>(
      features, num_points,
      [&](const SimplexBlock<D>& block, int p0, int count, const int* repeats) {
        for (int i = 0; i < count; ++i) {
          const size_t p = static_cast<size_t>(p0) + i;
          for (int r = 0; r <= d; ++r) {
            const size_t at = p * d1 + r;
            weights_[at] = block.barycentric[r][i];
            // A repeated vertex gets -1, resolved below; a new one gets its
            // index at the flush. Keys are written and read a short at a time
            // (a word-sized read of just-written shorts stalls on store
            // forwarding); the padding past `dim` stays zero from
            // initialization.
            Key& key = pending.Next();
            for (int j = 0; j < d; ++j)
              key[j] = static_cast<int16_t>(block.keys[r][j][i]);
            offsets_[at] = -1;
            pending.Commit(at, ((repeats[r] >> i) & 1) == 0);
          }
          if (pending.Full(d1)) pending.Flush(&table, &offsets_);
        }
      },
      [this](int p0) { return KeepGoing(p0, "the CRF's lattice"); });
  if (!stopped_.ok()) return;
  pending.Flush(&table, &offsets_);
  ResolveReused<D>(&offsets_);
  if (!KeepGoing(0, "the CRF's lattice")) return;

  // Neighbours along each axis j: n1 = key + (-1, ..., -1, +d at j, -1, ...)
  // (for the last axis, all -1) and n2 = key - that step. This is the
  // fallback for features too wide (or not finite) to pack, so n1 is
  // looked up in the table: when u = n1(v), v = n2(u).
  num_vertices_ = table.size();
  const int num_vertices = num_vertices_;
  neighbors_.assign(static_cast<size_t>(d1) * num_vertices * 2, 0);
  const size_t lookups = static_cast<size_t>(num_vertices) * d1;
  Key n1_keys[kLookupBlock];
  uint64_t n1_hashes[kLookupBlock];
  int pending_vertex[kLookupBlock], pending_axis[kLookupBlock];
  int v = 0, j = 0;  // the next (vertex, axis) to look up
  for (size_t start = 0; start < lookups; start += kLookupBlock) {
    const int count =
        static_cast<int>(std::min<size_t>(kLookupBlock, lookups - start));
    for (int b = 0; b < count; ++b, j = j == d ? 0 : j + 1, v += j == 0) {
      Key n1 = table.key(v);
      for (int i = 0; i < d; ++i) n1[i] = static_cast<int16_t>(n1[i] - 1);
      if (j < d) n1[j] = static_cast<int16_t>(n1[j] + d1);
      n1_keys[b] = n1;
      pending_vertex[b] = v;
      pending_axis[b] = j;
      n1_hashes[b] = Table::HashOf(n1);
      table.Prefetch(n1_hashes[b]);
    }
    for (int b = 0; b < count; ++b) {
      const int u = table.Find(n1_keys[b], n1_hashes[b]);
      if (u < 0) continue;
      const size_t axis = static_cast<size_t>(pending_axis[b]) * num_vertices;
      neighbors_[(axis + pending_vertex[b]) * 2] = u + 1;
      neighbors_[(axis + u) * 2 + 1] = pending_vertex[b] + 1;
    }
  }
}

}  // namespace primaps
