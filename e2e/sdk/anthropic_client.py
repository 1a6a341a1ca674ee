"""Drives the gateway's /v1/messages with the official Anthropic Python SDK; prints JSON.

usage: anthropic_client.py BASE_URL MODEL   (BASE_URL like http://127.0.0.1:10000)
"""
import json
import sys

from anthropic import Anthropic

TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}]


def main() -> None:
    base_url, model = sys.argv[1], sys.argv[2]
    client = Anthropic(base_url=base_url, api_key="client-side-key", max_retries=0)
    out = {}

    m = client.messages.create(model=model, max_tokens=64, system="Be brief.",
                               messages=[{"role": "user", "content": "Say hello"}])
    out["text"] = {"content": "".join(b.text for b in m.content if b.type == "text"),
                   "stop": m.stop_reason, "usage": {"input": m.usage.input_tokens, "output": m.usage.output_tokens}}

    with client.messages.stream(model=model, max_tokens=64,
                                messages=[{"role": "user", "content": "Count"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    out["stream"] = {"content": text, "stop": final.stop_reason,
                     "usage": {"input": final.usage.input_tokens, "output": final.usage.output_tokens}}

    m = client.messages.create(model=model, max_tokens=64, tools=TOOLS,
                               messages=[{"role": "user", "content": "Weather in Paris?"}])
    tool = next(b for b in m.content if b.type == "tool_use")
    out["tool"] = {"name": tool.name, "input": tool.input, "stop": m.stop_reason}

    with client.messages.stream(model=model, max_tokens=64, tools=TOOLS,
                                messages=[{"role": "user", "content": "Weather in Paris?"}]) as stream:
        final = stream.get_final_message()
    tool = next(b for b in final.content if b.type == "tool_use")
    out["tool_stream"] = {"name": tool.name, "input": tool.input, "stop": final.stop_reason}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
