#include "server/tenants.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/base/status_macros.h"

namespace anyprec::server {
namespace {

constexpr std::string_view kAnonymous = "anonymous";

std::string At(const toml::node& node) {
  const toml::source_position p = node.source().begin;
  return p ? absl::StrCat(":", p.line, ":", p.column) : "";
}

absl::Status Unknown(const std::string& origin, const toml::table& table, std::initializer_list<const char*> known,
                     const std::string& where) {
  for (const auto& [key, value] : table) {
    const std::string_view name = key.str();
    if (std::none_of(known.begin(), known.end(), [&](const char* k) { return name == k; })) {
      return absl::InvalidArgumentError(absl::StrCat(origin, At(value), ": unknown key '", std::string(key.str()), "' in ", where,
                                                     " (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

// An integer in [low, high] under `key`, or `fallback` when absent.
absl::StatusOr<int> Int(const std::string& origin, const toml::table& table, const std::string& key, int fallback, long low,
                        long high, const std::string& where) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return fallback;
  const std::optional<int64_t> v = node->value_exact<int64_t>();
  if (!v || *v < low || *v > high) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, At(*node), ": ", where, ".", key, " must be an integer in ", low, "..", high));
  }
  return static_cast<int>(*v);
}

// The inline table `key` of `table` (null when absent): only `known` keys, every `required` one.
absl::StatusOr<const toml::table*> SubTable(const std::string& origin, const toml::table& table, const std::string& key,
                                            std::initializer_list<const char*> known, std::initializer_list<const char*> required,
                                            const std::string& where) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return nullptr;
  const std::string at = absl::StrCat(where, ".", key);
  const toml::table* sub = node->as_table();
  if (sub == nullptr) {
    std::vector<std::string> fields;
    for (const char* k : known) fields.push_back(absl::StrCat(k, " = ..."));
    return absl::InvalidArgumentError(absl::StrCat(origin, At(*node), ": ", at, " must be a table { ", absl::StrJoin(fields, ", "), " }"));
  }
  RETURN_IF_ERROR(Unknown(origin, *sub, known, at));
  for (const char* k : required) {
    if (!sub->contains(k)) return absl::InvalidArgumentError(absl::StrCat(origin, At(*node), ": ", at, ".", k, " is missing"));
  }
  return sub;
}

// A duration in milliseconds, as seconds: a positive number up to a day.
absl::StatusOr<double> Milliseconds(const std::string& origin, const toml::table& table, const std::string& key, const std::string& where) {
  const toml::node* node = table.get(key);
  const std::optional<double> ms = node->value<double>();
  if (!ms || !std::isfinite(*ms) || *ms <= 0 || *ms > 86400e3) {
    return absl::InvalidArgumentError(absl::StrCat(origin, At(*node), ": ", where, ".", key, " must be a number of milliseconds in (0, 86400000]"));
  }
  return *ms / 1e3;
}

absl::StatusOr<std::vector<std::string>> KeyHashes(const std::string& origin, const toml::table& table, const std::string& where) {
  std::vector<std::string> hashes;
  const toml::node* node = table.get("api_key_sha256");
  if (node == nullptr) return hashes;
  const toml::array* array = node->as_array();
  if (array == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(origin, At(*node), ": ", where, ".api_key_sha256 must be an array of strings"));
  }
  for (const toml::node& element : *array) {
    const std::optional<std::string> hash = element.value<std::string>();
    const bool hex = hash && hash->size() == 64 &&
                     std::all_of(hash->begin(), hash->end(), [](char c) { return absl::ascii_isxdigit(c); });
    if (!hex) {
      return absl::InvalidArgumentError(absl::StrCat(origin, At(element), ": ", where,
                                                     ".api_key_sha256 entries must be 64 hex digits (anyprec hash-key prints them)"));
    }
    hashes.push_back(absl::AsciiStrToLower(*hash));
  }
  return hashes;
}

absl::StatusOr<Tenant> ParseTenant(const std::string& origin, const std::string& name, const toml::node& node, WidthRange widths) {
  const std::string where = absl::StrCat("tenants.", name);
  const toml::table* table = node.as_table();
  if (table == nullptr) return absl::InvalidArgumentError(absl::StrCat(origin, At(node), ": ", where, " must be a table"));
  const bool good_name = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.';
  });
  if (!good_name || name.front() == '.') {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, At(node), ": tenant name '", name, "' may only use letters, digits, _ - . and may not start with ."));
  }
  // A key folder's file named admin holds admin keys, so no tenant may take that name.
  if (name == "admin") return absl::InvalidArgumentError(absl::StrCat(origin, At(node), ": 'admin' is reserved for admin keys"));
  if (absl::Status s = Unknown(origin, *table,
                               {"api_key_sha256", "default_bits", "min_bits", "max_bits", "max_running", "max_queued", "weight", "speculative",
                                "adaptive", "slo"},
                               where);
      !s.ok()) {
    return s;
  }
  Tenant t;
  t.name = name;
  ASSIGN_OR_RETURN(t.key_hashes, KeyHashes(origin, *table, where));
  ASSIGN_OR_RETURN(t.min_bits, Int(origin, *table, "min_bits", widths.min, widths.min, widths.max, where));
  ASSIGN_OR_RETURN(t.max_bits, Int(origin, *table, "max_bits", widths.max, widths.min, widths.max, where));
  if (t.min_bits > t.max_bits) {
    return absl::InvalidArgumentError(absl::StrCat(origin, At(node), ": ", where, ".min_bits ", t.min_bits, " exceeds max_bits ", t.max_bits));
  }
  ASSIGN_OR_RETURN(t.default_bits, Int(origin, *table, "default_bits", t.max_bits, t.min_bits, t.max_bits, where));
  ASSIGN_OR_RETURN(t.limits.max_running, Int(origin, *table, "max_running", t.limits.max_running, 1, 1 << 20, where));
  ASSIGN_OR_RETURN(t.limits.max_queued, Int(origin, *table, "max_queued", t.limits.max_queued, 0, 1 << 20, where));
  if (const toml::node* weight = table->get("weight")) {
    const std::optional<double> w = weight->value<double>();
    if (!w || !std::isfinite(*w) || *w <= 0 || *w > 1e6) {
      return absl::InvalidArgumentError(absl::StrCat(origin, At(*weight), ": ", where, ".weight must be a number in (0, 1e6]"));
    }
    t.limits.weight = *w;
  }
  ASSIGN_OR_RETURN(const toml::table* speculative, SubTable(origin, *table, "speculative", {"draft_bits", "lookahead"}, {"draft_bits"}, where));
  if (speculative != nullptr) {
    const std::string at = where + ".speculative";
    SpeculativeOptions options;
    ASSIGN_OR_RETURN(options.draft_bits, Int(origin, *speculative, "draft_bits", 0, widths.min, widths.max, at));
    ASSIGN_OR_RETURN(options.lookahead, Int(origin, *speculative, "lookahead", options.lookahead, 1, kMaxLookahead, at));
    t.speculative = options;
  }
  ASSIGN_OR_RETURN(const toml::table* adaptive, SubTable(origin, *table, "adaptive", {"min_bits", "max_bits"}, {}, where));
  if (adaptive != nullptr) {
    // Within the tenant's allowed widths, all of them by default.
    const std::string at = where + ".adaptive";
    WidthRange range;
    ASSIGN_OR_RETURN(range.min, Int(origin, *adaptive, "min_bits", t.min_bits, t.min_bits, t.max_bits, at));
    ASSIGN_OR_RETURN(range.max, Int(origin, *adaptive, "max_bits", t.max_bits, t.min_bits, t.max_bits, at));
    if (range.min > range.max) {
      return absl::InvalidArgumentError(absl::StrCat(origin, At(*table->get("adaptive")), ": ", at, ".min_bits ", range.min, " exceeds max_bits ", range.max));
    }
    t.adaptive = range;
  }
  ASSIGN_OR_RETURN(const toml::table* slo, SubTable(origin, *table, "slo", {"ttft_ms", "tpot_ms"}, {"ttft_ms", "tpot_ms"}, where));
  if (slo != nullptr) {
    const std::string at = where + ".slo";
    Slo objectives;
    ASSIGN_OR_RETURN(objectives.ttft_seconds, Milliseconds(origin, *slo, "ttft_ms", at));
    ASSIGN_OR_RETURN(objectives.tpot_seconds, Milliseconds(origin, *slo, "tpot_ms", at));
    t.slo = objectives;
  }
  return t;
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string temp = absl::StrCat(path, ".tmp.", ::getpid());
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot write ", temp, ": ", std::strerror(errno)));
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  const bool ok = written == text.size() && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string error = std::strerror(errno);
    ::unlink(temp.c_str());
    return absl::UnavailableError(absl::StrCat("cannot write ", path, ": ", error));
  }
  // The rename itself must reach the disk for the change to survive a crash.
  const std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/') + 1);
  if (const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", what, " ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The key after "Bearer " in an authorization value, or nullopt when it has another form.
std::optional<std::string_view> BearerKey(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !std::equal(kScheme.begin(), kScheme.end(), authorization.begin(), [](char a, char b) { return a == absl::ascii_tolower(b); })) {
    return std::nullopt;
  }
  std::string_view key = authorization.substr(kScheme.size());
  while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
  if (key.empty()) return std::nullopt;
  return key;
}

// The stored form of the key in an authorization value ("Bearer <key>").
absl::StatusOr<std::string> KeyHash(std::string_view authorization) {
  const std::optional<std::string_view> key = BearerKey(authorization);
  if (!key) return absl::UnauthenticatedError("authorization metadata must be 'Bearer <key>'");
  return HashApiKey(*key);
}

const Tenant* TenantWithKey(const TenantPolicy& policy, const std::string& hash) {
  for (const auto& [name, tenant] : policy.tenants) {
    if (std::find(tenant.key_hashes.begin(), tenant.key_hashes.end(), hash) != tenant.key_hashes.end()) return &tenant;
  }
  return nullptr;
}

}  // namespace

std::string HashApiKey(std::string_view key) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(key.data(), key.size(), digest, &length, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) absl::StrAppend(&hex, absl::Hex(digest[i], absl::kZeroPad2));
  return hex;
}

absl::StatusOr<TenantPolicy> ParseTenants(std::string_view text, const std::string& origin, WidthRange widths) {
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ":", e.source().begin.line, ":", e.source().begin.column, ": ",
                                                   std::string(e.description())));
  }
  RETURN_IF_ERROR(Unknown(origin, root, {"anonymous_tenant", "admin", "tenants"}, "the file"));
  TenantPolicy policy;
  if (const toml::node* admin = root.get("admin")) {
    const toml::table* table = admin->as_table();
    if (table == nullptr) return absl::InvalidArgumentError(absl::StrCat(origin, At(*admin), ": admin must be a table"));
    RETURN_IF_ERROR(Unknown(origin, *table, {"api_key_sha256"}, "admin"));
    ASSIGN_OR_RETURN(policy.admin_key_hashes, KeyHashes(origin, *table, "admin"));
  }
  const toml::node* tenants = root.get("tenants");
  if (tenants == nullptr || tenants->as_table() == nullptr || tenants->as_table()->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": no [tenants.<name>] table"));
  }
  std::set<std::string> hashes(policy.admin_key_hashes.begin(), policy.admin_key_hashes.end());
  if (hashes.size() != policy.admin_key_hashes.size()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": an admin key is listed twice"));
  }
  for (const auto& [key, node] : *tenants->as_table()) {
    ASSIGN_OR_RETURN(Tenant tenant, ParseTenant(origin, std::string(key.str()), node, widths));
    for (const std::string& hash : tenant.key_hashes) {
      if (!hashes.insert(hash).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(origin, At(node), ": tenant ", tenant.name, " has a key that is also listed elsewhere; keys must name one caller"));
      }
    }
    policy.tenants.emplace(tenant.name, std::move(tenant));
  }
  if (const toml::node* anonymous = root.get("anonymous_tenant")) {
    const std::optional<std::string> name = anonymous->value<std::string>();
    if (!name || !policy.tenants.contains(*name)) {
      return absl::InvalidArgumentError(absl::StrCat(origin, At(*anonymous), ": anonymous_tenant must name a tenant of the file"));
    }
    policy.anonymous_tenant = *name;
  }
  return policy;
}

absl::StatusOr<KeyFiles> ReadKeyFiles(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code error;
  fs::directory_iterator entries(dir, error);
  if (error) return absl::NotFoundError(absl::StrCat("cannot read the API key folder ", dir, ": ", error.message()));
  KeyFiles key_files;
  for (const fs::directory_entry& entry : entries) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with('.') || !entry.is_regular_file(error)) continue;
    ASSIGN_OR_RETURN(const std::string text, ReadFile(entry.path().string(), "API key file"));
    std::vector<std::string>& hashes = key_files.hashes[name];
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (!line.empty()) hashes.push_back(HashApiKey(std::string_view(line.data(), line.size())));
    }
  }
  key_files.dir = dir;
  return key_files;
}

absl::Status AddKeyFiles(const KeyFiles& key_files, TenantPolicy& policy) {
  std::set<std::string> owned(policy.admin_key_hashes.begin(), policy.admin_key_hashes.end());
  for (const auto& [name, tenant] : policy.tenants) owned.insert(tenant.key_hashes.begin(), tenant.key_hashes.end());
  for (const auto& [name, hashes] : key_files.hashes) {
    const std::string file = absl::StrCat(key_files.dir, "/", name);
    std::vector<std::string>* to = nullptr;
    if (name == "admin") {
      to = &policy.admin_key_hashes;
    } else if (const auto it = policy.tenants.find(name); it != policy.tenants.end()) {
      to = &it->second.key_hashes;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": the tenants file has no tenant ", name, " (key files are named after a tenant, or admin)"));
    }
    for (const std::string& hash : hashes) {
      if (!owned.insert(hash).second) {
        return absl::InvalidArgumentError(absl::StrCat(file, ": holds a key that is also listed elsewhere; keys must name one caller"));
      }
      to->push_back(hash);
    }
  }
  return absl::OkStatus();
}

std::string SerializeTenants(const TenantPolicy& policy) {
  const auto hashes = [](const std::vector<std::string>& list) {
    toml::array array;
    for (const std::string& h : list) array.push_back(h);
    return array;
  };
  toml::table root;
  if (policy.anonymous_tenant) root.insert("anonymous_tenant", *policy.anonymous_tenant);
  if (!policy.admin_key_hashes.empty()) root.insert("admin", toml::table{{"api_key_sha256", hashes(policy.admin_key_hashes)}});
  toml::table tenants;
  for (const auto& [name, t] : policy.tenants) {
    toml::table table{{"default_bits", t.default_bits}, {"min_bits", t.min_bits}, {"max_bits", t.max_bits},
                      {"max_running", t.limits.max_running}, {"max_queued", t.limits.max_queued}, {"weight", t.limits.weight}};
    if (!t.key_hashes.empty()) table.insert("api_key_sha256", hashes(t.key_hashes));
    if (t.speculative) table.insert("speculative", toml::table{{"draft_bits", t.speculative->draft_bits}, {"lookahead", t.speculative->lookahead}});
    if (t.adaptive) table.insert("adaptive", toml::table{{"min_bits", t.adaptive->min}, {"max_bits", t.adaptive->max}});
    if (t.slo) table.insert("slo", toml::table{{"ttft_ms", t.slo->ttft_seconds * 1e3}, {"tpot_ms", t.slo->tpot_seconds * 1e3}});
    tenants.insert(name, std::move(table));
  }
  root.insert("tenants", std::move(tenants));
  std::ostringstream out;
  out << "# anyprec tenants file (docs/TENANTS.md). The server rewrites it when an admin changes a tenant.\n"
      << toml::toml_formatter(root) << "\n";
  return out.str();
}

namespace {

// The policy in force: the file's, with the key folder's keys added.
absl::StatusOr<TenantPolicy> WithKeyFiles(TenantPolicy file_policy, const KeyFiles& key_files) {
  RETURN_IF_ERROR(AddKeyFiles(key_files, file_policy));
  return file_policy;
}

absl::StatusOr<KeyFiles> ReadKeyFilesIfAny(const std::string& key_dir) {
  if (key_dir.empty()) return KeyFiles{};
  return ReadKeyFiles(key_dir);
}

}  // namespace

TenantRegistry::TenantRegistry(std::string path, WidthRange widths, TenantPolicy file_policy, KeyFiles key_files,
                               TenantPolicy policy)
    : path_(std::move(path)),
      widths_(widths),
      file_policy_(std::move(file_policy)),
      key_files_(std::move(key_files)),
      policy_(std::make_shared<const TenantPolicy>(std::move(policy))) {}

absl::StatusOr<std::unique_ptr<TenantRegistry>> TenantRegistry::Load(const std::string& path, WidthRange widths, const std::string& key_dir) {
  ASSIGN_OR_RETURN(const std::string text, ReadFile(path, "tenants file"));
  ASSIGN_OR_RETURN(TenantPolicy file_policy, ParseTenants(text, path, widths));
  ASSIGN_OR_RETURN(KeyFiles key_files, ReadKeyFilesIfAny(key_dir));
  ASSIGN_OR_RETURN(TenantPolicy policy, WithKeyFiles(file_policy, key_files));
  return std::unique_ptr<TenantRegistry>(
      new TenantRegistry(path, widths, std::move(file_policy), std::move(key_files), std::move(policy)));
}

std::unique_ptr<TenantRegistry> TenantRegistry::Open(WidthRange widths, int default_bits) {
  TenantPolicy policy;
  Tenant anonymous;
  anonymous.name = kAnonymous;
  anonymous.default_bits = default_bits;
  anonymous.min_bits = widths.min;
  anonymous.max_bits = widths.max;
  policy.tenants.emplace(anonymous.name, anonymous);
  policy.anonymous_tenant = anonymous.name;
  return std::unique_ptr<TenantRegistry>(new TenantRegistry("", widths, policy, {}, policy));
}

std::shared_ptr<const TenantPolicy> TenantRegistry::policy() const {
  std::lock_guard lock(mutex_);
  return policy_;
}

absl::StatusOr<Tenant> TenantRegistry::Authenticate(std::optional<std::string_view> authorization) const {
  const std::shared_ptr<const TenantPolicy> p = policy();
  if (!authorization) {
    if (p->anonymous_tenant) return p->tenants.at(*p->anonymous_tenant);
    return absl::UnauthenticatedError("this server needs an API key: send metadata 'authorization: Bearer <key>'");
  }
  ASSIGN_OR_RETURN(const std::string hash, KeyHash(*authorization));
  if (const Tenant* tenant = TenantWithKey(*p, hash)) return *tenant;
  return absl::UnauthenticatedError("unknown API key");
}

absl::Status TenantRegistry::AuthenticateAdmin(std::optional<std::string_view> authorization) const {
  const std::shared_ptr<const TenantPolicy> p = policy();
  if (!authorization) return absl::UnauthenticatedError("the Admin service needs an admin key: 'authorization: Bearer <key>'");
  ASSIGN_OR_RETURN(const std::string hash, KeyHash(*authorization));
  if (std::find(p->admin_key_hashes.begin(), p->admin_key_hashes.end(), hash) != p->admin_key_hashes.end()) {
    return absl::OkStatus();
  }
  if (const Tenant* tenant = TenantWithKey(*p, hash)) {
    return absl::PermissionDeniedError(absl::StrCat("tenant ", tenant->name, "'s key is not an admin key"));
  }
  return absl::UnauthenticatedError("unknown API key");
}

absl::Status TenantRegistry::Reload() {
  if (!has_file()) return absl::FailedPreconditionError("the server runs without a tenants file (--tenants)");
  std::lock_guard write(write_mutex_);
  ASSIGN_OR_RETURN(const std::string text, ReadFile(path_, "tenants file"));
  ASSIGN_OR_RETURN(TenantPolicy file_policy, ParseTenants(text, path_, widths_));
  ASSIGN_OR_RETURN(KeyFiles key_files, ReadKeyFilesIfAny(key_files_.dir));
  ASSIGN_OR_RETURN(TenantPolicy policy, WithKeyFiles(file_policy, key_files));
  file_policy_ = std::move(file_policy);
  key_files_ = std::move(key_files);
  std::lock_guard lock(mutex_);
  policy_ = std::make_shared<const TenantPolicy>(std::move(policy));
  return absl::OkStatus();
}

absl::StatusOr<Tenant> TenantRegistry::Update(const std::string& name, std::optional<int> default_bits,
                                              std::optional<int> min_bits, std::optional<int> max_bits) {
  if (!has_file()) return absl::FailedPreconditionError("the server runs without a tenants file (--tenants), so there is nothing to change");
  std::lock_guard write(write_mutex_);
  TenantPolicy next = file_policy_;
  const auto it = next.tenants.find(name);
  if (it == next.tenants.end()) return absl::NotFoundError(absl::StrCat("no tenant named '", name, "'"));
  Tenant& t = it->second;
  if (min_bits) t.min_bits = *min_bits;
  if (max_bits) t.max_bits = *max_bits;
  if (default_bits) t.default_bits = *default_bits;
  if (!widths_.Contains(t.min_bits) || !widths_.Contains(t.max_bits) || t.min_bits > t.max_bits) {
    return absl::InvalidArgumentError(absl::StrCat("allowed widths ", t.min_bits, "..", t.max_bits, " must lie within the image's ",
                                                   widths_.ToString()));
  }
  RETURN_IF_ERROR(t.widths().Check(t.default_bits, "default_bits", "the allowed"));
  if (t.adaptive && !(t.widths().Contains(t.adaptive->min) && t.widths().Contains(t.adaptive->max))) {
    return absl::InvalidArgumentError(absl::StrCat("allowed widths ", t.widths().ToString(), " would leave out the tenant's adaptive range ",
                                                   t.adaptive->ToString(), " (change it in the tenants file)"));
  }
  // What is written must read back as what is applied.
  const std::string text = SerializeTenants(next);
  RETURN_IF_ERROR(ParseTenants(text, path_, widths_).status());
  ASSIGN_OR_RETURN(TenantPolicy policy, WithKeyFiles(next, key_files_));
  RETURN_IF_ERROR(WriteFileAtomically(path_, text));
  Tenant updated = policy.tenants.at(name);
  file_policy_ = std::move(next);
  std::lock_guard lock(mutex_);
  policy_ = std::make_shared<const TenantPolicy>(std::move(policy));
  return updated;
}

}  // namespace anyprec::server
