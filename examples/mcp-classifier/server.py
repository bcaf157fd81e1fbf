"""An MCP classification server for smart-rerun, on the official Python SDK (mcp 2.x).

    pip install -r requirements.txt
    python server.py --port 8765 --token "$CLASSIFIER_TOKEN"

Serves Streamable HTTP at http://127.0.0.1:8765/mcp with two tools: `classify_failure` (for `--ai`) and
`translate_policy` (for `smart-rerun policy "..."`). See README.md.
"""

import argparse
import hmac
import os
import sys

import anyio
import uvicorn
from pydantic import BaseModel

from mcp.server.mcpserver import MCPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import policy  # noqa: E402
import rules  # noqa: E402


class PolicyTranslation(BaseModel):
    settings: dict[str, str]
    notes: list[str] = []


class Classification(BaseModel):
    category: str
    confidence: float
    reason: str
    action: str
    delay_seconds: float | None = None


def build(args):
    server = MCPServer("smart-rerun-classifier", version="1.0.0")
    answers = rules.load_answers(args.answers)

    @server.tool(name=args.tool, description="Classify a failed pytest test: flaky or broken, and what to do.")
    async def classify_failure(
        nodeid: str,
        fingerprint: str = "",
        exception_type: str = "",
        exception_bases: list[str] | None = None,
        message: str = "",
        traceback: str = "",
        attempts: list[dict] | None = None,
        heuristic: dict | None = None,
        policy: dict | None = None,
    ) -> Classification:
        failure = {
            "nodeid": nodeid,
            "fingerprint": fingerprint,
            "exception_type": exception_type,
            "exception_bases": exception_bases or [],
            "message": message,
            "traceback": traceback,
            "attempts": attempts or [],
            "heuristic": heuristic or {},
            "policy": policy or {},
        }
        rules.log_call(args.log, failure)
        if args.sleep:
            await anyio.sleep(args.sleep)
        return Classification(**rules.answer_for(failure, answers))

    fixed_policy = policy.load_answer(args.policy_answer)

    @server.tool(name=args.policy_tool,
                 description="Translate a retry policy in plain words into smart-rerun settings.")
    async def translate_policy(sentence: str, task: str = "", settings: list[dict] | None = None) -> dict:
        rules.log_call(args.log, {"task": task, "sentence": sentence, "settings": settings or []})
        if fixed_policy is not None:
            return fixed_policy
        return PolicyTranslation(**policy.translate(sentence, settings)).model_dump()

    return server.streamable_http_app(json_response=args.json_response, host=args.host)


def require_bearer(app, token):
    """A plain ASGI wrapper: every HTTP request needs `Authorization: Bearer <token>`, else 401."""
    expected = ("Bearer " + token).encode()

    async def wrapped(scope, receive, send):
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                await send({
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"www-authenticate", b'Bearer realm="smart-rerun-classifier"')],
                })
                await send({"type": "http.response.body", "body": b'{"error": "unauthorized"}'})
                return
        await app(scope, receive, send)

    return wrapped


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--tool", default="classify_failure", help="the tool's name (smart_rerun_ai_tool)")
    p.add_argument("--token", default=os.environ.get("CLASSIFIER_TOKEN"),
                   help="require this bearer token [default: $CLASSIFIER_TOKEN; none: open]")
    p.add_argument("--json-response", action="store_true", help="answer application/json instead of SSE")
    p.add_argument("--log", help="append every failure received to this file, one JSON line each")
    p.add_argument("--sleep", type=float, default=0.0, help="wait this long before each answer (a slow model)")
    p.add_argument("--answers", help="JSON file of fixed answers by node id substring (demos, tests)")
    p.add_argument("--policy-tool", default="translate_policy", help="the policy tool's name (--policy-tool)")
    p.add_argument("--policy-answer", help="JSON file: the fixed answer to every policy question (tests)")
    args = p.parse_args()
    app = build(args)
    if args.token:
        app = require_bearer(app, args.token)
    print("smart-rerun classifier: MCP at http://%s:%d/mcp" % (args.host, args.port), flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
