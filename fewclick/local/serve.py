"""`fewclick serve`: the whole system on one machine, for labeling locally and for end-to-end tests.

What runs (all on loopback unless ``--host`` says otherwise):

    browser --HTTP--> local gateway (fewclick.local.gateway): auth, body limit, throttling, CORS
      /          the labeling UI (fewclick/ui, static)
      /local/... image list, image bytes, labels (fewclick.local.labeling_api)
      /v1/...    API Gateway proxy event -> the REAL proxy lambda_handler, in-process
                   --boto3 sagemaker-runtime--> runtime stand-in (fewclick.local.sagemaker_runtime)
                     --HTTP--> model server (a subprocess: `fewclick model-server`)

The proxy is the deployed code, unchanged: only ENDPOINT_NAME and SAGEMAKER_RUNTIME_ENDPOINT_URL point its
boto3 client at the stand-in, so its request building, sessions and error mapping are exercised for real.

Keys, new and random for every run unless given (so nothing secret is stored on disk):
- the session-token key (the deployed proxy reads it from Secrets Manager): session ids are signed as in AWS;
- the task-token key (``--task-token-key`` or $FEWCLICK_TASK_TOKEN_KEY; generated and printed otherwise): the
  gateway verifies Ground Truth task tokens on ``POST /v1/task/segment`` with it, as the deployed authorizer does.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fewclick_model.cli_types import port_number, positive_float, positive_int
from fewclick_model.server.stop_signals import stop_on_signals

from fewclick.cli import TRACEBACK_ENV
from fewclick.local.gateway import (
    DEFAULT_BURST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_RATE_PER_S,
    Gateway,
    GatewayConfig,
    GatewayServer,
    LambdaHandler,
)
from fewclick.local.image_bucket import FolderBucket
from fewclick.local.labeling_api import LocalLabelApi
from fewclick.local.labels import DEFAULT_LABELS, LabelStore, LabelStoreError
from fewclick_contract.task_token import derive_key

REPO_ROOT = Path(__file__).resolve().parents[2]
UI_DIR = Path(__file__).resolve().parents[1] / "ui"
# The Lambda asset root: the handler package is importable from here, as in the deployed function.
PROXY_ASSET_DIR = REPO_ROOT / "lambda" / "proxy"
PROXY_HANDLER_MODULE = "fewclick_proxy.handler"
ENDPOINT_NAME = "fewclick-local"
# Real photos shipped inside matplotlib (a pinned dependency), so `fewclick serve` works offline with no
# download: Grace Hopper's portrait and a gift box. (matplotlib's logo is left out: not a photo.)
SAMPLE_IMAGES = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")
READY_LINE = "FewClick is ready"
# The default of --task-token-key: an environment variable keeps the key out of `ps` output.
TASK_TOKEN_KEY_ENV = "FEWCLICK_TASK_TOKEN_KEY"


# A model server that died is started again (`LocalStack.supervise`), but not forever.
MAX_MODEL_RESTARTS = 3
MODEL_RESTART_WINDOW_S = 300.0


class ServeError(Exception):
    """A start-up problem with a message for the user (no traceback)."""

    # 2 where the user's input is at fault (README: bad input exits 2), else 1.
    exit_status = 1


class ServeInputError(ServeError):
    """A start-up problem the user's input caused (a --weights file that is not weights)."""

    exit_status = 2


# --- arguments ---


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=8000, help="port of the UI and API (default: 8000; 0 = any)"
    )
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        help="folder of PNG/JPEG images to label (default: sample photos shipped with matplotlib)",
    )
    parser.add_argument("--out", type=Path, default=Path("labels"), help="where labels go (default: ./labels)")
    parser.add_argument(
        "--token", default=None, help="Bearer token for the UI and API (default: a new random one, printed)"
    )
    parser.add_argument(
        "--no-auth", action="store_true", help="no token at all (refused unless --host is a loopback address)"
    )
    parser.add_argument(
        "--labels",
        default=",".join(DEFAULT_LABELS),
        help=f"comma-separated class labels offered in the UI (default: {','.join(DEFAULT_LABELS)})",
    )
    parser.add_argument("--weights", type=Path, default=None, help="model weights (default: the committed ones)")
    parser.add_argument(
        "--max-body-mb",
        type=positive_float,
        default=DEFAULT_MAX_BODY_BYTES / 2**20,
        help="request body limit in MiB, answered with 413 (default: 6, Lambda's payload limit)",
    )
    parser.add_argument(
        "--rate", type=positive_float, default=DEFAULT_RATE_PER_S, help="throttling: requests per second (default: 20)"
    )
    parser.add_argument(
        "--burst", type=positive_int, default=DEFAULT_BURST, help="throttling: burst size (default: 40)"
    )
    parser.add_argument(
        "--ready-timeout", type=positive_float, default=60.0, help="seconds to wait for the model server (default: 60)"
    )
    parser.add_argument(
        "--task-token-key",
        default=os.environ.get(TASK_TOKEN_KEY_ENV) or None,
        help="secret (at least 32 characters, like the deployed task-token secret's value) that Ground Truth task "
        f"tokens for POST /v1/task/segment are checked against (default: ${TASK_TOKEN_KEY_ENV}, else a new random "
        "one, printed)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request and the proxy's own logs")


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    images: Path | None = None
    out: Path = Path("labels")
    token: str | None = None
    no_auth: bool = False
    labels: list[str] = field(default_factory=lambda: list(DEFAULT_LABELS))
    weights: Path | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    rate_per_s: float = DEFAULT_RATE_PER_S
    burst: int = DEFAULT_BURST
    ready_timeout_s: float = 60.0
    verbose: bool = False
    task_token_key: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeOptions:
        return cls(
            host=args.host,
            port=args.port,
            images=args.images,
            out=args.out,
            token=args.token,
            no_auth=args.no_auth,
            labels=[s.strip() for s in str(args.labels).split(",") if s.strip()],
            weights=args.weights,
            max_body_bytes=int(args.max_body_mb * 2**20),
            rate_per_s=args.rate,
            burst=args.burst,
            ready_timeout_s=args.ready_timeout,
            verbose=args.verbose,
            task_token_key=args.task_token_key,
        )


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback one (so nothing off this machine can connect)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


def validate(options: ServeOptions) -> None:
    if options.no_auth and options.token:
        raise ServeError("--no-auth and --token contradict each other; pick one")
    if options.no_auth and not is_loopback(options.host):
        raise ServeError(
            f"--no-auth is refused on --host {options.host}: anyone who can reach that address could use "
            "the model and read and overwrite your labels. Use a loopback address (127.0.0.1) or drop "
            "--no-auth (a token is then generated and printed)."
        )
    if options.max_body_bytes < 1024:
        raise ServeError("--max-body-mb is too small to carry even a click")
    if options.rate_per_s <= 0 or options.burst < 1:
        raise ServeError("--rate must be > 0 and --burst >= 1")
    if options.task_token_key is not None:
        try:
            derive_key(options.task_token_key)
        except ValueError as exc:
            raise ServeError(f"--task-token-key: {exc}") from None


def default_images_dir() -> Path:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise ServeError("no --images folder given and matplotlib (which ships the sample photos) is missing")
    # Located without importing matplotlib: importing it costs a second of start-up for nothing.
    sample = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "sample_data"
    if not all((sample / name).is_file() for name in SAMPLE_IMAGES):
        raise ServeError(f"matplotlib's sample photos are not in {sample}; pass --images DIR")
    return sample


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def display_url(host: str, port: int, token: str | None) -> str:
    shown = host
    if host in ("0.0.0.0", "::", ""):
        shown = socket.gethostname()  # a wildcard address is not something a browser can open
    elif ":" in host:
        shown = f"[{host}]"
    # The token rides in the fragment: browsers never send it to a server or put it in a Referer.
    return f"http://{shown}:{port}/" + (f"#token={token}" if token else "")


# --- the pieces the other parts provide ---


def _proxy_environment(runtime_url: str, verbose: bool) -> dict[str, str]:
    env = {
        "ENDPOINT_NAME": ENDPOINT_NAME,
        "SAGEMAKER_RUNTIME_ENDPOINT_URL": runtime_url,
    }
    defaults = {
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        # No X-Ray daemon and no CloudWatch locally; metrics would only print EMF JSON per click.
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "FewClickLocal",
        "POWERTOOLS_SERVICE_NAME": "fewclick-proxy",
        "POWERTOOLS_LOG_LEVEL": "INFO" if verbose else "WARNING",
        # The stand-in ignores signatures but botocore refuses to sign without credentials; never probe
        # the EC2 metadata service for them (seconds of timeouts off EC2).
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for key, value in defaults.items():
        env[key] = os.environ.get(key, value)
    if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
        env["AWS_ACCESS_KEY_ID"] = "local"
        env["AWS_SECRET_ACCESS_KEY"] = "local"  # a placeholder: the stand-in never checks signatures
    return env


def load_proxy_handler(session_secret: str | None = None, image_bucket: FolderBucket | None = None) -> LambdaHandler:
    """Import the real proxy ``lambda_handler`` the way the Lambda runtime does (asset root on sys.path).

    With ``session_secret`` the proxy is configured now, from the environment plus that key (its
    SESSION_TOKEN_SECRET override), instead of lazily from the environment alone: the key never enters
    ``os.environ`` (where later child processes would inherit it), and each run gets its own. With
    ``image_bucket`` as well, the proxy's S3 reads of that bucket come from the images folder.
    """
    if not (PROXY_ASSET_DIR / "fewclick_proxy" / "handler.py").is_file():
        raise ServeError(f"the proxy Lambda is missing: {PROXY_ASSET_DIR / 'fewclick_proxy' / 'handler.py'}")
    if str(PROXY_ASSET_DIR) not in sys.path:
        sys.path.insert(0, str(PROXY_ASSET_DIR))
    module = importlib.import_module(PROXY_HANDLER_MODULE)
    if session_secret is not None or image_bucket is not None:
        env = dict(os.environ)
        if session_secret is not None:
            env["SESSION_TOKEN_SECRET"] = session_secret
        if image_bucket is not None:
            env["ALLOWED_BUCKETS"] = image_bucket.bucket
        config = importlib.import_module("fewclick_proxy.config").ProxyConfig.from_env(env)
        module.configure(config=config, s3_client_factory=(lambda: image_bucket) if image_bucket else None)
    handler: LambdaHandler = module.lambda_handler
    return handler


def _linux_parent_death_signal() -> None:
    # Runs in the child before exec: if `fewclick serve` dies without cleaning up (SIGKILL), the kernel
    # sends the model server SIGTERM, so no orphan keeps its port and a CPU core.
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# How `fewclick model-server` refuses bad input (`fewclick.cli.main`): this line, then a hint, exit 2.
MODEL_SERVER_REFUSAL = "fewclick model-server: error: "


class ModelServerProcess:
    """The model server as a child process: torch stays out of this process, and a crash stays in its own."""

    def __init__(self, port: int, weights: Path | None, verbose: bool) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "fewclick.cli", "model-server", "--host", "127.0.0.1"]
        command += ["--port", str(port)]
        # Its per-request INFO lines would drown the URL we print; warnings and errors still show.
        command += ["--log-level", "INFO" if verbose else "WARNING"]
        if weights is not None:
            command += ["--weights", str(weights)]
        # Thread counts and devices are the model server's own business (it tunes torch for the machine).
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=None if verbose else subprocess.DEVNULL,
            # Relayed (`_relay_stderr`): its warnings and tracebacks must reach the user, but its refusal
            # of bad input is said once, by us, as ours.
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            # Own process group: Ctrl-C in the terminal reaches only us, and we stop it in order.
            start_new_session=True,
            preexec_fn=_linux_parent_death_signal if sys.platform.startswith("linux") else None,
        )
        self.refusal: str | None = None  # what it said was wrong with its input, when it refused it
        self._relay = threading.Thread(target=self._relay_stderr, name="model-server-stderr", daemon=True)
        self._relay.start()

    def _relay_stderr(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr:
            for line in self.process.stderr:
                if line.startswith(MODEL_SERVER_REFUSAL):
                    self.refusal = line[len(MODEL_SERVER_REFUSAL) :].strip()
                elif self.refusal is None or not line.startswith(f"(set {TRACEBACK_ENV}="):
                    sys.stderr.write(line)
                    sys.stderr.flush()

    def wait_ready(self, timeout_s: float, cancelled: threading.Event) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cancelled.is_set():
                raise ServeError("interrupted while the model server was starting")
            code = self.process.poll()
            if code is not None:
                # Its output first (a traceback goes above our line), and its refusal read to the end.
                self._relay.join(timeout=5)
                if code == 2 and self.refusal:
                    said = self.refusal
                    raise ServeInputError(said if said.startswith("the model server") else f"the model server: {said}")
                raise ServeError(f"the model server exited with code {code} while starting (see its output above)")
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise ServeError(f"the model server did not answer /ping within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


class RuntimeStandIn:
    """The SageMaker runtime stand-in (`fewclick.local.sagemaker_runtime`), served from a thread here."""

    def __init__(self, model_url: str) -> None:
        try:
            module = importlib.import_module("fewclick.local.sagemaker_runtime")
        except ModuleNotFoundError as exc:
            raise ServeError(f"the SageMaker runtime stand-in is missing ({exc})") from exc
        # No exchange log: nothing reads it here, and it would hold every request's pixels.
        self._handle: Any = module.start_runtime_stub(
            model_url, "127.0.0.1", 0, endpoint_names={ENDPOINT_NAME}, log_size=0
        )
        self.url: str = self._handle.url

    def stop(self) -> None:
        self._handle.stop()


# --- the stack ---


class LocalStack:
    """Everything `fewclick serve` runs; also used in-process by tests.

    ``lambda_handler`` replaces the real proxy (and with it the runtime stand-in and model server); tests
    use it to make the UI meet errors the real stack does not produce on demand.
    """

    def __init__(self, options: ServeOptions, *, lambda_handler: LambdaHandler | None = None) -> None:
        validate(options)
        self.options = options
        self.token: str | None = None if options.no_auth else (options.token or secrets.token_urlsafe(24))
        # 48 random bytes = 64 characters, the shape of the deployed (Secrets Manager) values.
        # A new session key per run: an older run's session ids get 404 SESSION_EXPIRED and the UI resends.
        self.session_secret = secrets.token_urlsafe(48)
        self.task_token_key_generated = options.task_token_key is None
        self.task_token_key: str = options.task_token_key or secrets.token_urlsafe(48)
        self._custom_handler = lambda_handler
        self._stoppers: list[Callable[[], None]] = []
        self.server: GatewayServer | None = None
        self.store: LabelStore | None = None
        self.model: ModelServerProcess | None = None
        self._restarts: list[float] = []  # when the model server was started again (`supervise`)
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def url(self) -> str:
        return display_url(self.options.host, self.port, self.token)

    def start(self, cancelled: threading.Event | None = None) -> None:
        cancelled = cancelled or threading.Event()
        out_existed = self.options.out.exists()
        try:
            self._start(cancelled)
        except BaseException:
            self.stop()
            if not out_existed:
                # A start that failed leaves no empty labels folder behind (rmdir refuses a full one).
                with contextlib.suppress(OSError):
                    self.options.out.rmdir()
            raise

    def _start(self, cancelled: threading.Event) -> None:
        options = self.options
        include: tuple[str, ...] | None = None
        images = options.images
        if images is None:
            images, include = default_images_dir(), SAMPLE_IMAGES
        try:
            self.store = LabelStore(images, options.out, options.labels, include=include)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ServeInputError(str(exc)) from exc
        except LabelStoreError as exc:
            raise ServeInputError(exc.message) from exc
        if not self.store.images():
            raise ServeInputError(f"no PNG or JPEG images in {images}")
        config = GatewayConfig(
            token=self.token,
            max_body_bytes=options.max_body_bytes,
            rate_per_s=options.rate_per_s,
            burst=options.burst,
            ui_dir=UI_DIR,
            task_token_key=derive_key(self.task_token_key),
        )
        # The real handler is bound below; the port is taken first so a busy port fails in a second,
        # not after the model has loaded.
        # The real proxy reads the images folder as a bucket; a test's stand-in proxy takes inline images.
        self.image_bucket = None if self._custom_handler else FolderBucket(self.store)
        label_api = LocalLabelApi(
            self.store,
            auth_required=self.token is not None,
            image_bucket=self.image_bucket.bucket if self.image_bucket else None,
        )
        gateway = Gateway(config, self._unavailable, label_api)
        try:
            self.server = GatewayServer((options.host, options.port), gateway, verbose=options.verbose)
        except OSError as exc:
            raise ServeError(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}") from exc
        self._stoppers.append(self.server.stop)
        gateway.handler = self._custom_handler or self._start_backend(cancelled)
        self.server.start()

    def _start_backend(self, cancelled: threading.Event) -> LambdaHandler:
        options = self.options
        model = self.model = ModelServerProcess(free_port(), options.weights, options.verbose)
        # Whichever model server runs at the time (`supervise` may have replaced this one).
        self._stoppers.append(lambda: self.model.stop() if self.model is not None else None)
        # Meanwhile (the model server imports torch for seconds): the runtime stand-in and the proxy.
        runtime = RuntimeStandIn(model.url)
        self._stoppers.append(runtime.stop)
        os.environ.update(_proxy_environment(runtime.url, options.verbose))
        handler = load_proxy_handler(self.session_secret, self.image_bucket)
        model.wait_ready(options.ready_timeout_s, cancelled)
        return handler

    @staticmethod
    def _unavailable(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {
            "statusCode": 503,
            "headers": {"Content-Type": "application/json", "Retry-After": "2"},
            "body": '{"error": {"code": "ENDPOINT_UNAVAILABLE", "message": "the model is still starting"}}',
        }

    def supervise(self) -> None:
        """Start the model server again when it has died (a crash, the kernel's OOM killer, a stray
        kill): the labeler's page keeps its work and recovers on its next click (503 while it starts,
        then SESSION_EXPIRED, which the proxy rebuilds from the images folder). ServeError after
        `MAX_MODEL_RESTARTS` deaths in `MODEL_RESTART_WINDOW_S`: a server that keeps dying will not
        be fixed by starting it again."""
        model = self.model
        if model is None or self._stopping.is_set() or model.process.poll() is None:
            return
        code = model.process.returncode
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < MODEL_RESTART_WINDOW_S]
        if len(self._restarts) >= MAX_MODEL_RESTARTS:
            raise ServeError(
                f"the model server exited with code {code}, its {len(self._restarts) + 1}th exit in "
                f"{MODEL_RESTART_WINDOW_S / 60:.0f} minutes: stopping (see its output above)"
            )
        self._restarts.append(now)
        print(f"fewclick serve: the model server exited with code {code}; starting it again", file=sys.stderr)
        # The same port: the SageMaker runtime stand-in forwards there.
        replacement = self.model = ModelServerProcess(model.port, self.options.weights, self.options.verbose)
        threading.Thread(
            target=self._await_model, args=(replacement,), name="model-server-restart", daemon=True
        ).start()

    def _await_model(self, model: ModelServerProcess) -> None:
        try:
            model.wait_ready(self.options.ready_timeout_s, self._stopping)
        except ServeError as exc:
            if not self._stopping.is_set():
                print(f"fewclick serve: {exc}", file=sys.stderr)  # the next `supervise` sees it exit
            return
        print("fewclick serve: the model server is ready again", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self._stopping.set()
        # Reverse start order: the gateway stops taking requests before its backends go away.
        while self._stoppers:
            stopper = self._stoppers.pop()
            try:
                stopper()
            except Exception as exc:  # one failed stop must not leave the others running
                print(f"fewclick serve: error while stopping: {exc}", file=sys.stderr)

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    started = time.monotonic()
    try:
        options = ServeOptions.from_args(args)
        stack = LocalStack(options)
    except ServeError as exc:
        print(f"fewclick serve: {exc}", file=sys.stderr)
        return 2
    with stop_on_signals(stop):
        try:
            stack.start(stop)
        except ServeError as exc:
            print(f"fewclick serve: {exc}", file=sys.stderr)
            return exc.exit_status
        assert stack.store is not None
        task_key = (
            f"{stack.task_token_key} (generated; --task-token-key or ${TASK_TOKEN_KEY_ENV} keeps one)"
            if stack.task_token_key_generated
            else "as given"
        )
        print(
            f"{READY_LINE} in {time.monotonic() - started:.1f} s: {stack.url}\n"
            f"  images: {stack.store.images_dir} ({len(stack.store.images())})\n"
            f"  labels: {stack.store.out_dir.resolve()}\n"
            f"  task-token key (POST /v1/task/segment): {task_key}\n"
            "  Ctrl-C stops everything.",
            flush=True,
        )
        try:
            while not stop.wait(0.5):
                stack.supervise()
        except ServeError as exc:
            print(f"fewclick serve: {exc}", file=sys.stderr)
            return 1
        finally:
            print("fewclick serve: stopping", flush=True)
            stack.stop()
    return 0
