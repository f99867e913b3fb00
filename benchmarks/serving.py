"""Online-serving throughput and latency: the Spark flavor against lightweight pyfuncs of the same arithmetic.

    python3 course.py run --only 06              # once: the @champion of 04 and the serving models of 06
    .venv/bin/python benchmarks/serving.py [--seconds 8] [--connections 1 4 8]

Starts each server (the way notebook 06 does), drives it with wrk (`apt-get install wrk`) for a fixed time at each
concurrency level with the same one-row request, and prints requests/s, p50 and p99 latency, each server's ratio to
the Spark flavor at the same concurrency, and the goal for the fast path (at least 1,000 requests/s with p99 under
20 ms, and at least 50x the Spark flavor). Before that it profiles, in this process, what MLflow's scoring code does
per request for each pyfunc, so the gap between them can be explained.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from helpers import course_experiment, setup_mlflow
from helpers.serving import serve_model
from helpers.tracking import course_model_name

GOAL_RATE, GOAL_P99_MS, GOAL_RATIO = 1000, 20.0, 50


def wrk(url: str, body: bytes, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run: requests/s, p50 and p99 in ms, and how many replies were not 2xx."""
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = [==[{body.decode()}]==]\n")
    output = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                            capture_output=True, text=True, check=True).stdout
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def percentile(name: str) -> float:
        value, unit = re.search(rf"^\s*{name}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
        return float(value) * units[unit]

    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rate": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)), "p50": percentile("50"),
            "p99": percentile("99"), "failed": int(failed.group(1)) if failed else 0}


def profile_scoring(model_uri: str, body: bytes, requests: int = 2000) -> tuple[float, str]:
    """Microseconds per request in MLflow's own scoring function (no HTTP), and its five most expensive parts."""
    from mlflow.pyfunc import load_model
    from mlflow.pyfunc.scoring_server import invocations

    model = load_model(model_uri)
    schema = model.metadata.get_input_schema()
    for _ in range(200):
        invocations(body, "application/json", model, schema)
    started = time.perf_counter()
    for _ in range(requests):
        invocations(body, "application/json", model, schema)
    per_request = (time.perf_counter() - started) / requests * 1e6
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [invocations(body, "application/json", model, schema) for _ in range(500)])
    stats = pstats.Stats(profiler).stats
    parts = {("scoring_server/__init__.py", "_parse_json_data"): "JSON to a DataFrame or array, with type casts",
             ("models/utils.py", "_enforce_schema"): "schema enforcement",
             ("pyfunc/model.py", "predict"): "the model's predict",
             ("scoring_server/__init__.py", "predictions_to_json"): "the answer to JSON"}

    def cumulative(file_part: str, function: str) -> float:
        return max((entry[3] for (filename, _, name), entry in stats.items()
                    if name == function and filename.endswith(file_part)), default=0.0)

    total = cumulative("scoring_server/__init__.py", "invocations")
    lines = [f"    {cumulative(*key) / total:5.1%}  {label}" for key, label in parts.items()]
    return per_request, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="how long wrk drives each server at each level")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("The benchmark needs wrk, a load generator: `sudo apt-get install wrk` (Debian/Ubuntu) "
                         "or `brew install wrk` (macOS).")

    import mlflow

    setup_mlflow(quiet=True)
    runs = mlflow.search_runs(experiment_names=[course_experiment("retail-age-serving")],
                              order_by=["attributes.start_time DESC"]).drop_duplicates("tags.mlflow.runName")
    run_of = dict(zip(runs.get("tags.mlflow.runName", []), runs.get("run_id", [])))
    if not {"columns-pyfunc", "array-pyfunc"} <= set(run_of):
        raise SystemExit("The benchmark serves the models of notebook 06: run `python3 course.py run --only 06` first.")
    columns_uri, array_uri = (f"runs:/{run_of[name]}/model" for name in ("columns-pyfunc", "array-pyfunc"))
    champion_uri = f"models:/{course_model_name('retail_age_model')}@champion"

    columns = mlflow.models.get_model_info(columns_uri).signature.inputs.input_names()
    example = json.loads(Path(mlflow.artifacts.download_artifacts(f"{columns_uri}/serving_input_example.json"))
                         .read_text())["dataframe_split"]["data"][0]
    columns_body = json.dumps({"dataframe_split": {"columns": columns, "data": [example]}}).encode()
    array_body = json.dumps({"inputs": [[float(value) for value in example]]}).encode()

    print("MLflow's scoring code per request, in this process (no HTTP):")
    for label, uri, body in (("columns pyfunc", columns_uri, columns_body), ("array pyfunc", array_uri, array_body)):
        per_request, parts = profile_scoring(uri, body)
        print(f"  {label}: {per_request:,.0f} us per request; share of the time (cProfile):\n{parts}")

    servers = [  # (label, model, guarded, body)
        ("spark flavor, mlflow models serve", champion_uri, False, columns_body),
        ("columns pyfunc, mlflow models serve", columns_uri, False, columns_body),
        ("columns pyfunc, guarded", columns_uri, True, columns_body),
        ("array pyfunc, mlflow models serve", array_uri, False, array_body),
        ("array pyfunc, guarded", array_uri, True, array_body),
    ]
    results: dict[str, dict[int, dict[str, float]]] = {}
    print(f"\nwrk, one thread, {args.seconds} s per level, one-row requests:")
    print(f"{'server':<37} {'conns':>5} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'vs spark':>9}")
    for label, uri, guarded, body in servers:
        with serve_model(uri, guarded=guarded, name=label) as server:
            wrk(server.url + "/invocations", body, 1, 2)  # warm-up
            results[label] = {}
            for connections in args.connections:
                measured = wrk(server.url + "/invocations", body, connections, args.seconds)
                if measured["failed"]:
                    raise SystemExit(f"{label}: {measured['failed']} replies were errors; see {server.log}")
                results[label][connections] = measured
                ratio = measured["rate"] / results[servers[0][0]][connections]["rate"]
                print(f"{label:<37} {connections:>5} {measured['rate']:>11,.0f} {measured['p50']:>8.2f} "
                      f"{measured['p99']:>8.2f} {ratio:>8.1f}x", flush=True)

    fast, spark = results["array pyfunc, guarded"], results[servers[0][0]]
    best = max(args.connections, key=lambda c: fast[c]["rate"] if fast[c]["p99"] < GOAL_P99_MS else -1)
    met = (fast[best]["rate"] >= GOAL_RATE and fast[best]["p99"] < GOAL_P99_MS
           and fast[best]["rate"] / spark[best]["rate"] >= GOAL_RATIO)
    print(f"\nGoal (array pyfunc, guarded): >= {GOAL_RATE:,} requests/s with p99 < {GOAL_P99_MS:.0f} ms and >= "
          f"{GOAL_RATIO}x the Spark flavor. Best at {best} connections: {fast[best]['rate']:,.0f} requests/s, "
          f"p99 {fast[best]['p99']:.2f} ms, {fast[best]['rate'] / spark[best]['rate']:.1f}x: "
          f"{'met' if met else 'NOT met'}.")


if __name__ == "__main__":
    main()
