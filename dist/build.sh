#!/usr/bin/env bash
# Builds what Vigil ships, with the `dist` profile (fat LTO, one codegen unit):
#   dist/build.sh [deb] [tarball]        (both when none is named)
# - deb: target/packages/vigil_VERSION-1_amd64.deb, built by `cargo deb` from the
#   metadata in crates/vigild/Cargo.toml (glibc; users and groups through NSS);
# - tarball: target/packages/vigil-VERSION-x86_64-linux-musl.tar.gz and its .sha256:
#   a static binary (musl) for any x86_64 Linux, with the unit file, man pages,
#   completions, an example configuration and the licenses.
# Man pages and completions come from the clap definitions (`vigil __dist-assets`).
# Needs: cargo-deb (`cargo install cargo-deb --locked`), the musl target
# (`rustup target add x86_64-unknown-linux-musl`) and musl-tools (musl-gcc, for SQLite and
# ring's C code). PROFILE=release builds a quicker, larger package for testing.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-dist}
MUSL=x86_64-unknown-linux-musl
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
OUT=${VIGIL_PACKAGES_DIR:-$TARGET_DIR/packages}
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(deb tarball)
for w in "${want[@]}"; do
  case "$w" in deb|tarball) ;; *) echo "usage: dist/build.sh [deb] [tarball]" >&2; exit 2 ;; esac
done
mkdir -p "$OUT"
log() { echo "dist/build.sh: $*" >&2; }

for w in "${want[@]}"; do
  case "$w" in
  deb)
    command -v cargo-deb >/dev/null || { log "cargo-deb is missing: cargo install cargo-deb --locked"; exit 1; }
    log "building the .deb's binary (profile $PROFILE)"
    cargo build --locked --profile "$PROFILE" -p vigild
    bin=$TARGET_DIR/$PROFILE/vigil
    # cargo-deb reads generated assets from target/release/assets, which it maps to
    # this profile's directory.
    rm -rf "$TARGET_DIR/$PROFILE/assets"
    "$bin" __dist-assets "$TARGET_DIR/$PROFILE/assets"
    gzip -9n "$TARGET_DIR/$PROFILE/assets/man/"*.1   # Debian installs man pages compressed
    cargo deb -p vigild --profile "$PROFILE" --no-build --output "$OUT" >&2
    ls -1 "$OUT"/vigil_*.deb
    ;;
  tarball)
    rustup target list --installed 2>/dev/null | grep -qx "$MUSL" \
      || { log "the $MUSL target is missing: rustup target add $MUSL"; exit 1; }
    command -v musl-gcc >/dev/null || { log "musl-gcc is missing: apt-get install musl-tools"; exit 1; }
    log "building the static binary (profile $PROFILE, $MUSL)"
    # SQLite (rusqlite's bundled copy) and ring are C: compile them against musl too.
    CC_x86_64_unknown_linux_musl=musl-gcc \
      cargo build --locked --profile "$PROFILE" -p vigild --target "$MUSL"
    bin=$TARGET_DIR/$MUSL/$PROFILE/vigil
    version=$("$bin" --version | awk '{print $2}')
    name=vigil-$version-x86_64-linux-musl
    stage=$TARGET_DIR/$MUSL/$PROFILE/$name
    rm -rf "$stage"
    mkdir -p "$stage"
    install -m 755 "$bin" "$stage/vigil"
    "$bin" __dist-assets "$stage"
    # The packaged unit, for a binary installed as /usr/local/bin/vigil.
    sed 's|^ExecStart=/usr/bin/vigil |ExecStart=/usr/local/bin/vigil |' \
      crates/vigild/package/vigil.service > "$stage/vigil.service"
    cp crates/vigild/package/vigil.toml "$stage/vigil.toml"
    cp README.md CHANGELOG.md LICENSE-MIT LICENSE-APACHE "$stage/"
    # Reproducible: sorted names, no owner, the last commit's time.
    mtime=$(git log -1 --format=%ct 2>/dev/null || date +%s)
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" \
      -C "$(dirname "$stage")" -czf "$OUT/$name.tar.gz" "$name"
    (cd "$OUT" && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
    ls -1 "$OUT/$name.tar.gz" "$OUT/$name.tar.gz.sha256"
    ;;
  esac
done
