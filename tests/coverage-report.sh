#!/usr/bin/env bash
# Line coverage of spate's modules from the .gcda files of a coverage build (`make coverage`,
# which builds with the coverage preset and runs the suite first). Usage: coverage-report.sh BUILD
#
# Writes into BUILD/coverage/:
#   summary.txt           one line per module: lines covered, lines in all, percentage
#   <module>.txt          per file of the module: lines, covered, %, and the lines never run
#   <module>/index.html   the same as HTML, each file's source annotated line by line
#   index.html            every module together
# Modules: the top-level folders, with core/ split into its parts (core/smtp is the SMTP codec,
# core/ alone the reactor, shards, config and main). Tests, benchmarks and generated sources are
# left out: they are not what the tests are meant to reach.
set -euo pipefail

build=${1:?usage: coverage-report.sh BUILD}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out="$build/coverage"
rm -rf "$out"
mkdir -p "$out"

modules=(core/smtp core/server core/auth core/tls core queue delivery metrics)
# A module's files: core is only the files directly in core/, the others a folder each.
filter() {
  if [ "$1" = core ]; then echo '^core/[^/]+$'; else echo "^$1/"; fi
}

# One pass of gcov over every .gcda; the reports below read its JSON. core/task.h is left out:
# gcovr 5.2 cannot parse gcov's report of its templates (it hangs with -j 2 on the error); its
# lines are reached through the reactor's tests anyway.
gcovr --root . "$build" -j 2 --gcov-ignore-parse-errors --gcov-exclude '.*task\.h.*' --exclude '^tests/' --exclude '^bench/' --exclude "^$build/" \
  --json "$out/coverage.json"
gcovr --add-tracefile "$out/coverage.json" --root . --html-details "$out/index.html" \
  --html-title "spate: line coverage" >/dev/null

printf '%-12s %8s %8s %7s\n' module covered lines cover >"$out/summary.txt"
for m in "${modules[@]}"; do
  name=${m//\//-}
  mkdir -p "$out/$name"
  gcovr --add-tracefile "$out/coverage.json" --root . --filter "$(filter "$m")" \
    --txt "$out/$name.txt" --html-details "$out/$name/index.html" \
    --html-title "spate: line coverage of $m/"
  # The TOTAL line of the text report: TOTAL <lines> <covered> <percent>%
  read -r lines covered < <(awk '$1 == "TOTAL" { print $2, $3 }' "$out/$name.txt")
  label="$m/"
  [ "$m" = core ] && label="core/*"  # its own files, not its subfolders
  awk -v m="$label" -v c="$covered" -v l="$lines" \
    'BEGIN { printf "%-12s %8d %8d %6.1f%%\n", m, c, l, l ? 100 * c / l : 0 }' >>"$out/summary.txt"
done

awk 'NR > 1 { c += $2; l += $3 }
     END { printf "%-12s %8d %8d %6.1f%%\n", "all", c, l, l ? 100 * c / l : 0 }' \
  "$out/summary.txt" >>"$out/summary.txt.all"
cat "$out/summary.txt.all" >>"$out/summary.txt"
rm "$out/summary.txt.all"
cat "$out/summary.txt"
echo "coverage: per-module reports in $out/ (open $out/index.html)"
