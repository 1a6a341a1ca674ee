"""Drives ai-proxy's Higress drop-in features with the official OpenAI and Anthropic Python SDKs;
prints what they parsed as JSON.

usage: openai_china.py BASE_URL MODEL WHAT [HOST]   (BASE_URL like http://127.0.0.1:10000;
       HOST: a Host header, to reach a rule matched by domain)
  embeddings  client.embeddings.create with two texts, then one with `dimensions`
  chat        one chat completion and one stream (content, reasoning, finish, usage)
  thinking    Anthropic Messages with `thinking` enabled, whole and streamed (thinking, text)
"""
import json
import sys


def openai_client(base_url: str):
    from openai import OpenAI
    headers = {"Host": sys.argv[4]} if len(sys.argv) > 4 else None
    return OpenAI(base_url=base_url + "/v1", api_key="client-side-key", max_retries=0,
                  default_headers=headers)


def embeddings(base_url: str, model: str) -> dict:
    client = openai_client(base_url)
    r = client.embeddings.create(model=model, input=["red apple", "green pear tree"])
    one = client.embeddings.create(model=model, input="hello", dimensions=4)
    return {
        "object": r.object, "model": r.model,
        "data": [{"index": d.index, "len": len(d.embedding), "first": d.embedding[0]} for d in r.data],
        "usage": r.usage.model_dump(),
        "one": {"len": len(one.data[0].embedding), "usage": one.usage.model_dump()},
    }


def reasoning_of(obj) -> str:
    extra = obj.model_extra or {}
    return extra.get("reasoning_content") or extra.get("reasoning") or ""


def chat(base_url: str, model: str) -> dict:
    client = openai_client(base_url)
    out = {}
    r = client.chat.completions.create(
        model=model, max_tokens=50, messages=[{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "Say hello"}])
    m = r.choices[0].message
    out["text"] = {"content": m.content, "reasoning": reasoning_of(m), "id": r.id,
                   "finish": r.choices[0].finish_reason,
                   "usage": r.usage.model_dump() if r.usage else None}
    stream = client.chat.completions.create(
        model=model, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Count"}])
    text, reasoning, finish, usage = "", "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            text += choice.delta.content or ""
            reasoning += reasoning_of(choice.delta)
            finish = choice.finish_reason or finish
    out["stream"] = {"content": text, "reasoning": reasoning, "finish": finish, "usage": usage}
    return out


def thinking(base_url: str, model: str) -> dict:
    from anthropic import Anthropic
    headers = {"Host": sys.argv[4]} if len(sys.argv) > 4 else None
    client = Anthropic(base_url=base_url, api_key="client-side-key", max_retries=0,
                       default_headers=headers)
    think = {"type": "enabled", "budget_tokens": 2048}
    m = client.messages.create(model=model, max_tokens=4096, thinking=think,
                               messages=[{"role": "user", "content": "Why is the sky blue?"}])
    out = {"text": {
        "thinking": "".join(b.thinking for b in m.content if b.type == "thinking"),
        "content": "".join(b.text for b in m.content if b.type == "text"),
        "stop": m.stop_reason}}
    with client.messages.stream(model=model, max_tokens=4096, thinking=think,
                                messages=[{"role": "user", "content": "Count"}]) as stream:
        final = stream.get_final_message()
    out["stream"] = {
        "thinking": "".join(b.thinking for b in final.content if b.type == "thinking"),
        "content": "".join(b.text for b in final.content if b.type == "text"),
        "stop": final.stop_reason}
    # A second turn sends the first answer's thinking back.
    m2 = client.messages.create(model=model, max_tokens=4096, thinking=think, messages=[
        {"role": "user", "content": "Why is the sky blue?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {"role": "user", "content": "And at sunset?"}])
    out["followup"] = "".join(b.text for b in m2.content if b.type == "text")
    # Thinking off.
    m3 = client.messages.create(model=model, max_tokens=64,
                                messages=[{"role": "user", "content": "Hi"}])
    out["plain"] = "".join(b.text for b in m3.content if b.type == "text")
    return out


def main() -> None:
    base_url, model, what = sys.argv[1], sys.argv[2], sys.argv[3]
    run = {"embeddings": embeddings, "chat": chat, "thinking": thinking}[what]
    print(json.dumps(run(base_url, model)))


if __name__ == "__main__":
    main()
