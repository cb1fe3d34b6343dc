//! Prompts for the demo workload: the kinds of requests a team sends through an LLM
//! gateway on an ordinary day.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Question,
    Code,
    Summary,
    Email,
    Data,
    Writing,
    Support,
    /// Small talk and one-line facts from the in-app assistant: cheap models do fine.
    Chat,
    /// Multi-step maths, logic, algorithms and proofs: where the strongest tier earns its price.
    Reasoning,
    /// A long pasted document (incident timeline, contract, transcript) to work through.
    Document,
}

impl Kind {
    /// A system prompt per kind, as applications usually pin one per feature.
    pub fn system_prompt(self) -> &'static str {
        match self {
            Self::Question => "You are a concise, accurate assistant. Answer in a short paragraph.",
            Self::Code => "You are a senior software engineer. Prefer idiomatic, tested code and explain briefly.",
            Self::Summary => "You summarise text faithfully. Use bullet points and keep every number.",
            Self::Email => "You write clear, friendly business emails. Keep them under 150 words.",
            Self::Data => "You are a data analyst. Show the query or formula first, then one sentence on why.",
            Self::Writing => "You are an editor. Keep the author's voice and fix only what needs fixing.",
            Self::Support => "You are a customer-support agent for a SaaS product. Be empathetic and specific.",
            Self::Chat => "You are a friendly in-app assistant. Keep answers to one or two sentences.",
            Self::Reasoning => {
                "You are a careful problem solver. Work step by step, check each step, then state the final answer."
            }
            Self::Document => "You analyse documents the user pastes. Quote the text when you rely on it.",
        }
    }

    /// The assistant features (chat, reasoning, long documents) leave the choice of model to
    /// the gateway (`"modelId": "auto"`) on every request; the older features pinned a model
    /// per feature and only some of them moved to `auto`.
    pub fn always_routed(self) -> bool {
        matches!(self, Self::Chat | Self::Reasoning | Self::Document)
    }
}

pub const PROMPTS: &[(Kind, &str)] = &[
    (Kind::Question, "What is the difference between a process and a thread?"),
    (Kind::Question, "Explain eventual consistency to a product manager in three sentences."),
    (Kind::Question, "Why does DynamoDB recommend high-cardinality partition keys?"),
    (Kind::Question, "What are the trade-offs between REST and gRPC for internal services?"),
    (Kind::Question, "How does TLS certificate pinning work, and when is it a bad idea?"),
    (Kind::Question, "What is a Lambda cold start and how can I reduce it for a Rust function?"),
    (Kind::Question, "When should I use a message queue instead of a direct HTTP call?"),
    (Kind::Question, "Explain the CAP theorem with a concrete example."),
    (Kind::Question, "What does idempotency mean for a payments API?"),
    (Kind::Question, "How do cross-region inference profiles work in Amazon Bedrock?"),
    (Kind::Question, "What is the difference between p50 and p99 latency, and why do both matter?"),
    (Kind::Question, "How does a bloom filter work and where is it used in databases?"),
    (Kind::Question, "What is the purpose of a write-ahead log?"),
    (Kind::Question, "Explain OAuth 2.0 authorization code flow with PKCE."),
    (Kind::Question, "What is the difference between horizontal and vertical scaling?"),
    (Kind::Question, "How do I choose a TTL for a response cache?"),
    (Kind::Question, "What is a vector database and when do I need one?"),
    (Kind::Question, "Explain what a token is in the context of large language models."),
    (Kind::Question, "Why is floating point arithmetic not associative?"),
    (Kind::Question, "What are the main causes of memory leaks in long-running services?"),
    (Kind::Code, "Write a Rust function that parses an ISO 8601 date string without external crates."),
    (Kind::Code, "Write a Python function that retries an HTTP call with exponential backoff and jitter."),
    (
        Kind::Code,
        "Refactor this loop into an iterator chain: let mut v = vec![]; for x in xs { if x > 0 { v.push(x * 2); } }",
    ),
    (Kind::Code, "Write a TypeScript type guard for an object with a string id and an optional numeric count."),
    (Kind::Code, "Implement an LRU cache in Go with O(1) get and put."),
    (Kind::Code, "Write a bash script that deletes files older than 30 days in a directory, with a dry-run flag."),
    (Kind::Code, "Explain what this regex matches: ^(?:[a-z0-9-]+\\.)+[a-z]{2,}$"),
    (Kind::Code, "Write a SQL migration that adds a non-null column with a default to a large Postgres table safely."),
    (Kind::Code, "Write unit tests for a function that splits a string into chunks of at most n characters."),
    (Kind::Code, "How do I share a tokio runtime between two libraries in the same binary?"),
    (Kind::Code, "Write a Dockerfile for a Rust web service using a multi-stage build."),
    (
        Kind::Code,
        "Convert this callback-based Node.js function to async/await: fs.readFile(p, (err, data) => cb(err, data)).",
    ),
    (Kind::Code, "Write a GitHub Actions job that caches cargo builds and runs clippy."),
    (Kind::Code, "Why does the borrow checker reject pushing to a Vec while iterating over it, and how do I fix it?"),
    (Kind::Code, "Write a Python dataclass for an invoice with line items and a total property."),
    (Kind::Code, "Implement binary search in Rust that returns the insertion point when the value is missing."),
    (Kind::Code, "Write a React hook that debounces a value by 300 milliseconds."),
    (Kind::Code, "Explain the difference between Arc<Mutex<T>> and RwLock<T> with an example of each."),
    (Kind::Code, "Write a Terraform snippet for an S3 bucket with versioning and server-side encryption."),
    (Kind::Code, "Review this function for bugs: fn avg(v: &[i32]) -> i32 { v.iter().sum::<i32>() / v.len() as i32 }"),
    (Kind::Code, "Write a Kotlin extension function that formats a Duration as '1h 05m'."),
    (Kind::Code, "Write a jq command that extracts the names of all users older than 30 from a JSON array."),
    (Kind::Code, "Implement a token bucket rate limiter in Rust."),
    (Kind::Code, "Write a Makefile target that runs tests only for changed Go packages."),
    (Kind::Summary, "Summarise the key points of the twelve-factor app methodology."),
    (
        Kind::Summary,
        "Summarise this incident: the checkout service returned 500s for 18 minutes after a config push disabled the payment provider's TLS 1.3 support; rollback fixed it.",
    ),
    (Kind::Summary, "Summarise the pros and cons of monorepos for a team of 40 engineers."),
    (Kind::Summary, "Give a three-bullet summary of how garbage collection works in the JVM."),
    (
        Kind::Summary,
        "Summarise this meeting: we agreed to ship the beta on the 14th, Dana owns the docs, pricing is postponed, and QA needs two more days for the mobile app.",
    ),
    (Kind::Summary, "Summarise the main ideas of 'Designing Data-Intensive Applications' chapter on replication."),
    (
        Kind::Summary,
        "Summarise this customer feedback: the export is slow, the new dashboard is great, and SSO setup was confusing.",
    ),
    (Kind::Summary, "Write a TL;DR of the differences between HTTP/1.1, HTTP/2 and HTTP/3."),
    (
        Kind::Summary,
        "Summarise the quarterly results: revenue up 12%, churn down from 3.1% to 2.4%, support tickets up 8% after the pricing change.",
    ),
    (Kind::Summary, "Summarise the GDPR obligations of a B2B SaaS company in five bullets."),
    (
        Kind::Summary,
        "Summarise this pull request: it replaces the hand-written retry loop with the SDK's retry config and adds a jittered backoff test.",
    ),
    (Kind::Summary, "Summarise the risks of running a database on spot instances."),
    (
        Kind::Summary,
        "Summarise this log excerpt: 37 timeouts to the inventory service between 02:10 and 02:25, all from pod web-7, none after it restarted.",
    ),
    (Kind::Summary, "Summarise the key differences between Scrum and Kanban."),
    (Kind::Summary, "Summarise why prompt caching lowers cost for long system prompts."),
    (
        Kind::Summary,
        "Condense this into one sentence: our API gateway adds 4 ms at p50, 11 ms at p99, and caching saves 38% of model spend.",
    ),
    (Kind::Email, "Write an email to a customer apologising for yesterday's two-hour outage and explaining the fix."),
    (Kind::Email, "Draft a polite reminder to a vendor about an invoice that is 30 days overdue."),
    (Kind::Email, "Write an email inviting the team to a post-mortem on Thursday at 3pm."),
    (Kind::Email, "Draft a reply declining a meeting request but offering an async update instead."),
    (Kind::Email, "Write an email announcing a new on-call rotation starting next Monday."),
    (Kind::Email, "Draft a welcome email for a new engineer joining the platform team."),
    (Kind::Email, "Write an email to finance asking for approval of a $4,000 annual tooling budget."),
    (
        Kind::Email,
        "Write a short email telling customers about a scheduled maintenance window on Saturday 02:00-04:00 UTC.",
    ),
    (Kind::Email, "Draft an email to a candidate extending a job offer for a senior backend role."),
    (Kind::Email, "Write a follow-up email after a sales demo summarising next steps."),
    (Kind::Email, "Draft an email asking a colleague for a code review by Friday."),
    (Kind::Email, "Write an email to the security team reporting a suspected phishing message."),
    (Kind::Email, "Draft a thank-you email to a customer who reported a critical bug."),
    (Kind::Email, "Write an email proposing to deprecate API v1 in six months, with a migration guide link."),
    (Kind::Email, "Draft a short out-of-office message for a two-week holiday."),
    (Kind::Data, "Write a SQL query for the top 10 customers by revenue in the last 90 days."),
    (Kind::Data, "Write a SQL query that finds duplicate email addresses in a users table."),
    (Kind::Data, "How do I compute a 7-day rolling average in pandas?"),
    (Kind::Data, "Write a spreadsheet formula that returns the month name for a date in cell A2."),
    (Kind::Data, "Write a SQL query computing monthly active users from an events table."),
    (Kind::Data, "Explain how to detect outliers in response-time data with the IQR method."),
    (Kind::Data, "Write a PromQL query for the p95 latency of an HTTP service over 5 minutes."),
    (Kind::Data, "How should I design a DynamoDB table for a multi-tenant cache keyed by request hash?"),
    (Kind::Data, "Write a CloudWatch Logs Insights query that counts errors by function name."),
    (Kind::Data, "Write a SQL window function that ranks products by sales within each category."),
    (Kind::Data, "How do I estimate monthly LLM cost from tokens per request and request volume?"),
    (Kind::Data, "Write a pandas snippet that pivots a long table of (date, metric, value) into wide format."),
    (Kind::Data, "What sample size do I need for an A/B test to detect a 2% lift at 95% confidence?"),
    (
        Kind::Data,
        "Write a query that computes cache hit rate per day from a requests table with a cache_result column.",
    ),
    (Kind::Data, "Explain the difference between a star schema and a snowflake schema."),
    (
        Kind::Writing,
        "Rewrite this sentence to be clearer: 'The system, which was being upgraded, failed, due to the fact that the disk was full.'",
    ),
    (Kind::Writing, "Write a product description for a noise-cancelling headset for remote workers."),
    (Kind::Writing, "Write a changelog entry for a release that adds response caching and fixes a timeout bug."),
    (Kind::Writing, "Suggest five names for an internal LLM gateway service."),
    (Kind::Writing, "Write a short LinkedIn post announcing our open-source Rust library."),
    (
        Kind::Writing,
        "Turn these notes into a paragraph: cache hit 55%, cost down 40%, p99 unchanged, rollout next week.",
    ),
    (Kind::Writing, "Write the README introduction for a command-line tool that converts CSV to Parquet."),
    (Kind::Writing, "Write a haiku about on-call pager duty."),
    (Kind::Writing, "Translate into French: 'Your order has shipped and should arrive within three business days.'"),
    (Kind::Writing, "Translate into German: 'Please restart the application to apply the update.'"),
    (Kind::Writing, "Translate into Spanish: 'We could not verify your payment method. Please try again.'"),
    (Kind::Writing, "Proofread: 'Their going to deploy the the new version tomorow, assuming test's pass.'"),
    (Kind::Writing, "Write an engineering design-doc outline for adding rate limiting to a public API."),
    (Kind::Writing, "Write a job posting for a site reliability engineer, remote within Europe."),
    (Kind::Writing, "Write three alternative headlines for a blog post about reducing cloud costs."),
    (Kind::Support, "A customer says they cannot log in after resetting their password. What should I ask them first?"),
    (Kind::Support, "How do I explain to a customer that their data export will take up to 24 hours?"),
    (Kind::Support, "Write a response to a customer asking for a refund after the 30-day window."),
    (
        Kind::Support,
        "A user reports that the mobile app crashes when uploading photos larger than 10 MB. Draft a reply.",
    ),
    (Kind::Support, "Write troubleshooting steps for a customer whose webhooks stopped arriving."),
    (Kind::Support, "How should I respond to a customer who is angry about a billing error?"),
    (Kind::Support, "Write a macro reply for 'How do I enable two-factor authentication?'"),
    (Kind::Support, "A customer asks whether we are SOC 2 compliant. Draft an answer."),
    (Kind::Support, "Explain to a customer why their API requests are being rate limited with HTTP 429."),
    (Kind::Support, "Write a reply to a feature request for dark mode that we plan to ship next quarter."),
    (Kind::Support, "A customer asks how to delete their account and all data. Write the steps."),
    (Kind::Support, "Draft a status-page update for degraded search performance."),
    (Kind::Support, "Write a reply to a customer who cannot find last month's invoice."),
    (Kind::Support, "A customer asks why the AI answer was different the second time. Explain temperature simply."),
    (Kind::Support, "Write a response to a user asking how to connect our product to Slack."),
    (Kind::Support, "Draft a reply to a customer asking if they can change the owner of their workspace."),
    (Kind::Chat, "Hi! How are you today?"),
    (Kind::Chat, "What is the capital of Australia?"),
    (Kind::Chat, "How many days are there in a leap year?"),
    (Kind::Chat, "Say thank you in Japanese."),
    (Kind::Chat, "Give me a synonym for happy."),
    (Kind::Chat, "Tell me a short joke about programmers."),
    (Kind::Chat, "What colour do you get by mixing blue and yellow?"),
    (Kind::Chat, "Who wrote Pride and Prejudice?"),
    (Kind::Chat, "What is the boiling point of water in Fahrenheit?"),
    (Kind::Chat, "Convert 5 kilometres to miles."),
    (Kind::Chat, "What time zone is Berlin in?"),
    (Kind::Chat, "Spell 'necessary' for me."),
    (Kind::Chat, "Is a tomato a fruit or a vegetable?"),
    (Kind::Chat, "Good morning! Any tip for staying focused today?"),
    (Kind::Chat, "What does HTTP stand for?"),
    (Kind::Reasoning, "Prove that there are infinitely many prime numbers, step by step."),
    (Kind::Reasoning, "Find all real x with x^4 - 5x^2 + 4 = 0 and prove there are no other solutions."),
    (
        Kind::Reasoning,
        "A 2 kg block slides down a 30 degree incline with friction coefficient 0.2. Compute its acceleration and the time it needs to travel 5 m from rest.",
    ),
    (
        Kind::Reasoning,
        "Let f(n) be the number of ways to tile a 3 x n board with 2 x 1 dominoes. Derive a recurrence, prove it, and compute f(12).",
    ),
    (
        Kind::Reasoning,
        "Implement a lock-free multi-producer single-consumer queue in Rust, justify the memory ordering of every atomic operation and prove it is linearizable.",
    ),
    (
        Kind::Reasoning,
        "Three boxes are labelled apples, oranges and mixed, and every label is wrong. You may draw one fruit from one box. Which box do you pick, and how do you relabel all three? Justify each step.",
    ),
    (
        Kind::Reasoning,
        "Design an algorithm that finds the median of two sorted arrays of sizes m and n in O(log(min(m, n))) time, prove its correctness and analyse the edge cases.",
    ),
    (
        Kind::Reasoning,
        "A bat and a ball cost $1.10 together, and the bat costs $1.00 more than the ball. Then the price of both rises by 10% and a 5% discount applies to the total. What does each item cost now? Show the algebra.",
    ),
    (
        Kind::Reasoning,
        "Evaluate the integral of x^2 * e^(-x) from 0 to infinity, then generalise to x^n * e^(-x) and prove the general formula by induction.",
    ),
    (
        Kind::Reasoning,
        "Given a directed graph with negative edge weights but no negative cycles, explain why Dijkstra's algorithm fails, give a counterexample with four nodes, and describe how Johnson's algorithm fixes it with its complexity.",
    ),
    (
        Kind::Reasoning,
        "Two trains leave stations 300 km apart at 09:00, one at 80 km/h and one at 70 km/h towards each other; a bird flies between them at 120 km/h until they meet. How far does the bird fly, and at what time and place do the trains meet?",
    ),
    (
        Kind::Reasoning,
        "A cache serves 55% of 10 million monthly requests; a miss costs $0.004 and a hit $0.0002 in storage and reads. Model the monthly cost as a function of the hit rate, find the break-even hit rate against no cache at $0.0035 per request, and explain the sensitivity.",
    ),
    (
        Kind::Reasoning,
        "Prove that every connected graph in which all vertices have even degree has an Euler circuit, and give an O(E) algorithm to construct one.",
    ),
    (
        Kind::Reasoning,
        "Solve the system 2x + 3y - z = 5, 4x - y + 2z = 6, -x + 2y + 3z = 13 by Gaussian elimination, showing every row operation, and verify the solution.",
    ),
    (
        Kind::Reasoning,
        "In a distributed key-value store with N = 5 replicas, choose read and write quorum sizes R and W that tolerate two failed nodes while guaranteeing read-your-writes, prove the guarantee, and explain what breaks with sloppy quorums.",
    ),
    (
        Kind::Document,
        concat!(
            "Summarise this incident timeline for the executive team in five bullets, then list the three root causes and ",
            "the follow-up actions with owners.\n\n",
            "09:02 Deploy 4812 of the pricing service starts (canary 5%).\n",
            "09:06 Canary error rate 0.4%, below the 1% gate; rollout continues to 25%.\n",
            "09:11 p99 latency of checkout rises from 380 ms to 1.9 s; no alert because the latency alert uses p50.\n",
            "09:14 Rollout reaches 100%. The new code path calls the tax service once per line item instead of once per cart.\n",
            "09:17 Tax service hits its connection pool limit (200); requests queue, then time out after 10 s.\n",
            "09:19 Checkout error rate 12%. Support receives the first customer tickets about failed payments.\n",
            "09:23 On-call engineer (Priya) is paged by the error-rate alert and opens an incident channel.\n",
            "09:31 Rollback of deploy 4812 is attempted but blocked: the database migration in 4812 is not reversible.\n",
            "09:38 Team decides to roll forward with a feature flag that restores the per-cart tax call.\n",
            "09:52 Hotfix 4813 deployed; tax service connections drop to 60; error rate back to 0.2% by 09:58.\n",
            "10:20 Finance estimates 3,400 failed checkouts, about $410,000 of delayed revenue, 70% recovered by retry emails.\n",
            "11:00 Incident closed. Marco owns the post-mortem; Lena owns adding p99 to the latency alert; Sam owns ",
            "making migrations reversible or gating them behind a separate deploy.",
        ),
    ),
    (
        Kind::Document,
        concat!(
            "Read this data-processing clause and list every obligation of the processor, each with the section it comes from. ",
            "Then point out two ambiguities a customer's lawyer would ask us to fix.\n\n",
            "4.1 The Processor shall process Personal Data only on documented instructions from the Controller, including with ",
            "regard to transfers to a third country, unless required to do so by Union or Member State law; in such a case the ",
            "Processor shall inform the Controller of that legal requirement before processing, unless that law prohibits it.\n",
            "4.2 The Processor shall ensure that persons authorised to process the Personal Data have committed themselves to ",
            "confidentiality or are under an appropriate statutory obligation of confidentiality.\n",
            "4.3 The Processor shall implement appropriate technical and organisational measures, including encryption of ",
            "Personal Data at rest and in transit, and shall review them at least annually.\n",
            "4.4 The Processor shall not engage another processor without prior specific or general written authorisation of ",
            "the Controller. In the case of general written authorisation, the Processor shall inform the Controller of any ",
            "intended changes concerning the addition or replacement of other processors within a reasonable time.\n",
            "4.5 The Processor shall notify the Controller without undue delay after becoming aware of a Personal Data Breach, ",
            "and in any event within 48 hours, providing the information reasonably available at that time.\n",
            "4.6 At the choice of the Controller, the Processor shall delete or return all Personal Data after the end of the ",
            "provision of services, and delete existing copies unless storage is required by law.",
        ),
    ),
    (
        Kind::Document,
        concat!(
            "Turn this meeting transcript into decisions, open questions and action items with owners and dates.\n\n",
            "Dana: OK, beta. Are we still on for the 14th?\n",
            "Raj: Backend is ready. The export job is still slow for workspaces over 50k rows, about four minutes.\n",
            "Dana: Can we ship with that?\n",
            "Raj: If we show a progress bar, yes. I can add it by Wednesday.\n",
            "Mei: Mobile needs two more days of QA. The photo upload crash on Android 12 is fixed but not verified.\n",
            "Dana: Then mobile ships on the 16th, web on the 14th. Objections? None. Good.\n",
            "Tom: Pricing. Sales wants the new tiers in the beta.\n",
            "Dana: No, pricing waits for the board review at the end of the month. Tom, can you tell sales today?\n",
            "Tom: Will do.\n",
            "Mei: Who writes the beta docs?\n",
            "Dana: I will, first draft by the 10th. Raj, review it?\n",
            "Raj: Sure, by the 12th.\n",
            "Mei: And the support macros for the beta?\n",
            "Dana: Good point, nobody has that. Let's ask Carla's team; I'll email her.\n",
            "Raj: One risk: the SSO provider deprecates the old endpoint on the 20th.\n",
            "Dana: Then that migration is a must before the 20th. Raj, estimate by Friday?\n",
            "Raj: Yes.",
        ),
    ),
    (
        Kind::Reasoning,
        concat!(
            "This Rust service sometimes deadlocks under load. Find every bug, explain the exact interleaving that deadlocks, ",
            "and give a corrected version.\n\n",
            "struct Pool { idle: Mutex<Vec<Conn>>, stats: Mutex<Stats>, limit: usize }\n",
            "impl Pool {\n",
            "    fn get(&self) -> Conn {\n",
            "        let mut stats = self.stats.lock().unwrap();\n",
            "        let mut idle = self.idle.lock().unwrap();\n",
            "        stats.requests += 1;\n",
            "        if let Some(c) = idle.pop() { return c; }\n",
            "        while stats.open >= self.limit { drop(idle); std::thread::sleep(Duration::from_millis(5)); idle = self.idle.lock().unwrap(); }\n",
            "        stats.open += 1;\n",
            "        Conn::connect()\n",
            "    }\n",
            "    fn put(&self, c: Conn) {\n",
            "        let mut idle = self.idle.lock().unwrap();\n",
            "        if c.is_broken() {\n",
            "            let mut stats = self.stats.lock().unwrap();\n",
            "            stats.open -= 1;\n",
            "            return;\n",
            "        }\n",
            "        idle.push(c);\n",
            "    }\n",
            "}\n",
            "Callers run get() and put() from 64 threads; the limit is 16.",
        ),
    ),
    (
        Kind::Reasoning,
        concat!(
            "Plan the cheapest schedule. Five jobs must run on two machines; a job cannot be split, and a job may start only ",
            "after its dependencies finish.\n",
            "Job A: 3 h, no dependency. Job B: 2 h, after A. Job C: 4 h, no dependency. Job D: 1 h, after B and C. ",
            "Job E: 2 h, after C.\n",
            "Machine 1 costs $10 per hour, machine 2 costs $16 per hour and is 25% faster on every job. Machines are paid ",
            "only while running a job. Find the schedule that finishes by hour 8 at the lowest cost, prove that no cheaper ",
            "schedule meets the deadline, and say how the answer changes if the deadline is hour 7.",
        ),
    ),
];

/// A prompt for a dry run of `POST /v1/route`, with the override header it carries.
#[derive(Debug, Clone, Copy)]
pub struct DryRunPrompt {
    pub kind: Kind,
    pub text: &'static str,
    pub header: Option<(&'static str, &'static str)>,
}

const EULER: &str = "Prove that every connected graph in which all vertices have even degree has an Euler circuit, and give an O(E) algorithm to construct one.";

/// Dry runs of `POST /v1/route`, from easy to hard; the last asks the hardest question with
/// the tier capped at Haiku.
pub const DRY_RUNS: &[DryRunPrompt] = &[
    DryRunPrompt { kind: Kind::Chat, text: "Say thank you in Japanese.", header: None },
    DryRunPrompt {
        kind: Kind::Email,
        text: "Draft a polite reminder to a vendor about an invoice that is 30 days overdue.",
        header: None,
    },
    DryRunPrompt { kind: Kind::Code, text: "Implement an LRU cache in Go with O(1) get and put.", header: None },
    DryRunPrompt { kind: Kind::Reasoning, text: EULER, header: None },
    DryRunPrompt { kind: Kind::Reasoning, text: EULER, header: Some(("x-route-max-tier", "haiku")) },
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn prompts_are_many_and_distinct() {
        assert!(PROMPTS.len() >= 100, "{}", PROMPTS.len());
        let distinct: HashSet<&str> = PROMPTS.iter().map(|(_, p)| *p).collect();
        assert_eq!(distinct.len(), PROMPTS.len());
    }

    #[test]
    fn the_mix_has_easy_hard_and_long_prompts() {
        let count = |kind: Kind| PROMPTS.iter().filter(|(k, _)| *k == kind).count();
        assert!(count(Kind::Chat) >= 10);
        assert!(count(Kind::Reasoning) >= 10);
        assert!(PROMPTS.iter().filter(|(_, p)| p.len() > 1_000).count() >= 3);
        assert!(PROMPTS.iter().all(|(_, p)| !p.trim().is_empty()));
    }

    #[test]
    fn dry_runs_go_from_easy_to_hard_and_one_is_capped() {
        assert!(DRY_RUNS.len() >= 5);
        assert_eq!(DRY_RUNS.first().map(|d| d.kind), Some(Kind::Chat));
        assert!(DRY_RUNS.iter().any(|d| d.header == Some(("x-route-max-tier", "haiku"))));
        assert!(DRY_RUNS.iter().all(|d| PROMPTS.iter().any(|(_, p)| *p == d.text)), "dry runs reuse workload prompts");
    }
}
