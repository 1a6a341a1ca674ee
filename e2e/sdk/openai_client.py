"""Drives the gateway with the official OpenAI Python SDK and prints what it parsed as JSON.

usage: openai_client.py BASE_URL MODEL [followup]   (BASE_URL like http://127.0.0.1:10000/v1)

With `followup`, the tool call is answered in a second turn that sends the assistant message back
as the SDK parsed it (what carries provider state such as Gemini's thought signatures).
"""
import json
import sys

from openai import OpenAI

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}]


def main() -> None:
    base_url, model = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key="client-side-key", max_retries=0)
    out = {}

    r = client.chat.completions.create(
        model=model, messages=[{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Say hello"}])
    out["text"] = {"content": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
                   "usage": r.usage.model_dump() if r.usage else None}

    stream = client.chat.completions.create(
        model=model, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Count"}])
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    out["stream"] = {"content": text, "finish": finish, "usage": usage}

    r = client.chat.completions.create(
        model=model, tools=TOOLS, messages=[{"role": "user", "content": "Weather in Paris?"}])
    call = r.choices[0].message.tool_calls[0]
    out["tool"] = {"name": call.function.name, "arguments": json.loads(call.function.arguments),
                   "finish": r.choices[0].finish_reason}
    if len(sys.argv) > 3 and sys.argv[3] == "followup":
        assistant = r.choices[0].message.model_dump(exclude_none=True)
        f = client.chat.completions.create(model=model, tools=TOOLS, messages=[
            {"role": "user", "content": "Weather in Paris?"}, assistant,
            {"role": "tool", "tool_call_id": call.id, "content": "{\"sky\": \"sunny\"}"}])
        out["followup"] = {"content": f.choices[0].message.content,
                           "finish": f.choices[0].finish_reason}

    stream = client.chat.completions.create(
        model=model, tools=TOOLS, stream=True, messages=[{"role": "user", "content": "Weather in Paris?"}])
    name, args, finish = None, "", None
    for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                name = tc.function.name or name
                args += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    out["tool_stream"] = {"name": name, "arguments": json.loads(args), "finish": finish}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
