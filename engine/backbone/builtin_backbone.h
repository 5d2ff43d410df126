// A backbone that needs no weights: hand-made colour and texture features on
// the 8x8 patch grid, so that PriMaPs gives sensible masks on real photos
// with nothing downloaded. Real quality needs DINO weights.
#ifndef PRIMAPS_ENGINE_BACKBONE_BUILTIN_BACKBONE_H_
#define PRIMAPS_ENGINE_BACKBONE_BUILTIN_BACKBONE_H_

#include <memory>

#include "engine/backbone/backbone.h"

namespace primaps {

// Features per patch (kBuiltinFeatureDim = 34 channels): Lab mean and
// standard deviation (6), an 8-bin magnitude-weighted histogram of gradient
// orientation (8), texture energies |Laplacian|, |d/dx|, |d/dy| (3), and the
// same 17 averaged over the 3x3 patch neighbourhood (context). Each channel
// is standardized over the image, then weighted (colour counts most).
inline constexpr int kBuiltinFeatureDim = 34;
inline constexpr int kBuiltinPatchSize = 8;

std::unique_ptr<Backbone> CreateBuiltinBackbone();

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_BACKBONE_BUILTIN_BACKBONE_H_
