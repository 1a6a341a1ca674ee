"""Calls the gateway with the official SDKs while the provider misbehaves, and prints how each
call ended, as JSON: what the SDK raised (class, status) or what it parsed.

usage: faults.py openai|anthropic BASE_URL MODEL FAULT_HEADERS_JSON

FAULT_HEADERS_JSON is a list of [name, headers] pairs; each fault is tried non-streaming and
streaming. The SDKs' retries are off, so one call is one request.
"""
import json
import sys
import time


def outcome(call):
    start = time.monotonic()
    try:
        text = call()
        return {"ok": True, "text": text, "seconds": time.monotonic() - start}
    except Exception as e:  # the SDK's error classes are what is checked
        return {"ok": False, "error": type(e).__name__,
                "status": getattr(e, "status_code", None), "message": str(e)[:300],
                "seconds": time.monotonic() - start}


def openai_calls(base_url, model, headers):
    from openai import OpenAI
    client = OpenAI(base_url=base_url, api_key="client-side-key", max_retries=0, timeout=20)
    messages = [{"role": "user", "content": "Say hello"}]

    def json_call():
        r = client.chat.completions.create(model=model, messages=messages, extra_headers=headers)
        return r.choices[0].message.content

    def stream_call():
        text = ""
        for chunk in client.chat.completions.create(
                model=model, messages=messages, stream=True, extra_headers=headers):
            for choice in chunk.choices:
                text += choice.delta.content or ""
        return text

    return json_call, stream_call


def anthropic_calls(base_url, model, headers):
    from anthropic import Anthropic
    client = Anthropic(base_url=base_url, api_key="client-side-key", max_retries=0, timeout=20)
    messages = [{"role": "user", "content": "Say hello"}]

    def json_call():
        r = client.messages.create(model=model, max_tokens=64, messages=messages,
                                   extra_headers=headers)
        return "".join(b.text for b in r.content if b.type == "text")

    def stream_call():
        text = ""
        with client.messages.stream(model=model, max_tokens=64, messages=messages,
                                    extra_headers=headers) as stream:
            for t in stream.text_stream:
                text += t
        return text

    return json_call, stream_call


def main():
    sdk, base_url, model, faults = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    calls = openai_calls if sdk == "openai" else anthropic_calls
    out = {}
    for name, headers in faults:
        json_call, stream_call = calls(base_url, model, headers)
        out[name] = {"json": outcome(json_call), "stream": outcome(stream_call)}
    print(json.dumps(out))


main()
