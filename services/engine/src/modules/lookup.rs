//! External lookups (DNS) that modules declare as data, and their answers.
//!
//! The engine does no I/O. A module that needs DNS (CheckHelo, CheckSPF) lists its
//! questions in [`crate::modules::Module::lookups`]; the caller asks
//! [`crate::Engine::lookups`] for the request's questions, answers them under the
//! request's deadline (caching answers up to their TTL), and decides with
//! [`crate::Engine::decide_with`]. A question without an answer reads as
//! [`LookupAnswer::Unanswered`].
//!
//! A request's questions borrow their names from the request ([`Lookup`] holds
//! [`Cow`]s): listing them, answering them from a cache and finding their answers copies no
//! string. A question kept beyond its request (a cache key) is made owned with
//! [`Lookup::into_owned`]. Answers share their records ([`Arc`]): a cached answer is
//! handed out without copying them.

use smallvec::SmallVec;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

/// One question to the outside world. The names are borrowed (from the request the engine
/// listed the question for) or owned ([`Lookup::into_owned`]): both compare and hash alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lookup<'a> {
    /// A and AAAA records of a name.
    Addresses {
        /// The name (no trailing dot).
        name: Cow<'a, str>,
    },
    /// MX records of a domain.
    Mx {
        /// The domain.
        domain: Cow<'a, str>,
    },
    /// TXT records of a name (SPF).
    Txt {
        /// The name.
        name: Cow<'a, str>,
    },
    /// PTR records of an address (reverse DNS).
    Ptr {
        /// The address.
        ip: IpAddr,
    },
    /// An SPF check (RFC 7208 `check_host`, MAIL FROM identity) of `sender` for a client at
    /// `ip` that said `helo`, evaluated by the caller with an SPF implementation over its
    /// resolver (includes, redirects and the lookup limits are the evaluator's). Answered by
    /// [`LookupAnswer::Spf`].
    Spf {
        /// The SMTP client's address.
        ip: IpAddr,
        /// The envelope sender (`user@domain`, not empty).
        sender: Cow<'a, str>,
        /// The HELO/EHLO name (for the `%{h}` macro and the header; may be empty).
        helo: Cow<'a, str>,
    },
}

impl Lookup<'_> {
    /// The same question owning its names (to keep it beyond the request it borrows from).
    pub fn into_owned(self) -> Lookup<'static> {
        let own = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        match self {
            Lookup::Addresses { name } => Lookup::Addresses { name: own(name) },
            Lookup::Mx { domain } => Lookup::Mx {
                domain: own(domain),
            },
            Lookup::Txt { name } => Lookup::Txt { name: own(name) },
            Lookup::Ptr { ip } => Lookup::Ptr { ip },
            Lookup::Spf { ip, sender, helo } => Lookup::Spf {
                ip,
                sender: own(sender),
                helo: own(helo),
            },
        }
    }
}

/// The result of an SPF check (RFC 7208 §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpfResult {
    /// The client is authorized to send for the domain.
    Pass,
    /// The client is not authorized.
    Fail,
    /// Probably not authorized (`~all`).
    SoftFail,
    /// The domain makes no assertion (`?all`, or no directive matched).
    Neutral,
    /// The domain publishes no SPF record (or is not a valid domain).
    None,
    /// A temporary (DNS) error kept the check from finishing.
    TempError,
    /// The record is broken, or a processing limit (10 DNS lookups, void lookups) was hit.
    PermError,
}

impl SpfResult {
    /// Every result, in the order of RFC 7208 §2.6.
    pub const ALL: [SpfResult; 7] = [
        SpfResult::None,
        SpfResult::Neutral,
        SpfResult::Pass,
        SpfResult::Fail,
        SpfResult::SoftFail,
        SpfResult::TempError,
        SpfResult::PermError,
    ];

    /// The RFC's token (`pass`, `softfail`, `temperror`, ...): headers, logs, metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::None => "none",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

impl std::fmt::Display for SpfResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to a [`Lookup::Spf`]: the result and what the verdict texts and the
/// `Received-SPF` header need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfAnswer {
    /// The result.
    pub result: SpfResult,
    /// The domain whose record was evaluated (the sender's domain).
    pub domain: String,
    /// The domain's own explanation (`exp=`) of a `fail`, when it publishes one.
    pub explanation: Option<String>,
    /// The value of the `Received-SPF` header (RFC 7208 §9.1), on one line, without the
    /// field name: `pass (receiver: domain of ... designates ... as permitted sender)
    /// receiver=...; client-ip=...; envelope-from="..."; helo=...;`.
    pub header: String,
}

/// The answer to one [`Lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupAnswer {
    /// Addresses (for [`Lookup::Addresses`]). Shared: a cached answer is handed out
    /// without copying them.
    Addresses(Arc<[IpAddr]>),
    /// Names or texts (MX hosts by preference, TXT strings, PTR names). Shared, as
    /// addresses are.
    Records(Arc<[String]>),
    /// The name does not exist or has no record of that type (NXDOMAIN, NODATA).
    NotFound,
    /// The resolver failed or the deadline passed: a temporary failure.
    Failed,
    /// The caller did not answer this question.
    Unanswered,
    /// The outcome of an SPF check (for [`Lookup::Spf`]). Shared: a cached answer is
    /// handed out without copying its texts (the `Received-SPF` header above all).
    Spf(Arc<SpfAnswer>),
}

/// Answers to the questions of one request. The questions may borrow from the request
/// (`'q`). Up to four answers are held inline (no allocation beyond the questions' own
/// vector, which [`LookupAnswers::unanswered`] takes over).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupAnswers<'q> {
    questions: Vec<Lookup<'q>>,
    /// The answer to each question, by its index.
    answers: SmallVec<[LookupAnswer; 4]>,
}

impl<'q> LookupAnswers<'q> {
    /// No answers (what a request gets when no module asks anything).
    pub fn none() -> &'static LookupAnswers<'static> {
        static NONE: std::sync::LazyLock<LookupAnswers<'static>> =
            std::sync::LazyLock::new(LookupAnswers::default);
        &NONE
    }

    /// `questions`, each [`LookupAnswer::Unanswered`] until answered
    /// ([`LookupAnswers::iter_mut`], [`LookupAnswers::set`]); a question listed twice is
    /// kept once.
    pub fn unanswered(mut questions: Vec<Lookup<'q>>) -> Self {
        dedupe(&mut questions);
        let answers = questions.iter().map(|_| LookupAnswer::Unanswered).collect();
        LookupAnswers { questions, answers }
    }

    /// Records the answer to `question` (a later answer to the same question replaces it).
    pub fn insert(&mut self, question: Lookup<'q>, answer: LookupAnswer) {
        match self.questions.iter().position(|q| *q == question) {
            Some(i) => self.answers[i] = answer,
            None => {
                self.questions.push(question);
                self.answers.push(answer);
            }
        }
    }

    /// The questions, in order (the index of each is the one [`LookupAnswers::set`]
    /// takes).
    pub fn questions(&self) -> &[Lookup<'q>] {
        &self.questions
    }

    /// Sets the answer to the question at `index` of [`LookupAnswers::questions`].
    ///
    /// # Panics
    /// When there is no question at `index`.
    pub fn set(&mut self, index: usize, answer: LookupAnswer) {
        self.answers[index] = answer;
    }

    /// Each question with its answer, to be filled in.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Lookup<'q>, &mut LookupAnswer)> {
        self.questions.iter().zip(self.answers.iter_mut())
    }

    /// The answer to `question` ([`LookupAnswer::Unanswered`] when there is none).
    pub fn get(&self, question: &Lookup<'_>) -> &LookupAnswer {
        self.find(|q| q == question)
    }

    /// The answer to the first question that `is` holds for ([`LookupAnswer::Unanswered`]
    /// when there is none): [`LookupAnswers::get`] without building the question.
    pub fn find(&self, is: impl Fn(&Lookup<'q>) -> bool) -> &LookupAnswer {
        self.questions
            .iter()
            .position(is)
            .map(|i| &self.answers[i])
            .unwrap_or(&LookupAnswer::Unanswered)
    }

    /// Whether no answer is held.
    pub fn is_empty(&self) -> bool {
        self.questions.is_empty()
    }
}

/// Removes the questions asked before (a request asks a few: a linear scan), keeping the
/// first of each in its place.
pub(crate) fn dedupe(questions: &mut Vec<Lookup<'_>>) {
    let mut i = 1;
    while i < questions.len() {
        if questions[..i].contains(&questions[i]) {
            questions.remove(i);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unasked_question_reads_as_unanswered_and_answers_replace() {
        let mut a = LookupAnswers::default();
        let q = Lookup::Mx {
            domain: String::from("example.org").into(),
        };
        assert_eq!(a.get(&q), &LookupAnswer::Unanswered);
        a.insert(q.clone(), LookupAnswer::Failed);
        a.insert(
            q.clone(),
            LookupAnswer::Records(vec!["mx.example.org".to_string()].into()),
        );
        assert_eq!(
            a.get(&q),
            &LookupAnswer::Records(vec!["mx.example.org".to_string()].into())
        );
        // A borrowed question finds the answer to the same owned one, and back.
        let name = String::from("example.org");
        let borrowed = Lookup::Mx {
            domain: name.as_str().into(),
        };
        assert_eq!(borrowed, q);
        assert!(matches!(a.get(&borrowed), LookupAnswer::Records(r) if r.len() == 1));
        let owned = borrowed.clone().into_owned();
        assert!(matches!(&owned, Lookup::Mx { domain: Cow::Owned(d) } if d == "example.org"));
        assert_eq!(owned, q);
        assert_eq!(LookupAnswers::none().get(&q), &LookupAnswer::Unanswered);
    }

    #[test]
    fn unanswered_questions_are_kept_once_and_filled_in() {
        let a = Lookup::Addresses {
            name: "mail.example.org".into(),
        };
        let mx = Lookup::Mx {
            domain: "mail.example.org".into(),
        };
        let mut answers = LookupAnswers::unanswered(vec![a.clone(), mx.clone(), a.clone()]);
        assert_eq!(answers.questions(), [a.clone(), mx.clone()]);
        assert_eq!(answers.get(&a), &LookupAnswer::Unanswered);
        for (q, answer) in answers.iter_mut() {
            if *q == a {
                *answer = LookupAnswer::NotFound;
            }
        }
        answers.set(1, LookupAnswer::Failed);
        assert_eq!(answers.get(&a), &LookupAnswer::NotFound);
        assert_eq!(answers.get(&mx), &LookupAnswer::Failed);
        answers.insert(mx.clone(), LookupAnswer::NotFound);
        assert_eq!(answers.get(&mx), &LookupAnswer::NotFound);
        assert_eq!(answers.questions().len(), 2);
        assert!(LookupAnswers::unanswered(Vec::new()).is_empty());
    }
}
