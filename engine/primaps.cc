#include "engine/primaps.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/simd_lanes.h"
#include "base/status_macros.h"
#include "engine/image/channel_maps.h"
#include "engine/principal_component.h"

namespace primaps {
namespace {

// Dot product of d floats as eight interleaved partial sums added in a fixed
// tree: the loop vectorizes and does not wait out each add's latency (one
// running sum does), and the order, so the bits, are the same in every
// build (SSE2 or AVX2).
float Dot(const float* a, const float* b, int d) {
  float part[8] = {};
  int c = 0;
  for (; c + 8 <= d; c += 8) {
    for (int i = 0; i < 8; ++i) part[i] += a[c + i] * b[c + i];
  }
  for (int i = 0; c + i < d; ++i) part[i] += a[c + i] * b[c + i];
  return ((part[0] + part[1]) + (part[2] + part[3])) +
         ((part[4] + part[5]) + (part[6] + part[7]));
}

}  // namespace

absl::Status ValidateFeatures(const FeatureMap& f) {
  if (f.dim < 1 || f.height < 2 || f.width < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("features are ", f.dim, " x ", f.height, " x ", f.width,
                     "; PriMaPs needs at least 1 channel and a 2x2 grid"));
  }
  if (f.data.size() != static_cast<size_t>(f.dim) * f.height * f.width) {
    return absl::InvalidArgumentError(
        absl::StrCat("features of ", f.dim, " x ", f.height, " x ", f.width,
                     " hold ", f.data.size(), " values"));
  }
  for (size_t i = 0; i < f.data.size(); ++i) {
    if (!std::isfinite(f.data[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "features contain a non-finite value (", f.data[i], ") at channel ",
          i / (static_cast<size_t>(f.height) * f.width)));
    }
  }
  return absl::OkStatus();
}

namespace {

absl::Status ValidateOptions(const PriMaPsOptions& options) {
  if (!(options.threshold >= 0.f && options.threshold <= 1.f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "threshold is ", options.threshold, ", must be in [0, 1]"));
  }
  if (!(options.coverage > 0.f && options.coverage <= 1.f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("coverage is ", options.coverage, ", must be in (0, 1]"));
  }
  if (options.max_masks < 1 || options.max_masks > 254) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_masks is ", options.max_masks, ", must be in [1, 254]"));
  }
  return absl::OkStatus();
}

// The features position-major: raw rows for the PCA, L2-normalized rows
// for the cosine similarities (F.normalize's eps of 1e-12).
struct PositionRows {
  explicit PositionRows(const FeatureMap& features)
      : n(features.height * features.width),
        d(features.dim),
        raw(static_cast<size_t>(n) * d),
        unit(static_cast<size_t>(n) * d) {
    for (int c = 0; c < d; ++c) {
      for (int i = 0; i < n; ++i)
        raw[static_cast<size_t>(i) * d + c] =
            features.data[static_cast<size_t>(c) * n + i];
    }
    for (int i = 0; i < n; ++i) {
      const float* r = row(i);
      const float inv = 1.f / std::max(std::sqrt(Dot(r, r, d)), 1e-12f);
      for (int c = 0; c < d; ++c)
        unit[static_cast<size_t>(i) * d + c] = r[c] * inv;
    }
  }
  const float* row(int i) const { return &raw[static_cast<size_t>(i) * d]; }
  const float* unit_row(int i) const {
    return &unit[static_cast<size_t>(i) * d];
  }

  const int n, d;
  std::vector<float> raw, unit;
};

// PriMaPs steps 2a-2c over the free positions: the first principal
// component of their features, the anchor (the free position most similar
// to it, first on ties), and in `s` the similarities to the anchor,
// thresholded at t * max and scaled to 1 (0 off the free set). False when
// no similarity is positive: no mask.
bool ProposeMask(const PositionRows& rows, const std::vector<uint8_t>& free,
                 int free_count, float threshold, std::vector<float>* s,
                 int* anchor) {
  const int n = rows.n, d = rows.d;
  std::vector<float> free_rows;
  free_rows.reserve(static_cast<size_t>(free_count) * d);
  for (int i = 0; i < n; ++i) {
    if (free[i])
      free_rows.insert(free_rows.end(), rows.row(i), rows.row(i + 1));
  }
  const std::vector<float> v =
      FirstPrincipalComponent(free_rows.data(), free_count, d);
  const float v_norm = std::max(std::sqrt(Dot(v.data(), v.data(), d)), 1e-12f);
  std::vector<float> sim(n);
  *anchor = 0;
  for (int i = 0; i < n; ++i) {
    sim[i] = free[i] ? Dot(v.data(), rows.unit_row(i), d) / v_norm : 0.f;
    if (sim[i] > sim[*anchor]) *anchor = i;
  }
  float max_s = 0;
  for (int i = 0; i < n; ++i) {
    (*s)[i] = free[i] ? Dot(rows.unit_row(*anchor), rows.unit_row(i), d) : 0.f;
    max_s = std::max(max_s, (*s)[i]);
  }
  if (!(max_s > 0)) return false;
  for (float& value : *s) {
    if (value < threshold * max_s) value = 0;
    value /= max_s;
  }
  return true;
}

}  // namespace

absl::StatusOr<SoftMasks> ProposeSoftMasks(const FeatureMap& features,
                                           const PriMaPsOptions& options) {
  RETURN_IF_ERROR(ValidateFeatures(features));
  RETURN_IF_ERROR(ValidateOptions(options));
  const PositionRows rows(features);
  const int n = rows.n;
  SoftMasks out;
  out.height = features.height;
  out.width = features.width;
  // PriMaPs step 1: every position is free.
  std::vector<uint8_t> free(n, 1);
  int free_count = n;
  // The free set only shrinks, so its sizes identify it.
  std::vector<int> free_history = {free_count};
  std::vector<float> s(n);
  // PriMaPs step 2: until the coverage is reached.
  while (n - free_count < options.coverage * n &&
         out.num_masks < options.max_masks) {
    RETURN_IF_ERROR(PollStop(options.stop, "PriMaPs' mask proposals"));
    int anchor = 0;
    if (ProposeMask(rows, free, free_count, options.threshold, &s, &anchor)) {
      out.masks.insert(out.masks.end(), s.begin(), s.end());
      out.anchors.push_back(anchor);
      ++out.num_masks;
      // Step 2d: positions in the mask are no longer free.
      for (int i = 0; i < n; ++i) {
        if (s[i] > 0 && free[i]) {
          free[i] = 0;
          --free_count;
        }
      }
    }
    free_history.push_back(free_count);
    const size_t k = free_history.size();
    if (k >= 3 && free_history[k - 1] == free_history[k - 2] &&
        free_history[k - 1] == free_history[k - 3]) {
      break;  // the free set stopped changing
    }
  }
  out.capped = out.num_masks >= options.max_masks &&
               n - free_count < options.coverage * n;
  return out;
}

std::vector<float> RefineMasks(const SoftMasks& masks) {
  const int h = masks.height, w = masks.width;
  std::vector<float> out(masks.masks.size());
  // Reflect padding (torch "reflect"): index -1 maps to 1, h to h-2.
  auto reflect = [](int i, int size) {
    return i < 0 ? -i : (i >= size ? 2 * size - 2 - i : i);
  };
  std::array<float, 9> window;
  for (int m = 0; m < masks.num_masks; ++m) {
    const float* src = &masks.masks[static_cast<size_t>(m) * h * w];
    float* dst = &out[static_cast<size_t>(m) * h * w];
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        int k = 0;
        for (int dy = -1; dy <= 1; ++dy) {
          for (int dx = -1; dx <= 1; ++dx)
            window[k++] = src[reflect(y + dy, h) * w + reflect(x + dx, w)];
        }
        std::nth_element(window.begin(), window.begin() + 4, window.end());
        dst[y * w + x] = std::min(std::max(window[4] * 10.f, 0.f), 1.f);
      }
    }
  }
  return out;
}

std::vector<float> WithBackground(const std::vector<float>& refined,
                                  int num_masks, int height, int width) {
  const size_t n = static_cast<size_t>(height) * width;
  double nonzero_sum = 0;
  size_t nonzero_count = 0;
  for (float v : refined) {
    if (v != 0.f) {
      nonzero_sum += v;
      ++nonzero_count;
    }
  }
  // With no mask values at all, everything is background.
  const float mean =
      nonzero_count ? static_cast<float>(nonzero_sum / nonzero_count) : 1.f;
  std::vector<float> out((num_masks + 1) * n);
  for (size_t i = 0; i < n; ++i) {
    float total = 0;
    for (int m = 0; m < num_masks; ++m) total += refined[m * n + i];
    out[i] = std::min(std::max(mean - total, 0.f), 1.f);
  }
  std::copy(refined.begin(), refined.end(), out.begin() + n);
  return out;
}

absl::StatusOr<PriMaPsResult> ComputePriMaPs(const FeatureMap& features,
                                             const NormalizedImage& image,
                                             const PriMaPsOptions& options,
                                             const OutputTarget& target) {
  const int p = options.patch_size;
  if (p < 1 || image.height / p != features.height ||
      image.width / p != features.width) {
    return absl::InvalidArgumentError(absl::StrCat(
        "features of ", features.width, "x", features.height,
        " do not match a ", image.width, "x", image.height,
        " image at patch size ", p, " (expected ", p < 1 ? 0 : image.width / p,
        "x", p < 1 ? 0 : image.height / p, ")"));
  }
  if (image.data.size() !=
      static_cast<size_t>(3) * image.height * image.width) {
    return absl::InvalidArgumentError("image size and pixel count disagree");
  }
  PriMaPsResult result;
  const absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(result.proposals, ProposeSoftMasks(features, options));
  const absl::Time labels_start = absl::Now();
  result.proposals_time = labels_start - start;
  const SoftMasks& masks = result.proposals;
  DenseLabelOptions dense;
  dense.scores = GridScores::kMaskScores;
  dense.use_crf = options.use_crf;
  dense.crf = options.crf;
  if (dense.crf.stop == nullptr) dense.crf.stop = options.stop;
  ASSIGN_OR_RETURN(
      DenseLabels labels,
      ComputeDenseLabels(WithBackground(RefineMasks(masks), masks.num_masks,
                                        masks.height, masks.width),
                         masks.num_masks + 1, masks.height, masks.width, image,
                         target, dense));
  result.mask_labels = std::move(labels.labels);
  result.processed_mask_labels = std::move(labels.processed_labels);
  result.labels_time = absl::Now() - labels_start;
  return result;
}

absl::StatusOr<MaskClassTable> MaskClasses(const LabelMap& mask_labels,
                                           const LabelMap* prior,
                                           uint8_t ignore_label) {
  const size_t n = mask_labels.labels.size();
  if (prior != nullptr &&
      (prior->width != mask_labels.width ||
       prior->height != mask_labels.height || prior->labels.size() != n)) {
    return absl::InvalidArgumentError(
        absl::StrCat("class prior of ", prior->width, "x", prior->height,
                     " does not match the ", mask_labels.width, "x",
                     mask_labels.height, " masks"));
  }
  MaskClassTable mask_class;
  mask_class.fill(ignore_label);
  if (prior != nullptr) {
    // votes[mask][class]
    std::vector<std::array<int, 256>> votes(256);
    for (auto& v : votes) v.fill(0);
    for (size_t i = 0; i < n; ++i) {
      if (prior->labels[i] != ignore_label)
        ++votes[mask_labels.labels[i]][prior->labels[i]];
    }
    for (int m = 1; m < 256; ++m) {
      int best = -1;
      for (int c = 0; c < 256; ++c) {
        if (votes[m][c] > 0 && (best < 0 || votes[m][c] > votes[m][best]))
          best = c;
      }
      if (best >= 0) mask_class[m] = static_cast<uint8_t>(best);
    }
  } else {
    for (int m = 1; m < 256; ++m) mask_class[m] = static_cast<uint8_t>(m);
  }
  mask_class[0] = ignore_label;
  return mask_class;
}

LabelMap ApplyMaskClasses(const LabelMap& mask_labels,
                          const MaskClassTable& table) {
  LabelMap out{mask_labels.width, mask_labels.height,
               std::vector<uint8_t>(mask_labels.labels.size())};
  for (size_t i = 0; i < out.labels.size(); ++i)
    out.labels[i] = table[mask_labels.labels[i]];
  return out;
}

absl::StatusOr<LabelMap> PseudoLabels(const LabelMap& mask_labels,
                                      const LabelMap* prior,
                                      uint8_t ignore_label) {
  ASSIGN_OR_RETURN(const MaskClassTable table,
                   MaskClasses(mask_labels, prior, ignore_label));
  return ApplyMaskClasses(mask_labels, table);
}

}  // namespace primaps
