//! `vigil-flaky-http`: an HTTP/1.1 server whose status code tests can change at any time.
//!
//! `--port N` (0 = ephemeral) `[--bind ADDR]` (default 127.0.0.1) `[--port-file PATH]`
//! (the bound port, written atomically) `[--status-file PATH]` (read on every request: an
//! integer status code; missing = 200, unparsable = 500). Every path answers that status
//! with body `ok\n` (below 400) or `fail\n`, `Connection: close`, one thread per
//! connection. SIGTERM ends it (the default disposition: nothing to clean up).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

struct Args {
    bind: IpAddr,
    port: u16,
    port_file: Option<PathBuf>,
    status_file: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        port_file: None,
        status_file: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => args.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--bind" => args.bind = value()?.parse().map_err(|e| format!("--bind: {e}"))?,
            "--port-file" => args.port_file = Some(value()?.into()),
            "--status-file" => args.status_file = Some(value()?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-flaky-http: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let listener = TcpListener::bind((args.bind, args.port)).map_err(|e| format!("bind: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    if let Some(path) = &args.port_file {
        write_atomically(path, &format!("{port}\n"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let status_file = args.status_file.clone();
        std::thread::spawn(move || {
            // A client that goes away mid-request is its own problem.
            let _ = handle(stream, status_file.as_deref());
        });
    }
    Ok(())
}

fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn handle(stream: TcpStream, status_file: Option<&Path>) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let method = request_line.split(' ').next().unwrap_or("GET").to_owned();
    let mut content_length = 0u64;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().unwrap_or(0);
        }
    }
    io::copy(&mut reader.by_ref().take(content_length), &mut io::sink())?;

    let code = current_status(status_file);
    let body = if code < 400 { "ok\n" } else { "fail\n" };
    let mut out = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(code),
        body.len()
    );
    if method != "HEAD" {
        out.push_str(body);
    }
    let mut stream = stream;
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

fn current_status(status_file: Option<&Path>) -> u16 {
    let Some(path) = status_file else { return 200 };
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().unwrap_or(500),
        Err(_) => 200,
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
