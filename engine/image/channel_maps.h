// Operations on channel-first maps (channels x height x width floats): the
// bilinear resize, the softmax over channels and the argmax that turn score
// grids into per-pixel labels.
#ifndef PRIMAPS_ENGINE_IMAGE_CHANNEL_MAPS_H_
#define PRIMAPS_ENGINE_IMAGE_CHANNEL_MAPS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "base/stop_check.h"
#include "engine/image/image.h"

namespace primaps {

// Bilinear resize of a channels-first float image with the arithmetic of
// torch.nn.functional.interpolate(mode="bilinear", align_corners=False):
// horizontal blend first, then vertical, scales in float. Returns only the
// output window [top, top+out_rows) x [left, left+out_cols) of the full
// out_h x out_w result, so a center crop never computes discarded pixels.
std::vector<float> ResizeBilinearWindow(const float* src, int channels,
                                        int in_h, int in_w, int out_h,
                                        int out_w, int top, int left,
                                        int out_rows, int out_cols);

// ArgmaxLabels(ResizeBilinearWindow(...)) of the window [0, rows) x [0, cols)
// of `src`'s src_h x src_w planes, resized whole to out_h x out_w: the same
// arithmetic, bit for bit, computed a row at a time, so that only two
// horizontally blended source rows per channel exist at once (the scores of
// a 4000x3000 output with 33 channels would be 1.6 GB). `stop` (may be
// null) is polled every 256 output rows.
absl::StatusOr<LabelMap> ResizeBilinearArgmax(const float* src, int channels,
                                              int src_h, int src_w, int rows,
                                              int cols, int out_h, int out_w,
                                              const StopCheck* stop = nullptr);

// Softmax over the channels of channel-major values (channels x positions),
// per position, in place.
void SoftmaxOverChannels(std::vector<float>* values, int channels);

// Per-pixel argmax of label-major scores (first label on ties).
LabelMap ArgmaxLabels(const std::vector<float>& scores, int num_labels,
                      int width, int height);

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_IMAGE_CHANNEL_MAPS_H_
