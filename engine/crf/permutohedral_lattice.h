// High-dimensional Gaussian filtering with the permutohedral lattice (Adams,
// Baek, Davis 2010), in the variant the dense CRF reference (Kraehenbuehl's
// densecrf, used by pydensecrf) implements, so that filtered values agree
// with it:
//   - feature i of d is scaled by sqrt(2/3) * (d+1) / sqrt((i+1)(i+2));
//   - each point is splatted with barycentric weights onto the d+1 vertices
//     of its enclosing simplex;
//   - the lattice is blurred along each of the d+1 axes with weights
//     1/2, 1, 1/2 (missing neighbours count as 0);
//   - values are sliced back with the same weights and scaled by
//     1 / (1 + 2^-d).
// The structure (vertices, weights, neighbours) depends only on the
// features, so one lattice filters any number of value sets.
#ifndef PRIMAPS_ENGINE_CRF_PERMUTOHEDRAL_LATTICE_H_
#define PRIMAPS_ENGINE_CRF_PERMUTOHEDRAL_LATTICE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "base/stop_check.h"

namespace primaps {

class PermutohedralLattice {
 public:
  // How lattice keys are held while the vertices are found; both give the
  // same lattice.
  enum class KeyPacking {
    // In bit fields of one 64-bit integer, when the features' range lets
    // every key and vertex index fit (fewer cache misses, and neighbours
    // found by one sort); keys of shorts otherwise.
    kWhenTheyFit,
    // Always keys of shorts, with one hash lookup per vertex and axis for
    // the neighbours (the fallback, forced for tests).
    kNever,
  };

  // `features` holds num_points rows of `dim` floats (already divided by the
  // kernel's standard deviations). dim must be in [1, 8].
  // `stop` (may be null) is polled every 2^16 points while the vertices
  // are found and before the neighbour search; a stopped lattice has no
  // vertices and says why in stopped().
  PermutohedralLattice(const float* features, int num_points, int dim,
                       const StopCheck* stop = nullptr,
                       KeyPacking packing = KeyPacking::kWhenTheyFit);

  // OK, or why the construction stopped half-way (the lattice is unusable).
  const absl::Status& stopped() const { return stopped_; }

  int num_points() const { return num_points_; }
  int num_vertices() const { return num_vertices_; }

  // out[p*channels + c] = sum over q of k(p, q) * in[q*channels + c], with k
  // the lattice approximation of exp(-|f_p - f_q|^2 / 2). `out` must not
  // alias `in`. `workspace` is scratch space owned by the caller, so one
  // lattice can serve several threads at once.
  void Filter(const float* in, int channels, float* out,
              std::vector<float>* workspace) const;

  // Per-point scaling fused into Filter, to spare the callers passes over
  // their arrays: the input of point q is multiplied by in_scale[q], and
  // out[p] (+)= out_weight * out_scale[p] * filtered[p].
  struct Scaling {
    const float* in_scale = nullptr;   // none: 1
    const float* out_scale = nullptr;  // none: 1
    float out_weight = 1.f;
    bool accumulate = false;  // add into `out` instead of overwriting it
    // Without `accumulate`: out[p] = base[p] + ..., base laid out as `out`
    // (none: 0). May alias `out`.
    const float* base = nullptr;
  };
  void FilterScaled(const float* in, int channels, float* out,
                    const Scaling& scaling,
                    std::vector<float>* workspace) const;

  // The filter's stages, for callers that fuse the per-point work of
  // several filters (the CRF's mean field does). Per point p and simplex
  // vertex r, at p * (dim + 1) + r: the vertex's row in a value buffer
  // (1-based; row 0 is the always-zero row of missing neighbours) and the
  // point's barycentric weight on it.
  int dim() const { return dim_; }
  const int32_t* vertex_rows() const { return offsets_.data(); }
  const float* vertex_weights() const { return weights_.data(); }
  // The slice's scale, 1 / (1 + 2^-dim).
  float slice_scale() const;
  // Blurs `values`, (num_vertices + 1) rows of `channels` floats, along
  // every axis, using `scratch` of the same size; row 0 of both must be
  // zero. Returns whichever of the two holds the result.
  float* Blur(float* values, float* scratch, int channels) const;

 private:
  // Builds the structure for D == dim_, with packed keys where `packing`
  // allows and they fit, with keys of shorts otherwise.
  template <int D>
  void Build(const float* features, KeyPacking packing);
  // False when the keys do not fit in 64-bit integers.
  template <int D>
  bool BuildWithPackedKeys(const float* features);
  template <int D>
  void BuildWithShortKeys(const float* features);

  // Filter for simplices of D1 = dim + 1 vertices (0: given at run time by
  // dim_), dispatching on the row width.
  template <int D1>
  void FilterForWidth(const float* in, int channels, float* out,
                      const Scaling& scaling,
                      std::vector<float>* workspace) const;
  // The kernels come in two kinds that give the same bits per channel: for
  // rows of a fixed width C (the common label counts), every row operation
  // on registers; for any other width, plain loops over the row.
  template <int C>
  float* BlurInRegisters(float* values, float* scratch) const;
  float* BlurInLoops(float* values, float* scratch, int channels) const;
  template <int D1, int C>
  void FilterInRegisters(const float* in, float* out, const Scaling& scaling,
                         std::vector<float>* workspace) const;
  template <int D1>
  void FilterInLoops(const float* in, int channels, float* out,
                     const Scaling& scaling,
                     std::vector<float>* workspace) const;

  // Polls stop_ at point p0 of the vertex search (every 2^16 points);
  // false once it says to stop.
  bool KeepGoing(int p0, const char* step);

  int num_points_;
  int dim_;
  const StopCheck* stop_ = nullptr;
  absl::Status stopped_;
  int num_vertices_ = 0;
  // Per point and simplex vertex r (0..dim): the lattice vertex (1-based; 0
  // is an always-zero slot) and its barycentric weight.
  std::vector<int32_t> offsets_;
  std::vector<float> weights_;
  // Per axis j (0..dim) and vertex v: the 1-based indices of the two
  // neighbours along j, or 0 when absent.
  std::vector<int32_t> neighbors_;
};

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_CRF_PERMUTOHEDRAL_LATTICE_H_
