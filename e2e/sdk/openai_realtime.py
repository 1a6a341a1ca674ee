"""Drives the gateway's Realtime API (a WebSocket on /v1/realtime) with the official OpenAI Python
SDK (`client.realtime.connect`, the `openai[realtime]` extra) and prints what it parsed as JSON.

usage: openai_realtime.py BASE_URL MODEL   (BASE_URL like http://127.0.0.1:10000/v1)

Connects, updates the session to text output, adds a user message, asks for a response and joins
its text deltas until `response.done`. Each event's class name shows the SDK parsed it as the
typed event, not as an unknown one.
"""
import json
import signal
import sys

from openai import OpenAI

# A socket that stays silent would block for ever: fail instead.
TIMEOUT_SECONDS = 30


def until(connection, kind, seen):
    """Events up to (and including) the first of type `kind`, recorded in `seen`."""
    for event in connection:
        seen.append({"type": event.type, "class": type(event).__name__})
        if event.type == "error":
            raise SystemExit(f"error event: {event.to_json()}")
        if event.type == kind:
            return event
    raise SystemExit(f"connection closed before {kind}")


def main() -> None:
    signal.alarm(TIMEOUT_SECONDS)
    base_url, model = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key="client-side-key", max_retries=0)
    out = {"events": []}
    seen = out["events"]

    with client.realtime.connect(model=model) as connection:
        created = until(connection, "session.created", seen)
        out["session"] = {"id": getattr(created.session, "id", None), "model": created.session.model,
                          "type": created.session.type}

        connection.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                           "instructions": "Be brief."})
        updated = until(connection, "session.updated", seen)
        out["updated"] = {"output_modalities": updated.session.output_modalities,
                          "instructions": updated.session.instructions}

        connection.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Say hello"}]})
        connection.response.create()
        text = ""
        for event in connection:
            seen.append({"type": event.type, "class": type(event).__name__})
            if event.type == "error":
                raise SystemExit(f"error event: {event.to_json()}")
            if event.type == "response.output_text.delta":
                text += event.delta
            elif event.type == "response.done":
                usage = event.response.usage
                out["response"] = {
                    "id": event.response.id, "status": event.response.status, "text": text,
                    "usage": usage.model_dump(exclude_none=True) if usage else None}
                break

    print(json.dumps(out))


if __name__ == "__main__":
    main()
