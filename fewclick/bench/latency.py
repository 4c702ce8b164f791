"""Latency of the serving path, end to end, on this machine.

Starts the real model server (real predictor) and the SageMaker Runtime stand-in on
loopback, then drives the real proxy `lambda_handler` with API Gateway events through
boto3, like a labeler: per session a new image (4 extreme points), then K corrective
clicks placed by a robot labeler on the largest error. Reports p50/p90/p99 of the
end-to-end (handler) and model (server-side) latency per request type, wire payload
sizes, and writes a histogram PNG and the raw numbers as JSON under ``--out``.

Not measured: API Gateway, Lambda cold starts and the network between Lambda and
SageMaker (all loopback here).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import logging
import os
import platform
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from fewclick_model import plots
from fewclick_model.cli_types import device_or_auto, non_negative_int, positive_int
from fewclick_model.preflight import check_device, prepare_out_dir

from fewclick.bench.options import scene_pixels_problem, scene_side
from fewclick.bench.synthetic import extreme_points, iou, make_scene, robot_click

REQUEST_TYPES = ("new image", "warm click", "resend image")


@dataclass
class Sample:
    kind: str
    e2e_ms: float
    model_ms: float
    wire_request_bytes: int
    wire_response_bytes: int
    cache: str


@dataclass
class BenchResult:
    samples: list[Sample] = field(default_factory=list)
    ious: list[list[float]] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for kind in REQUEST_TYPES:
            rows = [s for s in self.samples if s.kind == kind]
            if not rows:
                continue
            e2e = np.array([s.e2e_ms for s in rows])
            model = np.array([s.model_ms for s in rows])
            out[kind] = {
                "n": len(rows),
                **{f"e2e_p{q}": float(np.percentile(e2e, q)) for q in (50, 90, 99)},
                **{f"model_p{q}": float(np.percentile(model, q)) for q in (50, 90, 99)},
                "wire_request_kb_max": max(s.wire_request_bytes for s in rows) / 1024,
                "wire_response_kb_max": max(s.wire_response_bytes for s in rows) / 1024,
                "cache_hit_rate": sum(s.cache == "hit" for s in rows) / len(rows),
            }
        return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=positive_int, default=10, help="labeling sessions (one new image each)")
    parser.add_argument("--clicks", type=non_negative_int, default=5, help="corrective clicks per session")
    parser.add_argument("--height", type=scene_side, default=720, help="synthetic image height, px (default: 720)")
    parser.add_argument("--width", type=scene_side, default=960, help="synthetic image width, px (default: 960)")
    parser.add_argument(
        "--device", type=device_or_auto, default="auto", help="auto (a GPU when present), cpu, cuda or cuda:N"
    )
    parser.add_argument("--weights", default=None, help="weights file (default: the committed ones)")
    parser.add_argument("--crop-format", choices=("png", "jpeg"), default="png")
    parser.add_argument(
        "--torch-threads",
        type=non_negative_int,
        default=0,
        help="model server intra-op threads (0: all CPUs; use fewer on a shared machine)",
    )
    parser.add_argument("--warmup", type=non_negative_int, default=1, help="untimed sessions first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("artifacts"), help="where the JSON and PNG go")


def _quiet_proxy_env() -> None:
    # Before the handler module is imported: no X-Ray, only warnings logged (the EMF
    # metric lines the handler prints are swallowed per request, see `send`).
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "fewclick-proxy-bench")
    # boto3 signs requests even to the local stand-in; these never leave the machine.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def _proxy_import_path() -> None:
    root = Path(__file__).resolve().parents[2] / "lambda" / "proxy"
    if root.is_dir() and str(root) not in sys.path:
        sys.path.insert(0, str(root))


def _event(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "resource": "/v1/segment",
        "path": "/v1/segment",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "pathParameters": None,
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "stage": "bench",
            "resourcePath": "/v1/segment",
            "httpMethod": "POST",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


@contextlib.contextmanager
def _load_failure_unlogged() -> Iterator[None]:
    """Leave out the model server's logged traceback of a failed load while it starts.

    A server's log wants it; here `run_benchmark` reports the failure itself, in one line.
    """
    log = logging.getLogger("fewclick.model_server")

    def without_traceback(record: logging.LogRecord) -> bool:
        return record.exc_info is None

    log.addFilter(without_traceback)
    try:
        yield
    finally:
        log.removeFilter(without_traceback)


def _one_line(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class _Context:
    function_name = "fewclick-proxy-bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:fewclick-proxy-bench"
    memory_limit_in_mb = 1024
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def run_benchmark(args: argparse.Namespace, progress: bool = True) -> BenchResult:
    _quiet_proxy_env()
    _proxy_import_path()
    from fewclick_model.inference_options import PredictorOptions
    from fewclick_model.server import start_model_server
    from fewclick_model.server.app import available_cpus, detect_devices
    from fewclick_proxy import handler
    from fewclick_proxy.config import ProxyConfig
    from fewclick_proxy.endpoint_client import EndpointClient
    from fewclick_proxy.image_source import ImageSource
    from fewclick_proxy.masks import decode_rle
    from fewclick_proxy.segment import Segmenter
    from tqdm import tqdm

    from fewclick.local.sagemaker_runtime import start_runtime_stub

    devices = detect_devices() if args.device == "auto" else [check_device(args.device)]
    try:
        with warnings.catch_warnings(), _load_failure_unlogged():
            warnings.simplefilter("ignore", RuntimeWarning)  # untrained weights are fine for latency
            model = start_model_server(
                "127.0.0.1",
                0,
                options=PredictorOptions(weights=args.weights),
                devices=devices[:1],
                tune_torch=True,
                torch_threads=args.torch_threads or None,
            )
    except RuntimeError as exc:
        if exc.__cause__ is None:  # not a load failure (wait_ready chains those): a bug, keep its traceback
            raise
        # Bad weights, a device that fails: the user's to fix, so one line (fewclick.cli prints it).
        raise ValueError(f"the model server could not load the model: {_one_line(exc.__cause__)}") from exc
    runtime = start_runtime_stub(model.url)
    cfg = ProxyConfig(runtime_endpoint_url=runtime.url, crop_format=args.crop_format, max_attempts=1)
    handler.configure(Segmenter(cfg, ImageSource(cfg), EndpointClient(cfg)))
    ctx = _Context()

    import torch

    result = BenchResult(
        environment={
            "device": devices[0],
            "gpu": torch.cuda.get_device_name(torch.device(devices[0])) if devices[0].startswith("cuda") else None,
            "cpu": platform.processor() or platform.machine(),
            "cpus": available_cpus(),
            "model_runs_on": model.engine.replicas[0].predictor.describe(),
            "model_version": model.engine.model_version,
            "input_size": model.engine.input_size,
            "image": f"{args.width}x{args.height}",
            "sessions": args.sessions,
            "clicks": args.clicks,
            "crop_format": args.crop_format,
        }
    )

    def send(body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            out = handler.lambda_handler(_event(body), ctx)
        return int(out["statusCode"]), json.loads(out["body"]), (time.perf_counter() - t0) * 1000.0

    total = (args.warmup + args.sessions) * (1 + args.clicks)
    bar = tqdm(total=total, desc="requests", unit="req", disable=not progress)
    try:
        for i in range(args.warmup + args.sessions):
            timed = i >= args.warmup
            rgb, gt = make_scene(args.height, args.width, seed=args.seed + i)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
            assert ok
            image = {"base64": base64.b64encode(buf.tobytes()).decode("ascii")}
            extremes = [{"x": x, "y": y} for x, y in extreme_points(gt)]
            clicks: list[dict[str, Any]] = []
            session: str | None = None
            ious: list[float] = []
            for k in range(1 + args.clicks):
                runtime.clear_log()
                if k == 0:
                    kind, body = "new image", {"image": image, "extremePoints": extremes}
                else:
                    kind, body = "warm click", {"sessionId": session, "extremePoints": extremes, "clicks": clicks}
                status, resp, ms = send(body)
                if status == 404:  # the crop grew or the session expired: resend, as the UI does
                    kind = "resend image"
                    status, resp, ms2 = send({**body, "image": image})
                    ms += ms2
                if status == 413:
                    # Within MAX_IMAGE_PIXELS, a scene's JPEG can still be past the inline limit (from ~10 MP):
                    # the size asked for, not a bug.
                    refusal = resp.get("error", {}).get("message", resp)
                    raise ValueError(f"--width/--height {args.width}x{args.height}: the API refuses it: {refusal}")
                if status != 200:
                    raise RuntimeError(f"request failed: {status} {resp}")
                exchange = runtime.exchanges[-1]
                cache = json.loads(exchange.response_body).get("cache", "?")
                if timed:
                    result.samples.append(
                        Sample(
                            kind,
                            ms,
                            float(resp["timings"]["modelMs"]),
                            len(exchange.request_body),
                            len(exchange.response_body),
                            cache,
                        )
                    )
                pred = decode_rle(resp["mask"])
                ious.append(iou(pred, gt))
                session = resp["sessionId"]
                click = robot_click(pred, gt)
                if click is not None:
                    clicks.append({"x": click[0], "y": click[1], "type": click[2]})
                bar.update(1)
            if timed:
                result.ious.append(ious)
    finally:
        bar.close()
        runtime.stop()
        model.stop()
    return result


def format_table(summary: dict[str, dict[str, float]]) -> str:
    head = (
        f"{'request type':<13} {'n':>4} | {'end-to-end ms p50':>17} {'p90':>7} {'p99':>7} | "
        f"{'model ms p50':>12} {'p90':>7} {'p99':>7} | {'wire KB req/resp (max)':>22} | {'cache hit':>9}"
    )
    lines = [head, "-" * len(head)]
    for kind, s in summary.items():
        lines.append(
            f"{kind:<13} {int(s['n']):>4} | {s['e2e_p50']:>17.1f} {s['e2e_p90']:>7.1f} {s['e2e_p99']:>7.1f} | "
            f"{s['model_p50']:>12.1f} {s['model_p90']:>7.1f} {s['model_p99']:>7.1f} | "
            f"{s['wire_request_kb_max']:>10.1f} / {s['wire_response_kb_max']:<9.1f} | {s['cache_hit_rate']:>9.0%}"
        )
    return "\n".join(lines)


def plot_histogram(result: BenchResult, path: Path) -> None:
    fig, axes = plots.subplots(2, figsize=(11, 4), sharex=True, sharey=True)
    # One set of bins for both panels: a request's model time and its end-to-end time line up.
    bins = plots.log_bins([s.e2e_ms for s in result.samples] + [s.model_ms for s in result.samples])
    for ax, attr, title in ((axes[0], "e2e_ms", "end to end (proxy handler)"), (axes[1], "model_ms", "model server")):
        plots.log_histograms(
            ax, ((kind, [getattr(s, attr) for s in result.samples if s.kind == kind]) for kind in REQUEST_TYPES), bins
        )
        ax.set_xlabel("ms (log scale)")
        ax.set_title(title)
    axes[0].set_ylabel("requests")
    env = result.environment
    heading = (
        f"FewClick latency on {env.get('gpu') or env.get('device')} ({env.get('cpus')} CPUs), "
        f"{env.get('image')} images, S={env.get('input_size')}, model {env.get('model_version')}"
    )
    plots.save(fig, path, title=heading, dpi=110)


def run(args: argparse.Namespace) -> int:
    # The two sides are two options, so argparse checks each alone; together, before anything runs.
    problem = scene_pixels_problem(args.width, args.height)
    if problem:
        raise ValueError(f"--width/--height: {problem}")
    prepare_out_dir(args.out)  # before the run: an unwritable --out would lose its results
    result = run_benchmark(args)
    summary = result.summary()
    print()
    print(format_table(summary))
    if result.ious:
        mean_iou = np.mean(np.array(result.ious), axis=0)
        print("mean IoU after each request (0 = extreme points only):", " ".join(f"{v:.3f}" for v in mean_iou))
    env = result.environment
    print(f"environment: {json.dumps(env)}")
    png = args.out / "latency_hist.png"
    plot_histogram(result, png)
    report = {
        "summary": summary,
        "environment": env,
        "samples": [asdict(s) for s in result.samples],
        "ious": result.ious,
    }
    (args.out / "latency.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {png} and {args.out / 'latency.json'}")
    return 0
