"""A plain JSON-over-HTTP classifier for `smart-rerun --ai-protocol http`, on the standard library only.

    python http_server.py --port 8766 [--token T]

smart-rerun POSTs one failure as JSON to the endpoint and reads {category, confidence, reason, action,
delay_seconds} back. `--fail 503` and `--garbage` make it misbehave, to see smart-rerun fall back to its
heuristics. A body with `"task": "translate_policy"` is `smart-rerun policy`'s question instead: the
answer is {settings, notes} (policy.py).
"""

import argparse
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import policy  # noqa: E402
import rules  # noqa: E402


def handler(args, answers):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def _send(self, status, body, content_type="application/json"):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", "Bearer")
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if args.token and not hmac.compare_digest(
                self.headers.get("Authorization", ""), "Bearer " + args.token
            ):
                return self._send(401, '{"error": "unauthorized"}')
            try:
                failure = json.loads(body)
            except ValueError:
                return self._send(400, '{"error": "not JSON"}')
            rules.log_call(args.log, failure)
            if args.sleep:
                time.sleep(args.sleep)
            if args.fail:
                return self._send(args.fail, "<html><body>upstream model unavailable</body></html>", "text/html")
            if args.garbage:
                return self._send(200, "this is not JSON {", "text/plain")
            if isinstance(failure, dict) and failure.get("task") == args.policy_tool:
                answer = policy.load_answer(args.policy_answer) or policy.translate(
                    failure.get("sentence", ""), failure.get("settings"))
                return self._send(200, json.dumps(answer))
            self._send(200, json.dumps(rules.answer_for(failure, answers)))

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8766)
    p.add_argument("--token", default=os.environ.get("CLASSIFIER_TOKEN"))
    p.add_argument("--log")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--answers")
    p.add_argument("--policy-tool", default="translate_policy", help="the task name of policy questions")
    p.add_argument("--policy-answer", help="JSON file: the fixed answer to every policy question (tests)")
    p.add_argument("--fail", type=int, default=0, help="answer every request with this HTTP status")
    p.add_argument("--garbage", action="store_true", help="answer every request with text that is not JSON")
    args = p.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), handler(args, rules.load_answers(args.answers)))
    print("smart-rerun classifier: HTTP at http://%s:%d/" % (args.host, args.port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
