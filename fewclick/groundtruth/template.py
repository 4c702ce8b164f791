"""Build the Ground Truth task template: `template.liquid.html` with the labeling core inlined.

Ground Truth renders the template (Liquid) in the worker's browser, which can reach neither our
repository nor localhost, so the UI code travels inside the template. There is ONE copy of the
labeling logic, `fewclick/ui/labeling-core.js`; this module inlines it (and its CSS, and the small
task glue `task.js`) when the labeling stack synthesizes or a test renders the template.

Docs used: custom templates, `grant_read_access`, autoescaping and Liquid in
https://docs.aws.amazon.com/sagemaker/latest/dg/sms-custom-templates-step2.html; crowd-form's
submission in https://docs.aws.amazon.com/sagemaker/latest/dg/sms-ui-template-crowd-form.html.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from fewclick_contract.labelmap import ANSWER_FIELD, ANSWER_FORMAT, PALETTE

HERE = Path(__file__).resolve().parent
UI_DIR = HERE.parent / "ui"
TEMPLATE_SOURCE = HERE / "template.liquid.html"
TASK_JS = HERE / "task.js"
CORE_JS = UI_DIR / "labeling-core.js"
CORE_CSS = UI_DIR / "labeling-core.css"
# CreateHumanTaskUi's UiTemplate.Content is limited to 128,000 characters (botocore's sagemaker
# model); the same template must stay usable that way too, so the built file keeps under it.
MAX_TEMPLATE_CHARS = 128_000

# Sequences that would end the inline <script>/<style> or the Liquid raw block early.
_FORBIDDEN_IN_INLINE = (re.compile(r"</(script|style)", re.IGNORECASE), re.compile(r"<!--"), re.compile(r"endraw"))
_MARKERS = (
    "/*@FEWCLICK_CORE_CSS@*/",
    "//@FEWCLICK_CORE_JS@",
    "//@FEWCLICK_TASK_JS@",
    "@FEWCLICK_API_URL@",
    "@FEWCLICK_ANSWER_FORMAT@",
    "@FEWCLICK_ANSWER_FIELD@",
    "@FEWCLICK_PALETTE@",
)


GENERATED_HEADER = (
    "<!-- FewClick Ground Truth task template, generated from fewclick/groundtruth/template.liquid.html "
    "by fewclick/groundtruth/template.py: edit those, not this file. -->\n"
)


class TemplateBuildError(ValueError):
    pass


def _inline(name: str, text: str) -> str:
    for pattern in _FORBIDDEN_IN_INLINE:
        match = pattern.search(text)
        if match:
            raise TemplateBuildError(f"{name} contains {match.group(0)!r}, which cannot be inlined in the template")
    return text


def _strip_exports(js: str) -> str:
    """The core is an ES module; inlined into the page's one module script, its `export` keywords are
    harmless but meaningless, so they are dropped to keep the page's code what it runs."""
    return re.sub(r"^export\s+(?=(async\s+)?(function|class|const|let)\b)", "", js, flags=re.MULTILINE)


def build_template(api_url: str) -> str:
    """The template to upload, for the API at ``api_url`` (e.g. the stage URL, or a CDK token that
    resolves to it at deploy time; a local URL in tests)."""
    if not api_url or any(c in api_url for c in "\"'<> \n"):
        raise TemplateBuildError(f"api_url {api_url!r} is not a plain URL")
    source = TEMPLATE_SOURCE.read_text(encoding="utf-8")
    # The source's leading comment explains the source; workers get a one-line pointer instead.
    source = re.sub(r"\A\s*<!--.*?-->\s*", GENERATED_HEADER, source, count=1, flags=re.DOTALL)
    missing = [marker for marker in _MARKERS if marker not in source]
    if missing:
        raise TemplateBuildError(f"{TEMPLATE_SOURCE.name} lacks the markers {missing}")
    core_js = _strip_exports(_inline(CORE_JS.name, CORE_JS.read_text(encoding="utf-8")))
    built = (
        source.replace("/*@FEWCLICK_CORE_CSS@*/", _inline(CORE_CSS.name, CORE_CSS.read_text(encoding="utf-8")))
        .replace("//@FEWCLICK_CORE_JS@", core_js)
        .replace("//@FEWCLICK_TASK_JS@", _inline(TASK_JS.name, TASK_JS.read_text(encoding="utf-8")))
        .replace("@FEWCLICK_API_URL@", html.escape(api_url, quote=True))
        .replace("@FEWCLICK_ANSWER_FORMAT@", html.escape(ANSWER_FORMAT, quote=True))
        .replace("@FEWCLICK_ANSWER_FIELD@", html.escape(ANSWER_FIELD, quote=True))
        .replace("@FEWCLICK_PALETTE@", html.escape(json.dumps(list(PALETTE)), quote=True))
    )
    if len(built) > MAX_TEMPLATE_CHARS:
        raise TemplateBuildError(f"the built template has {len(built)} characters; the limit is {MAX_TEMPLATE_CHARS}")
    return built
