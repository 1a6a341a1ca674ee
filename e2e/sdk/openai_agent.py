"""Asks the gateway's agent one question with the official OpenAI Python SDK, as one JSON answer
and as a stream, and prints what the SDK parsed as JSON.

usage: openai_agent.py BASE_URL MODEL PROMPT   (BASE_URL like http://127.0.0.1:10000/v1)

An error answer is printed as {"error": {"status", "message"}} for that mode.
"""
import json
import sys

import openai
from openai import OpenAI


def main() -> None:
    base_url, model, prompt = sys.argv[1], sys.argv[2], sys.argv[3]
    client = OpenAI(base_url=base_url, api_key="client-side-key", max_retries=0, timeout=60)
    messages = [{"role": "user", "content": prompt}]
    out = {}
    try:
        r = client.chat.completions.create(model=model, messages=messages)
        out["json"] = {"content": r.choices[0].message.content,
                       "finish": r.choices[0].finish_reason,
                       "model": r.model,
                       "usage": r.usage.model_dump() if r.usage else None}
    except openai.APIStatusError as e:
        out["json"] = {"error": {"status": e.status_code, "message": e.message}}
    try:
        stream = client.chat.completions.create(
            model=model, messages=messages, stream=True,
            stream_options={"include_usage": True})
        text, finish, usage, chunks = "", None, None, 0
        for chunk in stream:
            chunks += 1
            if chunk.usage:
                usage = chunk.usage.model_dump()
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        out["stream"] = {"content": text, "finish": finish, "usage": usage, "chunks": chunks}
    except openai.APIStatusError as e:
        out["stream"] = {"error": {"status": e.status_code, "message": e.message}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
