// Tenants: who may call the server, with which API keys, at which widths, and with which
// limits and share of the engine. Read from a TOML file (docs/TENANTS.md), reloaded on
// SIGHUP, and changed at run time through the Admin service, which writes the file through
// atomically so that a restart keeps the change.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/width.h"
#include "server/request.h"

namespace anyprec::server {

struct Tenant {
  std::string name;
  std::vector<std::string> key_hashes;  // SHA-256 of each API key, lower-case hex
  int default_bits = 0;
  int min_bits = 0;
  int max_bits = 0;
  TenantLimits limits;
  // Its requests decode speculatively unless they say otherwise (where the draft is below
  // their width).
  std::optional<SpeculativeOptions> speculative;
  // Set: requests that name no width run at a width the scheduler chooses under load, within
  // this range (inside the allowed widths), to keep `slo` (else the server's).
  std::optional<WidthRange> adaptive;
  std::optional<Slo> slo;

  // The widths it may use, min_bits..max_bits.
  WidthRange widths() const { return {min_bits, max_bits}; }
};

struct TenantPolicy {
  std::map<std::string, Tenant> tenants;
  std::optional<std::string> anonymous_tenant;  // requests without a key run as this one
  std::vector<std::string> admin_key_hashes;
};

// The widths an image serves, which every tenant's range must lie within.
// Parses and checks a tenants file's text; `origin` names it in errors.
absl::StatusOr<TenantPolicy> ParseTenants(std::string_view text, const std::string& origin, WidthRange widths);
// The TOML text that ParseTenants reads back as `policy`.
std::string SerializeTenants(const TenantPolicy& policy);
// How an API key is stored in the file: its SHA-256, as lower-case hex.
std::string HashApiKey(std::string_view key);
// API keys kept in a folder (e.g. a mounted Kubernetes Secret): each file is named after a
// tenant, or `admin`, and holds that caller's keys in plain text, one per line. Names starting
// with '.' are skipped (a Secret volume's own entries).
struct KeyFiles {
  std::string dir;
  std::map<std::string, std::vector<std::string>> hashes;  // by file name, as HashApiKey gives them
};
absl::StatusOr<KeyFiles> ReadKeyFiles(const std::string& dir);
// Adds the keys to `policy`. A file that names no tenant of it, or a key that would belong to
// two callers, is an error naming the file.
absl::Status AddKeyFiles(const KeyFiles& key_files, TenantPolicy& policy);

class TenantRegistry {
 public:
  // Tenants from `path`, with the keys in `key_dir` (AddKeyFiles) when it is not empty. The
  // keys from `key_dir` are never written to the file.
  static absl::StatusOr<std::unique_ptr<TenantRegistry>> Load(const std::string& path, WidthRange widths,
                                                               const std::string& key_dir = "");
  // No file: every request runs anonymously as tenant "anonymous" with every width and
  // `default_bits` as its default; there is no admin.
  static std::unique_ptr<TenantRegistry> Open(WidthRange widths, int default_bits);

  std::shared_ptr<const TenantPolicy> policy() const;
  bool has_file() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

  // The caller's tenant from the value of its `authorization` metadata (nullopt when it
  // sent none): UNAUTHENTICATED when the key is missing (and anonymous use is not allowed),
  // malformed or unknown.
  absl::StatusOr<Tenant> Authenticate(std::optional<std::string_view> authorization) const;
  // OK for an admin key; PERMISSION_DENIED for a tenant's key; UNAUTHENTICATED otherwise.
  absl::Status AuthenticateAdmin(std::optional<std::string_view> authorization) const;

  // Rereads the file and the key folder; on any error the policy in force stays.
  absl::Status Reload();
  // Sets a tenant's default and allowed widths (each only when given), writes the file
  // through, then applies the change to new requests.
  absl::StatusOr<Tenant> Update(const std::string& name, std::optional<int> default_bits, std::optional<int> min_bits,
                                std::optional<int> max_bits);

 private:
  TenantRegistry(std::string path, WidthRange widths, TenantPolicy file_policy, KeyFiles key_files, TenantPolicy policy);

  const std::string path_;
  const WidthRange widths_;
  // Under write_mutex_: what the file says, which Update writes back, and the key folder as
  // last read (its `dir` empty without one), which Update keeps (only a reload rereads it).
  TenantPolicy file_policy_;
  KeyFiles key_files_;
  std::mutex write_mutex_;  // one reload or update at a time
  mutable std::mutex mutex_;
  std::shared_ptr<const TenantPolicy> policy_;  // guarded by mutex_
};

}  // namespace anyprec::server
