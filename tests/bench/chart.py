"""The chart of the data-path benchmark: latency percentiles per path, and sidecar CPU and highest rate.

``.venv/bin/python tests/bench/chart.py [docs/benchmarks/data-path.json]`` draws ``data-path.png`` beside the JSON;
``mesh_bench.py`` calls it after each run. Needs matplotlib (requirements-bench.txt, installed by ``make bench``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PERCENTILES = ("p50", "p90", "p99", "p99.9")


def draw(report: dict, target: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["paths"])
    medians = [report["paths"][name]["median"] for name in names]
    figure, (latency, cost) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(PERCENTILES)
    for index, percentile in enumerate(PERCENTILES):
        offsets = [position + (index - (len(PERCENTILES) - 1) / 2) * width for position in range(len(names))]
        latency.bar(offsets, [m["latency_ms"][percentile] for m in medians], width, label=percentile)
    latency.set_xticks(range(len(names)), names, rotation=30, ha="right")
    latency.set_ylabel("latency, ms (median of runs)")
    settings = report["settings"]
    latency.set_title(f"{settings['rate']} requests/s, {settings['connections']} connections, 1 KB each way")
    latency.legend()
    latency.grid(axis="y", alpha=0.3)

    cpu = [sum(m["cpu_s_per_1k"].values()) for m in medians]
    cost.bar(range(len(names)), cpu, 0.6, color="tab:gray")
    cost.set_xticks(range(len(names)), names, rotation=30, ha="right")
    cost.set_ylabel("CPU seconds of the path's sidecars per 1,000 requests")
    cost.grid(axis="y", alpha=0.3)
    highest = [report["paths"][name].get("highest_rate", {}).get("rate") for name in names]
    if any(highest):
        rates = cost.twinx()
        rates.plot(range(len(names)), highest, "o", color="tab:red")
        rates.set_ylabel("highest rate with p99 under the limit, requests/s", color="tab:red")
        rates.set_yscale("log")
    cost.set_title("sidecar cost (bars) and highest rate (dots)" if any(highest) else "sidecar cost")
    figure.suptitle(f"vmmesh data path, {report['date']}, {report['machine']['cpus']} cores")
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)
    return target


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "data-path.json"
    print(draw(json.loads(source.read_text()), source.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
