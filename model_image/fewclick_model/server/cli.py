"""`fewclick model-server` and the container's `serve`: run the SageMaker-compatible model server."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from ..cli_types import device_or_auto
from ..inference_options import MIRROR_CHOICES, PRECISIONS, PredictorOptions
from .sessions import DEFAULT_IDLE_TTL_S, DEFAULT_LIFETIME_S, DEFAULT_MAX_BYTES, DEFAULT_MAX_SESSIONS
from .stop_signals import stop_on_signals

LOG = logging.getLogger("fewclick.model_server")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# What bad input raises (a --weights that is missing or not weights, a device this machine lacks, a port
# in use): the user's to fix, so one line, not a traceback; anything else is a bug and keeps it.
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError)
# A stop that was asked for ends the process within this long, whatever still blocks it. The drain is
# bounded (`app.DRAIN_TIMEOUT_S`, 25 s), but not a stuck device, nor a thread the interpreter joins at
# exit; and an orphaned model server (`fewclick serve` sends SIGTERM when it dies) keeps its port and a
# core until a SIGKILL that nothing may send.
STOP_DEADLINE_S = 35.0


_A = {int: "an integer", float: "a number"}


def _number_in(kind: type[int] | type[float], low: float, high: float, env: str) -> Callable[[str], float]:
    """An argparse type for a number in [low, high] that also checks a default read from ``env``:
    a typo in the container's environment stops the server at start, saying where it came from."""

    def check(value: str) -> float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} (flag or {env}) is not {_A[kind]}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{value!r} (flag or {env}) is not within {low:g}..{high:g}")
        return number

    return check


def _add_number(
    parser: argparse.ArgumentParser,
    flag: str,
    env: str,
    default: float,
    low: float,
    high: float = float("inf"),
    help: str | None = None,
) -> None:
    kind = int if isinstance(default, int) else float
    parser.add_argument(
        flag, type=_number_in(kind, low, high, env), default=os.environ.get(env, str(default)), help=help
    )


def _one_of(allowed: tuple[str, ...], env: str, fold_case: bool = False) -> Callable[[str], str]:
    """An argparse type that also checks a default read from ``env`` (argparse converts string
    defaults with ``type`` but never checks them against ``choices``); ``fold_case`` compares (and
    returns) the value upper-cased, as logging spells its levels."""

    def check(value: str) -> str:
        folded = value.upper() if fold_case else value
        if folded not in allowed:
            raise argparse.ArgumentTypeError(f"{value!r} (flag or {env}) is not one of {', '.join(allowed)}")
        return folded

    return check


def _device(env: str) -> Callable[[str], str]:
    """`cli_types.device_or_auto`, saying where a bad value came from (flag or ``env``)."""

    def check(value: str) -> str:
        try:
            return device_or_auto(value)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (flag or {env})") from None

    return check


def _add_choice(
    parser: argparse.ArgumentParser, flag: str, env: str, allowed: tuple[str, ...], default: str, help: str
) -> None:
    """A setting the container reads from ``env`` unless the flag is given, checked either way."""
    parser.add_argument(flag, type=_one_of(allowed, env), default=os.environ.get(env, default), help=help)


def _add_on_off(parser: argparse.ArgumentParser, flag: str, env: str, help: str) -> None:
    """A served-by-default feature: ``on`` unless the flag or ``env`` says ``off``."""
    _add_choice(parser, flag, env, ("on", "off"), "on", help)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # SageMaker tells the container its port in SAGEMAKER_BIND_TO_PORT (8080 by default).
    parser.add_argument(
        "--host", default=os.environ.get("FEWCLICK_HOST", "127.0.0.1"), help="bind address (the container uses 0.0.0.0)"
    )
    _add_number(parser, "--port", "SAGEMAKER_BIND_TO_PORT", 8080, 0, 65535, "TCP port (0: any free one)")
    parser.add_argument(
        "--weights",
        default=os.environ.get("FEWCLICK_WEIGHTS"),
        help="weights file (default: the ones baked into the package)",
    )
    _add_choice(
        parser,
        "--mirror",
        "FEWCLICK_MIRROR",
        MIRROR_CHOICES,
        "auto",
        "which answers average the crop's mirror image's (auto: every, the first only for float32 on CPU)",
    )
    _add_choice(
        parser,
        "--precision",
        "FEWCLICK_PRECISION",
        PRECISIONS,
        "auto",
        "network float type (auto: bf16 on a CPU that computes it natively, else fp32)",
    )
    _add_on_off(
        parser,
        "--boundary-refiner",
        "FEWCLICK_BOUNDARY_REFINER",
        "redraw the window around each boundary click with the baked-in boundary refiner "
        "(on, as served; off: the network's own answer)",
    )
    _add_on_off(
        parser,
        "--progressive-merge",
        "FEWCLICK_PROGRESSIVE_MERGE",
        "from the sixth corrective boundary click on, change only the mask next to each one "
        "(on, as served; off: every click may change the whole mask)",
    )
    _add_on_off(
        parser,
        "--cuda-graphs",
        "FEWCLICK_CUDA_GRAPHS",
        "on a GPU, replay each click's network passes as CUDA graphs (on, as served; off: launch "
        "them one by one, ~2.5x slower per click on an H200); no effect on a CPU",
    )
    _add_on_off(
        parser,
        "--frozen-graphs",
        "FEWCLICK_FROZEN_GRAPHS",
        "on a CPU, run the crop's and each click's network passes as frozen TorchScript graphs (on, "
        "as served; off: op by op from Python, ~25 %% slower per click on 2 cores); no effect on a GPU",
    )
    parser.add_argument(
        "--device",
        type=_device("FEWCLICK_DEVICE"),
        default=os.environ.get("FEWCLICK_DEVICE", "auto"),
        help="auto (one replica per GPU, else CPU), cpu, cuda or cuda:N",
    )
    _add_number(parser, "--max-sessions", "FEWCLICK_MAX_SESSIONS", DEFAULT_MAX_SESSIONS, 1)
    _add_number(
        parser,
        "--cache-mb",
        "FEWCLICK_CACHE_MB",
        DEFAULT_MAX_BYTES // 2**20,
        1,
        help="memory cap of the session cache (features + click-prefix cache)",
    )
    _add_number(
        parser,
        "--session-ttl",
        "FEWCLICK_SESSION_TTL_S",
        float(DEFAULT_IDLE_TTL_S),
        1.0,
        help="seconds a session survives without a click",
    )
    _add_number(
        parser,
        "--session-lifetime",
        "FEWCLICK_SESSION_LIFETIME_S",
        float(DEFAULT_LIFETIME_S),
        1.0,
        help="hard session lifetime, announced to SageMaker as Expires",
    )
    _add_number(
        parser,
        "--max-pending",
        "FEWCLICK_MAX_PENDING",
        16,
        1,
        help="queued requests per model replica before answering 503 OVERLOADED",
    )
    _add_number(
        parser,
        "--torch-threads",
        "FEWCLICK_TORCH_THREADS",
        0,
        0,
        help="intra-op threads (0: every available CPU on CPU, 4 on GPU)",
    )
    # Any case: "debug" has always worked.
    parser.add_argument(
        "--log-level",
        type=_one_of(LOG_LEVELS, "FEWCLICK_LOG_LEVEL", fold_case=True),
        default=os.environ.get("FEWCLICK_LOG_LEVEL", "INFO"),
        help=f"{', '.join(LOG_LEVELS)} (default: INFO)",
    )


def predictor_options(args: argparse.Namespace) -> PredictorOptions:
    """The predictor each replica loads, as the parsed flags and environment say."""
    return PredictorOptions(
        weights=args.weights,
        mirror=args.mirror,
        precision=args.precision,
        boundary_refiner=args.boundary_refiner == "on",
        progressive_merge=args.progressive_merge == "on",
        cuda_graphs=args.cuda_graphs == "on",
        frozen_graphs=args.frozen_graphs == "on",
    )


def _without_user_error_traceback(record: logging.LogRecord) -> bool:
    """Leave out the engine's logged traceback of a bad --weights: `run` reports it in one line."""
    return not (record.exc_info and isinstance(record.exc_info[1], USER_ERRORS))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Signals first: a stop that arrives while torch imports or the model loads is kept, not lost.
    # SageMaker stops containers with SIGTERM: finish in-flight requests, then exit.
    stop = threading.Event()
    with stop_on_signals(stop, on_signal=lambda signum: LOG.info("signal %d: shutting down", signum)):
        _exit_if_stop_overruns(stop, STOP_DEADLINE_S)
        return _serve(args, stop)


def _serve(args: argparse.Namespace, stop: threading.Event) -> int:
    from ..preflight import check_device
    from .app import detect_devices, start_model_server
    from .sessions import SessionCache

    # Before the port is taken: a GPU this machine lacks is one line now, not torch's traceback from
    # inside the load.
    devices = detect_devices() if args.device == "auto" else [check_device(args.device)]
    cache = SessionCache(
        max_sessions=args.max_sessions,
        max_bytes=args.cache_mb * 2**20,
        idle_ttl_s=args.session_ttl,
        lifetime_s=args.session_lifetime,
    )
    LOG.addFilter(_without_user_error_traceback)
    try:
        handle = start_model_server(
            args.host,
            args.port,
            options=predictor_options(args),
            devices=devices,
            cache=cache,
            max_pending=args.max_pending,
            wait=False,
            tune_torch=True,
            torch_threads=args.torch_threads or None,
        )
    except OSError as exc:
        # bind's own message ("[Errno 98] Address already in use") names no address.
        raise OSError(
            f"cannot listen on {args.host}:{args.port} (--host, --port or SAGEMAKER_BIND_TO_PORT): "
            f"{exc.strerror or exc}"
        ) from exc
    LOG.info("listening on %s (devices: %s); loading the model", handle.url, ", ".join(devices))

    # A signal while the model loads stops the wait too: a load that hangs (a stuck device, a
    # weights file on a dead mount) must not keep the container from stopping.
    while handle.loader.is_alive() and not stop.is_set():
        handle.loader.join(0.5)
    if stop.is_set() and not handle.engine.ready:
        LOG.info("stopped while loading")
        handle.stop(drain_s=0)
        # The load (or its warm-up, on an inference thread the interpreter would join at exit) may be
        # stuck for good: leave without waiting for it. A stop that was asked for, not a failure.
        _exit_now(0)
    try:
        handle.wait_ready(timeout=0)
    except (RuntimeError, TimeoutError) as exc:
        # Exit non-zero so the platform restarts the container instead of a /ping that never turns 200.
        handle.stop(drain_s=0)
        cause = exc.__cause__
        if isinstance(cause, USER_ERRORS):
            # Worded as `fewclick benchmark latency` words it; `fewclick serve` passes it on as is.
            raise ValueError(f"the model server could not load the model: {cause or type(cause).__name__}") from exc
        return 1
    finally:
        LOG.removeFilter(_without_user_error_traceback)
    LOG.info("ready: model %s on %s", handle.engine.model_version, handle.url)
    while not stop.wait(1.0):
        pass
    if not handle.stop():
        # A request still running after the drain: its inference thread may never end.
        _exit_now(1)
    LOG.info("stopped")
    return 0


def _exit_if_stop_overruns(stop: threading.Event, seconds: float) -> None:
    """Once ``stop`` is set, end the process ``seconds`` later if it is still there (exit status 1).
    A daemon thread: a stop that finishes in time exits without waiting for it."""

    def watch() -> None:
        stop.wait()
        time.sleep(seconds)
        # Not through logging: a stuck thread may hold its lock. Nor a flush that could block.
        with contextlib.suppress(OSError):
            os.write(2, f"model server: still stopping after {seconds:g} s; exiting\n".encode())
        os._exit(1)

    threading.Thread(target=watch, name="stop-deadline", daemon=True).start()


def _exit_now(code: int) -> NoReturn:
    """Exit without joining threads that may hang (a stuck device): logs first, then the process."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Container entry: SageMaker runs the image as `<entrypoint> serve`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        argv = argv[1:]
        # Inside the container SageMaker connects from outside the network namespace.
        os.environ.setdefault("FEWCLICK_HOST", "0.0.0.0")
    parser = argparse.ArgumentParser(prog="serve", description="FewClick model server (SageMaker hosting)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except USER_ERRORS as exc:
        # The container has no `fewclick` CLI to print it: one line in the log, as `fewclick model-server`.
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
