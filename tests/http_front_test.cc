// The OpenAI-compatible HTTP front as clients meet it: the real server binary on free loopback
// ports, a real HTTP client (cpp-httplib) and curl, an image of the real TinyStories-656K. Its
// greedy answers equal gRPC's for the same prompt ids; its errors carry OpenAI's shape.
#include <signal.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <thread>

#include <httplib.h>

#include "engine/chat/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/server_process.h"
#include "tests/test_server.h"
#include "tests/shared_data.h"
#include "tests/test_image.h"

namespace anyprec {
namespace {

namespace fs = std::filesystem;
namespace pb = anyprec::v1;
using nlohmann::json;
using testing::Greedy;
using testing::SharedPath;

constexpr char kModel[] = "TinyStories-656K";

class ServerProcess : public testing::TestServer {
 public:
  explicit ServerProcess(const std::vector<std::string>& args) : testing::TestServer(args) {
    EXPECT_FALSE(http_address().empty()) << "no HTTP front";
  }
  httplib::Client Http() const {
    httplib::Client client("http://" + http_address());
    client.set_read_timeout(60);
    return client;
  }
};

struct Answer {
  int status = 0;
  json body;
  std::string retry_after;
};

Answer Post(const ServerProcess& server, const std::string& path, const json& body, const std::string& key = "") {
  httplib::Client client = server.Http();
  httplib::Headers headers;
  if (!key.empty()) headers.emplace("Authorization", "Bearer " + key);
  const httplib::Result r = client.Post(path, headers, body.dump(), "application/json");
  if (!r) {
    ADD_FAILURE() << "no answer from " << path << ": " << httplib::to_string(r.error());
    return {};
  }
  return {r->status, json::parse(r->body, nullptr, false), r->get_header_value("Retry-After")};
}

// The SSE events of a streamed request as curl -N hands them over, each parsed ("[DONE]" as a
// string); `on_first` runs when the first event arrives, while the request is still running.
std::vector<json> CurlStream(const ServerProcess& server, const std::string& path, const json& body,
                             const std::function<void()>& on_first = {}) {
  const std::string command = "curl -sN -H 'Content-Type: application/json' -d '" + body.dump() + "' http://" + server.http_address() + path;
  FILE* pipe = ::popen(command.c_str(), "r");
  std::vector<json> events;
  char line[1 << 16];
  while (pipe != nullptr && std::fgets(line, sizeof(line), pipe) != nullptr) {
    std::string text(line);
    if (!text.starts_with("data: ")) continue;
    text = text.substr(6, text.size() - 7);
    events.push_back(text == "[DONE]" ? json("[DONE]") : json::parse(text, nullptr, false));
    if (events.size() == 1 && on_first) on_first();
  }
  if (pipe != nullptr) ::pclose(pipe);
  return events;
}

json ChatMessages() {
  return json::array({{{"role", "system"}, {"content", "Tell a story."}}, {{"role", "user"}, {"content", "A cat"}}});
}

// The gRPC request that carries what the server makes of `messages` with the template at
// `template_path`: its rendering, tokenized by the image's tokenizer.
pb::GenerateRequest ChatAsGrpc(const std::string& image, const std::string& template_path, const json& messages, int bits, int max_tokens) {
  pb::GenerateRequest request;
  std::ifstream file(template_path);
  const std::string source((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  auto chat_template = ChatTemplate::Parse(source, template_path);
  auto tokenizer = Tokenizer::Load(image + "/tokenizer.json");
  EXPECT_TRUE(chat_template.ok() && tokenizer.ok());
  if (!chat_template.ok() || !tokenizer.ok()) return request;
  ChatTemplateOptions options;
  options.add_generation_prompt = true;
  // The folder names no special tokens' text: the server takes the pieces of config.json's ids.
  options.bos_token = std::string(tokenizer->Piece(1));
  options.eos_token = std::string(tokenizer->Piece(2));
  auto rendered = chat_template->Render(messages, options);
  EXPECT_TRUE(rendered.ok()) << rendered.status();
  if (!rendered.ok()) return request;
  for (const TokenId id : tokenizer->Encode(*rendered)) request.mutable_token_ids()->add_ids(id);
  request.set_bits(bits);
  request.set_max_new_tokens(max_tokens);
  return request;
}

class HttpFrontTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { image_ = testing::TinyStoriesImage(); }
  static inline std::string image_;
};

TEST_F(HttpFrontTest, ModelsCompletionsAndChatAnswerAsGrpcDoes) {
  const std::string template_path = SharedPath("chat-templates/llama-3.jinja");
  ServerProcess server({"--model", image_, "--chat-template", template_path});
  httplib::Client client = server.Http();
  const httplib::Result models = client.Get("/v1/models");
  ASSERT_TRUE(models);
  ASSERT_EQ(models->status, 200);
  const json list = json::parse(models->body);
  ASSERT_EQ(list["data"].size(), 7u);
  EXPECT_EQ(list["data"][0]["id"], kModel);
  EXPECT_EQ(list["data"][1]["id"], std::string(kModel) + "@3");

  const auto stub = server.Stub();
  for (const int bits : {3, 8}) {
    SCOPED_TRACE(bits);
    const std::string model = std::string(kModel) + "@" + std::to_string(bits);
    const Answer a = Post(server, "/v1/completions", {{"model", model}, {"prompt", "Once upon a time"}, {"max_tokens", 16}, {"temperature", 0}});
    ASSERT_EQ(a.status, 200) << a.body.dump();
    const testing::Result want = testing::Generate(*stub, Greedy("Once upon a time", bits, 16));
    ASSERT_TRUE(want.status.ok());
    EXPECT_EQ(a.body["choices"][0]["text"], want.text);
    EXPECT_EQ(a.body["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(a.body["model"], model);
    EXPECT_EQ(a.body["object"], "text_completion");
    EXPECT_EQ(a.body["usage"]["prompt_tokens"], 6);
    EXPECT_EQ(a.body["usage"]["completion_tokens"], 16);
    EXPECT_EQ(a.body["usage"]["total_tokens"], 22);
  }

  // Chat: the template renders the messages, the tokenizer reads its special tokens back.
  const json messages = ChatMessages();
  const pb::GenerateRequest grpc_request = ChatAsGrpc(image_, template_path, messages, 4, 12);
  const testing::Result want = testing::Generate(*stub, grpc_request);
  ASSERT_TRUE(want.status.ok());

  const json chat = {{"model", std::string(kModel) + "@4"}, {"messages", messages}, {"max_completion_tokens", 12}, {"temperature", 0}};
  const Answer whole = Post(server, "/v1/chat/completions", chat);
  ASSERT_EQ(whole.status, 200) << whole.body.dump();
  EXPECT_EQ(whole.body["object"], "chat.completion");
  EXPECT_EQ(whole.body["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(whole.body["choices"][0]["message"]["content"], want.text);
  EXPECT_EQ(whole.body["usage"]["prompt_tokens"], grpc_request.token_ids().ids_size());

  json streamed = chat;
  streamed["stream"] = true;
  streamed["stream_options"] = {{"include_usage", true}};
  const std::vector<json> events = CurlStream(server, "/v1/chat/completions", streamed);
  ASSERT_GE(events.size(), 5u) << "the role, tokens, the finish, the usage, [DONE]";
  EXPECT_EQ(events.front()["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    EXPECT_EQ(events[i]["object"], "chat.completion.chunk");
    text += events[i]["choices"][0]["delta"].value("content", "");
  }
  EXPECT_EQ(text, want.text);
  EXPECT_EQ(events[events.size() - 3]["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(events[events.size() - 2]["choices"].empty());
  EXPECT_EQ(events[events.size() - 2]["usage"]["completion_tokens"], 12);
  EXPECT_EQ(events.back(), "[DONE]");

  // The same series count both fronts, told apart by `api`.
  const std::map<std::string, double> metrics = testing::ScrapeAll(server);
  EXPECT_EQ(metrics.at("anyprec_requests_finished_total{api=\"http\",bits=\"8\",reason=\"length\",tenant=\"anonymous\"}"), 1);
  EXPECT_EQ(metrics.at("anyprec_requests_finished_total{api=\"grpc\",bits=\"8\",reason=\"length\",tenant=\"anonymous\"}"), 1);
  EXPECT_EQ(metrics.at("anyprec_generation_tokens_total{api=\"http\",bits=\"4\",tenant=\"anonymous\"}"), 24) << "chat, whole and streamed";
}

// The official OpenAI Node.js client (npm `openai`), as an application would use it, with an API
// key: models, completions at two widths and a chat whole (with logprobs) and streamed, all equal
// to gRPC's greedy answers, the second chat's prompt from the prefix cache; an unknown width is its
// NotFoundError.
TEST_F(HttpFrontTest, TheOfficialOpenAIClientGetsWhatGrpcGets) {
  const std::string client_dir = std::string(ANYPREC_SOURCE_DIR) + "/tests/openai";
  ASSERT_EQ(std::system(("cd " + client_dir + " && npm ci --no-audit --no-fund --loglevel=error > /dev/null").c_str()), 0)
      << "npm ci in tests/openai failed: run deploy/install-deps.sh (node and npm) with the npm registry reachable";
  const fs::path dir = fs::temp_directory_path() / ("anyprec-http-openai-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string tenants = (dir / "tenants.toml").string();
  std::ofstream(tenants) << "[tenants.app]\napi_key_sha256 = [\"" << testing::HashKey(ANYPREC_SERVER, "app-key") << "\"]\ndefault_bits = 8\n";
  const std::string template_path = SharedPath("chat-templates/llama-3.jinja");
  ServerProcess server({"--model", image_, "--tenants", tenants, "--chat-template", template_path});
  const std::string output = testing::Capture("cd " + client_dir + " && node client.mjs http://" + server.http_address() + "/v1 app-key " +
                                              kModel + " 2>&1");
  const json got = json::parse(output, nullptr, false);
  ASSERT_TRUE(got.is_object()) << output;
  ASSERT_EQ(got["models"].size(), 7u) << output;
  EXPECT_EQ(got["models"][7 - 1], std::string(kModel) + "@8");

  const auto stub = server.Stub();
  for (const int bits : {3, 8}) {
    const testing::Result want = testing::Generate(*stub, Greedy("Once upon a time", bits, 16), "app-key");
    ASSERT_TRUE(want.status.ok()) << want.status.error_message();
    const json& c = got["completions"][std::to_string(bits)];
    EXPECT_EQ(c["text"], want.text) << bits;
    EXPECT_EQ(c["finish_reason"], "length");
    EXPECT_EQ(c["usage"]["completion_tokens"], 16);
    EXPECT_EQ(c["model"], std::string(kModel) + "@" + std::to_string(bits));
  }
  const testing::Result chat = testing::Generate(*stub, ChatAsGrpc(image_, template_path, ChatMessages(), 4, 12), "app-key");
  ASSERT_TRUE(chat.status.ok());
  EXPECT_EQ(got["chat"]["content"], chat.text);
  EXPECT_EQ(got["chat"]["usage"]["completion_tokens"], 12);
  ASSERT_EQ(got["chat"]["logprobs"].size(), 12u) << output;
  for (const json& entry : got["chat"]["logprobs"]) {
    ASSERT_EQ(entry["top"].size(), 2u) << output;
    EXPECT_EQ(entry["top"][0], entry["token"]) << "greedy takes the most likely token";
    EXPECT_LE(entry["logprob"].get<double>(), 0.0);
  }
  EXPECT_EQ(got["stream"]["content"], chat.text);
  EXPECT_GE(got["stream"]["chunks"], 3) << "the role, the tokens in one or more chunks, the finish";
  EXPECT_EQ(got["stream"]["finish_reason"], "length");
  EXPECT_EQ(got["stream"]["usage"]["completion_tokens"], 12);
  // The same chat twice at 4 bits: the second found the first's prompt in the prefix cache.
  EXPECT_EQ(got["chat"]["usage"]["prompt_tokens_details"]["cached_tokens"], 0) << output;
  EXPECT_GT(got["stream"]["usage"]["prompt_tokens_details"]["cached_tokens"], 0) << output;
  EXPECT_EQ(got["unknown_model"]["status"], 404) << output;
  fs::remove_all(dir);
}

// curl -N sees the first chunks while the request still runs; a client that leaves mid-stream
// cancels its request and the KV cache it held is free within a second.
TEST_F(HttpFrontTest, StreamsArriveAsMadeAndALeavingClientFreesItsRequest) {
  ServerProcess server({"--model", image_, "--max-running", "1"});
  const json body = {{"model", std::string(kModel) + "@8"}, {"prompt", "Once upon a time"}, {"max_tokens", 4000},
                     {"ignore_eos", true}, {"stream", true}};
  double running_at_first_chunk = -1;
  const std::string command = "curl -sN -d '" + body.dump() + "' http://" + server.http_address() + "/v1/completions";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char line[1 << 16];
  while (std::fgets(line, sizeof(line), pipe) != nullptr) {
    if (std::string_view(line).starts_with("data: ")) {
      running_at_first_chunk = testing::Scrape(server, "anyprec_requests_running");
      break;
    }
  }
  EXPECT_EQ(running_at_first_chunk, 1) << "the first chunk came while the request ran";
  ::pclose(pipe);  // curl's next write fails, it exits, its connection closes
  EXPECT_TRUE(testing::ScrapeUntil(server, "anyprec_kv_cache_usage_ratio", 0, std::chrono::seconds(1)))
      << "the cancelled request's KV blocks are free within a second";
  // With one sequence slot, this runs only once the cancelled request let go of it.
  const Answer next = Post(server, "/v1/completions", {{"model", kModel}, {"prompt", "Once"}, {"max_tokens", 3}});
  EXPECT_EQ(next.status, 200) << next.body.dump();
}

// A client that asked for a whole (not streamed) answer and left while its request waited: the
// front notices within a few of its keep-alive spaces and cancels the request, which never runs.
// The queue ahead of it is sized from the time one request takes here, to last over 4 s.
TEST_F(HttpFrontTest, AWholeAnswerWhoseClientLeftIsCancelled) {
  ServerProcess server({"--model", image_, "--max-running", "1", "--max-queued", "1000"});
  // The burst of connections below overflowed httplib's backlog of 5, and under load the kernel
  // dropped some of them; the front listens again with the system's maximum. ss shows a
  // listening socket's backlog as its Send-Q.
  const std::string port = server.http_address().substr(server.http_address().rfind(':') + 1);
  std::istringstream listening(testing::Capture("ss -ltnH 'sport = :" + port + "'"));
  std::string state, receive_queue;
  long backlog = 0;
  listening >> state >> receive_queue >> backlog;
  ASSERT_EQ(state, "LISTEN") << "ss (iproute2) found no listener on " << port;
  EXPECT_GE(backlog, 128);
  const json long_request = {{"model", std::string(kModel) + "@8"}, {"prompt", "Once"}, {"max_tokens", 480}, {"ignore_eos", true}};
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(Post(server, "/v1/completions", long_request).status, 200);
  const double one = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int ahead = static_cast<int>(std::ceil(8.0 / one)) + 1;
  std::vector<std::future<Answer>> queue;
  for (int i = 0; i < ahead; ++i) {
    queue.push_back(std::async(std::launch::async, [&] { return Post(server, "/v1/completions", long_request); }));
  }
  // At least half of them waiting: over 4 s of work ahead of the next request.
  const auto filling = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (testing::Scrape(server, "anyprec_requests_waiting") < ahead / 2) {
    ASSERT_LT(std::chrono::steady_clock::now(), filling) << "the queue never held " << ahead / 2 << " requests";
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }

  httplib::Client leaving("http://" + server.http_address());
  leaving.set_read_timeout(0, 300'000);
  // Its failed read closes its connection (httplib's stop() here would close a descriptor
  // another connection of this process may have taken since).
  EXPECT_FALSE(leaving.Post("/v1/completions", long_request.dump(), "application/json")) << "the answer came within 0.3 s";
  const std::string cancelled = "anyprec_requests_finished_total{api=\"http\",bits=\"8\",reason=\"cancelled\",tenant=\"anonymous\"}";
  EXPECT_TRUE(testing::ScrapeUntil(server, cancelled, 1, std::chrono::seconds(4))) << "the request whose client left was not cancelled";
  EXPECT_GT(testing::Scrape(server, "anyprec_requests_waiting"), 0) << "the queue ahead drained first: the test proves nothing";
  for (auto& answer : queue) EXPECT_EQ(answer.get().status, 200);
}

// anyprec chat, as a user types into it: each line a turn of one conversation, /bits changing its
// width. Each reply is the server's greedy answer to the conversation so far, and a turn the
// server refuses (an unknown width) is left out of it.
TEST_F(HttpFrontTest, AnyprecChatKeepsTheConversationAndItsWidth) {
  const std::string template_path = SharedPath("chat-templates/llama-3.jinja");
  ServerProcess server({"--model", image_, "--chat-template", template_path});
  const fs::path dir = fs::temp_directory_path() / ("anyprec-chat-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string err = (dir / "stderr").string();
  const std::string out = testing::Capture("printf 'A cat\\n/bits 99\\nOops\\n/bits 3\\nA dog\\n' | " + std::string(ANYPREC_CLI) +
                                           " chat --addr " + server.http_address() +
                                           " --system 'Tell a story.' --max-tokens 8 --temperature 0 2> " + err);
  std::ifstream file(err);
  const std::string log((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());

  json messages = json::array({{{"role", "system"}, {"content", "Tell a story."}}, {{"role", "user"}, {"content", "A cat"}}});
  const Answer first = Post(server, "/v1/chat/completions", {{"model", kModel}, {"messages", messages}, {"max_tokens", 8}, {"temperature", 0}});
  ASSERT_EQ(first.status, 200) << first.body.dump();
  const std::string reply1 = first.body["choices"][0]["message"]["content"];
  messages.push_back({{"role", "assistant"}, {"content", reply1}});
  messages.push_back({{"role", "user"}, {"content", "A dog"}});
  const Answer second = Post(server, "/v1/chat/completions",
                             {{"model", std::string(kModel) + "@3"}, {"messages", messages}, {"max_tokens", 8}, {"temperature", 0}});
  ASSERT_EQ(second.status, 200) << second.body.dump();
  const std::string reply2 = second.body["choices"][0]["message"]["content"];
  EXPECT_EQ(out, reply1 + "\n" + reply2 + "\n") << log;
  EXPECT_NE(log.find(std::string("[") + kModel + "@8: length, 8 tokens]"), std::string::npos) << log;
  EXPECT_NE(log.find("error 404"), std::string::npos) << log;
  const std::string summary2 = std::string("[") + kModel + "@3: " + second.body["choices"][0]["finish_reason"].get<std::string>() + ", " +
                               std::to_string(second.body["usage"]["completion_tokens"].get<int>()) + " tokens]";
  EXPECT_NE(log.find(summary2), std::string::npos) << log;
  fs::remove_all(dir);
}

void ExpectError(const Answer& a, int status, const std::string& type, const std::string& fragment) {
  EXPECT_EQ(a.status, status) << a.body.dump();
  ASSERT_TRUE(a.body.is_object() && a.body.contains("error")) << a.body.dump();
  const json& error = a.body["error"];
  EXPECT_EQ(error["type"], type) << a.body.dump();
  EXPECT_NE(error["message"].get<std::string>().find(fragment), std::string::npos) << a.body.dump();
  EXPECT_TRUE(error.contains("param") && error.contains("code")) << a.body.dump();
}

// Each token's logprob and its most likely alternatives come from the model's distribution:
// greedy's token is the first alternative, the list is in falling order, and the HTTP front
// reports what gRPC does (a byte-level vocabulary's partial characters aside, which TinyStories'
// has none of in this answer).
TEST_F(HttpFrontTest, LogprobsCarryTheMostLikelyAlternatives) {
  ServerProcess server({"--model", image_});
  pb::GenerateRequest request = Greedy("Once upon a time", 5, 8);
  request.set_return_logprobs(true);
  request.set_top_logprobs(4);
  const testing::Result grpc = testing::Generate(*server.Stub(), request);
  ASSERT_TRUE(grpc.status.ok()) << grpc.status.error_message();
  std::vector<pb::Token> tokens;
  for (const pb::GenerateResponse& m : grpc.messages) tokens.insert(tokens.end(), m.tokens().begin(), m.tokens().end());
  ASSERT_EQ(tokens.size(), 8u);
  for (const pb::Token& t : tokens) {
    ASSERT_EQ(t.top_logprobs_size(), 4);
    EXPECT_EQ(t.top_logprobs(0).id(), t.id()) << "greedy takes the most likely token";
    EXPECT_EQ(t.top_logprobs(0).logprob(), t.logprob());
    double mass = 0;
    for (int i = 0; i < 4; ++i) {
      EXPECT_LE(t.top_logprobs(i).logprob(), 0.0f);
      if (i > 0) {
        EXPECT_LE(t.top_logprobs(i).logprob(), t.top_logprobs(i - 1).logprob());
      }
      mass += std::exp(t.top_logprobs(i).logprob());
    }
    EXPECT_LE(mass, 1.0 + 1e-5);
  }

  const std::string model = std::string(kModel) + "@5";
  const Answer completion =
      Post(server, "/v1/completions", {{"model", model}, {"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 0}, {"logprobs", 4}});
  ASSERT_EQ(completion.status, 200) << completion.body.dump();
  const json& lists = completion.body["choices"][0]["logprobs"];
  ASSERT_EQ(lists["top_logprobs"].size(), 8u) << lists.dump();
  for (size_t i = 0; i < tokens.size(); ++i) {
    EXPECT_EQ(lists["tokens"][i], tokens[i].text());
    EXPECT_FLOAT_EQ(lists["token_logprobs"][i].get<float>(), tokens[i].logprob());
    const json& top = lists["top_logprobs"][i];
    EXPECT_EQ(top.size(), 4u) << top.dump();
    for (const pb::TokenAlternative& a : tokens[i].top_logprobs()) {
      ASSERT_TRUE(top.contains(a.text())) << top.dump();
      EXPECT_FLOAT_EQ(top[a.text()].get<float>(), a.logprob());
    }
  }

  const std::string template_path = SharedPath("chat-templates/llama-3.jinja");
  ServerProcess chat_server({"--model", image_, "--chat-template", template_path});
  const json chat = {{"model", model}, {"messages", ChatMessages()}, {"max_tokens", 6}, {"temperature", 0}, {"logprobs", true}, {"top_logprobs", 3}};
  const Answer whole = Post(chat_server, "/v1/chat/completions", chat);
  ASSERT_EQ(whole.status, 200) << whole.body.dump();
  const json& content = whole.body["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 6u) << content.dump();
  for (const json& entry : content) {
    ASSERT_EQ(entry["top_logprobs"].size(), 3u) << entry.dump();
    EXPECT_EQ(entry["top_logprobs"][0]["token"], entry["token"]);
    EXPECT_EQ(entry["top_logprobs"][0]["logprob"], entry["logprob"]);
    EXPECT_EQ(entry["top_logprobs"][0]["bytes"], entry["bytes"]);
  }
  json streamed = chat;
  streamed["stream"] = true;
  int entries = 0;
  for (const json& event : CurlStream(chat_server, "/v1/chat/completions", streamed)) {
    if (!event.is_object() || event["choices"].empty() || event["choices"][0]["logprobs"].is_null()) continue;
    for (const json& entry : event["choices"][0]["logprobs"]["content"]) {
      EXPECT_EQ(entry, content[entries]) << "a streamed token's logprobs are the whole answer's";
      ++entries;
    }
  }
  EXPECT_EQ(entries, 6);
  ExpectError(Post(chat_server, "/v1/chat/completions", {{"model", model}, {"messages", ChatMessages()}, {"top_logprobs", 2}}), 400,
              "invalid_request_error", "logprobs");
  ExpectError(Post(chat_server, "/v1/chat/completions",
                   {{"model", model}, {"messages", ChatMessages()}, {"logprobs", true}, {"top_logprobs", 21}}),
              400, "invalid_request_error", "0..20");
}

TEST_F(HttpFrontTest, EveryErrorHasItsStatusAndOpenAIsShape) {
  const fs::path dir = fs::temp_directory_path() / ("anyprec-http-errors-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string tenants = (dir / "tenants.toml").string();
  std::ofstream(tenants) << "[tenants.fast]\napi_key_sha256 = [\"" << testing::HashKey(ANYPREC_SERVER, "fast-key")
                         << "\"]\ndefault_bits = 3\nmin_bits = 3\nmax_bits = 4\n";
  ServerProcess server({"--model", image_, "--tenants", tenants, "--max-running", "2", "--max-queued", "2"});
  const json ok = {{"model", kModel}, {"prompt", "Once"}, {"max_tokens", 2}};
  ExpectError(Post(server, "/v1/completions", ok), 401, "authentication_error", "");
  ExpectError(Post(server, "/v1/completions", ok, "wrong-key"), 401, "authentication_error", "");
  EXPECT_EQ(Post(server, "/v1/completions", ok, "fast-key").status, 200);
  ExpectError(Post(server, "/v1/completions", {{"model", std::string(kModel) + "@8"}, {"prompt", "Once"}}, "fast-key"), 403,
              "permission_error", "3..4");
  ExpectError(Post(server, "/v1/completions", {{"model", "gpt-4o"}, {"prompt", "Once"}}, "fast-key"), 404, "not_found_error", "gpt-4o");
  for (const auto& [field, value] : std::vector<std::pair<std::string, json>>{
           {"n", 2}, {"tools", json::array({{{"type", "function"}}})}, {"response_format", {{"type", "json_object"}}},
           {"frobnicate", 1}, {"top_logprobs", 3}, {"logprobs", 21}, {"temperature", "hot"}}) {
    json bad = ok;
    bad[field] = value;
    const Answer a = Post(server, "/v1/completions", bad, "fast-key");
    ExpectError(a, 400, "invalid_request_error", "'" + field + "'");
    EXPECT_EQ(a.body["error"]["param"], field);
  }
  ExpectError(Post(server, "/v1/chat/completions", {{"model", kModel}, {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}},
                   "fast-key"),
              400, "invalid_request_error", "no chat template");
  httplib::Client client = server.Http();
  const httplib::Result not_json = client.Post("/v1/completions", httplib::Headers{{"Authorization", "Bearer fast-key"}}, "{", "application/json");
  ASSERT_TRUE(not_json);
  EXPECT_EQ(not_json->status, 400);

  // Overload: some of twelve long requests find the queue full: 429 with Retry-After.
  std::vector<std::future<Answer>> answers;
  for (int i = 0; i < 12; ++i) {
    answers.push_back(std::async(std::launch::async, [&server] {
      return Post(server, "/v1/completions", {{"model", kModel}, {"prompt", "Once upon a time"}, {"max_tokens", 300}, {"ignore_eos", true}},
                  "fast-key");
    }));
  }
  int completed = 0;
  int rejected = 0;
  for (auto& f : answers) {
    const Answer a = f.get();
    if (a.status == 200) {
      ++completed;
      EXPECT_EQ(a.body["usage"]["completion_tokens"], 300);
    } else {
      ExpectError(a, 429, "rate_limit_error", "");
      EXPECT_EQ(a.retry_after, "1");
      ++rejected;
    }
  }
  EXPECT_GE(completed, 2);
  EXPECT_GE(rejected, 1);
  EXPECT_EQ(completed + rejected, 12);

  // Draining: a long request holds the server after SIGTERM; a new one gets 503.
  auto in_flight = std::async(std::launch::async, [&server] {
    return Post(server, "/v1/completions", {{"model", kModel}, {"prompt", "Once upon a time"}, {"max_tokens", 3000}, {"ignore_eos", true}},
                "fast-key");
  });
  while (testing::Scrape(server, "anyprec_requests_running") < 1) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  server.Signal(SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ExpectError(Post(server, "/v1/completions", ok, "fast-key"), 503, "service_unavailable", "");
  EXPECT_EQ(in_flight.get().status, 200) << "the request in flight ends complete";
  EXPECT_EQ(server.Wait(), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace anyprec
