"""Keeps `ctest` output readable: ctest pads every line of its listing to the longest test name,
so one name of a few hundred characters (a parameter printed in full) turns the whole run into
lines of dots. Fails, naming them, when a registered test's name is longer than --max.

Usage: check_test_names.py --ctest CTEST --build BUILD_DIR [--max N]
"""
import argparse
import re
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctest", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--max", type=int, default=100)
    a = ap.parse_args()
    listing = subprocess.run([a.ctest, "--test-dir", a.build, "-N"], capture_output=True,
                             text=True, check=True).stdout
    names = re.findall(r"^\s*Test\s+#\d+: (.*)$", listing, re.M)
    if not names:
        print("no tests listed:\n" + listing)
        return 1
    long = [n for n in names if len(n) > a.max]
    for n in long:
        print(f"{len(n)} characters: {n}")
    longest = max(len(n) for n in names)
    print(f"{len(names)} tests, longest name {longest} characters (limit {a.max})")
    return 1 if long else 0


if __name__ == "__main__":
    sys.exit(main())
