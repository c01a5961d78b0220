// delivery/bounce_class.h
//
// Bounce classification: every delivery failure, permanent or transient, gets one class of
// PowerMTA's and KumoMTA's list (InvalidRecipient, SpamBlock, ...) from an ordered list of
// rules. A rule is a regular expression (RE2 syntax, case-insensitive, unanchored) over the
// reply written as one line, "CODE ENHANCED text" ("550 5.1.1 <bob@x> User unknown"; without
// an enhanced code "550 User unknown"; a synthetic outcome without a code is its text alone).
// The first rule that matches wins, in the order of the rules document: class by class as the
// classes are listed, then each class's expressions in order; none matching is Uncategorized.
//
// The rules document has KumoMTA's shape: TOML with one table [rules], each key a class name
// and its value an array of expression strings. The shipped rules (delivery/bounce_rules.toml,
// compiled into the library) are Classifier::Default(); delivery/README.md says what each
// class means.
//
// Reply text is hostile: only its first kMaxInput octets are looked at, control characters
// (CR, LF of a multi-line reply, NUL) count as spaces, and RE2 runs in time linear in the
// input: all the rules are one RE2::Set, a single pass over the text.
// Threading: a Classifier is immutable once made; Classify() may be called from any thread
// at once. Default() is built on first use (thread-safe) and lives until exit. Never blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace spate::delivery {

enum class BounceClass : uint8_t {
  kInvalidRecipient,
  kBadDomain,
  kInactiveMailbox,
  kQuotaIssues,
  kSpamBlock,
  kSpamContent,
  kVirusRelated,
  kContentRelated,
  kPolicyRelated,
  kAuthenticationFailed,
  kRelayingIssues,
  kRoutingErrors,
  kProtocolErrors,
  kInvalidSender,
  kBadConnection,
  kNoAnswerFromHost,
  kMessageExpired,
  kTooManyRecipients,
  kBadConfiguration,
  kUncategorized,
};
inline constexpr size_t kBounceClassCount = static_cast<size_t>(BounceClass::kUncategorized) + 1;

// "InvalidRecipient": the name used in rules documents, logs and metrics.
std::string_view BounceClassName(BounceClass c);
// The class of an exact (case-sensitive) name; nullopt for anything else.
std::optional<BounceClass> BounceClassFromName(std::string_view name);

// The shipped rules document (delivery/bounce_rules.toml as it was at build time).
std::string_view DefaultBounceRules();

class Classifier {
 public:
  // Octets of a reply line looked at; the rest is ignored.
  static constexpr size_t kMaxInput = 1000;

  // Compiles a rules document. nullopt, with *error saying what and where, for a document that
  // is not TOML, has no [rules] table or another top-level key, names an unknown class, has a
  // value that is not an array of strings, or an expression RE2 does not take (the error names
  // the class, the index and the expression). An empty [rules] table classifies nothing.
  static std::optional<Classifier> FromToml(std::string_view text, std::string* error);
  // The shipped rules, compiled once (a shipped document that does not compile is a broken
  // invariant: SPATE_CHECK).
  static const Classifier& Default();

  // `code` 0 (no reply: a synthetic outcome) and an empty `enhanced` are left out of the line.
  BounceClass Classify(uint16_t code, std::string_view enhanced, std::string_view text) const;
  // A reply already written as one line, "CODE ENHANCED text".
  BounceClass Classify(std::string_view line) const;

  // How many expressions there are, over all classes.
  size_t rules() const;

  Classifier(Classifier&&) noexcept;
  Classifier& operator=(Classifier&&) noexcept;
  ~Classifier();

 private:
  struct Impl;
  explicit Classifier(std::unique_ptr<Impl> impl);
  BounceClass Match(std::string_view line) const;

  std::unique_ptr<Impl> impl_;
};

}  // namespace spate::delivery
