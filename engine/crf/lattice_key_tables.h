// Hash tables from permutohedral lattice keys to vertex indices, and the
// block-wise lookups the lattice's construction makes in them (see
// permutohedral_lattice.cc). Internal to the CRF.
#ifndef PRIMAPS_ENGINE_CRF_LATTICE_KEY_TABLES_H_
#define PRIMAPS_ENGINE_CRF_LATTICE_KEY_TABLES_H_

#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

namespace primaps {
namespace lattice {

// Open-addressing hash table from lattice keys to vertex indices (in
// insertion order). A key is the first `dim` coordinates of a lattice point
// (the last is implied), stored as K shorts padded with zeros, inline in its
// slot so that a probe costs one cache miss. Construction is dominated by
// these misses, so callers look keys up in blocks: Prefetch all, then Find.
template <int K>
class ShortKeyTable {
 public:
  using Key = std::array<int16_t, K>;

  // The key as two words (std::array's == calls memcmp).
  static void Words(const Key& key, uint64_t* low, uint64_t* high) {
    *high = 0;
    std::memcpy(low, key.data(), 8);
    std::memcpy(high, key.data() + 4, sizeof(Key) - 8);
  }

  static bool Same(const Key& a, const Key& b) {
    uint64_t a0, a1, b0, b1;
    Words(a, &a0, &a1);
    Words(b, &b0, &b1);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
  }

  explicit ShortKeyTable(size_t expected) {
    size_t capacity = 1024;
    while (capacity < 2 * expected) capacity <<= 1;
    Resize(capacity);
  }

  int size() const { return static_cast<int>(keys_.size()); }
  const std::vector<Key>& keys() const { return keys_; }
  static uint64_t HashOf(const Key& key) { return Hash(key); }
  const Key& key(int index) const { return keys_[index]; }

  // Lookups take the key's Hash, computed once for Prefetch and Find.
  void Prefetch(uint64_t hash) const {
    __builtin_prefetch(&slots_[hash >> shift_]);
  }

  // The index of `key`, or -1 when absent.
  int Find(const Key& key, uint64_t hash) const {
    for (size_t h = hash >> shift_;; h = (h + 1) & mask_) {
      const Slot& slot = slots_[h];
      if (slot.index < 0 || Same(slot.key, key)) return slot.index;
    }
  }

  // The index of `key`, inserted when absent.
  int FindOrInsert(const Key& key, uint64_t hash) {
    if (2 * keys_.size() >= slots_.size()) Resize(2 * slots_.size());
    for (size_t h = hash >> shift_;; h = (h + 1) & mask_) {
      Slot& slot = slots_[h];
      if (slot.index < 0) {
        slot.key = key;
        slot.index = size();
        keys_.push_back(key);
        return slot.index;
      }
      if (Same(slot.key, key)) return slot.index;
    }
  }

 private:
  struct Slot {
    Key key;
    int32_t index = -1;  // -1: empty
  };

  // Fibonacci hashing: mix the key's words; slots take the top bits.
  static uint64_t Hash(const Key& key) {
    uint64_t low, high;
    Words(key, &low, &high);
    uint64_t h = low * 0x9E3779B97F4A7C15ull;
    h = (h ^ high) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 31;
    return h * 0xC2B2AE3D27D4EB4Full;
  }

  void Resize(size_t capacity) {
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    shift_ = 64;
    for (size_t c = capacity; c > 1; c >>= 1) --shift_;
    for (int index = 0; index < size(); ++index) {
      size_t h = Hash(keys_[index]) >> shift_;
      while (slots_[h].index >= 0) h = (h + 1) & mask_;
      slots_[h].key = keys_[index];
      slots_[h].index = index;
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  int shift_ = 64;
  std::vector<Key> keys_;  // by index, for walking the vertices
};

// Open-addressing hash table from packed lattice keys (non-zero, below
// 2^(64 - index_bits)) to vertex indices (in insertion order), the key and
// the index together in one 8-byte slot (0: empty), so that twice as many
// slots share the caches as in ShortKeyTable.
class PackedKeyTable {
 public:
  PackedKeyTable(size_t expected, int index_bits)
      : index_bits_(index_bits), index_mask_((uint64_t{1} << index_bits) - 1) {
    size_t capacity = 1024;
    while (capacity < 2 * expected) capacity <<= 1;
    Resize(capacity);
  }

  int size() const { return static_cast<int>(keys_.size()); }
  const std::vector<uint64_t>& keys() const { return keys_; }
  static uint64_t HashOf(uint64_t key) { return key * 0x9E3779B97F4A7C15ull; }
  void Prefetch(uint64_t hash) const {
    __builtin_prefetch(&slots_[hash >> shift_]);
  }

  // Whether more vertices were inserted than index_bits can number (the
  // table is then unusable).
  bool overflowed() const { return keys_.size() > index_mask_; }

  // The index of `key`, inserted when absent.
  int FindOrInsert(uint64_t key, uint64_t hash) {
    if (2 * keys_.size() >= slots_.size()) Resize(2 * slots_.size());
    for (size_t h = hash >> shift_;; h = (h + 1) & mask_) {
      const uint64_t slot = slots_[h];
      if (slot == 0) {
        slots_[h] = key << index_bits_ | (keys_.size() & index_mask_);
        keys_.push_back(key);
        return size() - 1;
      }
      if ((slot >> index_bits_) == key)
        return static_cast<int>(slot & index_mask_);
    }
  }

 private:
  void Resize(size_t capacity) {
    slots_.assign(capacity, 0);
    mask_ = capacity - 1;
    shift_ = 64;
    for (size_t c = capacity; c > 1; c >>= 1) --shift_;
    for (size_t index = 0; index < keys_.size(); ++index) {
      size_t h = HashOf(keys_[index]) >> shift_;
      while (slots_[h] != 0) h = (h + 1) & mask_;
      slots_[h] = keys_[index] << index_bits_ | (index & index_mask_);
    }
  }

  const int index_bits_;
  const uint64_t index_mask_;
  std::vector<uint64_t> slots_;
  size_t mask_ = 0;
  int shift_ = 64;
  std::vector<uint64_t> keys_;  // by index
};

// Lattice keys are looked up this many at a time, prefetched together.
constexpr int kLookupBlock = 32;

// Simplex vertex keys waiting for their vertex index, looked up a block at
// a time: all prefetched, then found or inserted (construction is
// dominated by the table's cache misses). Branch-free, since whether a key
// is new is a coin flip for the predictor: every key is written to the
// next slot, and the slot is kept only when the key is new.
template <typename Table, typename Key>
class PendingLookups {
 public:
  // The slot for the next key; Commit says where its index goes.
  Key& Next() { return keys_[count_]; }
  void Commit(size_t at, bool keep) {
    at_[count_] = at;
    count_ += keep;
  }
  // Whether fewer than `room` slots are left.
  bool Full(int room) const { return count_ > kLookupBlock - room; }

  // offsets[at] = 1 + the key's index, for every kept key.
  void Flush(Table* table, std::vector<int32_t>* offsets) {
    for (int i = 0; i < count_; ++i) {
      hash_[i] = Table::HashOf(keys_[i]);
      table->Prefetch(hash_[i]);
    }
    for (int i = 0; i < count_; ++i)
      (*offsets)[at_[i]] = table->FindOrInsert(keys_[i], hash_[i]) + 1;
    count_ = 0;
  }

 private:
  Key keys_[kLookupBlock] = {};
  size_t at_[kLookupBlock];
  uint64_t hash_[kLookupBlock];
  int count_ = 0;
};
}  // namespace lattice
}  // namespace primaps

#endif  // PRIMAPS_ENGINE_CRF_LATTICE_KEY_TABLES_H_
