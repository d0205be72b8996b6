#!/usr/bin/env python3
"""Prints median, min and max of each command in hyperfine --export-json files."""
import json
import statistics
import sys

for path in sys.argv[1:]:
    with open(path) as f:
        for result in json.load(f)["results"]:
            times = sorted(result["times"])
            print(f"{result['command']}: median {statistics.median(times):.3f} s "
                  f"(min {times[0]:.3f}, max {times[-1]:.3f}, {len(times)} runs)")
