// LibTorch's CPU tensors from a cache of large blocks.
//
// A forward pass allocates the same large activations (tens of MB each)
// block after block and batch after batch. From the system, every such
// allocation is fresh memory whose first touch faults page by page; on
// virtual machines that costs more than the arithmetic (measured in
// docs/benchmarks.md: 64 MB of fresh pages in 180 ms, of reused ones in
// 4 ms). The cache keeps freed blocks of 1 MB or more for the next
// allocation of the same size, asks for transparent huge pages, and holds
// at most `max_cached_bytes` of free blocks.
#ifndef PRIMAPS_ENGINE_VIT_TENSOR_CACHE_H_
#define PRIMAPS_ENGINE_VIT_TENSOR_CACHE_H_

#include <cstddef>

namespace primaps {

// Makes the cache LibTorch's CPU allocator, once per process (later calls
// change nothing). Tensors allocated before keep their own deleters.
void UseCachingCpuAllocator(size_t max_cached_bytes = size_t{1} << 30);

// Free blocks the cache holds, in bytes.
size_t CachedCpuBytes();

// Gives every free block back to the system.
void ReleaseCachedCpuBlocks();

}  // namespace primaps

#endif  // PRIMAPS_ENGINE_VIT_TENSOR_CACHE_H_
