#!/usr/bin/env bash
# Scan benchmark: picket-agent scan (YARA-X) side by side with the yara CLI
# (libyara, Debian package `yara`), same rules, same files, same threads,
# alternating runs so both see the same page-cache and machine noise.
#   bench/run-scan.sh [TARGET_DIR] [RULESET] [RUNS]
# RULESET: reversinglabs or signature-base (from ../shared/corpus/yara).
# Both tools get the external variables public rule sets use.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-/usr/lib/x86_64-linux-gnu}
ruleset=${2:-reversinglabs}
runs=${3:-3}
rules=../shared/corpus/yara/$ruleset
command -v yara >/dev/null || { apt-get update -qq && apt-get install -y -qq yara; }
cargo build --release --locked -q -p picket-agent
threads=$(nproc)
mapfile -t rule_files < <(find "$rules" -name '*.yara' -o -name '*.yar' | sort)
externals=(-d filename= -d filepath= -d extension= -d filetype= -d owner=)
files=$(find "$target" -type f | wc -l)
bytes=$(du -sb "$target" | cut -f1)
echo "target $target: $files files, $((bytes / 1048576)) MiB; $ruleset: ${#rule_files[@]} rule files; $threads threads" >&2
# Warm the page cache once so neither tool pays for cold reads.
find "$target" -type f -size -256M -print0 | xargs -0 cat > /dev/null 2>&1 || true
times=$(mktemp)
for i in $(seq 1 "$runs"); do
    /usr/bin/time -a -o "$times" -f "picket-agent run $i: %e s, %M KiB max RSS" \
        target/release/picket-agent scan "$target" --rules "$rules" --cpu-percent 100 --json > /tmp/picket-scan.json || true
    echo "picket-agent run $i: scanning alone $(grep -o '"seconds": [0-9.]*' /tmp/picket-scan.json | cut -d' ' -f2) s" >> "$times"
    /usr/bin/time -a -o "$times" -f "yara         run $i: %e s, %M KiB max RSS" \
        yara -r -p "$threads" "${externals[@]}" "${rule_files[@]}" "$target" > /tmp/yara-scan.txt 2>/tmp/yara-scan.err || true
done
cat "$times" >&2
echo "picket-agent detections: $(grep -c '"rule"' /tmp/picket-scan.json); yara matches: $(wc -l < /tmp/yara-scan.txt); yara errors: $(wc -l < /tmp/yara-scan.err)" >&2
