#include "trainer/evaluation.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace primaps {

ConfusionMatrix::ConfusionMatrix(int clusters, int classes)
    : clusters_(clusters),
      classes_(classes),
      counts_(static_cast<size_t>(clusters) * classes, 0) {}

absl::Status ConfusionMatrix::Add(const LabelMap& prediction,
                                  const LabelMap& ground_truth) {
  if (prediction.width != ground_truth.width ||
      prediction.height != ground_truth.height ||
      prediction.labels.size() != ground_truth.labels.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("prediction ", prediction.width, "x", prediction.height,
                     " and ground truth ", ground_truth.width, "x",
                     ground_truth.height, " differ in size"));
  }
  for (size_t i = 0; i < prediction.labels.size(); ++i) {
    const int gt = ground_truth.labels[i];
    if (gt >= classes_) continue;  // ignore
    const int p = prediction.labels[i];
    if (p >= clusters_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prediction ", p, " is not below ", clusters_, " clusters"));
    }
    ++counts_[p * classes_ + gt];
  }
  return absl::OkStatus();
}

void ConfusionMatrix::Add(int cluster, int gt_class, int64_t count) {
  counts_[cluster * classes_ + gt_class] += count;
}

int64_t ConfusionMatrix::total() const {
  int64_t t = 0;
  for (int64_t c : counts_) t += c;
  return t;
}

std::vector<int> MaxWeightAssignment(
    const std::vector<std::vector<double>>& weight) {
  const int rows = static_cast<int>(weight.size());
  const int cols = rows ? static_cast<int>(weight[0].size()) : 0;
  const int n = std::max(rows, cols);
  // Minimize cost = max - weight on the square padding (padding costs max).
  double max_weight = 0;
  for (const auto& row : weight) {
    for (double w : row) max_weight = std::max(max_weight, w);
  }
  auto cost = [&](int i, int j) {
    return (i < rows && j < cols) ? max_weight - weight[i][j] : max_weight;
  };
  // Potentials u (rows), v (cols) and the matching p[col] = row, 1-based
  // with column 0 as the virtual start (the classic e-maxx formulation).
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> u(n + 1, 0), v(n + 1, 0);
  std::vector<int> p(n + 1, 0), way(n + 1, 0);
  for (int i = 1; i <= n; ++i) {
    p[0] = i;
    int j0 = 0;
    std::vector<double> minv(n + 1, inf);
    std::vector<bool> used(n + 1, false);
    do {
      used[j0] = true;
      const int i0 = p[j0];
      double delta = inf;
      int j1 = 0;
      for (int j = 1; j <= n; ++j) {
        if (used[j]) continue;
        const double cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      for (int j = 0; j <= n; ++j) {
        if (used[j]) {
          u[p[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (p[j0] != 0);
    do {
      const int j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int> assignment(rows, -1);
  for (int j = 1; j <= n; ++j) {
    if (p[j] - 1 < rows && j - 1 < cols) assignment[p[j] - 1] = j - 1;
  }
  return assignment;
}

SegmentationScores Score(const ConfusionMatrix& confusion, bool matched_in) {
  const int k = confusion.clusters(), c = confusion.classes();
  std::vector<std::vector<double>> weight(k, std::vector<double>(c));
  for (int i = 0; i < k; ++i) {
    for (int j = 0; j < c; ++j)
      weight[i][j] = static_cast<double>(confusion.at(i, j));
  }
  SegmentationScores scores;
  if (matched_in) {
    scores.cluster_to_class = MaxWeightAssignment(weight);
  } else {
    for (int i = 0; i < k; ++i)
      scores.cluster_to_class.push_back(i < c ? i : -1);
  }
  // Matched matrix: rows = predicted class.
  std::vector<std::vector<double>> matched(c, std::vector<double>(c, 0));
  for (int i = 0; i < k; ++i) {
    const int predicted = scores.cluster_to_class[i];
    if (predicted < 0) continue;
    for (int j = 0; j < c; ++j) matched[predicted][j] += weight[i][j];
  }
  const double total = static_cast<double>(confusion.total());
  double correct = 0, iou_sum = 0;
  int defined = 0;
  for (int j = 0; j < c; ++j) {
    double predicted = 0, actual = 0;
    for (int i = 0; i < c; ++i) {
      predicted += matched[j][i];
      actual += matched[i][j];
    }
    // Pixels of unmatched clusters count as wrong predictions of nothing.
    const double tp = matched[j][j];
    correct += tp;
    const double union_ = predicted + actual - tp;
    if (union_ > 0) {
      scores.class_iou.push_back(100.0 * tp / union_);
      iou_sum += scores.class_iou.back();
      ++defined;
    } else {
      scores.class_iou.push_back(std::nan(""));
    }
  }
  scores.miou = defined ? iou_sum / defined : 0;
  scores.accuracy = total > 0 ? 100.0 * correct / total : 0;
  return scores;
}

std::vector<std::vector<int64_t>> MatchedConfusion(
    const ConfusionMatrix& confusion,
    const std::vector<int>& cluster_to_class) {
  const int c = confusion.classes();
  std::vector<std::vector<int64_t>> matched(c, std::vector<int64_t>(c, 0));
  for (int i = 0; i < confusion.clusters(); ++i) {
    if (cluster_to_class[i] < 0) continue;
    for (int j = 0; j < c; ++j)
      matched[cluster_to_class[i]][j] += confusion.at(i, j);
  }
  return matched;
}

RgbImage ConfusionImage(const ConfusionMatrix& confusion,
                        const std::vector<int>& cluster_to_class, int cell) {
  return ConfusionHeatMap(MatchedConfusion(confusion, cluster_to_class), cell);
}

RgbImage ConfusionHeatMap(const std::vector<std::vector<int64_t>>& matched,
                          int cell) {
  const int c = static_cast<int>(matched.size());
  RgbImage image{
      c * cell, c * cell,
      std::vector<uint8_t>(static_cast<size_t>(c * cell) * c * cell * 3)};
  for (int r = 0; r < c; ++r) {
    double row_total = 0;
    for (int j = 0; j < c; ++j) row_total += matched[r][j];
    for (int j = 0; j < c; ++j) {
      const double f = row_total > 0 ? matched[r][j] / row_total : 0;
      // White (0) to dark blue (1).
      const uint8_t rgb[3] = {static_cast<uint8_t>(255 * (1 - f)),
                              static_cast<uint8_t>(255 * (1 - 0.8 * f)),
                              static_cast<uint8_t>(255 - 90 * f)};
      for (int y = r * cell; y < (r + 1) * cell; ++y) {
        for (int x = j * cell; x < (j + 1) * cell; ++x) {
          for (int k = 0; k < 3; ++k)
            image.pixels[(static_cast<size_t>(y) * c * cell + x) * 3 + k] =
                rgb[k];
        }
      }
    }
  }
  return image;
}

}  // namespace primaps
