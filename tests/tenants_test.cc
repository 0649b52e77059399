// The tenants file: parsing and its errors, hashed keys, authentication, write-through
// updates and reloads that keep the old policy on error.
#include "server/tenants.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"

namespace anyprec::server {
namespace {

namespace fs = std::filesystem;

constexpr WidthRange kWidths{3, 8};

const std::string kGoodFile = R"(
anonymous_tenant = "free"

[admin]
api_key_sha256 = [")" + HashApiKey("admin-secret") + R"("]

[tenants.free]
default_bits = 3
min_bits = 3
max_bits = 4
max_running = 2
max_queued = 4
weight = 0.5

[tenants.gold]
api_key_sha256 = [")" + HashApiKey("gold-secret") + R"(", ")" + HashApiKey("gold-second") + R"("]
default_bits = 8
weight = 3
speculative = { draft_bits = 3, lookahead = 6 }
adaptive = { min_bits = 4 }
slo = { ttft_ms = 1500, tpot_ms = 120.5 }
)";

TEST(Tenants, HashIsSha256Hex) {
  EXPECT_EQ(HashApiKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Tenants, ParsesDefaultsAndRoundTrips) {
  const absl::StatusOr<TenantPolicy> policy = ParseTenants(kGoodFile, "tenants.toml", kWidths);
  ASSERT_TRUE(policy.ok()) << policy.status();
  ASSERT_EQ(policy->tenants.size(), 2u);
  EXPECT_EQ(policy->anonymous_tenant, "free");
  const Tenant& gold = policy->tenants.at("gold");
  EXPECT_EQ(gold.default_bits, 8);
  EXPECT_EQ(gold.min_bits, 3);  // the image's widths when not given
  EXPECT_EQ(gold.max_bits, 8);
  EXPECT_EQ(gold.key_hashes.size(), 2u);
  EXPECT_DOUBLE_EQ(gold.limits.weight, 3);
  ASSERT_TRUE(gold.speculative.has_value());
  EXPECT_EQ(gold.speculative->draft_bits, 3);
  EXPECT_EQ(gold.speculative->lookahead, 6);
  ASSERT_TRUE(gold.adaptive.has_value());
  EXPECT_EQ(gold.adaptive->ToString(), "4..8");  // to the allowed widths' top when not given
  ASSERT_TRUE(gold.slo.has_value());
  EXPECT_DOUBLE_EQ(gold.slo->ttft_seconds, 1.5);
  EXPECT_DOUBLE_EQ(gold.slo->tpot_seconds, 0.1205);
  const Tenant& free = policy->tenants.at("free");
  EXPECT_FALSE(free.speculative.has_value());
  EXPECT_FALSE(free.adaptive.has_value());
  EXPECT_FALSE(free.slo.has_value());
  EXPECT_EQ(free.limits.max_running, 2);
  EXPECT_EQ(free.limits.max_queued, 4);

  const absl::StatusOr<TenantPolicy> again = ParseTenants(SerializeTenants(*policy), "rewritten", kWidths);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(SerializeTenants(*again), SerializeTenants(*policy));
  EXPECT_EQ(again->admin_key_hashes, policy->admin_key_hashes);
  EXPECT_EQ(again->tenants.at("gold").key_hashes, gold.key_hashes);
  EXPECT_EQ(again->tenants.at("gold").speculative->lookahead, 6);
  EXPECT_EQ(again->tenants.at("gold").adaptive->ToString(), "4..8");
  EXPECT_DOUBLE_EQ(again->tenants.at("gold").slo->tpot_seconds, 0.1205);
}

TEST(Tenants, EveryMistakeIsNamedWithItsPlace) {
  const std::string hash = HashApiKey("k");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[tenants.a]\ndefault_bits = 9\n", "default_bits must be an integer in 3..8"},
      {"[tenants.a]\nmin_bits = 2\n", "min_bits must be an integer in 3..8"},
      {"[tenants.a]\nmin_bits = 6\nmax_bits = 4\n", "min_bits 6 exceeds max_bits 4"},
      {"[tenants.a]\nmin_bits = 3\nmax_bits = 4\ndefault_bits = 8\n", "default_bits must be an integer in 3..4"},
      {"[tenants.a]\nweight = 0\n", "weight must be a number"},
      {"[tenants.a]\nmax_running = 0\n", "max_running must be an integer"},
      {"[tenants.a]\ndefault_bits = \"8\"\n", "default_bits must be an integer"},
      {"[tenants.a]\napi_key_sha256 = [\"secret\"]\n", "64 hex digits"},
      {"[tenants.a]\napi_key_sha256 = \"" + hash + "\"\n", "must be an array"},
      {"[tenants.a]\ndefault_bit = 4\n", "unknown key 'default_bit'"},
      {"[tenant.a]\n", "unknown key 'tenant'"},
      {"anonymous_tenant = \"b\"\n[tenants.a]\n", "anonymous_tenant must name a tenant"},
      {"[tenants.\"a b\"]\n", "may only use letters"},
      {"[tenants.\".a\"]\n", "may not start with ."},
      {"[tenants.admin]\n", "'admin' is reserved"},
      {"[tenants.a]\napi_key_sha256 = [\"" + hash + "\"]\n[tenants.b]\napi_key_sha256 = [\"" + hash + "\"]\n", "also listed elsewhere"},
      {"[admin]\napi_key_sha256 = [\"" + hash + "\"]\n[tenants.a]\napi_key_sha256 = [\"" + hash + "\"]\n", "also listed elsewhere"},
      {"", "no [tenants.<name>] table"},
      {"[tenants.a]\ndefault_bits = = 3\n", "t.toml:2:"},
      {"[tenants.a]\n[tenants.a]\n", "t.toml:2:"},
      {"[tenants.a]\nspeculative = 3\n", "speculative must be a table"},
      {"[tenants.a]\nspeculative = { lookahead = 4 }\n", "speculative.draft_bits is missing"},
      {"[tenants.a]\nspeculative = { draft_bits = 2 }\n", "draft_bits must be an integer in 3..8"},
      {"[tenants.a]\nspeculative = { draft_bits = 3, lookahead = 40 }\n", "lookahead must be an integer in 1..16"},
      {"[tenants.a]\nspeculative = { draft_bits = 3, draft = 4 }\n", "unknown key 'draft'"},
      {"[tenants.a]\nadaptive = 3\n", "adaptive must be a table { min_bits = ..., max_bits = ... }"},
      {"[tenants.a]\nadaptive = { min_bits = 2 }\n", "adaptive.min_bits must be an integer in 3..8"},
      {"[tenants.a]\nmax_bits = 4\nadaptive = { max_bits = 6 }\n", "adaptive.max_bits must be an integer in 3..4"},
      {"[tenants.a]\nadaptive = { min_bits = 6, max_bits = 4 }\n", "adaptive.min_bits 6 exceeds max_bits 4"},
      {"[tenants.a]\nadaptive = { bits = 4 }\n", "unknown key 'bits'"},
      {"[tenants.a]\nslo = { ttft_ms = 100 }\n", "slo.tpot_ms is missing"},
      {"[tenants.a]\nslo = { ttft_ms = 0, tpot_ms = 5 }\n", "slo.ttft_ms must be a number of milliseconds"},
      {"[tenants.a]\nslo = { ttft_ms = 10, tpot_ms = \"5\" }\n", "slo.tpot_ms must be a number of milliseconds"},
      {"[tenants.a]\nslo = { ttft_ms = 10, tpot_ms = 5, p99 = 1 }\n", "unknown key 'p99'"},
  };
  for (const auto& [text, expected] : cases) {
    const absl::StatusOr<TenantPolicy> policy = ParseTenants(text, "t.toml", kWidths);
    ASSERT_FALSE(policy.ok()) << text;
    EXPECT_NE(std::string(policy.status().message()).find(expected), std::string::npos)
        << text << "\n gave: " << policy.status().message();
    EXPECT_TRUE(std::string(policy.status().message()).starts_with("t.toml")) << policy.status().message();
  }
}

class TenantRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("anyprec-tenants-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    path_ = (dir_ / "tenants.toml").string();
    Write(kGoodFile);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& text) const { std::ofstream(path_) << text; }
  std::string Read() const {
    std::stringstream s;
    s << std::ifstream(path_).rdbuf();
    return s.str();
  }
  std::unique_ptr<TenantRegistry> Load() const {
    auto registry = TenantRegistry::Load(path_, kWidths);
    EXPECT_TRUE(registry.ok()) << registry.status();
    return registry.ok() ? *std::move(registry) : nullptr;
  }
  fs::path dir_;
  std::string path_;
};

TEST_F(TenantRegistryTest, AuthenticatesByBearerKey) {
  const auto registry = Load();
  EXPECT_EQ(registry->Authenticate("Bearer gold-secret")->name, "gold");
  EXPECT_EQ(registry->Authenticate("bearer gold-second")->name, "gold");
  EXPECT_EQ(registry->Authenticate(std::nullopt)->name, "free");  // anonymous_tenant
  EXPECT_EQ(registry->Authenticate("Bearer wrong").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(registry->Authenticate("gold-secret").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(registry->Authenticate("Bearer ").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(registry->AuthenticateAdmin("Bearer admin-secret").ok());
  EXPECT_EQ(registry->AuthenticateAdmin("Bearer gold-secret").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(registry->AuthenticateAdmin("Bearer wrong").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(registry->AuthenticateAdmin(std::nullopt).code(), absl::StatusCode::kUnauthenticated);

  Write("[tenants.only]\napi_key_sha256 = [\"" + HashApiKey("k") + "\"]\n");
  ASSERT_TRUE(registry->Reload().ok());
  EXPECT_EQ(registry->Authenticate(std::nullopt).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(registry->Authenticate("Bearer k")->name, "only");
}

TEST_F(TenantRegistryTest, UpdatesWriteThroughAndSurviveALoad) {
  const auto registry = Load();
  const absl::StatusOr<Tenant> updated = registry->Update("free", 4, std::nullopt, std::nullopt);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->default_bits, 4);
  EXPECT_EQ(registry->Authenticate(std::nullopt)->default_bits, 4);
  EXPECT_EQ(Load()->Authenticate(std::nullopt)->default_bits, 4);  // as a restart reads it
  EXPECT_EQ(Load()->Authenticate("Bearer gold-secret")->name, "gold");  // keys kept
  for (const auto& entry : fs::directory_iterator(dir_)) EXPECT_EQ(entry.path().filename(), "tenants.toml");

  const std::string before = Read();
  EXPECT_EQ(registry->Update("free", 8, std::nullopt, std::nullopt).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry->Update("free", std::nullopt, 2, std::nullopt).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry->Update("nobody", 4, std::nullopt, std::nullopt).status().code(), absl::StatusCode::kNotFound);
  // gold adapts within 4..8: allowed widths from 5 would leave 4 out.
  const absl::StatusOr<Tenant> narrowed = registry->Update("gold", std::nullopt, 5, std::nullopt);
  EXPECT_EQ(narrowed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(narrowed.status().message().find("adaptive range 4..8"), std::string::npos) << narrowed.status();
  EXPECT_EQ(Read(), before);  // refused changes touch nothing
  EXPECT_EQ(registry->Authenticate(std::nullopt)->default_bits, 4);

  ASSERT_TRUE(registry->Update("free", 8, 5, 8).ok());
  EXPECT_EQ(Load()->Authenticate(std::nullopt)->min_bits, 5);
}

// Requests authenticate on gRPC threads while an admin updates and SIGHUP reloads; every
// caller sees a whole policy, old or new. Run under ThreadSanitizer by deploy/test.sh.
TEST_F(TenantRegistryTest, ConcurrentAuthenticationUpdatesAndReloads) {
  const auto registry = Load();
  std::atomic<bool> done{false};
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&] {
      while (!done) {
        const absl::StatusOr<Tenant> gold = registry->Authenticate("Bearer gold-secret");
        ASSERT_TRUE(gold.ok()) << gold.status();
        EXPECT_EQ(gold->name, "gold");
        const absl::StatusOr<Tenant> free = registry->Authenticate(std::nullopt);
        ASSERT_TRUE(free.ok()) << free.status();
        EXPECT_TRUE(free->default_bits == 3 || free->default_bits == 4) << free->default_bits;
        EXPECT_TRUE(registry->AuthenticateAdmin("Bearer admin-secret").ok());
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(registry->Update("free", 3 + i % 2, std::nullopt, std::nullopt).ok());
    ASSERT_TRUE(registry->Reload().ok());
  }
  done = true;
  for (std::thread& t : readers) t.join();
}

TEST_F(TenantRegistryTest, MalformedReloadKeepsThePolicyInForce) {
  const auto registry = Load();
  Write("[tenants.free\ndefault_bits = 3\n");
  const absl::Status reloaded = registry->Reload();
  EXPECT_EQ(reloaded.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(reloaded.message()).find(path_), std::string::npos) << reloaded.message();
  EXPECT_EQ(registry->Authenticate("Bearer gold-secret")->name, "gold");
  fs::remove(path_);
  EXPECT_EQ(registry->Reload().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry->Authenticate("Bearer gold-secret")->name, "gold");
}

// Keys from a folder laid out as Kubernetes mounts a Secret: each key a symlink into a
// timestamped folder that ..data points at, swapped whole when the Secret changes.
class KeyFolderTest : public TenantRegistryTest {
 protected:
  void SetUp() override {
    TenantRegistryTest::SetUp();
    keys_ = dir_ / "keys";
    MountSecret({{"gold", "gold-from-secret\n"}, {"admin", "  admin-from-secret  \n\nadmin-second\n"}});
  }
  void MountSecret(const std::map<std::string, std::string>& files) {
    const fs::path version = keys_ / ("..version-" + std::to_string(++version_));
    fs::create_directories(version);
    for (const auto& [name, text] : files) std::ofstream(version / name) << text;
    fs::remove(keys_ / "..data.tmp");
    fs::create_directory_symlink(version.filename(), keys_ / "..data.tmp");
    fs::rename(keys_ / "..data.tmp", keys_ / "..data");
    for (const auto& entry : fs::directory_iterator(keys_)) {
      if (entry.is_symlink() && !entry.path().filename().string().starts_with('.')) fs::remove(entry.path());
    }
    for (const auto& [name, text] : files) fs::create_symlink(fs::path("..data") / name, keys_ / name);
  }
  std::unique_ptr<TenantRegistry> LoadWithKeys() const {
    auto registry = TenantRegistry::Load(path_, kWidths, keys_.string());
    EXPECT_TRUE(registry.ok()) << registry.status();
    return registry.ok() ? *std::move(registry) : nullptr;
  }
  fs::path keys_;
  int version_ = 0;
};

TEST_F(KeyFolderTest, KeysFromTheFolderJoinTheFilesAndAreNeverWrittenToIt) {
  const auto registry = LoadWithKeys();
  EXPECT_EQ(registry->Authenticate("Bearer gold-from-secret")->name, "gold");
  EXPECT_EQ(registry->Authenticate("Bearer gold-secret")->name, "gold");  // the file's keys stay
  EXPECT_TRUE(registry->AuthenticateAdmin("Bearer admin-from-secret").ok());
  EXPECT_TRUE(registry->AuthenticateAdmin("Bearer admin-second").ok());
  EXPECT_EQ(Load()->Authenticate("Bearer gold-from-secret").status().code(), absl::StatusCode::kUnauthenticated);

  ASSERT_TRUE(registry->Update("free", 4, std::nullopt, std::nullopt).ok());
  EXPECT_EQ(Read().find(HashApiKey("gold-from-secret")), std::string::npos) << "a Secret's key was written to the tenants file";
  EXPECT_EQ(registry->Authenticate("Bearer gold-from-secret")->name, "gold");
  EXPECT_EQ(LoadWithKeys()->Authenticate(std::nullopt)->default_bits, 4);
}

TEST_F(KeyFolderTest, ARotatedSecretTakesEffectOnReload) {
  const auto registry = LoadWithKeys();
  MountSecret({{"gold", "gold-rotated"}});
  ASSERT_TRUE(registry->Update("free", 4, std::nullopt, std::nullopt).ok());  // an admin change rereads no keys
  EXPECT_EQ(registry->Authenticate("Bearer gold-from-secret")->name, "gold");
  EXPECT_EQ(registry->Authenticate("Bearer gold-rotated").status().code(), absl::StatusCode::kUnauthenticated);
  ASSERT_TRUE(registry->Reload().ok());
  EXPECT_EQ(registry->Authenticate("Bearer gold-rotated")->name, "gold");
  EXPECT_EQ(registry->Authenticate("Bearer gold-from-secret").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(registry->AuthenticateAdmin("Bearer admin-from-secret").code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(KeyFolderTest, MistakesAreNamedAndAReloadKeepsThePolicyInForce) {
  const auto registry = LoadWithKeys();
  MountSecret({{"platinum", "k"}});
  const absl::Status unknown = registry->Reload();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(unknown.message()).find("platinum"), std::string::npos) << unknown.message();
  EXPECT_EQ(registry->Authenticate("Bearer gold-from-secret")->name, "gold");

  MountSecret({{"gold", "gold-secret"}});  // already the file's key of gold
  EXPECT_EQ(registry->Reload().code(), absl::StatusCode::kInvalidArgument);
  MountSecret({{"gold", "shared"}, {"admin", "shared"}});
  EXPECT_EQ(registry->Reload().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry->Authenticate("Bearer gold-from-secret")->name, "gold");

  EXPECT_EQ(TenantRegistry::Load(path_, kWidths, (dir_ / "missing").string()).status().code(), absl::StatusCode::kNotFound);
}

TEST(TenantRegistry, WithoutAFileEveryoneIsAnonymousAndNothingChanges) {
  const auto registry = TenantRegistry::Open(kWidths, 4);
  const absl::StatusOr<Tenant> tenant = registry->Authenticate(std::nullopt);
  ASSERT_TRUE(tenant.ok());
  EXPECT_EQ(tenant->name, "anonymous");
  EXPECT_EQ(tenant->default_bits, 4);
  EXPECT_EQ(registry->Update("anonymous", 3, std::nullopt, std::nullopt).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(registry->AuthenticateAdmin("Bearer x").code(), absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace anyprec::server
