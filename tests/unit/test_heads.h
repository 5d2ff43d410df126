// Head checkpoints with random weights for the built-in backbone.
#ifndef PRIMAPS_TESTS_UNIT_TEST_HEADS_H_
#define PRIMAPS_TESTS_UNIT_TEST_HEADS_H_

#include <cstdint>
#include <string>

namespace primaps::testing {

// A safetensors head of `classes` classes for the built-in backbone:
// normal weights from `seed`, every class's norm `gain`.
std::string RandomBuiltinHeadBytes(int classes, float gain, uint32_t seed);

}  // namespace primaps::testing

#endif  // PRIMAPS_TESTS_UNIT_TEST_HEADS_H_
