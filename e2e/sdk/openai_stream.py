"""Streams one chat completion through the gateway with the official OpenAI Python SDK and prints
what it parsed as JSON: {"content", "finish", "chunks"}.

usage: openai_stream.py BASE_URL MODEL PROMPT [HEADER=VALUE ...]   (BASE_URL like http://127.0.0.1:10000/v1)
"""
import json
import sys

from openai import OpenAI


def main() -> None:
    base_url, model, prompt = sys.argv[1], sys.argv[2], sys.argv[3]
    headers = dict(arg.split("=", 1) for arg in sys.argv[4:])
    client = OpenAI(base_url=base_url, api_key="client-side-key", max_retries=0)
    stream = client.chat.completions.create(
        model=model, stream=True, messages=[{"role": "user", "content": prompt}],
        extra_headers=headers)
    text, finish, chunks = "", None, 0
    for chunk in stream:
        chunks += 1
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    print(json.dumps({"content": text, "finish": finish, "chunks": chunks}))


if __name__ == "__main__":
    main()
