"""One Responses API call through the official OpenAI Python SDK; prints what it parsed.

usage: openai_responses_once.py BASE_URL MODEL INPUT [stream] [NAME=VALUE (a request header)]...
"""
import json
import sys

from openai import OpenAI


def main() -> None:
    base_url, model, text = sys.argv[1], sys.argv[2], sys.argv[3]
    headers = dict(a.split("=", 1) for a in sys.argv[4:] if "=" in a)
    client = OpenAI(base_url=base_url, api_key="client-side-key", max_retries=0,
                    default_headers=headers)
    if "stream" in sys.argv[4:]:
        deltas, events, last = "", [], None
        for event in client.responses.create(model=model, input=text, stream=True):
            events.append(event.type)
            if event.type == "response.output_text.delta":
                deltas += event.delta
            if getattr(event, "response", None) is not None:
                last = event.response
        out = {"text": deltas, "events": events, "status": last.status if last else None,
               "reason": last.incomplete_details.reason
               if last and last.incomplete_details else None}
    else:
        r = client.responses.create(model=model, input=text)
        out = {"text": r.output_text, "status": r.status,
               "reason": r.incomplete_details.reason if r.incomplete_details else None}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
