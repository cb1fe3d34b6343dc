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
        }
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
}
