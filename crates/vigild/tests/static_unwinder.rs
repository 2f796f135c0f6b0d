//! `vigil` links GCC's unwinder statically instead of loading `libgcc_s.so.1` (build.rs:
//! its constructor's `cpuid`s trap on a VM and cost every one-shot run). Panics must
//! still unwind, run destructors and be caught, and backtraces must still walk the stack.
//! The test binary is linked the same way as `vigil` (the same package's build script).

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

use std::process::Command;

/// The shared objects a binary loads, as glibc's loader lists them without running it
/// (what `ldd` does).
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    not(target_feature = "crt-static")
))]
fn loaded_objects(binary: &std::path::Path) -> String {
    #[expect(clippy::disallowed_methods, reason = "a test runs the binary directly")]
    let out = Command::new(binary)
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .expect("run the binary under LD_TRACE_LOADED_OBJECTS");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    not(target_feature = "crt-static")
))]
#[test]
fn vigil_and_its_tests_load_libc_but_not_libgcc_s() {
    // A run-time failure, not a build error: tests still build where the C compiler has
    // no libgcc_eh.a, and this one says why the binaries load libgcc_s there.
    let linked_static = std::hint::black_box(cfg!(vigil_static_libgcc));
    assert!(
        linked_static,
        "build.rs linked libgcc_s: the C compiler has no libgcc_eh.a"
    );
    for binary in [
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_vigil")),
        std::env::current_exe().unwrap(),
    ] {
        let objects = loaded_objects(&binary);
        assert!(
            objects.contains("libc.so.6"),
            "{}:\n{objects}",
            binary.display()
        );
        assert!(
            !objects.contains("libgcc_s"),
            "{}:\n{objects}",
            binary.display()
        );
    }
}

struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[inline(never)]
fn panics_three_frames_down(dropped: &std::sync::atomic::AtomicUsize, depth: u32) -> u32 {
    let _guard = Counted(dropped);
    if depth == 0 {
        panic!("deliberate panic at the bottom");
    }
    panics_three_frames_down(dropped, depth - 1) + 1
}

#[test]
fn a_panic_unwinds_through_frames_runs_their_destructors_and_is_caught() {
    let dropped = std::sync::atomic::AtomicUsize::new(0);
    let caught = std::panic::catch_unwind(|| panics_three_frames_down(&dropped, 3));
    let payload = caught.expect_err("the panic is caught");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"deliberate panic at the bottom")
    );
    // One guard per frame: depth 3, 2, 1 and 0.
    assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[test]
fn a_panicking_task_is_reported_to_its_join_handle() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = runtime
        .block_on(async { tokio::spawn(async { panic!("task panic") }).await })
        .expect_err("the task panicked");
    assert!(err.is_panic(), "{err}");
}

#[inline(never)]
fn capture_here() -> String {
    std::backtrace::Backtrace::force_capture().to_string()
}

#[test]
fn a_backtrace_walks_up_to_the_test_that_took_it() {
    let trace = capture_here();
    assert!(trace.contains("capture_here"), "{trace}");
    assert!(
        trace.contains("a_backtrace_walks_up_to_the_test_that_took_it"),
        "{trace}"
    );
}
