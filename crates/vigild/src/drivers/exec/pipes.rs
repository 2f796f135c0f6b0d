//! A supervised process's stdout/stderr: read from its pipe, cut into lines, and routed
//! into Vigil's log (prefixed with the service; under journald, entries of the service's
//! own, `observe::log::output`) or appended to a file rotated by size.
//! Every line also goes to the service's [`OutputLog`] (`vigil logs`, hang evidence).
//!
//! Memory matters with hundreds of idle services: a pipe costs one registration and an
//! empty line buffer; reads go through one shared scratch buffer.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use tokio::net::unix::pipe;
use vigil_config::model::OutputTarget;
use vigil_core::ServiceName;

use super::output::OutputLog;
use crate::observe::log;
use crate::platform::clock;

/// How long a line may be (longer ones are cut).
const MAX_LINE: usize = 1024;

pub use crate::observe::log::Stream;

/// A rotating output file: `PATH`, then `PATH.1` (newest) .. `PATH.keep`.
pub struct RotatingFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
    keep: u32,
}

impl RotatingFile {
    pub fn new(path: PathBuf, max: u64, keep: u32) -> RotatingFile {
        RotatingFile {
            path,
            file: None,
            size: 0,
            max,
            keep,
        }
    }

    fn open(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
            self.file = Some(f);
        }
        match self.file.as_mut() {
            Some(f) => Ok(f),
            None => Err(std::io::Error::other("output file not open")),
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let name = |i: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        let _ = std::fs::remove_file(name(self.keep));
        for i in (1..self.keep).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        std::fs::rename(&self.path, name(1))?;
        self.size = 0;
        Ok(())
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.open()?;
        if self.size > 0 && self.size + bytes.len() as u64 > self.max {
            self.rotate()?;
        }
        let f = self.open()?;
        f.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }
}

enum Sink {
    Log,
    File(RotatingFile),
}

/// One routed stream.
pub struct Pipe {
    fd: pipe::Receiver,
    stream: Stream,
    sink: Sink,
    /// An unterminated line carried over to the next read.
    partial: Vec<u8>,
}

impl Pipe {
    pub fn new(
        fd: OwnedFd,
        stream: Stream,
        target: &OutputTarget,
        max: u64,
        keep: u32,
    ) -> std::io::Result<Pipe> {
        let sink = match target {
            OutputTarget::File(path) => Sink::File(RotatingFile::new(path.clone(), max, keep)),
            OutputTarget::Log | OutputTarget::Null => Sink::Log,
        };
        Ok(Pipe {
            fd: pipe::Receiver::from_owned_fd(fd)?,
            stream,
            sink,
            partial: Vec::new(),
        })
    }

    /// Resolves when the pipe may be read; [`Pipe::pump`] reads it.
    pub async fn readable(&self) {
        if self.fd.readable().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// [`Pipe::readable`] for a hand-written poll loop.
    pub fn poll_readable(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match self.fd.poll_read_ready(cx) {
            std::task::Poll::Ready(Ok(())) => std::task::Poll::Ready(()),
            std::task::Poll::Ready(Err(_)) | std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    /// Reads what is available; `false` once the pipe is closed (EOF or error).
    pub fn pump(&mut self, service: &ServiceName, output: &OutputLog) -> bool {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
        }
        SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            for _ in 0..16 {
                // try_read clears the readiness when the pipe is empty (EAGAIN).
                match self.fd.try_read(&mut buf[..]) {
                    Ok(0) => {
                        self.flush_partial(service, output);
                        return false;
                    }
                    Ok(n) => self.consume(&buf[..n], service, output),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.flush_partial(service, output);
                        return false;
                    }
                }
            }
            true
        })
    }

    fn consume(&mut self, data: &[u8], service: &ServiceName, output: &OutputLog) {
        if let Sink::File(f) = &mut self.sink
            && let Err(error) = f.write(data)
        {
            tracing::warn!(service = %service, event = "output_error", stream = self.stream.as_str(), %error, "cannot write the service's output file");
        }
        let mut rest = data;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            let (line, tail) = rest.split_at(i);
            rest = &tail[1..];
            if self.partial.is_empty() {
                self.line(line, service, output);
            } else {
                let mut joined = std::mem::take(&mut self.partial);
                joined.extend_from_slice(line);
                self.line(&joined, service, output);
            }
        }
        if !rest.is_empty() {
            let room = MAX_LINE.saturating_sub(self.partial.len());
            self.partial
                .extend_from_slice(&rest[..rest.len().min(room)]);
        }
    }

    fn flush_partial(&mut self, service: &ServiceName, output: &OutputLog) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line, service, output);
        }
    }

    fn line(&self, line: &[u8], service: &ServiceName, output: &OutputLog) {
        let line = &line[..line.len().min(MAX_LINE)];
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        if matches!(self.sink, Sink::Log) {
            log::output(service, self.stream, text);
        }
        output.push(self.stream, clock::now(), text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut f = RotatingFile::new(path.clone(), 10, 2);
        for chunk in ["aaaaaaaa\n", "bbbbbbbb\n", "cccccccc\n", "dddddddd\n"] {
            f.write(chunk.as_bytes()).unwrap();
        }
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "dddddddd\n");
        assert_eq!(read(&dir.path().join("out.log.1")), "cccccccc\n");
        assert_eq!(read(&dir.path().join("out.log.2")), "bbbbbbbb\n");
        assert!(!dir.path().join("out.log.3").exists());
    }
}
