"""Drives the gateway's Responses API with the official OpenAI Python SDK; prints what it parsed.

usage: openai_responses.py BASE_URL MODEL [full]   (BASE_URL like http://127.0.0.1:10000/v1)

With `full`, also: the stream through the SDK's `responses.stream` helper (which checks that
every event fits the response it builds), a streamed tool call, and a follow-up turn that sends
the call and its output back as input items.
"""
import json
import sys

from openai import OpenAI

TOOLS = [{
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                   "required": ["location"]},
}]


def main() -> None:
    base_url, model = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key="client-side-key", max_retries=0)
    out = {}

    r = client.responses.create(model=model, instructions="Be brief.", input="Say hello")
    out["text"] = {"content": r.output_text, "status": r.status, "model": r.model,
                   "usage": r.usage.model_dump() if r.usage else None,
                   "instructions": r.instructions}

    stream = client.responses.create(model=model, input="Count", stream=True)
    text, completed_text, usage, events = "", None, None, []
    for event in stream:
        events.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        elif event.type == "response.completed":
            usage = event.response.usage.model_dump() if event.response.usage else None
            completed_text = event.response.output_text
    out["stream"] = {"content": text, "completed_text": completed_text, "usage": usage,
                     "events": events}

    r = client.responses.create(model=model, tools=TOOLS, input="Weather in Paris?")
    call = next(item for item in r.output if item.type == "function_call")
    out["tool"] = {"name": call.name, "arguments": json.loads(call.arguments),
                   "call_id": call.call_id,
                   "usage": r.usage.model_dump() if r.usage else None,
                   "tools": [t.name for t in r.tools]}

    if len(sys.argv) > 3 and sys.argv[3] == "full":
        with client.responses.stream(model=model, instructions="Be brief.", input="Count") as s:
            deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
            final = s.get_final_response()
        out["helper"] = {"deltas": deltas, "text": final.output_text, "status": final.status,
                         "usage": final.usage.model_dump() if final.usage else None}

        with client.responses.stream(model=model, tools=TOOLS, input="Weather in Paris?") as s:
            args = "".join(e.delta for e in s
                           if e.type == "response.function_call_arguments.delta")
            final = s.get_final_response()
        streamed = next(item for item in final.output if item.type == "function_call")
        out["tool_stream"] = {"name": streamed.name, "arguments": json.loads(streamed.arguments),
                              "deltas": json.loads(args) if args else None,
                              "tools": [t.name for t in final.tools]}

        f = client.responses.create(model=model, tools=TOOLS, input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name,
             "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id,
             "output": "{\"sky\": \"sunny\"}"},
        ])
        out["followup"] = {"content": f.output_text, "status": f.status}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
