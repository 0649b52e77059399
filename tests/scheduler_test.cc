// The engine loop in process, on the real TinyStories-656K: fair share between tenants by
// weight, per-tenant limits, preemption when the KV block pool runs dry (with outputs that
// match running alone), adaptive requests submitted concurrently, and the watchdog.
#include "server/scheduler.h"

#include <atomic>
#include <future>
#include <thread>

#include "gtest/gtest.h"
#include "server/watchdog.h"
#include "tests/greedy_decode.h"
#include "tests/shared_data.h"

namespace anyprec::server {
namespace {

using testing::SharedPath;

struct Loaded {
  Model model;
  Tokenizer tokenizer;
  std::unique_ptr<Device> device;
};

const Loaded& TinyStories() {
  static const Loaded* loaded = [] {
    auto model = Model::Load(SharedPath("models/TinyStories-656K"));
    auto tokenizer = Tokenizer::Load(SharedPath("models/TinyStories-656K/tokenizer.json"));
    if (!model.ok() || !tokenizer.ok()) {
      ADD_FAILURE() << "cannot load TinyStories-656K";
      std::abort();
    }
    auto* loaded = new Loaded{*std::move(model), *std::move(tokenizer), nullptr};
    loaded->device = MakeCpuDevice(loaded->model);
    return loaded;
  }();
  return *loaded;
}

// Collects one request's output and tells when it ended.
class Collector final : public GenerationSink {
 public:
  void OnToken(GeneratedToken token) override { ids.push_back(token.id); }
  void OnFinish(const RequestSummary& s) override {
    summary = s;
    done.set_value();
  }
  std::vector<TokenId> ids;
  std::optional<RequestSummary> summary;
  std::promise<void> done;
};

GenerationRequest Request(const std::string& tenant, std::vector<TokenId> prompt, int max_new_tokens, TenantLimits limits = {}) {
  GenerationRequest r;
  r.tenant = tenant;
  r.limits = limits;
  r.prompt = std::move(prompt);
  r.decoding.max_new_tokens = max_new_tokens;
  r.decoding.sampling.temperature = 0;
  r.decoding.ignore_eos = true;
  return r;
}

// `max_running` sequences over a pool of `kv_tokens` positions in blocks of 8.
SchedulerOptions SmallPool(int max_running, long kv_tokens) {
  SchedulerOptions options;
  options.max_running = max_running;
  options.kv_cache_tokens = kv_tokens;
  options.kv_block_tokens = 8;
  return options;
}

std::vector<TokenId> Prompt(int variant) {
  std::vector<TokenId> prompt = {1};
  const std::vector<TokenId> body = TinyStories().tokenizer.Encode(variant % 2 ? "Once upon a time" : "The little dog ran");
  prompt.insert(prompt.end(), body.begin(), body.end());
  prompt.push_back(static_cast<TokenId>(100 + variant));
  return prompt;
}

// With one sequence slot, requests run one at a time in the order the scheduler admits
// them: the weight-3 tenant should get about three requests through for each of the other's.
TEST(Scheduler, AdmitsTheLeastServedTenantByWeight) {
  SchedulerOptions options;
  options.max_running = 1;
  Scheduler scheduler(TinyStories().model, *TinyStories().device, TinyStories().tokenizer, options);
  // Hold the engine with a first request so that all the others queue before admission.
  auto blocker = std::make_shared<Collector>();
  ASSERT_TRUE(scheduler.Submit(Request("warmup", Prompt(0), 64), blocker).ok());
  std::vector<std::pair<std::string, std::shared_ptr<Collector>>> requests;
  for (int i = 0; i < 8; ++i) {
    for (const auto& [tenant, weight] : {std::pair{"light", 1.0}, std::pair{"heavy", 3.0}}) {
      auto sink = std::make_shared<Collector>();
      ASSERT_TRUE(scheduler.Submit(Request(tenant, Prompt(i), 8, {.weight = weight}), sink).ok());
      requests.emplace_back(tenant, sink);
    }
  }
  blocker->done.get_future().wait();
  // One at a time, requests end in the order they were admitted; all were submitted within
  // microseconds, so their total times order them.
  std::vector<std::pair<double, std::string>> by_end;
  for (auto& [tenant, sink] : requests) {
    sink->done.get_future().wait();
    by_end.emplace_back(sink->summary->total_seconds, tenant);
  }
  std::sort(by_end.begin(), by_end.end());
  int heavy_in_first_eight = 0;
  for (int i = 0; i < 8; ++i) heavy_in_first_eight += by_end[i].second == "heavy";
  EXPECT_GE(heavy_in_first_eight, 5) << "the weight-3 tenant should get about 6 of the first 8";
  EXPECT_LE(heavy_in_first_eight, 7);
}

TEST(Scheduler, TenantQueueLimitIsItsOwn) {
  SchedulerOptions options;
  options.max_running = 1;
  Scheduler scheduler(TinyStories().model, *TinyStories().device, TinyStories().tokenizer, options);
  std::vector<std::shared_ptr<Collector>> sinks;
  const TenantLimits limits{.max_running = 1, .max_queued = 2};
  int accepted = 0;
  int exhausted = 0;
  for (int i = 0; i < 6; ++i) {
    auto sink = std::make_shared<Collector>();
    const auto handle = scheduler.Submit(Request("small", Prompt(i), 32, limits), sink);
    if (handle.ok()) {
      ++accepted;
      sinks.push_back(sink);
    } else {
      EXPECT_EQ(handle.status().code(), absl::StatusCode::kResourceExhausted) << handle.status();
      ++exhausted;
    }
  }
  // At most one running and two waiting; the rest refused. Another tenant is not affected.
  EXPECT_LE(accepted, 3);
  EXPECT_GE(exhausted, 3);
  auto other = std::make_shared<Collector>();
  EXPECT_TRUE(scheduler.Submit(Request("other", Prompt(0), 4), other).ok());
  for (auto& sink : sinks) sink->done.get_future().wait();
  other->done.get_future().wait();
  EXPECT_EQ(other->ids.size(), 4u);
}

// A pool of 6 blocks of 8 positions cannot hold three requests of 12 + 30 positions at
// once: some are preempted and recomputed, and every output still equals running alone.
TEST(Scheduler, PreemptsWhenThePoolRunsDryAndRecomputesExactly) {
  const SchedulerOptions options = SmallPool(3, 48);
  Scheduler scheduler(TinyStories().model, *TinyStories().device, TinyStories().tokenizer, options);
  std::vector<std::shared_ptr<Collector>> sinks;
  for (int i = 0; i < 3; ++i) {
    sinks.push_back(std::make_shared<Collector>());
    ASSERT_TRUE(scheduler.Submit(Request("t", Prompt(i), 30), sinks.back()).ok());
  }
  int preemptions = 0;
  for (int i = 0; i < 3; ++i) {
    sinks[i]->done.get_future().wait();
    EXPECT_EQ(sinks[i]->summary->reason, FinishReason::kLength);
    EXPECT_EQ(sinks[i]->ids, testing::GreedyDecode(TinyStories().model, Prompt(i), 30)) << "request " << i;
    preemptions += sinks[i]->summary->preemptions;
  }
  EXPECT_GT(preemptions, 0);
  ASSERT_TRUE(scheduler.WaitIdle(Clock::now() + std::chrono::seconds(5)));
  EXPECT_EQ(scheduler.kv_blocks_used(), 0);

  // A request that could never fit in the pool is refused up front.
  auto too_big = scheduler.Submit(Request("t", Prompt(0), 60), std::make_shared<Collector>());
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInvalidArgument);
}

// Many clients at once, as the gRPC threads are: submitting, cancelling at random moments,
// reading the loop's gauges, then a stop that refuses newcomers. Run under ThreadSanitizer
// by deploy/test.sh.
TEST(Scheduler, ConcurrentClientsSubmitCancelAndStop) {
  const SchedulerOptions options = SmallPool(4, 512);
  Scheduler scheduler(TinyStories().model, *TinyStories().device, TinyStories().tokenizer, options);
  std::atomic<bool> done{false};
  std::thread observer([&] {
    while (!done) {
      EXPECT_LE(scheduler.running(), options.max_running);
      EXPECT_LE(scheduler.kv_blocks_used(), scheduler.kv_blocks());
      scheduler.step_started();
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> clients;
  std::atomic<int> finished{0}, cancelled{0}, refused{0};
  for (int c = 0; c < 6; ++c) {
    clients.emplace_back([&, c] {
      for (int r = 0; r < 8; ++r) {
        auto sink = std::make_shared<Collector>();
        auto future = sink->done.get_future();
        auto handle = scheduler.Submit(Request(c % 2 ? "a" : "b", Prompt(c * 8 + r), 24), sink);
        if (!handle.ok()) {
          ++refused;
          continue;
        }
        if ((c + r) % 3 == 0) {
          std::this_thread::sleep_for(std::chrono::microseconds(200 * r));
          (*handle)->Cancel();
        }
        future.wait();
        ++finished;
        if (sink->summary->reason == FinishReason::kCancelled) ++cancelled;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(finished + refused, 48);
  EXPECT_GT(finished, 0);
  ASSERT_TRUE(scheduler.WaitIdle(Clock::now() + std::chrono::seconds(10)));
  EXPECT_EQ(scheduler.kv_blocks_used(), 0);
  scheduler.StopAccepting();
  EXPECT_EQ(scheduler.Submit(Request("a", Prompt(0), 4), std::make_shared<Collector>()).status().code(), absl::StatusCode::kUnavailable);
  done = true;
  observer.join();
  scheduler.Stop();
}

// Adaptive requests beside fixed ones, submitted from several threads while the loop runs:
// what the width controllers read (arrivals, tenants' policies, the queue) crosses from
// Submit to the engine loop (under ThreadSanitizer in CI). The model is unquantized, so its
// one width is 0; objectives no step can meet make the controller try to drop on every look.
TEST(Scheduler, AdaptiveRequestsFromManyThreadsAllFinishWithTheirWidthsCounted) {
  Scheduler scheduler(TinyStories().model, *TinyStories().device, TinyStories().tokenizer, SmallPool(4, 4096));
  constexpr int kThreads = 4, kEach = 6, kTokens = 5;
  std::vector<std::shared_ptr<Collector>> sinks(kThreads * kEach);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        GenerationRequest request = Request(t % 2 ? "elastic" : "fixed", Prompt(i), kTokens);
        if (t % 2) request.adaptive = AdaptiveWidth{{0, 0}, {0, 0}, Slo{.ttft_seconds = 1e-6, .tpot_seconds = 1e-6}};
        auto sink = std::make_shared<Collector>();
        sinks[t * kEach + i] = sink;
        EXPECT_TRUE(scheduler.Submit(std::move(request), sink).ok());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::shared_ptr<Collector>& sink : sinks) {
    sink->done.get_future().wait();
    EXPECT_EQ(sink->summary->reason, FinishReason::kLength);
    EXPECT_EQ(sink->ids.size(), static_cast<size_t>(kTokens));
    EXPECT_EQ(sink->summary->tokens_by_width, (std::map<int, int>{{0, kTokens}}));
  }
  EXPECT_TRUE(scheduler.WaitIdle(Clock::now() + std::chrono::seconds(10)));
  EXPECT_EQ(scheduler.kv_blocks_used(), 0);
}

TEST(Watchdog, ReportsAStallAndTheRecovery) {
  std::atomic<Clock::rep> started{0};
  std::mutex mutex;
  std::vector<bool> changes;
  std::condition_variable changed;
  Watchdog watchdog(
      [&]() -> std::optional<Clock::time_point> {
        const Clock::rep s = started.load();
        return s == 0 ? std::nullopt : std::optional(Clock::time_point(Clock::duration(s)));
      },
      std::chrono::milliseconds(50), std::chrono::milliseconds(5), [&](bool stalled) {
        std::lock_guard lock(mutex);
        changes.push_back(stalled);
        changed.notify_all();
      });
  const auto wait_for = [&](size_t n) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, std::chrono::seconds(5), [&] { return changes.size() >= n; });
  };
  started = Clock::now().time_since_epoch().count();  // a step that never ends
  ASSERT_TRUE(wait_for(1));
  started = 0;
  ASSERT_TRUE(wait_for(2));
  std::lock_guard lock(mutex);
  EXPECT_EQ(changes, (std::vector<bool>{true, false}));
}

}  // namespace
}  // namespace anyprec::server
