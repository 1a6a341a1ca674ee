"""One chat completion with the official OpenAI Python SDK, as a given consumer; prints the outcome
as JSON: {"ok": true, "usage": {...}} or {"ok": false, "status", "type", "code", "message"}.

usage: openai_quota.py BASE_URL MODEL API_KEY [stream]
"""
import json
import sys

import openai
from openai import OpenAI


def main() -> None:
    base_url, model, key = sys.argv[1], sys.argv[2], sys.argv[3]
    stream = len(sys.argv) > 4 and sys.argv[4] == "stream"
    client = OpenAI(base_url=base_url, api_key=key, max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    try:
        if stream:
            usage = None
            for chunk in client.chat.completions.create(
                    model=model, messages=messages, max_tokens=200, stream=True,
                    stream_options={"include_usage": True}):
                if chunk.usage:
                    usage = chunk.usage.model_dump()
        else:
            r = client.chat.completions.create(model=model, messages=messages, max_tokens=200)
            usage = r.usage.model_dump() if r.usage else None
        out = {"ok": True, "usage": usage}
    except openai.APIStatusError as e:
        err = (e.body or {}) if isinstance(e.body, dict) else {}
        out = {"ok": False, "status": e.status_code, "class": type(e).__name__,
               "type": err.get("type"), "code": err.get("code"), "message": err.get("message")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
