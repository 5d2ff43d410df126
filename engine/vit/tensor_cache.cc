#include "engine/vit/tensor_cache.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <sys/mman.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace primaps {
namespace {

// Smaller allocations go to LibTorch's own allocator: they are many, and
// the allocator's heap reuses them already.
constexpr size_t kMinCached = size_t{1} << 20;
// Large blocks are multiples of a huge page, aligned to one.
constexpr size_t kHugePage = size_t{2} << 20;

class CachingCpuAllocator final : public c10::Allocator {
 public:
  explicit CachingCpuAllocator(size_t max_cached_bytes)
      : max_cached_bytes_(max_cached_bytes) {}

  c10::DataPtr allocate(size_t n) const override {
    const c10::Device cpu(c10::DeviceType::CPU);
    // Small tensors go back to LibTorch's allocator directly: their frees
    // (thousands per forward) take no lock and no lookup here.
    if (n < kMinCached) {
      void* data = c10::alloc_cpu(n);
      return {data, data, &c10::free_cpu, cpu};
    }
    void* data = AllocateLarge(n);
    return {data, data, &Delete, cpu};
  }
  // Raw allocations of either size share one deleter, which tells them
  // apart by the cache's table of large blocks.
  c10::DeleterFnPtr raw_deleter() const override { return &Delete; }

  size_t cached_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_bytes_;
  }

  void Release() const {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [size, blocks] : free_) {
      for (void* block : blocks) std::free(block);
    }
    free_.clear();
    cached_bytes_ = 0;
  }

 private:
  static void Delete(void* data);

  void* AllocateLarge(size_t n) const {
    const size_t size = (n + kHugePage - 1) / kHugePage * kHugePage;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* block = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= size;
        live_[block] = size;
        return block;
      }
    }
    void* block = std::aligned_alloc(kHugePage, size);
    if (block == nullptr) return c10::alloc_cpu(n);  // LibTorch reports OOM
    ::madvise(block, size, MADV_HUGEPAGE);           // a hint; refused is fine
    std::lock_guard<std::mutex> lock(mu_);
    live_[block] = size;
    return block;
  }

  // False when `data` is not a large block of this cache.
  bool Recycle(void* data) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(data);
    if (it == live_.end()) return false;
    const size_t size = it->second;
    live_.erase(it);
    if (cached_bytes_ + size <= max_cached_bytes_) {
      free_[size].push_back(data);
      cached_bytes_ += size;
    } else {
      std::free(data);
    }
    return true;
  }

  const size_t max_cached_bytes_;
  mutable std::mutex mu_;
  mutable std::unordered_map<void*, size_t> live_;     // large blocks in use
  mutable std::map<size_t, std::vector<void*>> free_;  // by size
  mutable size_t cached_bytes_ = 0;
};

CachingCpuAllocator* instance = nullptr;
std::once_flag installed;

void CachingCpuAllocator::Delete(void* data) {
  if (data == nullptr) return;
  if (!instance->Recycle(data)) c10::free_cpu(data);
}

}  // namespace

void UseCachingCpuAllocator(size_t max_cached_bytes) {
  std::call_once(installed, [max_cached_bytes] {
    // Never destroyed: tensors may outlive static destruction.
    instance = new CachingCpuAllocator(max_cached_bytes);
    c10::SetCPUAllocator(instance, /*priority=*/1);
  });
}

size_t CachedCpuBytes() {
  return instance != nullptr ? instance->cached_bytes() : 0;
}

void ReleaseCachedCpuBlocks() {
  if (instance != nullptr) instance->Release();
}

}  // namespace primaps
