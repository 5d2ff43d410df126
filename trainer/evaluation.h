// Unsupervised segmentation metrics (DESIGN.md section 2, Evaluation):
// a confusion matrix of predicted clusters against ground-truth classes,
// Hungarian matching of clusters to classes (maximizing matched pixels),
// then mIoU and pixel accuracy in percent.
#ifndef PRIMAPS_TRAINER_EVALUATION_H_
#define PRIMAPS_TRAINER_EVALUATION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "engine/image/image.h"

namespace primaps {

// counts[cluster * classes + gt_class].
class ConfusionMatrix {
 public:
  ConfusionMatrix(int clusters, int classes);

  // Adds every pixel whose ground truth is a class (< classes; 255 and
  // other values are ignored). Predictions >= clusters are refused.
  absl::Status Add(const LabelMap& prediction, const LabelMap& ground_truth);
  void Add(int cluster, int gt_class, int64_t count = 1);

  int clusters() const { return clusters_; }
  int classes() const { return classes_; }
  int64_t at(int cluster, int gt_class) const {
    return counts_[cluster * classes_ + gt_class];
  }
  int64_t total() const;

 private:
  int clusters_, classes_;
  std::vector<int64_t> counts_;
};

// assignment[row] = column maximizing the sum of weight[row][col] over a
// one-to-one assignment (rows <= columns is not required: unmatched rows
// get -1). O(n^3) Hungarian algorithm on the square padding.
std::vector<int> MaxWeightAssignment(
    const std::vector<std::vector<double>>& weight);

struct SegmentationScores {
  double miou = 0;      // percent, mean over classes with a defined IoU
  double accuracy = 0;  // percent of valid pixels
  std::vector<double> class_iou;      // percent per class; NaN when undefined
  std::vector<int> cluster_to_class;  // the matching; -1 = unmatched
};

// Scores of a confusion matrix: clusters Hungarian-matched to classes
// (the unsupervised heads), or cluster i taken as class i (`matched` false:
// the supervised linear probe).
SegmentationScores Score(const ConfusionMatrix& confusion, bool matched = true);

// The matched confusion matrix: classes x classes pixel counts, rows =
// predicted class after matching, columns = ground truth.
std::vector<std::vector<int64_t>> MatchedConfusion(
    const ConfusionMatrix& confusion, const std::vector<int>& cluster_to_class);

// The matched confusion matrix (classes x classes, rows = predicted class
// after matching) as an RGB heat map, `cell` pixels per entry, rows
// normalized.
RgbImage ConfusionImage(const ConfusionMatrix& confusion,
                        const std::vector<int>& cluster_to_class,
                        int cell = 16);
RgbImage ConfusionHeatMap(const std::vector<std::vector<int64_t>>& matched,
                          int cell = 16);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_EVALUATION_H_
