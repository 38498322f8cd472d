#!/usr/bin/env bash
# Bounded, opt-in fuzzing run of every target (see docs/operations.md "Fuzzing").
# Usage: fuzz/run.sh [seconds-per-target] [target...]   (default: 60 s, all targets)
# Uses the nightly toolchain when rustup has one, else stable with RUSTC_BOOTSTRAP=1
# (cargo-fuzz needs nightly-only sanitizer flags). Needs `cargo install cargo-fuzz`.
# Exits non-zero if a target finds a crash; the input is saved under fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(wal_record_reader sstable_block_reader entity_payload_decoder)
fi

if rustup run nightly rustc --version >/dev/null 2>&1; then
    cargo_fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    cargo_fuzz=(cargo fuzz)
fi

for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target: ${seconds}s"
    # -max_len: WAL inputs need room for records spanning 32 KiB log blocks.
    "${cargo_fuzz[@]}" run -O "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1
done
