// The paged KV pool's reference counts and prefix cache, and a sequence's KvCache on it: which
// blocks are shared, by which contents, and which go when the pool runs dry.
#include "engine/device/kv_block_pool.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "engine/device/kv_cache.h"

namespace anyprec {
namespace {

constexpr int kBlockTokens = 4;

ModelConfig TinyConfig() {
  ModelConfig config;
  config.num_layers = 1;
  config.num_kv_heads = 1;
  config.head_dim = 2;
  return config;
}

std::vector<TokenId> Tokens(int n, TokenId first = 0) {
  std::vector<TokenId> tokens(n);
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

// A sequence that computed `tokens` at `bits` and registered its full blocks.
void Compute(KvCache& cache, int bits, const std::vector<TokenId>& tokens) {
  const int shared = cache.SharePrefix(bits, tokens, static_cast<int>(tokens.size()));
  ASSERT_TRUE(cache.Reserve(static_cast<int>(tokens.size())));
  cache.Advance(static_cast<int>(tokens.size()) - shared);
  cache.RegisterPrefix(bits, tokens, cache.length());
}

TEST(KvBlockPool, CountsReferencesAndFreesAnUnregisteredBlockAtTheLast) {
  KvBlockPool pool(TinyConfig(), kBlockTokens, 3);
  const int block = pool.Allocate();
  EXPECT_EQ(pool.used_blocks(), 1);
  EXPECT_EQ(pool.free_blocks(), 2);
  pool.Release(block);
  EXPECT_EQ(pool.used_blocks(), 0);
  EXPECT_EQ(pool.cached_blocks(), 0);
  EXPECT_EQ(pool.Allocate(), block) << "a freed block goes out first (it is cache-warm)";
}

TEST(KvBlockPool, ASequenceSharesTheLongestCachedPrefixAtItsWidth) {
  KvBlockPool pool(TinyConfig(), kBlockTokens, 16);
  const std::vector<TokenId> prompt = Tokens(10);  // two full blocks and two positions
  {
    KvCache first(pool);
    Compute(first, 4, prompt);
    EXPECT_EQ(first.shared_blocks(), 2) << "its two full blocks are registered, not the partial third";
    EXPECT_EQ(pool.cached_blocks(), 2);

    // While the first holds them: the same blocks, one more reference each.
    KvCache second(pool);
    EXPECT_EQ(second.SharePrefix(4, prompt, 10), 8);
    EXPECT_EQ(second.length(), 8);
    EXPECT_EQ(std::vector<int>(second.blocks().begin(), second.blocks().end()),
              std::vector<int>(first.blocks().begin(), first.blocks().begin() + 2));
    EXPECT_EQ(pool.used_blocks(), 3);
  }
  EXPECT_EQ(pool.used_blocks(), 0);
  EXPECT_EQ(pool.cached_blocks(), 2) << "unheld, the registered blocks stay cached";
  EXPECT_EQ(pool.free_blocks(), 16) << "cached blocks no one holds can be had";

  KvCache later(pool);
  EXPECT_EQ(later.SharePrefix(4, prompt, 8), 8) << "within max_positions";
  later.Clear();
  EXPECT_EQ(later.SharePrefix(4, prompt, 7), 4) << "whole blocks only";
  later.Clear();
  std::vector<TokenId> diverging = prompt;
  diverging[5] = 99;
  EXPECT_EQ(later.SharePrefix(4, diverging, 10), 4) << "up to the first block that differs";
}

// A request admitted beside another with the same new prefix takes the blocks the other
// registers before its own prompt begins, in place of those it reserved.
TEST(KvBlockPool, ACacheHoldingOnlyItsSharedPrefixExtendsItLater) {
  KvBlockPool pool(TinyConfig(), kBlockTokens, 16);
  const std::vector<TokenId> prompt = Tokens(13);
  KvCache first(pool), second(pool);
  ASSERT_TRUE(first.Reserve(13));
  ASSERT_TRUE(second.Reserve(13));
  EXPECT_EQ(second.SharePrefix(4, prompt, 12), 0);
  first.Advance(8);
  first.RegisterPrefix(4, prompt, 8);
  EXPECT_EQ(pool.used_blocks(), 8);
  EXPECT_EQ(second.SharePrefix(4, prompt, 12), 8);
  EXPECT_EQ(second.blocks()[0], first.blocks()[0]);
  EXPECT_EQ(second.blocks()[1], first.blocks()[1]);
  EXPECT_EQ(second.blocks_held(), 4) << "its reserve stands: two shared blocks for two of its own";
  EXPECT_EQ(pool.used_blocks(), 6);
  // Once it has computed past its shared prefix, it takes no more.
  second.Advance(2);
  first.Advance(4);
  first.RegisterPrefix(4, prompt, 12);
  EXPECT_EQ(second.SharePrefix(4, prompt, 12), 10);
  EXPECT_EQ(second.shared_blocks(), 2);
}

TEST(KvBlockPool, BlocksAreNeverSharedAcrossWidths) {
  KvBlockPool pool(TinyConfig(), kBlockTokens, 16);
  const std::vector<TokenId> prompt = Tokens(12);
  KvCache at8(pool);
  Compute(at8, 8, prompt);
  ASSERT_EQ(pool.cached_blocks(), 3);
  KvCache at3(pool);
  EXPECT_EQ(at3.SharePrefix(3, prompt, 12), 0);
  Compute(at3, 3, prompt);
  EXPECT_EQ(pool.cached_blocks(), 6) << "each width registers its own";
  for (int i = 0; i < 3; ++i) EXPECT_NE(at3.blocks()[i], at8.blocks()[i]);
}

TEST(KvBlockPool, AMatchNeedsTheWholePrefixNotJustTheBlock) {
  KvBlockPool pool(TinyConfig(), kBlockTokens, 16);
  std::vector<TokenId> a = Tokens(8);
  KvCache first(pool);
  Compute(first, 4, a);
  // The same second block after a different first one is another prefix.
  std::vector<TokenId> b = a;
  b[0] = 42;
  KvCache second(pool);
  EXPECT_EQ(second.SharePrefix(4, b, 8), 0);
  Compute(second, 4, b);
  EXPECT_EQ(pool.cached_blocks(), 4);
}

TEST(KvBlockPool, ContentsRegisteredTwiceKeepOneBlockAndTheChainGoesOn) {
  KvBlockPool pool(TinyConfig(), kBlockTokens, 16);
  const std::vector<TokenId> prompt = Tokens(8);
  // Two sequences compute the same first block side by side; the second registers after.
  KvCache first(pool), second(pool);
  ASSERT_TRUE(first.Reserve(4));
  ASSERT_TRUE(second.Reserve(8));
  first.Advance(4);
  second.Advance(8);
  first.RegisterPrefix(4, prompt, 4);
  second.RegisterPrefix(4, prompt, 8);
  EXPECT_EQ(pool.cached_blocks(), 2) << "the first block once (the first sequence's) and the second's second block";
  KvCache third(pool);
  EXPECT_EQ(third.SharePrefix(4, prompt, 8), 8) << "the second block chains onto the first sequence's first";
  EXPECT_EQ(third.blocks()[0], first.blocks()[0]);
  EXPECT_EQ(third.blocks()[1], second.blocks()[1]);
}

TEST(KvBlockPool, EvictsUnheldCachedBlocksLeastRecentlyReleasedAndTailsFirst) {
  KvBlockPool pool(TinyConfig(), kBlockTokens, 4);
  const std::vector<TokenId> a = Tokens(8), b = Tokens(8, 100);
  {
    KvCache first(pool);
    Compute(first, 4, a);
  }
  {
    KvCache second(pool);
    Compute(second, 4, b);
  }
  ASSERT_EQ(pool.cached_blocks(), 4);
  ASSERT_EQ(pool.free_blocks(), 4);
  // Taking one block evicts a's tail (released first, a's last block before its first).
  KvCache taker(pool);
  ASSERT_TRUE(taker.Reserve(kBlockTokens));
  EXPECT_EQ(pool.cached_blocks(), 3);
  KvCache probe(pool);
  EXPECT_EQ(probe.SharePrefix(4, a, 8), 4) << "a's first block is still cached";
  probe.Clear();
  EXPECT_EQ(probe.SharePrefix(4, b, 8), 8) << "b, released later, is whole";
  probe.Clear();
  // A held block is never evicted: with every block held, the pool is dry.
  KvCache holder(pool);
  EXPECT_EQ(holder.SharePrefix(4, b, 8), 8);
  ASSERT_TRUE(taker.Reserve(2 * kBlockTokens));  // evicts a's first block
  EXPECT_FALSE(taker.Reserve(3 * kBlockTokens));
  EXPECT_EQ(pool.used_blocks(), 4);
}

// A request the pool cannot take now must not empty the prefix cache trying.
TEST(KvBlockPool, AReserveThatCannotBeMetTakesAndEvictsNothing) {
  KvBlockPool pool(TinyConfig(), kBlockTokens, 4);
  {
    KvCache first(pool);
    Compute(first, 4, Tokens(8));
  }
  ASSERT_EQ(pool.cached_blocks(), 2);
  KvCache big(pool);
  EXPECT_FALSE(big.Reserve(5 * kBlockTokens));
  EXPECT_EQ(big.blocks_held(), 0);
  EXPECT_EQ(pool.cached_blocks(), 2);
  EXPECT_TRUE(big.Reserve(4 * kBlockTokens)) << "what the pool can give, evicting the cached blocks";
  EXPECT_EQ(pool.cached_blocks(), 0);
}

TEST(KvBlockPool, TruncatingGivesUpTheSharedBlocksItNoLongerNeeds) {
  KvBlockPool pool(TinyConfig(), kBlockTokens, 8);
  const std::vector<TokenId> prompt = Tokens(12);
  KvCache cache(pool);
  Compute(cache, 4, prompt);
  ASSERT_EQ(cache.shared_blocks(), 3);
  cache.Truncate(8);
  EXPECT_EQ(cache.shared_blocks(), 2);
  EXPECT_EQ(pool.used_blocks(), 2);
  EXPECT_EQ(pool.cached_blocks(), 3) << "the third stays cached for others";
}

}  // namespace
}  // namespace anyprec
