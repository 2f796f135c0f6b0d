#!/usr/bin/env bash
# Keeps the workspace's `rust-version` honest without an old toolchain:
# 1. no dependency (for Linux targets) declares a newer `rust-version` than the workspace;
# 2. clippy's `incompatible_msrv` lint (on in `cargo clippy`, which reads `rust-version`)
#    flags any standard library item stabilized after it; `.ci/run` runs clippy.
# How 1.89 was found: rusqlite 0.41, zbus 6 and uuid 1.29 declare 1.89, and the code uses
# `File::try_lock` (1.89; with rust-version 1.88 clippy flags it), let chains (1.88) and
# edition 2024 (1.85). Only this check and clippy run in CI: no 1.89 toolchain is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --locked --filter-platform x86_64-unknown-linux-gnu \
  | python3 -c '
import json, sys
meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
def v(s): return (tuple(int(x) for x in s.split(".")) + (0, 0))[:3]
ours = {p["rust_version"] for p in meta["packages"] if p["id"] in members}
if len(ours) != 1:
    sys.exit(f"the workspace crates disagree on rust-version: {sorted(ours)}")
ours = ours.pop()
newer = sorted((p["rust_version"], p["name"], p["version"]) for p in meta["packages"]
               if p["id"] not in members and p.get("rust_version")
               and v(p["rust_version"]) > v(ours))
if newer:
    for r, n, ver in newer:
        print(f"{n} {ver} needs Rust {r}", file=sys.stderr)
    sys.exit(f"raise the workspace rust-version (now {ours}) or hold these back")
top = max((v(p["rust_version"]), p["rust_version"], p["name"]) for p in meta["packages"]
          if p["id"] not in members and p.get("rust_version"))
print(f"rust-version {ours}: every dependency fits (the newest needs {top[1]}: {top[2]})")
'
