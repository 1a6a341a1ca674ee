"""Asks the gateway the same question twice with an official SDK (OpenAI or Anthropic), in the
given modes, and prints what the SDK parsed each time with the `x-ai-cache` header, as JSON.

usage: cache_client.py BASE_URL openai|anthropic MODEL SYSTEM QUESTION MODE MODE...
       (MODE is `json` or `stream`; BASE_URL like http://127.0.0.1:10000/v1 for openai,
        http://127.0.0.1:10000 for anthropic)
"""
import json
import sys

from anthropic import Anthropic
from openai import OpenAI


def openai_ask(client, model, system, question, stream):
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    if not stream:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=messages)
        r = raw.parse()
        return {"cache": raw.headers.get("x-ai-cache"), "content": r.choices[0].message.content,
                "finish": r.choices[0].finish_reason, "usage": r.usage.model_dump() if r.usage else None}
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True})
    text, finish, usage = "", None, None
    for chunk in raw.parse():
        if chunk.usage:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return {"cache": raw.headers.get("x-ai-cache"), "content": text, "finish": finish, "usage": usage}


def anthropic_ask(client, model, system, question, stream):
    messages = [{"role": "user", "content": question}]
    if not stream:
        raw = client.messages.with_raw_response.create(
            model=model, max_tokens=64, system=system, messages=messages)
        m = raw.parse()
        return {"cache": raw.headers.get("x-ai-cache"),
                "content": "".join(b.text for b in m.content if b.type == "text"),
                "finish": m.stop_reason,
                "usage": {"input": m.usage.input_tokens, "output": m.usage.output_tokens}}
    with client.messages.stream(model=model, max_tokens=64, system=system, messages=messages) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
        header = s.response.headers.get("x-ai-cache")
    return {"cache": header, "content": text, "finish": final.stop_reason,
            "usage": {"input": final.usage.input_tokens, "output": final.usage.output_tokens}}


def main() -> None:
    base_url, protocol, model, system, question = sys.argv[1:6]
    modes = sys.argv[6:]
    if protocol == "openai":
        client, ask = OpenAI(base_url=base_url, api_key="client-side-key", max_retries=0), openai_ask
    else:
        client, ask = Anthropic(base_url=base_url, api_key="client-side-key", max_retries=0), anthropic_ask
    print(json.dumps([ask(client, model, system, question, mode == "stream") for mode in modes]))


if __name__ == "__main__":
    main()
