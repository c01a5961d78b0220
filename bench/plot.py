#!/usr/bin/env python3
"""Turns a run's JSON files into PNGs with gnuplot (Debian's gnuplot-nox).

usage: plot.py DIR [--title T]

DIR holds <target>-blast.json and <target>-sink.json for targets direct, spate, spate-mx,
postfix, haraka (as bench/e2e.py writes them), and the scenario's summary.json. Writes into DIR:
  throughput.png      messages per second over time: accepted (spate-blast) and delivered
                      (spate-sink), one pair of lines per target, from their per-second samples;
  latency-cdf.png     cumulative distribution of the accept latency (end of data to 250) and of
                      the end-to-end latency (X-Blast-Ts to the sink), log-scale milliseconds;
  mta-comparison.png  (with summary.json) the targets side by side: e2e_msgs_per_s as bars on a
                      logarithmic axis, each labelled with its number and spate's multiple of it.
Python standard library only; gnuplot does the drawing.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

TARGETS = ("direct", "spate", "spate-mx", "postfix", "haraka")
COLORS = {"direct": "#7f7f7f", "spate": "#1f77b4", "spate-mx": "#9467bd", "postfix": "#d62728",
          "haraka": "#ff7f0e"}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_series(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(" ".join(f"{v:.6f}" if isinstance(v, float) else str(v) for v in row) + "\n")


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--title", default="")
    a = ap.parse_args(argv)
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        sys.exit("plot.py: gnuplot not found (apt-get install gnuplot-nox)")
    data_dir = os.path.join(a.dir, "plot-data")
    os.makedirs(data_dir, exist_ok=True)

    runs = {}
    for t in TARGETS:
        blast = load(os.path.join(a.dir, f"{t}-blast.json"))
        sink = load(os.path.join(a.dir, f"{t}-sink.json"))
        if blast and sink:
            runs[t] = (blast, sink)
    if not runs:
        sys.exit(f"plot.py: no <target>-blast.json / -sink.json in {a.dir}")

    tp_panels, cdf_plots = [], []
    for t, (blast, sink) in runs.items():
        t0 = blast["start_ns"] / 1e9
        end = max(sink.get("last_message_ns", 0), blast.get("last_accept_ns", 0)) / 1e9
        color = COLORS[t]

        def rates(timeline, key):
            # A sample counts the messages of (unix - width, unix]: drawn as a rate at the middle
            # of its interval, from the blast's start until the last message.
            # The interval is clipped to [blast start, last message]: the sink's first sample
            # started before the blast and its last one ran past the last message.
            out = []
            for s in timeline:
                hi = min(s["unix"], end)
                lo = max(s["unix"] - (s.get("width") or 1.0), t0)
                if hi - lo < 0.05:
                    continue
                out.append(((lo + hi) / 2 - t0, s[key] / (hi - lo)))
            return out
        write_series(os.path.join(data_dir, f"{t}-accepted.dat"),
                     rates(blast["timeline"], "accepted"))
        write_series(os.path.join(data_dir, f"{t}-delivered.dat"),
                     rates(sink["timeline"], "messages"))
        tp_panels.append(
            (t, f"'{data_dir}/{t}-accepted.dat' using 1:2 with linespoints lw 2 pt 7 ps 0.7 "
                f"lc rgb '{color}' title 'accepted/s (spate-blast)', "
                f"'{data_dir}/{t}-delivered.dat' using 1:2 with linespoints lw 2 dt 2 pt 5 "
                f"ps 0.7 lc rgb '#2ca02c' title 'delivered/s (spate-sink)'"))
        for kind, src, dash in (("accept", blast, 1), ("e2e", sink, 2)):
            cdf = src.get("latency_cdf") or []
            if not cdf:
                continue
            write_series(os.path.join(data_dir, f"{t}-{kind}-cdf.dat"),
                         [(ms, frac) for ms, frac in cdf if ms > 0])
            label = "accept (end of data to 250)" if kind == "accept" else \
                "end to end (blast to sink)"
            cdf_plots.append(f"'{data_dir}/{t}-{kind}-cdf.dat' using 1:2 with lines lw 2 "
                             f"dt {dash} lc rgb '{color}' title '{t}: {label}'")

    title = (a.title + ": ") if a.title else ""
    names = {"direct": "spate-blast -> spate-sink (direct, no MTA)",
             "spate": "spate-blast -> spate -> spate-sink",
             "spate-mx": "spate-blast -> spate (routed by MX, 10 sites) -> spate-sink",
             "postfix": "spate-blast -> Postfix -> spate-sink",
             "haraka": "spate-blast -> Haraka -> spate-sink"}
    panels = "\n".join(
        f"set title '{title}{names[t]}'\nplot {plots}" for t, plots in tp_panels)
    script = f"""
set terminal pngcairo size 1100,{300 * len(tp_panels) + 60} font 'sans,10'
set grid
set output '{a.dir}/throughput.png'
set multiplot layout {len(tp_panels)},1
set key outside top center horizontal
set xlabel 'seconds since the blast started'
set ylabel 'messages per second'
set yrange [0:*]
set xrange [0:*]
set format y '%.0f'
{panels}
unset multiplot
set terminal pngcairo size 1100,650 font 'sans,11'
set output '{a.dir}/latency-cdf.png'
set key outside bottom center horizontal maxrows 3
set xrange [*:*]
set title '{title}latency CDF'
set xlabel 'milliseconds (log scale)'
set ylabel 'fraction of messages at or below'
set logscale x
set format x '%g'
set format y '%.2f'
set yrange [0:1]
set ytics 0.1
plot {", ".join(cdf_plots)}
"""
    outputs = [f"{a.dir}/throughput.png", f"{a.dir}/latency-cdf.png"]
    comparison = comparison_script(a.dir, data_dir, title)
    if comparison:
        script += comparison
        outputs.append(f"{a.dir}/mta-comparison.png")
    with open(os.path.join(data_dir, "plots.gp"), "w") as f:
        f.write(script)
    r = subprocess.run([gnuplot], input=script.encode(), capture_output=True)
    if r.returncode != 0:
        sys.exit("plot.py: gnuplot failed: " + r.stderr.decode())
    print("\n".join(outputs))
    return 0


def comparison_script(run_dir, data_dir, title):
    """The gnuplot lines of mta-comparison.png from the scenario's summary.json: one bar per
    target (e2e msgs/s, log scale), or "" when there is no summary or no target in it."""
    summary = load(os.path.join(run_dir, "summary.json"))
    if not summary:
        return ""
    params = summary.get("params", {})
    spate_e2e = (summary.get("spate") or {}).get("e2e_msgs_per_s") or 0
    what = {"direct": "no MTA",
            "spate": "durable spool, fsync" if params.get("durability", True) else "no fsync",
            "spate-mx": "by MX, " + ("fsync" if params.get("durability", True) else "no fsync"),
            "postfix": "queue files, fsync",
            "haraka": "in memory, no fsync"}
    bars = []
    for t in TARGETS:
        r = summary.get(t)
        if not isinstance(r, dict) or not r.get("e2e_msgs_per_s"):
            continue
        e2e = r["e2e_msgs_per_s"]
        label = f"{e2e:,.0f} msg/s"
        if spate_e2e and t not in ("spate", "direct"):
            label += f"\\nspate: {spate_e2e / e2e:,.1f}x this"
        tic = f"{t}\\n({what[t]})\\n{r.get('messages_accepted', 0):,} msgs"
        bars.append((t, e2e, label, tic))
    if not bars:
        return ""
    with open(os.path.join(data_dir, "mta-comparison.dat"), "w") as f:
        for i, (t, e2e, _, _) in enumerate(bars):
            f.write(f"{i} {e2e} {int(COLORS[t][1:], 16)}\n")
    lo = 10 ** math.floor(math.log10(min(b[1] for b in bars)))
    hi = 10 ** math.ceil(math.log10(max(b[1] for b in bars) * 3))
    xtics = ", ".join(f'"{tic}" {i}' for i, (_, _, _, tic) in enumerate(bars))
    # Centred on the bar's top, raised by half its own height (in lines) and a little more.
    labels = "\n".join(f'set label {i + 1} "{label}" at {i},{e2e} center front '
                       f'offset 0,{0.6 * (label.count(chr(92)) + 1) + 0.4}'
                       for i, (_, e2e, label, _) in enumerate(bars))
    size = params.get("size", "")
    size = f"{size:,}-octet" if isinstance(size, int) else f"size mix {size},"
    sub = (f"{size} messages, {params.get('connections', '?')} connections, "
           f"{params.get('domains', '?')} domains, {params.get('rcpts', 1)} rcpt")
    return f"""
reset
set terminal pngcairo size {max(700, 190 * len(bars) + 200)},560 font 'sans,11'
set output '{run_dir}/mta-comparison.png'
set title "{title}end to end (first 250 to last delivery), messages per second\\n{sub}"
set logscale y
set yrange [{lo}:{hi}]
set format y '%.0s%c'
set ylabel 'messages per second (log scale)'
set grid ytics mytics
set xrange [-0.6:{len(bars) - 0.4}]
set xtics ({xtics}) scale 0 offset 0,-0.3
set bmargin 6
unset key
{labels}
plot '{data_dir}/mta-comparison.dat' using 1:2:($1-0.32):($1+0.32):({lo}):2:3 \\
     with boxxyerror fs solid 0.85 noborder lc rgb variable
"""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
