//! The services a batch job talks to: S3 for its input and output, EventBridge for its state
//! changes. Both are reached through the real SDK clients, pointed at moto offline.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::config::BatchConfig;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0} is not an S3 URI (s3://bucket/key)")]
    BadUri(String),
    #[error("S3 {operation} of s3://{bucket}/{key} failed: {message}")]
    S3 { operation: &'static str, bucket: String, key: String, message: String },
    #[error("EventBridge PutEvents failed: {0}")]
    Events(String),
}

/// `s3://bucket/key` split into its bucket and key (the key may be empty or a prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
}

impl S3Location {
    pub fn parse(uri: &str) -> Result<S3Location, StorageError> {
        let rest = uri.strip_prefix("s3://").ok_or_else(|| StorageError::BadUri(uri.to_owned()))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StorageError::BadUri(uri.to_owned()));
        }
        Ok(S3Location { bucket: bucket.to_owned(), key: key.to_owned() })
    }

    /// The key of `name` inside this location taken as a folder.
    pub fn child(&self, name: &str) -> String {
        let base = self.key.trim_end_matches('/');
        if base.is_empty() { name.to_owned() } else { format!("{base}/{name}") }
    }
}

fn endpoint(configured: &Option<String>, service_var: &str) -> Option<String> {
    configured
        .clone()
        .or_else(|| std::env::var(service_var).ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|url| !url.is_empty())
}

/// The emulator signs with fixed credentials: it only ever talks to an offline stand-in,
/// which checks no signature, and reading the caller's real credentials could only reach AWS.
fn credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "bedrock-emulator")
}

#[derive(Debug, Clone)]
pub struct Storage {
    s3: aws_sdk_s3::Client,
    events: aws_sdk_eventbridge::Client,
    event_bus: String,
}

/// One input object found under a job's input URI.
#[derive(Debug, Clone)]
pub struct InputObject {
    pub key: String,
    pub size: u64,
}

impl Storage {
    pub fn new(config: &BatchConfig) -> Storage {
        let region = Region::new(config.region.clone());
        let mut s3 = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region.clone())
            .credentials_provider(credentials())
            // moto serves buckets by path, and the output must not depend on DNS tricks.
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(url) = endpoint(&config.s3_endpoint_url, "AWS_ENDPOINT_URL_S3") {
            s3 = s3.endpoint_url(url);
        }
        let mut events = aws_sdk_eventbridge::Config::builder()
            .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
            .region(aws_sdk_eventbridge::config::Region::new(config.region.clone()))
            .credentials_provider(aws_sdk_eventbridge::config::Credentials::new(
                "test",
                "test",
                None,
                None,
                "bedrock-emulator",
            ));
        if let Some(url) = endpoint(&config.eventbridge_endpoint_url, "AWS_ENDPOINT_URL_EVENTBRIDGE") {
            events = events.endpoint_url(url);
        }
        Storage {
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            events: aws_sdk_eventbridge::Client::from_conf(events.build()),
            event_bus: config.event_bus.clone(),
        }
    }

    /// The `.jsonl` objects a job reads: the object itself when the URI names one, else every
    /// `.jsonl` object under the prefix, in key order.
    pub async fn list_inputs(&self, at: &S3Location) -> Result<Vec<InputObject>, StorageError> {
        let failed = |message: String| StorageError::S3 {
            operation: "ListObjectsV2",
            bucket: at.bucket.clone(),
            key: at.key.clone(),
            message,
        };
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(&at.bucket)
                .prefix(&at.key)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let size = u64::try_from(object.size().unwrap_or(0)).unwrap_or(0);
                if key == at.key {
                    return Ok(vec![InputObject { key: key.to_owned(), size }]);
                }
                let inside = at.key.is_empty() || at.key.ends_with('/') || key[at.key.len()..].starts_with('/');
                if inside && key.ends_with(".jsonl") {
                    found.push(InputObject { key: key.to_owned(), size });
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, StorageError> {
        let failed = |message: String| StorageError::S3 {
            operation: "GetObject",
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            message,
        };
        let object = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        let body = object.body.collect().await.map_err(|e| failed(e.to_string()))?;
        Ok(body.into_bytes().to_vec())
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), StorageError> {
        self.s3.put_object().bucket(bucket).key(key).body(ByteStream::from(body)).send().await.map_err(|e| {
            StorageError::S3 {
                operation: "PutObject",
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
            }
        })?;
        Ok(())
    }

    /// A writer of the object `bucket/key` that holds at most about `part_bytes` of it.
    pub fn writer(&self, bucket: &str, key: &str, part_bytes: u64) -> ObjectWriter<'_> {
        ObjectWriter {
            storage: self,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            part_bytes: usize::try_from(part_bytes).unwrap_or(usize::MAX),
            buffer: Vec::new(),
            upload: None,
        }
    }

    /// Sends one event to the configured bus, as Bedrock does on each state change.
    pub async fn publish(&self, event: &Event) -> Result<(), StorageError> {
        let entry = PutEventsRequestEntry::builder()
            .source("aws.bedrock")
            .detail_type("Batch Inference Job State Change")
            .resources(event.resource.clone())
            .detail(event.detail.to_string())
            .event_bus_name(&self.event_bus)
            .build();
        let out = self
            .events
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| StorageError::Events(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string()))?;
        if out.failed_entry_count() > 0 {
            let reason = out.entries().iter().filter_map(|e| e.error_message()).collect::<Vec<_>>().join("; ");
            return Err(StorageError::Events(reason));
        }
        Ok(())
    }
}

/// An object written as it is produced: each time `part_bytes` have accumulated they go up
/// as the next part of a multipart upload, so a job's output is never held whole. An object
/// that never fills a part is written with one PutObject at [`ObjectWriter::finish`].
#[derive(Debug)]
pub struct ObjectWriter<'a> {
    storage: &'a Storage,
    bucket: String,
    key: String,
    part_bytes: usize,
    buffer: Vec<u8>,
    upload: Option<Upload>,
}

#[derive(Debug)]
struct Upload {
    id: String,
    parts: Vec<CompletedPart>,
}

impl ObjectWriter<'_> {
    fn failed(&self, operation: &'static str, message: String) -> StorageError {
        StorageError::S3 { operation, bucket: self.bucket.clone(), key: self.key.clone(), message }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= self.part_bytes {
            self.upload_part().await?;
        }
        Ok(())
    }

    async fn upload_part(&mut self) -> Result<(), StorageError> {
        let s3 = &self.storage.s3;
        if self.upload.is_none() {
            let created =
                s3.create_multipart_upload().bucket(&self.bucket).key(&self.key).send().await.map_err(|e| {
                    self.failed("CreateMultipartUpload", aws_sdk_s3::error::DisplayErrorContext(e).to_string())
                })?;
            let id = created
                .upload_id()
                .ok_or_else(|| self.failed("CreateMultipartUpload", "no upload ID in the answer".to_owned()))?;
            self.upload = Some(Upload { id: id.to_owned(), parts: Vec::new() });
        }
        let Some(upload) = &self.upload else { return Ok(()) };
        let number = i32::try_from(upload.parts.len() + 1)
            .map_err(|_| self.failed("UploadPart", "too many parts".to_owned()))?;
        let body = std::mem::take(&mut self.buffer);
        let sent = s3
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload.id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.failed("UploadPart", aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        let part = CompletedPart::builder().part_number(number).set_e_tag(sent.e_tag().map(str::to_owned)).build();
        if let Some(upload) = &mut self.upload {
            upload.parts.push(part);
        }
        Ok(())
    }

    /// Writes what is left and makes the object visible.
    pub async fn finish(&mut self) -> Result<(), StorageError> {
        if self.upload.is_none() {
            let body = std::mem::take(&mut self.buffer);
            return self.storage.put(&self.bucket, &self.key, body).await;
        }
        if !self.buffer.is_empty() {
            self.upload_part().await?;
        }
        let Some(upload) = self.upload.take() else { return Ok(()) };
        let done = CompletedMultipartUpload::builder().set_parts(Some(upload.parts)).build();
        self.storage
            .s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload.id)
            .multipart_upload(done)
            .send()
            .await
            .map_err(|e| {
                self.failed("CompleteMultipartUpload", aws_sdk_s3::error::DisplayErrorContext(e).to_string())
            })?;
        Ok(())
    }

    /// Gives up the object: the parts sent so far are deleted, nothing becomes visible.
    pub async fn abort(&mut self) {
        self.buffer.clear();
        let Some(upload) = self.upload.take() else { return };
        let aborted = self
            .storage
            .s3
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload.id)
            .send()
            .await;
        // An upload left behind only costs storage until the bucket's lifecycle removes it.
        if let Err(e) = aborted {
            tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(e), key = %self.key, "multipart upload not aborted");
        }
    }
}

/// A "Batch Inference Job State Change" event, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub resource: String,
    pub detail: serde_json::Value,
    pub terminal: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_uris_split_into_bucket_and_key() {
        let at = S3Location::parse("s3://in/jobs/a.jsonl").unwrap();
        assert_eq!((at.bucket.as_str(), at.key.as_str()), ("in", "jobs/a.jsonl"));
        assert_eq!(S3Location::parse("s3://out").unwrap().child("j1/manifest.json.out"), "j1/manifest.json.out");
        assert_eq!(S3Location::parse("s3://out/p/").unwrap().child("j1"), "p/j1");
        assert!(S3Location::parse("https://x/y").is_err());
        assert!(S3Location::parse("s3:///k").is_err());
    }
}
