#!/usr/bin/env python3
"""bench/latency.py: the consumer end of bench/stream.sh's stream tests.

Reads the JSON lines of the p2pay output plugin on stdin (pg_recvlogical
-f -), notes when each line arrives, and exits once it has read N lines (or
stdin ends), printing one line of figures:

  latency N [READY]
              per line, arrival time minus the line's commit_time (the two
              clocks are the same: consumer and server share the machine);
              prints "lines p50_ms p99_ms max_ms mean_ms"
  count N [READY]
              counts lines without parsing them; prints
              "lines first_arrival last_arrival" (Unix seconds)

With a third argument READY, it creates that file once it is ready to
read, so that the caller can wait for it before producing anything (Python
takes tens of milliseconds to start, more on a busy machine, and lines
queued meanwhile would count as late).

Lines are read with readline() on the binary stream, which returns as soon
as a whole line is in the pipe, so arrival times are not delayed by
buffering.
"""
import datetime
import json
import sys
import time


def commit_epoch(line):
    """The commit_time of one JSON line, in Unix seconds."""
    stamp = json.loads(line)["commit_time"]
    parsed = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return parsed.replace(tzinfo=datetime.timezone.utc).timestamp()


def percentile(sorted_values, share):
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(sorted_values) * share // 100))
    return sorted_values[int(rank) - 1]


def main():
    mode, wanted = sys.argv[1], int(sys.argv[2])
    if len(sys.argv) > 3:
        with open(sys.argv[3], "w", encoding="ascii"):
            pass
    stream = sys.stdin.buffer
    arrivals = []
    commits = []
    lines = 0
    first = last = 0.0
    while lines < wanted:
        line = stream.readline()
        if not line:
            break
        now = time.time()
        lines += 1
        if lines == 1:
            first = now
        last = now
        if mode == "latency":
            arrivals.append(now)
            commits.append(commit_epoch(line))

    if mode == "count":
        print(f"{lines} {first:.6f} {last:.6f}")
        return
    if not arrivals:
        print("0 0 0 0 0")
        return
    latencies = sorted((a - c) * 1000.0 for a, c in zip(arrivals, commits))
    print(f"{len(latencies)} {percentile(latencies, 50):.3f} "
          f"{percentile(latencies, 99):.3f} {latencies[-1]:.3f} "
          f"{sum(latencies) / len(latencies):.3f}")


if __name__ == "__main__":
    main()
