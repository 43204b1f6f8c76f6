"""``manage.py anomaly_score`` on 10 million rows: a streaming result, never a crash (issue #19).

The issue lists "10 million rows" among the inputs the command must survive; a test of that size
would take minutes, so the soak lives here. The same generated series as ``bench_anomaly_score``
(five-minute points, ~95 years of them) is piped through the command — standard input to a file —
and the peak resident memory of the process is read before and after: streaming means it does not
grow with the input. The output must have one scored row per input row.
"""

from __future__ import annotations

import io
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_anomaly_score import _values

ROWS = 10_000_000
# Django and the detector take about 100 MB; 10 million parsed rows alone would take over 1 GB.
MAX_PEAK_MB = 300.0
ROOT = Path(__file__).resolve().parent.parent


def main() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="bench-anomaly-10m-") as tmp:
        scored = Path(tmp) / "scores.csv"
        command = [sys.executable, "manage.py", "anomaly_score", "--input", "-", "--output", str(scored)]
        t0 = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert process.stdin is not None
        buffer = io.StringIO()
        buffer.write("timestamp,value\n")
        for i, (moment, value) in enumerate(_values(ROWS), 1):
            buffer.write(f"{moment.strftime('%Y-%m-%dT%H:%M:%SZ')},{value:.2f}\n")
            if i % 100_000 == 0:
                process.stdin.write(buffer.getvalue())
                buffer = io.StringIO()
        process.stdin.write(buffer.getvalue())
        process.stdin.close()
        errors = process.stderr.read() if process.stderr else ""
        code = process.wait()
        elapsed = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        with scored.open() as handle:
            lines = sum(1 for _ in handle)
    print(
        f"10,000,000 rows piped through anomaly_score in {elapsed:.0f} s ({ROWS / elapsed:,.0f} rows/s, generation "
        f"included); exit {code}; {lines - 1:,} rows scored; peak memory of the command {peak_mb:.0f} MB"
    )
    missed = []
    if code != 0:
        missed.append(f"anomaly_score 10M: exit {code}: {errors[-500:]}")
    if lines != ROWS + 1:
        missed.append(f"anomaly_score 10M: {lines - 1:,} rows scored, expected {ROWS:,}")
    if peak_mb > MAX_PEAK_MB:
        missed.append(f"anomaly_score 10M: peak memory {peak_mb:.0f} MB (does it stream?)")
    return missed
