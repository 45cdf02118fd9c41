//! Streaming in constant memory: 200 000 findings from a generator, never all in memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, Read};
use std::time::Instant;

use writ_core::finding::SourceFormat;
use writ_formats::{FindingReader, ParseOptions};

/// A `BufRead` that produces a JSON array of `total` native findings, one finding at a time.
struct Generator {
    next: u64,
    total: u64,
    buf: Vec<u8>,
    pos: usize,
    finished: bool,
    produced: u64,
}

impl Generator {
    fn new(total: u64) -> Self {
        Self {
            next: 0,
            total,
            buf: b"[\n".to_vec(),
            pos: 0,
            finished: false,
            produced: 0,
        }
    }

    fn refill(&mut self) {
        self.buf.clear();
        self.pos = 0;
        if self.next < self.total {
            let i = self.next;
            self.next += 1;
            let sep = if i + 1 < self.total { ",\n" } else { "\n]\n" };
            self.buf.extend_from_slice(
                format!(
                    r#"  {{"finding_type": "iam_user_accesskey_unused", "severity": "medium", "confidence": 0.875, "subject": {{"system": "aws:123456789012", "external_id": "svc-{i}/AccessKey1", "kind": "api_key"}}, "observed_at": "2026-11-23T15:45:30Z", "title": "key {i} unused \"for\" 200 days [{{}}]", "idempotency_key": "k-{i}", "details": {{"n": {i}, "tags": ["a", "b"]}}}}{sep}"#
                )
                .as_bytes(),
            );
        } else {
            self.finished = true;
        }
    }
}

impl Read for Generator {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let buf = self.fill_buf()?;
            let n = buf.len().min(out.len());
            out[..n].copy_from_slice(&buf[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Generator {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos >= self.buf.len() && !self.finished {
            self.refill();
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt;
        self.produced += amt as u64;
    }
}

/// The process's peak resident memory in KiB (Linux), if known.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn streams_200k_findings_in_constant_memory() {
    const N: u64 = 200_000;
    let rss_before = peak_rss_kib();
    let generator = Generator::new(N);
    let start = Instant::now();
    let mut reader = FindingReader::new(generator, SourceFormat::Native, ParseOptions::default());
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut last_line = 0;
    for item in reader.by_ref() {
        let f = item.unwrap();
        assert!(f.line > last_line);
        last_line = f.line;
        bytes += f.evidence.len() as u64;
        count += 1;
    }
    let elapsed = start.elapsed();
    assert_eq!(count, N);
    assert_eq!(reader.report().parsed, N);
    assert_eq!(last_line, N + 1);
    let rate = count as f64 / elapsed.as_secs_f64();
    if let (Some(before), Some(after)) = (rss_before, peak_rss_kib()) {
        println!("peak RSS {before} KiB before, {after} KiB after");
        // The input is ~75 MB; holding it (or the findings) would show here.
        assert!(
            after.saturating_sub(before) < 32 * 1024,
            "peak memory grew by {} KiB",
            after - before
        );
        assert!(bytes > 50_000_000);
    }
    println!(
        "streamed {count} findings ({:.1} MB of evidence) in {:.2?}: {rate:.0} findings/s, {:.1} MB/s",
        bytes as f64 / 1e6,
        elapsed,
        bytes as f64 / 1e6 / elapsed.as_secs_f64()
    );
}
