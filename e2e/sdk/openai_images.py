"""Drives the gateway's images and embeddings APIs with the official OpenAI Python SDK and prints
what it parsed as JSON.

usage: openai_images.py BASE_URL MODEL OP...   (BASE_URL like http://127.0.0.1:10000/v1)

OP is `generate` (images.generate, n=2), `edit` (images.edit: a PNG file and a prompt, sent as
multipart/form-data), `variation` (images.create_variation: a PNG file), `embed`
(embeddings.create with two inputs) or `embed1` (one input). Each OP's result is printed under its name.
"""
import base64
import json
import sys

from openai import OpenAI

# A 1x1 PNG: the file the SDK uploads.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==")


def images(r) -> dict:
    return {"created": r.created,
            "b64": [base64.b64decode(d.b64_json).decode() for d in r.data],
            "usage": r.usage.model_dump() if r.usage else None}


def main() -> None:
    base_url, model, ops = sys.argv[1], sys.argv[2], sys.argv[3:]
    client = OpenAI(base_url=base_url, api_key="client-side-key", max_retries=0)
    out = {}
    for op in ops:
        if op == "generate":
            out[op] = images(client.images.generate(model=model, prompt="a cat", n=2))
        elif op == "edit":
            out[op] = images(client.images.edit(
                model=model, image=("cat.png", PNG, "image/png"), prompt="add a hat",
                size="1792x1024"))
        elif op == "variation":
            out[op] = images(client.images.create_variation(
                model=model, image=("cat.png", PNG, "image/png")))
        elif op in ("embed", "embed1"):
            texts = ["hello world", "good night moon"] if op == "embed" else "hello world"
            r = client.embeddings.create(model=model, input=texts)
            out[op] = {"model": r.model, "dims": [len(d.embedding) for d in r.data],
                       "index": [d.index for d in r.data], "usage": r.usage.model_dump()}
        else:
            raise SystemExit(f"unknown op {op}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
