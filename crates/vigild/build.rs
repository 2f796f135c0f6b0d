//! Links GCC's unwinder into `vigil` statically instead of loading `libgcc_s.so.1`.
//!
//! Rust's std asks the linker for `-lgcc_s` on glibc targets (unless `crt-static`). Loading
//! that library costs every run of `vigil` its mapping and symbol lookups, and its
//! constructor (`__cpu_indicator_init`) runs `cpuid` several times: on the VMs Vigil was
//! measured on, each `cpuid` traps to the hypervisor (7.7 µs). One-shot `vigil check` is
//! run by cron every minute; docs/BENCHMARKS.md ("One-shot `vigil check`: what runs
//! before the check") has the measurement. The same unwinder, as the static archive
//! `libgcc_eh.a`, is what `gcc -static-libgcc` and Rust's own `crt-static` builds link:
//! it finds the unwind tables through `dl_iterate_phdr`, so panics and backtraces behave
//! as before (tests/static_unwinder.rs).
//!
//! How: a linker script named `libgcc_s.so` in a directory searched before the system's,
//! which hands the linker `libgcc_eh.a` instead. Only for glibc targets without
//! `crt-static` (musl and static builds link the archive already), and only where the
//! archive exists; otherwise the build links as before.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Set when the unwinder is linked statically (tests/static_unwinder.rs checks it).
    println!("cargo::rustc-check-cfg=cfg(vigil_static_libgcc)");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let glibc = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    let crt_static = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    if !glibc || crt_static || !gcc_has_libgcc_eh() {
        return;
    }
    let dir = PathBuf::from(var("OUT_DIR")).join("static-libgcc");
    fs::create_dir_all(&dir).expect("create OUT_DIR/static-libgcc");
    fs::write(
        dir.join("libgcc_s.so"),
        "/* vigild/build.rs: GCC's unwinder from the static archive, not libgcc_s.so.1 */\n\
         INPUT ( -lgcc_eh )\n",
    )
    .expect("write OUT_DIR/static-libgcc/libgcc_s.so");
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-cfg=vigil_static_libgcc");
}

/// Whether the C compiler that links (`cc`, as rustc calls it) has `libgcc_eh.a`.
fn gcc_has_libgcc_eh() -> bool {
    #[expect(
        clippy::disallowed_methods,
        reason = "a build script asks the C compiler, at build time"
    )]
    let out = std::process::Command::new("cc")
        .arg("-print-file-name=libgcc_eh.a")
        .output();
    match out {
        // gcc prints the bare name back when it has no such file.
        Ok(out) if out.status.success() => {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            path != "libgcc_eh.a" && PathBuf::from(path).is_file()
        }
        _ => false,
    }
}
